-- The credential lifecycle (issue 17): a credential can expire, be revoked with a reason,
-- and be rotated (the new one names the one it replaced). `changed_at` moves on every
-- revocation or rotation, so a replica that missed the invalidation notice (and, on
-- SQLite, a server whose credentials a CLI process changed) learns of it by reading
-- MAX(changed_at) each second. `last_used_at` is written at most once a minute per
-- credential and replica, off the request path.
ALTER TABLE credentials ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE credentials ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE credentials ADD COLUMN revoked_reason TEXT;
ALTER TABLE credentials ADD COLUMN rotated_from UUID REFERENCES credentials (id);
ALTER TABLE credentials ADD COLUMN changed_at TIMESTAMPTZ;
CREATE INDEX credentials_changed ON credentials (changed_at) WHERE changed_at IS NOT NULL;
CREATE INDEX credentials_listed ON credentials (created_at, id);
