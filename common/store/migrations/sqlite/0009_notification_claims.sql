-- A notification's claim, taken before it is delivered and in the same
-- transaction as the checks it passed: its idempotency key (a pending or
-- sent claim holds the key; a failed one frees it) and its place in the
-- per-minute count of its profile, across every sidecar. Rows older than
-- the idempotency window are pruned as new claims arrive.
CREATE TABLE notification_claims (
    notification_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    profile_id      TEXT NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('agent', 'platform')),
    idempotency_key TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    claimed_at      TEXT NOT NULL
);
CREATE INDEX notification_claims_by_profile ON notification_claims (user_id, profile_id, claimed_at);
