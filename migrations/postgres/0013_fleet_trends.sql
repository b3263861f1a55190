-- The fleet's figures per day (issue 16), written by the daily job beside each install's
-- plugin_health_metrics row, so the trends read one row per day rather than a day's worth
-- of install rows. Statuses are as the day's run found them; rates and counts are the
-- day's (from the hourly rollups, the interop events and the healing logs of that day).
CREATE TABLE fleet_daily_metrics (
    day             DATE PRIMARY KEY,
    installs        BIGINT NOT NULL,
    active          BIGINT NOT NULL,
    outdated        BIGINT NOT NULL,
    blocked         BIGINT NOT NULL,
    error           BIGINT NOT NULL,
    events          BIGINT NOT NULL,
    errors          BIGINT NOT NULL,
    error_rate      DOUBLE PRECISION NOT NULL,
    interop_events  BIGINT NOT NULL,
    patches_applied BIGINT NOT NULL,
    patches_failed  BIGINT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL
);
