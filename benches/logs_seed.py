#!/usr/bin/env python3
"""Helper of benches/platform_logs.sh (python3 stdlib only; PostgreSQL through the psql CLI).

  logs_seed.py load sqlite PATH   --entries N [--merchants 1000]   > SUMMARY.json
  logs_seed.py load postgres URL  (same options)
  logs_seed.py reads BASE_URL TOKEN SUMMARY.json --backend NAME --target PATH|URL [--requests 200] [--warmup 3]

`load` bulk-loads `platform_logs` of a migrated store (`autoheal migrate`) with N entries
and prints a JSON summary. The same deterministic generator feeds both backends: SQLite by
`executemany` with the secondary indexes and the FTS insert trigger dropped (the FTS5 index
is then filled by its `'rebuild'` command, the indexes recreated from their own SQL);
PostgreSQL by one `COPY` into the month partitions (made first, as the retention job makes
them), its secondary indexes dropped and recreated (the `tsvector` column is computed per
row by the COPY, as on an insert), then ANALYZE.

The entries, as the server writes them (api/src/{logs/ops_actions,ops/jobs,delivery/outbox,
healing,fleet}.rs), each level spread evenly over its default retention (less an hour, so
the retention job deletes none during the reads), so the store is what a server keeps at
steady state: error 5 % over 30 days, warn 15 % over 14 days, info
70 % over 7 days, debug 10 % (heartbeats, `--log-store-debug`) over the last day. About
60 % name one of the merchants (and one of its 10 installs). Words for `q`: "install" is in
~44 % of the messages, "answered" in ~30 %, "timeout" in ~2 %, "certificate" in 1 entry of
100,003 (a dead letter "tls certificate has expired"; ~100 in 10 M).

`reads` checks the API against the store (newest page, a level and time filter, the rare
word's every entry, a cursor page against SQL), then times each read warm: WARMUP requests,
then REQUESTS sequential requests over one keep-alive connection (or fewer, never under 10, once a
read has taken --budget-seconds), one JSON line per read.
Then the peer of the full-text reads, on the same data: the same query's SQL run directly
(psql / the sqlite3 module) with the full-text index, and with `LIKE '%word%'` instead
(`ILIKE` on PostgreSQL, as the full text ignores case), the median of 3 runs each.
"""

import argparse
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_seed import Api, check, iso, psql  # noqa: E402  (the fleet benchmark's helpers)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# (level, share of the entries, days over which they are spread = the default retention)
LEVELS = [("error", 0.05, 30), ("warn", 0.15, 14), ("info", 0.70, 7), ("debug", 0.10, 1)]
RARE_EVERY = 100_003
RARE_WORD, COMMON_WORD, FREQUENT_WORD, MEDIUM_WORD = "certificate", "install", "answered", "timeout"
COLUMNS = ("id", "logged_at", "level", "merchant_id", "merchant_slug", "agent_id", "request_id",
           "service", "action", "message", "data", "error_name", "error_message", "error_stack")
OPS_ROUTES = [  # (method, route, service)
    ("POST", "/api/v1/plugins/{id}/toggles", "fleet"),
    ("DELETE", "/api/v1/plugins/{id}/toggles/{key}", "fleet"),
    ("POST", "/api/v1/plugins/autoheal/logs/{id}/approve", "healing"),
    ("POST", "/api/v1/plugins/autoheal/logs/{id}/reject", "healing"),
    ("PATCH", "/api/v1/flags/{key}", "flags"),
    ("POST", "/api/v1/versions", "fleet"),
    ("POST", "/api/v1/rules/replay", "rules"),
    ("PATCH", "/api/platform/errors/{id}", "errors"),
    ("POST", "/api/v1/merchants", "ops"),
    ("POST", "/console/installs/{id}/toggles", "console"),
]
JOBS = ["retention", "hourly_fleet_check", "daily_health", "outbox_dispatch", "detector", "rollups"]
RULES = ["missing_database_column", "memory_limit_exhausted", "payment_gateway_timeout", "stale_cache",
         "no rule"]
