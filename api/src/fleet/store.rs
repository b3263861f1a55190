//! The fleet's writes and its per-install reads: installations and their telemetry (with
//! the hourly rollups beside the events), Ops toggles, properties, the version registry.
//! The list and overview reads are in `read_model.rs`.

use super::rate_limit::InstallKey;
use super::read_model::{outcome_of, rollup_hour, FleetRates};
use crate::db::{
    insert_audit, on_pool, on_tx, AuditContext, Backend, BackendKind, Batched, Store, StoreError,
    Tx,
};
use crate::errors::{record_occurrences, Occurrence, OccurrenceSource};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sqlx::types::Json;
use std::collections::HashMap;
use uuid::Uuid;

/// No heartbeat for this long marks an installation `error` (stale).
pub const STALE_AFTER_HOURS: i64 = 48;
/// An installation above this error rate (percent) counts as high.
pub const HIGH_ERROR_RATE_PERCENT: f64 = 5.0;
/// An error rate a plugin reports (`errors_last_hour`, a percentage) as the fleet reads it:
/// above 100 is 100. `INSTALLATION_VIEW` spells the same cap in SQL.
pub fn reported_error_rate(reported: f64) -> f64 {
    reported.min(100.0)
}
/// How many events the installation detail shows.
pub const RECENT_EVENTS: i64 = 20;

/// The Ops switches an installation can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
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
    /// The properties Ops set on the install (what its flags are evaluated with).
    pub properties: Map<String, Value>,
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

