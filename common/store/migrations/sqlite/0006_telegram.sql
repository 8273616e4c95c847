-- Telegram's server side (issue 9): the outbox of inbound messages the
-- platform consumes, in arrival order (`seq` is the cursor).

CREATE TABLE inbound_messages (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    user_id            TEXT NOT NULL,
    profile_id         TEXT NOT NULL,
    integration_id     TEXT NOT NULL,
    chat_id            TEXT NOT NULL,
    text               TEXT NOT NULL,
    command            TEXT,
    claimed_session_id TEXT,
    received_at        TEXT NOT NULL
);
CREATE INDEX inbound_messages_by_user ON inbound_messages (user_id, seq);
