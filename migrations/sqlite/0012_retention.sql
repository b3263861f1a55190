-- Retention (issue 16): the retention job deletes expired rows in small batches, each its
-- own short transaction beside the group commits; these indexes find them by age.
-- (PostgreSQL partitions the time-series tables by month instead: see its 0012.)
CREATE INDEX plugin_telemetry_events_severity ON plugin_telemetry_events (severity, received_at);
CREATE INDEX health_check_history_checked ON health_check_history (checked_at);
CREATE INDEX outbox_messages_delivered ON outbox_messages (delivered_at) WHERE status = 'delivered';
CREATE INDEX plugin_commands_finished ON plugin_commands (issued_at) WHERE status <> 'pending';
