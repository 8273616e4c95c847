-- Capability tokens answer to what minted them (issue 24).
--
-- minted_by: the id of the API token that minted the row over
-- POST /v1/sessions (revoking that API token revokes the row), 'cli' for
-- `resolver plan --transport http|relay`, 'unrecorded' for a row minted
-- before this column existed.
ALTER TABLE capability_tokens ADD COLUMN minted_by TEXT NOT NULL DEFAULT 'unrecorded';
CREATE INDEX capability_tokens_by_minter ON capability_tokens (minted_by);
CREATE INDEX capability_tokens_by_user ON capability_tokens (user_id, expires_at);
-- The purge at each mint: expired rows, and revoked ones.
CREATE INDEX capability_tokens_by_expiry ON capability_tokens (expires_at);
CREATE INDEX capability_tokens_by_revocation ON capability_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- A session id is one user's: claimed by the first mint into it (the
-- primary key decides a race), until the latest expiry of its tokens.
CREATE TABLE capability_sessions (
    session_id TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX capability_sessions_by_expiry ON capability_sessions (expires_at);
INSERT INTO capability_sessions (session_id, user_id, expires_at)
    SELECT session_id, MIN(user_id), MAX(expires_at) FROM capability_tokens GROUP BY session_id;

-- The per-API-token limit of mints (MCP_MAX_MINTS_PER_MINUTE), counted like
-- a capability token's calls: the minute of the latest mint, and how many
-- in that minute.
ALTER TABLE api_tokens ADD COLUMN mints_minute BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN mints_in_minute BIGINT NOT NULL DEFAULT 0;
