//! Group commit for plugin telemetry. Heartbeats, events and interop events arrive from the
//! whole fleet at once; one writer task takes whatever is queued (up to
//! `max_batch`), writes it in one transaction and answers every caller only
//! after that commit. Throughput then scales with the batch instead of with
//! fsyncs, and nothing is acknowledged before it is durable. If a batch fails
//! as a whole, each write is retried in a transaction of its own so one bad
//! write cannot sink its neighbours.

use super::{
    Backend, DetectionOutcome, EventOutcome, EventRecord, HealingLog, HeartbeatOutcome,
    HeartbeatRecord, InteropOutcome, InteropRecord, NewHealingLog, StoreError,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Writes that may wait for the writer before callers are slowed down.
    pub queue_capacity: usize,
    /// Batches written at once. None: 1 on SQLite (it has one writer
    /// anyway), 2 on PostgreSQL (round trips and commits overlap; more
    /// only adds contention on 2 cores, see BENCHMARKS.md).
    pub writers: Option<usize>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue_capacity: 8_192,
            writers: None,
        }
    }
}

enum Write {
    Heartbeat(HeartbeatRecord),
    Event(EventRecord),
    Interop(Box<InteropRecord>),
    /// A healing log (and its snapshot and command) with the id it gets.
    Detection(Box<(uuid::Uuid, NewHealingLog, DetectionOutcome)>),
}

enum Written {
    Heartbeat(HeartbeatOutcome),
    Event(EventOutcome),
    Interop(InteropOutcome),
    /// The log as stored; None when its idempotency key was used before (nothing written).
    Detection(Option<Box<HealingLog>>),
}

