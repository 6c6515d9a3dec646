-- ChatKit: client-secret sessions and message feedback (SQLite).

-- Short-lived client secrets for the ChatKit widget. Only the secret's
-- SHA-256 is stored. The per-session rate limit counts in the row itself
-- (a fixed one-minute window), so every replica sees the same count.
CREATE TABLE chatkit_sessions (
    id                 TEXT    PRIMARY KEY,
    user_id            TEXT    NOT NULL,
    conversation_id    INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    secret_sha256      TEXT    NOT NULL UNIQUE,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    cancelled          INTEGER NOT NULL DEFAULT 0,
    max_per_minute     INTEGER NOT NULL,
    window_start       INTEGER NOT NULL DEFAULT 0,
    window_count       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chatkit_sessions_by_user ON chatkit_sessions (user_id);

-- Feedback on a message from the ChatKit widget: 'positive' or 'negative'.
ALTER TABLE messages ADD COLUMN feedback TEXT;
