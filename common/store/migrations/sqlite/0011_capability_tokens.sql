-- Capability tokens (issue 16): one per running agent, minted by the
-- resolver (or POST /v1/sessions) for the MCP servers its plan grants, sent
-- by the agent as `Authorization: Bearer <token>` to the sidecars' HTTP
-- endpoints. Only the SHA-256 of a token is stored; `servers` is a JSON array
-- of server names. Every request re-reads its row: a revocation or an expiry
-- takes effect on the next request.

CREATE TABLE capability_tokens (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    profile_id   TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    servers      TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX capability_tokens_by_session ON capability_tokens (session_id, user_id);
