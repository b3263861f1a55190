-- A rule's auto-apply breaker per merchant (issue 17); see the PostgreSQL 0015. SQLite
-- cannot change a primary key in place, so the table is rebuilt; every breaker so far is
-- fleet-wide, the nil UUID (16 zero bytes, as UUIDs are stored here).
CREATE TABLE healing_rule_breakers_0014 AS SELECT * FROM healing_rule_breakers;
DROP TABLE healing_rule_breakers;
CREATE TABLE healing_rule_breakers (
    rule_name        TEXT NOT NULL,
    merchant_id      BLOB NOT NULL,
    suspended        INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    changed_by       BLOB REFERENCES ops_agents (id),
    changed_at       TEXT NOT NULL,
    PRIMARY KEY (rule_name, merchant_id)
);
INSERT INTO healing_rule_breakers (rule_name, merchant_id, suspended, reason, changed_by, changed_at)
    SELECT rule_name, zeroblob(16), suspended, reason, changed_by, changed_at
    FROM healing_rule_breakers_0014;
DROP TABLE healing_rule_breakers_0014;
