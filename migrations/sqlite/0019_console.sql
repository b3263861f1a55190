-- The Ops console (issue 19); see the PostgreSQL 0019.
ALTER TABLE ops_agents ADD COLUMN password_hash TEXT;
ALTER TABLE ops_agents ADD COLUMN password_set_at TEXT;

CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    agent_id     BLOB NOT NULL REFERENCES ops_agents (id),
    created_at   TEXT NOT NULL,
    idle_until   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    address      TEXT,
    user_agent   TEXT,
    ended_at     TEXT
);
CREATE INDEX console_sessions_agent ON console_sessions (agent_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

CREATE TABLE console_login_failures (
    subject        TEXT PRIMARY KEY,
    failures       INTEGER NOT NULL CHECK (failures > 0),
    last_failed_at TEXT NOT NULL
);