DECISIONS = ["auto_applied", "pending_review", "applied", "skipped", "dry_run"]
CHANNELS = ["webhook", "slack", "email"]
HOSTS = ["hooks.example.com", "alerts.shop-tools.io", "ops.example.net", "notify.example.org"]
FAILURES = [("timeout", "no answer within 10 s"), ("connect", "connection refused"),
            ("http_5xx", "the receiver answered 503"), ("http_4xx", "the receiver answered 410")]


def log(message):
    print(f"  [logs_seed] {message}", file=sys.stderr, flush=True)


class Plan:
    def __init__(self, entries, merchants, now_ms):
        rand = random.Random(20260120)
        self.entries = entries
        self.now_ms = now_ms
        self.merchants = [uuid.UUID(int=rand.getrandbits(128), version=4) for _ in range(merchants)]
        self.installs = [uuid.UUID(int=rand.getrandbits(128), version=4) for _ in range(merchants * 10)]
        self.agents = [uuid.UUID(int=rand.getrandbits(128), version=4) for _ in range(10)]


def entries(plan, seed=1):
    """The entries in time order, oldest first, as tuples in COLUMNS order with Python
    values (bytes ids, ms timestamps); `g` numbers them, so the rare ones are known."""
    rand = random.Random(seed)
    rnd, getrandbits, choice = rand.random, rand.getrandbits, rand.choice
    span_ms = max(days for _, _, days in LEVELS) * DAY_MS
    step_ms = 60_000
    start = plan.now_ms - span_ms
    # Entries per level per minute: its share spread over its retention days.
    # Each level's span ends an hour short of its retention, so the server's retention job
    # (it runs on start) deletes nothing during the reads.
    rates = [(level, plan.entries * share / ((days * DAY_MS - HOUR_MS) / step_ms), plan.now_ms - days * DAY_MS + HOUR_MS)
             for level, share, days in LEVELS]
    owed = {level: 0.0 for level, _, _ in LEVELS}
    g = 0
    merchants, installs, agents = plan.merchants, plan.installs, plan.agents
    for minute in range(start, plan.now_ms, step_ms):
        batch = []
        for level, rate, since in rates:
            if minute < since:
                continue
            owed[level] += rate
            count = int(owed[level])
            owed[level] -= count
            batch.extend((minute + int(rnd() * step_ms), level) for _ in range(count))
        batch.sort()
        for ms, level in batch:
            if g >= plan.entries:
                return
            entry_id = ((ms << 80) | (7 << 76) | (getrandbits(12) << 64) | (0x8 << 60) | g).to_bytes(16, "big")
            k = getrandbits(31) % len(installs)
            install, merchant = installs[k], merchants[k // 10]
            merchant_id, slug, agent, request_id = None, None, None, None
            error_name = error_message = None
            r = rnd()
            if g % RARE_EVERY == 17:
                level = "error"
                r = 0.0
            if level == "debug":
                service, action = "fleet", "fleet.heartbeat"
                message = f"heartbeat of install {install}"
                data = f'{{"installation_id":"{install}"}}'
                merchant_id = merchant
            elif (level == "info" and r < 0.45) or (level == "warn" and r >= 0.8):
                decision = "failed" if level == "warn" else choice(DECISIONS)
                rule = choice(RULES)
                service, action = "healing", "healing.decided"
                message = f"detection from {'sira' if r < 0.3 else 'detector'} on install {install}: {decision} ({rule})"
                data = (f'{{"log_id":"{uuid.UUID(int=getrandbits(128))}","installation_id":"{install}",'
                        f'"rule":"{rule}","status":"{decision}"}}')
                merchant_id = merchant
            elif (level == "info" and r < 0.8) or (level == "warn" and r >= 0.5) or (level == "error" and r >= 0.8):
                method, route, service = choice(OPS_ROUTES)
                status = {"info": choice((200, 201, 204)), "warn": choice((404, 409, 422)), "error": 500}[level]
                action = "ops.request"
                message = f"{method} {route} answered {status}"
                path = route.replace("{id}", str(install)).replace("{key}", "block_plugin")
                data = f'{{"method":"{method}","route":"{route}","path":"{path}","status":{status}}}'
                agent = agents[k % len(agents)]
                request_id = str(uuid.UUID(int=getrandbits(128), version=4))
            elif level == "info" or (level == "error" and r >= 0.5):
                job = choice(JOBS)
                service = "ops"
                if level == "info":
                    action, message = "job.ran", f"scheduled job {job} ran"
                else:
                    action, message = "job.failed", f"scheduled job {job} failed; it runs again at its next interval"
                    error_name, error_message = "StoreError", "pool timed out while waiting for an open connection"
                data = f'{{"job":"{job}","duration_ms":{getrandbits(10)}}}'
            else:  # a delivery that failed: warn while retried, error once a dead letter
                channel, host = choice(CHANNELS), choice(HOSTS)
                failure, summary = ("tls", "tls certificate has expired") if r == 0.0 else choice(FAILURES)
                destination = f"{host}#{getrandbits(32):08x}"
                service = "delivery"
                if level == "warn":
                    action, outcome = "outbox.delivery_failed", "retried later"
                else:
                    action, outcome = "outbox.dead_lettered", "now a dead letter"
                message = f"{channel} delivery to {destination} failed ({failure} {summary}); {outcome}"
                data = (f'{{"message_id":"{uuid.UUID(int=getrandbits(128))}","channel":"{channel}",'
                        f'"destination":"{destination}","attempt":{1 + getrandbits(3)},"class":"{failure}"}}')
                error_name, error_message = failure, summary
                merchant_id = merchant
            if merchant_id is not None:
                slug = f"bench-merchant-{k // 10}"
            yield (entry_id, ms, level, merchant_id, slug, agent, request_id, service, action, message, data,
                   error_name, error_message, None)
            g += 1


def summary(plan, backend, started, counts):
    return {"backend": backend, "entries": counts["entries"], "now_ms": plan.now_ms,
            "merchant": str(plan.merchants[0]), "rare_entries": counts["rare"],
            "load_seconds": round(time.monotonic() - started, 1)}


# --- SQLite -------------------------------------------------------------------------------


def load_sqlite(plan, path):
    started = time.monotonic()
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=OFF", "cache_size=-2000000", "temp_store=MEMORY"):
        db.execute(f"PRAGMA {pragma}")
    dropped = db.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'platform_logs' "
                         "AND sql IS NOT NULL AND (type = 'index' OR name = 'platform_logs_fts_insert')").fetchall()
    db.execute("BEGIN")
    for kind, name, _ in dropped:
        db.execute(f'DROP {kind.upper()} "{name}"')
    db.execute("COMMIT")
    phase = time.monotonic()
    sql = f"INSERT INTO platform_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rare = 0
    batch = []

    def flush():
        db.execute("BEGIN")
        db.executemany(sql, batch)
        db.execute("COMMIT")
        batch.clear()

    last_second, prefix = -1, ""
    for done, row in enumerate(entries(plan), 1):
        entry_id, ms, *rest = row
        second, milli = divmod(ms, 1000)
        if second != last_second:
            last_second = second
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        rest[1] = rest[1] and rest[1].bytes  # merchant_id
        rest[3] = rest[3] and rest[3].bytes  # agent_id
        rare += RARE_WORD in rest[7]
        batch.append((entry_id, f"{prefix}.{milli:03d}+00:00", *rest))
        if len(batch) == 200_000:
            flush()
            if done % 2_000_000 == 0:
                log(f"sqlite: {done} entries, {time.monotonic() - phase:.0f} s")
    flush()
    count = db.execute("SELECT COUNT(*) FROM platform_logs").fetchone()[0]
    log(f"sqlite: {count} entries in {time.monotonic() - phase:.1f} s")
    phase = time.monotonic()
    db.execute("INSERT INTO platform_logs_fts (platform_logs_fts) VALUES ('rebuild')")
    log(f"sqlite: FTS5 rebuilt in {time.monotonic() - phase:.1f} s")
    phase = time.monotonic()
    db.execute("BEGIN")
    for _, _, create in dropped:
        db.execute(create)
    db.execute("COMMIT")
    log(f"sqlite: {len(dropped)} indexes and trigger recreated in {time.monotonic() - phase:.1f} s")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return summary(plan, "sqlite", started, {"entries": count, "rare": rare})


