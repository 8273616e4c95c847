-- The health keeper (issue 27): when each connection is checked next (the
-- claim of one replica: it moves this forward before it checks), what the
-- last check found, and when its user was last reminded to reconnect it.
CREATE TABLE integration_health (
    integration_id TEXT PRIMARY KEY,
    next_check_at  TEXT NOT NULL,
    checked_at     TEXT,
    -- `ok`, `refused` or `unknown` (the provider could not say).
    result         TEXT,
    detail         TEXT,
    reminded_at    TEXT
);
CREATE TRIGGER integration_health_gone AFTER DELETE ON user_integrations
BEGIN
    DELETE FROM integration_health WHERE integration_id = OLD.id;
END;

-- The events outbox read per integration: each one's oldest undelivered
-- event (`Store::due_events`).
CREATE INDEX integration_events_pending_by_integration ON integration_events (integration_id, seq)
    WHERE delivered_at IS NULL;
