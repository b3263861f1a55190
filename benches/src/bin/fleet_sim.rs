//! A simulated fleet (issue 16): INSTALLS plugins of one merchant, each heartbeating about
//! hourly, sent open-loop to one or more replicas of `autoheal serve`, round robin as a load
//! balancer would, for SECONDS, then one JSON line: what was sent and acknowledged, the
//! latency percentiles per replica and overall, in the bursts and outside them.
//!
//! fleet_sim ADDR[,ADDR…] MERCHANT_KEY [INSTALLS=1000000] [SECONDS=600] [MEAN_PER_SECOND=280]
//!           [EVENTS_PER_HEARTBEAT=1] [CONNECTIONS_PER_REPLICA=32]
//!
//! The rate: every 120 s, 6 s at ten times the mean (the top of the hour, when a fleet's
//! cron-driven heartbeats bunch up), and between the bursts a base rate chosen so that the
//! mean over a cycle is MEAN_PER_SECOND; the first burst starts 60 s in. Open loop: each
//! request is due at its scheduled time and its latency is counted from then, so time spent
//! waiting for a free connection (the server falling behind) is in the figures, not hidden
//! by a client that slows down with the server.
//!
//! Install n sends what `benches/fleet_seed.py` seeded for it (site `https://shop-{n}.example`,
//! its cms, its version), so with a fleet loaded by `fleet_seed.py load … --merchants 0` every
//! heartbeat updates an existing install. Heartbeats visit the installs in a scattered order
//! (a multiplicative step coprime with INSTALLS). Payment events (9 in 10 successes) come at
//! a steady EVENTS_PER_HEARTBEAT times the mean rate, bursts or not, from the installs in the
//! same order. Requests go to the replicas round robin.

use benches::{arg, percentile, Connection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

const CYCLE_SECONDS: f64 = 120.0;
const BURST_SECONDS: f64 = 6.0;
const BURST_FACTOR: f64 = 10.0;
const FIRST_BURST_AT: f64 = 60.0;

/// (older releases, latest) per cms, in `fleet_seed.py`'s order (CMS[n % 5]).
const RELEASES: [(&str, [&str; 3], &str); 5] = [
    ("woocommerce", ["1.2.0", "1.3.0", "1.3.5-rc.1"], "1.3.5"),
    ("prestashop", ["1.8.3", "1.9.12", "1.10.0-beta.2"], "1.10.0"),
    ("shopify", ["2.0.1", "2.1.0", "2.2.0-rc.1"], "2.2.0"),
    ("magento", ["1.0.9", "1.1.0", "1.1.2"], "1.1.3"),
    (
        "generic",
        ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.beta"],
        "1.0.0",
    ),
];

/// Install n's cms and version, as `fleet_seed.py`'s `Plan.version` gives them.
fn release_of(n: u64) -> (&'static str, &'static str) {
    let (cms, older, latest) = RELEASES[(n % 5) as usize];
    let slot = (n / 5) % 10;
    (
        cms,
        if slot < 7 {
            latest
        } else {
            older[(slot - 7) as usize]
        },
    )
}

/// How many requests are due `elapsed` seconds in, for a mean of `mean` per second.
fn due_by(elapsed: f64, mean: f64) -> f64 {
    let burst = mean * BURST_FACTOR;
    let base = (mean * CYCLE_SECONDS - burst * BURST_SECONDS) / (CYCLE_SECONDS - BURST_SECONDS);
    // Cycles are counted from the first burst's start; before it, the base rate.
    let since_burst = elapsed - FIRST_BURST_AT;
    if since_burst < 0.0 {
        return base * elapsed;
    }
    let cycles = (since_burst / CYCLE_SECONDS).floor();
    let within = since_burst - cycles * CYCLE_SECONDS;
    base * FIRST_BURST_AT
        + cycles * mean * CYCLE_SECONDS
        + burst * within.min(BURST_SECONDS)
        + base * (within - BURST_SECONDS).max(0.0)
}

fn in_burst(elapsed: f64) -> bool {
    let since_burst = elapsed - FIRST_BURST_AT;
    since_burst >= 0.0 && since_burst % CYCLE_SECONDS < BURST_SECONDS
}

struct Request {
    due: Instant,
    in_burst: bool,
    path: &'static str,
    body: String,
}

#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    burst_latencies_us: Vec<u32>,
    errors: u64,
}

/// One connection's loop: takes the next due request of its replica, sends it, records the
/// latency from when it was due.
async fn worker(
    address: String,
    key: Arc<String>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>,
) -> Seen {
    let mut seen = Seen::default();
    let mut connection = Connection::open(&address).await;
    loop {
        let Some(request) = queue.lock().await.recv().await else {
            return seen;
        };
        let (status, _) = connection.post(request.path, &key, &request.body).await;
        let latency = request.due.elapsed().as_micros() as u32;
        if status == 200 || status == 201 || status == 202 {
            seen.latencies_us.push(latency);
            if request.in_burst {
                seen.burst_latencies_us.push(latency);
            }
        } else {
            seen.errors += 1;
        }
    }
}

