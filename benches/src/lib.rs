//! What the load generators share: their arguments, a keep-alive HTTP/1.1 connection that
//! posts JSON and reads the answer, clients run until a deadline, and percentiles of the
//! latencies they record.

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The command-line argument at `index` (named `name` in the usage), `default` if absent.
pub fn arg<T>(args: &[String], index: usize, name: &str, default: T) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Debug,
{
    args.get(index)
        .map_or(default, |value| value.parse().expect(name))
}

/// One keep-alive connection to the server under load.
pub struct Connection {
    stream: BufReader<TcpStream>,
    address: String,
}

impl Connection {
    pub async fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: BufReader::new(stream),
            address: address.to_owned(),
        }
    }

    /// POSTs `body` and returns the status code and the response body.
    pub async fn post(&mut self, path: &str, token: &str, body: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        );
        self.exchange(&request).await
    }

    /// GETs `path` (without a credential) and returns the status code and the body.
    pub async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.address);
        self.exchange(&request).await
    }

    /// A GET with a bearer token.
    pub async fn get_as(&mut self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            self.address
        );
        self.exchange(&request).await
    }

    async fn exchange(&mut self, request: &str) -> (u16, Vec<u8>) {
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut status_line = String::new();
        self.stream
            .read_line(&mut status_line)
            .await
            .expect("status");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status code");
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.expect("header");
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
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

/// What one load-generating client saw: the latency of each acknowledged request and how
/// many were not.
#[derive(Default)]
pub struct Report {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
}

impl Report {
    /// Records a request that took `elapsed`: its latency if it was acknowledged, else an
    /// error.
    pub fn record(&mut self, elapsed: Duration, acknowledged: bool) {
        if acknowledged {
            self.latencies_us.push(elapsed.as_micros() as u32);
        } else {
            self.errors += 1;
        }
    }
}

/// What all the clients saw together.
pub struct Run {
    /// The latencies of the acknowledged requests, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub seconds: f64,
}

/// Runs `clients` clients at once, each `client(index, deadline)` sending until the deadline
/// `seconds` from now, and waits for them all.
pub async fn run_clients<F, C>(clients: usize, seconds: u64, client: F) -> Run
where
    F: Fn(usize, Instant) -> C,
    C: Future<Output = Report> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|index| tokio::spawn(client(index, deadline)))
        .collect();
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let report = task.await.expect("client");
        latencies_us.extend(report.latencies_us);
        errors += report.errors;
    }
    latencies_us.sort_unstable();
    Run {
        latencies_us,
        errors,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The latency at `fraction` (0.5, 0.99) of sorted microsecond samples, in milliseconds.
pub fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[index]) / 1000.0
}
