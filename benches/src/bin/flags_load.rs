//! Flag evaluation load generator: N keep-alive HTTP/1.1 clients on loopback
//! post batch evaluations (`POST /api/platform/flags/evaluate` with `keys`)
//! to a running `autoheal serve` for a fixed time, each for another user, and
//! report flag evaluations per second and request latency percentiles as
//! one JSON line. Bounded in time; talks only to the address it is given.
//!
//! flags_load ADDR TOKEN KEYS [CLIENTS=8] [SECONDS=15]
//! (KEYS: comma-separated flag keys evaluated in every request)

use benches::{gather, percentile, Connection, Report};
use std::time::{Duration, Instant};

async fn client(
    address: String,
    token: String,
    keys: String,
    client: usize,
    deadline: Instant,
) -> Report {
    let mut report = Report::default();
    let mut connection = Connection::open(&address).await;
    let mut sequence = 0usize;
    while Instant::now() < deadline {
        sequence += 1;
        let body = format!(
            r#"{{"keys":{keys},"context":{{"tenant_id":"tenant-{}","user_id":"user-{client}-{sequence}","properties":{{"cms":"woocommerce","plugin_version":"1.3.5"}}}}}}"#,
            sequence % 500
        );
        let started = Instant::now();
        let (status, body) = connection
            .post("/api/platform/flags/evaluate", &token, &body)
            .await;
        let elapsed = started.elapsed();
        // Every flag must have evaluated without an error (unknown key …).
        const FAILED: &[u8] = br#""reason":"ERROR""#;
        if status == 200 && !body.windows(FAILED.len()).any(|w| w == FAILED) {
            report.latencies_us.push(elapsed.as_micros() as u32);
        } else {
            report.errors += 1;
        }
    }
    report
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let address = args.get(1).expect("ADDR").clone();
    let token = args.get(2).expect("TOKEN").clone();
    let keys: Vec<String> = args
        .get(3)
        .expect("KEYS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let clients: usize = args
        .get(4)
        .map_or(8, |value| value.parse().expect("CLIENTS"));
    let seconds: u64 = args
        .get(5)
        .map_or(15, |value| value.parse().expect("SECONDS"));
    let keys_json = serde_json::to_string(&keys).expect("JSON");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            tokio::spawn(client(
                address.clone(),
                token.clone(),
                keys_json.clone(),
                index,
                deadline,
            ))
        })
        .collect();
    let (latencies, errors) = gather(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let requests = latencies.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "clients": clients,
            "flags_per_request": keys.len(),
            "seconds": elapsed,
            "requests": latencies.len(),
            "errors": errors,
            "requests_per_second": (requests / elapsed).round(),
            "evaluations_per_second": (requests * keys.len() as f64 / elapsed).round(),
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
        })
    );
}
