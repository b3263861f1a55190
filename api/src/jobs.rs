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
//!   otherwise), within the notification quiet period.

use crate::notifications::{priority, Notice};
use crate::store::{NewOutboxMessage, StoreError};
use crate::AppState;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Settings of the jobs; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    pub hourly: Duration,
    pub daily: Duration,
    /// Alert dispatch: alerts go to these channels (Slack-style URL, webhook URL).
    pub alert_slack_url: Option<String>,
    pub alert_webhook_url: Option<String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            hourly: Duration::hours(1),
            daily: Duration::days(1),
            alert_slack_url: None,
            alert_webhook_url: None,
        }
    }
}

/// What one check of the schedule ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    pub jobs: Vec<&'static str>,
}

/// Runs every job that is due at `now` and that this caller claims.
pub async fn run_due(state: &AppState, now: DateTime<Utc>) -> Result<Ran, StoreError> {
    let config = &state.jobs;
    let mut ran = Ran::default();
    for (job, interval) in [
        ("hourly_fleet_check", config.hourly),
        ("daily_health", config.daily),
    ] {
        if !state.store.claim_job(job, now - interval, now).await? {
            continue;
        }
        let outcome = match job {
            "hourly_fleet_check" => fleet_check(state, now).await,
            _ => daily_health(state, now).await,
        };
        let error = outcome.as_ref().err().map(|e| e.to_string());
        if let Some(error) = &error {
            tracing::warn!(event = "job_failed", job, error = %error, "scheduled job failed; it runs again at its next interval");
        }
        state.store.finish_job(job, error.as_deref(), now).await?;
        ran.jobs.push(job);
    }
    Ok(ran)
}

/// The messages that dispatch an alert to the configured channels.
pub(crate) fn dispatch(
    state: &AppState,
    name: &str,
    severity: &str,
    summary: &str,
) -> Vec<NewOutboxMessage> {
    let config = &state.jobs;
    let mut messages = Vec::new();
    if let Some(url) = &config.alert_slack_url {
        messages.push(NewOutboxMessage {
            channel: "slack",
            destination: url.clone(),
            payload: json!({"text": format!("[{}] {name}: {summary}", severity.to_uppercase())}),
            source_type: "alert",
            source_id: Some(name.to_owned()),
        });
    }
    if let Some(url) = &config.alert_webhook_url {
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

/// Opens the alert when `firing`, resolves the open ones when not.
async fn alert_rule(
    state: &AppState,
    name: &str,
    severity: &str,
    firing: Option<String>,
    labels: Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match firing {
        Some(summary) => {
            let messages = dispatch(state, name, severity, &summary);
            if let Some(alert) = state
                .store
                .raise_alert(name, severity, &summary, &labels, &messages, now)
                .await?
            {
                tracing::warn!(event = "alert_opened", alert = name, id = %alert.id, summary = %summary, "alert opened");
            }
        }
        None => {
            for alert in state.store.active_alerts(name).await? {
                state
                    .store
                    .move_alert(alert.id, "resolved", None, now)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn fleet_check(state: &AppState, now: DateTime<Utc>) -> Result<(), StoreError> {
    let overview = state.store.overview(now).await?;
    let total = overview.cms_breakdown.iter().map(|c| c.count).sum::<i64>();
    let outdated_pct = if total == 0 {
        0.0
    } else {
        overview.outdated_count as f64 * 100.0 / total as f64
    };
    alert_rule(
        state,
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
    alert_rule(
        state,
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
    let healing = state.store.healing_stats(now - Duration::hours(1)).await?;
    let finished = healing.applied + healing.failed + healing.rolled_back;
    let failure_rate = if finished == 0 {
        0.0
    } else {
        (healing.failed + healing.rolled_back) as f64 * 100.0 / finished as f64
    };
    alert_rule(
        state,
        "AutoHealFailureRate",
        "warning",
        (failure_rate > 10.0).then(|| {
            format!("{failure_rate:.1} % of the patches of the last hour failed or rolled back")
        }),
        json!({}),
        now,
    )
    .await?;
    let interop = state
        .store
        .interop_stats(now - Duration::days(3650))
        .await?;
    alert_rule(
        state,
        "InteropProcessingBacklog",
        "warning",
        (interop.pending > 1000).then(|| format!("{} interop events pending", interop.pending)),
        json!({}),
        now,
    )
    .await?;
    Ok(())
}

async fn daily_health(state: &AppState, now: DateTime<Utc>) -> Result<(), StoreError> {
    let yesterday = (now - Duration::days(1)).date_naive();
    state.store.record_daily_health(yesterday, now).await?;
    // Security releases: every install below the cms's latest version, when that version is
    // a security release, gets its notices (each channel within its quiet period).
    for version in state.store.list_versions(None).await? {
        if !(version.is_latest && version.security) {
            continue;
        }
        let target = crate::version::parse_or_lowest(&version.version);
        for install in state
            .store
            .installs_below(&version.cms, &crate::version::sort_key(&target))
            .await?
        {
            let Some(reach) = state.store.notification_target(install).await? else {
                continue;
            };
            let current = crate::version::parse_or_lowest(&reach.plugin_version);
            let (level, channels) = priority(&current, &target, true);
            let config = &state.notifications;
            let notice = Notice {
                target: &reach,
                latest_version: &version.version,
                release_notes: &version.release_notes,
                priority: level,
                security: true,
                upgrade_url: format!(
                    "{}/{}",
                    config.upgrade_url_base.trim_end_matches('/'),
                    install
                ),
            };
            let mut notices = Vec::new();
            for channel in channels {
                let quiet = state
                    .store
                    .recent_notification(
                        install,
                        &version.version,
                        channel,
                        now - config.quiet_period,
                    )
                    .await?;
                if quiet.is_none() {
                    // A channel that cannot reach this merchant (no phone) is skipped.
                    notices.extend(notice.on(channel, config, true).ok());
                }
            }
            if !notices.is_empty() {
                state
                    .store
                    .record_notifications(&reach, &notices, None, now)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Checks the schedule every `tick`.
pub fn spawn_scheduler(state: AppState, tick: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        loop {
            ticker.tick().await;
            if let Err(error) = run_due(&state, state.clock.now()).await {
                tracing::warn!(event = "scheduler_failed", error = %error, "schedule check failed; retrying next tick");
            }
        }
    })
}
