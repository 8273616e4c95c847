-- Sessions of the Settings page (issue 18): a person signs in with a
-- single-use link (`integrations dashboard-link`, a `connect_keys` row of
-- purpose `dashboard_sign_in`) and gets an HttpOnly cookie. Only the SHA-256
-- of the cookie's value is stored; every request re-reads its row, so that
-- signing out or an expiry takes effect on the next request, on every replica.

CREATE TABLE dashboard_sessions (
    session_sha256 TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_by_user ON dashboard_sessions (user_id);
