//! The platform's structured logs (seed 002): the server's own important events — every
//! Ops action, healing decision, delivery failure and job run — as entries with their
//! tenant (the merchant), Ops agent and request, stored, searchable and streamed live.
//!
//! A feature records an entry through its [`PlatformLog`] handle: [`PlatformLog::record`]
//! never waits and never fails. Entries go through a bounded buffer to one background
//! writer per replica (`writer.rs`), which inserts them in batches (one multi-row INSERT
//! each) and, once a batch is committed, publishes its entries to the live stream. A full
//! buffer drops the entry and counts it (`platform_logs_dropped_total`); a request is never
//! held up by its log.
//!
//! [`Service`] answers `GET /api/platform/logs` (filters, full-text `q`, newest first by
//! keyset cursor) and the stream of `GET /api/platform/logs/stream` (`http.rs`); its SQL is
//! in `store.rs`. Retention by level is the hourly `retention` job's
//! (`ops::retention::LogRetention`). `ops_actions.rs` logs every Ops action once, from the
//! router's middleware.

mod http;
mod ops_actions;
mod store;
mod writer;

pub(crate) use http::routes;
pub(crate) use ops_actions::{log_ops_actions, OpsActor};

use crate::db::Store;
use crate::error::ApiError;
use crate::Clock;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use utoipa::ToSchema;
use uuid::Uuid;

crate::values::closed_set!(
    /// An entry's level (seed 002's four); each has its own retention.
    #[derive(serde::Serialize)]
    LogLevel {
        Error = "error",
        Warn = "warn",
        Info = "info",
        Debug = "debug",
    }
);

crate::values::closed_set!(
    /// The part of the server an entry comes from: the features (`api/src/<feature>`), the
    /// credentials (`auth`) and the built-in detector.
    #[derive(serde::Serialize)]
    LogService {
        Fleet = "fleet",
        Healing = "healing",
        Interop = "interop",
        Flags = "flags",
        Delivery = "delivery",
        Ops = "ops",
        Rules = "rules",
        Auth = "auth",
        Console = "console",
        Errors = "errors",
        Detector = "detector",
    }
);

crate::db::text_column!(LogLevel);
crate::db::text_column!(LogService);

/// The error of an `error` entry: what failed, its message, and where when known.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LogError {
    /// The kind of error (`TRANSIENT`, `StoreError`, a PHP error class …).
    pub name: String,
    pub message: String,
    pub stack: Option<String>,
}

/// A stored entry, in seed 002's shape.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// UUIDv7.
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub level: LogLevel,
    /// The merchant the entry is about.
    pub tenant_id: Option<Uuid>,
    /// A slug of that merchant's name when the entry was written (`My Shop` → `my-shop`).
    pub tenant_slug: Option<String>,
    /// The Ops agent who acted.
    pub user_id: Option<Uuid>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    pub service: LogService,
    /// What happened, dotted (`ops.request`, `job.ran`, `outbox.delivery_failed`,
    /// `healing.decided`).
    pub action: String,
    pub message: String,
    /// A JSON object with the action's details.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The error fields of an entry about a failure.
    pub error: Option<LogError>,
}

/// An entry to record: `NewLogEntry::new(level, service, action, message)` and the
/// builder's optional parts. The time and id are given by [`PlatformLog::record`].
#[derive(Clone, Debug)]
pub struct NewLogEntry {
    level: LogLevel,
    service: LogService,
    action: String,
    message: String,
    merchant_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    request_id: Option<String>,
    data: serde_json::Map<String, Value>,
    error: Option<LogError>,
}

impl NewLogEntry {
    pub fn new(
        level: LogLevel,
        service: LogService,
        action: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            level,
            service,
            action: action.into(),
            message: message.into(),
            merchant_id: None,
            agent_id: None,
            request_id: None,
            data: serde_json::Map::new(),
            error: None,
        }
    }

    /// The merchant (tenant) the entry is about.
    pub fn merchant(mut self, merchant_id: Uuid) -> Self {
        self.merchant_id = Some(merchant_id);
        self
    }

    /// The Ops agent who acted.
    pub fn agent(mut self, agent_id: Uuid) -> Self {
        self.agent_id = Some(agent_id);
        self
    }

    pub fn request_id(mut self, request_id: Option<impl Into<String>>) -> Self {
        self.request_id = request_id.map(Into::into);
        self
    }

    /// The details: an object's fields are the entry's `data`; any other value is kept
    /// under `value`.
    pub fn data(mut self, data: Value) -> Self {
        self.data = match data {
            Value::Object(fields) => fields,
            Value::Null => serde_json::Map::new(),
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        self
    }

    pub fn error(mut self, error: LogError) -> Self {
        self.error = Some(error);
        self
    }

    fn stamped(self, at: DateTime<Utc>) -> LogEntry {
        LogEntry {
            id: Uuid::now_v7(),
            timestamp: at,
            level: self.level,
            tenant_id: self.merchant_id,
            tenant_slug: None,
            user_id: self.agent_id,
            request_id: self.request_id,
            service: self.service,
            action: self.action,
            message: self.message,
            data: Value::Object(self.data),
            error: self.error,
        }
    }
}

