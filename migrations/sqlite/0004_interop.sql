-- The interop layer: events plugins send, kept raw and normalized (CloudEvents), and the
-- event mappings Ops manage through the API beside the mapping files. Conventions as in
-- 0001 (UUID BLOBs, RFC 3339 text, JSON text, 0/1 booleans).

-- One row per source event. event_id is the deterministic CloudEvents id (platform, shop,
-- source event, delivery id or subject, payload), so a redelivery is stored once. An event
-- that cannot be normalized is stored as failed with the reason, never dropped.
CREATE TABLE plugin_interop_events (
    id                 BLOB PRIMARY KEY,
    installation_id    BLOB NOT NULL REFERENCES plugin_installations (id),
    merchant_id        BLOB NOT NULL REFERENCES merchants (id),
    event_id           TEXT NOT NULL,
    source_platform    TEXT NOT NULL,
    source_event_type  TEXT NOT NULL,
    event_type         TEXT,
    event_category     TEXT,
    payload            TEXT NOT NULL,
    normalized_payload TEXT,
    cloud_event        TEXT,
    mapping            TEXT,
    processing_status  TEXT NOT NULL CHECK (processing_status IN ('pending', 'processed', 'failed')),
    failure_code       TEXT,
    failure_reason     TEXT,
    received_at        TEXT NOT NULL,
    UNIQUE (merchant_id, event_id)
);
CREATE INDEX plugin_interop_events_received ON plugin_interop_events (received_at);
CREATE INDEX plugin_interop_events_category ON plugin_interop_events (event_category, received_at);

-- Mappings held in the store; an active one takes precedence over a file mapping for the
-- same (platform, source event). spec is the whole validated mapping.
CREATE TABLE interop_event_mappings (
    id                    BLOB PRIMARY KEY,
    source_platform       TEXT NOT NULL,
    source_event_type     TEXT NOT NULL,
    normalized_event_type TEXT NOT NULL,
    field_mappings        TEXT NOT NULL,
    spec                  TEXT NOT NULL,
    is_active             INTEGER NOT NULL DEFAULT 1,
    created_by            BLOB REFERENCES ops_agents (id),
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (source_platform, source_event_type)
);
