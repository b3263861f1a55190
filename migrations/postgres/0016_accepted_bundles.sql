-- Every patch bundle a registry accepted (issue 17): its name, version and the SHA-256 of
-- its bytes. Downgrade protection lived in each process's memory, so after a restart (or on
-- another replica) an older bundle, or other bytes under a version already accepted, were
-- loaded. Each reload now holds a new bundle to these rows: above the newest version
-- accepted for its name, unless it is the very bytes accepted before. A few rows per
-- release, kept for good, like the audit log.
CREATE TABLE patch_bundles_accepted (
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    bundle_sha256    TEXT NOT NULL,
    accepted_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, version)
);
