-- The interop layer: events plugins send, kept raw and normalized (CloudEvents), and the
-- event mappings Ops manage through the API beside the mapping files. Mirrors
-- migrations/sqlite/0004 with native types (uuid, timestamptz, jsonb, boolean).

-- One row per source event. event_id is the deterministic CloudEvents id (platform, shop,
-- source event, delivery id or subject, payload), so a redelivery is stored once. An event
-- that cannot be normalized is stored as failed with the reason, never dropped.
CREATE TABLE plugin_interop_events (
    id                 UUID PRIMARY KEY,
    installation_id    UUID NOT NULL REFERENCES plugin_installations (id),
    merchant_id        UUID NOT NULL REFERENCES merchants (id),
    event_id           TEXT NOT NULL,
    source_platform    TEXT NOT NULL,
    source_event_type  TEXT NOT NULL,
    event_type         TEXT,
    event_category     TEXT,
    payload            JSONB NOT NULL,
    normalized_payload JSONB,
    cloud_event        JSONB,
    mapping            TEXT,
    processing_status  TEXT NOT NULL CHECK (processing_status IN ('pending', 'processed', 'failed')),
    failure_code       TEXT,
    failure_reason     TEXT,
    received_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (merchant_id, event_id)
);
CREATE INDEX plugin_interop_events_received ON plugin_interop_events (received_at);
CREATE INDEX plugin_interop_events_category ON plugin_interop_events (event_category, received_at);

-- Mappings held in the store; an active one takes precedence over a file mapping for the
-- same (platform, source event). spec is the whole validated mapping.
CREATE TABLE interop_event_mappings (
    id                    UUID PRIMARY KEY,
    source_platform       TEXT NOT NULL,
    source_event_type     TEXT NOT NULL,
    normalized_event_type TEXT NOT NULL,
    field_mappings        JSONB NOT NULL,
    spec                  JSONB NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    created_by            UUID REFERENCES ops_agents (id),
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    UNIQUE (source_platform, source_event_type)
);