/// Settings of the platform log; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct LogsConfig {
    /// Entries the buffer between [`PlatformLog::record`] and the writer holds; an entry
    /// recorded while it is full is dropped and counted (`platform_logs_dropped_total`).
    pub buffer_entries: usize,
    /// Most entries one INSERT writes.
    pub batch_entries: usize,
    /// How long the writer waits for more entries before it writes a batch that is not full.
    pub linger: Duration,
    /// Store `debug` entries (seed 002: "conditional"); off, they are discarded at record.
    pub store_debug: bool,
    /// Entries the live stream keeps for a subscriber that reads slower than they come;
    /// one that falls further behind is told how many it missed (`event: lagged`).
    pub stream_entries: usize,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            buffer_entries: 10_000,
            batch_entries: 500,
            linger: Duration::from_millis(50),
            store_debug: false,
            stream_entries: 1_024,
        }
    }
}

/// Why an entry was not stored, as `platform_logs_dropped_total{reason}` counts it.
#[derive(Default)]
struct Dropped {
    buffer_full: AtomicU64,
    write_failed: AtomicU64,
}

/// How often a replica says in its own log that entries are being dropped, at most.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

struct Shared {
    clock: Clock,
    store_debug: bool,
    buffer: mpsc::Sender<LogEntry>,
    published: broadcast::Sender<Arc<LogEntry>>,
    written: AtomicU64,
    dropped: Dropped,
    last_drop_warning: Mutex<Option<std::time::Instant>>,
    /// Set once the server stops: the live streams end (so the HTTP server can finish).
    streams_end: watch::Sender<bool>,
    stop_writer: Notify,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The handle features record entries with: cheap to clone, [`PlatformLog::record`] never
/// blocks and never fails. Made with its writer by [`PlatformLog::start`].
#[derive(Clone)]
pub struct PlatformLog {
    shared: Arc<Shared>,
}

impl PlatformLog {
    /// The handle and its background writer (spawned on the current runtime) into `store`.
    pub fn start(store: Store, clock: Clock, config: &LogsConfig) -> Self {
        let (buffer, entries) = mpsc::channel(config.buffer_entries.max(1));
        let (published, _) = broadcast::channel(config.stream_entries.max(1));
        let shared = Arc::new(Shared {
            clock,
            store_debug: config.store_debug,
            buffer,
            published,
            written: AtomicU64::new(0),
            dropped: Dropped::default(),
            last_drop_warning: Mutex::new(None),
            streams_end: watch::Sender::new(false),
            stop_writer: Notify::new(),
            writer: Mutex::new(None),
        });
        let writer = writer::Writer {
            store,
            shared: shared.clone(),
            batch_entries: config.batch_entries.max(1),
            linger: config.linger,
        };
        *shared.writer.lock().expect("writer handle") = Some(tokio::spawn(writer.run(entries)));
        Self { shared }
    }

    /// Whether `debug` entries are stored: a hot path checks it before it builds one.
    pub fn stores_debug(&self) -> bool {
        self.shared.store_debug
    }

    /// Records `entry` at the clock's now, without waiting: a `debug` entry is discarded
    /// unless debug storage is on; a full buffer drops the entry and counts it.
    pub fn record(&self, entry: NewLogEntry) {
        if entry.level == LogLevel::Debug && !self.shared.store_debug {
            return;
        }
        let entry = entry.stamped(self.shared.clock.now());
        if self.shared.buffer.try_send(entry).is_err() {
            self.shared
                .dropped
                .buffer_full
                .fetch_add(1, Ordering::Relaxed);
            self.warn_dropped();
        }
    }

    /// Says in the process log that entries are dropped, at most every
    /// [`DROP_WARNING_EVERY`] (the counter has the exact figure).
    fn warn_dropped(&self) {
        let Ok(mut last) = self.shared.last_drop_warning.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < DROP_WARNING_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        tracing::warn!(event = "platform_logs_dropped",
            buffer_full = self.shared.dropped.buffer_full.load(Ordering::Relaxed),
            write_failed = self.shared.dropped.write_failed.load(Ordering::Relaxed),
            "platform log entries dropped (buffer full or store failing); see platform_logs_dropped_total");
    }

    /// The entries this replica commits from now on, as they are committed.
    fn subscribe(&self) -> (broadcast::Receiver<Arc<LogEntry>>, watch::Receiver<bool>) {
        (
            self.shared.published.subscribe(),
            self.shared.streams_end.subscribe(),
        )
    }

    /// Ends every live stream: called when the server begins to stop, so that the
    /// requests in flight (a stream never ends by itself) can finish.
    pub fn end_streams(&self) {
        self.shared.streams_end.send_replace(true);
    }