/// A row of the Ops plugin list (seed 000's fields, plus `site_url`).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
    /// Where `error_rate` comes from: `events` (outcome events in the last 24 h),
    /// `heartbeat` (none: the rate the last heartbeat reported), `none` (neither).
    pub error_rate_source: String,
    pub last_heartbeat: DateTime<Utc>,
    pub errors_24h: i64,
    pub environment: String,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InstallationFacts {
    pub sdk_language: Option<String>,
    pub php_version: Option<String>,
    pub wordpress_version: Option<String>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub server_info: Option<Json<Value>>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub reported_state: Option<Json<Value>>,
    /// What Ops set on the install (`PATCH …/properties`), such as `sensitive`.
    #[schema(value_type = Object)]
    pub properties: Json<Map<String, Value>>,
    /// `errors_last_hour` as the plugin last reported it.
    pub reported_error_rate: f64,
    pub heartbeat_count: i64,
    pub first_seen_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InstallationDetail {
    #[serde(flatten)]
    pub summary: InstallationSummary,
    #[serde(flatten)]
    pub facts: InstallationFacts,
    pub recent_events: Vec<StoredEvent>,
    pub active_toggles: Vec<Toggle>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: Uuid,
    pub event_type: String,
    pub severity: String,
    #[schema(value_type = serde_json::Value)]
    pub event_data: Json<Value>,
    pub message: Option<String>,
    pub stack_trace: Option<String>,
    pub install_blocked: bool,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Toggle {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub toggle_key: String,
    #[schema(value_type = serde_json::Value)]
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

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub active_count: i64,
    pub outdated_count: i64,
    pub blocked_count: i64,
    pub error_count: i64,
    pub high_error_rate_count: i64,
    pub stale_count: i64,
    pub avg_error_rate: f64,
    pub cms_breakdown: Vec<CmsCount>,
    /// When `high_error_rate_count` and `avg_error_rate` were computed (they are a
    /// snapshot of every install's rate; the other figures are exact at the request).
    /// Not in the seed's shape: the HTTP answer has it in `X-Error-Rates-As-Of`.
    #[serde(skip)]
    pub error_rates_as_of: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CmsCount {
    pub cms: String,
    pub count: i64,
}

const TOGGLE_COLUMNS: &str = "id, installation_id AS plugin_id, toggle_key, toggle_value, reason, \
     expires_at, created_by, created_at";

impl Store {
    /// Whether the install a plugin names exists.
    pub async fn installation_exists(&self, key: &InstallKey) -> Result<bool, StoreError> {
        let found: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM plugin_installations WHERE merchant_id = $1 AND cms = $2 AND site_url = $3",
        )
        .bind(key.merchant_id)
        .bind(&key.cms)
        .bind(&key.site_url)
        .fetch_one(pool)
        .await?);
        Ok(found > 0)
    }

    /// How many installations the merchant has (its index range; at most the quota).
    pub async fn merchant_installations(&self, merchant_id: Uuid) -> Result<i64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM plugin_installations WHERE merchant_id = $1",
        )
        .bind(merchant_id)
        .fetch_one(pool)
        .await?))
    }

    pub async fn installation(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<InstallationDetail>, StoreError> {
        let Some(summary) = self.installation_summary(id, now).await? else {
            return Ok(None);
        };
        let detail = on_pool!(self, pool => {
            let facts = sqlx::query_as::<_, InstallationFacts>(
                "SELECT sdk_language, php_version, wordpress_version, server_info, reported_state, \
                        properties, reported_error_rate, heartbeat_count, first_seen_at \
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
        let agent = audit.actor_id;
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let exists: Option<Uuid> = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT id FROM plugin_installations WHERE id = $1",
        )
        .bind(change.installation_id)
        .fetch_optional(c)
        .await)?;
        if exists.is_none() {
            return Ok(None);
        }
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_ops_toggles SET lifted_at = $1, lifted_by = $2 \
             WHERE installation_id = $3 AND toggle_key = $4 AND lifted_at IS NULL",
        )
        .bind(now)
        .bind(agent)
        .bind(change.installation_id)
        .bind(change.key.as_str()))?;
        let insert = format!(
            "INSERT INTO plugin_ops_toggles \
             (id, installation_id, toggle_key, toggle_value, reason, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOGGLE_COLUMNS}"
        );
        let toggle = on_tx!(tx, c => sqlx::query_as::<_, Toggle>(&insert)
            .bind(Uuid::now_v7())
            .bind(change.installation_id)
            .bind(change.key.as_str())
            .bind(Json(&change.value))
            .bind(&change.reason)
            .bind(change.expires_at)
            .bind(agent)
            .bind(now)
            .fetch_one(c)
            .await)?;
        insert_audit(
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
            now,
        )
        .await?;
        transaction.commit().await?;
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let lift = format!(
            "UPDATE plugin_ops_toggles SET lifted_at = $1, lifted_by = $2 \
             WHERE installation_id = $3 AND toggle_key = $4 AND lifted_at IS NULL \
               AND (expires_at IS NULL OR expires_at > $1) \
             RETURNING {TOGGLE_COLUMNS}"
        );
        let lifted = on_tx!(tx, c => sqlx::query_as::<_, Toggle>(&lift)
            .bind(now)
            .bind(audit.actor_id)
            .bind(installation_id)
            .bind(key.as_str())
            .fetch_optional(c)
            .await)?;
        if lifted.is_some() {
            insert_audit(
                tx,
                audit,
                "toggle.lift",
                "installation",
                Some(installation_id.to_string()),
                json!({"toggle_key": key, "reason": reason}),
                now,
            )
            .await?;
            transaction.commit().await?;
        }
        Ok(lifted)
    }

    /// Merges `changes` into the install's properties (a null removes its key), audited
    /// with the reason. None when the installation does not exist; `Err` with the count
    /// when the result would hold more than `max` (and nothing changes).
    pub async fn change_properties(
        &self,
        installation_id: Uuid,
        changes: &Map<String, Value>,
        reason: &str,
        max: usize,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<Map<String, Value>, usize>>, StoreError> {
        // Read and written in one transaction holding the row: SQLite's single writer
        // serializes the change, PostgreSQL's row lock keeps a concurrent one from being
        // undone by this merge.
        let lock = match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres(_) => " FOR UPDATE",
        };
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let select = format!("SELECT properties FROM plugin_installations WHERE id = $1{lock}");
        let current: Option<Json<Map<String, Value>>> = on_tx!(tx, c => sqlx::query_scalar(&select)
        .bind(installation_id)
        .fetch_optional(c)
        .await)?;
        let Some(Json(mut properties)) = current else {
            return Ok(None);
        };
        for (key, value) in changes {
            match value {
                Value::Null => properties.remove(key),
                value => properties.insert(key.clone(), value.clone()),
            };
        }
        if properties.len() > max {
            return Ok(Some(Err(properties.len())));
        }
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_installations SET properties = $1 WHERE id = $2",
        )
        .bind(Json(&properties))
        .bind(installation_id))?;
        insert_audit(
            tx,
            audit,
            "install.properties",
            "installation",
            Some(installation_id.to_string()),
            json!({"changes": changes, "properties": properties, "reason": reason}),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(Ok(properties)))
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        if version.is_latest {
            on_tx!(tx, c => execute sqlx::query(
                "UPDATE plugin_versions_registry SET is_latest = $1 \
                 WHERE cms = $2 AND is_latest AND version <> $3",
            )
            .bind(false)
            .bind(&version.cms)
            .bind(&version.version))?;
        }
        let existing: Option<Uuid> = on_tx!(tx, c => sqlx::query_scalar(
            "SELECT id FROM plugin_versions_registry WHERE cms = $1 AND version = $2",
        )
        .bind(&version.cms)
        .bind(&version.version)
        .fetch_optional(c)
        .await)?;
        let upsert = format!(
            "INSERT INTO plugin_versions_registry \
             (id, cms, version, version_key, is_latest, security, min_supported, release_notes, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (cms, version) DO UPDATE SET is_latest = excluded.is_latest, \
               security = excluded.security, min_supported = excluded.min_supported, \
               release_notes = excluded.release_notes \
             RETURNING {COLUMNS}"
        );
        let entry = on_tx!(tx, c => sqlx::query_as::<_, VersionEntry>(&upsert)
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
            .fetch_one(c)
            .await)?;
        insert_audit(
            tx,
            audit,
            if existing.is_some() {
                "version.update"
            } else {
                "version.register"
            },
            "version",
            Some(entry.id.to_string()),
            json!({
                "cms": version.cms,
                "version": version.version,
                "is_latest": version.is_latest,
                "security": version.security,
                "min_supported": version.min_supported,
            }),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok((entry, existing.is_none()))
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

    /// The overview at `now`: statuses and the cms breakdown exact, the error-rate
    /// figures as `rates` has them.
    pub async fn overview(
        &self,
        rates: FleetRates,
        now: DateTime<Utc>,
    ) -> Result<Overview, StoreError> {
        let counts = self.status_counts(None, now).await?;
        Ok(Overview {
            active_count: counts.active,
            outdated_count: counts.outdated,
            blocked_count: counts.blocked,
            error_count: counts.error,
            high_error_rate_count: rates.high_error_rate_count,
            stale_count: counts.stale,
            avg_error_rate: rates.avg_error_rate,
            cms_breakdown: self.cms_breakdown().await?,
            error_rates_as_of: rates.as_of,
        })
    }
}

