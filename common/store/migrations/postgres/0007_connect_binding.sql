-- Hardening (issue 15). An OAuth state is bound to the browser that started
-- the flow: the SHA-256 of a cookie set by the authorize endpoint, checked at
-- the callback. A Google flow's PKCE verifier is now sealed; states issued
-- before this migration (clear verifiers, no binding) are dropped.
ALTER TABLE connect_keys ADD COLUMN binding_sha256 TEXT;
DELETE FROM connect_keys WHERE purpose IN ('slack_state', 'gmail_state');

-- When a row was last connected through a provider's flow (NULL: when it was
-- created), so that a late provider event cannot undo a reconnect.
ALTER TABLE user_integrations ADD COLUMN connected_at TEXT;
