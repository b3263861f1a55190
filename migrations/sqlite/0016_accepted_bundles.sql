-- Every patch bundle a registry accepted (issue 17); see the PostgreSQL 0016.
CREATE TABLE patch_bundles_accepted (
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    bundle_sha256    TEXT NOT NULL,
    accepted_at      TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
