//! Flag evaluation load generator: N keep-alive HTTP/1.1 clients on loopback
//! post batch evaluations (`POST /api/platform/flags/evaluate` with `keys`)
//! to a running `autoheal serve` for a fixed time, each for another user, and
//! report flag evaluations per second and request latency percentiles as
//! one JSON line. Bounded in time; talks only to the address it is given.
//!
//! flags_load ADDR TOKEN KEYS [CLIENTS=8] [SECONDS=15]
//! (KEYS: comma-separated flag keys evaluated in every request)

use benches::{arg, percentile, run_clients, Connection, Report};
use std::time::Instant;

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
        report.record(
            elapsed,
            status == 200 && !body.windows(FAILED.len()).any(|w| w == FAILED),
        );
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
    let clients = arg(&args, 4, "CLIENTS", 8);
    let seconds = arg(&args, 5, "SECONDS", 15);
    let keys_json = serde_json::to_string(&keys).expect("JSON");
    let run = run_clients(clients, seconds, |index, deadline| {
        client(
            address.clone(),
            token.clone(),
            keys_json.clone(),
            index,
            deadline,
        )
    })
    .await;
    let requests = run.latencies_us.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "clients": clients,
            "flags_per_request": keys.len(),
            "seconds": run.seconds,
            "requests": run.latencies_us.len(),
            "errors": run.errors,
            "requests_per_second": (requests / run.seconds).round(),
            "evaluations_per_second": (requests * keys.len() as f64 / run.seconds).round(),
            "p50_ms": percentile(&run.latencies_us, 0.50),
            "p99_ms": percentile(&run.latencies_us, 0.99),
        })
    );
}
