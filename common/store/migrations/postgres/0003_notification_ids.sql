-- A notification's public id (`ntf_...`: the webhook id and the Resend
-- idempotency key, stable across retries) and the provider's message id,
-- so that a repeated idempotency key can answer with the first result; the
-- same id on a Telegram thread, which its claim buttons carry.
ALTER TABLE notification_log ADD COLUMN notification_id TEXT;
ALTER TABLE notification_log ADD COLUMN provider_message_id TEXT;
ALTER TABLE telegram_threads ADD COLUMN notification_id TEXT;
