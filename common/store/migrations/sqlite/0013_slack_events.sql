-- Slack as a chat surface (issue 17).
-- A Slack row's `chat_hash` (0008) is the keyed hash of its team and the
-- user who connected it: an event finds its row in one indexed read. The
-- server writes it with every config, and re-hashes rows without one at
-- its start.
-- An outbox row of a Slack event: the channel it came in (also its
-- `chat_id`), the message's `ts` and the `thread_ts` of the thread it was
-- written in; one row per event, however often Slack redelivers it.
ALTER TABLE inbound_messages ADD COLUMN channel TEXT;
ALTER TABLE inbound_messages ADD COLUMN ts TEXT;
ALTER TABLE inbound_messages ADD COLUMN thread_ts TEXT;
ALTER TABLE inbound_messages ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX inbound_messages_event ON inbound_messages (integration_id, event_id);
-- A notification posted to Slack with `claim_thread`: the user's replies in
-- its thread (`thread_ts` = its `ts`) carry its session, when they are
-- routed to its profile.
CREATE TABLE slack_threads (
    integration_id  TEXT NOT NULL,
    channel         TEXT NOT NULL,
    ts              TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    profile_id      TEXT NOT NULL,
    label           TEXT,
    sent_at         TEXT NOT NULL,
    PRIMARY KEY (integration_id, channel, ts)
);
