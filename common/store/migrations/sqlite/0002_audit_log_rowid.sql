-- audit_log ids without AUTOINCREMENT: keeping sqlite_sequence up to date
-- made every tool call's audit insert write one more page. Rows are only
-- ever appended, so the ids still grow in the order rows were written.
CREATE TABLE audit_log_new (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    profile_id     TEXT,
    session_id     TEXT,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    integration_id TEXT,
    decision       TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    detail         TEXT,
    duration_us    INTEGER NOT NULL
);
INSERT INTO audit_log_new SELECT * FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_by_user ON audit_log (user_id, at);
