-- The audit log: one row per tool call that reached a plugin, from any
-- door. Arguments are stored redacted; rows past the retention period are
-- deleted by the server.
CREATE TABLE tool_call_audit (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    door        TEXT    NOT NULL,
    plugin      TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    arguments   TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    duration_us BIGINT  NOT NULL,
    hosts       TEXT    NOT NULL
);
CREATE INDEX tool_call_audit_by_at ON tool_call_audit (at);
CREATE INDEX tool_call_audit_by_user ON tool_call_audit (user_id, id);
CREATE INDEX tool_call_audit_by_plugin ON tool_call_audit (plugin, id);
