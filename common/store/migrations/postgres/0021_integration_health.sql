-- The health keeper (issue 27): when each connection is checked next (the
-- claim of one replica: it moves this forward before it checks), what the
-- last check found, and when its user was last reminded to reconnect it.
CREATE TABLE integration_health (
    integration_id TEXT PRIMARY KEY REFERENCES user_integrations (id) ON DELETE CASCADE,
    next_check_at  TEXT NOT NULL,
    checked_at     TEXT,
    -- `ok`, `refused` or `unknown` (the provider could not say).
    result         TEXT,
    detail         TEXT,
    reminded_at    TEXT
);
