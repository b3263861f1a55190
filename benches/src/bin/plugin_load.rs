//! Load generator for what plugins and Sira send: N keep-alive HTTP/1.1 clients on loopback
//! post to a running `autoheal serve` for a fixed time and report the acknowledged rate and
//! latency percentiles as one JSON line. Bounded in time; talks only to the address it is
//! given (loopback in BENCHMARKS.md).
//!
//! plugin_load heartbeat ADDR MERCHANT_KEY [CLIENTS=64] [SECONDS=20] [INSTALLS=10000]
//! plugin_load interop   ADDR MERCHANT_KEY [CLIENTS=64] [SECONDS=20] [INSTALLS=1000]
//! plugin_load event     ADDR MERCHANT_KEY [CLIENTS=64] [SECONDS=20] [INSTALLS=1000]
//! plugin_load detect    ADDR MERCHANT_KEY:SIRA_TOKEN [CLIENTS=16] [SECONDS=20] [INSTALLS=200]
//! plugin_load detect-keyed …  (the same, each detection with its own idempotency key)
//! plugin_load handout   ADDR MERCHANT_KEY:SIRA_TOKEN [CLIENTS=16] [SECONDS=20] [INSTALLS=200]
//!
//! `interop`, `event` and `detect` first register INSTALLS WooCommerce installs (a heartbeat
//! each, with a reported state) and spread their requests over them. Every interop event is a
//! new order (nothing is deduplicated); `event` posts payment telemetry (9 in 10 successes),
//! which the server also counts into the install's hourly rollup; every detection auto-applies, so its response comes
//! after the decision, the dry run and the durable snapshot and command: its latency is the
//! detection-to-command latency. `detect-keyed` sends what a retrying Sira sends: a random
//! idempotency key with every detection, looked up before and stored with the log.
//! `handout` measures the plugin's poll that takes a command: each client queues one for an
//! install of its own (a detection, not timed), polls it (timed: the lease, the install's
//! sequence and, from issue 18 on, the signature) and acks it (not timed).

use benches::{arg, percentile, run_clients, Connection, Report};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Heartbeat,
    Interop,
    Event,
    Detect { keyed: bool },
    Handout,
}

fn heartbeat_body(site: usize) -> String {
    format!(
        r#"{{"cms":"woocommerce","plugin_version":"1.3.5","site_url":"https://shop-{site}.example","errors_last_hour":0.5,"php_version":"8.1.0","server_info":{{"memory_limit":"256M"}},"state":{{"config":{{"memory_limit":"128M"}},"tables":{{"wp_molam_orders":{{"id":"BIGINT UNSIGNED","amount":"DECIMAL(10,2)"}}}}}}}}"#
    )
}

/// Registers `installs` installs, from site number `first` on, and returns their ids.
async fn register(address: &str, key: &str, first: usize, installs: usize) -> Vec<String> {
    let mut connection = Connection::open(address).await;
    let mut ids = Vec::with_capacity(installs);
    for site in first..first + installs {
        let (status, body) = connection
            .post("/api/v1/plugins/heartbeat", key, &heartbeat_body(site))
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let body: serde_json::Value = serde_json::from_slice(&body).expect("heartbeat answer");
        ids.push(body["installation_id"].as_str().expect("id").to_owned());
    }
    ids
}

