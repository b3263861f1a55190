//! Delivery of the outbox (seed 003's runbook): each due message is sent to its destination;
//! a failure is classified `TRANSIENT`, `RATE_LIMITED` (honouring `Retry-After`),
//! `PERMANENT` or `AUTH`; the first two are retried with exponential backoff and jitter up to
//! a maximum of attempts, the others go straight to the dead letters, which Ops list and
//! retry. A circuit breaker per destination (closed → open after consecutive failures →
//! half-open probe after a cool-down → closed) keeps a failing destination from being
//! hammered; its state is visible. Delivery is at least once: every request carries the
//! message id (`X-Autoheal-Delivery`) for the receiver to deduplicate.
//!
//! Webhooks are signed: `X-Autoheal-Timestamp: <unix seconds>` and
//! `X-Autoheal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use super::{AttemptOutcome, OutboxMessage};
use crate::db::{Store, StoreError};
use crate::logs::{LogError, LogLevel, LogService, NewLogEntry, PlatformLog};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// Settings of delivery; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Normalized interop events are forwarded as CloudEvents to these URLs.
    pub cloudevents_webhooks: Vec<String>,
    /// Key of the webhook signatures; without one, webhooks go unsigned.
    pub webhook_secret: Option<String>,
    /// Attempts before a retryable failure becomes a dead letter.
    pub max_attempts: i32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failures that open a destination's breaker, and how long it stays open
    /// before one probe is let through.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// Longest an attempt may take. A message is leased for twice this while it is sent,
    /// so a lease outlives any attempt, and a message whose sender died (crash, kill -9) is
    /// sent again once its lease runs out.
    pub request_timeout: std::time::Duration,
    /// Messages leased per round.
    pub batch: i64,
    /// The SMTP server of the email channel: `smtp://[user:password@]host[:port]` with
    /// `?tls=required` for STARTTLS (or `opportunistic`), `smtps://…` for implicit TLS.
    pub smtp_url: Option<String>,
    /// A PEM certificate to trust for the SMTP server's TLS besides the public roots (a
    /// private CA).
    pub smtp_ca_pem: Option<Vec<u8>>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            cloudevents_webhooks: Vec::new(),
            webhook_secret: None,
            max_attempts: 8,
            backoff_base: Duration::seconds(2),
            backoff_max: Duration::hours(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::seconds(30),
            request_timeout: std::time::Duration::from_secs(10),
            batch: 64,
            smtp_url: None,
            smtp_ca_pem: None,
        }
    }
}

/// How long messages queued behind a half-open breaker's probe wait before asking again.
const PROBE_VERDICT_WAIT: Duration = Duration::seconds(1);

/// The breaker states, as `GET /api/platform/outbox` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Breaker {
    pub destination: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub opened_at: Option<DateTime<Utc>>,
    /// When an open breaker lets a probe through.
    pub probe_at: Option<DateTime<Utc>>,
    pub changed_at: DateTime<Utc>,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub delivered: usize,
    pub retrying: usize,
    pub dead: usize,
    pub deferred: usize,
}

/// Why an attempt failed, in seed 003's classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub class: &'static str,
    /// A short summary for Ops (a status code, "timeout"); never a provider's body.
    pub summary: String,
    pub retry_after: Option<Duration>,
}

impl Failure {
    fn retryable(&self) -> bool {
        matches!(self.class, "TRANSIENT" | "RATE_LIMITED")
    }
}

/// Classifies an HTTP answer.
pub fn classify_status(
    status: u16,
    retry_after: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Failure> {
    let failure = |class, retry_after| {
        Some(Failure {
            class,
            summary: format!("HTTP {status}"),
            retry_after,
        })
    };
    match status {
        200..=299 => None,
        429 => failure(
            "RATE_LIMITED",
            retry_after.and_then(|v| parse_retry_after(v, now)),
        ),
        401 | 403 => failure("AUTH", None),
        408 | 425 | 500..=599 => failure(
            "TRANSIENT",
            retry_after.and_then(|v| parse_retry_after(v, now)),
        ),
        _ => failure("PERMANENT", None),
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(Duration::seconds(seconds.clamp(0, 86_400)));
    }
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|at| (at.with_timezone(&Utc) - now).max(Duration::zero()))
}

/// The wait before attempt `attempts + 1`: base × 2^(attempts − 1), capped, with "equal
/// jitter" (half fixed, half random) so retries of many messages spread out.
pub fn backoff(config: &OutboxConfig, attempts: i32) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let full = config
        .backoff_base
        .checked_mul(2_i32.saturating_pow(exponent))
        .unwrap_or(config.backoff_max)
        .min(config.backoff_max);
    let half = full / 2;
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    let spread = half.num_milliseconds().max(1) as u64;
    half + Duration::milliseconds((random % spread) as i64)
}