impl Store {
    /// Installations of `cms` whose version sorts below `version_key`.
    pub async fn installs_below(
        &self,
        cms: &str,
        version_key: &str,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT id FROM plugin_installations WHERE cms = $1 AND version_key < $2 ORDER BY id",
        )
        .bind(cms)
        .bind(version_key)
        .fetch_all(pool)
        .await?))
    }

    /// An install's error rate (percent of payment outcomes and errors that are errors)
    /// from its telemetry events received in `[from, to)`; None without any event.
    pub async fn error_rate_between(
        &self,
        plugin_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<f64>, StoreError> {
        let (errors, outcomes): (i64, i64) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END), 0), \
                    COUNT(*) \
             FROM plugin_telemetry_events \
             WHERE installation_id = $1 AND received_at >= $2 AND received_at < $3 \
               AND event_type IN ('payment_success', 'payment_failed', 'error')",
        )
        .bind(plugin_id)
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?);
        Ok((outcomes > 0).then(|| errors as f64 * 100.0 / outcomes as f64))
    }

    /// The error rate the install's last heartbeat reported (`errors_last_hour`, at most
    /// 100), when that heartbeat arrived at or after `since`; None otherwise.
    pub async fn reported_error_rate_since(
        &self,
        plugin_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Option<f64>, StoreError> {
        let rate: Option<f64> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT reported_error_rate FROM plugin_installations \
             WHERE id = $1 AND last_heartbeat >= $2",
        )
        .bind(plugin_id)
        .bind(since)
        .fetch_optional(pool)
        .await?);
        Ok(rate.map(reported_error_rate))
    }

    /// Failed and total payment/error outcomes per merchant since `since`
    /// (the events the fleet's error rate is computed from).
    pub async fn merchant_outcomes(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<MerchantOutcomes>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, MerchantOutcomes>(
            "SELECT merchant_id, \
                    SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END) AS errors, \
                    COUNT(*) AS outcomes \
             FROM plugin_telemetry_events \
             WHERE received_at >= $1 AND event_type IN ('payment_success', 'payment_failed', 'error') \
             GROUP BY merchant_id",
        )
        .bind(since)
        .fetch_all(pool)
        .await?),
        )
    }
}

