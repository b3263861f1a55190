//! Monitoring records: scheduled job runs, alerts and their workflow, health checks, and the
//! daily per-install health metrics.

use super::{
    insert_audit, insert_outbox, on_pool, on_write_pool, AuditContext, NewOutboxMessage,
    PlatformAlert, Store, StoreError,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// Inserts an open alert inside an open transaction (`&mut *tx`).
macro_rules! insert_alert {
    ($tx:expr, $id:expr, $name:expr, $severity:expr, $summary:expr, $labels:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO platform_alerts (id, name, severity, status, summary, labels, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $6)",
        )
        .bind($id)
        .bind($name)
        .bind($severity)
        .bind($summary)
        .bind(sqlx::types::Json($labels))
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use insert_alert;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct JobRun {
    pub job: String,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub runs: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
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
        let postgres = self.kind() == super::BackendKind::Postgres;
        let claimed = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if postgres {
                // Replicas claiming the same job queue on its advisory lock, so exactly one
                // sees it due (SQLite has one writer: its transactions never overlap).
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(job)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO scheduled_job_runs (job, runs) VALUES ($1, 0) ON CONFLICT (job) DO NOTHING")
                .bind(job)
                .execute(&mut *tx)
                .await?;
            let claimed = sqlx::query(
                "UPDATE scheduled_job_runs SET last_started_at = $1, last_status = 'running', runs = runs + 1 \
                 WHERE job = $2 AND (last_started_at IS NULL OR last_started_at <= $3)",
            )
            .bind(now)
            .bind(job)
            .bind(due_before)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            tx.commit().await?;
            claimed
        });
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

    /// Opens alert `name` unless one with the same name and labels is still open or
    /// acknowledged; with it, the messages that dispatch it. Returns the new alert.
    pub async fn raise_alert(
        &self,
        name: &str,
        severity: &str,
        summary: &str,
        labels: &Value,
        dispatch: &[NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<Option<PlatformAlert>, StoreError> {
        let open: Vec<(Uuid, Json<Value>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, labels FROM platform_alerts WHERE name = $1 AND status <> 'resolved'",
        )
        .bind(name)
        .fetch_all(pool)
        .await?);
        if open.iter().any(|(_, l)| l.0 == *labels) {
            return Ok(None);
        }
        let id = Uuid::now_v7();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_alert!(tx, id, name, severity, summary, labels, now);
            for message in dispatch {
                insert_outbox!(tx, message, Uuid::now_v7(), now);
            }
            tx.commit().await?;
        });
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
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(&format!(
                "UPDATE platform_alerts SET status = $1, {at_column} = $2, {by_column} = $3, updated_at = $2 \
                 WHERE id = $4 AND status = $5"
            ))
            .bind(to)
            .bind(now)
            .bind(actor)
            .bind(id)
            .bind(&alert.status)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!("alert {id} changed meanwhile")));
            }
            if let Some(audit) = audit {
                insert_audit!(tx, audit, if to == "acknowledged" { "alert.acknowledge" } else { "alert.resolve" },
                    "alert", Some(id.to_string()), json!({"name": alert.name}), now);
            }
            tx.commit().await?;
        });
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
    /// day already recorded is left as it is, so a caught-up run cannot double it).
    pub async fn record_daily_health(
        &self,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let end = start + chrono::Duration::days(1);
        let stale_before = now - chrono::Duration::hours(super::STALE_AFTER_HOURS);
        let written = on_write_pool!(self, pool => sqlx::query(
            "INSERT INTO plugin_health_metrics (installation_id, day, plugin_version, status, heartbeats, events, errors, error_rate, recorded_at) \
             SELECT i.id, $1, i.plugin_version, \
                    CASE WHEN i.last_heartbeat < $2 THEN 'error' ELSE 'active' END, \
                    i.heartbeat_count, COALESCE(e.events, 0), COALESCE(e.errors, 0), \
                    CASE WHEN COALESCE(e.outcomes, 0) = 0 THEN 0.0 \
                         ELSE CAST(e.errors AS DOUBLE PRECISION) * 100.0 / e.outcomes END, $3 \
             FROM plugin_installations i \
             LEFT JOIN (SELECT installation_id, COUNT(*) AS events, \
                               SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END) AS errors, \
                               SUM(CASE WHEN event_type IN ('payment_success', 'payment_failed', 'error') THEN 1 ELSE 0 END) AS outcomes \
                        FROM plugin_telemetry_events WHERE received_at >= $4 AND received_at < $5 \
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
}