#[allow(clippy::too_many_arguments)]
async fn client(
    mode: Mode,
    address: String,
    key: String,
    sira: String,
    ids: Arc<Vec<String>>,
    client: usize,
    clients: usize,
    installs: usize,
    deadline: Instant,
) -> Report {
    let mut report = Report::default();
    let mut connection = Connection::open(&address).await;
    let mut sequence = client;
    let keys = std::hash::RandomState::new();
    while Instant::now() < deadline {
        // Each client walks its own slice of the installs; every sequence number is unique.
        let site = sequence % installs;
        if mode == Mode::Handout {
            let (elapsed, acknowledged) = hand_out(&mut connection, &key, &sira, &ids[site]).await;
            sequence += clients;
            report.record(elapsed, acknowledged);
            continue;
        }
        let (path, token, body, expected) = match mode {
            Mode::Heartbeat => ("/api/v1/plugins/heartbeat", &key, heartbeat_body(site), 200),
            Mode::Interop => (
                "/api/v1/plugins/interop/event",
                &key,
                format!(
                    r#"{{"plugin_id":"{}","event_type":"woocommerce_checkout_order_processed","payload":{{"id":"{sequence}","total":"12.50","currency":"EUR","customer_id":"c-{site}"}}}}"#,
                    ids[site]
                ),
                201,
            ),
            Mode::Event => (
                "/api/v1/plugins/event",
                &key,
                format!(
                    r#"{{"cms":"woocommerce","site_url":"https://shop-{site}.example","event_type":"{}","event_data":{{"order_id":"{sequence}","amount":"12.50","currency":"EUR"}}}}"#,
                    if sequence % 10 == 9 {
                        "payment_failed"
                    } else {
                        "payment_success"
                    }
                ),
                200,
            ),
            Mode::Handout => unreachable!("handled above"),
            Mode::Detect { keyed } => (
                "/api/v1/plugins/autoheal",
                &sira,
                format!(
                    r#"{{"plugin_id":"{}","detected_issue":"Fatal error: Unknown column 'merchant_fee' in field list","issue_severity":"high","proposed_patch":{{"table":"wp_molam_orders","column_type":"DECIMAL(10,2)"}},"sira_confidence":92.5{}}}"#,
                    ids[site],
                    if keyed {
                        // Random, as Sira's are: each lands on its own page of the key's index.
                        format!(r#","idempotency_key":"{:016x}""#, keys.hash_one(sequence))
                    } else {
                        String::new()
                    }
                ),
                201,
            ),
        };
        sequence += clients;
        let started = Instant::now();
        let (status, answer) = connection.post(path, token, &body).await;
        let elapsed = started.elapsed();
        let acknowledged = status == expected
            && (!matches!(mode, Mode::Detect { .. })
                || answer.windows(9).any(|w| w == b"\"applied\""));
        report.record(elapsed, acknowledged);
    }
    report
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some("heartbeat") => Mode::Heartbeat,
        Some("interop") => Mode::Interop,
        Some("event") => Mode::Event,
        Some("detect") => Mode::Detect { keyed: false },
        Some("detect-keyed") => Mode::Detect { keyed: true },
        Some("handout") => Mode::Handout,
        _ => panic!("MODE: heartbeat, interop, event, detect, detect-keyed or handout"),
    };
    let address = args.get(2).expect("ADDR").clone();
    let (key, sira) = match (mode, args.get(3).expect("KEY")) {
        (Mode::Detect { .. } | Mode::Handout, keys) => {
            let (key, sira) = keys.split_once(':').expect("MERCHANT_KEY:SIRA_TOKEN");
            (key.to_owned(), sira.to_owned())
        }
        (_, key) => (key.clone(), String::new()),
    };
    let default_clients = if matches!(mode, Mode::Detect { .. } | Mode::Handout) {
        16
    } else {
        64
    };
    let clients = arg(&args, 4, "CLIENTS", default_clients);
    let seconds = arg(&args, 5, "SECONDS", 20);
    let default_installs = match mode {
        Mode::Heartbeat => 10_000,
        Mode::Interop | Mode::Event => 1_000,
        Mode::Detect { .. } => 200,
        // A multiple of every client count the scripts use, so no two clients share one.
        Mode::Handout => 192,
    };
    let installs = arg(&args, 6, "INSTALLS", default_installs);
    let ids = Arc::new(match mode {
        Mode::Heartbeat => Vec::new(),
        // Installs of their own (the heartbeat mode's, which nothing queued for): the
        // detections of the other modes left commands on theirs, and a poll there would hand
        // out twenty at once.
        Mode::Handout => register(&address, &key, 5_000, installs).await,
        _ => register(&address, &key, 0, installs).await,
    });
    let server_before = match mode {
        Mode::Detect { .. } => Some(detection_histogram(&address).await),
        _ => None,
    };
    let run = run_clients(clients, seconds, |index, deadline| {
        client(
            mode,
            address.clone(),
            key.clone(),
            sira.clone(),
            ids.clone(),
            index,
            clients,
            installs,
            deadline,
        )
    })
    .await;
    let mut report = serde_json::json!({
        "mode": args[1],
        "clients": clients,
        "seconds": run.seconds,
        "acknowledged": run.latencies_us.len(),
        "errors": run.errors,
        "per_second": (run.latencies_us.len() as f64 / run.seconds).round(),
        "p50_ms": percentile(&run.latencies_us, 0.50),
        "p99_ms": percentile(&run.latencies_us, 0.99),
    });
    if let Some(server_before) = server_before {
        // What the server measured itself, from arrival to commit (no client or network
        // time): the share within the 5 ms target and the mean.
        let after = detection_histogram(&address).await;
        let count = after.count - server_before.count;
        report["server_within_5ms"] =
            serde_json::json!((after.within_5ms - server_before.within_5ms) / count);
        report["server_mean_ms"] =
            serde_json::json!((after.sum_seconds - server_before.sum_seconds) / count * 1e3);
    }
    println!("{report}");
}

/// One hand-out: a detection queues a command for `install`, the timed poll takes it, and
/// the ack closes it (so the next detection of the install auto-applies again).
async fn hand_out(
    connection: &mut Connection,
    key: &str,
    sira: &str,
    install: &str,
) -> (std::time::Duration, bool) {
    let detection = format!(
        r#"{{"plugin_id":"{install}","detected_issue":"Fatal error: Unknown column 'merchant_fee' in field list","issue_severity":"high","proposed_patch":{{"table":"wp_molam_orders","column_type":"DECIMAL(10,2)"}},"sira_confidence":92.5}}"#
    );
    let (status, _) = connection
        .post("/api/v1/plugins/autoheal", sira, &detection)
        .await;
    if status != 201 {
        return (std::time::Duration::ZERO, false);
    }
    let started = Instant::now();
    let (status, answer) = connection
        .get_as(&format!("/api/v1/plugins/autoheal/commands/{install}"), key)
        .await;
    let elapsed = started.elapsed();
    let commands: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let mut acked = true;
    for id in commands
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
    {
        let path = format!("/api/v1/plugins/autoheal/commands/{id}/ack");
        let (status, _) = connection.post(&path, key, r#"{"success":true}"#).await;
        acked &= status == 200;
    }
    let handed = commands.as_array().is_some_and(|c| !c.is_empty());
    (elapsed, status == 200 && handed && acked)
}

/// The server's `plugin_autoheal_detection_seconds` histogram, as far as the report needs it.
struct DetectionHistogram {
    within_5ms: f64,
    count: f64,
    sum_seconds: f64,
}

async fn detection_histogram(address: &str) -> DetectionHistogram {
    let (status, body) = Connection::open(address).await.get("/metrics").await;
    assert_eq!(status, 200, "/metrics");
    let text = String::from_utf8(body).expect("metrics text");
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    DetectionHistogram {
        within_5ms: value("plugin_autoheal_detection_seconds_bucket{le=\"0.005\"}"),
        count: value("plugin_autoheal_detection_seconds_count"),
        sum_seconds: value("plugin_autoheal_detection_seconds_sum"),
    }
}
