#!/usr/bin/env python3
"""Helper of benches/fleet_reads.sh (python3 stdlib only; PostgreSQL through the psql CLI).

  fleet_seed.py load sqlite PATH     --installs N --events E --merchants M --merchant ID --agent ID
  fleet_seed.py load postgres URL    (same options)
  fleet_seed.py reads BASE_URL TOKEN SUMMARY.json --backend NAME --requests N [--warmup 3]

`load` bulk-loads a migrated store directly with SQL (the schema comes from `autoheal migrate`;
the merchant and the Ops agent from the CLI) and prints a JSON summary: what the API must
report for it (expected counts, sample installs). `reads` checks the API against that summary
and times each Ops read, one JSON line per read.

The fleet, install n = 0..N-1 (deterministic except merchants' spread, heartbeat and event times):
  cms       CMS[n % 5]
  version   the cms's latest when (n // 5) % 10 < 7, else one of its three older ones (30 % outdated)
  stale     n % 100 == 37: last heartbeat 49 h to 7 days ago (1 %); the others within the last hour
  blocked   n % 1000 == 500: an active block_plugin toggle (0.1 %); n % 1000 == 250 has a lifted one,
            n % 1000 == 750 an active enable_debug one (neither blocks)
  merchant  a hash of n over the M seeded merchants and the CLI-created one
Events: E over the last 30 days (ids v7, in time order), each on a random install; 80 %
payment_success, 8 % payment_failed, 4 % error, 5 % info, 3 % warning.
"""

import argparse
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import uuid

CMS = ["woocommerce", "prestashop", "shopify", "magento", "generic"]
# (older releases, latest) per cms; pre-releases and two-digit parts check the key format.
VERSIONS = {
    "woocommerce": (["1.2.0", "1.3.0", "1.3.5-rc.1"], "1.3.5"),
    "prestashop": (["1.8.3", "1.9.12", "1.10.0-beta.2"], "1.10.0"),
    "shopify": (["2.0.1", "2.1.0", "2.2.0-rc.1"], "2.2.0"),
    "magento": (["1.0.9", "1.1.0", "1.1.2"], "1.1.3"),
    "generic": (["0.9.0", "1.0.0-alpha", "1.0.0-alpha.beta"], "1.0.0"),
}
EVENT_KINDS = [  # (cumulative share, event_type, severity, message)
    (0.80, "payment_success", "info", None),
    (0.88, "payment_failed", "error", "Payment declined by the issuer"),
    (0.92, "error", "error", "Fatal error: Unknown column 'merchant_fee' in field list"),
    (0.97, "info", "info", None),
    (1.00, "warning", "warning", "Slow response from the payment API"),
]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STALE_AFTER_MS = 48 * HOUR_MS
EVENTS_SPAN_MS = 30 * DAY_MS
# Read-model tables (migration 0011) and their seeding SQL, exactly the migration's.
ROLLUPS_SQL = {
    "sqlite": """
INSERT INTO plugin_event_rollups (installation_id, hour, merchant_id, events, outcomes, errors)
SELECT installation_id, strftime('%Y-%m-%dT%H:00:00+00:00', received_at), merchant_id, COUNT(*),
       SUM(CASE WHEN event_type IN ('payment_success', 'payment_failed', 'error') THEN 1 ELSE 0 END),
       SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END)
FROM plugin_telemetry_events
WHERE installation_id IS NOT NULL
GROUP BY installation_id, strftime('%Y-%m-%dT%H:00:00+00:00', received_at), merchant_id""",
    "postgres": """
INSERT INTO plugin_event_rollups (installation_id, hour, merchant_id, events, outcomes, errors)
SELECT installation_id, date_trunc('hour', received_at, 'UTC'), merchant_id, COUNT(*),
       SUM(CASE WHEN event_type IN ('payment_success', 'payment_failed', 'error') THEN 1 ELSE 0 END),
       SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END)
FROM plugin_telemetry_events
WHERE installation_id IS NOT NULL
GROUP BY installation_id, date_trunc('hour', received_at, 'UTC'), merchant_id""",
}
COUNTS_SQL = """
INSERT INTO fleet_version_counts (cms, version_key, installs)
SELECT cms, version_key, COUNT(*) FROM plugin_installations GROUP BY cms, version_key"""
# Tables whose secondary indexes are dropped while loading and rebuilt (same definition) after.
BULK_TABLES = ("plugin_installations", "plugin_telemetry_events", "plugin_event_rollups")
JOBS = ("hourly_fleet_check", "daily_health", "retention")


def log(message):
    print(f"  [fleet_seed] {message}", file=sys.stderr, flush=True)


def sort_key(version):
    """api/src/version.rs `sort_key`: zero-padded numbers, `~` after a release, `-` and
    `0`/`1`-prefixed identifiers for a pre-release; build metadata ignored."""
    version = version[1:] if version.startswith("v") else version
    version = version.split("+", 1)[0]
    core, _, pre = version.partition("-")
    major, minor, patch = (int(part) for part in core.split("."))
    key = f"{major:020}.{minor:020}.{patch:020}"
    if not pre:
        return key + "~"
    parts = []
    for identifier in pre.split("."):
        if identifier.isdigit():
            parts.append(f"0{int(identifier):020}")
        else:
            parts.append("1" + identifier)
    return key + "-" + ".".join(parts)


