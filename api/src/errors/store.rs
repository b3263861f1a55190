//! The error groups' SQL: grouping occurrences in the transaction of the event they come
//! from, the Ops reads (list, detail), the status change, and the reads the detector and
//! retention use.

use super::ErrorStatus;
use crate::db::{insert_audit, on_pool, on_tx, AuditContext, BackendKind, Store, StoreError, Tx};
use chrono::{DateTime, NaiveDateTime, Utc};
use engine::fingerprint::Fingerprint;
use serde::Serialize;
use serde_json::json;
use sqlx::types::Json;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// Characters of an occurrence's message that are stored (a telemetry event's message is at
/// most this long; an interop payload or a log entry may say more). The fingerprint bounds
/// what it examines itself.
const MAX_MESSAGE_CHARS: usize = 8 * 1024;
/// Characters of a group's title: the first line of its first message.
const MAX_TITLE_CHARS: usize = 200;
/// Rows one multi-row statement writes at most: 9 binds each stays far below either
/// backend's limit on binds, whoever calls with how many occurrences.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Where an occurrence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OccurrenceSource {
    /// A telemetry event (`error`, `payment_failed`); `source_id` is its id.
    Telemetry,
    /// An interop event normalized to `plugin.error`; `source_id` is its row's id.
    Interop,
    /// A platform log entry of level error; `source_id` is its id.
    Log,
}

impl OccurrenceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Interop => "interop",
            Self::Log => "log",
        }
    }
}

/// One error to group, borrowed from the event being written with it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Occurrence<'a> {
    pub source: OccurrenceSource,
    pub source_id: Uuid,
    pub installation_id: Option<Uuid>,
    pub merchant_id: Option<Uuid>,
    pub cms: Option<&'a str>,
    pub message: &'a str,
    pub stack_trace: Option<&'a str>,
    pub received_at: DateTime<Utc>,
}

/// The first `max` characters of `text`.
fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A group's title: the first line of `message`, at most [`MAX_TITLE_CHARS`] (an ellipsis
/// says when it was cut).
fn title_of(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    let title = truncated(line, MAX_TITLE_CHARS - 1);
    if title.len() < line.len() {
        format!("{title}…")
    } else {
        title.to_owned()
    }
}

