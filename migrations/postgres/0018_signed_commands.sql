-- Signed commands (issue 18).
--
-- * sequence: what the server signed into the command at its last hand-out. Each hand-out
--   (the first, and each after a lease ran out) takes the install's next number from
--   install_command_sequences, so a plugin that refuses anything not above the last it
--   accepted never takes the same bytes twice.
-- * refused: the plugin did not apply the command because it did not verify (sdk/PROTOCOL.md).
--   Not a patch failure: the breaker and the success rate do not count it.
CREATE TABLE install_command_sequences (
    installation_id UUID PRIMARY KEY REFERENCES plugin_installations (id),
    last_sequence   BIGINT NOT NULL
);
ALTER TABLE plugin_commands ADD COLUMN sequence BIGINT;
ALTER TABLE plugin_commands DROP CONSTRAINT plugin_commands_status_check;
ALTER TABLE plugin_commands ADD CONSTRAINT plugin_commands_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled', 'refused'));
ALTER TABLE plugin_auto_healing_logs DROP CONSTRAINT plugin_auto_healing_logs_status_check;
ALTER TABLE plugin_auto_healing_logs ADD CONSTRAINT plugin_auto_healing_logs_status_check
    CHECK (status IN ('pending_review', 'approved', 'applied', 'failed', 'not_needed',
                      'rolling_back', 'rolled_back', 'rollback_failed', 'rejected', 'refused'));