# --- PostgreSQL ---------------------------------------------------------------------------


def copy_text(value):
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def load_postgres(plan, url):
    started = time.monotonic()
    psql(url, """
SELECT autoheal_month_partitions('platform_logs', now() - interval '40 days', now() + interval '2 months');
DROP TABLE IF EXISTS bench_dropped_indexes;
CREATE TABLE bench_dropped_indexes AS
SELECT indexname, indexdef FROM pg_indexes i
WHERE schemaname = current_schema() AND tablename = 'platform_logs'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.indexname))::regclass);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM bench_dropped_indexes LOOP EXECUTE format('DROP INDEX %I', r.indexname); END LOOP;
END $$;""")
    phase = time.monotonic()
    copy = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
         f"COPY platform_logs ({', '.join(COLUMNS)}) FROM STDIN"],
        stdin=subprocess.PIPE, text=True, bufsize=1 << 20)
    rare = 0
    lines = []
    for done, row in enumerate(entries(plan), 1):
        entry_id, ms, *rest = row
        rare += RARE_WORD in rest[7]
        seconds, milli = divmod(ms, 1000)
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{milli:03d}+00"
        lines.append("\t".join([str(uuid.UUID(bytes=entry_id)), at] + [copy_text(v) for v in rest]))
        if len(lines) == 100_000:
            copy.stdin.write("\n".join(lines) + "\n")
            lines.clear()
            if done % 2_000_000 == 0:
                log(f"postgres: {done} entries, {time.monotonic() - phase:.0f} s")
    if lines:
        copy.stdin.write("\n".join(lines) + "\n")
    copy.stdin.close()
    if copy.wait() != 0:
        sys.exit("FAIL: the COPY into platform_logs failed")
    log(f"postgres: COPY in {time.monotonic() - phase:.1f} s")
    phase = time.monotonic()
    psql(url, """
SET maintenance_work_mem = '1GB';
DO $$ DECLARE r record; BEGIN
  -- A partitioned index's definition reads `ON ONLY`, which would skip the partitions.
  FOR r IN SELECT indexdef FROM bench_dropped_indexes LOOP EXECUTE replace(r.indexdef, ' ON ONLY ', ' ON '); END LOOP;
END $$;
DROP TABLE bench_dropped_indexes;""")
    log(f"postgres: indexes recreated in {time.monotonic() - phase:.1f} s")
    psql(url, "VACUUM ANALYZE platform_logs;")
    count = int(psql(url, "SELECT COUNT(*) FROM platform_logs").strip())
    default = int(psql(url, "SELECT COUNT(*) FROM platform_logs_default").strip())
    check(default == 0, f"{default} entries landed in platform_logs_default, not in their month")
    return summary(plan, "postgres", started, {"entries": count, "rare": rare})