/// Groups `occurrences` and records them on `tx`, inside the transaction of the events they
/// come from: each group is created or counted (a `resolved` one that recurs is
/// `unresolved` again; an `ignored` one stays ignored), each affected install and merchant
/// counted once, each occurrence stored. A handful of statements for the whole batch, their
/// rows in key order, so concurrent batches lock shared rows in the same order.
pub(crate) async fn record_occurrences(
    tx: &mut Tx<'_>,
    occurrences: &[Occurrence<'_>],
) -> Result<(), sqlx::Error> {
    if occurrences.is_empty() {
        return Ok(());
    }
    struct Batch {
        fingerprint: Fingerprint,
        title: String,
        events: i64,
        first_seen: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        /// Indexes of its occurrences.
        members: Vec<usize>,
    }
    let mut groups: BTreeMap<(u32, String), Batch> = BTreeMap::new();
    let mut messages = Vec::with_capacity(occurrences.len());
    for (index, occurrence) in occurrences.iter().enumerate() {
        messages.push(truncated(occurrence.message, MAX_MESSAGE_CHARS));
        let fingerprint =
            engine::fingerprint::fingerprint(occurrence.message, occurrence.stack_trace);
        let at = occurrence.received_at;
        let batch = groups
            .entry((fingerprint.version, fingerprint.hash.clone()))
            .or_insert_with(|| Batch {
                title: title_of(occurrence.message),
                fingerprint,
                events: 0,
                first_seen: at,
                last_seen: at,
                members: Vec::new(),
            });
        batch.events += 1;
        batch.first_seen = batch.first_seen.min(at);
        batch.last_seen = batch.last_seen.max(at);
        batch.members.push(index);
    }
    let greatest = match tx.kind() {
        BackendKind::Sqlite => "MAX",
        BackendKind::Postgres => "GREATEST",
    };

    // The groups, created or counted; a recurrence reopens a resolved one.
    let rows: Vec<(&(u32, String), &Batch)> = groups.iter().collect();
    let upsert_groups = format!(
        " ON CONFLICT (fingerprint_version, fingerprint) DO UPDATE SET \
           events = error_groups.events + excluded.events, \
           last_seen = {greatest}(error_groups.last_seen, excluded.last_seen), \
           status = CASE WHEN error_groups.status = 'resolved' THEN 'unresolved' ELSE error_groups.status END, \
           status_changed_at = CASE WHEN error_groups.status = 'resolved' THEN excluded.last_seen \
                                    ELSE error_groups.status_changed_at END, \
           status_changed_by = CASE WHEN error_groups.status = 'resolved' THEN NULL \
                                    ELSE error_groups.status_changed_by END \
         RETURNING id, fingerprint_version, fingerprint"
    );
    let mut group_ids: HashMap<(u32, String), Uuid> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let returned: Vec<(Uuid, i32, String)> = on_tx!(tx, connection, Db => {
            let mut upsert = QueryBuilder::<Db>::new(
                "INSERT INTO error_groups (id, fingerprint_version, fingerprint, title, pattern, \
                   frames, first_seen, last_seen, events) ",
            );
            upsert.push_values(chunk, |mut row, (_, batch)| {
                row.push_bind(Uuid::now_v7())
                    .push_bind(batch.fingerprint.version as i32)
                    .push_bind(&batch.fingerprint.hash)
                    .push_bind(&batch.title)
                    .push_bind(&batch.fingerprint.pattern)
                    .push_bind(Json(&batch.fingerprint.frames))
                    .push_bind(batch.first_seen)
                    .push_bind(batch.last_seen)
                    .push_bind(batch.events);
            });
            upsert.push(&upsert_groups);
            upsert.build_query_as().fetch_all(&mut *connection).await
        })?;
        for (id, version, hash) in returned {
            group_ids.insert((version as u32, hash), id);
        }
    }

    // The affected installs and merchants, each counted once per group: an install row is
    // new when its count is only this batch's (a stored one has at least one event more),
    // a merchant row when the insert returns it.
    #[derive(Clone, Copy)]
    struct Install {
        merchant_id: Uuid,
        events: i64,
        first_seen: DateTime<Utc>,
        last_seen: DateTime<Utc>,
    }
    let mut installs: BTreeMap<(Uuid, Uuid), Install> = BTreeMap::new();
    let mut merchants: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
    for (key, batch) in &groups {
        let group_id = group_ids[key];
        for &index in &batch.members {
            let occurrence = &occurrences[index];
            let Some(merchant_id) = occurrence.merchant_id else {
                continue;
            };
            merchants.insert((group_id, merchant_id));
            let Some(installation_id) = occurrence.installation_id else {
                continue;
            };
            let at = occurrence.received_at;
            let install = installs
                .entry((group_id, installation_id))
                .or_insert(Install {
                    merchant_id,
                    events: 0,
                    first_seen: at,
                    last_seen: at,
                });
            install.events += 1;
            install.first_seen = install.first_seen.min(at);
            install.last_seen = install.last_seen.max(at);
        }
    }
    let mut new_counts: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let install_rows: Vec<(&(Uuid, Uuid), &Install)> = installs.iter().collect();
    let upsert_installs = format!(
        " ON CONFLICT (group_id, installation_id) DO UPDATE SET \
           events = error_group_installs.events + excluded.events, \
           last_seen = {greatest}(error_group_installs.last_seen, excluded.last_seen) \
         RETURNING group_id, installation_id, events"
    );
    for chunk in install_rows.chunks(ROWS_PER_STATEMENT) {
        let returned: Vec<(Uuid, Uuid, i64)> = on_tx!(tx, connection, Db => {
            let mut upsert = QueryBuilder::<Db>::new(
                "INSERT INTO error_group_installs (group_id, installation_id, merchant_id, events, \
                   first_seen, last_seen) ",
            );
            upsert.push_values(chunk, |mut row, ((group_id, installation_id), install)| {
                row.push_bind(*group_id)
                    .push_bind(*installation_id)
                    .push_bind(install.merchant_id)
                    .push_bind(install.events)
                    .push_bind(install.first_seen)
                    .push_bind(install.last_seen);
            });
            upsert.push(&upsert_installs);
            upsert.build_query_as().fetch_all(&mut *connection).await
        })?;
        for (group_id, installation_id, events) in returned {
            if installs[&(group_id, installation_id)].events == events {
                new_counts.entry(group_id).or_default().0 += 1;
            }
        }
    }
    let merchant_rows: Vec<&(Uuid, Uuid)> = merchants.iter().collect();
    for chunk in merchant_rows.chunks(ROWS_PER_STATEMENT) {
        let returned: Vec<Uuid> = on_tx!(tx, connection, Db => {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO error_group_merchants (group_id, merchant_id) ",
            );
            insert.push_values(chunk, |mut row, (group_id, merchant_id)| {
                row.push_bind(*group_id).push_bind(*merchant_id);
            });
            insert.push(" ON CONFLICT (group_id, merchant_id) DO NOTHING RETURNING group_id");
            insert.build_query_scalar().fetch_all(&mut *connection).await
        })?;
        for group_id in returned {
            new_counts.entry(group_id).or_default().1 += 1;
        }
    }
    // The groups' rows are already locked by their upsert above: this adds no lock.
    let count_rows: Vec<(&Uuid, &(i64, i64))> = new_counts.iter().collect();
    for chunk in count_rows.chunks(ROWS_PER_STATEMENT) {
        on_tx!(tx, connection, Db => {
            let mut update =
                QueryBuilder::<Db>::new("WITH new_counts (id, installs, merchants) AS (");
            update.push_values(chunk, |mut row, (group_id, (installs, merchants))| {
                row.push_bind(**group_id)
                    .push_bind(*installs)
                    .push_bind(*merchants);
            });
            update.push(
                ") UPDATE error_groups SET installs = error_groups.installs + new_counts.installs, \
                   merchants = error_groups.merchants + new_counts.merchants \
                 FROM new_counts WHERE error_groups.id = new_counts.id",
            );
            update.build().execute(&mut *connection).await.map(|done| done.rows_affected())
        })?;
    }

    // Every occurrence, in arrival order, with its group.
    let mut group_of = vec![Uuid::nil(); occurrences.len()];
    for (key, batch) in &groups {
        for &index in &batch.members {
            group_of[index] = group_ids[key];
        }
    }
    let stored: Vec<(usize, Uuid)> = group_of.into_iter().enumerate().collect();
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        on_tx!(tx, connection, Db => {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO error_occurrences (id, group_id, source, source_id, installation_id, \
                   merchant_id, cms, message, received_at) ",
            );
            insert.push_values(chunk, |mut row, (index, group_id)| {
                let occurrence = &occurrences[*index];
                row.push_bind(Uuid::now_v7())
                    .push_bind(*group_id)
                    .push_bind(occurrence.source.as_str())
                    .push_bind(occurrence.source_id)
                    .push_bind(occurrence.installation_id)
                    .push_bind(occurrence.merchant_id)
                    .push_bind(occurrence.cms)
                    .push_bind(messages[*index])
                    .push_bind(occurrence.received_at);
            });
            insert.build().execute(&mut *connection).await.map(|done| done.rows_affected())
        })?;
    }
    Ok(())
}

