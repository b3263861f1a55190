-- The credential lifecycle (issue 17); see the PostgreSQL 0017.
ALTER TABLE credentials ADD COLUMN expires_at TEXT;
ALTER TABLE credentials ADD COLUMN last_used_at TEXT;
ALTER TABLE credentials ADD COLUMN revoked_reason TEXT;
ALTER TABLE credentials ADD COLUMN rotated_from BLOB REFERENCES credentials (id);
ALTER TABLE credentials ADD COLUMN changed_at TEXT;
CREATE INDEX credentials_changed ON credentials (changed_at) WHERE changed_at IS NOT NULL;
CREATE INDEX credentials_listed ON credentials (created_at, id);
