-- Leaner indexes for the healing tables. A detection writes its log, its snapshot and
-- its command in one commit, and every index on those tables is one more page that
-- commit dirties and a checkpoint copies. On SQLite at 4 concurrent detections, the
-- index on (installation_id, created_at) alone was a quarter of the p99 (BENCHMARKS.md,
-- issue 7). What each index served, and what serves it now:
--
-- plugin_snapshots_installation: nothing reads snapshots but by id, and installs are
--   never deleted.
-- plugin_commands_log: cancelling a log's pending apply on rollback now looks in its
--   install's queue (plugin_commands_queue).
-- plugin_auto_healing_logs_installation: SQLite's planner does not fold the logs list's
--   optional filters ($n IS NULL OR column = $n) into index conditions, so the list
--   walks plugin_auto_healing_logs_created, newest first, and never used this index.
--   (PostgreSQL's does, and keeps it: see its 0008.)
-- plugin_auto_healing_logs_status, plugin_auto_healing_logs_rule: the regression
--   analysis and the rule breaker read them by scanning every log of a status or a
--   rule ever written. The partial indexes below hold only the rows those queries read,
--   and a new detection (approved, pending_review or rejected) does not enter them:
--   a log enters when its patch is acked or fails.
DROP INDEX plugin_snapshots_installation;
DROP INDEX plugin_commands_log;
DROP INDEX plugin_auto_healing_logs_installation;
DROP INDEX plugin_auto_healing_logs_status;
DROP INDEX plugin_auto_healing_logs_rule;

-- The regression analysis: patches applied in a window of time.
CREATE INDEX plugin_auto_healing_logs_applied ON plugin_auto_healing_logs (applied_at)
    WHERE status = 'applied';
-- The rule breaker: how a rule's auto-applied patches ended lately. The predicate is
-- spelled exactly as in the query (api::store::healing::rule_outcomes), which is what
-- lets SQLite use a partial index.
CREATE INDEX plugin_auto_healing_logs_rule_outcomes ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE auto_applied = TRUE AND status IN ('applied', 'failed', 'rolled_back');
