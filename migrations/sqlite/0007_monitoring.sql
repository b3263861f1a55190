-- Monitoring (seeds 000, 002): scheduled job runs (so a job runs once across replicas and a
-- missed run is caught up after a restart), health checks of the dependencies, and who
-- acknowledged and resolved an alert. Conventions as in 0001.

CREATE TABLE scheduled_job_runs (
    job              TEXT PRIMARY KEY,
    last_started_at  TEXT,
    last_finished_at TEXT,
    last_status      TEXT CHECK (last_status IN ('running', 'ok', 'failed')),
    last_error       TEXT,
    runs             INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE health_check_history (
    id          BLOB PRIMARY KEY,
    service     TEXT NOT NULL,
    tier        TEXT NOT NULL CHECK (tier IN ('critical', 'core', 'integrations', 'external')),
    status      TEXT NOT NULL CHECK (status IN ('healthy', 'degraded', 'down')),
    latency_ms  REAL NOT NULL,
    detail      TEXT,
    checked_at  TEXT NOT NULL
);
CREATE INDEX health_check_history_service ON health_check_history (service, checked_at);

ALTER TABLE platform_alerts ADD COLUMN acknowledged_by BLOB REFERENCES ops_agents (id);
ALTER TABLE platform_alerts ADD COLUMN resolved_by BLOB REFERENCES ops_agents (id);