/// An error group as Ops read it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ErrorGroup {
    pub id: Uuid,
    /// The first line of the group's first message (at most 200 characters).
    pub title: String,
    /// Hex SHA-256 of the parameterized message and the in-app frames.
    pub fingerprint: String,
    /// The fingerprinting algorithm's version: a new version makes new groups.
    pub fingerprint_version: i32,
    /// The message parameterized (numbers, ids, emails, … as placeholders).
    pub pattern: String,
    /// The in-app stack frames (module and function) the fingerprint holds.
    #[schema(value_type = Vec<String>)]
    pub frames: Json<Vec<String>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Occurrences, all time (retention does not lower it).
    pub events: i64,
    /// Installs that reported it.
    pub installs: i64,
    /// Merchants that reported it.
    pub merchants: i64,
    /// `unresolved`, `resolved` or `ignored`.
    pub status: String,
    pub status_changed_at: Option<DateTime<Utc>>,
    /// The Ops agent who set the status; null when the server reopened a resolved group
    /// on its recurrence (or the status was never changed).
    pub status_changed_by: Option<Uuid>,
    /// The healing rule in force that matches the title on some platform, if one does.
    #[sqlx(skip)]
    pub rule: Option<String>,
}

const GROUP_COLUMNS: &str = "id, title, fingerprint, fingerprint_version, pattern, frames, \
     first_seen, last_seen, events, installs, merchants, status, status_changed_at, status_changed_by";