# --- reads --------------------------------------------------------------------------------


def pct(times, p):
    return times[max(0, math.ceil(p * len(times)) - 1)]


def sql_newest(backend, target, where="", offset=0):
    """The newest entry's id by SQL (or the one `offset` after it), to check a page against."""
    query = f"SELECT id FROM platform_logs {where} ORDER BY logged_at DESC, id DESC LIMIT 1 OFFSET {offset}"
    if backend == "sqlite":
        return str(uuid.UUID(bytes=sqlite3.connect(target).execute(query).fetchone()[0]))
    return psql(target, query).strip()


def page(api, query):
    _, body = api.get(f"/api/platform/logs?{query}")
    return json.loads(body)


def reads(args):
    summary = json.load(open(args.summary))
    api = Api(args.base, args.token)
    backend, target = args.backend, args.target
    hour_ago = iso(summary["now_ms"] - HOUR_MS)
    since = urllib.parse.quote(hour_ago, safe="")

    newest = page(api, "")
    check(len(newest["entries"]) == 50 and newest["next_cursor"], "the newest page is not 50 entries and a cursor")
    check(newest["entries"][0]["id"] == sql_newest(backend, target), "the newest page does not start at SQL's newest")
    errors = page(api, f"since={since}&level=error&limit=500")["entries"]
    check(errors and all(e["level"] == "error" and e["timestamp"] >= hour_ago[:19] for e in errors),
          "since=<-1h>&level=error holds other entries")
    rare = page(api, f"q={RARE_WORD}&limit=500")["entries"]
    check(len(rare) == summary["rare_entries"] and all(RARE_WORD in e["message"] for e in rare),
          f"q={RARE_WORD} found {len(rare)} entries, the store holds {summary['rare_entries']}")
    # Full text by the store's own index, every match collected: the page's first and last
    # entry (the SQLite server walks the newest rows for a common word instead).
    for word in (COMMON_WORD, MEDIUM_WORD):
        found = page(api, f"q={word}")["entries"]
        for at in (0, len(found) - 1):
            check(found[at]["id"] == sql_newest(backend, target, full_text_where(backend, word), at),
                  f"q={word}: entry {at} of the page is not SQL's")
    tenant = page(api, f"tenant={summary['merchant']}")["entries"]
    check(len(tenant) == 50 and all(e["tenantId"] == summary["merchant"] for e in tenant), "tenant= holds others")
    # 100 pages deep by cursor: the page there is the next 50 entries by SQL.
    cursor = newest["next_cursor"]
    for _ in range(99):
        cursor = page(api, f"cursor={cursor}")["next_cursor"]
    deep = page(api, f"cursor={cursor}")["entries"]
    check(len(deep) == 50, "the 101st page is not 50 entries")
    print(f"  [platform_logs] {backend}: newest page, level and time filters, q={RARE_WORD} "
          f"({len(rare)} entries), tenant and 100 pages of cursor check out", file=sys.stderr, flush=True)
    # A cursor 20 days back, in the documented form (hex microseconds, the id): the keyset
    # does not care how deep it is; this is a page no client walks to.
    old_cursor = f"{(summary['now_ms'] - 20 * DAY_MS) * 1000:x}.{'f' * 32}"

    read_paths = [
        ("newest", ""),
        ("last_hour", f"since={since}"),
        ("last_hour_error", f"since={since}&level=error"),
        ("tenant", f"tenant={summary['merchant']}"),
        (f"q_{COMMON_WORD}", f"q={COMMON_WORD}"),
        (f"q_{MEDIUM_WORD}", f"q={MEDIUM_WORD}"),
        (f"q_{RARE_WORD}", f"q={RARE_WORD}"),
        (f"q_{FREQUENT_WORD}_last_hour", f"q={FREQUENT_WORD}&since={since}"),
        (f"q_{RARE_WORD}_last_hour", f"q={RARE_WORD}&since={since}"),
        # A common word (the debug heartbeats') with a filter it never meets: no page to find,
        # the worst case of SQLite's walk.
        ("q_heartbeat_level_error", "q=heartbeat&level=error"),
        ("cursor_page_101", f"cursor={cursor}"),
        ("cursor_20_days_back", f"cursor={old_cursor}"),
    ]
    for name, query in read_paths:
        path = f"/api/platform/logs?{query}"
        for _ in range(args.warmup):
            api.get(path)
        times = []
        # A slow read stops at the time budget (never under 10 requests): its line says how many.
        budget_ends = time.monotonic() + args.budget_seconds
        while len(times) < args.requests and (len(times) < 10 or time.monotonic() < budget_ends):
            started = time.perf_counter()
            api.get(path)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(json.dumps({"backend": backend, "read": name, "requests": len(times), "p50_ms": round(pct(times, 0.5), 3),
                          "p99_ms": round(pct(times, 0.99), 3), "max_ms": round(times[-1], 3)},
                         separators=(",", ":")), flush=True)
    sql_peer(backend, target)