/// How a destination is named outside the outbox (metrics, health): its host and a short hash
/// of the whole, never the URL itself, which can carry a token (Slack webhook URLs do) or an
/// email address.
pub fn destination_label(destination: &str) -> String {
    use sha2::Digest;
    let host = destination.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '@']).next().unwrap_or("")
    });
    let digest = hex::encode(&sha2::Sha256::digest(destination.as_bytes())[..4]);
    format!("{host}#{digest}")
}

/// The platform log's entry of a failed attempt: `warn` while it is retried, `error` once
/// it is a dead letter. The destination is named by [`destination_label`] (a URL can hold
/// a token), and neither the payload nor the provider's answer is in it.
fn failed_attempt(
    message: &OutboxMessage,
    failure: &Failure,
    retry_at: Option<DateTime<Utc>>,
) -> NewLogEntry {
    let destination = destination_label(&message.destination);
    let (level, action, outcome) = match retry_at {
        Some(_) => (LogLevel::Warn, "outbox.delivery_failed", "retried later"),
        None => (LogLevel::Error, "outbox.dead_lettered", "now a dead letter"),
    };
    NewLogEntry::new(
        level,
        LogService::Delivery,
        action,
        format!(
            "{} delivery to {destination} failed ({} {}); {outcome}",
            message.channel, failure.class, failure.summary
        ),
    )
    .data(serde_json::json!({
        "message_id": message.id,
        "channel": message.channel,
        "destination": destination,
        "source_type": message.source_type,
        "attempt": message.attempts,
        "class": failure.class,
        "retry_at": retry_at,
    }))
    .error(LogError {
        name: failure.class.to_owned(),
        message: failure.summary.clone(),
        stack: None,
    })
}

/// HMAC-SHA256 signature header value of a webhook body.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

type Mailer = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// The delivery side: the HTTP client, the SMTP transport and the breakers (per process).
pub struct Outbox {
    pub config: OutboxConfig,
    client: reqwest::Client,
    mailer: Option<Mailer>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Attempts by outcome (`delivered` or the failure class) and their total time, since start.
    attempts: Mutex<HashMap<&'static str, u64>>,
    attempt_time: crate::histogram::Histogram,
}

/// The host of an SMTP URL (for TLS name checks).
fn smtp_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split([':', '/', '?']).next().filter(|h| !h.is_empty())
}

/// The SMTP transport of `config`, or why it cannot be built.
fn mailer(config: &OutboxConfig) -> Result<Option<Mailer>, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let Some(url) = &config.smtp_url else {
        return Ok(None);
    };
    let mut builder = Mailer::from_url(url).map_err(|e| format!("SMTP URL: {e}"))?;
    if let Some(pem) = &config.smtp_ca_pem {
        let host = smtp_host(url).ok_or("SMTP URL has no host")?.to_owned();
        let certificate = Certificate::from_pem(pem).map_err(|e| format!("SMTP CA: {e}"))?;
        let parameters = TlsParameters::builder(host)
            .add_root_certificate(certificate)
            .build_rustls()
            .map_err(|e| format!("SMTP TLS: {e}"))?;
        let tls = if url.starts_with("smtps://") {
            Tls::Wrapper(parameters)
        } else if url.contains("tls=opportunistic") {
            Tls::Opportunistic(parameters)
        } else {
            Tls::Required(parameters)
        };
        builder = builder.tls(tls);
    }
    Ok(Some(builder.timeout(Some(config.request_timeout)).build()))
}

