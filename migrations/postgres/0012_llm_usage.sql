-- What each provider round of a chat turn cost: who, which provider and
-- model answered, the tokens it reported and how long it took. Kept apart
-- from messages, so that deleting a reply (a retry) never gives back the
-- tokens it spent: the daily budget (WASMGATE_USER_DAILY_TOKENS) counts
-- these rows.
CREATE TABLE llm_usage (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    conversation_id BIGINT  NOT NULL,
    -- The assistant message the round wrote (it may be deleted since).
    message_id      BIGINT,
    provider        TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    input_tokens    BIGINT  NOT NULL,
    output_tokens   BIGINT  NOT NULL,
    latency_ms      BIGINT  NOT NULL,
    created_at      TEXT    NOT NULL
);
CREATE INDEX llm_usage_by_user ON llm_usage (user_id, created_at);
