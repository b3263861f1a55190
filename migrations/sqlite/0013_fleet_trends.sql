-- The fleet's figures per day (issue 16), written by the daily job beside each install's
-- plugin_health_metrics row, so the trends read one row per day rather than a day's worth
-- of install rows. Statuses are as the day's run found them; rates and counts are the
-- day's (from the hourly rollups, the interop events and the healing logs of that day).
CREATE TABLE fleet_daily_metrics (
    day             TEXT PRIMARY KEY,
    installs        INTEGER NOT NULL,
    active          INTEGER NOT NULL,
    outdated        INTEGER NOT NULL,
    blocked         INTEGER NOT NULL,
    error           INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    error_rate      REAL NOT NULL,
    interop_events  INTEGER NOT NULL,
    patches_applied INTEGER NOT NULL,
    patches_failed  INTEGER NOT NULL,
    recorded_at     TEXT NOT NULL
);
