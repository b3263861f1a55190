-- A rule's auto-apply breaker per merchant (issue 17). One merchant's failing patches
-- suspend the rule for that merchant's installs only; the fleet-wide breaker trips only on
-- failures at several merchants (the healing loop's `breaker_min_merchants`). A breaker's
-- scope is its `merchant_id`; the nil UUID is the fleet-wide breaker, so that both scopes
-- share one primary key (a NULL cannot be part of one). For that reason there is no foreign
-- key to merchants (which are never deleted).
ALTER TABLE healing_rule_breakers
    ADD COLUMN merchant_id UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE healing_rule_breakers ALTER COLUMN merchant_id DROP DEFAULT;
ALTER TABLE healing_rule_breakers DROP CONSTRAINT healing_rule_breakers_pkey;
ALTER TABLE healing_rule_breakers ADD PRIMARY KEY (rule_name, merchant_id);
