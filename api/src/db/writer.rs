//! Group commit. Heartbeats, events, interop events and detections arrive from the whole
//! fleet at once; one writer task takes whatever is queued (up to `max_batch`), writes it in
//! one transaction and answers every caller only after that commit. Throughput then scales
//! with the batch instead of with fsyncs, and nothing is acknowledged before it is durable.
//! If a batch fails as a whole, each write is retried in a transaction of its own so one bad
//! write cannot sink its neighbours.
//!
//! The writer is generic: a feature makes a kind of write batchable by implementing
//! [`Batched`] beside its SQL (one statement per kind for the whole batch where the dialect
//! allows), and submits it with `Store::write`.

use super::{Backend, BackendKind, StoreError, Tx};
use chrono::{DateTime, Utc};
use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
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

/// One kind of write the writer batches: a heartbeat, a telemetry event, an interop event,
/// a detection. Each feature implements it beside its SQL; the writer knows none of them.
pub trait Batched: Send + Sync + Sized + 'static {
    type Outcome: Send + 'static;

    /// Kinds are written in ascending order within a batch: heartbeats (which create
    /// installations) before the events that name them.
    const ORDER: u8;

    /// Whether a batch of only this kind commits itself on `backend` (one statement on
    /// PostgreSQL, or a script with its own BEGIN and COMMIT on SQLite), so the writer opens
    /// no transaction around it.
    fn commits_itself(_backend: BackendKind) -> bool {
        false
    }

    /// Writes every write of this kind in the batch (in arrival order, each with its `now`)
    /// and returns one outcome per write, in the same order. `commits_itself`: no
    /// transaction is open, and these statements must commit the writes themselves.
    fn write_all(
        tx: &mut Tx<'_>,
        writes: &[(&Self, DateTime<Utc>)],
        commits_itself: bool,
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, sqlx::Error>> + Send;
}

/// A queued write of some [`Batched`] kind and the caller waiting for its outcome, with the
/// kind erased so one batch can hold every kind.
trait Pending: Send + Sync {
    /// The kind's place in a batch and its identity.
    fn kind(&self) -> (u8, TypeId);
    fn commits_itself(&self, backend: BackendKind) -> bool;
    fn as_any(&self) -> &dyn Any;
    /// Writes `group` (queued writes of this one's kind, this one among them).
    fn write_group<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        group: &'a [&'a dyn Pending],
        commits_itself: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Outcome>, sqlx::Error>> + Send + 'a>>;
    /// Answers the caller: its outcome, committed, or why not.
    fn answer(self: Box<Self>, outcome: Result<Outcome, StoreError>);
}

/// The outcome of one write, its kind erased until it reaches its caller.
type Outcome = Box<dyn Any + Send>;

struct Queued<K: Batched> {
    write: K,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Result<K::Outcome, StoreError>>,
}

impl<K: Batched> Pending for Queued<K> {
    fn kind(&self) -> (u8, TypeId) {
        (K::ORDER, TypeId::of::<K>())
    }

    fn commits_itself(&self, backend: BackendKind) -> bool {
        K::commits_itself(backend)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn write_group<'a>(
        &self,
        tx: &'a mut Tx<'_>,
        group: &'a [&'a dyn Pending],
        commits_itself: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Outcome>, sqlx::Error>> + Send + 'a>> {
        Box::pin(async move {
            let writes: Vec<(&K, DateTime<Utc>)> = group
                .iter()
                .map(|pending| {
                    let queued = pending
                        .as_any()
                        .downcast_ref::<Queued<K>>()
                        .expect("a group holds one kind");
                    (&queued.write, queued.now)
                })
                .collect();
            let outcomes = K::write_all(tx, &writes, commits_itself).await?;
            Ok(outcomes
                .into_iter()
                .map(|outcome| Box::new(outcome) as Outcome)
                .collect())
        })
    }

    fn answer(self: Box<Self>, outcome: Result<Outcome, StoreError>) {
        let outcome = outcome.map(|outcome| {
            *outcome
                .downcast::<K::Outcome>()
                .expect("a write is answered with its own kind's outcome")
        });
        // The caller may have given up waiting; the write is committed all the same.
        let _ = self.reply.send(outcome);
    }
}

