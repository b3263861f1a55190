//! Heartbeat load generator: N keep-alive HTTP/1.1 clients on loopback post
//! heartbeats to a running `autoheal serve` for a fixed time and report the
//! acknowledged rate and latency percentiles as one JSON line. Bounded in
//! time; talks only to the address it is given (loopback in BENCHMARKS.md).
//!
//! heartbeat_load ADDR API_KEY [CLIENTS=64] [SECONDS=20] [INSTALLS=10000]

use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Report {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn client(
    address: String,
    key: String,
    client: usize,
    clients: usize,
    installs: usize,
    deadline: Instant,
) -> Report {
    let mut report = Report {
        latencies_us: Vec::new(),
        errors: 0,
    };
    let stream = TcpStream::connect(&address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut stream = BufReader::new(stream);
    let mut sequence = client;
    while Instant::now() < deadline {
        // Each client walks its own slice of the installations.
        let site = sequence % installs;
        sequence += clients;
        let body = format!(
            r#"{{"cms":"woocommerce","plugin_version":"1.3.5","site_url":"https://shop-{site}.example","errors_last_hour":0.5,"php_version":"8.1.0","server_info":{{"memory_limit":"256M"}}}}"#
        );
        let request = format!(
            "POST /api/v1/plugins/heartbeat HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut status_line = String::new();
        stream.read_line(&mut status_line).await.expect("status");
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; content_length];
        stream.read_exact(&mut body).await.expect("body");
        let elapsed = started.elapsed();
        if status_line.contains(" 200 ") {
            report.latencies_us.push(elapsed.as_micros() as u32);
        } else {
            report.errors += 1;
        }
    }
    report
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let address = args.get(1).expect("ADDR").clone();
    let key = args.get(2).expect("API_KEY").clone();
    let clients: usize = args
        .get(3)
        .map_or(64, |value| value.parse().expect("CLIENTS"));
    let seconds: u64 = args
        .get(4)
        .map_or(20, |value| value.parse().expect("SECONDS"));
    let installs: usize = args
        .get(5)
        .map_or(10_000, |value| value.parse().expect("INSTALLS"));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            tokio::spawn(client(
                address.clone(),
                key.clone(),
                index,
                clients,
                installs,
                deadline,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let report = task.await.expect("client");
        latencies.extend(report.latencies_us);
        errors += report.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "clients": clients,
            "seconds": elapsed,
            "acknowledged": latencies.len(),
            "errors": errors,
            "per_second": (latencies.len() as f64 / elapsed).round(),
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
        })
    );
}
