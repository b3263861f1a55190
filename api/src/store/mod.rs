//! The store: one interface over two sqlx backends, SQLite (the embedded
//! default, WAL, synchronous=FULL) and PostgreSQL (production, and how several
//! replicas share state). SQL is written once where both dialects agree, which
//! is nearly everywhere: `$n` placeholders, `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, partial indexes. Every timestamp is passed in by the caller.
//!
//! Each method runs in one transaction; an Ops action writes its audit row in
//! the same transaction as the change, so no change goes unaudited.

mod batch;
mod credentials;
mod flags;
mod fleet;
mod healing;
mod interop;
mod monitoring;
mod notifications;
mod outbox;

pub use batch::WriterOptions;
pub use credentials::{hash_secret, NewSecret, Principal, Role};
pub use flags::*;
pub use fleet::*;
pub use healing::*;
pub use interop::*;
pub use monitoring::*;
pub use notifications::*;
pub use outbox::*;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// Runs `$body` with `$pool` bound to the backend's pool. The body is compiled
/// once per backend, so the same query text and binds serve both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { reads: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Like [`on_pool!`] for a body that writes. SQLite has one writer at a time: its writes
/// queue in order for the one connection of the write pool instead of meeting as
/// `SQLITE_BUSY` and polling for the lock (which costs tens of milliseconds under load).
macro_rules! on_write_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { writes: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_write_pool;

/// Inserts an audit row inside an open transaction (`&mut *tx`).
macro_rules! insert_audit {
    ($tx:expr, $audit:expr, $action:expr, $target_type:expr, $target_id:expr, $details:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (id, actor_kind, actor_id, action, target_type, target_id, details, request_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind($audit.actor_kind)
        .bind($audit.actor_id)
        .bind($action)
        .bind($target_type)
        .bind($target_id)
        .bind(sqlx::types::Json($details))
        .bind($audit.request_id.as_deref())
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use insert_audit;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("the batched writer has stopped")]
    WriterStopped,
}

impl StoreError {
    /// True when retrying later may succeed (connection lost, pool exhausted,
    /// shutting down) rather than a fault in the request or the schema.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::WriterStopped)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error),
            other => Self::Database(other),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// Readers share a pool; writers take turns on a pool of one connection; one more
    /// connection checkpoints the WAL when `checkpoint_due` says a batch was committed.
    Sqlite {
        reads: SqlitePool,
        writes: SqlitePool,
        checkpoints: SqlitePool,
        checkpoint_due: Arc<Notify>,
    },
    Postgres(PgPool),
}

/// Which backend a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

/// Connection settings; the defaults suit one `autoheal serve` on 2 cores.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before 503.
    pub acquire_timeout_ms: u64,
    /// Group commit of telemetry writes.
    pub writer: WriterOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            writer: WriterOptions::default(),
        }
    }
}

/// Who performs an audited action, and from which request.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub actor_kind: &'static str,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: Uuid,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub details: Json<Value>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    writer: batch::Writer,
}

/// A pooled connection idle for longer than this is pinged before it is handed out (a
/// database restart leaves dead connections in the pool); one in steady use is not. sqlx's
/// own `test_before_acquire` pings on every acquire: a round trip to the database (on
/// SQLite, to the connection's worker thread) before each statement, under load as well.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

fn pool_options<DB: sqlx::Database>(
    max_connections: u32,
    acquire_timeout: Duration,
) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|connection: &mut DB::Connection, metadata| {
            Box::pin(async move {
                if metadata.idle_for > PING_IF_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The least time between two background WAL checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(25);

/// SQLite's WAL checkpoint, off the commit path. SQLite checkpoints inside the commit that
/// crosses `wal_autocheckpoint` (1 000 pages): that commit copies every page changed since
/// the last checkpoint into the database file and fsyncs it, 5–14 ms under load, and every
/// write queued behind it waits (BENCHMARKS.md). This connection checkpoints after the
/// batches instead, so the commit's own checkpoint finds little left to copy. That one stays
/// on: the writer, right after its own commit, is where every frame is seen checkpointed,
/// which is what lets the WAL start over; without it the WAL grew without bound.
fn spawn_checkpoints(pool: SqlitePool, due: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            due.notified().await;
            if pool.is_closed() {
                return;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(event = "wal_checkpoint_failed", error = %error,
                    "WAL checkpoint failed; the next commit checkpoints as SQLite does by default");
            }
            // At most one every CHECKPOINT_PAUSE: each is a database fsync, and one per
            // batch cost more throughput than it saved.
            tokio::time::sleep(CHECKPOINT_PAUSE).await;
        }
    });
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Connects to `sqlite://PATH` (the file is created if missing) or
    /// `postgres://…`. Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let acquire_timeout = Duration::from_millis(options.acquire_timeout_ms);
        let backend = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::UnsupportedUrl(redact_url(url)))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it is acknowledged.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .disable_statement_logging();
            let writes = pool_options(1, acquire_timeout)
                .connect_with(connect.clone())
                .await?;
            let checkpoints = pool_options(1, acquire_timeout)
                .connect_with(connect.clone())
                .await?;
            let reads = pool_options(options.max_connections, acquire_timeout)
                .connect_with(connect)
                .await?;
            let checkpoint_due = Arc::new(Notify::new());
            spawn_checkpoints(checkpoints.clone(), checkpoint_due.clone());
            Backend::Sqlite {
                reads,
                writes,
                checkpoints,
                checkpoint_due,
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url)
                .map_err(|_| StoreError::UnsupportedUrl(redact_url(url)))?
                .disable_statement_logging();
            let pool = pool_options(options.max_connections, acquire_timeout)
                .connect_with(connect)
                .await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let writer = batch::Writer::start(backend.clone(), options.writer.clone());
        Ok(Self { backend, writer })
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Applies the embedded migrations of this backend that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { writes, .. } => SQLITE_MIGRATIONS.run(writes).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Waits until every accepted batched write is committed, then closes the
    /// pool. Called once on shutdown.
    pub async fn close(&self) {
        self.writer.stop().await;
        match &self.backend {
            Backend::Sqlite {
                reads,
                writes,
                checkpoints,
                checkpoint_due,
            } => {
                reads.close().await;
                writes.close().await;
                checkpoints.close().await;
                // Wakes the checkpoint task, which sees the pool closed and ends.
                checkpoint_due.notify_one();
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Records an Ops action that changes nothing in the store (a rules
    /// reload, say).
    pub async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &str,
        target_type: &str,
        details: Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_audit!(tx, audit, action, target_type, None::<String>, details, now);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64, offset: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditEntry>(
            "SELECT id, actor_kind, actor_id, action, target_type, target_id, details, request_id, at \
             FROM audit_log ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }
}

/// A database URL fit for an error message: the password is dropped.
fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((credentials, rest)) => match credentials.rsplit_once(':') {
            Some((user, _password)) if user.contains("//") => format!("{user}:***@{rest}"),
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
