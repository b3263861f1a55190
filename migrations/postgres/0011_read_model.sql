-- The fleet read model (issue 16): what the Ops reads need, kept on write, so that a read
-- costs what it returns rather than what the fleet holds. Mirrors migrations/sqlite/0011.

-- Per install and hour: its events, its payment outcomes and errors (payment_success,
-- payment_failed, error) and the errors among them. The group-commit writer adds a batch's
-- events here in one statement beside the events themselves. Retention deletes raw events;
-- these rows outlive them (they are what the error rate and the trends read).
CREATE TABLE plugin_event_rollups (
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    hour            TIMESTAMPTZ NOT NULL,
    merchant_id     UUID NOT NULL,
    events          BIGINT NOT NULL,
    outcomes        BIGINT NOT NULL,
    errors          BIGINT NOT NULL,
    PRIMARY KEY (installation_id, hour)
);
CREATE INDEX plugin_event_rollups_hour ON plugin_event_rollups (hour);

INSERT INTO plugin_event_rollups (installation_id, hour, merchant_id, events, outcomes, errors)
SELECT installation_id, date_trunc('hour', received_at, 'UTC'), merchant_id, COUNT(*),
       SUM(CASE WHEN event_type IN ('payment_success', 'payment_failed', 'error') THEN 1 ELSE 0 END),
       SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END)
FROM plugin_telemetry_events
WHERE installation_id IS NOT NULL
GROUP BY installation_id, date_trunc('hour', received_at, 'UTC'), merchant_id;

-- How many installs run each (cms, version_key): the overview's totals, its cms breakdown
-- and the outdated count are sums over this small table. Triggers keep it exact in the
-- transaction that changes an install; rows that reach 0 stay (reads skip them).
CREATE TABLE fleet_version_counts (
    cms         TEXT NOT NULL,
    version_key TEXT COLLATE "C" NOT NULL,
    installs    BIGINT NOT NULL,
    PRIMARY KEY (cms, version_key)
);

INSERT INTO fleet_version_counts (cms, version_key, installs)
SELECT cms, version_key, COUNT(*) FROM plugin_installations GROUP BY cms, version_key;

-- A version change moves one install between two counters; they are changed in key order,
-- so two such changes never wait on each other in opposite orders.
CREATE FUNCTION fleet_version_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    removed_first BOOLEAN := TG_OP = 'DELETE'
        OR (TG_OP = 'UPDATE' AND (OLD.cms, OLD.version_key) < (NEW.cms, NEW.version_key));
BEGIN
    IF removed_first THEN
        UPDATE fleet_version_counts SET installs = installs - 1
        WHERE cms = OLD.cms AND version_key = OLD.version_key;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO fleet_version_counts (cms, version_key, installs)
        VALUES (NEW.cms, NEW.version_key, 1)
        ON CONFLICT (cms, version_key) DO UPDATE SET installs = fleet_version_counts.installs + 1;
    END IF;
    IF TG_OP = 'UPDATE' AND NOT removed_first THEN
        UPDATE fleet_version_counts SET installs = installs - 1
        WHERE cms = OLD.cms AND version_key = OLD.version_key;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER plugin_installations_counted
    AFTER INSERT OR DELETE ON plugin_installations
    FOR EACH ROW EXECUTE FUNCTION fleet_version_counts_track();
CREATE TRIGGER plugin_installations_recounted
    AFTER UPDATE OF cms, version_key ON plugin_installations
    FOR EACH ROW WHEN (OLD.cms IS DISTINCT FROM NEW.cms OR OLD.version_key IS DISTINCT FROM NEW.version_key)
    EXECUTE FUNCTION fleet_version_counts_track();

-- The list is ordered by (last_heartbeat, id) descending and paged by that key; a
-- merchant's list by the same key within the merchant.
DROP INDEX plugin_installations_last_heartbeat;
CREATE INDEX plugin_installations_last_heartbeat ON plugin_installations (last_heartbeat, id);
CREATE INDEX plugin_installations_merchant_heartbeat
    ON plugin_installations (merchant_id, last_heartbeat, id);

-- The installs under an active toggle of a kind (the blocked ones) without a pass over all.
CREATE INDEX plugin_ops_toggles_active_key
    ON plugin_ops_toggles (toggle_key, installation_id) WHERE lifted_at IS NULL;