/// Outcomes one merchant's installations reported in a window.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MerchantOutcomes {
    pub merchant_id: Uuid,
    pub errors: i64,
    pub outcomes: i64,
}

/// Heartbeats are group committed: all those of a batch are one multi-row upsert that also
/// reads their toggles (PostgreSQL: one autocommitted statement when the batch holds only
/// heartbeats; SQLite: the upsert and a toggle query in the transaction), so a batch's cost
/// does not grow with its round trips.
impl Batched for HeartbeatRecord {
    type Outcome = HeartbeatOutcome;
    const ORDER: u8 = 0;

    fn commits_itself(backend: BackendKind) -> bool {
        backend == BackendKind::Postgres
    }

    /// Upserts every installation once (the last heartbeat of a key
    /// wins, and its count adds the duplicates) and reads the toggles
    /// of them all: in the same statement where the dialect allows
    /// an INSERT in a CTE (PostgreSQL), else in a second one.
    async fn write_all(
        tx: &mut Tx<'_>,
        heartbeats: &[(&Self, DateTime<Utc>)],
        _commits_itself: bool,
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
            state: Option<&'a Value>,
            server_info: Option<&'a Value>,
        }
        let mut merged: HashMap<(Uuid, &str, &str), Merged> = HashMap::new();
        for (index, (record, _)) in heartbeats.iter().enumerate() {
            let key = (
                record.merchant_id,
                record.cms.as_str(),
                record.site_url.as_str(),
            );
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

        // PostgreSQL takes an INSERT in a CTE: the upsert and the toggles are one statement.
        let one_statement = tx.kind() == BackendKind::Postgres;
        type ToggleRow = (Uuid, String, Json<Value>, Option<DateTime<Utc>>);
        type InstallIds = HashMap<(Uuid, String, String), (Uuid, Map<String, Value>)>;
        let (ids, toggles): (InstallIds, Vec<ToggleRow>) = on_tx!(tx, connection, Db => {
            let mut upsert = sqlx::QueryBuilder::<Db>::new(if one_statement { "WITH up AS (" } else { "" });
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
             RETURNING id, merchant_id, cms, site_url, properties",
        );
            if one_statement {
            upsert.push(
                ") SELECT up.id, up.merchant_id, up.cms, up.site_url, up.properties, \
                          t.toggle_key, t.toggle_value, t.expires_at \
                 FROM up LEFT JOIN plugin_ops_toggles t ON t.installation_id = up.id AND t.lifted_at IS NULL",
            );
            type Row = (
                Uuid,
                Uuid,
                String,
                String,
                Json<Map<String, Value>>,
                Option<String>,
                Option<Json<Value>>,
                Option<DateTime<Utc>>,
            );
            let rows: Vec<Row> = upsert.build_query_as().fetch_all(&mut *connection).await?;
            let mut ids = HashMap::new();
            let mut toggles = Vec::new();
            for (id, merchant_id, cms, site_url, properties, key, value, expires_at) in rows {
                ids.insert((merchant_id, cms, site_url), (id, properties.0));
                if let (Some(key), Some(value)) = (key, value) {
                    toggles.push((id, key, value, expires_at));
                }
            }
            (ids, toggles)
        } else {
            type Row = (Uuid, Uuid, String, String, Json<Map<String, Value>>);
            let rows: Vec<Row> = upsert.build_query_as().fetch_all(&mut *connection).await?;
            let ids: InstallIds = rows
                .into_iter()
                .map(|(id, merchant_id, cms, site_url, properties)| ((merchant_id, cms, site_url), (id, properties.0)))
                .collect();
            let mut select = sqlx::QueryBuilder::<Db>::new(
                "SELECT installation_id, toggle_key, toggle_value, expires_at FROM plugin_ops_toggles \
                 WHERE lifted_at IS NULL AND installation_id IN (",
            );
            let mut separated = select.separated(", ");
            for (id, _) in ids.values() {
                separated.push_bind(*id);
            }
            select.push(")");
            let toggles = select.build_query_as().fetch_all(&mut *connection).await?;
            (ids, toggles)
        }
        });

