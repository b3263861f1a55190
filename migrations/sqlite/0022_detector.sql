-- The built-in detector (issue 20); see the PostgreSQL 0022 for what each change means.
ALTER TABLE plugin_auto_healing_logs
    ADD COLUMN source TEXT NOT NULL DEFAULT 'sira' CHECK (source IN ('sira', 'detector'));
ALTER TABLE plugin_auto_healing_logs ADD COLUMN raised_by TEXT;

-- The detector's own checks before it raises one: the last detection it raised for an
-- install and rule (at most one open, and none again for events it already counted), and
-- how many it raised fleet-wide lately (its rate limit).
CREATE INDEX plugin_auto_healing_logs_detector
    ON plugin_auto_healing_logs (installation_id, rule_name, created_at)
    WHERE source = 'detector';
CREATE INDEX plugin_auto_healing_logs_detector_created
    ON plugin_auto_healing_logs (created_at)
    WHERE source = 'detector';

-- The detector's confidence in a rule is its track record: how all its patches (approved by
-- Ops as well as auto-applied) ended lately. The predicate is spelled exactly as in
-- api::healing::store::rule_outcomes without its auto-applied filter.
CREATE INDEX plugin_auto_healing_logs_rule_track_record
    ON plugin_auto_healing_logs (rule_name, updated_at)
    WHERE status IN ('applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed');
