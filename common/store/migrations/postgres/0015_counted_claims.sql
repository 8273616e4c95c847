-- Which notification claims count against the profile's per-minute limit:
-- an agent's, and a platform notification a user sent over the API
-- (POST /v1/notifications); an operator's `integrations notify` does not.
ALTER TABLE notification_claims ADD COLUMN counted BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE notification_claims SET counted = (source = 'agent');
