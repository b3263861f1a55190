//! The store: one interface over two sqlx backends, SQLite (the embedded default, WAL,
//! synchronous=FULL) and PostgreSQL (production, and how several replicas share state).
//! SQL is written once where both dialects agree, which is nearly everywhere: `$n`
//! placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`, partial indexes. Every timestamp is
//! passed in by the caller.
//!
//! This module holds what every feature's SQL stands on, and none of that SQL: the
//! connection pools, [`Tx`] (the connection a unit of work runs on, either backend) with
//! [`on_tx!`], the migrations, the group-commit [`writer`], the audit log and the
//! invalidation bus. Each feature keeps its own statements in its `store.rs`, as methods on
//! [`Store`] or as [`Batched`] writes.
//!
//! Each method of a feature runs in one transaction; an Ops action writes its audit row in
//! the same transaction as the change, so no change goes unaudited.

mod audit;
mod invalidation;
mod writer;

pub(crate) use audit::insert_audit;
pub use audit::{AuditContext, AuditEntry, AuditFilter};
pub(crate) use invalidation::notify;
pub use invalidation::{Invalidation, InvalidationBus, INVALIDATION_CHANNEL};
pub use writer::Batched;
pub use writer::WriterOptions;

use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Runs `$body` with `$pool` bound to the backend's pool of readers. The body is compiled
/// once per backend, so the same query text and binds serve both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::db::Backend::Sqlite { reads: $pool, .. } => $body,
            $crate::db::Backend::Postgres($pool) => $body,
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
            $crate::db::Backend::Sqlite { writes: $pool, .. } => $body,
            $crate::db::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_write_pool;

/// Runs `$body` with `$connection` bound to the connection of `$tx` (a `&mut Tx`): one
/// statement on either backend, compiled once per backend. `on_tx!(tx, c => execute QUERY)`
/// executes QUERY and evaluates to the rows it affected (the backends' own result types
/// differ); `on_tx!(tx, c, Db => …)` also names the backend's `sqlx::Database` type `Db`,
/// for a `QueryBuilder::<Db>`.
macro_rules! on_tx {
    ($tx:expr, $connection:ident => execute $query:expr) => {
        $crate::db::on_tx!($tx, $connection => ($query)
            .execute($connection)
            .await
            .map(|done| done.rows_affected()))
    };
    ($tx:expr, $connection:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(connection) => {
                let $connection: &mut sqlx::SqliteConnection = &mut **connection;
                $body
            }
            $crate::db::Tx::Postgres(connection) => {
                let $connection: &mut sqlx::PgConnection = &mut **connection;
                $body
            }
        }
    };
    ($tx:expr, $connection:ident, $db:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite(connection) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                let $connection: &mut sqlx::SqliteConnection = &mut **connection;
                $body
            }
            $crate::db::Tx::Postgres(connection) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                let $connection: &mut sqlx::PgConnection = &mut **connection;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// The connection a unit of work runs on, on either backend: inside a [`Transaction`]
/// (opened by [`Store::begin`] or by the group-commit writer), or, for a batch that commits
/// itself, a connection whose statements are their own transactions. A step that several
/// writes share (an audit row, an outbox message, a NOTIFY) takes `&mut Tx`, so it is an
/// ordinary `async fn`; [`on_tx!`] runs a statement on it.
pub enum Tx<'c> {
    Sqlite(&'c mut sqlx::SqliteConnection),
    Postgres(&'c mut sqlx::PgConnection),
}

impl Tx<'_> {
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Sqlite(_) => BackendKind::Sqlite,
            Self::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Opens a transaction on this connection.
    pub(crate) async fn begin(&mut self) -> Result<Transaction<'_>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(connection) => Transaction::Sqlite(connection.begin().await?),
            Self::Postgres(connection) => Transaction::Postgres(connection.begin().await?),
        })
    }
}

/// One open transaction on either backend. Dropped without [`Transaction::commit`], it
/// rolls back: a step that fails with `?` leaves nothing behind.
pub(crate) enum Transaction<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

impl Transaction<'_> {
    /// The transaction's connection, for the statements of the unit of work.
    pub(crate) fn tx(&mut self) -> Tx<'_> {
        match self {
            Self::Sqlite(transaction) => Tx::Sqlite(transaction),
            Self::Postgres(transaction) => Tx::Postgres(transaction),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(transaction) => transaction.commit().await,
            Self::Postgres(transaction) => transaction.commit().await,
        }
    }
}

/// Implements sqlx's `Type`, `Encode` and `Decode` on both backends for an enum stored as
/// its text (`as_str` and `parse`), so a row's column reads as the enum and a stored value
/// that is none of its variants is a decode error, not a panic later.
macro_rules! text_column {
    ($name:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, DB>>::decode(value)?;
                <$name>::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }
        }
    };
}
pub(crate) use text_column;

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
    /// Records that must agree do not (a command's plan its snapshot cannot replay).
    #[error("stored records disagree: {0}")]
    Inconsistent(String),
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

impl Backend {
    fn kind(&self) -> BackendKind {
        match self {
            Self::Sqlite { .. } => BackendKind::Sqlite,
            Self::Postgres(_) => BackendKind::Postgres,
        }
    }
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

#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    writer: writer::Writer,
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
        let writer = writer::Writer::start(backend.clone(), options.writer.clone());
        Ok(Self { backend, writer })
    }

    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
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

    /// Opens a transaction on the write pool, for a unit of work of several statements.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static>, StoreError> {
        let transaction: Transaction<'static> =
            on_write_pool!(self, pool => pool.begin().await?.into());
        Ok(transaction)
    }

    /// Queues `write` (a heartbeat, a telemetry event, an interop event, a detection: any
    /// [`Batched`] kind) for the group-commit writer and waits until the batch holding it is
    /// committed: its outcome, once durable.
    pub async fn write<K: Batched>(
        &self,
        write: K,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<K::Outcome, StoreError> {
        self.writer.submit(write, now).await
    }

    /// The PostgreSQL pool, for LISTEN; None on SQLite.
    pub(crate) fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite { .. } => None,
        }
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
}

impl From<sqlx::Transaction<'static, sqlx::Sqlite>> for Transaction<'static> {
    fn from(transaction: sqlx::Transaction<'static, sqlx::Sqlite>) -> Self {
        Self::Sqlite(transaction)
    }
}

impl From<sqlx::Transaction<'static, sqlx::Postgres>> for Transaction<'static> {
    fn from(transaction: sqlx::Transaction<'static, sqlx::Postgres>) -> Self {
        Self::Postgres(transaction)
    }
}

/// The suffix that types a value for PostgreSQL when `typed` (a VALUES list outside an
/// INSERT has no columns to infer its types from), else nothing.
pub(crate) fn cast(typed: bool, postgres_type: &'static str) -> &'static str {
    if typed {
        postgres_type
    } else {
        ""
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
