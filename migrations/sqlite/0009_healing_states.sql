-- The healing loop's honest states (issue 15); see the PostgreSQL 0009 for what each
-- new state and column means. SQLite cannot change a CHECK constraint in place, so the
-- logs table is rebuilt: its rows are copied aside, it is dropped and created anew, and
-- the rows go back. The migration runs in one transaction, where foreign_keys cannot be
-- turned off; with their checks deferred to the commit instead, the drop counts the
-- commands (and nothing else references the logs) as orphaned, and each row put back
-- counts its commands as found again: the commit fails if any row were lost.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE plugin_auto_healing_logs_0008 AS SELECT * FROM plugin_auto_healing_logs;
DROP TABLE plugin_auto_healing_logs;

CREATE TABLE plugin_auto_healing_logs (
    id                 BLOB PRIMARY KEY,
    installation_id    BLOB NOT NULL REFERENCES plugin_installations (id),
    merchant_id        BLOB NOT NULL REFERENCES merchants (id),
    cms                TEXT NOT NULL,
    plugin_version     TEXT NOT NULL,
    detected_issue     TEXT NOT NULL,
    issue_severity     TEXT NOT NULL,
    patch_type         TEXT,
    proposed_patch     TEXT,
    sira_confidence    REAL NOT NULL,
    idempotency_key    TEXT,
    request_sha256     TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('pending_review', 'approved', 'applied', 'failed', 'not_needed',
                          'rolling_back', 'rolled_back', 'rollback_failed', 'rejected')),
    auto_applied       INTEGER NOT NULL DEFAULT 0,
    rule_name          TEXT,
    decision           TEXT NOT NULL,
    patch_name         TEXT,
    patch_version      TEXT,
    bundle_sha256      TEXT,
    patch_params       TEXT,
    snapshot_id        BLOB REFERENCES plugin_snapshots (id),
    operations         TEXT,
    restore_operations TEXT,
    failure_kind       TEXT,
    failure_reason     TEXT,
    reviewed_by        BLOB REFERENCES ops_agents (id),
    reviewed_at        TEXT,
    applied_at         TEXT,
    rollback_trigger   TEXT CHECK (rollback_trigger IN ('ops', 'failed_ack', 'regression')),
    rollback_reason    TEXT,
    rolled_back_by     BLOB REFERENCES ops_agents (id),
    rolled_back_at     TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    applied_operations      INTEGER,
    rollback_requested_at   TEXT,
    rollback_failure_reason TEXT
);
INSERT INTO plugin_auto_healing_logs
    (id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity,
     patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status,
     auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params,
     snapshot_id, operations, restore_operations, failure_kind, failure_reason, reviewed_by,
     reviewed_at, applied_at, rollback_trigger, rollback_reason, rolled_back_by, rolled_back_at,
     created_at, updated_at)
SELECT id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity,
     patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status,
     auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params,
     snapshot_id, operations, restore_operations, failure_kind, failure_reason, reviewed_by,
     reviewed_at, applied_at, rollback_trigger, rollback_reason, rolled_back_by, rolled_back_at,
     created_at, updated_at
FROM plugin_auto_healing_logs_0008;
DROP TABLE plugin_auto_healing_logs_0008;

-- The indexes the table had (0002, 0008), the breaker's with the new states: its
-- predicate is spelled exactly as in api::healing::store::rule_outcomes.
CREATE UNIQUE INDEX plugin_auto_healing_logs_idempotency
    ON plugin_auto_healing_logs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX plugin_auto_healing_logs_created ON plugin_auto_healing_logs (created_at);
CREATE INDEX plugin_auto_healing_logs_applied ON plugin_auto_healing_logs (applied_at)
    WHERE status = 'applied';
CREATE INDEX plugin_auto_healing_logs_rule_outcomes ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE auto_applied = TRUE
      AND status IN ('applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed');

-- Logs marked rolled_back before this migration: the request time is what was recorded,
-- and the state is what their rollback command's ack says.
UPDATE plugin_auto_healing_logs SET rollback_requested_at = rolled_back_at,
    status = CASE c.status WHEN 'succeeded' THEN 'rolled_back'
                           WHEN 'failed' THEN 'rollback_failed'
                           ELSE 'rolling_back' END,
    rolled_back_at = CASE c.status WHEN 'pending' THEN NULL ELSE c.acked_at END,
    rollback_failure_reason = CASE c.status WHEN 'failed'
        THEN substr(COALESCE(json_extract(c.ack_result, '$.error'), json_extract(c.ack_result, '$.message'),
                             'the plugin reported failure'), 1, 500) END
FROM plugin_commands c
WHERE plugin_auto_healing_logs.status = 'rolled_back'
  AND c.healing_log_id = plugin_auto_healing_logs.id AND c.command_type = 'rollback'
  AND c.status IN ('pending', 'succeeded', 'failed');
UPDATE plugin_auto_healing_logs SET applied_operations = json_array_length(operations)
WHERE status = 'applied' AND json_type(operations) = 'array';