    /// Writes what the buffer holds and stops the writer; an entry recorded afterwards is
    /// dropped. Called once on shutdown, after the tasks that record and before the store
    /// closes.
    pub async fn stop(&self) {
        self.end_streams();
        self.shared.stop_writer.notify_one();
        let writer = self.shared.writer.lock().expect("writer handle").take();
        if let Some(writer) = writer {
            if let Err(error) = writer.await {
                tracing::warn!(event = "platform_log_writer_ended_badly", error = %error,
                    "the platform log's writer panicked");
            }
        }
    }

    /// `platform_logs_written_total` and `platform_logs_dropped_total{reason}`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP platform_logs_written_total Platform log entries stored since start."
        );
        let _ = writeln!(out, "# TYPE platform_logs_written_total counter");
        let _ = writeln!(
            out,
            "platform_logs_written_total {}",
            self.shared.written.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP platform_logs_dropped_total Platform log entries not stored since start: the buffer was full, or their batch failed to write.");
        let _ = writeln!(out, "# TYPE platform_logs_dropped_total counter");
        for (reason, count) in [
            ("buffer_full", &self.shared.dropped.buffer_full),
            ("write_failed", &self.shared.dropped.write_failed),
        ] {
            let _ = writeln!(
                out,
                "platform_logs_dropped_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// Which entries a query or a stream wants; each given part must match.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// Any of these levels (empty: every level).
    pub levels: Vec<LogLevel>,
    pub merchant_id: Option<Uuid>,
    pub service: Option<LogService>,
    pub action: Option<String>,
    pub request_id: Option<String>,
    /// From this time on (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Words the message must all hold (full-text: whole words, any case).
    pub words: Vec<String>,
}

/// The words of a full-text query: its runs of letters and digits, lowercased. Everything
/// else separates words, so no character a user types is search syntax on either backend.
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl LogFilter {
    /// Whether `entry` matches: the stream's test, the same as the query's.
    fn matches(&self, entry: &LogEntry) -> bool {
        let words = || {
            let message = search_words(&entry.message);
            self.words.iter().all(|word| message.contains(word))
        };
        (self.levels.is_empty() || self.levels.contains(&entry.level))
            && self
                .merchant_id
                .is_none_or(|id| entry.tenant_id == Some(id))
            && self.service.is_none_or(|service| entry.service == service)
            && self
                .action
                .as_ref()
                .is_none_or(|action| &entry.action == action)
            && self
                .request_id
                .as_ref()
                .is_none_or(|id| entry.request_id.as_ref() == Some(id))
            && self.since.is_none_or(|since| entry.timestamp >= since)
            && self.until.is_none_or(|until| entry.timestamp < until)
            && words()
    }
}

/// Where a page of entries ends: the next page starts after this (time, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    pub timestamp: DateTime<Utc>,
    pub id: Uuid,
}

impl LogCursor {
    /// Opaque text: the microseconds and the id, hex.
    pub fn encode(&self) -> String {
        format!(
            "{:x}.{}",
            self.timestamp.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            timestamp: DateTime::from_timestamp_micros(i64::from_str_radix(micros, 16).ok()?)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// A page of entries, newest first, and the cursor of the next when there is one.
#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The platform log's reads: the query and the live stream.
pub struct Service {
    store: Store,
    log: PlatformLog,
}

impl Service {
    pub fn new(store: Store, log: PlatformLog) -> Self {
        Self { store, log }
    }

    /// The entries `filter` matches, newest first, `limit` of them after `after`.
    pub async fn query(
        &self,
        filter: &LogFilter,
        after: Option<LogCursor>,
        limit: i64,
    ) -> Result<LogPage, ApiError> {
        let mut entries = self.store.platform_logs(filter, after, limit + 1).await?;
        let next_cursor = if entries.len() as i64 > limit {
            entries.truncate(limit as usize);
            entries.last().map(|last| {
                LogCursor {
                    timestamp: last.timestamp,
                    id: last.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(LogPage {
            entries,
            next_cursor,
        })
    }

    /// The live entries `filter` matches, as this replica's writer commits them.
    pub fn stream(&self, filter: LogFilter) -> LiveEntries {
        let (entries, end) = self.log.subscribe();
        LiveEntries {
            filter,
            entries,
            end,
        }
    }
}

/// What a live stream gives next.
#[derive(Debug)]
pub enum Live {
    Entry(Arc<LogEntry>),
    /// The subscriber read too slowly: this many entries went by unseen.
    Lagged(u64),
}

/// A subscription to the entries this replica commits that match a filter.
pub struct LiveEntries {
    filter: LogFilter,
    entries: broadcast::Receiver<Arc<LogEntry>>,
    end: watch::Receiver<bool>,
}

impl LiveEntries {
    /// The next matching entry, or how many were missed; None once the server stops.
    pub async fn next(&mut self) -> Option<Live> {
        loop {
            let received = tokio::select! {
                received = self.entries.recv() => received,
                _ = self.end.wait_for(|end| *end) => return None,
            };
            match received {
                Ok(entry) if self.filter.matches(&entry) => return Some(Live::Entry(entry)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Live::Lagged(missed))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A merchant's name as the slug of its entries: lowercase letters and digits, words
/// joined by `-` (`Café Müller GmbH` → `café-müller-gmbh`).
fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}
