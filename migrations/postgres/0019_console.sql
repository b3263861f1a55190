-- The Ops console (issue 19): Ops agents sign in with an email and a password.

-- An argon2id hash in PHC form (`$argon2id$v=19$m=…`); NULL until
-- `autoheal ops-agent set-password` sets one, and such an agent cannot sign in.
ALTER TABLE ops_agents ADD COLUMN password_hash TEXT;
ALTER TABLE ops_agents ADD COLUMN password_set_at TIMESTAMPTZ;

-- One row per sign-in. The cookie holds the session id; only its SHA-256 is kept, so a
-- copy of the store opens no session. A session ends at the first of: `idle_until`
-- passing (pushed forward as the agent works), `expires_at` (the absolute lifetime), a
-- sign-out or the agent being disabled (`ended_at`).
CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    agent_id     UUID NOT NULL REFERENCES ops_agents (id),
    created_at   TIMESTAMPTZ NOT NULL,
    idle_until   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    address      TEXT,
    user_agent   TEXT,
    ended_at     TIMESTAMPTZ
);
CREATE INDEX console_sessions_agent ON console_sessions (agent_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- Failed sign-ins in a row, per email (`email:…`) and per client address (`address:…`),
-- for throttling; a successful sign-in clears both.
CREATE TABLE console_login_failures (
    subject        TEXT PRIMARY KEY,
    failures       INTEGER NOT NULL CHECK (failures > 0),
    last_failed_at TIMESTAMPTZ NOT NULL
);