impl Outbox {
    /// Fails on a bad SMTP URL or CA: a misconfiguration stops the server at start.
    pub fn try_new(config: OutboxConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            mailer: mailer(&config)?,
            config,
            client,
            breakers: Mutex::default(),
            attempts: Mutex::default(),
            attempt_time: crate::histogram::Histogram::default(),
        })
    }

    /// [`Outbox::try_new`] for a configuration known to be valid (no SMTP).
    pub fn new(config: OutboxConfig) -> Self {
        Self::try_new(config).expect("a valid outbox configuration")
    }

    /// `provider_requests_total{outcome}`, `provider_request_seconds` and
    /// `circuit_breaker_state{destination}` (0 closed, 1 half-open, 2 open).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP provider_requests_total Outbound delivery attempts by outcome (delivered or the failure class).");
        let _ = writeln!(out, "# TYPE provider_requests_total counter");
        let attempts = self.attempts.lock().expect("attempt counts").clone();
        for outcome in [
            "delivered",
            "TRANSIENT",
            "RATE_LIMITED",
            "PERMANENT",
            "AUTH",
        ] {
            let n = attempts.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "provider_requests_total{{outcome=\"{}\"}} {n}",
                outcome.to_lowercase()
            );
        }
        self.attempt_time.render(
            out,
            "provider_request_seconds",
            "Time of outbound delivery attempts.",
        );
        let _ = writeln!(
            out,
            "# HELP circuit_breaker_state Per destination: 0 closed, 1 half-open, 2 open."
        );
        let _ = writeln!(out, "# TYPE circuit_breaker_state gauge");
        for breaker in self.breakers() {
            let state = match breaker.state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            let destination = destination_label(&breaker.destination);
            let _ = writeln!(
                out,
                "circuit_breaker_state{{destination=\"{destination}\"}} {state}"
            );
        }
    }

    /// A check of the SMTP server (connect and NOOP, within the request timeout), when one
    /// is configured.
    pub fn smtp_probe(&self) -> Option<impl std::future::Future<Output = bool> + '_> {
        let mailer = self.mailer.as_ref()?;
        Some(async move {
            tokio::time::timeout(self.config.request_timeout, mailer.test_connection())
                .await
                .is_ok_and(|answered| answered.unwrap_or(false))
        })
    }

    /// Sends an email message (`{"from", "to", "subject", "body"}`) over SMTP.
    async fn send_email(&self, message: &OutboxMessage) -> Option<Failure> {
        use lettre::AsyncTransport;
        let permanent = |summary: &str| {
            Some(Failure {
                class: "PERMANENT",
                summary: summary.to_owned(),
                retry_after: None,
            })
        };
        let Some(mailer) = &self.mailer else {
            return permanent("no SMTP server is configured");
        };
        let field = |name: &str| {
            message.payload.0[name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let (Ok(from), Ok(to)) = (field("from").parse(), field("to").parse()) else {
            return permanent("invalid address");
        };
        let email = match lettre::Message::builder()
            .from(from)
            .to(to)
            .subject(field("subject"))
            .message_id(Some(format!("<{}@autoheal>", message.id)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(field("body"))
        {
            Ok(email) => email,
            Err(_) => return permanent("the message could not be built"),
        };
        // lettre's own timeout covers only the TCP connect: a server that stops answering
        // mid-conversation would hold the attempt (and its delivery round) until the
        // server gives up on the connection.
        let sent = tokio::time::timeout(self.config.request_timeout, mailer.send(email)).await;
        match sent {
            Err(_) => Some(Failure {
                class: "TRANSIENT",
                summary: "timeout".into(),
                retry_after: None,
            }),
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                let code = error.status().map(|c| c.to_string());
                let class = match code.as_deref() {
                    Some("530" | "534" | "535" | "538") => "AUTH",
                    _ if error.is_permanent() => "PERMANENT",
                    _ => "TRANSIENT",
                };
                let summary = match code {
                    Some(code) => format!("SMTP {code}"),
                    None if error.is_timeout() => "timeout".into(),
                    None if error.is_tls() => "TLS failed".into(),
                    None => "connection failed".into(),
                };
                Some(Failure {
                    class,
                    summary,
                    retry_after: None,
                })
            }
        }
    }

    /// The breakers, by destination.
    pub fn breakers(&self) -> Vec<Breaker> {
        let mut all: Vec<Breaker> = self
            .breakers
            .lock()
            .expect("breakers")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.destination.cmp(&b.destination));
        all
    }

    /// May a message go to `destination` now? An open breaker past its cool-down turns
    /// half-open and lets this one probe through; otherwise it says when to try again.
    fn admit(&self, destination: &str, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let mut breakers = self.breakers.lock().expect("breakers");
        let Some(breaker) = breakers.get_mut(destination) else {
            return Ok(());
        };
        match breaker.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let probe_at = breaker.probe_at.unwrap_or(now);
                if now >= probe_at {
                    breaker.state = BreakerState::HalfOpen;
                    breaker.changed_at = now;
                    Ok(())
                } else {
                    Err(probe_at)
                }
            }
            // One probe at a time: the others wait a moment for its verdict.
            BreakerState::HalfOpen => Err(now + PROBE_VERDICT_WAIT),
        }
    }

    fn observe(&self, destination: &str, failed: bool, now: DateTime<Utc>) {
        let mut breakers = self.breakers.lock().expect("breakers");
        let breaker = breakers
            .entry(destination.to_owned())
            .or_insert_with(|| Breaker {
                destination: destination.to_owned(),
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_at: None,
                changed_at: now,
            });
        if !failed {
            if breaker.state != BreakerState::Closed {
                tracing::info!(
                    event = "breaker_closed",
                    destination,
                    "destination recovered; breaker closed"
                );
                breaker.changed_at = now;
            }
            breaker.state = BreakerState::Closed;
            breaker.consecutive_failures = 0;
            breaker.opened_at = None;
            breaker.probe_at = None;
            return;
        }
        breaker.consecutive_failures += 1;
        let trips = breaker.state == BreakerState::HalfOpen
            || breaker.consecutive_failures >= self.config.breaker_threshold;
        if trips && breaker.state != BreakerState::Open {
            tracing::warn!(
                event = "breaker_opened",
                destination,
                failures = breaker.consecutive_failures,
                "destination failing; breaker open"
            );
            breaker.state = BreakerState::Open;
            breaker.opened_at = Some(now);
            breaker.changed_at = now;
        }
        if breaker.state == BreakerState::Open {
            breaker.probe_at = Some(now + self.config.breaker_cooldown);
        }
    }

    /// Sends one message; None when delivered.
    async fn send(&self, message: &OutboxMessage, now: DateTime<Utc>) -> Option<Failure> {
        if message.channel == "email" {
            return self.send_email(message).await;
        }
        let body = serde_json::to_vec(&message.payload.0).expect("JSON serializes");
        let content_type = match message.channel.as_str() {
            "cloudevents" => "application/cloudevents+json",
            _ => "application/json",
        };
        let timestamp = now.timestamp();
        let mut request = self
            .client
            .post(&message.destination)
            .header("content-type", content_type)
            .header("x-autoheal-delivery", message.id.to_string())
            .header("x-autoheal-timestamp", timestamp.to_string());
        if let Some(secret) = &self.config.webhook_secret {
            request = request.header("x-autoheal-signature", signature(secret, timestamp, &body));
        }
        match request.body(body).send().await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                classify_status(response.status().as_u16(), retry_after.as_deref(), now)
            }
            Err(error) => Some(Failure {
                class: "TRANSIENT",
                summary: if error.is_timeout() {
                    "timeout".into()
                } else if error.is_connect() {
                    "connection failed".into()
                } else {
                    "request failed".into()
                },
                retry_after: None,
            }),
        }
    }
}