/// One grouped event.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ErrorOccurrence {
    pub id: Uuid,
    pub group_id: Uuid,
    /// `telemetry`, `interop` or `log`.
    pub source: String,
    /// The telemetry event, interop event or log entry it is.
    pub source_id: Uuid,
    pub installation_id: Option<Uuid>,
    pub merchant_id: Option<Uuid>,
    pub cms: Option<String>,
    /// The real message (at most 8 KiB), as received (telemetry is redacted before).
    pub message: String,
    pub received_at: DateTime<Utc>,
}

const OCCURRENCE_COLUMNS: &str = "id, group_id, source, source_id, installation_id, merchant_id, \
     cms, message, received_at";

/// An install among those a group affected, with its own counts.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GroupInstall {
    pub installation_id: Uuid,
    pub merchant_id: Uuid,
    pub events: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Occurrences of one group received in one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HourCount {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    pub events: i64,
}

/// Many occurrences of one group on one install in a window: what the detector acts on.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ErrorBurst {
    pub group_id: Uuid,
    pub fingerprint: String,
    pub title: String,
    pub installation_id: Uuid,
    /// The install's merchant and platform.
    pub merchant_id: Uuid,
    pub cms: String,
    /// Occurrences in the window.
    pub events: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// The newest occurrence's real message on that install.
    pub last_message: String,
}

/// What the group list filters by, and where its page starts.
#[derive(Clone, Debug)]
pub struct ErrorGroupFilter {
    pub status: ErrorStatus,
    /// Only groups seen at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Text the title contains, in any case.
    pub title_contains: Option<String>,
    pub after: Option<super::GroupCursor>,
    pub limit: i64,
}

impl Store {
    /// A page of the groups `filter` matches, most recently seen first; one row more than
    /// `filter.limit` when another page follows.
    pub async fn list_error_groups(
        &self,
        filter: &ErrorGroupFilter,
    ) -> Result<Vec<ErrorGroup>, StoreError> {
        let title = filter.title_contains.as_ref().map(|text| {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM error_groups \
             WHERE status = $1 AND ($2 IS NULL OR last_seen >= $2) \
               AND ($3 IS NULL OR LOWER(title) LIKE $3 ESCAPE '\\') \
               AND ($4 IS NULL OR (last_seen, id) < ($4, $5)) \
             ORDER BY last_seen DESC, id DESC LIMIT $6"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ErrorGroup>(&sql)
            .bind(filter.status.as_str())
            .bind(filter.since)
            .bind(title.as_deref())
            .bind(filter.after.map(|cursor| cursor.last_seen))
            .bind(filter.after.map(|cursor| cursor.id))
            .bind(filter.limit + 1)
            .fetch_all(pool)
            .await?))
    }