        Ok(heartbeats
            .iter()
            .map(|(record, now)| {
                let lookup = (
                    record.merchant_id,
                    record.cms.clone(),
                    record.site_url.clone(),
                );
                let (installation_id, properties) = &ids[&lookup];
                let installation_id = *installation_id;
                let toggles = toggles
                    .iter()
                    .filter(|(id, _, _, expires_at)| {
                        *id == installation_id && expires_at.is_none_or(|at| at > *now)
                    })
                    .map(|(_, key, value, _)| (key.clone(), value.0.clone()))
                    .collect();
                HeartbeatOutcome {
                    installation_id,
                    toggles,
                    properties: properties.clone(),
                }
            })
            .collect())
    }
}

/// Events are group committed with the heartbeats, written one by one after them (an event
/// names its installation by merchant, cms and site, which a heartbeat of the same batch
/// may have just created).
impl Batched for EventRecord {
    type Outcome = EventOutcome;
    const ORDER: u8 = 3;

    async fn write_all(
        tx: &mut Tx<'_>,
        events: &[(&Self, DateTime<Utc>)],
        _commits_itself: bool,
    ) -> Result<Vec<EventOutcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(events.len());
        for (record, now) in events {
            outcomes.push(write_event(tx, record, *now).await?);
        }
        write_rollups(tx, events, &outcomes).await?;
        write_error_occurrences(tx, events, &outcomes).await?;
        Ok(outcomes)
    }
}

/// Groups the batch's error events (`error` and `payment_failed`, the outcome errors) that
/// carry a message, in the batch's transaction: an accepted error is in its group.
async fn write_error_occurrences(
    tx: &mut Tx<'_>,
    events: &[(&EventRecord, DateTime<Utc>)],
    outcomes: &[EventOutcome],
) -> Result<(), sqlx::Error> {
    let occurrences: Vec<Occurrence> = events
        .iter()
        .zip(outcomes)
        .filter(|((record, _), _)| outcome_of(&record.event_type).1)
        .filter_map(|((record, now), outcome)| {
            let message = record.message.as_deref().filter(|m| !m.trim().is_empty())?;
            Some(Occurrence {
                source: OccurrenceSource::Telemetry,
                source_id: outcome.event_id,
                installation_id: outcome.installation_id,
                merchant_id: Some(record.merchant_id),
                cms: Some(&record.cms),
                message,
                stack_trace: record.stack_trace.as_deref(),
                received_at: *now,
            })
        })
        .collect();
    record_occurrences(tx, &occurrences).await
}

