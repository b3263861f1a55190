#!/usr/bin/env python3
"""Helper of benches/detector.sh (python3 stdlib only): the built-in detector's latency.

  detector_load.py latency BASE_URL MERCHANT_KEY OPS_TOKEN --installs 30 [--prefix https://lat]
  detector_load.py burst   BASE_URL MERCHANT_KEY OPS_TOKEN --installs 1000 [--clients 16]

Each install heartbeats with a state (WooCommerce, `memory_limit` 128M) and then posts three
`error` events "PHP Fatal error: Allowed memory size of N bytes exhausted (tried to allocate M
bytes)" with other numbers each (one error group, recognized by the shipped rule
`memory_limit_exceeded`), so the third crosses the detector's default threshold (3 events in
10 minutes on an install).

`latency`: one install after another, each after a random pause of 0–1.5 s (so the third
events fall at every phase of the detector's interval); the time from the third event's 2xx
to its detection (`source=detector`, that install's `plugin_id`) in
`GET /api/v1/plugins/autoheal/logs`, polled every 20 ms. One JSON line: p50/p99/max.

`burst`: every install's three events at once (CLIENTS concurrent keep-alive connections),
then the time from the last event's 2xx to the last detection listed, polled every 20 ms.
"""

import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse

MESSAGE = "PHP Fatal error: Allowed memory size of {limit} bytes exhausted (tried to allocate {size} bytes)"
POLL_S = 0.02


class Client:
    def __init__(self, base, token):
        parsed = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        self.token = token

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status // 100 != 2:
            sys.exit(f"FAIL: {method} {path} answered {response.status}: {data[:500].decode(errors='replace')}")
        return json.loads(data) if data else None


def install(client, site):
    return client.call("POST", "/api/v1/plugins/heartbeat", {
        "cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5", "php_version": "8.1.27",
        "state": {"config": {"memory_limit": "128M"},
                  "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"}}},
    })["installation_id"]


def out_of_memory(client, site, n):
    message = MESSAGE.format(limit=134_217_728 + n * 1024, size=20_480 + n * 8 + random.randrange(8))
    client.call("POST", "/api/v1/plugins/event", {
        "cms": "woocommerce", "site_url": site, "event_type": "error", "severity": "error",
        "event_data": {}, "message": message})


def detections(ops, query):
    return ops.call("GET", f"/api/v1/plugins/autoheal/logs?source=detector&{query}")


def pct(values, p):
    return values[max(0, math.ceil(p * len(values)) - 1)]


def latency(args):
    plugin, ops = Client(args.base, args.merchant_key), Client(args.base, args.ops_token)
    waits = []
    for k in range(args.installs):
        site = f"{args.prefix}-{k}.example"
        installation = install(plugin, site)
        out_of_memory(plugin, site, 0)
        out_of_memory(plugin, site, 1)
        time.sleep(random.uniform(0, 1.5))
        out_of_memory(plugin, site, 2)
        crossed = time.perf_counter()
        while not detections(ops, f"plugin_id={installation}"):
            if time.perf_counter() - crossed > args.timeout:
                sys.exit(f"FAIL: no detection for {installation} within {args.timeout} s")
            time.sleep(POLL_S)
        waits.append((time.perf_counter() - crossed) * 1000)
        log = detections(ops, f"plugin_id={installation}")
        if len(log) != 1 or log[0]["status"] != "pending_review":
            sys.exit(f"FAIL: {installation}'s detections: {log}")
    waits.sort()
    print(json.dumps({"measure": "event_to_detection", "installs": len(waits), "p50_ms": round(pct(waits, 0.5), 1),
                      "p99_ms": round(pct(waits, 0.99), 1), "max_ms": round(waits[-1], 1),
                      "min_ms": round(waits[0], 1)}, separators=(",", ":")), flush=True)


def burst(args):
    sites = [f"https://burst-{k}.example" for k in range(args.installs)]
    lock = threading.Lock()
    queue = list(sites)

    def each(work):
        def worker():
            client = Client(args.base, args.merchant_key)
            while True:
                with lock:
                    if not queue:
                        return
                    site = queue.pop()
                work(client, site)
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    each(install)
    started = time.perf_counter()
    queue[:] = sites
    each(lambda client, site: [out_of_memory(client, site, n) for n in range(3)])
    posted = time.perf_counter()
    ops = Client(args.base, args.ops_token)
    last = args.installs - 1
    while not detections(ops, f"limit=1&offset={last}"):
        if time.perf_counter() - posted > args.timeout:
            sys.exit(f"FAIL: fewer than {args.installs} detections within {args.timeout} s")
        time.sleep(POLL_S)
    done = time.perf_counter()
    check = detections(ops, f"limit=500&offset={last - 499 if last >= 499 else 0}")
    if not all(log["status"] == "pending_review" for log in check):
        sys.exit("FAIL: a burst detection is not waiting for review")
    print(json.dumps({"measure": "burst_to_all_detections", "installs": args.installs,
                      "events": 3 * args.installs, "posting_s": round(posted - started, 2),
                      "events_per_s": round(3 * args.installs / (posted - started)),
                      "last_event_to_last_detection_ms": round((done - posted) * 1000, 1)},
                     separators=(",", ":")), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("latency", "burst"):
        mode = sub.add_parser(name)
        mode.add_argument("base")
        mode.add_argument("merchant_key")
        mode.add_argument("ops_token")
        mode.add_argument("--installs", type=int, required=True)
        mode.add_argument("--timeout", type=float, default=300, help="s to wait for detections")
    sub.choices["latency"].add_argument("--prefix", default="https://latency")
    sub.choices["burst"].add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    random.seed(20)
    (latency if args.command == "latency" else burst)(args)


if __name__ == "__main__":
    main()