#[expect(
    clippy::large_enum_variant,
    reason = "Stop is sent once per writer; boxing Write would allocate for every heartbeat"
)]
enum Job {
    Write {
        write: Write,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<Written, StoreError>>,
    },
    /// Everything queued before it is committed, then the writers exit.
    Stop,
}

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Writer {
    pub(super) fn start(backend: Backend, options: WriterOptions) -> Self {
        let (jobs, queue) = mpsc::channel(options.queue_capacity.max(1));
        let queue = Arc::new(Mutex::new(queue));
        let writers = options.writers.unwrap_or(match backend {
            Backend::Sqlite { .. } => 1,
            Backend::Postgres(_) => 2,
        });
        let tasks = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(run(
                    backend.clone(),
                    queue.clone(),
                    options.max_batch.max(1),
                ))
            })
            .collect();
        Self {
            jobs,
            tasks: Arc::new(Mutex::new(tasks)),
        }
    }

    pub(super) async fn heartbeat(
        &self,
        record: HeartbeatRecord,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatOutcome, StoreError> {
        match self.submit(Write::Heartbeat(record), now).await? {
            Written::Heartbeat(outcome) => Ok(outcome),
            _ => unreachable!("a heartbeat is answered with a heartbeat"),
        }
    }

    pub(super) async fn event(
        &self,
        record: EventRecord,
        now: DateTime<Utc>,
    ) -> Result<EventOutcome, StoreError> {
        match self.submit(Write::Event(record), now).await? {
            Written::Event(outcome) => Ok(outcome),
            _ => unreachable!("an event is answered with an event"),
        }
    }

    /// Records a detection; returns its log as stored, or None when its idempotency key
    /// was used before (nothing written).
    pub(super) async fn detection(
        &self,
        log: NewHealingLog,
        outcome: DetectionOutcome,
        now: DateTime<Utc>,
    ) -> Result<Option<HealingLog>, StoreError> {
        let id = uuid::Uuid::now_v7();
        match self
            .submit(Write::Detection(Box::new((id, log, outcome))), now)
            .await?
        {
            Written::Detection(recorded) => Ok(recorded.map(|log| *log)),
            _ => unreachable!("a detection is answered with a detection"),
        }
    }

    pub(super) async fn interop(
        &self,
        record: InteropRecord,
        now: DateTime<Utc>,
    ) -> Result<InteropOutcome, StoreError> {
        match self.submit(Write::Interop(Box::new(record)), now).await? {
            Written::Interop(outcome) => Ok(outcome),
            _ => unreachable!("an interop event is answered with an interop outcome"),
        }
    }

    async fn submit(&self, write: Write, now: DateTime<Utc>) -> Result<Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write { write, now, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Commits everything accepted so far and stops the writers. Idempotent.
    pub(super) async fn stop(&self) {
        let mut tasks = self.tasks.lock().await;
        if tasks.is_empty() {
            return;
        }
        let _ = self.jobs.send(Job::Stop).await;
        for task in tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// How many batches in a row a writer commits on the connection it holds before it gives
/// the connection back: on SQLite the write pool has one connection, which Ops writes
/// (approvals, toggles) wait for, at most this many batches.
const BATCHES_PER_CONNECTION: usize = 16;

/// One writer: takes a batch off the shared queue, releases the queue so
/// another writer can take the next batch, and commits. It keeps its connection while
/// more work is queued: sqlx pings a connection given back to the pool before anyone
/// can take it again, a round trip that would otherwise sit before every batch.
async fn run(backend: Backend, queue: Arc<Mutex<mpsc::Receiver<Job>>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut held = None;
    let mut batches_held = 0;
    loop {
        let mut stop = false;
        {
            let mut queue = queue.lock().await;
            let mut next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(_) => {
                    // Idle: the connection goes back before the wait, not after it.
                    held = None;
                    queue.recv().await
                }
            };
            if next.is_none() {
                return;
            }
            while let Some(job) = next {
                match job {
                    Job::Write { write, now, reply } => batch.push((write, now, reply)),
                    Job::Stop => {
                        // Later sends fail; the other writers drain and exit.
                        queue.close();
                        stop = true;
                        break;
                    }
                }
                next = if batch.len() < max_batch {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
        }
        if held.is_none() || batches_held == BATCHES_PER_CONNECTION {
            held = None;
            batches_held = 0;
        }
        if !batch.is_empty() {
            commit(&backend, &mut held, &mut batch).await;
            batches_held += 1;
        }
        if stop {
            return;
        }
    }
}

type Pending = (
    Write,
    DateTime<Utc>,
    oneshot::Sender<Result<Written, StoreError>>,
);

/// A writer's connection, taken from the backend's write pool.
enum WriteConnection {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

/// Writes a batch on the held connection, taking one first if none is held. A connection
/// a batch failed on is not kept.
async fn write_all(
    backend: &Backend,
    held: &mut Option<WriteConnection>,
    batch: &[Pending],
) -> Result<Vec<Written>, sqlx::Error> {
    let connection = match held {
        Some(connection) => connection,
        None => held.insert(match backend {
            Backend::Sqlite { writes, .. } => WriteConnection::Sqlite(writes.acquire().await?),
            Backend::Postgres(pool) => WriteConnection::Postgres(pool.acquire().await?),
        }),
    };
    let written = match connection {
        WriteConnection::Sqlite(connection) => sqlite::write_all(connection, batch).await,
        WriteConnection::Postgres(connection) => postgres::write_all(connection, batch).await,
    };
    match (&written, backend) {
        (Err(_), _) => *held = None,
        (Ok(_), Backend::Sqlite { checkpoint_due, .. }) => checkpoint_due.notify_one(),
        (Ok(_), Backend::Postgres(_)) => {}
    }
    written
}

async fn commit(backend: &Backend, held: &mut Option<WriteConnection>, batch: &mut Vec<Pending>) {
    match write_all(backend, held, batch).await {
        Ok(results) => {
            for ((_, _, reply), result) in batch.drain(..).zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(batch_error) if batch.len() == 1 => {
            let (_, _, reply) = batch.pop().expect("one write");
            let _ = reply.send(Err(batch_error.into()));
        }
        Err(batch_error) => {
            tracing::warn!(event = "batch_retry", size = batch.len(), error = %batch_error,
                "batched write failed; retrying each write on its own");
            for pending in batch.drain(..) {
                let mut single = vec![pending];
                let outcome = write_all(backend, held, &single).await;
                let (_, _, reply) = single.pop().expect("one write");
                let _ = reply.send(
                    outcome
                        .map(|mut results| results.remove(0))
                        .map_err(Into::into),
                );
            }
        }
    }
}

/// The statements of a batch, once per backend (the SQL is shared). All the
/// heartbeats of a batch are one multi-row upsert that also reads their
/// toggles (PostgreSQL: one autocommitted statement when the batch holds only
/// heartbeats; SQLite: the upsert and a toggle query in the transaction), so a
/// batch's cost does not grow with its round trips.
macro_rules! backend_writes {
    ($module:ident, $db:ty, $connection:ty, one_statement: $one_statement:literal) => {
        mod $module {
            use super::*;
            use sqlx::types::Json;
            use std::collections::{HashMap, HashSet};
            use uuid::Uuid;

            pub(super) async fn write_all(
                connection: &mut sqlx::pool::PoolConnection<$db>,
                batch: &[Pending],
            ) -> Result<Vec<Written>, sqlx::Error> {
                let all = |kind: fn(&Write) -> bool| batch.iter().all(|(write, _, _)| kind(write));
                if ($one_statement && all(|w| matches!(w, Write::Heartbeat(_))))
                    || all(|w| matches!(w, Write::Detection(_)))
                {
                    // The batch commits itself: on PostgreSQL one statement (no BEGIN, no
                    // COMMIT), on SQLite one script with its own BEGIN and COMMIT.
                    let written = write_on(connection, batch, true).await;
                    if written.is_err() && !$one_statement {
                        // The script may have stopped inside its transaction: closing the
                        // connection rolls that back, and the pool opens a new one.
                        connection.close_on_drop();
                    }
                    return written;
                }
                let mut tx = sqlx::Connection::begin(&mut **connection).await?;
                let results = write_on(&mut tx, batch, false).await?;
                tx.commit().await?;
                Ok(results)
            }

            /// Writes a batch on `connection`: each kind of write in one statement for
            /// the whole batch (telemetry events one by one). `commits_itself`: no
            /// transaction is open, and the batch's statements must commit it.
            async fn write_on(
                connection: &mut $connection,
                batch: &[Pending],
                commits_itself: bool,
            ) -> Result<Vec<Written>, sqlx::Error> {
                let mut heartbeats = Vec::new();
                let mut detections = Vec::new();
                let mut interops = Vec::new();
                for (write, now, _) in batch {
                    match write {
                        Write::Heartbeat(record) => heartbeats.push((record, *now)),
                        Write::Detection(detection) => detections.push((detection.as_ref(), *now)),
                        Write::Interop(record) => interops.push((record.as_ref(), *now)),
                        Write::Event(_) => {}
                    }
                }
                let mut beats = heartbeats_bulk(connection, &heartbeats).await?.into_iter();
                let mut logs = detections_bulk(connection, &detections, commits_itself).await?.into_iter();
                let mut stored = interop_bulk(connection, &interops).await?.into_iter();
                let mut results = Vec::with_capacity(batch.len());
                for (write, now, _) in batch {
                    results.push(match write {
                        Write::Heartbeat(_) => {
                            Written::Heartbeat(beats.next().expect("one outcome per heartbeat"))
                        }
                        Write::Event(record) => Written::Event(event(connection, record, *now).await?),
                        Write::Interop(_) => Written::Interop(stored.next().expect("one outcome per interop event")),
                        Write::Detection(_) => Written::Detection(logs.next().expect("one outcome per detection")),
                    });
                }
                Ok(results)
            }

            /// Upserts every installation once (the last heartbeat of a key
            /// wins, and its count adds the duplicates) and reads the toggles
            /// of them all: in the same statement where the dialect allows
            /// an INSERT in a CTE (PostgreSQL), else in a second one.
            async fn heartbeats_bulk(
                connection: &mut $connection,
                heartbeats: &[(&HeartbeatRecord, DateTime<Utc>)],
            ) -> Result<Vec<HeartbeatOutcome>, sqlx::Error> {
                if heartbeats.is_empty() {
                    return Ok(Vec::new());
                }
                // Per installation: the last heartbeat, how many there were,
                // and the last reported state and server info (a heartbeat
                // without them keeps what was reported before).
                #[derive(Clone, Copy)]
                struct Merged<'a> {
                    last: usize,
                    count: i64,
                    state: Option<&'a serde_json::Value>,
                    server_info: Option<&'a serde_json::Value>,
                }
                let mut merged: HashMap<(Uuid, &str, &str), Merged> = HashMap::new();
                for (index, (record, _)) in heartbeats.iter().enumerate() {
                    let key = (record.merchant_id, record.cms.as_str(), record.site_url.as_str());
                    let entry = merged.entry(key).or_insert(Merged {
                        last: index,
                        count: 0,
                        state: None,
                        server_info: None,
                    });
                    entry.last = index;
                    entry.count += 1;
                    entry.state = record.state.as_ref().or(entry.state);
                    entry.server_info = record.server_info.as_ref().or(entry.server_info);
                }
                // Rows in key order, so concurrent batches lock them in the
                // same order and cannot deadlock each other.
                let mut unique: Vec<((Uuid, &str, &str), Merged)> = merged.into_iter().collect();
                unique.sort_unstable_by_key(|(key, _)| *key);

                let mut upsert = sqlx::QueryBuilder::<$db>::new(if $one_statement { "WITH up AS (" } else { "" });
                upsert.push(
                    "INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, \
                       version_key, sdk_language, environment, php_version, wordpress_version, server_info, \
                       reported_state, reported_error_rate, heartbeat_count, first_seen_at, last_heartbeat) ",
                );
                upsert.push_values(&unique, |mut row, (_, merged)| {
                    let (record, now) = heartbeats[merged.last];
                    row.push_bind(Uuid::now_v7())
                        .push_bind(record.merchant_id)
                        .push_bind(&record.cms)
                        .push_bind(&record.site_url)
                        .push_bind(&record.plugin_version)
                        .push_bind(&record.version_key)
                        .push_bind(record.sdk_language.as_deref())
                        .push_bind(&record.environment)
                        .push_bind(record.php_version.as_deref())
                        .push_bind(record.wordpress_version.as_deref())
                        .push_bind(merged.server_info.map(Json))
                        .push_bind(merged.state.map(Json))
                        .push_bind(record.errors_last_hour)
                        .push_bind(merged.count)
                        .push_bind(now)
                        .push_bind(now);
                });
                upsert.push(
                    " ON CONFLICT (merchant_id, cms, site_url) DO UPDATE SET \
                       plugin_version = excluded.plugin_version, version_key = excluded.version_key, \
                       sdk_language = excluded.sdk_language, environment = excluded.environment, \
                       php_version = excluded.php_version, wordpress_version = excluded.wordpress_version, \
                       server_info = COALESCE(excluded.server_info, plugin_installations.server_info), \
                       reported_state = COALESCE(excluded.reported_state, plugin_installations.reported_state), \
                       reported_error_rate = excluded.reported_error_rate, \
                       heartbeat_count = plugin_installations.heartbeat_count + excluded.heartbeat_count, \
                       last_heartbeat = excluded.last_heartbeat \
                     RETURNING id, merchant_id, cms, site_url",
                );
                type ToggleRow = (Uuid, String, Json<serde_json::Value>, Option<DateTime<Utc>>);
                let (ids, toggles): (HashMap<(Uuid, String, String), Uuid>, Vec<ToggleRow>) = if $one_statement {
                    upsert.push(
                        ") SELECT up.id, up.merchant_id, up.cms, up.site_url, t.toggle_key, t.toggle_value, t.expires_at \
                         FROM up LEFT JOIN plugin_ops_toggles t ON t.installation_id = up.id AND t.lifted_at IS NULL",
                    );
                    type Row = (
                        Uuid,
                        Uuid,
                        String,
                        String,
                        Option<String>,
                        Option<Json<serde_json::Value>>,
                        Option<DateTime<Utc>>,
                    );
                    let rows: Vec<Row> = upsert.build_query_as().fetch_all(&mut *connection).await?;
                    let mut ids = HashMap::new();
                    let mut toggles = Vec::new();
                    for (id, merchant_id, cms, site_url, key, value, expires_at) in rows {
                        ids.insert((merchant_id, cms, site_url), id);
                        if let (Some(key), Some(value)) = (key, value) {
                            toggles.push((id, key, value, expires_at));
                        }
                    }
                    (ids, toggles)
                } else {
                    let rows: Vec<(Uuid, Uuid, String, String)> =
                        upsert.build_query_as().fetch_all(&mut *connection).await?;
                    let ids: HashMap<(Uuid, String, String), Uuid> = rows
                        .into_iter()
                        .map(|(id, merchant_id, cms, site_url)| ((merchant_id, cms, site_url), id))
                        .collect();
                    let mut select = sqlx::QueryBuilder::<$db>::new(
                        "SELECT installation_id, toggle_key, toggle_value, expires_at FROM plugin_ops_toggles \
                         WHERE lifted_at IS NULL AND installation_id IN (",
                    );
                    let mut separated = select.separated(", ");
                    for id in ids.values() {
                        separated.push_bind(*id);
                    }
                    select.push(")");
                    let toggles = select.build_query_as().fetch_all(&mut *connection).await?;
                    (ids, toggles)
                };

                Ok(heartbeats
                    .iter()
                    .map(|(record, now)| {
                        let lookup = (record.merchant_id, record.cms.clone(), record.site_url.clone());
                        let installation_id = ids[&lookup];
                        let toggles = toggles
                            .iter()
                            .filter(|(id, _, _, expires_at)| {
                                *id == installation_id && expires_at.is_none_or(|at| at > *now)
                            })
                            .map(|(_, key, value, _)| (key.clone(), value.0.clone()))
                            .collect();
                        HeartbeatOutcome { installation_id, toggles }
                    })
                    .collect())
            }

            async fn event(
                connection: &mut $connection,
                record: &EventRecord,
                now: DateTime<Utc>,
            ) -> Result<EventOutcome, sqlx::Error> {
                let installation_id: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM plugin_installations \
                     WHERE merchant_id = $1 AND cms = $2 AND site_url = $3",
                )
                .bind(record.merchant_id)
                .bind(&record.cms)
                .bind(&record.site_url)
                .fetch_optional(&mut *connection)
                .await?;
                let install_blocked = match installation_id {
                    Some(id) => sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM plugin_ops_toggles \
                         WHERE installation_id = $1 AND toggle_key = 'block_plugin' \
                           AND lifted_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                           AND toggle_value = 'true'",
                    )
                    .bind(id)
                    .bind(now)
                    .fetch_one(&mut *connection)
                    .await?
                        > 0,
                    None => false,
                };
                let event_id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO plugin_telemetry_events (id, installation_id, merchant_id, cms, site_url, \
                       event_type, severity, event_data, message, stack_trace, install_blocked, occurred_at, \
                       received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(event_id)
                .bind(installation_id)
                .bind(record.merchant_id)
                .bind(&record.cms)
                .bind(&record.site_url)
                .bind(&record.event_type)
                .bind(&record.severity)
                .bind(Json(&record.event_data))
                .bind(record.message.as_deref())
                .bind(record.stack_trace.as_deref())
                .bind(install_blocked)
                .bind(record.occurred_at)
                .bind(now)
                .execute(&mut *connection)
                .await?;
                Ok(EventOutcome {
                    event_id,
                    installation_id,
                    install_blocked,
                })
            }

            /// Records the batch's detections: their logs, snapshots and commands (on
            /// PostgreSQL in one statement, else one statement each). A log whose
            /// idempotency key was used before is not written (None), nor is anything
            /// that came with it.
            async fn detections_bulk(
                connection: &mut $connection,
                detections: &[(&(Uuid, NewHealingLog, DetectionOutcome), DateTime<Utc>)],
                commits_itself: bool,
            ) -> Result<Vec<Option<Box<HealingLog>>>, sqlx::Error> {
                use crate::store::healing::{
                    push_command_values, push_new_logs_insert,
                    push_snapshot_values, COMMAND_COLUMNS_INSERTED, SNAPSHOT_COLUMNS,
                };
                if detections.is_empty() {
                    return Ok(Vec::new());
                }
                let (logs, works): (Vec<HealingLog>, Vec<_>) = detections
                    .iter()
                    .map(|((id, new, outcome), now)| HealingLog::detected(*id, new, outcome, *now))
                    .unzip();
                let snapshots: Vec<_> = works.iter().flatten().map(|(snapshot, _)| snapshot.clone()).collect();
                let commands: Vec<_> = works.into_iter().flatten().map(|(_, command)| command).collect();
                let inserted: HashSet<Uuid> = if $one_statement {
                    // The snapshots and commands of the logs inserted, in the same
                    // statement: foreign keys are checked at its end.
                    let mut query = sqlx::QueryBuilder::<$db>::new("WITH logs AS (");
                    push_new_logs_insert!(query, &logs);
                    query.push(")");
                    if !snapshots.is_empty() {
                        query.push(format!(
                            ", snapshots AS (INSERT INTO plugin_snapshots ({SNAPSHOT_COLUMNS}) SELECT * FROM ("
                        ));
                        push_snapshot_values!(query, &snapshots, true);
                        query.push(format!(
                            ") AS v ({SNAPSHOT_COLUMNS}) WHERE v.id IN (SELECT snapshot_id FROM logs))"
                        ));
                    }
                    if !commands.is_empty() {
                        query.push(format!(
                            ", commands AS (INSERT INTO plugin_commands ({COMMAND_COLUMNS_INSERTED}) SELECT * FROM ("
                        ));
                        push_command_values!(query, &commands, true);
                        query.push(format!(
                            ") AS v ({COMMAND_COLUMNS_INSERTED}) WHERE v.healing_log_id IN (SELECT id FROM logs))"
                        ));
                    }
                    query.push(" SELECT id FROM logs");
                    query.build_query_scalar().fetch_all(&mut *connection).await?.into_iter().collect()
                } else {
                    // One script, one round trip to the connection's worker thread: the
                    // snapshots (before their logs: SQLite checks foreign keys at once),
                    // the logs, then what came with a log not inserted is dropped again,
                    // and only the inserted logs' commands are queued.
                    let mut script = sqlx::QueryBuilder::<$db>::new(if commits_itself { "BEGIN IMMEDIATE; " } else { "" });
                    if !snapshots.is_empty() {
                        script.push(format!("INSERT INTO plugin_snapshots ({SNAPSHOT_COLUMNS}) "));
                        push_snapshot_values!(script, &snapshots, false);
                        script.push("; ");
                    }
                    push_new_logs_insert!(script, &logs);
                    if !snapshots.is_empty() {
                        script.push("; WITH v (log_id, snapshot_id) AS (");
                        script.push_values(&logs, |mut row, log| {
                            row.push_bind(log.id).push_bind(log.snapshot_id);
                        });
                        script.push(
                            ") DELETE FROM plugin_snapshots WHERE id IN (SELECT snapshot_id FROM v \
                             WHERE NOT EXISTS (SELECT 1 FROM plugin_auto_healing_logs WHERE id = v.log_id))",
                        );
                    }
                    if !commands.is_empty() {
                        script.push(format!("; WITH v ({COMMAND_COLUMNS_INSERTED}) AS ("));
                        push_command_values!(script, &commands, false);
                        script.push(format!(
                            ") INSERT INTO plugin_commands ({COMMAND_COLUMNS_INSERTED}) SELECT * FROM v \
                             WHERE EXISTS (SELECT 1 FROM plugin_auto_healing_logs WHERE id = v.healing_log_id)"
                        ));
                    }
                    if commits_itself {
                        script.push("; COMMIT");
                    }
                    let inserted: Vec<(Uuid, Option<Uuid>)> = script.build_query_as().fetch_all(&mut *connection).await?;
                    inserted.into_iter().map(|(id, _)| id).collect()
                };
                Ok(logs
                    .into_iter()
                    .map(|log| inserted.contains(&log.id).then(|| Box::new(log)))
                    .collect())
            }

            /// Stores the batch's interop events, one statement for them all, once per
            /// (merchant, CloudEvents id): a redelivery — of an event stored before, or
            /// twice in one batch — answers with the row stored the first time. The
            /// forwards of an event are written only with the event.
            async fn interop_bulk(
                connection: &mut $connection,
                records: &[(&InteropRecord, DateTime<Utc>)],
            ) -> Result<Vec<InteropOutcome>, sqlx::Error> {
                if records.is_empty() {
                    return Ok(Vec::new());
                }
                let mut first: HashMap<(Uuid, &str), usize> = HashMap::new();
                for (index, (record, _)) in records.iter().enumerate() {
                    first.entry((record.merchant_id, record.event_id.as_str())).or_insert(index);
                }
                let ids: Vec<Uuid> = records.iter().map(|_| Uuid::now_v7()).collect();
                let mut candidates: Vec<usize> = first.values().copied().collect();
                candidates.sort_unstable();
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO plugin_interop_events (id, installation_id, merchant_id, event_id, \
                       source_platform, source_event_type, event_type, event_category, payload, \
                       normalized_payload, cloud_event, mapping, processing_status, failure_code, \
                       failure_reason, received_at) ",
                );
                insert.push_values(&candidates, |mut row, &index| {
                    let (record, now) = records[index];
                    row.push_bind(ids[index])
                        .push_bind(record.installation_id)
                        .push_bind(record.merchant_id)
                        .push_bind(&record.event_id)
                        .push_bind(&record.source_platform)
                        .push_bind(&record.source_event_type)
                        .push_bind(record.event_type.as_deref())
                        .push_bind(record.event_category.as_deref())
                        .push_bind(Json(&record.payload))
                        .push_bind(record.normalized_payload.as_ref().map(Json))
                        .push_bind(record.cloud_event.as_ref().map(Json))
                        .push_bind(record.mapping.as_deref())
                        .push_bind(record.processing_status)
                        .push_bind(record.failure_code.as_deref())
                        .push_bind(record.failure_reason.as_deref())
                        .push_bind(now);
                });
                insert.push(" ON CONFLICT (merchant_id, event_id) DO NOTHING RETURNING id");
                let inserted: HashSet<Uuid> =
                    insert.build_query_scalar().fetch_all(&mut *connection).await?.into_iter().collect();
                let mut outcomes = Vec::with_capacity(records.len());
                for (index, (record, now)) in records.iter().enumerate() {
                    let stored = first[&(record.merchant_id, record.event_id.as_str())];
                    if inserted.contains(&ids[stored]) {
                        if stored == index {
                            for message in &record.forwards {
                                crate::store::insert_outbox!(connection, message, Uuid::now_v7(), *now);
                            }
                        }
                        outcomes.push(InteropOutcome { id: ids[stored], duplicate: stored != index });
                        continue;
                    }
                    let id = sqlx::query_scalar(
                        "SELECT id FROM plugin_interop_events WHERE merchant_id = $1 AND event_id = $2",
                    )
                    .bind(record.merchant_id)
                    .bind(&record.event_id)
                    .fetch_one(&mut *connection)
                    .await?;
                    outcomes.push(InteropOutcome { id, duplicate: true });
                }
                Ok(outcomes)
            }
        }
    };
}

backend_writes!(sqlite, sqlx::Sqlite, sqlx::SqliteConnection, one_statement: false);
backend_writes!(postgres, sqlx::Postgres, sqlx::PgConnection, one_statement: true);
