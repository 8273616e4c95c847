-- A notification whose outcome is unknown: its provider's connection was
-- lost after the message was handed over (an SMTP server that closed after
-- the end of DATA). Its log row says `unknown`, and its claim holds the
-- idempotency key as a sent one does, so that it is never sent twice.
-- SQLite cannot change a CHECK: both tables are rebuilt.
CREATE TABLE notification_log_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT NOT NULL,
    profile_id          TEXT,
    session_id          TEXT,
    integration_id      TEXT,
    channel             TEXT NOT NULL,
    urgency             TEXT NOT NULL CHECK (urgency IN ('low', 'normal', 'high')),
    source              TEXT NOT NULL CHECK (source IN ('agent', 'platform')),
    status              TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'unknown')),
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 1,
    idempotency_key     TEXT,
    message             TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    notification_id     TEXT,
    provider_message_id TEXT
);
INSERT INTO notification_log_new (id, user_id, profile_id, session_id, integration_id, channel,
    urgency, source, status, error, attempts, idempotency_key, message, created_at,
    notification_id, provider_message_id)
SELECT id, user_id, profile_id, session_id, integration_id, channel, urgency, source, status,
    error, attempts, idempotency_key, message, created_at, notification_id, provider_message_id
FROM notification_log;
DROP TABLE notification_log;
ALTER TABLE notification_log_new RENAME TO notification_log;
CREATE INDEX notification_log_by_profile ON notification_log (user_id, profile_id, created_at);
CREATE INDEX notification_log_by_key ON notification_log (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX notification_log_by_user ON notification_log (user_id, id);

CREATE TABLE notification_claims_new (
    notification_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    profile_id      TEXT NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('agent', 'platform')),
    idempotency_key TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'unknown')),
    claimed_at      TEXT NOT NULL,
    counted         INTEGER NOT NULL DEFAULT 0
);
INSERT INTO notification_claims_new (notification_id, user_id, profile_id, source,
    idempotency_key, state, claimed_at, counted)
SELECT notification_id, user_id, profile_id, source, idempotency_key, state, claimed_at, counted
FROM notification_claims;
DROP TABLE notification_claims;
ALTER TABLE notification_claims_new RENAME TO notification_claims;
CREATE INDEX notification_claims_by_profile ON notification_claims (user_id, profile_id, claimed_at);