def full_text_where(backend, word):
    """The WHERE of `word` by the full-text index: on SQLite every match collected."""
    if backend == "sqlite":
        return f"WHERE rowid IN (SELECT rowid FROM platform_logs_fts WHERE platform_logs_fts MATCH '\"{word}\"')"
    return f"WHERE message_search @@ plainto_tsquery('simple', '{word}')"


def sql_peer(backend, target):
    """The full-text reads' SQL straight on the store, with the index and with a LIKE scan."""
    columns = ", ".join(COLUMNS)
    for word in (COMMON_WORD, MEDIUM_WORD, RARE_WORD):
        like = "LIKE" if backend == "sqlite" else "ILIKE"
        indexed = (f"SELECT {columns} FROM platform_logs {full_text_where(backend, word)} "
                   f"ORDER BY logged_at DESC, id DESC LIMIT 51")
        scan = (f"SELECT {columns} FROM platform_logs WHERE message {like} '%{word}%' "
                f"ORDER BY logged_at DESC, id DESC LIMIT 51")
        figures = {}
        for name, query in (("index", indexed), ("like", scan)):
            runs = sorted(sql_time(backend, target, query) for _ in range(3))
            figures[f"{name}_ms"] = round(runs[1], 1)
        figures["like_over_index"] = round(figures["like_ms"] / max(figures["index_ms"], 0.001), 1)
        print(json.dumps({"backend": backend, "sql": f"q={word}", "median_of": 3, **figures},
                         separators=(",", ":")), flush=True)


