//! The fleet's read model: the Ops reads (the install list, an install's summary, the
//! overview) cost what they return, not what the fleet holds.
//!
//! - Error rates are sums over `plugin_event_rollups` (per install and hour), which the
//!   group-commit writer keeps with the events; a read sums only the installs it returns.
//! - Statuses come from indexed facts compared with `now` in the query (an active block
//!   toggle, the last heartbeat, the version key against its cms's latest), so they are
//!   never stale; the counts come from `fleet_version_counts` (kept by triggers) and the
//!   small sets of blocked and stale installs.
//! - The fleet's error-rate figures (how many installs are above 5 %, the mean) need every
//!   install's rate: they are computed by [`Store::fleet_rates`], which the snapshot
//!   refresher calls, never a request.

use super::{HIGH_ERROR_RATE_PERCENT, STALE_AFTER_HOURS};
use crate::db::{on_pool, Store, StoreError};
use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The window of the per-installation error rate: the hourly buckets that began in the
/// last 24 hours (23 to 24 hours of events; never an event older than 24 hours).
pub const ERROR_RATE_WINDOW_HOURS: i64 = 24;
/// Above this many matching installs, `X-Total-Count` of a filter the counters do not
/// serve is this number, flagged `X-Total-Count-Capped: true`.
pub const COUNT_CAP: i64 = 10_000;

/// Event types that are payment outcomes (an error rate's denominator), and the errors
/// among them (its numerator). The SQL that reads raw events spells the same lists.
pub fn outcome_of(event_type: &str) -> (bool, bool) {
    match event_type {
        "payment_success" => (true, false),
        "payment_failed" | "error" => (true, true),
        _ => (false, false),
    }
}

/// The rollup bucket an event received at `at` is counted in.
pub fn rollup_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::hours(1))
        .expect("an hour divides every timestamp")
}

crate::values::closed_set!(
    /// A status of the seed's, as the list filters by it.
    InstallStatus {
        Active = "active",
        Outdated = "outdated",
        Blocked = "blocked",
        Error = "error",
    }
);

/// Where a page starts: after the row with this last heartbeat and id (the list's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub last_heartbeat: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque to clients: the row's last heartbeat in nanoseconds and its id.
    pub fn encode(&self) -> String {
        let nanos = self
            .last_heartbeat
            .timestamp_nanos_opt()
            .expect("heartbeats fall between 1677 and 2262");
        format!("{nanos}-{}", self.id.simple())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (nanos, id) = text.split_once('-')?;
        Some(Cursor {
            last_heartbeat: Utc.timestamp_nanos(nanos.parse().ok()?),
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct InstallationFilter {
    pub status: Option<InstallStatus>,
    pub cms: Option<String>,
    pub plugin_version: Option<String>,
    pub merchant_id: Option<Uuid>,
    pub environment: Option<String>,
    /// Text the site URL or the merchant's name contains (any case): the console's search.
    pub search: Option<String>,
    pub after: Option<Cursor>,
    pub limit: i64,
    pub offset: i64,
}

impl InstallationFilter {
    /// True when the filter is one the counters answer exactly (status and cms only).
    fn counted(&self) -> bool {
        self.plugin_version.is_none()
            && self.merchant_id.is_none()
            && self.environment.is_none()
            && self.search.is_none()
    }
}

/// How many installations a filter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Total {
    pub count: i64,
    /// True when more match than [`COUNT_CAP`], which `count` then is.
    pub capped: bool,
}

/// One page of the list, and where the next one starts (None on the last page).
#[derive(Clone, Debug)]
pub struct InstallationPage {
    pub rows: Vec<super::InstallationSummary>,
    pub total: Total,
    pub next: Option<Cursor>,
}

/// The installations in each status, exact at `now`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub total: i64,
    /// Neither blocked nor stale (the seed's `active_count`: outdated ones included).
    pub active: i64,
    pub outdated: i64,
    pub blocked: i64,
    /// Stale and not blocked.
    pub error: i64,
    /// Stale, blocked or not.
    pub stale: i64,
}

impl StatusCounts {
    fn of(&self, status: InstallStatus) -> i64 {
        match status {
            InstallStatus::Active => self.active - self.outdated,
            InstallStatus::Outdated => self.outdated,
            InstallStatus::Blocked => self.blocked,
            InstallStatus::Error => self.error,
        }
    }
}

/// The fleet's error-rate figures, as of when they were computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FleetRates {
    /// Installations whose 24 h error rate is above 5 %.
    pub high_error_rate_count: i64,
    /// The mean of every installation's 24 h error rate (0 for one without data).
    pub avg_error_rate: f64,
    pub as_of: DateTime<Utc>,
}

