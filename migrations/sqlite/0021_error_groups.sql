-- Error groups (issue 20): the plugins' error events and the platform's error logs, grouped
-- by a versioned fingerprint; see the PostgreSQL 0021 for why each table exists.
-- Conventions as in 0001 (UUID BLOBs, RFC 3339 text, JSON text).

CREATE TABLE error_groups (
    id                  BLOB PRIMARY KEY,
    fingerprint_version INTEGER NOT NULL,
    fingerprint         TEXT NOT NULL,
    title               TEXT NOT NULL,
    pattern             TEXT NOT NULL,
    frames              TEXT NOT NULL,
    first_seen          TEXT NOT NULL,
    last_seen           TEXT NOT NULL,
    events              INTEGER NOT NULL,
    installs            INTEGER NOT NULL DEFAULT 0,
    merchants           INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL DEFAULT 'unresolved'
                        CHECK (status IN ('unresolved', 'resolved', 'ignored')),
    status_changed_at   TEXT,
    status_changed_by   BLOB REFERENCES ops_agents (id),
    UNIQUE (fingerprint_version, fingerprint)
);
CREATE INDEX error_groups_last_seen ON error_groups (last_seen DESC, id DESC);
CREATE INDEX error_groups_status ON error_groups (status, last_seen DESC, id DESC);

CREATE TABLE error_group_installs (
    group_id        BLOB NOT NULL REFERENCES error_groups (id),
    installation_id BLOB NOT NULL REFERENCES plugin_installations (id),
    merchant_id     BLOB NOT NULL REFERENCES merchants (id),
    events          INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    PRIMARY KEY (group_id, installation_id)
);

CREATE TABLE error_group_merchants (
    group_id    BLOB NOT NULL REFERENCES error_groups (id),
    merchant_id BLOB NOT NULL REFERENCES merchants (id),
    PRIMARY KEY (group_id, merchant_id)
);

CREATE TABLE error_occurrences (
    id              BLOB PRIMARY KEY,
    group_id        BLOB NOT NULL REFERENCES error_groups (id),
    source          TEXT NOT NULL CHECK (source IN ('telemetry', 'interop', 'log')),
    source_id       BLOB NOT NULL,
    installation_id BLOB,
    merchant_id     BLOB,
    cms             TEXT,
    message         TEXT NOT NULL,
    received_at     TEXT NOT NULL
);
CREATE INDEX error_occurrences_group ON error_occurrences (group_id, received_at);
CREATE INDEX error_occurrences_received ON error_occurrences (received_at);
CREATE INDEX error_occurrences_install ON error_occurrences (group_id, installation_id, received_at)
    WHERE installation_id IS NOT NULL;
