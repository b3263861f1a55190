-- Signed commands (issue 18); see the PostgreSQL 0018 for what each change means. SQLite
-- cannot change a CHECK constraint in place, so the commands and the logs are rebuilt as
-- in 0009: copied aside, dropped, created anew with the `refused` state (and the commands'
-- sequence), and copied back, with foreign-key checks deferred to the commit so that it
-- fails if any row were lost.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE install_command_sequences (
    installation_id BLOB PRIMARY KEY REFERENCES plugin_installations (id),
    last_sequence   INTEGER NOT NULL
);

CREATE TABLE plugin_commands_0017 AS SELECT * FROM plugin_commands;
DROP TABLE plugin_commands;
CREATE TABLE plugin_auto_healing_logs_0017 AS SELECT * FROM plugin_auto_healing_logs;
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
                          'rolling_back', 'rolled_back', 'rollback_failed', 'rejected', 'refused')),
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
    rollback_failure_reason TEXT,
    reported_error_rate_at_apply REAL
);
INSERT INTO plugin_auto_healing_logs
    (id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity,
     patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status,
     auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params,
     snapshot_id, operations, restore_operations, failure_kind, failure_reason, reviewed_by,
     reviewed_at, applied_at, rollback_trigger, rollback_reason, rolled_back_by, rolled_back_at,
     created_at, updated_at, applied_operations, rollback_requested_at, rollback_failure_reason,
     reported_error_rate_at_apply)
SELECT id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity,
     patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status,
     auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params,
     snapshot_id, operations, restore_operations, failure_kind, failure_reason, reviewed_by,
     reviewed_at, applied_at, rollback_trigger, rollback_reason, rolled_back_by, rolled_back_at,
     created_at, updated_at, applied_operations, rollback_requested_at, rollback_failure_reason,
     reported_error_rate_at_apply
FROM plugin_auto_healing_logs_0017;
DROP TABLE plugin_auto_healing_logs_0017;
CREATE UNIQUE INDEX plugin_auto_healing_logs_idempotency
    ON plugin_auto_healing_logs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX plugin_auto_healing_logs_created ON plugin_auto_healing_logs (created_at);
CREATE INDEX plugin_auto_healing_logs_applied ON plugin_auto_healing_logs (applied_at)
    WHERE status = 'applied';
CREATE INDEX plugin_auto_healing_logs_rule_outcomes ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE auto_applied = TRUE
      AND status IN ('applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed');

CREATE TABLE plugin_commands (
    id              BLOB PRIMARY KEY,
    installation_id BLOB NOT NULL REFERENCES plugin_installations (id),
    healing_log_id  BLOB NOT NULL REFERENCES plugin_auto_healing_logs (id),
    command_type    TEXT NOT NULL CHECK (command_type IN ('apply_patch', 'rollback')),
    command_payload TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled', 'refused')),
    issued_at       TEXT NOT NULL,
    leased_until    TEXT,
    deliveries      INTEGER NOT NULL DEFAULT 0,
    acked_at        TEXT,
    ack_result      TEXT,
    sequence        INTEGER
);
INSERT INTO plugin_commands
    (id, installation_id, healing_log_id, command_type, command_payload, priority, status,
     issued_at, leased_until, deliveries, acked_at, ack_result)
SELECT id, installation_id, healing_log_id, command_type, command_payload, priority, status,
     issued_at, leased_until, deliveries, acked_at, ack_result
FROM plugin_commands_0017;
DROP TABLE plugin_commands_0017;
CREATE INDEX plugin_commands_queue ON plugin_commands (installation_id, status, priority, issued_at);
CREATE INDEX plugin_commands_finished ON plugin_commands (issued_at) WHERE status <> 'pending';
