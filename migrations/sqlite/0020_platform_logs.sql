-- Platform logs (issue 20, seed 002's structured logging): the server's own important
-- events (every Ops action, healing decision, delivery failure, job run) with the merchant,
-- the Ops agent and the request they concern, written in batches by the buffered writer of
-- `api/src/logs`. Retention deletes expired entries in batches, by level and age.
CREATE TABLE platform_logs (
    id             BLOB PRIMARY KEY,
    logged_at      TEXT NOT NULL,
    level          TEXT NOT NULL CHECK (level IN ('error', 'warn', 'info', 'debug')),
    merchant_id    BLOB,
    -- The merchant's name as a slug when the entry was written (seed 002's tenantSlug).
    merchant_slug  TEXT,
    agent_id       BLOB,
    request_id     TEXT,
    service        TEXT NOT NULL,
    action         TEXT NOT NULL,
    message        TEXT NOT NULL,
    data           TEXT NOT NULL,
    error_name     TEXT,
    error_message  TEXT,
    error_stack    TEXT
);

-- Newest first, by keyset (every query without a more selective filter).
CREATE INDEX platform_logs_newest ON platform_logs (logged_at DESC, id DESC);
-- The level filter, and retention's deletes by level and age.
CREATE INDEX platform_logs_level ON platform_logs (level, logged_at DESC, id DESC);
CREATE INDEX platform_logs_merchant ON platform_logs (merchant_id, logged_at DESC, id DESC)
    WHERE merchant_id IS NOT NULL;
CREATE INDEX platform_logs_request ON platform_logs (request_id) WHERE request_id IS NOT NULL;

-- `?q=`: an FTS5 index of the messages, its content read from platform_logs by rowid (the
-- text is not stored twice), kept by the triggers. Entries are never updated. The rowid of
-- a table without an INTEGER PRIMARY KEY is stable except under VACUUM, which the server
-- never runs (run `INSERT INTO platform_logs_fts (platform_logs_fts) VALUES ('rebuild')`
-- after a manual one).
CREATE VIRTUAL TABLE platform_logs_fts USING fts5 (
    message, content = 'platform_logs', content_rowid = 'rowid'
);
CREATE TRIGGER platform_logs_fts_insert AFTER INSERT ON platform_logs BEGIN
    INSERT INTO platform_logs_fts (rowid, message) VALUES (new.rowid, new.message);
END;
CREATE TRIGGER platform_logs_fts_delete AFTER DELETE ON platform_logs BEGIN
    INSERT INTO platform_logs_fts (platform_logs_fts, rowid, message)
        VALUES ('delete', old.rowid, old.message);
END;
