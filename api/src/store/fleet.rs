//! The fleet: installations and their telemetry, Ops toggles, the version
//! registry and the overview. Status and error rate are derived in SQL at read
//! time from heartbeats, toggles, the registry and events, so they are never
//! stale between monitoring runs.

use super::{insert_audit, on_pool, on_write_pool, AuditContext, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// No heartbeat for this long marks an installation `error` (stale).
pub const STALE_AFTER_HOURS: i64 = 48;
/// The window of the per-installation error rate.
pub const ERROR_RATE_WINDOW_HOURS: i64 = 24;
/// An installation above this error rate (percent) counts as high.
pub const HIGH_ERROR_RATE_PERCENT: f64 = 5.0;
/// How many events the installation detail shows.
pub const RECENT_EVENTS: i64 = 20;

/// The Ops switches an installation can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToggleKey {
    BlockPlugin,
    ForceUpdate,
    EnableDebug,
    /// Value: requests per minute.
    RateLimit,
}

impl ToggleKey {
    pub const ALL: [ToggleKey; 4] = [
        Self::BlockPlugin,
        Self::ForceUpdate,
        Self::EnableDebug,
        Self::RateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockPlugin => "block_plugin",
            Self::ForceUpdate => "force_update",
            Self::EnableDebug => "enable_debug",
            Self::RateLimit => "rate_limit",
        }
    }

    /// The value a plugin sees when the toggle is not set.
    pub fn default_value(self) -> Value {
        match self {
            Self::RateLimit => Value::Null,
            _ => Value::Bool(false),
        }
    }
}

/// A heartbeat, validated and ready to store.
#[derive(Clone, Debug)]
pub struct HeartbeatRecord {
    pub merchant_id: Uuid,
    pub cms: String,
    pub site_url: String,
    pub plugin_version: String,
    pub version_key: String,
    pub sdk_language: Option<String>,
    pub environment: String,
    pub php_version: Option<String>,
    pub wordpress_version: Option<String>,
    pub server_info: Option<Value>,
    pub state: Option<Value>,
    pub errors_last_hour: f64,
}

#[derive(Clone, Debug)]
pub struct HeartbeatOutcome {
    pub installation_id: Uuid,
    /// Active, unexpired toggles, as (key, value).
    pub toggles: Vec<(String, Value)>,
}

/// A telemetry event, validated and redacted, ready to store.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub merchant_id: Uuid,
    pub cms: String,
    pub site_url: String,
    pub event_type: String,
    pub severity: String,
    pub event_data: Value,
    pub message: Option<String>,
    pub stack_trace: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct EventOutcome {
    pub event_id: Uuid,
    /// None when the plugin has not sent a heartbeat yet.
    pub installation_id: Option<Uuid>,
    pub install_blocked: bool,
}

