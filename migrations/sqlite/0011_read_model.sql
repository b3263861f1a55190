-- The fleet read model (issue 16): what the Ops reads need, kept on write, so that a read
-- costs what it returns rather than what the fleet holds. See migrations/postgres/0011.

-- Per install and hour (RFC 3339 text of the hour's start): its events, its payment
-- outcomes and errors, and the errors among them. Written with the events, in the same
-- batch; they outlive the raw events retention deletes.
CREATE TABLE plugin_event_rollups (
    installation_id BLOB NOT NULL REFERENCES plugin_installations (id),
    hour            TEXT NOT NULL,
    merchant_id     BLOB NOT NULL,
    events          INTEGER NOT NULL,
    outcomes        INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    PRIMARY KEY (installation_id, hour)
) WITHOUT ROWID;
CREATE INDEX plugin_event_rollups_hour ON plugin_event_rollups (hour);

INSERT INTO plugin_event_rollups (installation_id, hour, merchant_id, events, outcomes, errors)
SELECT installation_id, strftime('%Y-%m-%dT%H:00:00+00:00', received_at), merchant_id, COUNT(*),
       SUM(CASE WHEN event_type IN ('payment_success', 'payment_failed', 'error') THEN 1 ELSE 0 END),
       SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END)
FROM plugin_telemetry_events
WHERE installation_id IS NOT NULL
GROUP BY installation_id, strftime('%Y-%m-%dT%H:00:00+00:00', received_at), merchant_id;

-- How many installs run each (cms, version_key), kept exact by triggers (SQLite's single
-- writer orders every change); rows that reach 0 stay (reads skip them). A counter row is
-- created only when missing rather than by INSERT OR IGNORE: the conflict clause of the
-- statement that fires a trigger overrides the trigger's own (the heartbeat's upsert would
-- turn the IGNORE into an abort).
CREATE TABLE fleet_version_counts (
    cms         TEXT NOT NULL,
    version_key TEXT NOT NULL,
    installs    INTEGER NOT NULL,
    PRIMARY KEY (cms, version_key)
) WITHOUT ROWID;

INSERT INTO fleet_version_counts (cms, version_key, installs)
SELECT cms, version_key, COUNT(*) FROM plugin_installations GROUP BY cms, version_key;

CREATE TRIGGER plugin_installations_counted AFTER INSERT ON plugin_installations BEGIN
    INSERT INTO fleet_version_counts (cms, version_key, installs)
    SELECT NEW.cms, NEW.version_key, 0 WHERE NOT EXISTS
        (SELECT 1 FROM fleet_version_counts WHERE cms = NEW.cms AND version_key = NEW.version_key);
    UPDATE fleet_version_counts SET installs = installs + 1
    WHERE cms = NEW.cms AND version_key = NEW.version_key;
END;
CREATE TRIGGER plugin_installations_uncounted AFTER DELETE ON plugin_installations BEGIN
    UPDATE fleet_version_counts SET installs = installs - 1
    WHERE cms = OLD.cms AND version_key = OLD.version_key;
END;
CREATE TRIGGER plugin_installations_recounted AFTER UPDATE OF cms, version_key ON plugin_installations
WHEN OLD.cms IS NOT NEW.cms OR OLD.version_key IS NOT NEW.version_key BEGIN
    UPDATE fleet_version_counts SET installs = installs - 1
    WHERE cms = OLD.cms AND version_key = OLD.version_key;
    INSERT INTO fleet_version_counts (cms, version_key, installs)
    SELECT NEW.cms, NEW.version_key, 0 WHERE NOT EXISTS
        (SELECT 1 FROM fleet_version_counts WHERE cms = NEW.cms AND version_key = NEW.version_key);
    UPDATE fleet_version_counts SET installs = installs + 1
    WHERE cms = NEW.cms AND version_key = NEW.version_key;
END;

DROP INDEX plugin_installations_last_heartbeat;
CREATE INDEX plugin_installations_last_heartbeat ON plugin_installations (last_heartbeat, id);
CREATE INDEX plugin_installations_merchant_heartbeat
    ON plugin_installations (merchant_id, last_heartbeat, id);

CREATE INDEX plugin_ops_toggles_active_key
    ON plugin_ops_toggles (toggle_key, installation_id) WHERE lifted_at IS NULL;
