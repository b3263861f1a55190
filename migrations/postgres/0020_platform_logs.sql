-- Platform logs (issue 20, seed 002's structured logging): the server's own important
-- events (every Ops action, healing decision, delivery failure, job run) with the merchant,
-- the Ops agent and the request they concern, written in batches by the buffered writer of
-- `api/src/logs`. Partitioned by month like the telemetry (0012): retention drops a month
-- whose every entry is past the longest level's retention, and deletes the shorter-lived
-- levels' entries in batches within the months kept.
CREATE TABLE platform_logs (
    id             UUID NOT NULL,
    logged_at      TIMESTAMPTZ NOT NULL,
    level          TEXT NOT NULL CHECK (level IN ('error', 'warn', 'info', 'debug')),
    merchant_id    UUID,
    -- The merchant's name as a slug when the entry was written (seed 002's tenantSlug).
    merchant_slug  TEXT,
    agent_id       UUID,
    request_id     TEXT,
    service        TEXT NOT NULL,
    action         TEXT NOT NULL,
    message        TEXT NOT NULL,
    data           JSONB NOT NULL,
    error_name     TEXT,
    error_message  TEXT,
    error_stack    TEXT,
    -- The message's words for `?q=` ('simple': no stemming, no stop words, any language).
    message_search TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', message)) STORED,
    PRIMARY KEY (id, logged_at)
) PARTITION BY RANGE (logged_at);
CREATE TABLE platform_logs_default PARTITION OF platform_logs DEFAULT;
SELECT autoheal_month_partitions('platform_logs', now(), now() + interval '2 months');

-- Newest first, by keyset (every query without a more selective filter).
CREATE INDEX platform_logs_newest ON platform_logs (logged_at DESC, id DESC);
-- The level filter, and retention's deletes by level and age.
CREATE INDEX platform_logs_level ON platform_logs (level, logged_at DESC, id DESC);
CREATE INDEX platform_logs_merchant ON platform_logs (merchant_id, logged_at DESC, id DESC)
    WHERE merchant_id IS NOT NULL;
CREATE INDEX platform_logs_request ON platform_logs (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX platform_logs_search ON platform_logs USING GIN (message_search);
