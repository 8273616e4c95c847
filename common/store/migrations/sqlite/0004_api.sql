-- The REST API (issue 7): bearer tokens, stored only as the SHA-256 of the
-- token text, and per-agent secrets sealed like configs, with the same scope
-- rules (profile_ids is a JSON array).

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

CREATE TABLE user_secrets (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    encrypted_value TEXT NOT NULL,
    scope           TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'agents')),
    profile_ids     TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (user_id, name)
);
