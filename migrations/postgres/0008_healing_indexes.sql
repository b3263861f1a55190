-- Leaner indexes for the healing tables. A detection writes its log, its snapshot and
-- its command in one commit, and every index on those tables is one more page that
-- commit dirties and a checkpoint copies. What each index dropped or replaced here served,
-- and what serves it now:
--
-- plugin_snapshots_installation: nothing reads snapshots but by id, and installs are
--   never deleted.
-- plugin_commands_log: cancelling a log's pending apply on rollback now looks in its
--   install's queue (plugin_commands_queue).
-- The regression analysis and the rule breaker read plugin_auto_healing_logs_status and
--   plugin_auto_healing_logs_rule by scanning every log of a status or a rule ever
--   written. The partial indexes below hold only the rows those queries read, and a new
--   detection (approved, pending_review or rejected) does not enter them: a log enters
--   when its patch is acked or fails.
--
-- Unlike SQLite (its 0008), PostgreSQL keeps the indexes on (installation_id, created_at),
-- (status, created_at) and (rule_name, created_at): its planner folds the logs list's
-- optional filters ($n IS NULL OR column = $n) into index conditions, so Ops' lists by
-- install, by status (the review queue) and by rule use them. Dropping them would gain
-- about a tenth on the detection p99 and rate, which the 5 ms target does not need
-- (BENCHMARKS.md, issue 7).
DROP INDEX plugin_snapshots_installation;
DROP INDEX plugin_commands_log;

-- The regression analysis: patches applied in a window of time.
CREATE INDEX plugin_auto_healing_logs_applied ON plugin_auto_healing_logs (applied_at)
    WHERE status = 'applied';
-- The rule breaker: how a rule's auto-applied patches ended lately. The predicate is
-- spelled exactly as in the query (api::store::healing::rule_outcomes).
CREATE INDEX plugin_auto_healing_logs_rule_outcomes ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE auto_applied = TRUE AND status IN ('applied', 'failed', 'rolled_back');
