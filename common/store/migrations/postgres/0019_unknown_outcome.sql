-- A notification whose outcome is unknown: its provider's connection was
-- lost after the message was handed over (an SMTP server that closed after
-- the end of DATA). Its log row says `unknown`, and its claim holds the
-- idempotency key as a sent one does, so that it is never sent twice.
ALTER TABLE notification_log DROP CONSTRAINT notification_log_status_check;
ALTER TABLE notification_log ADD CONSTRAINT notification_log_status_check
    CHECK (status IN ('sent', 'failed', 'unknown'));
ALTER TABLE notification_claims DROP CONSTRAINT notification_claims_state_check;
ALTER TABLE notification_claims ADD CONSTRAINT notification_claims_state_check
    CHECK (state IN ('pending', 'sent', 'failed', 'unknown'));
