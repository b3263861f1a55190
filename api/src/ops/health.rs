//! Health of the dependencies, checked on seed 002's tiers — critical (the store) every
//! minute, core (the SMTP server) every 5 minutes, integrations (each outbound destination,
//! from its circuit breaker) every 15 — and kept in `health_check_history`.

use super::{HealthCheck, NewAlert, Service};
use crate::db::StoreError;
use crate::delivery::outbox::{destination_label, BreakerState};
use crate::tasks::Tasks;
use std::sync::Arc;
use std::time::Instant;

/// The tiers and their intervals.
pub const TIERS: [(&str, std::time::Duration); 3] = [
    ("critical", std::time::Duration::from_secs(60)),
    ("core", std::time::Duration::from_secs(300)),
    ("integrations", std::time::Duration::from_secs(900)),
];

impl Service {
    /// Checks every service of `tier` at the clock's now and records the results.
    pub async fn check_tier(&self, tier: &str) -> Vec<HealthCheck> {
        let now = self.clock.now();
        let outbox = self.delivery.outbox();
        let mut checks = Vec::new();
        match tier {
            "critical" => {
                let started = Instant::now();
                let result = self.store.ping().await;
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
                if let Some(probe) = outbox.smtp_probe() {
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
                for breaker in outbox.breakers() {
                    let status = match breaker.state {
                        BreakerState::Closed => "healthy",
                        BreakerState::HalfOpen => "degraded",
                        BreakerState::Open => "down",
                    };
                    checks.push(HealthCheck {
                        service: format!("webhook:{}", destination_label(&breaker.destination)),
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
            if let Err(error) = self.record(check).await {
                tracing::warn!(event = "health_record_failed", error = %error, "could not record a health check");
            }
        }
        checks
    }

    /// Keeps the check, and opens a `DependencyDown` alert for a service that is down (resolved
    /// by the system once a check finds it healthy again).
    async fn record(&self, check: &HealthCheck) -> Result<(), StoreError> {
        self.store.record_health(check).await?;
        let labels = serde_json::json!({"service": check.service});
        if check.status == "down" {
            let summary = format!(
                "{} is down: {}",
                check.service,
                check.detail.as_deref().unwrap_or("no answer")
            );
            let messages = self.alerts.messages("DependencyDown", "critical", &summary);
            let alert = NewAlert {
                name: "DependencyDown".into(),
                severity: "critical",
                summary,
                labels,
            };
            self.store
                .raise_alert(&alert, &messages, check.checked_at)
                .await?;
        } else if check.status == "healthy" {
            for alert in self.store.active_alerts("DependencyDown").await? {
                if alert.labels.0 == labels {
                    self.store
                        .move_alert(alert.id, "resolved", None, check.checked_at)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// Runs each tier on its interval.
pub fn spawn_checks(tasks: &mut Tasks, ops: &Arc<Service>) {
    for (tier, every) in TIERS {
        let ops = ops.clone();
        tasks.spawn_every(tier, every, move || {
            let ops = ops.clone();
            async move {
                ops.check_tier(tier).await;
                Ok::<(), std::convert::Infallible>(())
            }
        });
    }
}
