//! Retention (seed 002's table): raw telemetry by severity, platform log entries by level,
//! interop events, health checks, delivered outbox messages and finished commands are pruned
//! by the hourly `retention` job.
//! The audit log, the rollups' summaries within their own retention, the healing logs and
//! dead letters are kept.
//!
//! On PostgreSQL the telemetry events, the platform log and the health checks are
//! partitioned by month: a
//! month whose every row is past the longest retention of its table is detached and
//! dropped whole, and the months ahead are created before they begin. Within the months
//! kept, and on SQLite for everything, expired rows go in batches of [`BATCH`], each its own
//! short transaction, so the group commits of heartbeats and events go on between them.

use crate::db::{on_write_pool, Backend, Store, StoreError};
use crate::logs::LogLevel;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use std::collections::BTreeMap;

/// Rows one delete statement removes at most.
pub const BATCH: i64 = 5_000;

/// How long retention pauses after a full batch, in multiples of the batch's own time: the
/// purge takes at most a fifth of the store's write time.
pub const PAUSE_PER_BATCH_TIME: f64 = 4.0;

/// How long each kind of row is kept.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Telemetry events of severity `error` and `critical`.
    pub error: Duration,
    /// … of severity `warning`.
    pub warn: Duration,
    /// … of severity `info`.
    pub info: Duration,
    /// … of severity `debug`.
    pub debug: Duration,
    pub interop_events: Duration,
    pub health_checks: Duration,
    /// Outbox messages delivered (a dead letter is kept for Ops; a message a notification
    /// record names is kept with it).
    pub delivered_messages: Duration,
    /// Commands acked, failed or cancelled, by when they were issued.
    pub finished_commands: Duration,
    /// The hourly rollups: what the error rates, the daily figures and the trends read.
    pub rollups: Duration,
    /// Grouped error events (`error_occurrences`): an error group's samples, its hourly
    /// counts and the detector's bursts read them; the groups and their counts stay.
    pub error_occurrences: Duration,
    /// The platform log's entries, by level.
    pub platform_logs: LogRetention,
}

/// How long the platform log keeps its entries of each level (seed 002's table).
#[derive(Clone, Debug)]
pub struct LogRetention {
    pub error: Duration,
    pub warn: Duration,
    pub info: Duration,
    pub debug: Duration,
}

impl Default for LogRetention {
    fn default() -> Self {
        Self {
            error: Duration::days(30),
            warn: Duration::days(14),
            info: Duration::days(7),
            debug: Duration::days(1),
        }
    }
}

impl LogRetention {
    /// Each level with how long its entries are kept.
    fn levels(&self) -> [(LogLevel, Duration); 4] {
        [
            (LogLevel::Error, self.error),
            (LogLevel::Warn, self.warn),
            (LogLevel::Info, self.info),
            (LogLevel::Debug, self.debug),
        ]
    }

    fn longest(&self) -> Duration {
        self.levels()
            .into_iter()
            .map(|(_, kept)| kept)
            .max()
            .expect("levels are listed")
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            error: Duration::days(30),
            warn: Duration::days(14),
            info: Duration::days(7),
            debug: Duration::days(1),
            interop_events: Duration::days(30),
            health_checks: Duration::days(30),
            delivered_messages: Duration::days(7),
            finished_commands: Duration::days(90),
            rollups: Duration::days(400),
            error_occurrences: Duration::days(30),
            platform_logs: LogRetention::default(),
        }
    }
}

impl RetentionConfig {
    /// The severities of telemetry events, each with how long it is kept.
    fn severities(&self) -> [(&'static str, Duration); 5] {
        [
            ("critical", self.error),
            ("error", self.error),
            ("warning", self.warn),
            ("info", self.info),
            ("debug", self.debug),
        ]
    }

    /// Refuses a configuration under which the rollups would go before the raw events they
    /// summarize.
    pub fn check(&self) -> Result<(), String> {
        let longest = self.severities().into_iter().map(|(_, kept)| kept).max();
        if longest.is_some_and(|longest| self.rollups < longest) {
            return Err("rollups must be kept at least as long as the longest-kept events".into());
        }
        Ok(())
    }
}

/// What one run removed: rows per table, and the partitions dropped whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rows: BTreeMap<&'static str, u64>,
    pub partitions_dropped: Vec<String>,
}

/// Months created ahead of the current one.
const MONTHS_AHEAD: i64 = 2;

/// The first instant of the month after the one `name` (`TABLE_yYYYYmMM`) holds.
fn partition_end(table: &str, name: &str) -> Option<DateTime<Utc>> {
    let month = name.strip_prefix(table)?.strip_prefix("_y")?;
    let (year, month) = month.split_once('m')?;
    let start = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
    let end = start.checked_add_months(chrono::Months::new(1))?;
    Some(Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0)?))
}

/// How long ended console sessions and old failed sign-ins are kept.
const CONSOLE_KEPT: Duration = Duration::days(1);

