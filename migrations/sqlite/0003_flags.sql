-- Feature flags (issue 5, seed 002 Week 9). Flags also come from files
-- (rules/flags/*.json); a row here is the store's copy of a flag, which wins
-- over a file's once Ops changed it. No foreign keys to feature_flags: an
-- override or a plan may target a flag defined only in a file.

-- One row per flag the API created or changed. `definition` is the whole flag
-- as JSON (engine::FlagDefinition); type and state are repeated as columns so
-- they can be filtered. `version` increases on every write (optimistic
-- concurrency between replicas).
CREATE TABLE feature_flags (
    key         TEXT PRIMARY KEY,
    flag_type   TEXT NOT NULL CHECK (flag_type IN ('boolean', 'percentage', 'tenant_list', 'user_list', 'schedule', 'variant')),
    enabled     INTEGER NOT NULL,
    archived    INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  BLOB
);

-- A flag's value for one tenant or one user: steps 3 and 4 of the order.
CREATE TABLE feature_flag_overrides (
    id          BLOB PRIMARY KEY,
    flag_key    TEXT NOT NULL,
    scope       TEXT NOT NULL CHECK (scope IN ('tenant', 'user')),
    target      TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  BLOB
);
CREATE UNIQUE INDEX feature_flag_overrides_target ON feature_flag_overrides (flag_key, scope, target);

-- Every change of a flag, its overrides or its rollout: who, when, the state
-- before and after. Kept when the flag is deleted.
CREATE TABLE feature_flag_audit (
    id          BLOB PRIMARY KEY,
    flag_key    TEXT NOT NULL,
    action      TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    BLOB,
    request_id  TEXT,
    before      TEXT,
    after       TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX feature_flag_audit_flag ON feature_flag_audit (flag_key, at);

-- Staged rollouts: percentage steps with hold times, advanced by a background
-- job, halted when the cohort's error rate passes the threshold. At most one
-- active plan per flag.
CREATE TABLE feature_flag_rollouts (
    id                      BLOB PRIMARY KEY,
    flag_key                TEXT NOT NULL,
    steps                   TEXT NOT NULL,
    current_step            INTEGER NOT NULL,
    status                  TEXT NOT NULL CHECK (status IN ('active', 'completed', 'halted', 'cancelled')),
    error_rate_threshold    DOUBLE PRECISION NOT NULL,
    min_outcomes            INTEGER NOT NULL,
    step_started_at         TEXT NOT NULL,
    status_reason           TEXT,
    created_at              TEXT NOT NULL,
    created_by              BLOB,
    updated_at              TEXT NOT NULL
);
CREATE UNIQUE INDEX feature_flag_rollouts_active ON feature_flag_rollouts (flag_key) WHERE status = 'active';

-- Alerts the platform raises for Ops (seed 002 health alerts, seed 000
-- notifications): a halted rollout now, health monitors later.
CREATE TABLE platform_alerts (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    status          TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    summary         TEXT NOT NULL,
    labels          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    acknowledged_at TEXT,
    resolved_at     TEXT
);
CREATE INDEX platform_alerts_status ON platform_alerts (status, created_at);