enum Job {
    Write(Box<dyn Pending>),
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

    /// Queues `write` and waits for the commit of the batch that holds it.
    pub(super) async fn submit<K: Batched>(
        &self,
        write: K,
        now: DateTime<Utc>,
    ) -> Result<K::Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write(Box::new(Queued { write, now, reply })))
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
                    Job::Write(pending) => batch.push(pending),
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

/// A writer's connection, taken from the backend's write pool.
enum WriteConnection {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl WriteConnection {
    fn tx(&mut self) -> Tx<'_> {
        match self {
            Self::Sqlite(connection) => Tx::Sqlite(connection),
            Self::Postgres(connection) => Tx::Postgres(connection),
        }
    }
}

/// Writes a batch on the held connection, taking one first if none is held: one
/// transaction for the whole batch, each kind of write in its own statements, or, for a
/// batch of one kind that commits itself, no transaction around them. A connection a batch
/// failed on is not kept.
async fn write_all(
    backend: &Backend,
    held: &mut Option<WriteConnection>,
    batch: &[Box<dyn Pending>],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let connection = match held {
        Some(connection) => connection,
        None => held.insert(match backend {
            Backend::Sqlite { writes, .. } => WriteConnection::Sqlite(writes.acquire().await?),
            Backend::Postgres(pool) => WriteConnection::Postgres(pool.acquire().await?),
        }),
    };
    let mut kinds: Vec<(u8, TypeId)> = batch.iter().map(|pending| pending.kind()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let written = if kinds.len() == 1 && batch[0].commits_itself(backend.kind()) {
        let written = write_kinds(&mut connection.tx(), batch, &kinds, true).await;
        if let (Err(_), WriteConnection::Sqlite(connection)) = (&written, &mut *connection) {
            // The script may have stopped inside its transaction: closing the connection
            // rolls that back, and the pool opens a new one.
            connection.close_on_drop();
        }
        written
    } else {
        let mut tx = connection.tx();
        let mut transaction = tx.begin().await?;
        let written = write_kinds(&mut transaction.tx(), batch, &kinds, false).await?;
        transaction.commit().await?;
        Ok(written)
    };
    match (&written, backend) {
        (Err(_), _) => *held = None,
        (Ok(_), Backend::Sqlite { checkpoint_due, .. }) => checkpoint_due.notify_one(),
        (Ok(_), Backend::Postgres(_)) => {}
    }
    written
}

/// Writes each kind's group in `kinds`' order; the outcomes in batch order.
async fn write_kinds(
    tx: &mut Tx<'_>,
    batch: &[Box<dyn Pending>],
    kinds: &[(u8, TypeId)],
    commits_itself: bool,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
    for kind in kinds {
        let members: Vec<usize> = (0..batch.len())
            .filter(|&index| batch[index].kind() == *kind)
            .collect();
        let group: Vec<&dyn Pending> = members.iter().map(|&index| batch[index].as_ref()).collect();
        let written = group[0].write_group(tx, &group, commits_itself).await?;
        for (index, outcome) in members.into_iter().zip(written) {
            outcomes[index] = Some(outcome);
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every write of a batch has an outcome"))
        .collect())
}

async fn commit(
    backend: &Backend,
    held: &mut Option<WriteConnection>,
    batch: &mut Vec<Box<dyn Pending>>,
) {
    match write_all(backend, held, batch).await {
        Ok(outcomes) => {
            for (pending, outcome) in batch.drain(..).zip(outcomes) {
                pending.answer(Ok(outcome));
            }
        }
        Err(batch_error) if batch.len() == 1 => {
            let pending = batch.pop().expect("one write");
            pending.answer(Err(batch_error.into()));
        }
        Err(batch_error) => {
            tracing::warn!(event = "batch_retry", size = batch.len(), error = %batch_error,
                "batched write failed; retrying each write on its own");
            for pending in batch.drain(..) {
                let mut single = vec![pending];
                let outcome = write_all(backend, held, &single).await;
                let pending = single.pop().expect("one write");
                pending.answer(
                    outcome
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(Into::into),
                );
            }
        }
    }
}