def uuid7_bytes(ms, kind, seq, rand_a):
    """A v7 layout: 48-bit ms, version 7, 12 random bits, variant 10, then `kind` (2 bits) and
    `seq` (60 bits), so ids are unique per table. Same as the SQL of `pg_uuid7`."""
    value = (ms << 80) | (7 << 76) | (rand_a << 64) | ((8 | kind) << 60) | seq
    return value.to_bytes(16, "big")


def pg_uuid7(ms_sql, kind, seq_sql):
    return (f"(lpad(to_hex({ms_sql}), 12, '0') || '7' || lpad(to_hex(floor(random() * 4096)::int), 3, '0') "
            f"|| '{8 | kind:x}' || lpad(to_hex({seq_sql}), 15, '0'))::uuid")


def iso(ms):
    """RFC 3339 UTC with milliseconds, as sqlx writes a DateTime<Utc> to SQLite."""
    seconds, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{milli:03d}+00:00"


def sql_text(text):
    return "'" + text.replace("'", "''") + "'"


def pg_ts(ms):
    return f"to_timestamp({ms} / 1000.0)"


class Plan:
    """The deterministic parts of the fleet, shared by both backends."""

    def __init__(self, args):
        self.installs = args.installs
        self.events = args.events
        self.merchants = args.merchants
        self.cli_merchant = uuid.UUID(args.merchant)
        self.agent = uuid.UUID(args.agent)
        self.now_ms = int(time.time() * 1000)
        self.first_seen_start = self.now_ms - 400 * DAY_MS
        self.first_seen_step = (369 * DAY_MS) // max(self.installs, 1)

    def merchant_index(self, n):  # 0 is the CLI-created merchant; same as in SQL
        return ((n * 2654435761) % 4294967296) % (self.merchants + 1)

    @staticmethod
    def version_slot(n):
        return (n // 5) % 10

    def version(self, n):
        older, latest = VERSIONS[CMS[n % 5]]
        slot = self.version_slot(n)
        return latest if slot < 7 else older[slot - 7]

    @staticmethod
    def stale(n):
        return n % 100 == 37

    @staticmethod
    def blocked(n):
        return n % 1000 == 500

    def samples(self):
        """Installs of each status, by n, when the fleet is large enough to hold them."""
        wanted = {"active": 1, "outdated": 35, "error": 37, "blocked": 500}
        return {status: n for status, n in wanted.items() if n < self.installs}


def expected_sql(backend, stale_before):
    """Queries of the loaded store, independent of the server's code, for the overview's
    figures: status precedence blocked > error (stale) > outdated > active."""
    true = "1" if backend == "sqlite" else "TRUE"
    blocked = ("EXISTS (SELECT 1 FROM plugin_ops_toggles t WHERE t.installation_id = i.id "
               "AND t.toggle_key = 'block_plugin' AND t.lifted_at IS NULL AND t.expires_at IS NULL)")
    return f"""
SELECT COUNT(*),
       SUM(CASE WHEN {blocked} THEN 1 ELSE 0 END),
       SUM(CASE WHEN NOT {blocked} AND i.last_heartbeat < {stale_before} THEN 1 ELSE 0 END),
       SUM(CASE WHEN NOT {blocked} AND i.last_heartbeat >= {stale_before}
                 AND v.version_key IS NOT NULL AND i.version_key < v.version_key THEN 1 ELSE 0 END),
       SUM(CASE WHEN i.last_heartbeat < {stale_before} THEN 1 ELSE 0 END),
       SUM(CASE WHEN i.cms = 'woocommerce' AND NOT {blocked} AND i.last_heartbeat >= {stale_before}
                 AND v.version_key IS NOT NULL AND i.version_key < v.version_key THEN 1 ELSE 0 END)
FROM plugin_installations i
LEFT JOIN plugin_versions_registry v ON v.cms = i.cms AND v.is_latest = {true}"""


def summary_from(plan, counts, samples, extra):
    total, blocked, error, outdated, stale, outdated_woo = (int(x or 0) for x in counts)
    return {
        "installs": total,
        "expected": {
            "total": total,
            "blocked_count": blocked,
            "error_count": error,
            "outdated_count": outdated,
            "active_count": total - blocked - error,
            "stale_count": stale,
            "outdated_woocommerce": outdated_woo,
        },
        "samples": samples,
        **extra,
    }


# --- SQLite -------------------------------------------------------------------------------


def load_sqlite(plan, path):
    started = time.monotonic()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-2000000")
    db.execute("PRAGMA temp_store=MEMORY")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    has_rollups = "plugin_event_rollups" in tables
    has_counts = "fleet_version_counts" in tables
    rand = random.Random(20260101)

    # Secondary indexes are rebuilt from their own definitions after the load.
    dropped = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (%s)"
        % ",".join("?" * len(BULK_TABLES)), BULK_TABLES).fetchall()
    db.execute("BEGIN")
    for name, _ in dropped:
        db.execute(f'DROP INDEX "{name}"')
    db.execute("COMMIT")

    phase = time.monotonic()
    db.execute("BEGIN")
    merchant_ids = [plan.cli_merchant.bytes]
    rows = []
    for k in range(1, plan.merchants + 1):
        ms = plan.first_seen_start - DAY_MS + k
        mid = uuid7_bytes(ms, 0, k, rand.getrandbits(12))
        merchant_ids.append(mid)
        rows.append((mid, f"Bench merchant {k}", f"merchant{k}@bench.example", iso(ms)))
    db.executemany("INSERT INTO merchants (id, name, email, created_at) VALUES (?, ?, ?, ?)", rows)

    for cms, (older, latest) in VERSIONS.items():
        for index, version in enumerate(older + [latest]):
            ms = plan.first_seen_start + index * 30 * DAY_MS
            db.execute(
                "INSERT INTO plugin_versions_registry (id, cms, version, version_key, is_latest, security, "
                "min_supported, release_notes, created_at, created_by) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?, ?)",
                (uuid7_bytes(ms, 1, CMS.index(cms) * 16 + index, rand.getrandbits(12)), cms, version,
                 sort_key(version), 1 if version == latest else 0, f"Release {version}", iso(ms),
                 plan.agent.bytes))

    # Installs: the per-install facts kept in memory for the events.
    install_ids = [None] * plan.installs
    install_merchant = [None] * plan.installs
    install_site = [None] * plan.installs
    keys = {v: sort_key(v) for older, latest in VERSIONS.values() for v in older + [latest]}
    server_info = json.dumps({"memory_limit": "256M", "max_execution_time": "30"})
    state = json.dumps({"config": {"memory_limit": "256M"}})
    sql = ("INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, version_key, "
           "sdk_language, environment, php_version, wordpress_version, server_info, reported_state, "
           "reported_error_rate, heartbeat_count, first_seen_at, last_heartbeat, properties) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')")
    batch = []
    for n in range(plan.installs):
        cms = CMS[n % 5]
        first_seen = plan.first_seen_start + n * plan.first_seen_step
        if plan.stale(n):
            last = plan.now_ms - STALE_AFTER_MS - HOUR_MS - rand.randrange(6 * DAY_MS)
        else:
            last = plan.now_ms - rand.randrange(HOUR_MS)
        iid = uuid7_bytes(first_seen, 0, n, rand.getrandbits(12))
        site = f"https://shop-{n}.example"
        merchant = merchant_ids[plan.merchant_index(n)]
        install_ids[n], install_merchant[n], install_site[n] = iid, merchant, site
        version = plan.version(n)
        php = cms != "shopify"
        batch.append((
            iid, merchant, cms, site, version, keys[version], "php" if php else "node",
            "staging" if n % 20 == 3 else "production", "8.1.27" if php else None,
            "6.4.2" if cms == "woocommerce" else None, server_info, state,
            7.5 if n % 50 == 0 else 0.0, (last - first_seen) // HOUR_MS, iso(first_seen), iso(last)))
        if len(batch) == 100_000:
            db.executemany(sql, batch)
            batch.clear()
    db.executemany(sql, batch)

    toggles = []
    for n in range(500, plan.installs, 1000):
        toggles.append((n, "block_plugin", "true", "bench: blocked", None))
    for n in range(250, plan.installs, 1000):
        toggles.append((n, "block_plugin", "true", "bench: lifted block", plan.now_ms - DAY_MS))
    for n in range(750, plan.installs, 1000):
        toggles.append((n, "enable_debug", "true", "bench: debugging", None))
    for seq, (n, key, value, reason, lifted) in enumerate(toggles):
        ms = plan.now_ms - 2 * DAY_MS + seq
        db.execute(
            "INSERT INTO plugin_ops_toggles (id, installation_id, toggle_key, toggle_value, reason, expires_at, "
            "created_by, created_at, lifted_at, lifted_by) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
            (uuid7_bytes(ms, 2, seq, rand.getrandbits(12)), install_ids[n], key, value, reason,
             plan.agent.bytes, iso(ms), iso(lifted) if lifted else None,
             plan.agent.bytes if lifted else None))
    db.execute("COMMIT")
    log(f"sqlite: {plan.merchants} merchants, {plan.installs} installs, {len(toggles)} toggles "
        f"in {time.monotonic() - phase:.1f} s")

    phase = time.monotonic()
    sql = ("INSERT INTO plugin_telemetry_events (id, installation_id, merchant_id, cms, site_url, event_type, "
           "severity, event_data, message, stack_trace, install_blocked, occurred_at, received_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?, NULL, 0, ?, ?)")
    start_ms = plan.now_ms - EVENTS_SPAN_MS
    step = EVENTS_SPAN_MS / max(plan.events, 1)
    chunk = 200_000
    rnd, getrandbits, installs = rand.random, rand.getrandbits, plan.installs
    kinds = EVENT_KINDS

    def rows_between(lo, hi):
        last_second, prefix = -1, ""
        for g in range(lo, hi):
            ms = start_ms + int((g + rnd()) * step)
            second, milli = divmod(ms, 1000)
            if second != last_second:
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                last_second = second
            at = f"{prefix}.{milli:03d}+00:00"
            n = int(rnd() * installs)
            r = rnd()
            for share, event_type, severity, message in kinds:
                if r < share:
                    break
            yield (((ms << 80) | (7 << 76) | (getrandbits(12) << 64) | (0xB << 60) | g).to_bytes(16, "big"),
                   install_ids[n], install_merchant[n], CMS[n % 5], install_site[n], event_type, severity,
                   message, at, at)

    for lo in range(0, plan.events, chunk):
        db.execute("BEGIN")
        db.executemany(sql, rows_between(lo, min(lo + chunk, plan.events)))
        db.execute("COMMIT")
        if (lo // chunk) % 10 == 9:
            log(f"sqlite: {lo + chunk} events, {time.monotonic() - phase:.0f} s")
    log(f"sqlite: {plan.events} events in {time.monotonic() - phase:.1f} s")

    # The rollups from a scan of the events in their order (their index is not there yet).
    rollups = None
    if has_rollups:
        phase = time.monotonic()
        db.execute("BEGIN")
        db.execute("DELETE FROM plugin_event_rollups")
        db.execute(ROLLUPS_SQL["sqlite"])
        db.execute("COMMIT")
        rollups = db.execute("SELECT COUNT(*) FROM plugin_event_rollups").fetchone()[0]
        log(f"sqlite: {rollups} event rollups in {time.monotonic() - phase:.1f} s")

    phase = time.monotonic()
    db.execute("BEGIN")
    for name, index_sql in dropped:
        db.execute(index_sql)
    db.execute("COMMIT")
    log(f"sqlite: {len(dropped)} indexes rebuilt in {time.monotonic() - phase:.1f} s "
        f"({', '.join(name for name, _ in dropped)})")

    if has_counts:
        # Kept by the migration's triggers during the load; checked, and recounted if off.
        exact = db.execute(
            "SELECT COUNT(*) FROM (SELECT cms, version_key, COUNT(*) AS c FROM plugin_installations "
            "GROUP BY cms, version_key) a LEFT JOIN fleet_version_counts f USING (cms, version_key) "
            "WHERE f.installs IS NOT a.c").fetchone()[0] == 0
        extra = db.execute(
            "SELECT COUNT(*) FROM fleet_version_counts f WHERE installs <> 0 AND NOT EXISTS "
            "(SELECT 1 FROM plugin_installations i WHERE i.cms = f.cms AND i.version_key = f.version_key)"
        ).fetchone()[0]
        if not exact or extra:
            log("sqlite: fleet_version_counts off after the triggers: recounted")
            db.execute("BEGIN")
            db.execute("DELETE FROM fleet_version_counts")
            db.execute(COUNTS_SQL)
            db.execute("COMMIT")

    seed_jobs_sqlite(db, plan)
    phase = time.monotonic()
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log(f"sqlite: ANALYZE in {time.monotonic() - phase:.1f} s")

    counts = db.execute(expected_sql("sqlite", f"'{iso(plan.now_ms - STALE_AFTER_MS)}'")).fetchone()
    samples = {}
    for status, n in plan.samples().items():
        samples[status] = {"id": str(uuid.UUID(bytes=install_ids[n])), "cms": CMS[n % 5],
                           "plugin_version": plan.version(n)}
    db.close()
    return summary_from(plan, counts, samples, {
        "events": plan.events, "rollups": rollups, "read_model": has_rollups or has_counts,
        "load_seconds": round(time.monotonic() - started, 1)})


def seed_jobs_sqlite(db, plan):
    """The scheduled jobs as on a server that has been running: just ran, so neither runs
    over the whole fleet during the timed reads."""
    at = iso(plan.now_ms)
    for job in JOBS:
        db.execute("INSERT OR REPLACE INTO scheduled_job_runs (job, last_started_at, last_finished_at, "
                   "last_status, last_error, runs) VALUES (?, ?, ?, 'ok', NULL, 1)", (job, at, at))


# --- PostgreSQL ---------------------------------------------------------------------------


# The rows are consistent by construction (every event's install and merchant come from the
# loaded installs): the foreign-key checks, half the time of the events' load, are skipped
# where the role may (a superuser), and kept where it may not.
NO_FK_CHECKS = """DO $$ BEGIN SET session_replication_role = replica;
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'foreign keys checked while loading'; END $$;"""


def psql(url, sql, at=True):
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"] + (["-At"] if at else []) + [url],
        input=sql, text=True, capture_output=True)
    if result.returncode != 0:
        sys.exit(f"psql failed ({result.returncode}):\n{result.stderr}\n--- SQL ---\n{sql[:4000]}")
    return result.stdout


def load_postgres(plan, url):
    started = time.monotonic()
    exists = psql(url, "SELECT to_regclass('plugin_event_rollups') IS NOT NULL, "
                       "to_regclass('fleet_version_counts') IS NOT NULL").strip().split("|")
    has_rollups, has_counts = exists[0] == "t", exists[1] == "t"
    N, M = plan.installs, plan.merchants
    tables = ", ".join(f"'{t}'" for t in BULK_TABLES)

    phase = time.monotonic()
    registry = []
    for cms, (older, latest) in VERSIONS.items():
        for index, version in enumerate(older + [latest]):
            ms = plan.first_seen_start + index * 30 * DAY_MS
            registry.append(
                f"({pg_uuid7(ms, 1, CMS.index(cms) * 16 + index)}, '{cms}', '{version}', '{sort_key(version)}', "
                f"{'TRUE' if version == latest else 'FALSE'}, FALSE, NULL, 'Release {version}', {pg_ts(ms)}, "
                f"'{plan.agent}')")
    keys = " ".join(
        f"WHEN '{cms}:{slot}' THEN '{v}'"
        for cms, (older, latest) in VERSIONS.items()
        for slot, v in enumerate(older + [latest]))
    psql(url, f"""
SET synchronous_commit = off;
{NO_FK_CHECKS}
-- Secondary indexes of the bulk tables, rebuilt from their own definitions after the load.
DROP TABLE IF EXISTS bench_dropped_indexes;
CREATE TABLE bench_dropped_indexes AS
SELECT indexname, indexdef FROM pg_indexes i
WHERE schemaname = current_schema() AND tablename IN ({tables})
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.indexname))::regclass);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM bench_dropped_indexes LOOP EXECUTE format('DROP INDEX %I', r.indexname); END LOOP;
END $$;
-- The read model's triggers; fleet_version_counts is recounted after the load.
ALTER TABLE plugin_installations DISABLE TRIGGER USER;
-- Where the events are partitioned by month (migration 0012), the months they fall in, as
-- the retention job would have made them on a running server.
DO $$ BEGIN
  IF to_regproc('autoheal_month_partitions') IS NOT NULL THEN
    PERFORM autoheal_month_partitions('plugin_telemetry_events', now() - interval '40 days', now() + interval '2 months');
  END IF;
END $$;

CREATE TABLE bench_merchants (k int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO bench_merchants VALUES (0, '{plan.cli_merchant}');
INSERT INTO bench_merchants
SELECT k, {pg_uuid7(f"({plan.first_seen_start - DAY_MS}::bigint + k)", 0, "k")}
FROM generate_series(1, {M}) k;
INSERT INTO merchants (id, name, email, created_at)
SELECT id, 'Bench merchant ' || k, 'merchant' || k || '@bench.example', {pg_ts(f"({plan.first_seen_start - DAY_MS}::bigint + k)")}
FROM bench_merchants WHERE k > 0 ORDER BY k;

INSERT INTO plugin_versions_registry (id, cms, version, version_key, is_latest, security, min_supported,
    release_notes, created_at, created_by) VALUES
{(','+chr(10)).join(registry)};

CREATE TABLE bench_installs AS
SELECT n, {pg_uuid7(f"({plan.first_seen_start}::bigint + n::bigint * {plan.first_seen_step})", 0, "n")} AS id,
       m.id AS merchant_id,
       (ARRAY{CMS!r})[n % 5 + 1] AS cms,
       'https://shop-' || n || '.example' AS site_url,
       {plan.first_seen_start}::bigint + n::bigint * {plan.first_seen_step} AS first_seen_ms,
       CASE WHEN n % 100 = 37 THEN {plan.now_ms - STALE_AFTER_MS - HOUR_MS}::bigint - floor(random() * {6 * DAY_MS})::bigint
            ELSE {plan.now_ms}::bigint - floor(random() * {HOUR_MS})::bigint END AS last_ms
FROM generate_series(0, {N - 1}) n
JOIN bench_merchants m ON m.k = ((n::bigint * 2654435761) % 4294967296) % {M + 1};
ALTER TABLE bench_installs ADD PRIMARY KEY (n);

INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, version_key, sdk_language,
    environment, php_version, wordpress_version, server_info, reported_state, reported_error_rate,
    heartbeat_count, first_seen_at, last_heartbeat, properties)
SELECT id, merchant_id, cms, site_url, version, (CASE version {" ".join(f"WHEN '{v}' THEN '{sort_key(v)}'" for o, l in VERSIONS.values() for v in o + [l])} END),
       CASE WHEN cms = 'shopify' THEN 'node' ELSE 'php' END,
       CASE WHEN n % 20 = 3 THEN 'staging' ELSE 'production' END,
       CASE WHEN cms = 'shopify' THEN NULL ELSE '8.1.27' END,
       CASE WHEN cms = 'woocommerce' THEN '6.4.2' END,
       '{{"memory_limit": "256M", "max_execution_time": "30"}}'::jsonb, '{{"config": {{"memory_limit": "256M"}}}}'::jsonb,
       CASE WHEN n % 50 = 0 THEN 7.5 ELSE 0 END, (last_ms - first_seen_ms) / {HOUR_MS},
       {pg_ts("first_seen_ms")}, {pg_ts("last_ms")}, '{{}}'::jsonb
FROM (SELECT b.*, CASE cms || ':' || CASE WHEN (n / 5) % 10 < 7 THEN 3 ELSE (n / 5) % 10 - 7 END {keys} END AS version
      FROM bench_installs b) s
ORDER BY n;

INSERT INTO plugin_ops_toggles (id, installation_id, toggle_key, toggle_value, reason, expires_at, created_by,
    created_at, lifted_at, lifted_by)
SELECT {pg_uuid7(f"({plan.now_ms - 2 * DAY_MS}::bigint + n)", 2, "n")}, b.id, t.toggle_key, 'true'::jsonb, t.reason, NULL,
       '{plan.agent}', {pg_ts(f"({plan.now_ms - 2 * DAY_MS}::bigint + n)")},
       CASE WHEN t.lifted THEN {pg_ts(plan.now_ms - DAY_MS)} END, CASE WHEN t.lifted THEN '{plan.agent}'::uuid END
FROM bench_installs b
JOIN (VALUES (500, 'block_plugin', 'bench: blocked', FALSE), (250, 'block_plugin', 'bench: lifted block', TRUE),
             (750, 'enable_debug', 'bench: debugging', FALSE)) t (residue, toggle_key, reason, lifted)
  ON b.n % 1000 = t.residue;
""")
    log(f"postgres: {M} merchants, {N} installs, toggles in {time.monotonic() - phase:.1f} s")

    phase = time.monotonic()
    start_ms = plan.now_ms - EVENTS_SPAN_MS
    chunk = 1_000_000
    kinds = " ".join(f"WHEN r < {share} THEN {i}" for i, (share, *_rest) in enumerate(EVENT_KINDS))
    types = "ARRAY[" + ", ".join(f"'{k[1]}'" for k in EVENT_KINDS) + "]"
    severities = "ARRAY[" + ", ".join(f"'{k[2]}'" for k in EVENT_KINDS) + "]"
    messages = "ARRAY[" + ", ".join(sql_text(k[3]) if k[3] else "NULL" for k in EVENT_KINDS) + "]::text[]"
    for lo in range(0, plan.events, chunk):
        hi = min(lo + chunk, plan.events)
        psql(url, f"""
SET synchronous_commit = off;
{NO_FK_CHECKS}
INSERT INTO plugin_telemetry_events (id, installation_id, merchant_id, cms, site_url, event_type, severity,
    event_data, message, stack_trace, install_blocked, occurred_at, received_at)
SELECT {pg_uuid7("e.ms", 3, "e.g")}, b.id, b.merchant_id, b.cms, b.site_url,
       ({types})[e.kind + 1], ({severities})[e.kind + 1], '{{}}'::jsonb, ({messages})[e.kind + 1],
       NULL, FALSE, {pg_ts("e.ms")}, {pg_ts("e.ms")}
FROM (SELECT g, {start_ms}::bigint + floor((g + random()) * {EVENTS_SPAN_MS / max(plan.events, 1)!r})::bigint AS ms,
             floor(random() * {N})::int AS n, CASE {kinds} END AS kind
      FROM (SELECT g, random() AS r FROM generate_series({lo}, {hi - 1}) g OFFSET 0) x OFFSET 0) e
JOIN bench_installs b ON b.n = e.n;
""")
        log(f"postgres: {hi} events, {time.monotonic() - phase:.0f} s")
    log(f"postgres: {plan.events} events in {time.monotonic() - phase:.1f} s")

    rollups = None
    if has_rollups:
        phase = time.monotonic()
        # Sorted by the primary key, so that its index is written in order.
        psql(url, f"SET synchronous_commit = off; SET work_mem = '1GB'; {NO_FK_CHECKS} DELETE FROM plugin_event_rollups;"
                  + ROLLUPS_SQL["postgres"] + " ORDER BY 1, 2;")
        rollups = int(psql(url, "SELECT COUNT(*) FROM plugin_event_rollups").strip())
        log(f"postgres: {rollups} event rollups in {time.monotonic() - phase:.1f} s")

    phase = time.monotonic()
    psql(url, """
SET maintenance_work_mem = '1GB';
-- A partitioned table's index is listed as ON ONLY (the parent alone): rebuilt on every month.
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexdef FROM bench_dropped_indexes LOOP EXECUTE replace(r.indexdef, ' ON ONLY ', ' ON '); END LOOP;
END $$;
""")
    log(f"postgres: indexes rebuilt in {time.monotonic() - phase:.1f} s "
        f"({psql(url, 'SELECT string_agg(indexname, chr(44) || chr(32)) FROM bench_dropped_indexes').strip()})")

    if has_counts:
        psql(url, "DELETE FROM fleet_version_counts;" + COUNTS_SQL + ";")
    psql(url, "ALTER TABLE plugin_installations ENABLE TRIGGER USER;")
    at = pg_ts(plan.now_ms)
    psql(url, "".join(
        f"INSERT INTO scheduled_job_runs (job, last_started_at, last_finished_at, last_status, last_error, runs) "
        f"VALUES ('{job}', {at}, {at}, 'ok', NULL, 1) ON CONFLICT (job) DO UPDATE SET "
        f"last_started_at = excluded.last_started_at, last_finished_at = excluded.last_finished_at, "
        f"last_status = 'ok', last_error = NULL;" for job in JOBS))

    phase = time.monotonic()
    psql(url, "VACUUM ANALYZE;")
    log(f"postgres: VACUUM ANALYZE in {time.monotonic() - phase:.1f} s")

    counts = psql(url, expected_sql("postgres", pg_ts(plan.now_ms - STALE_AFTER_MS))).strip().split("|")
    samples = {}
    for status, n in plan.samples().items():
        sample_id = psql(url, f"SELECT id FROM bench_installs WHERE n = {n}").strip()
        samples[status] = {"id": sample_id, "cms": CMS[n % 5], "plugin_version": plan.version(n)}
    psql(url, "DROP TABLE bench_installs, bench_merchants, bench_dropped_indexes;")
    return summary_from(plan, counts, samples, {
        "events": plan.events, "rollups": rollups, "read_model": has_rollups or has_counts,
        "load_seconds": round(time.monotonic() - started, 1)})


# --- the reads ----------------------------------------------------------------------------


class Api:
    def __init__(self, base, token):
        import http.client
        import urllib.parse
        parsed = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        self.token = token

    def get(self, path, auth=True):
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"FAIL: GET {path} answered {response.status}: {body[:500].decode(errors='replace')}")
        return response, body


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")


def total_count(response):
    """X-Total-Count when the server gives it exactly (not when flagged capped)."""
    if response.getheader("x-total-count") is None or response.getheader("x-total-count-capped") == "true":
        return None
    return int(response.getheader("x-total-count"))


def next_cursor(response):
    """The `after` of the Link header's rel="next" target, or None."""
    import urllib.parse
    link = response.getheader("Link") or response.getheader("link")
    if not link:
        return None
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            query = urllib.parse.urlsplit(target.strip().strip("<>")).query
            values = urllib.parse.parse_qs(query).get("after")
            if values:
                return values[0]
    return None


def reads(args):
    import urllib.parse
    summary = json.load(open(args.summary))
    expected = summary["expected"]
    api = Api(args.base, args.token)
    backend = args.backend
    total = expected["total"]

    # Correctness first: the overview's figures, the detail of one install of each status, the lists.
    _, body = api.get("/api/v1/plugins/stats/overview")
    overview = json.loads(body)
    for field in ("blocked_count", "error_count", "outdated_count", "active_count", "stale_count"):
        check(overview[field] == expected[field],
              f"overview {field} = {overview[field]}, the store holds {expected[field]}")
    check(overview["active_count"] + overview["blocked_count"] + overview["error_count"] == total,
          f"overview active + blocked + error = {overview['active_count']} + {overview['blocked_count']} + "
          f"{overview['error_count']}, not the {total} installs")
    check(sum(c["count"] for c in overview["cms_breakdown"]) == total, "cms_breakdown does not add up")
    for status, sample in summary["samples"].items():
        _, body = api.get(f"/api/v1/plugins/{sample['id']}")
        detail = json.loads(body)
        check(detail["id"] == sample["id"] and detail["cms"] == sample["cms"]
              and detail["plugin_version"] == sample["plugin_version"] and detail["status"] == status,
              f"detail of {sample}: id {detail['id']}, cms {detail['cms']}, version {detail['plugin_version']}, "
              f"status {detail['status']} (expected {status})")
    response, body = api.get("/api/v1/plugins/list?limit=50")
    rows = json.loads(body)
    check(len(rows) == min(50, total), f"list?limit=50 returned {len(rows)} rows")
    if total_count(response) is not None:
        check(total_count(response) == total, f"list's X-Total-Count {total_count(response)} is not the {total} installs")
    response, body = api.get("/api/v1/plugins/list?status=outdated&cms=woocommerce&limit=50")
    rows = json.loads(body)
    check(all(r["status"] == "outdated" and r["cms"] == "woocommerce" for r in rows),
          "the outdated woocommerce list holds other rows")
    check(len(rows) == min(50, expected["outdated_woocommerce"]), f"outdated woocommerce list: {len(rows)} rows")
    if total_count(response) is not None:
        check(total_count(response) == expected["outdated_woocommerce"],
              f"outdated woocommerce X-Total-Count {total_count(response)}, the store holds "
              f"{expected['outdated_woocommerce']}")
    print(f"  [fleet_reads] {backend}: overview, details of {', '.join(summary['samples'])} and lists check out "
          f"({total} installs: {expected['outdated_count']} outdated, {expected['error_count']} stale, "
          f"{expected['blocked_count']} blocked)", file=sys.stderr, flush=True)

    deep_offset = 90_000
    read_paths = [
        ("overview", "/api/v1/plugins/stats/overview", True),
        ("list", "/api/v1/plugins/list?limit=50", True),
        ("list_outdated", "/api/v1/plugins/list?status=outdated&limit=50", True),
        ("list_outdated_woocommerce", "/api/v1/plugins/list?status=outdated&cms=woocommerce&limit=50", True),
        (f"list_offset_{deep_offset}", f"/api/v1/plugins/list?limit=50&offset={deep_offset}", True),
    ]
    response, body = api.get(f"/api/v1/plugins/list?limit=50&offset={deep_offset}")
    cursor = next_cursor(response)
    if cursor is None:
        print(json.dumps({"backend": backend, "read": "list_after_deep", "skipped":
                          f"no Link rel=\"next\" on ?limit=50&offset={deep_offset}"}, separators=(",", ":")), flush=True)
    else:
        path = f"/api/v1/plugins/list?limit=50&after={urllib.parse.quote(cursor, safe='')}"
        # The keyset page after row offset+50 is the offset page there.
        _, keyset = api.get(path)
        _, offset = api.get(f"/api/v1/plugins/list?limit=50&offset={deep_offset + 50}")
        check([r["id"] for r in json.loads(keyset)] == [r["id"] for r in json.loads(offset)],
              f"the page after the cursor of offset {deep_offset} is not the page at offset {deep_offset + 50}")
        read_paths.append(("list_after_deep", path, True))
    if "active" in summary["samples"]:
        read_paths.append(("detail", f"/api/v1/plugins/{summary['samples']['active']['id']}", True))
    read_paths.append(("metrics", "/metrics", False))

    for name, path, auth in read_paths:
        for _ in range(args.warmup):
            api.get(path, auth)
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            api.get(path, auth)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()

        def pct(p):
            return times[max(0, math.ceil(p * len(times)) - 1)]

        print(json.dumps({"backend": backend, "read": name, "requests": len(times), "p50_ms": round(pct(0.50), 3),
                          "p99_ms": round(pct(0.99), 3), "max_ms": round(times[-1], 3)}, separators=(",", ":")), flush=True)


class Console:
    """A browser without a script engine: signs in, keeps the session cookie, reads pages."""

    def __init__(self, base, email, password):
        import http.client
        import urllib.parse
        parsed = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        self.cookies = {}
        _, page = self.request("GET", "/console/login")
        csrf = re.search(rb'name="csrf" value="([0-9a-f]{64})"', page).group(1).decode()
        form = urllib.parse.urlencode({"csrf": csrf, "email": email, "password": password})
        response, _ = self.request("POST", "/console/login", form, expect=303)
        check(response.getheader("location") == "/console/", "the console sign-in did not go to the overview")

    def request(self, method, path, body=None, expect=200):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        page = response.read()
        if response.status != expect:
            sys.exit(f"FAIL: {method} {path} answered {response.status}: {page[:500].decode(errors='replace')}")
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                name, _, cookie = pair.partition("=")
                if cookie and "Max-Age=0" not in value:
                    self.cookies[name] = cookie
                else:
                    self.cookies.pop(name, None)
        return response, page


def console(args):
    summary = json.load(open(args.summary))
    browser = Console(args.base, args.email, args.password)
    install = summary["samples"]["active"]["id"]
    pages = [
        ("overview", "/console/"),
        ("overview_refresh", "/console/overview/figures"),
        ("fleet", "/console/fleet"),
        ("fleet_outdated", "/console/fleet?status=outdated"),
        ("fleet_outdated_woocommerce", "/console/fleet?status=outdated&cms=woocommerce"),
        ("fleet_search", "/console/fleet?search=shop-4242"),
        ("install", f"/console/installs/{install}"),
        ("healing", "/console/healing"),
        ("flags", "/console/flags"),
    ]
    _, page = browser.request("GET", "/console/fleet")
    check(b"version \xe2\x86\x92 latest" in page and page.count(b'href="/console/installs/') == 50,
          "the fleet page does not list 50 installs")
    # What a first visit downloads: the page, the stylesheet and htmx (as served, no compression).
    asset_bytes = 0
    for asset in sorted(set(re.findall(rb'(?:href|src)="(/console/assets/[^"]+)"', page))):
        _, body = browser.request("GET", asset.decode())
        asset_bytes += len(body)
    for name, path in pages:
        for _ in range(args.warmup):
            browser.request("GET", path)
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            _, body = browser.request("GET", path)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()

        def pct(p):
            return times[max(0, math.ceil(p * len(times)) - 1)]

        print(json.dumps({"backend": args.backend, "page": name, "requests": len(times),
                          "p50_ms": round(pct(0.50), 3), "p99_ms": round(pct(0.99), 3),
                          "max_ms": round(times[-1], 3), "html_bytes": len(body),
                          "first_visit_bytes": len(body) + asset_bytes}, separators=(",", ":")), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("backend", choices=["sqlite", "postgres"])
    load.add_argument("target", help="the SQLite file, or the PostgreSQL URL")
    load.add_argument("--installs", type=int, required=True)
    load.add_argument("--events", type=int, required=True)
    load.add_argument("--merchants", type=int, default=1000,
                      help="seeded merchants beside the CLI-created one (0: every install is its)")
    load.add_argument("--merchant", required=True, help="the CLI-created merchant's id")
    load.add_argument("--agent", required=True, help="the CLI-created Ops agent's id")
    read = sub.add_parser("reads")
    read.add_argument("base")
    read.add_argument("token")
    read.add_argument("summary")
    read.add_argument("--backend", required=True)
    read.add_argument("--requests", type=int, default=200)
    read.add_argument("--warmup", type=int, default=3)
    pages = sub.add_parser("console")
    pages.add_argument("base")
    pages.add_argument("email")
    pages.add_argument("password")
    pages.add_argument("summary")
    pages.add_argument("--backend", required=True)
    pages.add_argument("--requests", type=int, default=200)
    pages.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.command == "console":
        console(args)
    elif args.command == "load":
        if args.installs < 1 or args.events < 0 or args.merchants < 0:
            sys.exit("installs ≥ 1, events ≥ 0, merchants ≥ 0")
        plan = Plan(args)
        summary = (load_sqlite if args.backend == "sqlite" else load_postgres)(plan, args.target)
        json.dump(summary, sys.stdout)
        print()
    else:
        reads(args)


if __name__ == "__main__":
    main()
