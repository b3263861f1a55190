-- Foundation: tenants (merchants), credentials, Ops agents, the fleet of plugin
-- installations with their telemetry, Ops toggles, the version registry, daily
-- health metrics and the audit log.
--
-- SQLite conventions: ids are UUIDs stored as 16-byte BLOBs, timestamps are
-- RFC 3339 UTC text (sortable as text), JSON is text, booleans are 0/1.

-- A merchant is a tenant: it sees only its own installations.
CREATE TABLE merchants (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Ops team members; permissions follow from the role.
CREATE TABLE ops_agents (
    id          BLOB PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at  TEXT NOT NULL,
    disabled_at TEXT
);

-- Every bearer secret (merchant API key, Ops token, Sira token), stored only as
-- the SHA-256 of the secret: the secret itself is printed once and never kept.
CREATE TABLE credentials (
    id            BLOB PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('merchant_key', 'ops_token', 'sira_token')),
    secret_sha256 TEXT NOT NULL UNIQUE,
    merchant_id   BLOB REFERENCES merchants (id),
    agent_id      BLOB REFERENCES ops_agents (id),
    name          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

-- One row per installed plugin, identified by (merchant, cms, site_url).
-- version_key is the semver as a text key that sorts like semver (see
-- api::version), so "outdated" can be decided in SQL.
CREATE TABLE plugin_installations (
    id                  BLOB PRIMARY KEY,
    merchant_id         BLOB NOT NULL REFERENCES merchants (id),
    cms                 TEXT NOT NULL,
    site_url            TEXT NOT NULL DEFAULT '',
    plugin_version      TEXT NOT NULL,
    version_key         TEXT NOT NULL,
    sdk_language        TEXT,
    environment         TEXT NOT NULL,
    php_version         TEXT,
    wordpress_version   TEXT,
    server_info         TEXT,
    reported_state      TEXT,
    reported_error_rate REAL NOT NULL DEFAULT 0,
    heartbeat_count     INTEGER NOT NULL DEFAULT 0,
    first_seen_at       TEXT NOT NULL,
    last_heartbeat      TEXT NOT NULL,
    UNIQUE (merchant_id, cms, site_url)
);
CREATE INDEX plugin_installations_cms ON plugin_installations (cms, version_key);
CREATE INDEX plugin_installations_last_heartbeat ON plugin_installations (last_heartbeat);

-- Ops switches per installation. A toggle is active while lifted_at is null
-- and it has not expired; setting a key again lifts the previous row, so the
-- table is also the toggle history.
CREATE TABLE plugin_ops_toggles (
    id              BLOB PRIMARY KEY,
    installation_id BLOB NOT NULL REFERENCES plugin_installations (id),
    toggle_key      TEXT NOT NULL CHECK (toggle_key IN ('block_plugin', 'force_update', 'enable_debug', 'rate_limit')),
    toggle_value    TEXT NOT NULL,
    reason          TEXT NOT NULL,
    expires_at      TEXT,
    created_by      BLOB NOT NULL REFERENCES ops_agents (id),
    created_at      TEXT NOT NULL,
    lifted_at       TEXT,
    lifted_by       BLOB REFERENCES ops_agents (id)
);
CREATE UNIQUE INDEX plugin_ops_toggles_current
    ON plugin_ops_toggles (installation_id, toggle_key) WHERE lifted_at IS NULL;

-- Telemetry events as the plugin sent them, after redaction. installation_id
-- is null when the plugin sent an event before its first heartbeat; merchant,
-- cms and site_url keep such an event attributable.
CREATE TABLE plugin_telemetry_events (
    id              BLOB PRIMARY KEY,
    installation_id BLOB REFERENCES plugin_installations (id),
    merchant_id     BLOB NOT NULL REFERENCES merchants (id),
    cms             TEXT NOT NULL,
    site_url        TEXT NOT NULL DEFAULT '',
    event_type      TEXT NOT NULL,
    severity        TEXT NOT NULL,
    event_data      TEXT NOT NULL,
    message         TEXT,
    stack_trace     TEXT,
    install_blocked INTEGER NOT NULL DEFAULT 0,
    occurred_at     TEXT,
    received_at     TEXT NOT NULL
);
CREATE INDEX plugin_telemetry_events_installation
    ON plugin_telemetry_events (installation_id, received_at);

-- The official releases per cms; at most one is the latest.
CREATE TABLE plugin_versions_registry (
    id            BLOB PRIMARY KEY,
    cms           TEXT NOT NULL,
    version       TEXT NOT NULL,
    version_key   TEXT NOT NULL,
    is_latest     INTEGER NOT NULL DEFAULT 0,
    security      INTEGER NOT NULL DEFAULT 0,
    min_supported TEXT,
    release_notes TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    created_by    BLOB REFERENCES ops_agents (id),
    UNIQUE (cms, version)
);
CREATE UNIQUE INDEX plugin_versions_registry_latest
    ON plugin_versions_registry (cms) WHERE is_latest = 1;

-- One row per installation and day, written by the daily monitoring job.
CREATE TABLE plugin_health_metrics (
    installation_id BLOB NOT NULL REFERENCES plugin_installations (id),
    day             TEXT NOT NULL,
    plugin_version  TEXT NOT NULL,
    status          TEXT NOT NULL,
    heartbeats      INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    error_rate      REAL NOT NULL,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (installation_id, day)
);

-- Who did what, when, from which request: every Ops action lands here.
CREATE TABLE audit_log (
    id          BLOB PRIMARY KEY,
    actor_kind  TEXT NOT NULL,
    actor_id    BLOB,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    details     TEXT NOT NULL,
    request_id  TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
