-- Connection health (issue 27). Why a row needs its user, and since when:
-- set with `needs_reauth`, cleared when it is active again.
ALTER TABLE user_integrations ADD COLUMN status_reason TEXT;
ALTER TABLE user_integrations ADD COLUMN status_detail TEXT;
ALTER TABLE user_integrations ADD COLUMN status_since TEXT;

-- The outbox of the events sent to the platform (INTEGRATIONS_EVENTS_URL).
-- The triggers below write them in the transaction of the change that
-- causes them, whoever writes it (the API, the CLI, a sidecar, an import);
-- one replica at a time delivers them, oldest first.
CREATE TABLE integration_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `evt_...`: the `webhook-id` of every attempt.
    id               TEXT NOT NULL UNIQUE,
    type             TEXT NOT NULL,
    integration_id   TEXT NOT NULL,
    integration_type TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    occurred_at      TEXT NOT NULL,
    -- A JSON object: what the event's type adds.
    data             TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    delivered_at     TEXT,
    last_error       TEXT
);
CREATE INDEX integration_events_undelivered ON integration_events (seq) WHERE delivered_at IS NULL;
CREATE INDEX integration_events_by_age ON integration_events (occurred_at);

CREATE TRIGGER integration_connected AFTER INSERT ON user_integrations
BEGIN
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || lower(hex(randomblob(12))), 'integration.connected', NEW.id, NEW.type, NEW.user_id,
            NEW.updated_at,
            json_object('label', NEW.label, 'scope', NEW.scope, 'profile_ids', json(NEW.profile_ids)),
            NEW.updated_at);
END;

CREATE TRIGGER integration_needs_reauth AFTER UPDATE OF status ON user_integrations
WHEN OLD.status = 'active' AND NEW.status = 'needs_reauth'
BEGIN
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || lower(hex(randomblob(12))), 'integration.needs_reauth', NEW.id, NEW.type, NEW.user_id,
            NEW.updated_at,
            json_object('label', NEW.label, 'reason', NEW.status_reason, 'message', NEW.status_detail),
            NEW.updated_at);
END;

CREATE TRIGGER integration_reconnected AFTER UPDATE OF status ON user_integrations
WHEN OLD.status = 'needs_reauth' AND NEW.status = 'active'
BEGIN
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || lower(hex(randomblob(12))), 'integration.reconnected', NEW.id, NEW.type, NEW.user_id,
            NEW.updated_at, json_object('label', NEW.label), NEW.updated_at);
END;

CREATE TRIGGER integration_scope_changed AFTER UPDATE OF scope, profile_ids ON user_integrations
WHEN OLD.scope IS NOT NEW.scope OR OLD.profile_ids IS NOT NEW.profile_ids
BEGIN
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || lower(hex(randomblob(12))), 'integration.scope_changed', NEW.id, NEW.type, NEW.user_id,
            NEW.updated_at,
            json_object('label', NEW.label, 'scope', NEW.scope, 'profile_ids', json(NEW.profile_ids)),
            NEW.updated_at);
END;

CREATE TRIGGER integration_disconnected AFTER DELETE ON user_integrations
BEGIN
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || lower(hex(randomblob(12))), 'integration.disconnected', OLD.id, OLD.type, OLD.user_id,
            strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z', json_object('label', OLD.label),
            strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z');
END;

-- Work one replica at a time does (delivering events; checking a
-- connection): held by `holder` until `expires_at`, then anyone's.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
