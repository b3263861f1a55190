//! Health of the dependencies, checked on seed 002's tiers — critical (the store) every
//! minute, core (the SMTP server) every 5 minutes, integrations (each outbound destination,
//! from its circuit breaker) every 15 — and kept in `health_check_history`.

use crate::outbox::BreakerState;
use crate::store::HealthCheck;
use crate::AppState;
use chrono::{DateTime, Utc};
use std::time::Instant;

/// The tiers and their intervals.
pub const TIERS: [(&str, std::time::Duration); 3] = [
    ("critical", std::time::Duration::from_secs(60)),
    ("core", std::time::Duration::from_secs(300)),
    ("integrations", std::time::Duration::from_secs(900)),
];

/// Checks every service of `tier` now and records the results.
pub async fn check_tier(state: &AppState, tier: &str, now: DateTime<Utc>) -> Vec<HealthCheck> {
    let mut checks = Vec::new();
    match tier {
        "critical" => {
            let started = Instant::now();
            let result = state.store.ping().await;
            checks.push(HealthCheck {
                service: "store".into(),
                tier: tier.into(),
                status: if result.is_ok() { "healthy" } else { "down" }.into(),
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                detail: result
                    .err()
                    .map(|_| "the database does not answer".to_owned()),
                checked_at: now,
            });
        }
        "core" => {
            if let Some(probe) = state.outbox.smtp_probe() {
                let started = Instant::now();
                let ok = probe.await;
                checks.push(HealthCheck {
                    service: "smtp".into(),
                    tier: tier.into(),
                    status: if ok { "healthy" } else { "down" }.into(),
                    latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    detail: (!ok).then(|| "the SMTP server does not answer NOOP".to_owned()),
                    checked_at: now,
                });
            }
        }
        _ => {
            for breaker in state.outbox.breakers() {
                let status = match breaker.state {
                    BreakerState::Closed => "healthy",
                    BreakerState::HalfOpen => "degraded",
                    BreakerState::Open => "down",
                };
                checks.push(HealthCheck {
                    service: format!(
                        "webhook:{}",
                        crate::outbox::destination_label(&breaker.destination)
                    ),
                    tier: tier.into(),
                    status: status.into(),
                    latency_ms: 0.0,
                    detail: Some(format!(
                        "breaker {:?}, {} consecutive failures",
                        breaker.state, breaker.consecutive_failures
                    )),
                    checked_at: now,
                });
            }
        }
    }
    for check in &checks {
        if let Err(error) = record(state, check).await {
            tracing::warn!(event = "health_record_failed", error = %error, "could not record a health check");
        }
    }
    checks
}

/// Keeps the check, and opens a `DependencyDown` alert for a service that is down (resolved
/// by the system once a check finds it healthy again).
async fn record(state: &AppState, check: &HealthCheck) -> Result<(), crate::store::StoreError> {
    state.store.record_health(check).await?;
    let labels = serde_json::json!({"service": check.service});
    if check.status == "down" {
        let summary = format!(
            "{} is down: {}",
            check.service,
            check.detail.as_deref().unwrap_or("no answer")
        );
        let messages = crate::jobs::dispatch(state, "DependencyDown", "critical", &summary);
        state
            .store
            .raise_alert(
                "DependencyDown",
                "critical",
                &summary,
                &labels,
                &messages,
                check.checked_at,
            )
            .await?;
    } else if check.status == "healthy" {
        for alert in state.store.active_alerts("DependencyDown").await? {
            if alert.labels.0 == labels {
                state
                    .store
                    .move_alert(alert.id, "resolved", None, check.checked_at)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Runs each tier on its interval.
pub fn spawn_checks(state: AppState) {
    for (tier, every) in TIERS {
        let state = state.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                check_tier(&state, tier, state.clock.now()).await;
            }
        });
    }
}