    pub async fn error_group(&self, id: Uuid) -> Result<Option<ErrorGroup>, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM error_groups WHERE id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ErrorGroup>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?))
    }

    /// The group's `limit` newest occurrences, newest first.
    pub async fn error_group_samples(
        &self,
        group_id: Uuid,
        limit: i64,
    ) -> Result<Vec<ErrorOccurrence>, StoreError> {
        let sql = format!(
            "SELECT {OCCURRENCE_COLUMNS} FROM error_occurrences WHERE group_id = $1 \
             ORDER BY received_at DESC, id DESC LIMIT $2"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ErrorOccurrence>(&sql)
            .bind(group_id)
            .bind(limit)
            .fetch_all(pool)
            .await?),
        )
    }

    /// The group's occurrences per hour since `since` (an hour's start), oldest first;
    /// hours without one are absent.
    pub async fn error_group_hourly(
        &self,
        group_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourCount>, StoreError> {
        // The hour as `YYYY-MM-DDTHH` text on both backends (SQLite holds RFC 3339 text).
        let hour = match self.kind() {
            BackendKind::Sqlite => "substr(received_at, 1, 13)",
            BackendKind::Postgres => {
                "to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
            }
        };
        let sql = format!(
            "SELECT {hour} AS hour, COUNT(*) FROM error_occurrences \
             WHERE group_id = $1 AND received_at >= $2 GROUP BY 1 ORDER BY 1"
        );
        let rows: Vec<(String, i64)> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(group_id)
            .bind(since)
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(|(hour, events)| {
                let start = NaiveDateTime::parse_from_str(&format!("{hour}:00"), "%Y-%m-%dT%H:%M")
                    .map_err(|_| {
                        StoreError::Inconsistent(format!("an occurrence's hour {hour:?}"))
                    })?;
                Ok(HourCount {
                    hour: start.and_utc(),
                    events,
                })
            })
            .collect()
    }

    /// The `limit` installs with the most occurrences of the group.
    pub async fn error_group_top_installs(
        &self,
        group_id: Uuid,
        limit: i64,
    ) -> Result<Vec<GroupInstall>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, GroupInstall>(
            "SELECT installation_id, merchant_id, events, first_seen, last_seen \
             FROM error_group_installs WHERE group_id = $1 \
             ORDER BY events DESC, installation_id LIMIT $2",
        )
        .bind(group_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Sets the group's status, by an Ops agent for `reason`; audited. None when there is no
    /// such group.
    pub async fn set_error_group_status(
        &self,
        id: Uuid,
        status: ErrorStatus,
        reason: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<ErrorGroup>, StoreError> {
        // PostgreSQL: the row is held from the read, so the audit row's `from` is the
        // status this change replaced (SQLite's single writer serializes it anyway).
        let lock = match self.kind() {
            BackendKind::Sqlite => "",
            BackendKind::Postgres => " FOR UPDATE",
        };
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let select = format!("SELECT status FROM error_groups WHERE id = $1{lock}");
        let previous: Option<String> = on_tx!(tx, c => sqlx::query_scalar(&select)
            .bind(id)
            .fetch_optional(c)
            .await)?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        let update = format!(
            "UPDATE error_groups SET status = $1, status_changed_at = $2, status_changed_by = $3 \
             WHERE id = $4 RETURNING {GROUP_COLUMNS}"
        );
        let group = on_tx!(tx, c => sqlx::query_as::<_, ErrorGroup>(&update)
            .bind(status.as_str())
            .bind(now)
            .bind(audit.actor_id)
            .bind(id)
            .fetch_one(c)
            .await)?;
        insert_audit(
            tx,
            audit,
            "error_group.status",
            "error_group",
            Some(id.to_string()),
            json!({
                "from": previous,
                "to": status.as_str(),
                "reason": reason,
                "title": group.title,
            }),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(group))
    }

    /// Per group and install, the occurrences received since `since`, where there are at
    /// least `min_events` and the group is not ignored: most occurrences first, at most
    /// `limit`. Occurrences that name no install are not counted.
    pub async fn error_bursts(
        &self,
        since: DateTime<Utc>,
        min_events: i64,
        limit: i64,
    ) -> Result<Vec<ErrorBurst>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ErrorBurst>(
            "WITH bursts AS ( \
               SELECT group_id, installation_id, COUNT(*) AS events, \
                      MIN(received_at) AS first_at, MAX(received_at) AS last_at \
               FROM error_occurrences \
               WHERE received_at >= $1 AND installation_id IS NOT NULL \
               GROUP BY group_id, installation_id HAVING COUNT(*) >= $2) \
             SELECT b.group_id, g.fingerprint, g.title, b.installation_id, i.merchant_id, i.cms, \
                    b.events, b.first_at, b.last_at, l.message AS last_message \
             FROM bursts b \
             JOIN error_groups g ON g.id = b.group_id AND g.status <> 'ignored' \
             JOIN plugin_installations i ON i.id = b.installation_id \
             JOIN error_occurrences l ON l.id = ( \
               SELECT o.id FROM error_occurrences o \
               WHERE o.group_id = b.group_id AND o.installation_id = b.installation_id \
               ORDER BY o.received_at DESC, o.id DESC LIMIT 1) \
             ORDER BY b.events DESC, b.group_id, b.installation_id LIMIT $3",
        )
        .bind(since)
        .bind(min_events)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// The group's occurrences on the install received since `since`, newest first, at
    /// most `limit`.
    pub async fn error_occurrences_of(
        &self,
        group_id: Uuid,
        installation_id: Uuid,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ErrorOccurrence>, StoreError> {
        let sql = format!(
            "SELECT {OCCURRENCE_COLUMNS} FROM error_occurrences \
             WHERE group_id = $1 AND installation_id = $2 AND installation_id IS NOT NULL \
               AND received_at >= $3 \
             ORDER BY received_at DESC, id DESC LIMIT $4"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ErrorOccurrence>(&sql)
            .bind(group_id)
            .bind(installation_id)
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?),
        )
    }
}
