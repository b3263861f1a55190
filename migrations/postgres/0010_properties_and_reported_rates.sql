-- Properties Ops set on an install (issue 15), such as `sensitive`: flag policies read them
-- beside what the plugin reports (cms, plugin_version, …), in its heartbeat's flags and in
-- the healing decision's `autoheal.auto_apply`. Identifier → a scalar; every change is
-- audited (install.properties).
ALTER TABLE plugin_installations
    ADD COLUMN properties JSONB NOT NULL DEFAULT '{}'::jsonb;

-- The error rate the install's last heartbeat reported (errors_last_hour) when a patch's
-- apply was acked: the regression analysis's "before" for an install that sends no
-- outcome events.
ALTER TABLE plugin_auto_healing_logs
    ADD COLUMN reported_error_rate_at_apply DOUBLE PRECISION;
