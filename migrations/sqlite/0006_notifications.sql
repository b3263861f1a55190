-- Upgrade notifications (seed 000): one row per notice on one channel, delivered through the
-- outbox (in-app ones come back in the install's heartbeat until acknowledged), and the
-- merchant contacts the channels need. Conventions as in 0001.

ALTER TABLE merchants ADD COLUMN phone TEXT;
ALTER TABLE merchants ADD COLUMN webhook_url TEXT;

CREATE TABLE plugin_upgrade_notifications (
    id               BLOB PRIMARY KEY,
    installation_id  BLOB NOT NULL REFERENCES plugin_installations (id),
    merchant_id      BLOB NOT NULL REFERENCES merchants (id),
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'in-app', 'webhook', 'sms', 'slack')),
    priority         TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    current_version  TEXT NOT NULL,
    target_version   TEXT NOT NULL,
    security         INTEGER NOT NULL,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    outbox_id        BLOB REFERENCES outbox_messages (id),
    automatic        INTEGER NOT NULL,
    created_by       BLOB REFERENCES ops_agents (id),
    created_at       TEXT NOT NULL,
    acknowledged_at  TEXT
);
CREATE INDEX plugin_upgrade_notifications_install
    ON plugin_upgrade_notifications (installation_id, target_version, created_at);
