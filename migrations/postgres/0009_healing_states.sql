-- The healing loop's honest states (issue 15).
--
-- * rolling_back: a rollback command is queued and the plugin has not acked it yet;
--   rolled_back only once it acks success, rollback_failed when it acks failure.
-- * not_needed: the dry run planned no operation (the install already has what the
--   patch would add); nothing is queued.
-- * applied_operations: how many of the plan's operations the plugin reports in effect
--   (all on a successful apply; what it says on a failed one). A rollback undoes only
--   those.
-- * rollback_requested_at: when the rollback was asked for; rolled_back_at is now when
--   the plugin acked it. rollback_failure_reason: what the plugin said of a failed one.
ALTER TABLE plugin_auto_healing_logs DROP CONSTRAINT plugin_auto_healing_logs_status_check;
ALTER TABLE plugin_auto_healing_logs ADD CONSTRAINT plugin_auto_healing_logs_status_check
    CHECK (status IN ('pending_review', 'approved', 'applied', 'failed', 'not_needed',
                      'rolling_back', 'rolled_back', 'rollback_failed', 'rejected'));
ALTER TABLE plugin_auto_healing_logs
    ADD COLUMN applied_operations      INTEGER,
    ADD COLUMN rollback_requested_at   TIMESTAMPTZ,
    ADD COLUMN rollback_failure_reason TEXT;

-- Logs marked rolled_back before this migration: the request time is what was recorded,
-- and the state is what their rollback command's ack says.
UPDATE plugin_auto_healing_logs l SET rollback_requested_at = l.rolled_back_at,
    status = CASE c.status WHEN 'succeeded' THEN 'rolled_back'
                           WHEN 'failed' THEN 'rollback_failed'
                           ELSE 'rolling_back' END,
    rolled_back_at = CASE c.status WHEN 'pending' THEN NULL ELSE c.acked_at END,
    rollback_failure_reason = CASE c.status WHEN 'failed'
        THEN LEFT(COALESCE(c.ack_result ->> 'error', c.ack_result ->> 'message',
                           'the plugin reported failure'), 500) END
FROM plugin_commands c
WHERE l.status = 'rolled_back' AND c.healing_log_id = l.id AND c.command_type = 'rollback'
  AND c.status IN ('pending', 'succeeded', 'failed');
UPDATE plugin_auto_healing_logs SET applied_operations = jsonb_array_length(operations)
WHERE status = 'applied' AND jsonb_typeof(operations) = 'array';

-- The rule breaker reads the new states too; the predicate is spelled exactly as in
-- api::healing::store::rule_outcomes.
DROP INDEX plugin_auto_healing_logs_rule_outcomes;
CREATE INDEX plugin_auto_healing_logs_rule_outcomes ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE auto_applied = TRUE
      AND status IN ('applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed');