/// A statement and its binds, built clause by clause so that each combination of
/// filters is its own prepared statement (and plan).
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

#[derive(Clone)]
enum Bind {
    Time(DateTime<Utc>),
    Text(String),
    Id(Uuid),
    Int(i64),
}

impl Sql {
    /// The placeholder of a new bind.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }
}

/// Binds every value of `$binds` (a `&[Bind]`) to `$query`, in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Time(value) => query.bind(*value),
                Bind::Text(value) => query.bind(value.clone()),
                Bind::Id(value) => query.bind(*value),
                Bind::Int(value) => query.bind(*value),
            };
        }
        query
    }};
}

/// The ids of the installs under an active, unexpired block, given `now`'s placeholder.
fn blocked_ids(now: &str) -> String {
    format!(
        "SELECT installation_id FROM plugin_ops_toggles \
         WHERE toggle_key = 'block_plugin' AND lifted_at IS NULL \
           AND (expires_at IS NULL OR expires_at > {now}) AND toggle_value = 'true'"
    )
}

/// The columns of a summary over `i` (the install), `m` (its merchant), `v` (its cms's
/// latest release) and `e` (its rollups in the window). The status CASE spells the seed's
/// precedence: blocked, then error (stale), then outdated, then active.
fn summary_columns(now: &str, stale_before: &str, since: &str) -> String {
    format!(
        "i.id, i.merchant_id, m.name AS merchant_name, m.email AS merchant_email, i.cms, \
         i.site_url, i.plugin_version, v.version AS latest_version, i.environment, \
         i.last_heartbeat, \
         CASE WHEN i.id IN ({blocked}) THEN 'blocked' \
              WHEN i.last_heartbeat < {stale_before} THEN 'error' \
              WHEN v.version_key IS NOT NULL AND i.version_key < v.version_key THEN 'outdated' \
              ELSE 'active' END AS status, \
         COALESCE(e.errors, 0) AS errors_24h, \
         CASE WHEN COALESCE(e.outcomes, 0) > 0 THEN CAST(e.errors AS DOUBLE PRECISION) * 100.0 / e.outcomes \
              WHEN i.last_heartbeat >= {since} THEN \
                CASE WHEN i.reported_error_rate > 100.0 THEN 100.0 ELSE i.reported_error_rate END \
              ELSE 0.0 END AS error_rate, \
         CASE WHEN COALESCE(e.outcomes, 0) > 0 THEN 'events' \
              WHEN i.last_heartbeat >= {since} THEN 'heartbeat' ELSE 'none' END AS error_rate_source",
        blocked = blocked_ids(now),
    )
}

/// The condition that `i` (joined with `v`, its cms's latest) has `status`.
fn status_condition(status: InstallStatus, blocked: &str, stale_before: &str) -> String {
    match status {
        // Driven from the (few) blocks: see `page_sql`.
        InstallStatus::Blocked => "1 = 1".to_owned(),
        InstallStatus::Error => {
            format!("i.last_heartbeat < {stale_before} AND i.id NOT IN ({blocked})")
        }
        InstallStatus::Outdated => format!(
            "i.last_heartbeat >= {stale_before} AND i.version_key < v.version_key \
             AND i.id NOT IN ({blocked})"
        ),
        InstallStatus::Active => format!(
            "i.last_heartbeat >= {stale_before} \
             AND (v.version_key IS NULL OR i.version_key >= v.version_key) \
             AND i.id NOT IN ({blocked})"
        ),
    }
}

