-- GET /v1/notifications pages one user's notification_log rows by id.
CREATE INDEX notification_log_by_user ON notification_log (user_id, id);
