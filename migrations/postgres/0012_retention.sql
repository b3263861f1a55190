-- Retention (issue 16): the time-series tables are partitioned by month of arrival, so that
-- the retention job drops a whole month (DETACH then DROP) instead of deleting its rows one
-- by one; the shorter retentions of some severities are batched deletes inside the months
-- that are kept. A DEFAULT partition takes a row no month covers (the job creates each
-- month ahead of time, so it stays empty). Declarative partitioning, no extension.
-- The primary key of a partitioned table includes its partition key: (id, received_at).

CREATE FUNCTION autoheal_month_partitions(parent TEXT, since TIMESTAMPTZ, until TIMESTAMPTZ)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    month TIMESTAMPTZ := date_trunc('month', since, 'UTC');
BEGIN
    WHILE month <= until LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
            parent || to_char(month AT TIME ZONE 'UTC', '"_y"YYYY"m"MM'), parent,
            month, month + interval '1 month');
        month := month + interval '1 month';
    END LOOP;
END $$;

ALTER TABLE plugin_telemetry_events RENAME TO plugin_telemetry_events_unpartitioned;
ALTER INDEX plugin_telemetry_events_installation RENAME TO plugin_telemetry_events_unpartitioned_installation;
CREATE TABLE plugin_telemetry_events (
    id              UUID NOT NULL,
    installation_id UUID REFERENCES plugin_installations (id),
    merchant_id     UUID NOT NULL REFERENCES merchants (id),
    cms             TEXT NOT NULL,
    site_url        TEXT NOT NULL DEFAULT '',
    event_type      TEXT NOT NULL,
    severity        TEXT NOT NULL,
    event_data      JSONB NOT NULL,
    message         TEXT,
    stack_trace     TEXT,
    install_blocked BOOLEAN NOT NULL DEFAULT FALSE,
    occurred_at     TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE TABLE plugin_telemetry_events_default PARTITION OF plugin_telemetry_events DEFAULT;
SELECT autoheal_month_partitions('plugin_telemetry_events',
    LEAST(COALESCE((SELECT MIN(received_at) FROM plugin_telemetry_events_unpartitioned), now()), now()),
    now() + interval '2 months');
CREATE INDEX plugin_telemetry_events_installation ON plugin_telemetry_events (installation_id, received_at);
-- The retention job's deletes by severity and age.
CREATE INDEX plugin_telemetry_events_severity ON plugin_telemetry_events (severity, received_at);
INSERT INTO plugin_telemetry_events SELECT * FROM plugin_telemetry_events_unpartitioned;
DROP TABLE plugin_telemetry_events_unpartitioned;

ALTER TABLE health_check_history RENAME TO health_check_history_unpartitioned;
ALTER INDEX health_check_history_service RENAME TO health_check_history_unpartitioned_service;
CREATE TABLE health_check_history (
    id          UUID NOT NULL,
    service     TEXT NOT NULL,
    tier        TEXT NOT NULL CHECK (tier IN ('critical', 'core', 'integrations', 'external')),
    status      TEXT NOT NULL CHECK (status IN ('healthy', 'degraded', 'down')),
    latency_ms  DOUBLE PRECISION NOT NULL,
    detail      TEXT,
    checked_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, checked_at)
) PARTITION BY RANGE (checked_at);
CREATE TABLE health_check_history_default PARTITION OF health_check_history DEFAULT;
SELECT autoheal_month_partitions('health_check_history',
    LEAST(COALESCE((SELECT MIN(checked_at) FROM health_check_history_unpartitioned), now()), now()),
    now() + interval '2 months');
CREATE INDEX health_check_history_service ON health_check_history (service, checked_at);
INSERT INTO health_check_history SELECT * FROM health_check_history_unpartitioned;
DROP TABLE health_check_history_unpartitioned;

-- The other tables retention prunes are deleted from in batches, by age.
CREATE INDEX outbox_messages_delivered ON outbox_messages (delivered_at) WHERE status = 'delivered';
CREATE INDEX plugin_commands_finished ON plugin_commands (issued_at) WHERE status <> 'pending';
