-- Foundation: tenants (merchants), credentials, Ops agents, the fleet of plugin
-- installations with their telemetry, Ops toggles, the version registry, daily
-- health metrics and the audit log. Mirrors migrations/sqlite/0001 with native
-- types (uuid, timestamptz, jsonb, boolean).

-- A merchant is a tenant: it sees only its own installations.
CREATE TABLE merchants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Ops team members; permissions follow from the role.
CREATE TABLE ops_agents (
    id          UUID PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at  TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);

-- Every bearer secret (merchant API key, Ops token, Sira token), stored only as
-- the SHA-256 of the secret: the secret itself is printed once and never kept.
CREATE TABLE credentials (
    id            UUID PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('merchant_key', 'ops_token', 'sira_token')),
    secret_sha256 TEXT NOT NULL UNIQUE,
    merchant_id   UUID REFERENCES merchants (id),
    agent_id      UUID REFERENCES ops_agents (id),
    name          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);

-- One row per installed plugin, identified by (merchant, cms, site_url).
-- version_key is the semver as a text key that sorts like semver (see
-- api::version); COLLATE "C" makes it sort bytewise, whatever the locale.
CREATE TABLE plugin_installations (
    id                  UUID PRIMARY KEY,
    merchant_id         UUID NOT NULL REFERENCES merchants (id),
    cms                 TEXT NOT NULL,
    site_url            TEXT NOT NULL DEFAULT '',
    plugin_version      TEXT NOT NULL,
    version_key         TEXT COLLATE "C" NOT NULL,
    sdk_language        TEXT,
    environment         TEXT NOT NULL,
    php_version         TEXT,
    wordpress_version   TEXT,
    server_info         JSONB,
    reported_state      JSONB,
    reported_error_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
    heartbeat_count     BIGINT NOT NULL DEFAULT 0,
    first_seen_at       TIMESTAMPTZ NOT NULL,
    last_heartbeat      TIMESTAMPTZ NOT NULL,
    UNIQUE (merchant_id, cms, site_url)
);
CREATE INDEX plugin_installations_cms ON plugin_installations (cms, version_key);
CREATE INDEX plugin_installations_last_heartbeat ON plugin_installations (last_heartbeat);

-- Ops switches per installation. A toggle is active while lifted_at is null
-- and it has not expired; setting a key again lifts the previous row, so the
-- table is also the toggle history.
CREATE TABLE plugin_ops_toggles (
    id              UUID PRIMARY KEY,
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    toggle_key      TEXT NOT NULL CHECK (toggle_key IN ('block_plugin', 'force_update', 'enable_debug', 'rate_limit')),
    toggle_value    JSONB NOT NULL,
    reason          TEXT NOT NULL,
    expires_at      TIMESTAMPTZ,
    created_by      UUID NOT NULL REFERENCES ops_agents (id),
    created_at      TIMESTAMPTZ NOT NULL,
    lifted_at       TIMESTAMPTZ,
    lifted_by       UUID REFERENCES ops_agents (id)
);
CREATE UNIQUE INDEX plugin_ops_toggles_current
    ON plugin_ops_toggles (installation_id, toggle_key) WHERE lifted_at IS NULL;

-- Telemetry events as the plugin sent them, after redaction. installation_id
-- is null when the plugin sent an event before its first heartbeat; merchant,
-- cms and site_url keep such an event attributable.
CREATE TABLE plugin_telemetry_events (
    id              UUID PRIMARY KEY,
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
    received_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_telemetry_events_installation
    ON plugin_telemetry_events (installation_id, received_at);

-- The official releases per cms; at most one is the latest.
CREATE TABLE plugin_versions_registry (
    id            UUID PRIMARY KEY,
    cms           TEXT NOT NULL,
    version       TEXT NOT NULL,
    version_key   TEXT COLLATE "C" NOT NULL,
    is_latest     BOOLEAN NOT NULL DEFAULT FALSE,
    security      BOOLEAN NOT NULL DEFAULT FALSE,
    min_supported TEXT,
    release_notes TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    UUID REFERENCES ops_agents (id),
    UNIQUE (cms, version)
);
CREATE UNIQUE INDEX plugin_versions_registry_latest
    ON plugin_versions_registry (cms) WHERE is_latest;

-- One row per installation and day, written by the daily monitoring job.
CREATE TABLE plugin_health_metrics (
    installation_id UUID NOT NULL REFERENCES plugin_installations (id),
    day             DATE NOT NULL,
    plugin_version  TEXT NOT NULL,
    status          TEXT NOT NULL,
    heartbeats      BIGINT NOT NULL,
    events          BIGINT NOT NULL,
    errors          BIGINT NOT NULL,
    error_rate      DOUBLE PRECISION NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (installation_id, day)
);

-- Who did what, when, from which request: every Ops action lands here.
CREATE TABLE audit_log (
    id          UUID PRIMARY KEY,
    actor_kind  TEXT NOT NULL,
    actor_id    UUID,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    details     JSONB NOT NULL,
    request_id  TEXT,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
