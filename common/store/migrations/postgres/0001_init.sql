-- The integrations store (PostgreSQL). Timestamps are RFC 3339 UTC text with
-- microseconds, so they sort as text; profile_ids is a JSON array.

CREATE TABLE profiles (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL,
    UNIQUE (user_id, slug)
);
CREATE UNIQUE INDEX profiles_one_default ON profiles (user_id) WHERE is_default;

CREATE TABLE user_integrations (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    type             TEXT NOT NULL CHECK (type IN ('slack', 'telegram', 'gmail', 'teller', 'email', 'webhook')),
    external_id      TEXT,
    label            TEXT NOT NULL,
    encrypted_config TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    is_default       BOOLEAN NOT NULL DEFAULT FALSE,
    scope            TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'agents')),
    profile_ids      TEXT NOT NULL DEFAULT '[]',
    bound_profile_id TEXT,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reauth')),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX user_integrations_by_user ON user_integrations (user_id, type);
CREATE UNIQUE INDEX user_integrations_external ON user_integrations (type, external_id)
    WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX user_integrations_one_per_user ON user_integrations (user_id, type)
    WHERE type IN ('slack', 'gmail', 'email', 'webhook');
CREATE UNIQUE INDEX user_integrations_one_default ON user_integrations (user_id) WHERE is_default;

CREATE TABLE notification_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         TEXT NOT NULL,
    profile_id      TEXT,
    session_id      TEXT,
    integration_id  TEXT,
    channel         TEXT NOT NULL,
    urgency         TEXT NOT NULL CHECK (urgency IN ('low', 'normal', 'high')),
    source          TEXT NOT NULL CHECK (source IN ('agent', 'platform')),
    status          TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
    error           TEXT,
    attempts        BIGINT NOT NULL DEFAULT 1,
    idempotency_key TEXT,
    message         TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX notification_log_by_profile ON notification_log (user_id, profile_id, created_at);
CREATE INDEX notification_log_by_key ON notification_log (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE telegram_threads (
    integration_id TEXT NOT NULL,
    chat_id        TEXT NOT NULL,
    message_id     BIGINT NOT NULL,
    session_id     TEXT NOT NULL,
    label          TEXT,
    sent_at        TEXT NOT NULL,
    claimed_at     TEXT,
    dismissed_at   TEXT,
    PRIMARY KEY (integration_id, chat_id, message_id)
);

CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    profile_id     TEXT,
    session_id     TEXT,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    integration_id TEXT,
    decision       TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    detail         TEXT,
    duration_us    BIGINT NOT NULL
);
CREATE INDEX audit_log_by_user ON audit_log (user_id, at);
