-- Connection health (issue 27). Why a row needs its user, and since when:
-- set with `needs_reauth`, cleared when it is active again.
ALTER TABLE user_integrations ADD COLUMN status_reason TEXT;
ALTER TABLE user_integrations ADD COLUMN status_detail TEXT;
ALTER TABLE user_integrations ADD COLUMN status_since TEXT;

-- The outbox of the events sent to the platform (INTEGRATIONS_EVENTS_URL).
-- The trigger below writes them in the transaction of the change that
-- causes them, whoever writes it (the API, the CLI, a sidecar, an import);
-- one replica at a time delivers them, oldest first.
CREATE TABLE integration_events (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- `evt_...`: the `webhook-id` of every attempt.
    id               TEXT NOT NULL UNIQUE,
    type             TEXT NOT NULL,
    integration_id   TEXT NOT NULL,
    integration_type TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    occurred_at      TEXT NOT NULL,
    -- A JSON object: what the event's type adds.
    data             TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    delivered_at     TEXT,
    last_error       TEXT
);
CREATE INDEX integration_events_undelivered ON integration_events (seq) WHERE delivered_at IS NULL;
CREATE INDEX integration_events_by_age ON integration_events (occurred_at);

CREATE FUNCTION integration_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    r    user_integrations;
    at   TEXT;
    data JSONB;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'integration.connected';
        r := NEW;
        at := NEW.updated_at;
        data := jsonb_build_object('label', r.label, 'scope', r.scope, 'profile_ids', r.profile_ids::jsonb);
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'integration.disconnected';
        r := OLD;
        at := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
        data := jsonb_build_object('label', r.label);
    ELSE
        r := NEW;
        at := NEW.updated_at;
        IF OLD.status = 'active' AND NEW.status = 'needs_reauth' THEN
            kind := 'integration.needs_reauth';
            data := jsonb_build_object('label', r.label, 'reason', r.status_reason, 'message', r.status_detail);
        ELSIF OLD.status = 'needs_reauth' AND NEW.status = 'active' THEN
            kind := 'integration.reconnected';
            data := jsonb_build_object('label', r.label);
        END IF;
        IF kind IS NOT NULL THEN
            INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
            VALUES ('evt_' || replace(gen_random_uuid()::text, '-', ''), kind, r.id, r.type, r.user_id, at, data::text, at);
        END IF;
        IF OLD.scope IS DISTINCT FROM NEW.scope OR OLD.profile_ids IS DISTINCT FROM NEW.profile_ids THEN
            INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
            VALUES ('evt_' || replace(gen_random_uuid()::text, '-', ''), 'integration.scope_changed', r.id, r.type,
                    r.user_id, at,
                    jsonb_build_object('label', r.label, 'scope', r.scope, 'profile_ids', r.profile_ids::jsonb)::text, at);
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO integration_events (id, type, integration_id, integration_type, user_id, occurred_at, data, next_attempt_at)
    VALUES ('evt_' || replace(gen_random_uuid()::text, '-', ''), kind, r.id, r.type, r.user_id, at, data::text, at);
    RETURN NULL;
END
$$;

CREATE TRIGGER integration_events AFTER INSERT OR UPDATE OR DELETE ON user_integrations
    FOR EACH ROW EXECUTE FUNCTION integration_event();

-- Work one replica at a time does (delivering events; checking a
-- connection): held by `holder` until `expires_at`, then anyone's.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