impl Outbox {
    /// One delivery round: leases the due messages and sends them, concurrently. Each
    /// failed attempt is recorded in `logs`.
    pub async fn deliver_due(
        &self,
        store: &Store,
        logs: &PlatformLog,
        now: DateTime<Utc>,
    ) -> Result<RoundReport, StoreError> {
        let outbox = self;
        let lease =
            Duration::from_std(outbox.config.request_timeout * 2).unwrap_or(Duration::minutes(1));
        let due = store.lease_outbox(now, lease, outbox.config.batch).await?;
        tracing::debug!(
            event = "delivery_round",
            leased = due.len(),
            "delivery round"
        );
        let attempts = due.into_iter().map(|message| async move {
            if let Err(until) = outbox.admit(&message.destination, now) {
                return (message.id, AttemptOutcome::Deferred { until });
            }
            let started = std::time::Instant::now();
            let failure = outbox.send(&message, now).await;
            outbox.attempt_time.observe(started.elapsed());
            *outbox
                .attempts
                .lock()
                .expect("attempt counts")
                .entry(failure.as_ref().map_or("delivered", |f| f.class))
                .or_default() += 1;
            outbox.observe(
                &message.destination,
                failure.as_ref().is_some_and(|f| f.retryable()),
                now,
            );
            let outcome = match failure {
                None => AttemptOutcome::Delivered,
                Some(failure) => {
                    let retry_at = (failure.retryable()
                        && message.attempts < outbox.config.max_attempts)
                        .then(|| {
                            let wait = backoff(&outbox.config, message.attempts);
                            now + failure.retry_after.map_or(wait, |after| after.max(wait))
                        });
                    logs.record(failed_attempt(&message, &failure, retry_at));
                    AttemptOutcome::Failed {
                        class: failure.class,
                        error: failure.summary,
                        retry_at,
                    }
                }
            };
            (message.id, outcome)
        });
        let outcomes = futures_util::future::join_all(attempts).await;
        let mut report = RoundReport::default();
        for (id, outcome) in &outcomes {
            match outcome {
                AttemptOutcome::Delivered => report.delivered += 1,
                AttemptOutcome::Failed {
                    retry_at: Some(_), ..
                } => report.retrying += 1,
                AttemptOutcome::Failed {
                    retry_at: None,
                    class,
                    ..
                } => {
                    tracing::warn!(event = "dead_letter", message = %id, class, "outbound message gave up; listed as a dead letter");
                    report.dead += 1
                }
                AttemptOutcome::Deferred { .. } => report.deferred += 1,
            }
        }
        if !outcomes.is_empty() {
            store.record_attempts(&outcomes, now).await?;
        }
        Ok(report)
    }

    /// Whether a round leased as many messages as it may: more may be due at once.
    pub fn was_full(&self, report: &RoundReport) -> bool {
        report.delivered + report.retrying + report.dead >= self.config.batch as usize
    }
}
