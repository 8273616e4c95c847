-- Telegram hardening (issue 15).
-- A thread row records the profile of the notification it came from: a
-- reply joins only a thread of the profile it was routed to.
ALTER TABLE telegram_threads ADD COLUMN profile_id TEXT;
-- A paired chat is found by one indexed read: `<kid>.<hex>`, an HMAC of
-- `<bot id>:<chat id>` under a key derived from the keyring's key `kid`
-- (the clear column reveals no chat id).
ALTER TABLE user_integrations ADD COLUMN chat_hash TEXT;
CREATE INDEX user_integrations_by_chat ON user_integrations (chat_hash);
-- One outbox row per Telegram update, however often Telegram redelivers it.
ALTER TABLE inbound_messages ADD COLUMN bot_id TEXT;
ALTER TABLE inbound_messages ADD COLUMN update_id BIGINT;
CREATE UNIQUE INDEX inbound_messages_once ON inbound_messages (bot_id, update_id);
