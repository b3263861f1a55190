-- Error groups (issue 20): the plugins' error events (telemetry `error` and `payment_failed`,
-- interop `plugin.error`) and the platform's error logs, grouped by a versioned fingerprint
-- of the parameterized message and the in-app stack frames (`engine::fingerprint`). Every
-- table is written in the transaction of the event it comes from, so a group never misses
-- an accepted event and its counters are exact. Mirrors migrations/sqlite/0021.

-- One row per fingerprint: what Ops list, resolve and ignore, with the counters a list
-- shows kept beside it (a page never counts occurrences). A change of the fingerprinting
-- algorithm is a new version, so it starts new groups instead of silently regrouping old
-- ones. `status_changed_by` is the Ops agent; NULL with a `status_changed_at` is the
-- server reopening a resolved group on its recurrence.
CREATE TABLE error_groups (
    id                  UUID PRIMARY KEY,
    fingerprint_version INTEGER NOT NULL,
    fingerprint         TEXT NOT NULL,
    title               TEXT NOT NULL,
    pattern             TEXT NOT NULL,
    frames              JSONB NOT NULL,
    first_seen          TIMESTAMPTZ NOT NULL,
    last_seen           TIMESTAMPTZ NOT NULL,
    events              BIGINT NOT NULL,
    installs            BIGINT NOT NULL DEFAULT 0,
    merchants           BIGINT NOT NULL DEFAULT 0,
    status              TEXT NOT NULL DEFAULT 'unresolved'
                        CHECK (status IN ('unresolved', 'resolved', 'ignored')),
    status_changed_at   TIMESTAMPTZ,
    status_changed_by   UUID REFERENCES ops_agents (id),
    UNIQUE (fingerprint_version, fingerprint)
);
-- The list: newest last_seen first, by status (the default filter) or across them all.
CREATE INDEX error_groups_last_seen ON error_groups (last_seen DESC, id DESC);
CREATE INDEX error_groups_status ON error_groups (status, last_seen DESC, id DESC);

-- The installs a group affected, with their own counts: what `installs` counts (a row is
-- new exactly when an install first reports the group) and the detail's top installs.
CREATE TABLE error_group_installs (
    group_id        UUID NOT NULL REFERENCES error_groups (id),
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    merchant_id     UUID NOT NULL REFERENCES merchants (id),
    events          BIGINT NOT NULL,
    first_seen      TIMESTAMPTZ NOT NULL,
    last_seen       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_id, installation_id)
);

-- The merchants a group affected, once each: what `merchants` counts exactly (several
-- installs of a merchant, or an event from an install not yet known, count it once).
CREATE TABLE error_group_merchants (
    group_id    UUID NOT NULL REFERENCES error_groups (id),
    merchant_id UUID NOT NULL REFERENCES merchants (id),
    PRIMARY KEY (group_id, merchant_id)
);

-- Each grouped event, pointing at its source row (a telemetry event, an interop event, a
-- log entry): the detail's samples and hourly counts, and the bursts the detector looks
-- for. Kept for a retention of its own (the groups and their counters outlive it); no
-- foreign key on the source, which retention prunes on its own schedule.
CREATE TABLE error_occurrences (
    id              UUID PRIMARY KEY,
    group_id        UUID NOT NULL REFERENCES error_groups (id),
    source          TEXT NOT NULL CHECK (source IN ('telemetry', 'interop', 'log')),
    source_id       UUID NOT NULL,
    installation_id UUID,
    merchant_id     UUID,
    cms             TEXT,
    message         TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL
);
-- A group's samples and hourly counts.
CREATE INDEX error_occurrences_group ON error_occurrences (group_id, received_at);
-- The detector's window over every group, and retention by age.
CREATE INDEX error_occurrences_received ON error_occurrences (received_at);
-- The occurrences of group G on install I since T (what a detection cites).
CREATE INDEX error_occurrences_install ON error_occurrences (group_id, installation_id, received_at)
    WHERE installation_id IS NOT NULL;