/// `FROM … WHERE …` of the installs matching `filter` (without its cursor and paging).
fn matching(sql: &mut Sql, filter: &InstallationFilter, now: DateTime<Utc>) -> String {
    let now_at = sql.bind(Bind::Time(now));
    let stale_before = sql.bind(Bind::Time(now - Duration::hours(STALE_AFTER_HOURS)));
    let blocked = blocked_ids(&now_at);
    let mut from = String::from("FROM ");
    if filter.status == Some(InstallStatus::Blocked) {
        // The blocked installs are few: start from them rather than test every install.
        from.push_str(&format!(
            "({blocked}) b JOIN plugin_installations i ON i.id = b.installation_id "
        ));
    } else {
        from.push_str("plugin_installations i ");
    }
    // Only the conditions of outdated and active compare with the latest release: any other
    // page walks the heartbeat index alone (a LEFT JOIN per row cost SQLite 200 ms at an
    // offset of 90,000).
    if matches!(
        filter.status,
        Some(InstallStatus::Outdated | InstallStatus::Active)
    ) {
        from.push_str("LEFT JOIN plugin_versions_registry v ON v.cms = i.cms AND v.is_latest ");
    }
    from.push_str("WHERE ");
    from.push_str(&match filter.status {
        Some(status) => status_condition(status, &blocked, &stale_before),
        None => "1 = 1".to_owned(),
    });
    let equal = |sql: &mut Sql, from: &mut String, column: &str, value: Option<Bind>| {
        if let Some(value) = value {
            let placeholder = sql.bind(value);
            from.push_str(&format!(" AND i.{column} = {placeholder}"));
        }
    };
    if let Some(cms) = &filter.cms {
        // Tested in the heartbeat index, which carries the cms, as the page walks it: `|| ''`
        // keeps SQLite from reading every install of the cms by the cms index and sorting
        // them (80 ms for 40,000 installs).
        let placeholder = sql.bind(Bind::Text(cms.clone()));
        from.push_str(&format!(" AND i.cms || '' = {placeholder}"));
    }
    equal(
        sql,
        &mut from,
        "plugin_version",
        filter.plugin_version.clone().map(Bind::Text),
    );
    equal(
        sql,
        &mut from,
        "merchant_id",
        filter.merchant_id.map(Bind::Id),
    );
    equal(
        sql,
        &mut from,
        "environment",
        filter.environment.clone().map(Bind::Text),
    );
    if let Some(search) = &filter.search {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = sql.bind(Bind::Text(format!("%{escaped}%")));
        from.push_str(&format!(
            " AND (LOWER(i.site_url) LIKE {pattern} ESCAPE '\\' OR i.merchant_id IN \
             (SELECT m.id FROM merchants m WHERE LOWER(m.name) LIKE {pattern} ESCAPE '\\'))"
        ));
    }
    from
}

/// The summaries of the installs the `page` CTE selects (columns `id`, `last_heartbeat`), in
/// list order. Binds $1 now, $2 stale-before and $3 the window's start are the first three
/// of `sql`.
fn summaries_of_page(sql: &mut Sql, page: &str) {
    let columns = summary_columns("$1", "$2", "$3");
    // CROSS JOIN keeps the page the outer loop on SQLite, which otherwise walked every
    // install in list order and probed the page for each (0.7 s at 200,000 installs).
    sql.push(&format!(
        "WITH page AS ({page}) \
         SELECT {columns} \
         FROM page p CROSS JOIN plugin_installations i \
         JOIN merchants m ON m.id = i.merchant_id \
         LEFT JOIN plugin_versions_registry v ON v.cms = i.cms AND v.is_latest \
         LEFT JOIN (SELECT r.installation_id, CAST(SUM(r.errors) AS BIGINT) AS errors, \
                           CAST(SUM(r.outcomes) AS BIGINT) AS outcomes \
                    FROM plugin_event_rollups r \
                    WHERE r.installation_id IN (SELECT id FROM page) AND r.hour > $3 \
                    GROUP BY r.installation_id) e ON e.installation_id = i.id \
         WHERE i.id = p.id \
         ORDER BY p.last_heartbeat DESC, p.id DESC"
    ));
}

/// A new statement whose first binds are $1 now, $2 stale-before, $3 the window's start.
fn summary_sql(now: DateTime<Utc>) -> Sql {
    let mut sql = Sql::default();
    sql.bind(Bind::Time(now));
    sql.bind(Bind::Time(now - Duration::hours(STALE_AFTER_HOURS)));
    sql.bind(Bind::Time(now - Duration::hours(ERROR_RATE_WINDOW_HOURS)));
    sql
}