/// Adds a batch's events to their installs' hourly rollups: one statement for the batch,
/// its rows in key order (so concurrent batches lock them in the same order). Events of
/// a plugin that has not sent a heartbeat yet belong to no install and are not counted.
async fn write_rollups(
    tx: &mut Tx<'_>,
    events: &[(&EventRecord, DateTime<Utc>)],
    outcomes: &[EventOutcome],
) -> Result<(), sqlx::Error> {
    #[derive(Default)]
    struct Counts {
        merchant_id: Uuid,
        events: i64,
        outcomes: i64,
        errors: i64,
    }
    let mut buckets: std::collections::BTreeMap<(Uuid, DateTime<Utc>), Counts> = Default::default();
    for ((record, now), outcome) in events.iter().zip(outcomes) {
        let Some(installation_id) = outcome.installation_id else {
            continue;
        };
        let counts = buckets
            .entry((installation_id, rollup_hour(*now)))
            .or_default();
        let (is_outcome, is_error) = outcome_of(&record.event_type);
        counts.merchant_id = record.merchant_id;
        counts.events += 1;
        counts.outcomes += i64::from(is_outcome);
        counts.errors += i64::from(is_error);
    }
    if buckets.is_empty() {
        return Ok(());
    }
    on_tx!(tx, connection, Db => {
        let mut upsert = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO plugin_event_rollups \
             (installation_id, hour, merchant_id, events, outcomes, errors) ",
        );
        upsert.push_values(&buckets, |mut row, ((installation_id, hour), counts)| {
            row.push_bind(*installation_id)
                .push_bind(*hour)
                .push_bind(counts.merchant_id)
                .push_bind(counts.events)
                .push_bind(counts.outcomes)
                .push_bind(counts.errors);
        });
        upsert.push(
            " ON CONFLICT (installation_id, hour) DO UPDATE SET \
               events = plugin_event_rollups.events + excluded.events, \
               outcomes = plugin_event_rollups.outcomes + excluded.outcomes, \
               errors = plugin_event_rollups.errors + excluded.errors",
        );
        upsert.build().execute(&mut *connection).await?;
    });
    Ok(())
}

async fn write_event(
    tx: &mut Tx<'_>,
    record: &EventRecord,
    now: DateTime<Utc>,
) -> Result<EventOutcome, sqlx::Error> {
    let installation_id: Option<Uuid> = on_tx!(tx, c => sqlx::query_scalar(
        "SELECT id FROM plugin_installations \
         WHERE merchant_id = $1 AND cms = $2 AND site_url = $3",
    )
    .bind(record.merchant_id)
    .bind(&record.cms)
    .bind(&record.site_url)
    .fetch_optional(c)
    .await)?;
    let install_blocked = match installation_id {
        Some(id) => {
            let blocks: i64 = on_tx!(tx, c => sqlx::query_scalar(
                "SELECT COUNT(*) FROM plugin_ops_toggles \
                 WHERE installation_id = $1 AND toggle_key = 'block_plugin' \
                   AND lifted_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                   AND toggle_value = 'true'",
            )
            .bind(id)
            .bind(now)
            .fetch_one(c)
            .await)?;
            blocks > 0
        }
        None => false,
    };
    let event_id = Uuid::now_v7();
    on_tx!(tx, c => execute sqlx::query(
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
    .bind(now))?;
    Ok(EventOutcome {
        event_id,
        installation_id,
        install_blocked,
    })
}
