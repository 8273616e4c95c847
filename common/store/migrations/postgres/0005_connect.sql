-- Connect flows (issue 8): single-use keys a user's browser or Teller Connect
-- brings back, OAuth `state` values and Teller nonces. Only the SHA-256 of a
-- key is stored; `verifier` is the PKCE code verifier of a Google flow.

CREATE TABLE connect_keys (
    key_sha256 TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    verifier   TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX connect_keys_by_expiry ON connect_keys (expires_at);