#[derive(Clone, Debug, Default)]
pub struct InstallationFilter {
    pub status: Option<String>,
    pub cms: Option<String>,
    pub plugin_version: Option<String>,
    pub merchant_id: Option<Uuid>,
    pub environment: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A row of the Ops plugin list (seed 000's fields, plus `site_url`).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct InstallationSummary {
    pub id: Uuid,
    pub merchant_id: Uuid,
    pub merchant_name: String,
    pub merchant_email: String,
    pub cms: String,
    pub site_url: String,
    pub plugin_version: String,
    pub latest_version: Option<String>,
    pub status: String,
    pub error_rate: f64,
    pub last_heartbeat: DateTime<Utc>,
    pub errors_24h: i64,
    pub environment: String,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct InstallationFacts {
    pub sdk_language: Option<String>,
    pub php_version: Option<String>,
    pub wordpress_version: Option<String>,
    pub server_info: Option<Json<Value>>,
    pub reported_state: Option<Json<Value>>,
    /// `errors_last_hour` as the plugin last reported it.
    pub reported_error_rate: f64,
    pub heartbeat_count: i64,
    pub first_seen_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InstallationDetail {
    #[serde(flatten)]
    pub summary: InstallationSummary,
    #[serde(flatten)]
    pub facts: InstallationFacts,
    pub recent_events: Vec<StoredEvent>,
    pub active_toggles: Vec<Toggle>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: Uuid,
    pub event_type: String,
    pub severity: String,
    pub event_data: Json<Value>,
    pub message: Option<String>,
    pub stack_trace: Option<String>,
    pub install_blocked: bool,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Toggle {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub toggle_key: String,
    pub toggle_value: Json<Value>,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct ToggleChange {
    pub installation_id: Uuid,
    pub key: ToggleKey,
    pub value: Value,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct NewVersion {
    pub cms: String,
    pub version: String,
    pub version_key: String,
    pub is_latest: bool,
    pub security: bool,
    pub min_supported: Option<String>,
    pub release_notes: String,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct VersionEntry {
    pub id: Uuid,
    pub cms: String,
    pub version: String,
    pub is_latest: bool,
    pub security: bool,
    pub min_supported: Option<String>,
    pub release_notes: String,
    pub created_at: DateTime<Utc>,
}

/// The Ops dashboard's overview, exactly seed 000's fields.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub active_count: i64,
    pub outdated_count: i64,
    pub blocked_count: i64,
    pub error_count: i64,
    pub high_error_rate_count: i64,
    pub stale_count: i64,
    pub avg_error_rate: f64,
    pub cms_breakdown: Vec<CmsCount>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CmsCount {
    pub cms: String,
    pub count: i64,
}

#[derive(sqlx::FromRow)]
struct OverviewRow {
    active_count: i64,
    outdated_count: i64,
    blocked_count: i64,
    error_count: i64,
    high_error_rate_count: i64,
    stale_count: i64,
    avg_error_rate: f64,
}

/// The installations with their derived status, error rate and error count.
/// Binds: $1 now, $2 stale-before, $3 error-window start.
const INSTALLATION_VIEW: &str = "\
SELECT i.id, i.merchant_id, m.name AS merchant_name, m.email AS merchant_email, i.cms, i.site_url, \
       i.plugin_version, v.version AS latest_version, i.environment, i.last_heartbeat, \
       CASE \
         WHEN EXISTS (SELECT 1 FROM plugin_ops_toggles t \
                      WHERE t.installation_id = i.id AND t.toggle_key = 'block_plugin' \
                        AND t.lifted_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $1) \
                        AND t.toggle_value = 'true') THEN 'blocked' \
         WHEN i.last_heartbeat < $2 THEN 'error' \
         WHEN v.version_key IS NOT NULL AND i.version_key < v.version_key THEN 'outdated' \
         ELSE 'active' \
       END AS status, \
       COALESCE(e.errors, 0) AS errors_24h, \
       CASE WHEN COALESCE(e.outcomes, 0) = 0 THEN 0.0 \
            ELSE CAST(e.errors AS DOUBLE PRECISION) * 100.0 / e.outcomes END AS error_rate \
FROM plugin_installations i \
JOIN merchants m ON m.id = i.merchant_id \
LEFT JOIN plugin_versions_registry v ON v.cms = i.cms AND v.is_latest \
LEFT JOIN (SELECT installation_id, \
                  SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END) AS errors, \
                  COUNT(*) AS outcomes \
           FROM plugin_telemetry_events \
           WHERE received_at >= $3 AND event_type IN ('payment_success', 'payment_failed', 'error') \
           GROUP BY installation_id) e ON e.installation_id = i.id";

const INSTALLATION_COLUMNS: &str =
    "id, merchant_id, merchant_name, merchant_email, cms, site_url, \
     plugin_version, latest_version, status, error_rate, last_heartbeat, errors_24h, environment";

/// Filters over the view, binds $4..$8.
const INSTALLATION_FILTERS: &str = "\
WHERE ($4 IS NULL OR s.status = $4) AND ($5 IS NULL OR s.cms = $5) \
  AND ($6 IS NULL OR s.plugin_version = $6) AND ($7 IS NULL OR s.merchant_id = $7) \
  AND ($8 IS NULL OR s.environment = $8)";

const TOGGLE_COLUMNS: &str = "id, installation_id AS plugin_id, toggle_key, toggle_value, reason, \
     expires_at, created_by, created_at";

fn view_window(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now - Duration::hours(STALE_AFTER_HOURS),
        now - Duration::hours(ERROR_RATE_WINDOW_HOURS),
    )
}

/// Error rates are percentages shown with two decimals.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Store {
    /// Upserts the installation and returns its id and active toggles. Group
    /// committed: returns once the batch holding it is durable.
    pub async fn record_heartbeat(
        &self,
        record: HeartbeatRecord,
        now: DateTime<Utc>,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.writer.heartbeat(record, now).await
    }

    /// Stores a telemetry event (group committed like heartbeats).
    pub async fn record_event(
        &self,
        record: EventRecord,
        now: DateTime<Utc>,
    ) -> Result<EventOutcome, StoreError> {
        self.writer.event(record, now).await
    }

    /// One page of installations and the number matching the filter.
    pub async fn list_installations(
        &self,
        filter: &InstallationFilter,
        now: DateTime<Utc>,
    ) -> Result<(Vec<InstallationSummary>, i64), StoreError> {
        let (stale_before, since) = view_window(now);
        let page_sql = format!(
            "SELECT {INSTALLATION_COLUMNS} FROM ({INSTALLATION_VIEW}) s {INSTALLATION_FILTERS} \
             ORDER BY s.last_heartbeat DESC, s.id LIMIT $9 OFFSET $10"
        );
        let count_sql =
            format!("SELECT COUNT(*) FROM ({INSTALLATION_VIEW}) s {INSTALLATION_FILTERS}");
        // The view's binds ($1–$3) then the filters' ($4–$8), for both queries.
        macro_rules! bind_view_and_filters {
            ($query:expr) => {
                $query
                    .bind(now)
                    .bind(stale_before)
                    .bind(since)
                    .bind(filter.status.as_deref())
                    .bind(filter.cms.as_deref())
                    .bind(filter.plugin_version.as_deref())
                    .bind(filter.merchant_id)
                    .bind(filter.environment.as_deref())
            };
        }
        let (mut rows, total) = on_pool!(self, pool => {
            let rows = bind_view_and_filters!(sqlx::query_as::<_, InstallationSummary>(&page_sql))
                .bind(filter.limit)
                .bind(filter.offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = bind_view_and_filters!(sqlx::query_scalar(&count_sql))
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        for row in &mut rows {
            row.error_rate = round2(row.error_rate);
        }
        Ok((rows, total))
    }

    pub async fn installation(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<InstallationDetail>, StoreError> {
        let (stale_before, since) = view_window(now);
        let summary_sql =
            format!("SELECT {INSTALLATION_COLUMNS} FROM ({INSTALLATION_VIEW}) s WHERE s.id = $4");
        let detail = on_pool!(self, pool => {
            let Some(mut summary) = sqlx::query_as::<_, InstallationSummary>(&summary_sql)
                .bind(now)
                .bind(stale_before)
                .bind(since)
                .bind(id)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            summary.error_rate = round2(summary.error_rate);
            let facts = sqlx::query_as::<_, InstallationFacts>(
                "SELECT sdk_language, php_version, wordpress_version, server_info, reported_state, \
                        reported_error_rate, heartbeat_count, first_seen_at \
                 FROM plugin_installations WHERE id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            let recent_events = sqlx::query_as::<_, StoredEvent>(
                "SELECT id, event_type, severity, event_data, message, stack_trace, install_blocked, \
                        occurred_at, received_at \
                 FROM plugin_telemetry_events WHERE installation_id = $1 \
                 ORDER BY received_at DESC, id LIMIT $2",
            )
            .bind(id)
            .bind(RECENT_EVENTS)
            .fetch_all(pool)
            .await?;
            let active_toggles = sqlx::query_as::<_, Toggle>(&format!(
                "SELECT {TOGGLE_COLUMNS} FROM plugin_ops_toggles \
                 WHERE installation_id = $1 AND lifted_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > $2) ORDER BY toggle_key"
            ))
            .bind(id)
            .bind(now)
            .fetch_all(pool)
            .await?;
            InstallationDetail { summary, facts, recent_events, active_toggles }
        });
        Ok(Some(detail))
    }

    /// Sets a toggle, lifting the one it replaces; audited. None when the
    /// installation does not exist.
    pub async fn set_toggle(
        &self,
        change: &ToggleChange,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<Toggle>, StoreError> {
        let id = Uuid::now_v7();
        let agent = audit.actor_id;
        let toggle = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let exists: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM plugin_installations WHERE id = $1")
                    .bind(change.installation_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(None);
            }
            sqlx::query(
                "UPDATE plugin_ops_toggles SET lifted_at = $1, lifted_by = $2 \
                 WHERE installation_id = $3 AND toggle_key = $4 AND lifted_at IS NULL",
            )
            .bind(now)
            .bind(agent)
            .bind(change.installation_id)
            .bind(change.key.as_str())
            .execute(&mut *tx)
            .await?;
            let toggle = sqlx::query_as::<_, Toggle>(&format!(
                "INSERT INTO plugin_ops_toggles \
                 (id, installation_id, toggle_key, toggle_value, reason, expires_at, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOGGLE_COLUMNS}"
            ))
            .bind(id)
            .bind(change.installation_id)
            .bind(change.key.as_str())
            .bind(Json(&change.value))
            .bind(&change.reason)
            .bind(change.expires_at)
            .bind(agent)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            insert_audit!(
                tx,
                audit,
                "toggle.set",
                "installation",
                Some(change.installation_id.to_string()),
                json!({
                    "toggle_key": change.key,
                    "toggle_value": change.value,
                    "reason": change.reason,
                    "expires_at": change.expires_at,
                }),
                now
            );
            tx.commit().await?;
            toggle
        });
        Ok(Some(toggle))
    }

    /// Lifts the active toggle `key`; audited. None when there is none.
    pub async fn lift_toggle(
        &self,
        installation_id: Uuid,
        key: ToggleKey,
        reason: Option<&str>,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<Toggle>, StoreError> {
        let lifted = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let lifted = sqlx::query_as::<_, Toggle>(&format!(
                "UPDATE plugin_ops_toggles SET lifted_at = $1, lifted_by = $2 \
                 WHERE installation_id = $3 AND toggle_key = $4 AND lifted_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > $1) \
                 RETURNING {TOGGLE_COLUMNS}"
            ))
            .bind(now)
            .bind(audit.actor_id)
            .bind(installation_id)
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if lifted.is_some() {
                insert_audit!(
                    tx,
                    audit,
                    "toggle.lift",
                    "installation",
                    Some(installation_id.to_string()),
                    json!({"toggle_key": key, "reason": reason}),
                    now
                );
                tx.commit().await?;
            }
            lifted
        });
        Ok(lifted)
    }

    /// Registers a release, or updates its flags and notes when (cms,
    /// version) is already known; marking it latest unmarks the previous
    /// latest. Returns the entry and whether it was created.
    pub async fn register_version(
        &self,
        version: &NewVersion,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<(VersionEntry, bool), StoreError> {
        const COLUMNS: &str =
            "id, cms, version, is_latest, security, min_supported, release_notes, created_at";
        let result = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if version.is_latest {
                sqlx::query(
                    "UPDATE plugin_versions_registry SET is_latest = $1 \
                     WHERE cms = $2 AND is_latest AND version <> $3",
                )
                .bind(false)
                .bind(&version.cms)
                .bind(&version.version)
                .execute(&mut *tx)
                .await?;
            }
            let existing: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM plugin_versions_registry WHERE cms = $1 AND version = $2",
            )
            .bind(&version.cms)
            .bind(&version.version)
            .fetch_optional(&mut *tx)
            .await?;
            let entry = sqlx::query_as::<_, VersionEntry>(&format!(
                "INSERT INTO plugin_versions_registry \
                 (id, cms, version, version_key, is_latest, security, min_supported, release_notes, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (cms, version) DO UPDATE SET is_latest = excluded.is_latest, \
                   security = excluded.security, min_supported = excluded.min_supported, \
                   release_notes = excluded.release_notes \
                 RETURNING {COLUMNS}"
            ))
            .bind(existing.unwrap_or_else(Uuid::now_v7))
            .bind(&version.cms)
            .bind(&version.version)
            .bind(&version.version_key)
            .bind(version.is_latest)
            .bind(version.security)
            .bind(version.min_supported.as_deref())
            .bind(&version.release_notes)
            .bind(now)
            .bind(audit.actor_id)
            .fetch_one(&mut *tx)
            .await?;
            insert_audit!(
                tx,
                audit,
                if existing.is_some() { "version.update" } else { "version.register" },
                "version",
                Some(entry.id.to_string()),
                json!({
                    "cms": version.cms,
                    "version": version.version,
                    "is_latest": version.is_latest,
                    "security": version.security,
                    "min_supported": version.min_supported,
                }),
                now
            );
            tx.commit().await?;
            (entry, existing.is_none())
        });
        Ok(result)
    }

    pub async fn list_versions(&self, cms: Option<&str>) -> Result<Vec<VersionEntry>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, VersionEntry>(
            "SELECT id, cms, version, is_latest, security, min_supported, release_notes, created_at \
             FROM plugin_versions_registry WHERE ($1 IS NULL OR cms = $1) \
             ORDER BY cms, version_key DESC",
        )
        .bind(cms)
        .fetch_all(pool)
        .await?))
    }

    pub async fn overview(&self, now: DateTime<Utc>) -> Result<Overview, StoreError> {
        let (stale_before, since) = view_window(now);
        let sql = format!(
            "SELECT \
               COALESCE(SUM(CASE WHEN s.status IN ('active', 'outdated') THEN 1 ELSE 0 END), 0) AS active_count, \
               COALESCE(SUM(CASE WHEN s.status = 'outdated' THEN 1 ELSE 0 END), 0) AS outdated_count, \
               COALESCE(SUM(CASE WHEN s.status = 'blocked' THEN 1 ELSE 0 END), 0) AS blocked_count, \
               COALESCE(SUM(CASE WHEN s.status = 'error' THEN 1 ELSE 0 END), 0) AS error_count, \
               COALESCE(SUM(CASE WHEN s.error_rate > $4 THEN 1 ELSE 0 END), 0) AS high_error_rate_count, \
               COALESCE(SUM(CASE WHEN s.last_heartbeat < $2 THEN 1 ELSE 0 END), 0) AS stale_count, \
               COALESCE(AVG(s.error_rate), 0.0) AS avg_error_rate \
             FROM ({INSTALLATION_VIEW}) s"
        );
        let (row, cms_breakdown) = on_pool!(self, pool => {
            let row = sqlx::query_as::<_, OverviewRow>(&sql)
                .bind(now)
                .bind(stale_before)
                .bind(since)
                .bind(HIGH_ERROR_RATE_PERCENT)
                .fetch_one(pool)
                .await?;
            let cms_breakdown = sqlx::query_as::<_, CmsCount>(
                "SELECT cms, COUNT(*) AS count FROM plugin_installations \
                 GROUP BY cms ORDER BY count DESC, cms",
            )
            .fetch_all(pool)
            .await?;
            (row, cms_breakdown)
        });
        Ok(Overview {
            active_count: row.active_count,
            outdated_count: row.outdated_count,
            blocked_count: row.blocked_count,
            error_count: row.error_count,
            high_error_rate_count: row.high_error_rate_count,
            stale_count: row.stale_count,
            avg_error_rate: round2(row.avg_error_rate),
            cms_breakdown,
        })
    }
}
