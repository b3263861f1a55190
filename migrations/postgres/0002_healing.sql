-- The healing loop: Sira's detections and what became of them, the snapshots
-- taken before a patch, the commands queued for plugins, and the per-rule
-- auto-apply breaker. Mirrors migrations/sqlite/0002 with native types
-- (uuid, timestamptz, jsonb, boolean).

-- An installation's reported state as the host saw it before a patch: what a
-- rollback restores. Never updated.
CREATE TABLE plugin_snapshots (
    id              UUID PRIMARY KEY,
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    plugin_version  TEXT NOT NULL,
    state           JSONB NOT NULL,
    state_sha256    TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_snapshots_installation ON plugin_snapshots (installation_id, created_at);

-- One row per detection. status follows a strict state machine (see
-- api::healing): pending_review → approved → applied | failed → rolled_back,
-- or rejected. decision holds the rule, the numbers and the trace that decided.
CREATE TABLE plugin_auto_healing_logs (
    id                 UUID PRIMARY KEY,
    installation_id    UUID NOT NULL REFERENCES plugin_installations (id),
    merchant_id        UUID NOT NULL REFERENCES merchants (id),
    cms                TEXT NOT NULL,
    plugin_version     TEXT NOT NULL,
    detected_issue     TEXT NOT NULL,
    issue_severity     TEXT NOT NULL,
    patch_type         TEXT,
    proposed_patch     JSONB,
    sira_confidence    DOUBLE PRECISION NOT NULL,
    idempotency_key    TEXT,
    request_sha256     TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('pending_review', 'approved', 'applied', 'failed', 'rolled_back', 'rejected')),
    auto_applied       BOOLEAN NOT NULL DEFAULT FALSE,
    rule_name          TEXT,
    decision           JSONB NOT NULL,
    patch_name         TEXT,
    patch_version      TEXT,
    bundle_sha256      TEXT,
    patch_params       JSONB,
    snapshot_id        UUID REFERENCES plugin_snapshots (id),
    operations         JSONB,
    restore_operations JSONB,
    failure_kind       TEXT,
    failure_reason     TEXT,
    reviewed_by        UUID REFERENCES ops_agents (id),
    reviewed_at        TIMESTAMPTZ,
    applied_at         TIMESTAMPTZ,
    rollback_trigger   TEXT CHECK (rollback_trigger IN ('ops', 'failed_ack', 'regression')),
    rollback_reason    TEXT,
    rolled_back_by     UUID REFERENCES ops_agents (id),
    rolled_back_at     TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX plugin_auto_healing_logs_idempotency
    ON plugin_auto_healing_logs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX plugin_auto_healing_logs_created ON plugin_auto_healing_logs (created_at);
CREATE INDEX plugin_auto_healing_logs_status ON plugin_auto_healing_logs (status, created_at);
CREATE INDEX plugin_auto_healing_logs_rule ON plugin_auto_healing_logs (rule_name, created_at);
CREATE INDEX plugin_auto_healing_logs_installation ON plugin_auto_healing_logs (installation_id, created_at);

-- Work for a plugin. A poll leases pending commands (leased_until); a command
-- whose lease runs out without an ack is handed out again, so a plugin that
-- dies mid-command loses nothing. An ack is final and idempotent.
CREATE TABLE plugin_commands (
    id              UUID PRIMARY KEY,
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    healing_log_id  UUID NOT NULL REFERENCES plugin_auto_healing_logs (id),
    command_type    TEXT NOT NULL CHECK (command_type IN ('apply_patch', 'rollback')),
    command_payload JSONB NOT NULL,
    priority        INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    issued_at       TIMESTAMPTZ NOT NULL,
    leased_until    TIMESTAMPTZ,
    deliveries      INTEGER NOT NULL DEFAULT 0,
    acked_at        TIMESTAMPTZ,
    ack_result      JSONB
);
CREATE INDEX plugin_commands_queue ON plugin_commands (installation_id, status, priority, issued_at);
CREATE INDEX plugin_commands_log ON plugin_commands (healing_log_id);

-- The per-rule breaker: a rule whose auto-applied patches fail or roll back
-- too often stops auto-applying (its detections wait for Ops) until Ops
-- resume it. No row means the rule runs as its file says.
CREATE TABLE healing_rule_breakers (
    rule_name        TEXT PRIMARY KEY,
    suspended        BOOLEAN NOT NULL,
    reason           TEXT NOT NULL,
    changed_by       UUID REFERENCES ops_agents (id),
    changed_at       TIMESTAMPTZ NOT NULL
);
