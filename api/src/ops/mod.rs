//! Watching the platform itself (seeds 000 and 002): the scheduled jobs and the alert rules
//! they evaluate, the alert workflow, the health of the dependencies, the Prometheus
//! exposition of every feature's figures, and the audit log's reader.
//!
//! [`Service`] is the feature's entry; `http.rs` its routes; `store.rs` its SQL (job runs,
//! alerts, health checks, daily metrics); `jobs.rs`, `health.rs` and `metrics.rs` what each
//! does.

mod health;
mod http;
mod jobs;
mod metrics;
pub mod retention;
mod store;

pub use health::{spawn_checks, TIERS};
pub(crate) use http::{routes, AlertStatus, AuditQuery};
pub use jobs::{AlertChannels, JobsConfig, Ran};
pub(crate) use store::insert_alert;
pub use store::*;

use crate::db::{AuditContext, AuditEntry, Store};
use crate::error::ApiError;
use crate::Clock;
use std::sync::Arc;
use uuid::Uuid;

/// The operations of Ops' monitoring, built from the handles they use. It reads the other
/// features' figures for `/metrics`, and sends the daily security notices through delivery.
pub struct Service {
    store: Store,
    clock: Clock,
    jobs: JobsConfig,
    alerts: AlertChannels,
    fleet: Arc<crate::fleet::Service>,
    healing: Arc<crate::healing::Service>,
    delivery: Arc<crate::delivery::Service>,
    /// Each job run is recorded there (and its counters are in `/metrics`).
    logs: crate::logs::PlatformLog,
    figures: crate::snapshot::Snapshot<metrics::StoreFigures>,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        clock: Clock,
        jobs: JobsConfig,
        alerts: AlertChannels,
        fleet: Arc<crate::fleet::Service>,
        healing: Arc<crate::healing::Service>,
        delivery: Arc<crate::delivery::Service>,
        logs: crate::logs::PlatformLog,
    ) -> Self {
        let figures = crate::snapshot::Snapshot::new(jobs.metrics_refresh);
        Self {
            store,
            clock,
            jobs,
            alerts,
            fleet,
            healing,
            delivery,
            logs,
            figures,
        }
    }

    /// How often the store's figures are refreshed in the background (zero: on every read).
    pub fn figures_refresh(&self) -> std::time::Duration {
        self.figures.refresh_interval()
    }

    /// Alerts, newest first; `status` filters.
    pub async fn alerts(&self, status: Option<&str>) -> Result<Vec<PlatformAlert>, ApiError> {
        Ok(self.store.platform_alerts(status).await?)
    }

    /// Ops move an alert (`acknowledged`, `resolved`); audited.
    pub async fn move_alert(
        &self,
        id: Uuid,
        to: &str,
        audit: &AuditContext,
    ) -> Result<PlatformAlert, ApiError> {
        self.store
            .move_alert(id, to, Some(audit), self.clock.now())
            .await?
            .ok_or(ApiError::NotFound { what: "alert" })
    }

    /// The latest check of each service and the overall status (the worst of them).
    pub async fn health(&self) -> Result<HealthView, ApiError> {
        let mut latest: Vec<HealthCheck> = Vec::new();
        for check in self.store.health_history(None, 500).await? {
            if !latest.iter().any(|c| c.service == check.service) {
                latest.push(check);
            }
        }
        latest.sort_by(|a, b| a.service.cmp(&b.service));
        let overall = ["down", "degraded"]
            .into_iter()
            .find(|bad| latest.iter().any(|c| c.status == *bad))
            .unwrap_or("healthy");
        Ok(HealthView {
            status: overall,
            services: latest,
        })
    }

    /// One service's recent checks, newest first.
    pub async fn service_health(&self, service: &str) -> Result<ServiceHealth, ApiError> {
        let history = self.store.health_history(Some(service), 100).await?;
        let Some(latest) = history.first() else {
            return Err(ApiError::NotFound { what: "service" });
        };
        Ok(ServiceHealth {
            service: service.to_owned(),
            status: latest.status.clone(),
            history,
        })
    }

    /// Each scheduled job's last run.
    pub async fn jobs(&self) -> Result<Vec<JobRun>, ApiError> {
        Ok(self.store.job_runs().await?)
    }

    pub async fn audit_log(
        &self,
        filter: &crate::db::AuditFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        Ok(self.store.audit_log_matching(filter, limit, offset).await?)
    }
}

/// The dependencies' health: the latest check of each service.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// The worst of the services': `healthy`, `degraded` or `down`.
    pub status: &'static str,
    pub services: Vec<HealthCheck>,
}

/// One service's recent checks, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    pub service: String,
    /// Its latest check's.
    pub status: String,
    pub history: Vec<HealthCheck>,
}