/// Error rates are percentages shown with two decimals.
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Store {
    /// One page of installations, newest heartbeat first, with the number matching the
    /// filter and the cursor of the next page.
    pub async fn list_installations(
        &self,
        filter: &InstallationFilter,
        now: DateTime<Utc>,
    ) -> Result<InstallationPage, StoreError> {
        let mut sql = summary_sql(now);
        let mut page = format!(
            "SELECT i.id, i.last_heartbeat {}",
            matching(&mut sql, filter, now)
        );
        if let Some(after) = filter.after {
            let at = sql.bind(Bind::Time(after.last_heartbeat));
            let id = sql.bind(Bind::Id(after.id));
            // The first term bounds the index range; the second skips what the page before
            // already showed.
            page.push_str(&format!(
                " AND i.last_heartbeat <= {at} AND (i.last_heartbeat < {at} OR i.id < {id})"
            ));
        }
        // One more row than asked says whether a next page exists.
        let limit = sql.bind(Bind::Int(filter.limit + 1));
        let offset = sql.bind(Bind::Int(filter.offset));
        page.push_str(&format!(
            " ORDER BY i.last_heartbeat DESC, i.id DESC LIMIT {limit} OFFSET {offset}"
        ));
        summaries_of_page(&mut sql, &page);
        let mut rows = on_pool!(self, pool => bind_all!(
            sqlx::query_as::<_, super::InstallationSummary>(&sql.text),
            &sql.binds
        )
        .fetch_all(pool)
        .await?);
        let next = if rows.len() as i64 > filter.limit {
            rows.truncate(filter.limit as usize);
            rows.last().map(|row| Cursor {
                last_heartbeat: row.last_heartbeat,
                id: row.id,
            })
        } else {
            None
        };
        for row in &mut rows {
            row.error_rate = round2(row.error_rate);
        }
        let total = if filter.search.is_some() {
            // A search tests every install it cannot rule out; counting its matches would
            // read them all a second time. Its total is what the pages so far show, capped
            // while a next page exists.
            Total {
                count: filter.offset + rows.len() as i64,
                capped: next.is_some(),
            }
        } else {
            self.count_installations(filter, now).await?
        };
        Ok(InstallationPage { rows, total, next })
    }

    /// How many installs match `filter`: exact from the counters for status and cms, else
    /// counted up to [`COUNT_CAP`].
    async fn count_installations(
        &self,
        filter: &InstallationFilter,
        now: DateTime<Utc>,
    ) -> Result<Total, StoreError> {
        if filter.counted() {
            let count = match filter.status {
                Some(status) => self
                    .status_counts(filter.cms.as_deref(), now)
                    .await?
                    .of(status),
                // Every install (of a cms): the counters alone, not the stale and blocked sets.
                None => self
                    .cms_breakdown()
                    .await?
                    .iter()
                    .filter(|row| filter.cms.as_deref().is_none_or(|cms| row.cms == cms))
                    .map(|row| row.count)
                    .sum(),
            };
            return Ok(Total {
                count,
                capped: false,
            });
        }
        let mut sql = Sql::default();
        let from = matching(&mut sql, filter, now);
        let cap = sql.bind(Bind::Int(COUNT_CAP + 1));
        sql.push(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 AS one {from} LIMIT {cap}) capped"
        ));
        let count: i64 = on_pool!(self, pool => bind_all!(sqlx::query_scalar(&sql.text), &sql.binds)
            .fetch_one(pool)
            .await?);
        Ok(Total {
            count: count.min(COUNT_CAP),
            capped: count > COUNT_CAP,
        })
    }

    /// One install's summary, read from that install's rows only.
    pub(crate) async fn installation_summary(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<super::InstallationSummary>, StoreError> {
        let mut sql = summary_sql(now);
        let id = sql.bind(Bind::Id(id));
        summaries_of_page(
            &mut sql,
            &format!("SELECT id, last_heartbeat FROM plugin_installations WHERE id = {id}"),
        );
        let summary = on_pool!(self, pool => bind_all!(
            sqlx::query_as::<_, super::InstallationSummary>(&sql.text),
            &sql.binds
        )
        .fetch_optional(pool)
        .await?);
        Ok(summary.map(|mut summary| {
            summary.error_rate = round2(summary.error_rate);
            summary
        }))
    }

    /// The installs in each status at `now` (of `cms` when given), from the version
    /// counters and the sets of blocked and of stale installs.
    pub async fn status_counts(
        &self,
        cms: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<StatusCounts, StoreError> {
        let mut sql = Sql::default();
        let now_at = sql.bind(Bind::Time(now));
        let stale_before = sql.bind(Bind::Time(now - Duration::hours(STALE_AFTER_HOURS)));
        let (of_cms, stale_of_cms, counter_of_cms) = match cms {
            Some(cms) => {
                let cms = sql.bind(Bind::Text(cms.to_owned()));
                (
                    format!(" AND i.cms = {cms}"),
                    format!(" AND i.cms || '' = {cms}"),
                    format!(" AND c.cms = {cms}"),
                )
            }
            None => (String::new(), String::new(), String::new()),
        };
        let blocked = blocked_ids(&now_at);
        // Each of the two small sets is read once, then counted against the latest releases:
        // `stale` per (cms, version key) from the heartbeat index alone, which carries both
        // (grouping on `i.cms || ''`, and testing the cms so, keeps SQLite from walking every
        // install by the cms index for its order), and `blocked` one row per active block.
        // Both are MATERIALIZED: SQLite otherwise repeated the block lookups per use.
        sql.push(&format!(
            "WITH stale AS MATERIALIZED ( \
               SELECT i.cms || '' AS cms, i.version_key, COUNT(*) AS installs \
               FROM plugin_installations i \
               WHERE i.last_heartbeat < {stale_before}{stale_of_cms} GROUP BY 1, 2), \
             blocked AS MATERIALIZED ( \
               SELECT i.cms, i.version_key, i.last_heartbeat < {stale_before} AS stale \
               FROM ({blocked}) b CROSS JOIN plugin_installations i \
               WHERE i.id = b.installation_id{of_cms}) \
             SELECT \
               (SELECT CAST(COALESCE(SUM(c.installs), 0) AS BIGINT) FROM fleet_version_counts c \
                WHERE 1 = 1{counter_of_cms}) AS total, \
               (SELECT CAST(COALESCE(SUM(c.installs), 0) AS BIGINT) FROM fleet_version_counts c \
                JOIN plugin_versions_registry v ON v.cms = c.cms AND v.is_latest \
                WHERE c.version_key < v.version_key{counter_of_cms}) AS below_latest, \
               (SELECT CAST(COALESCE(SUM(s.installs), 0) AS BIGINT) FROM stale s) AS stale, \
               (SELECT CAST(COALESCE(SUM(s.installs), 0) AS BIGINT) FROM stale s \
                JOIN plugin_versions_registry v ON v.cms = s.cms AND v.is_latest \
                WHERE s.version_key < v.version_key) AS stale_below_latest, \
               (SELECT COUNT(*) FROM blocked) AS blocked, \
               (SELECT COUNT(*) FROM blocked b WHERE b.stale) AS blocked_stale, \
               (SELECT COUNT(*) FROM blocked b \
                JOIN plugin_versions_registry v ON v.cms = b.cms AND v.is_latest \
                WHERE NOT b.stale AND b.version_key < v.version_key) AS blocked_fresh_below_latest"
        ));
        type Row = (i64, i64, i64, i64, i64, i64, i64);
        let (total, below_latest, stale, stale_below, blocked, blocked_stale, blocked_fresh_below): Row =
            on_pool!(self, pool => bind_all!(sqlx::query_as(&sql.text), &sql.binds)
                .fetch_one(pool)
                .await?);
        let error = stale - blocked_stale;
        Ok(StatusCounts {
            total,
            active: total - blocked - error,
            outdated: below_latest - stale_below - blocked_fresh_below,
            blocked,
            error,
            stale,
        })
    }

    /// Installs per cms (those with any), most first.
    pub async fn cms_breakdown(&self) -> Result<Vec<super::CmsCount>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, super::CmsCount>(
            "SELECT cms, CAST(SUM(installs) AS BIGINT) AS count FROM fleet_version_counts \
             GROUP BY cms HAVING SUM(installs) > 0 ORDER BY count DESC, cms",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Every install's 24 h error rate, aggregated: a pass over the window's rollups and
    /// the installs that report a rate. The snapshot refresher calls it, not a request.
    pub async fn fleet_rates(&self, now: DateTime<Utc>) -> Result<FleetRates, StoreError> {
        let since = now - Duration::hours(ERROR_RATE_WINDOW_HOURS);
        let (high, sum): (i64, f64) = on_pool!(self, pool => sqlx::query_as(
            // The window's rollups are read by the hour index, which carries their counts:
            // MATERIALIZED keeps SQLite from walking every rollup ever kept in install order
            // to group them without a sort (1.3 s for 10 million rollups).
            "WITH window_rollups AS MATERIALIZED ( \
               SELECT r.installation_id, r.outcomes, r.errors FROM plugin_event_rollups r \
               WHERE r.hour > $1) \
             SELECT COALESCE(SUM(CASE WHEN s.rate > $2 THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(s.rate), 0.0) \
             FROM (SELECT CAST(SUM(w.errors) AS DOUBLE PRECISION) * 100.0 / SUM(w.outcomes) AS rate \
                   FROM window_rollups w \
                   GROUP BY w.installation_id HAVING SUM(w.outcomes) > 0 \
                   UNION ALL \
                   SELECT CASE WHEN i.reported_error_rate > 100.0 THEN 100.0 ELSE i.reported_error_rate END \
                   FROM plugin_installations i \
                   WHERE i.reported_error_rate > 0 AND i.last_heartbeat >= $1 \
                     AND NOT EXISTS (SELECT 1 FROM plugin_event_rollups r \
                                     WHERE r.installation_id = i.id AND r.hour > $1 AND r.outcomes > 0)) s",
        )
        .bind(since)
        .bind(HIGH_ERROR_RATE_PERCENT)
        .fetch_one(pool)
        .await?);
        let total: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(installs), 0) AS BIGINT) FROM fleet_version_counts",
        )
        .fetch_one(pool)
        .await?);
        Ok(FleetRates {
            high_error_rate_count: high,
            avg_error_rate: if total == 0 {
                0.0
            } else {
                round2(sum / total as f64)
            },
            as_of: now,
        })
    }
}