impl Store {
    /// Removes what `config` no longer keeps at `now`.
    pub async fn prune(
        &self,
        config: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        if let Backend::Postgres(pool) = &self.backend {
            let longest = config.severities().into_iter().map(|(_, kept)| kept).max();
            // The tables partitioned by month, each with the longest any of its rows is kept.
            for (table, kept) in [
                (
                    "plugin_telemetry_events",
                    longest.expect("severities are listed"),
                ),
                ("health_check_history", config.health_checks),
                ("platform_logs", config.platform_logs.longest()),
            ] {
                self.prepare_months(table, now).await?;
                let children: Vec<String> = sqlx::query_scalar(
                    "SELECT c.relname::TEXT FROM pg_inherits i \
                     JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
                     WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace \
                     ORDER BY c.relname",
                )
                .bind(table)
                .fetch_all(pool)
                .await?;
                for child in children {
                    if partition_end(table, &child).is_some_and(|end| end <= now - kept) {
                        // Names come from the catalog and match TABLE_yYYYYmMM: no input.
                        sqlx::raw_sql(&format!(
                            "ALTER TABLE {table} DETACH PARTITION {child}; DROP TABLE {child}"
                        ))
                        .execute(pool)
                        .await?;
                        pruned.partitions_dropped.push(child);
                    }
                }
            }
        }
        let mut events = 0;
        for (severity, kept) in config.severities() {
            events += self
                .delete_batched(
                    "plugin_telemetry_events",
                    "id",
                    &format!("severity = '{severity}' AND received_at < $1"),
                    now - kept,
                )
                .await?;
        }
        pruned.rows.insert("plugin_telemetry_events", events);
        let mut entries = 0;
        for (level, kept) in config.platform_logs.levels() {
            entries += self
                .delete_batched(
                    "platform_logs",
                    "id",
                    &format!("level = '{}' AND logged_at < $1", level.as_str()),
                    now - kept,
                )
                .await?;
        }
        pruned.rows.insert("platform_logs", entries);
        let tables = [
            ("plugin_interop_events", "id", "received_at < $1", config.interop_events),
            ("health_check_history", "id", "checked_at < $1", config.health_checks),
            (
                "outbox_messages",
                "id",
                "status = 'delivered' AND delivered_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM plugin_upgrade_notifications n WHERE n.outbox_id = outbox_messages.id)",
                config.delivered_messages,
            ),
            (
                "plugin_commands",
                "id",
                "status <> 'pending' AND issued_at < $1",
                config.finished_commands,
            ),
            (
                "plugin_event_rollups",
                "installation_id, hour",
                "hour < $1",
                config.rollups,
            ),
            (
                "error_occurrences",
                "id",
                "received_at < $1",
                config.error_occurrences,
            ),
            // What the console keeps of a sign-in is in the audit log; a session is
            // useless a day past its end, and failures a day old no longer throttle.
            (
                "console_sessions",
                "id_sha256",
                "expires_at < $1",
                CONSOLE_KEPT,
            ),
            (
                "console_login_failures",
                "subject",
                "last_failed_at < $1",
                CONSOLE_KEPT,
            ),
        ];
        for (table, key, condition, kept) in tables {
            let deleted = self
                .delete_batched(table, key, condition, now - kept)
                .await?;
            pruned.rows.insert(table, deleted);
        }
        Ok(pruned)
    }

    /// Creates the months of `table` from the current one to [`MONTHS_AHEAD`] ahead. A
    /// month the DEFAULT partition already holds rows of cannot be created; it is left
    /// there (its rows go by batched deletes) and said in the log.
    async fn prepare_months(&self, table: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        let start = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single()
            .expect("the first of a month");
        let ahead = start + Duration::days(31 * MONTHS_AHEAD);
        if let Err(error) = sqlx::query("SELECT autoheal_month_partitions($1, $2, $3)")
            .bind(table)
            .bind(start)
            .bind(ahead)
            .execute(pool)
            .await
        {
            tracing::warn!(event = "partition_not_created", table, error = %error,
                "a month could not be created (its rows are in the default partition); retention deletes them by batch");
        }
        Ok(())
    }

    /// Deletes the rows of `table` matching `condition` (with `$1` the cutoff), [`BATCH`]
    /// at a time, each batch its own transaction; the number deleted.
    async fn delete_batched(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN \
             (SELECT {key} FROM {table} WHERE {condition} LIMIT {BATCH})"
        );
        let mut deleted = 0;
        loop {
            let started = std::time::Instant::now();
            let done = on_write_pool!(self, pool => sqlx::query(&sql)
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected());
            deleted += done;
            if done < BATCH as u64 {
                return Ok(deleted);
            }
            // A backlog (the first run over a store that never had retention: millions of
            // rows) is purged at a pace: each batch is followed by a pause of
            // PAUSE_PER_BATCH_TIME times its own length, so the writes the batches share the
            // store with (on SQLite, its one writer) keep most of its time.
            tokio::time::sleep(started.elapsed().mul_f64(PAUSE_PER_BATCH_TIME)).await;
        }
    }
}
