//! Scheduled jobs (seed 000) and the alert rules they evaluate. Each job has an interval;
//! a replica runs it only after claiming its due run in the store, so with several replicas
//! it runs once, and a run missed while no server was up is caught up at the next check
//! (once, not once per missed interval).
//!
//! - `hourly_fleet_check`: the fleet's state (outdated and stale installs, error rates are
//!   derived when read, so this job needs no "marking") against the alert rules
//!   `PluginOutdatedHigh`, `PluginHighErrorRate`, `AutoHealFailureRate` and
//!   `InteropProcessingBacklog`; an alert whose condition cleared is resolved.
//! - `daily_health`: per-install health metrics for the previous day, and upgrade notices
//!   for security releases (email and SMS where the merchant can be reached, in-app
//!   otherwise), within the notification quiet period (sent by the delivery service).

use super::{NewAlert, Service};
use crate::db::StoreError;
use crate::delivery::NewOutboxMessage;
use crate::logs::{LogError, LogLevel, LogService, NewLogEntry};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Settings of the jobs; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    pub hourly: Duration,
    pub daily: Duration,
    /// `InteropProcessingBacklog` fires when more forwards than this wait in the outbox.
    pub interop_backlog_alert: i64,
    /// How often the figures that cost a pass over the fleet (`/metrics`' gauges, the
    /// overview's error-rate figures) are recomputed in the background; zero computes them
    /// on every read (this default, for tests and small fleets; `serve` defaults to 10 s).
    pub metrics_refresh: std::time::Duration,
    /// What the hourly `retention` job keeps.
    pub retention: super::retention::RetentionConfig,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            hourly: Duration::hours(1),
            daily: Duration::days(1),
            interop_backlog_alert: 1000,
            metrics_refresh: std::time::Duration::ZERO,
            retention: Default::default(),
        }
    }
}

/// Where alerts are dispatched besides the store (seed 002): a Slack-style incoming
/// webhook and a plain webhook; each has a `serve` flag. Whatever raises an alert (a job,
/// a health check, a failed rollback) sends it to the same channels.
#[derive(Clone, Debug, Default)]
pub struct AlertChannels {
    pub slack_url: Option<String>,
    pub webhook_url: Option<String>,
}

impl AlertChannels {
    /// The outbox messages that dispatch alert `name` to the configured channels.
    pub(crate) fn messages(
        &self,
        name: &str,
        severity: &str,
        summary: &str,
    ) -> Vec<NewOutboxMessage> {
        let mut messages = Vec::new();
        if let Some(url) = &self.slack_url {
            messages.push(NewOutboxMessage {
                channel: "slack",
                destination: url.clone(),
                payload: json!({"text": format!("[{}] {name}: {summary}", severity.to_uppercase())}),
                source_type: "alert",
                source_id: Some(name.to_owned()),
            });
        }
        if let Some(url) = &self.webhook_url {
            messages.push(NewOutboxMessage {
                channel: "webhook",
                destination: url.clone(),
                payload: json!({"type": "platform.alert", "name": name, "severity": severity, "summary": summary}),
                source_type: "alert",
                source_id: Some(name.to_owned()),
            });
        }
        messages
    }
}

/// The platform log's entry of a job's run: `info`, or `error` with what failed.
fn job_run(job: &str, took: std::time::Duration, error: Option<String>) -> NewLogEntry {
    let data = json!({"job": job, "duration_ms": took.as_millis() as u64});
    match error {
        None => NewLogEntry::new(
            LogLevel::Info,
            LogService::Ops,
            "job.ran",
            format!("scheduled job {job} ran"),
        )
        .data(data),
        Some(error) => NewLogEntry::new(
            LogLevel::Error,
            LogService::Ops,
            "job.failed",
            format!("scheduled job {job} failed; it runs again at its next interval"),
        )
        .data(data)
        .error(LogError {
            name: "StoreError".to_owned(),
            message: error,
            stack: None,
        }),
    }
}

/// What one check of the schedule ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    pub jobs: Vec<&'static str>,
}

