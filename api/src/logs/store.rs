//! The platform log's SQL: a batch inserted in one statement, the merchants' names for
//! their slugs, and the filtered page, newest first by keyset over `(logged_at, id)` (the
//! index `platform_logs_newest`, or a filter's own). Full text: the `tsvector` column with
//! `plainto_tsquery('simple', …)` on PostgreSQL, the FTS5 table `platform_logs_fts` with
//! each word quoted on SQLite (its page found by [`Store::sqlite_search`]); either way only
//! [`super::search_words`] reach the query.

use super::ops_actions::OpsTarget;
use super::{LogCursor, LogEntry, LogError, LogFilter, LogLevel, LogService};
use crate::db::{on_pool, on_tx, Backend, BackendKind, Store, StoreError};
use crate::errors::{record_occurrences, Occurrence, OccurrenceSource};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::SqlitePool;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct LogRow {
    id: Uuid,
    logged_at: DateTime<Utc>,
    level: LogLevel,
    merchant_id: Option<Uuid>,
    merchant_slug: Option<String>,
    agent_id: Option<Uuid>,
    request_id: Option<String>,
    service: LogService,
    action: String,
    message: String,
    data: Json<Value>,
    error_name: Option<String>,
    error_message: Option<String>,
    error_stack: Option<String>,
}

impl From<LogRow> for LogEntry {
    fn from(row: LogRow) -> Self {
        let error = match (row.error_name, row.error_message) {
            (Some(name), Some(message)) => Some(LogError {
                name,
                message,
                stack: row.error_stack,
            }),
            _ => None,
        };
        Self {
            id: row.id,
            timestamp: row.logged_at,
            level: row.level,
            tenant_id: row.merchant_id,
            tenant_slug: row.merchant_slug,
            user_id: row.agent_id,
            request_id: row.request_id,
            service: row.service,
            action: row.action,
            message: row.message,
            data: row.data.0,
            error,
        }
    }
}

const COLUMNS: &str = "id, logged_at, level, merchant_id, merchant_slug, agent_id, request_id, \
     service, action, message, data, error_name, error_message, error_stack";

