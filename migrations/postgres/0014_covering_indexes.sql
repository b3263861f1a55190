-- Indexes that carry what the hot reads need (issue 16).
--
-- The stale installs (no heartbeat for 48 h) are counted per status and cms on every
-- overview and filtered list. The heartbeat index carries each install's cms and version key
-- so that those counts can be index-only scans, not a heap fetch per stale install (10,000
-- at a million installs). The list's pages walk the same index in (last_heartbeat, id)
-- order as before.
DROP INDEX plugin_installations_last_heartbeat;
CREATE INDEX plugin_installations_last_heartbeat
    ON plugin_installations (last_heartbeat, id) INCLUDE (cms, version_key);

-- The fleet's error rates (the snapshot behind the overview and /metrics) read the window's
-- rollups by hour and the installs that report a rate. Both indexes carry what the figures
-- need, so the refresh can read index ranges only rather than every fresh install's row.
DROP INDEX plugin_event_rollups_hour;
CREATE INDEX plugin_event_rollups_hour
    ON plugin_event_rollups (hour) INCLUDE (installation_id, outcomes, errors);
CREATE INDEX plugin_installations_reported_rate
    ON plugin_installations (last_heartbeat) INCLUDE (id, reported_error_rate)
    WHERE reported_error_rate > 0;