impl Service {
    /// Runs every job that is due at the clock's now and that this caller claims.
    pub async fn run_due(&self) -> Result<Ran, StoreError> {
        let now = self.clock.now();
        let config = &self.jobs;
        let mut ran = Ran::default();
        for (job, interval) in [
            ("hourly_fleet_check", config.hourly),
            ("daily_health", config.daily),
            ("retention", config.hourly),
        ] {
            if !self.store.claim_job(job, now - interval, now).await? {
                continue;
            }
            let started = std::time::Instant::now();
            let outcome = match job {
                "hourly_fleet_check" => self.fleet_check(now).await,
                "retention" => self.retention(now).await,
                _ => self.daily_health(now).await,
            };
            let error = outcome.as_ref().err().map(|e| e.to_string());
            if let Some(error) = &error {
                tracing::warn!(event = "job_failed", job, error = %error, "scheduled job failed; it runs again at its next interval");
            }
            self.store.finish_job(job, error.as_deref(), now).await?;
            self.logs.record(job_run(job, started.elapsed(), error));
            ran.jobs.push(job);
        }
        Ok(ran)
    }

    /// Opens the alert when `firing`, resolves the open ones when not.
    async fn alert_rule(
        &self,
        name: &str,
        severity: &'static str,
        firing: Option<String>,
        labels: Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match firing {
            Some(summary) => {
                let messages = self.alerts.messages(name, severity, &summary);
                let alert = NewAlert {
                    name: name.to_owned(),
                    severity,
                    summary,
                    labels,
                };
                if let Some(opened) = self.store.raise_alert(&alert, &messages, now).await? {
                    tracing::warn!(event = "alert_opened", alert = name, id = %opened.id, summary = %alert.summary, "alert opened");
                }
            }
            None => {
                for alert in self.store.active_alerts(name).await? {
                    self.store
                        .move_alert(alert.id, "resolved", None, now)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn fleet_check(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // A job may pass over the fleet: the rates are computed afresh.
        let rates = self.store.fleet_rates(now).await?;
        let overview = self.store.overview(rates, now).await?;
        let total = overview.cms_breakdown.iter().map(|c| c.count).sum::<i64>();
        let outdated_pct = if total == 0 {
            0.0
        } else {
            overview.outdated_count as f64 * 100.0 / total as f64
        };
        self.alert_rule(
            "PluginOutdatedHigh",
            "critical",
            (outdated_pct > 20.0).then(|| {
                format!(
                    "{outdated_pct:.1} % of installs are outdated ({} of {total})",
                    overview.outdated_count
                )
            }),
            json!({}),
            now,
        )
        .await?;
        self.alert_rule(
            "PluginHighErrorRate",
            "critical",
            (overview.high_error_rate_count > 5).then(|| {
                format!(
                    "{} installs have an error rate above 5 %",
                    overview.high_error_rate_count
                )
            }),
            json!({}),
            now,
        )
        .await?;
        let healing = self.store.healing_stats(now - Duration::hours(1)).await?;
        let failure_rate = if healing.finished() == 0 {
            0.0
        } else {
            healing.bad() as f64 * 100.0 / healing.finished() as f64
        };
        self.alert_rule(
            "AutoHealFailureRate",
            "warning",
            (failure_rate > 10.0).then(|| {
                format!("{failure_rate:.1} % of the patches of the last hour failed or rolled back")
            }),
            json!({}),
            now,
        )
        .await?;
        let backlog = self.store.interop_forwards_pending().await?;
        self.alert_rule(
            "InteropProcessingBacklog",
            "warning",
            (backlog > self.jobs.interop_backlog_alert).then(|| {
                format!(
                    "{backlog} normalized interop events wait in the outbox for their subscribers"
                )
            }),
            json!({}),
            now,
        )
        .await?;
        Ok(())
    }

    async fn retention(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let pruned = self.store.prune(&self.jobs.retention, now).await?;
        tracing::info!(event = "retention", rows = ?pruned.rows, partitions_dropped = ?pruned.partitions_dropped,
            "expired rows removed");
        Ok(())
    }

    async fn daily_health(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let yesterday = (now - Duration::days(1)).date_naive();
        self.store.record_daily_health(yesterday, now).await?;
        self.store.record_fleet_day(yesterday, now).await?;
        self.delivery.notify_security_releases().await
    }
}