/// Appends ` AND …` for each part of `$filter` but its words, and for the cursor, to
/// `$query`, a `QueryBuilder` of either backend. A macro, so each backend's builder binds
/// its own types.
macro_rules! push_filter {
    ($query:ident, $filter:expr, $after:expr) => {{
        let filter: &LogFilter = $filter;
        if !filter.levels.is_empty() {
            $query.push(" AND level IN (");
            let mut levels = $query.separated(", ");
            for level in &filter.levels {
                levels.push_bind(level.as_str());
            }
            $query.push(")");
        }
        if let Some(merchant_id) = filter.merchant_id {
            $query.push(" AND merchant_id = ").push_bind(merchant_id);
        }
        if let Some(service) = filter.service {
            $query.push(" AND service = ").push_bind(service.as_str());
        }
        if let Some(action) = &filter.action {
            $query.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(request_id) = &filter.request_id {
            $query
                .push(" AND request_id = ")
                .push_bind(request_id.clone());
        }
        if let Some(since) = filter.since {
            $query.push(" AND logged_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            $query.push(" AND logged_at < ").push_bind(until);
        }
        if let Some(after) = $after {
            let after: LogCursor = after;
            $query
                .push(" AND (logged_at, id) < (")
                .push_bind(after.timestamp)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
    }};
}

/// The FTS5 query of `words`: each one a quoted string, which FTS5 reads as the word,
/// never as syntax; all of them must match.
fn fts5_query(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    quoted.join(" ")
}

/// The rows SQLite's full-text page walks newest first at its first step, and at most at
/// any step (each step walks twice as many as the one before).
const FIRST_WALK_ROWS: i64 = 1024;
const MAX_WALK_ROWS: i64 = 65_536;

impl Store {
    /// Inserts `entries` in one statement, and counts the `error` ones into their error
    /// groups, in one transaction: a group never misses a stored error entry.
    pub(crate) async fn insert_platform_logs(
        &self,
        entries: &[LogEntry],
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        on_tx!(tx, connection, Db => {
            let mut insert = sqlx::QueryBuilder::<Db>::new(format!("INSERT INTO platform_logs ({COLUMNS}) "));
            insert.push_values(entries, |mut row, entry| {
                let error = entry.error.as_ref();
                row.push_bind(entry.id)
                    .push_bind(entry.timestamp)
                    .push_bind(entry.level.as_str())
                    .push_bind(entry.tenant_id)
                    .push_bind(entry.tenant_slug.as_deref())
                    .push_bind(entry.user_id)
                    .push_bind(entry.request_id.as_deref())
                    .push_bind(entry.service.as_str())
                    .push_bind(entry.action.as_str())
                    .push_bind(entry.message.as_str())
                    .push_bind(Json(&entry.data))
                    .push_bind(error.map(|e| e.name.as_str()))
                    .push_bind(error.map(|e| e.message.as_str()))
                    .push_bind(error.and_then(|e| e.stack.as_deref()));
            });
            insert.build().execute(&mut *connection).await?;
        });
        let errors: Vec<Occurrence> = entries
            .iter()
            .filter(|entry| entry.level == LogLevel::Error)
            .map(|entry| Occurrence {
                source: OccurrenceSource::Log,
                source_id: entry.id,
                installation_id: None,
                merchant_id: entry.tenant_id,
                cms: None,
                message: &entry.message,
                stack_trace: entry
                    .error
                    .as_ref()
                    .and_then(|error| error.stack.as_deref()),
                received_at: entry.timestamp,
            })
            .collect();
        record_occurrences(tx, &errors).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The names of the merchants among `ids` (an unknown id is absent).
    pub(crate) async fn merchant_names(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, StoreError> {
        let rows: Vec<(Uuid, String)> = on_pool!(self, pool => {
            let mut query = sqlx::QueryBuilder::new("SELECT id, name FROM merchants WHERE id IN (");
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(")");
            query.build_query_as().fetch_all(pool).await?
        });
        Ok(rows.into_iter().collect())
    }

    /// The merchant `target` belongs to (none when it is unknown).
    pub(crate) async fn merchant_of(&self, target: OpsTarget) -> Result<Option<Uuid>, StoreError> {
        let (sql, id) = match target {
            OpsTarget::Installation(id) => (
                "SELECT merchant_id FROM plugin_installations WHERE id = $1",
                id,
            ),
            OpsTarget::HealingLog(id) => (
                "SELECT merchant_id FROM plugin_auto_healing_logs WHERE id = $1",
                id,
            ),
        };
        let row: Option<(Uuid,)> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(|(merchant_id,)| merchant_id))
    }

    /// Up to `limit` entries `filter` matches, older than `after`, newest first.
    pub(crate) async fn platform_logs(
        &self,
        filter: &LogFilter,
        after: Option<LogCursor>,
        limit: i64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite { reads, .. } if !filter.words.is_empty() => {
                self.sqlite_search(reads, filter, after, limit).await?
            }
            _ => self.page_of_all_matches(filter, after, limit).await?,
        };
        Ok(rows.into_iter().map(LogEntry::from).collect())
    }

    /// The page by one query, the words (if any) as each backend's full-text index reads
    /// them: on SQLite, among the rowids of all the matches FTS5 collects.
    async fn page_of_all_matches(
        &self,
        filter: &LogFilter,
        after: Option<LogCursor>,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let (words_clause, words) = match self.kind() {
            BackendKind::Postgres => (
                " AND message_search @@ plainto_tsquery('simple', ",
                filter.words.join(" "),
            ),
            BackendKind::Sqlite => (
                " AND rowid IN (SELECT rowid FROM platform_logs_fts WHERE platform_logs_fts MATCH ",
                fts5_query(&filter.words),
            ),
        };
        Ok(on_pool!(self, pool => {
            let mut query = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM platform_logs WHERE TRUE"));
            push_filter!(query, filter, after);
            if !filter.words.is_empty() {
                query.push(words_clause).push_bind(words.as_str()).push(")");
            }
            query.push(" ORDER BY logged_at DESC, id DESC LIMIT ").push_bind(limit);
            query.build_query_as().fetch_all(pool).await?
        }))
    }

    /// SQLite's full-text page. Two ways to it, each fast where the other is slow:
    /// - collect the rowids of every match from FTS5, then take the newest of those rows: cheap
    ///   for a rare word, seconds for a common one (millions of rowids collected);
    /// - walk the rows the other filters select newest first, a step of rows at a time, and
    ///   take a step's matches from FTS5 within the step's rowid range: cheap for a common
    ///   word, as a page is found in the first steps, and as rowids grow with time (the writer
    ///   appends), so a step's range holds little more than the step.
    ///
    /// Before each step it counts the matches up to the step's size: when all the matches are
    /// fewer than the rows the step would walk, it collects them instead. So neither way is
    /// taken far past the point where the other is cheaper, whatever the word.
    async fn sqlite_search(
        &self,
        pool: &SqlitePool,
        filter: &LogFilter,
        mut after: Option<LogCursor>,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let words = fts5_query(&filter.words);
        let mut rows: Vec<LogRow> = Vec::new();
        let mut walk = FIRST_WALK_ROWS;
        loop {
            let wanted = limit - rows.len() as i64;
            let (matches,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM (SELECT 1 FROM platform_logs_fts \
                 WHERE platform_logs_fts MATCH ? LIMIT ?)",
            )
            .bind(&words)
            .bind(walk)
            .fetch_one(pool)
            .await?;
            if matches < walk {
                rows.extend(self.page_of_all_matches(filter, after, wanted).await?);
                return Ok(rows);
            }
            // The step: from the cursor down to its `walk`-th row, or to the end.
            let mut last =
                sqlx::QueryBuilder::new("SELECT logged_at, id FROM platform_logs WHERE TRUE");
            push_filter!(last, filter, after);
            last.push(" ORDER BY logged_at DESC, id DESC LIMIT 1 OFFSET ")
                .push_bind(walk - 1);
            let last: Option<(DateTime<Utc>, Uuid)> =
                last.build_query_as().fetch_optional(pool).await?;
            let mut step = sqlx::QueryBuilder::new(
                "WITH step AS MATERIALIZED (SELECT rowid AS log FROM platform_logs WHERE TRUE",
            );
            push_filter!(step, filter, after);
            if let Some((timestamp, id)) = last {
                step.push(" AND (logged_at, id) >= (")
                    .push_bind(timestamp)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            step.push(format!(
                ") SELECT {COLUMNS} FROM platform_logs WHERE rowid IN (SELECT log FROM step) \
                 AND rowid IN (SELECT rowid FROM platform_logs_fts WHERE platform_logs_fts MATCH "
            ))
            .push_bind(&words)
            .push(
                " AND rowid BETWEEN (SELECT min(log) FROM step) AND (SELECT max(log) FROM step)) \
                 ORDER BY logged_at DESC, id DESC LIMIT ",
            )
            .push_bind(wanted);
            rows.extend(step.build_query_as::<LogRow>().fetch_all(pool).await?);
            match last {
                Some((timestamp, id)) if (rows.len() as i64) < limit => {
                    after = Some(LogCursor { timestamp, id });
                    walk = (walk * 2).min(MAX_WALK_ROWS);
                }
                _ => return Ok(rows),
            }
        }
    }
}
