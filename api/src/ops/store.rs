//! Monitoring records: scheduled job runs, alerts and their workflow, health checks, and the
//! daily per-install health metrics.

use crate::db::{
    insert_audit, on_pool, on_tx, on_write_pool, AuditContext, BackendKind, Store, StoreError, Tx,
};
use crate::delivery::{insert_outbox, NewOutboxMessage};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// An alert to open.
#[derive(Clone, Debug)]
pub struct NewAlert {
    pub name: String,
    /// `critical`, `warning`, `info`.
    pub severity: &'static str,
    pub summary: String,
    pub labels: Value,
}

/// An alert for Ops (seed 002/000 shape).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PlatformAlert {
    pub id: Uuid,
    pub name: String,
    /// `critical`, `warning`, `info`.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    pub summary: String,
    #[schema(value_type = serde_json::Value)]
    pub labels: Json<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub resolved_by: Option<Uuid>,
}

/// Opens `alert` as `id` on `tx`, inside the transaction of what raised it.
pub(crate) async fn insert_alert(
    tx: &mut Tx<'_>,
    id: Uuid,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => execute sqlx::query(
        "INSERT INTO platform_alerts (id, name, severity, status, summary, labels, created_at, updated_at) \
         VALUES ($1, $2, $3, 'open', $4, $5, $6, $6)",
    )
    .bind(id)
    .bind(&alert.name)
    .bind(alert.severity)
    .bind(&alert.summary)
    .bind(Json(&alert.labels))
    .bind(now))?;
    Ok(())
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobRun {
    pub job: String,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub runs: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HealthCheck {
    pub service: String,
    pub tier: String,
    pub status: String,
    pub latency_ms: f64,
    pub detail: Option<String>,
    pub checked_at: DateTime<Utc>,
}

const ALERT_COLUMNS: &str = "id, name, severity, status, summary, labels, created_at, updated_at, \
     acknowledged_at, resolved_at, acknowledged_by, resolved_by";

impl Store {
    /// Claims the run of `job` that is due (its last start is before `due_before`, or it
    /// never ran): true for exactly one caller across replicas (a PostgreSQL advisory lock
    /// serializes their claims), false when it is not due or another replica claimed it.
    pub async fn claim_job(
        &self,
        job: &str,
        due_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        if tx.kind() == BackendKind::Postgres {
            // Replicas claiming the same job queue on its advisory lock, so exactly one
            // sees it due (SQLite has one writer: its transactions never overlap).
            on_tx!(tx, c => execute sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(job))?;
        }
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO scheduled_job_runs (job, runs) VALUES ($1, 0) ON CONFLICT (job) DO NOTHING",
        )
        .bind(job))?;
        let claimed = on_tx!(tx, c => execute sqlx::query(
            "UPDATE scheduled_job_runs SET last_started_at = $1, last_status = 'running', runs = runs + 1 \
             WHERE job = $2 AND (last_started_at IS NULL OR last_started_at <= $3)",
        )
        .bind(now)
        .bind(job)
        .bind(due_before))?
            == 1;
        transaction.commit().await?;
        Ok(claimed)
    }

    pub async fn finish_job(
        &self,
        job: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => sqlx::query(
            "UPDATE scheduled_job_runs SET last_finished_at = $1, last_status = $2, last_error = $3 WHERE job = $4",
        )
        .bind(now)
        .bind(if error.is_some() { "failed" } else { "ok" })
        .bind(error)
        .bind(job)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    pub async fn job_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, JobRun>(
            "SELECT job, last_started_at, last_finished_at, last_status, last_error, CAST(runs AS BIGINT) AS runs \
             FROM scheduled_job_runs ORDER BY job",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Opens `alert` unless one with the same name and labels is still open or
    /// acknowledged; with it, the messages that dispatch it. Returns the new alert.
    pub async fn raise_alert(
        &self,
        alert: &NewAlert,
        dispatch: &[NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<Option<PlatformAlert>, StoreError> {
        let open: Vec<(Uuid, Json<Value>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, labels FROM platform_alerts WHERE name = $1 AND status <> 'resolved'",
        )
        .bind(&alert.name)
        .fetch_all(pool)
        .await?);
        if open.iter().any(|(_, l)| l.0 == alert.labels) {
            return Ok(None);
        }
        let id = Uuid::now_v7();
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        insert_alert(tx, id, alert, now).await?;
        for message in dispatch {
            insert_outbox(tx, message, Uuid::now_v7(), now).await?;
        }
        transaction.commit().await?;
        self.alert(id).await
    }

    pub async fn alert(&self, id: Uuid) -> Result<Option<PlatformAlert>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, PlatformAlert>(&format!(
            "SELECT {ALERT_COLUMNS} FROM platform_alerts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// Moves an alert (`acknowledged` from `open`; `resolved` from `open` or
    /// `acknowledged`), recording by whom (None: the system, when the condition cleared);
    /// audited for Ops. Conflict for any other move.
    pub async fn move_alert(
        &self,
        id: Uuid,
        to: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<Option<PlatformAlert>, StoreError> {
        let Some(alert) = self.alert(id).await? else {
            return Ok(None);
        };
        let allowed = matches!(
            (alert.status.as_str(), to),
            ("open", "acknowledged") | ("open", "resolved") | ("acknowledged", "resolved")
        );
        if !allowed {
            return Err(StoreError::Conflict(format!(
                "alert {id} is {}; it cannot become {to}",
                alert.status
            )));
        }
        let (at_column, by_column) = if to == "acknowledged" {
            ("acknowledged_at", "acknowledged_by")
        } else {
            ("resolved_at", "resolved_by")
        };
        let actor = audit.and_then(|a| a.actor_id);
        let update = format!(
            "UPDATE platform_alerts SET status = $1, {at_column} = $2, {by_column} = $3, updated_at = $2 \
             WHERE id = $4 AND status = $5"
        );
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let moved = on_tx!(tx, c => execute sqlx::query(&update)
            .bind(to)
            .bind(now)
            .bind(actor)
            .bind(id)
            .bind(&alert.status))?;
        if moved == 0 {
            return Err(StoreError::Conflict(format!(
                "alert {id} changed meanwhile"
            )));
        }
        if let Some(audit) = audit {
            let action = if to == "acknowledged" {
                "alert.acknowledge"
            } else {
                "alert.resolve"
            };
            insert_audit(
                tx,
                audit,
                action,
                "alert",
                Some(id.to_string()),
                json!({"name": alert.name}),
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        self.alert(id).await
    }

    /// The open or acknowledged alerts named `name`.
    pub async fn active_alerts(&self, name: &str) -> Result<Vec<PlatformAlert>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, PlatformAlert>(&format!(
            "SELECT {ALERT_COLUMNS} FROM platform_alerts WHERE name = $1 AND status <> 'resolved'"
        ))
        .bind(name)
        .fetch_all(pool)
        .await?),
        )
    }

    pub async fn record_health(&self, check: &HealthCheck) -> Result<(), StoreError> {
        on_write_pool!(self, pool => sqlx::query(
            "INSERT INTO health_check_history (id, service, tier, status, latency_ms, detail, checked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(&check.service)
        .bind(&check.tier)
        .bind(&check.status)
        .bind(check.latency_ms)
        .bind(&check.detail)
        .bind(check.checked_at)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// The last `limit` checks of `service` (every service when None), newest first.
    pub async fn health_history(
        &self,
        service: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HealthCheck>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, HealthCheck>(
            "SELECT service, tier, status, latency_ms, detail, checked_at FROM health_check_history \
             WHERE ($1 IS NULL OR service = $1) ORDER BY checked_at DESC, id DESC LIMIT $2",
        )
        .bind(service)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Writes each installation's figures for `day` into `plugin_health_metrics` (once: a
    /// day already recorded is left as it is, so a caught-up run cannot double it), from
    /// the hourly rollups (which outlive the raw events retention removes).
    pub async fn record_daily_health(
        &self,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (start, end) = day_span(day);
        let stale_before = now - chrono::Duration::hours(crate::fleet::STALE_AFTER_HOURS);
        let written = on_write_pool!(self, pool => sqlx::query(
            "INSERT INTO plugin_health_metrics (installation_id, day, plugin_version, status, heartbeats, events, errors, error_rate, recorded_at) \
             SELECT i.id, $1, i.plugin_version, \
                    CASE WHEN i.last_heartbeat < $2 THEN 'error' ELSE 'active' END, \
                    i.heartbeat_count, COALESCE(e.events, 0), COALESCE(e.errors, 0), \
                    CASE WHEN COALESCE(e.outcomes, 0) = 0 THEN 0.0 \
                         ELSE CAST(e.errors AS DOUBLE PRECISION) * 100.0 / e.outcomes END, $3 \
             FROM plugin_installations i \
             LEFT JOIN (SELECT installation_id, CAST(SUM(events) AS BIGINT) AS events, \
                               CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(outcomes) AS BIGINT) AS outcomes \
                        FROM plugin_event_rollups WHERE hour >= $4 AND hour < $5 \
                        GROUP BY installation_id) e ON e.installation_id = i.id \
             ON CONFLICT (installation_id, day) DO NOTHING",
        )
        .bind(day)
        .bind(stale_before)
        .bind(now)
        .bind(start)
        .bind(end)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(written)
    }
}

/// The UTC instants `day` starts and ends at (the end excluded), as the daily rows count it.
fn day_span(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    (start, start + chrono::Duration::days(1))
}

impl Store {
    /// Writes the fleet's figures for `day` into `fleet_daily_metrics` (once, like the
    /// installs' rows): the statuses at `now`, the day's rollups, interop events and
    /// healing outcomes. (`WHERE TRUE` tells SQLite's parser that `ON CONFLICT` is the
    /// upsert's, not a join constraint.)
    pub async fn record_fleet_day(
        &self,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (start, end) = day_span(day);
        let counts = self.status_counts(None, now).await?;
        let written = on_write_pool!(self, pool => sqlx::query(
            "INSERT INTO fleet_daily_metrics (day, installs, active, outdated, blocked, error, events, \
               errors, error_rate, interop_events, patches_applied, patches_failed, recorded_at) \
             SELECT $1, $2, $3, $4, $5, $6, COALESCE(r.events, 0), COALESCE(r.errors, 0), \
                    CASE WHEN COALESCE(r.outcomes, 0) = 0 THEN 0.0 \
                         ELSE CAST(r.errors AS DOUBLE PRECISION) * 100.0 / r.outcomes END, \
                    (SELECT COUNT(*) FROM plugin_interop_events WHERE received_at >= $7 AND received_at < $8), \
                    (SELECT COUNT(*) FROM plugin_auto_healing_logs WHERE applied_at >= $7 AND applied_at < $8), \
                    (SELECT COUNT(*) FROM plugin_auto_healing_logs \
                     WHERE status IN ('failed', 'rolled_back', 'rollback_failed') \
                       AND updated_at >= $7 AND updated_at < $8), \
                    $9 \
             FROM (SELECT CAST(SUM(events) AS BIGINT) AS events, CAST(SUM(errors) AS BIGINT) AS errors, \
                          CAST(SUM(outcomes) AS BIGINT) AS outcomes \
                   FROM plugin_event_rollups WHERE hour >= $7 AND hour < $8) r \
             WHERE TRUE ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(counts.total)
        .bind(counts.active)
        .bind(counts.outdated)
        .bind(counts.blocked)
        .bind(counts.error)
        .bind(start)
        .bind(end)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(written > 0)
    }
}

impl Store {
    /// Alerts, newest first; `status` filters.
    pub async fn platform_alerts(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<PlatformAlert>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, PlatformAlert>(&format!(
            "SELECT {ALERT_COLUMNS} FROM platform_alerts WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT 500"
        ))
        .bind(status)
        .fetch_all(pool)
        .await?),
        )
    }
}