def sql_time(backend, target, query):
    if backend == "sqlite":
        db = sqlite3.connect(target)
        started = time.perf_counter()
        rows = db.execute(query).fetchall()
        took = (time.perf_counter() - started) * 1000
        db.close()
        check(rows, f"no rows for {query}")
        return took
    out = psql(target, f"\\timing on\n{query};", at=True)
    return float(out.strip().splitlines()[-1].split()[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("backend", choices=["sqlite", "postgres"])
    load.add_argument("target", help="the SQLite file, or the PostgreSQL URL")
    load.add_argument("--entries", type=int, required=True)
    load.add_argument("--merchants", type=int, default=1000)
    read = sub.add_parser("reads")
    read.add_argument("base")
    read.add_argument("token")
    read.add_argument("summary")
    read.add_argument("--backend", required=True, choices=["sqlite", "postgres"])
    read.add_argument("--target", required=True, help="the SQLite file, or the PostgreSQL URL")
    read.add_argument("--requests", type=int, default=200)
    read.add_argument("--warmup", type=int, default=3)
    read.add_argument("--budget-seconds", type=float, default=60, help="per read, after 10 requests")
    args = parser.parse_args()
    if args.command == "load":
        if args.entries < RARE_EVERY or args.merchants < 1:
            sys.exit(f"entries ≥ {RARE_EVERY}, merchants ≥ 1")
        plan = Plan(args.entries, args.merchants, int(time.time() * 1000))
        result = (load_sqlite if args.backend == "sqlite" else load_postgres)(plan, args.target)
        json.dump(result, sys.stdout)
        print()
    else:
        reads(args)


if __name__ == "__main__":
    main()
