-- The outbox: every outbound message (webhook, CloudEvents forward, and the notification
-- channels) is a row written in the same transaction as what caused it, then delivered by
-- the delivery worker with retries, so an accepted message survives a crash or a restart.
-- Mirrors migrations/sqlite/0005 with native types (uuid, timestamptz, jsonb).

-- status: pending (due at next_attempt_at) → delivered | dead. A worker leases a due row
-- (leased_until) while it sends; a lease that runs out (the worker died) makes it due again,
-- so delivery is at least once and receivers deduplicate on the message id.
CREATE TABLE outbox_messages (
    id               UUID PRIMARY KEY,
    channel          TEXT NOT NULL CHECK (channel IN ('webhook', 'cloudevents', 'slack', 'sms', 'email')),
    destination      TEXT NOT NULL,
    payload          JSONB NOT NULL,
    source_type      TEXT NOT NULL,
    source_id        TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    leased_until     TIMESTAMPTZ,
    last_error_class TEXT CHECK (last_error_class IN ('TRANSIENT', 'RATE_LIMITED', 'PERMANENT', 'AUTH')),
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    dead_at          TIMESTAMPTZ
);
CREATE INDEX outbox_messages_due ON outbox_messages (status, next_attempt_at);
CREATE INDEX outbox_messages_source ON outbox_messages (source_type, source_id);