/// An install's figures for one day (`plugin_health_metrics`, written by the daily job).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InstallDay {
    pub day: chrono::NaiveDate,
    pub plugin_version: String,
    pub status: String,
    pub heartbeats: i64,
    pub events: i64,
    pub errors: i64,
    pub error_rate: f64,
}

/// The fleet's figures for one day (`fleet_daily_metrics`, written by the daily job):
/// statuses as that day's run counted them (`active` as the overview's `active_count`),
/// the day's events, failed outcomes and error rate (failed ÷ outcomes, fleet-wide), interop
/// events, and the patches applied and failed or rolled back that day.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FleetDay {
    pub day: chrono::NaiveDate,
    pub installs: i64,
    pub active: i64,
    pub outdated: i64,
    pub blocked: i64,
    pub error: i64,
    pub events: i64,
    pub errors: i64,
    pub error_rate: f64,
    pub interop_events: i64,
    pub patches_applied: i64,
    pub patches_failed: i64,
}

impl Store {
    /// An install's daily figures from `since` on, oldest first.
    pub async fn install_days(
        &self,
        id: Uuid,
        since: chrono::NaiveDate,
    ) -> Result<Vec<InstallDay>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, InstallDay>(
            "SELECT day, plugin_version, status, heartbeats, events, errors, error_rate \
             FROM plugin_health_metrics WHERE installation_id = $1 AND day >= $2 ORDER BY day",
        )
        .bind(id)
        .bind(since)
        .fetch_all(pool)
        .await?))
    }

    /// The fleet's daily figures from `since` on, oldest first.
    pub async fn fleet_days(&self, since: chrono::NaiveDate) -> Result<Vec<FleetDay>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, FleetDay>(
            "SELECT day, installs, active, outdated, blocked, error, events, errors, error_rate, \
                    interop_events, patches_applied, patches_failed \
             FROM fleet_daily_metrics WHERE day >= $1 ORDER BY day",
        )
        .bind(since)
        .fetch_all(pool)
        .await?))
    }
}