fn figures(mut seen: Seen) -> serde_json::Value {
    seen.latencies_us.sort_unstable();
    seen.burst_latencies_us.sort_unstable();
    serde_json::json!({
        "acknowledged": seen.latencies_us.len(),
        "errors": seen.errors,
        "p50_ms": percentile(&seen.latencies_us, 0.50),
        "p99_ms": percentile(&seen.latencies_us, 0.99),
        "p999_ms": percentile(&seen.latencies_us, 0.999),
        "max_ms": percentile(&seen.latencies_us, 1.0),
        "burst_p99_ms": percentile(&seen.burst_latencies_us, 0.99),
    })
}

fn merge(into: &mut Seen, from: &Seen) {
    into.latencies_us.extend(&from.latencies_us);
    into.burst_latencies_us.extend(&from.burst_latencies_us);
    into.errors += from.errors;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addresses: Vec<String> = args
        .get(1)
        .expect("ADDR[,ADDR…]")
        .split(',')
        .map(str::to_owned)
        .collect();
    let key = Arc::new(args.get(2).expect("MERCHANT_KEY").clone());
    let installs: u64 = arg(&args, 3, "INSTALLS", 1_000_000);
    let seconds: f64 = arg(&args, 4, "SECONDS", 600.0);
    let mean: f64 = arg(&args, 5, "MEAN_PER_SECOND", 280.0);
    let events_per_heartbeat: u64 = arg(&args, 6, "EVENTS_PER_HEARTBEAT", 1);
    let connections: usize = arg(&args, 7, "CONNECTIONS_PER_REPLICA", 32);

    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for address in &addresses {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        queues.push(sender);
        workers.push(
            (0..connections)
                .map(|_| tokio::spawn(worker(address.clone(), key.clone(), receiver.clone())))
                .collect::<Vec<_>>(),
        );
    }

    // A step coprime with `installs` visits every install once per pass, scattered.
    let mut step = installs / 2 + 7919;
    while gcd(step, installs) != 1 {
        step += 1;
    }
    let started = Instant::now();
    let mut heartbeats = 0u64;
    let mut events = 0u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= seconds {
            break;
        }
        let burst = in_burst(elapsed);
        let mut due = Vec::new();
        while (heartbeats as f64) < due_by(elapsed, mean) {
            let n = (heartbeats * step) % installs;
            let (cms, version) = release_of(n);
            due.push(Request {
                due: Instant::now(),
                in_burst: burst,
                path: "/api/v1/plugins/heartbeat",
                body: format!(
                    r#"{{"cms":"{cms}","plugin_version":"{version}","site_url":"https://shop-{n}.example","errors_last_hour":0.0,"php_version":"8.1.27","server_info":{{"memory_limit":"256M","max_execution_time":"30"}}}}"#
                ),
            });
            heartbeats += 1;
        }
        // Payments do not bunch up at the top of the hour: events come at a steady rate,
        // each from an install in the heartbeats' order.
        while (events as f64) < elapsed * mean * events_per_heartbeat as f64 {
            let n = (events / events_per_heartbeat.max(1) * step) % installs;
            let (cms, _) = release_of(n);
            let event_type = if events % 10 == 9 {
                "payment_failed"
            } else {
                "payment_success"
            };
            due.push(Request {
                due: Instant::now(),
                in_burst: burst,
                path: "/api/v1/plugins/event",
                body: format!(
                    r#"{{"cms":"{cms}","site_url":"https://shop-{n}.example","event_type":"{event_type}","event_data":{{"amount":"12.50","currency":"EUR"}}}}"#
                ),
            });
            events += 1;
        }
        for request in due {
            queues[(sent % queues.len() as u64) as usize]
                .send(request)
                .expect("worker queue");
            sent += 1;
        }
    }
    drop(queues);
    let mut replicas = Vec::new();
    let mut all = Seen::default();
    for (address, tasks) in addresses.iter().zip(workers) {
        let mut replica = Seen::default();
        for task in tasks {
            merge(&mut replica, &task.await.expect("worker"));
        }
        merge(&mut all, &replica);
        let mut figures = figures(replica);
        figures["address"] = serde_json::json!(address);
        replicas.push(figures);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut report = figures(all);
    report["seconds"] = serde_json::json!(seconds);
    report["installs"] = serde_json::json!(installs);
    report["heartbeats"] = serde_json::json!(heartbeats);
    report["events"] = serde_json::json!(events);
    report["requests_per_second"] = serde_json::json!((sent as f64 / seconds).round());
    report["replicas"] = serde_json::json!(replicas);
    println!("{report}");
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
