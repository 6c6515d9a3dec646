-- Tasks, conversations and messages (PostgreSQL). Timestamps are RFC 3339 UTC
-- text written by the application, so both backends store the same values.
CREATE TABLE tasks (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT,
    completed   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX tasks_by_user ON tasks (user_id, id);

CREATE TABLE conversations (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT NOT NULL,
    title      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX conversations_by_user ON conversations (user_id, updated_at);

CREATE TABLE messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT   NOT NULL,
    content         TEXT   NOT NULL,
    -- Assistant messages: JSON array of the tool calls asked for
    -- ([{"id","name","arguments"}]).
    tool_calls      TEXT,
    -- Tool messages: which call this is the result of, the tool's name, and
    -- whether the call failed (0/1; content is then {"error": "..."}).
    tool_call_id    TEXT,
    tool_name       TEXT,
    is_error        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT   NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
