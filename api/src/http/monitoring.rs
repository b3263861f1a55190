//! Ops' monitoring endpoints: the alert workflow (open → acknowledged → resolved, by whom
//! and when), the health of the dependencies (`/api/platform/health`) and the scheduled jobs.

use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::store::{HealthCheck, JobRun, PlatformAlert};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

async fn move_alert(
    state: &AppState,
    ops: &Ops,
    id: &str,
    to: &str,
) -> Result<Json<PlatformAlert>, ApiError> {
    ops.require(Permission::AlertsManage)?;
    let id = Uuid::parse_str(id).map_err(|_| ApiError::invalid("id", "must be a UUID"))?;
    state
        .store
        .move_alert(id, to, Some(&ops.audit()), state.clock.now())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound { what: "alert" })
}

/// `POST /api/platform/alerts/{id}/ack`.
pub async fn acknowledge(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&state, &ops, &id, "acknowledged").await
}

/// `POST /api/platform/alerts/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&state, &ops, &id, "resolved").await
}

/// `GET /api/platform/health`: the latest check of each service and the overall status
/// (the worst of them); 200 whatever the status, so a dashboard can read it.
pub async fn health(State(state): State<AppState>, ops: Ops) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let mut latest: Vec<HealthCheck> = Vec::new();
    for check in state.store.health_history(None, 500).await? {
        if !latest.iter().any(|c| c.service == check.service) {
            latest.push(check);
        }
    }
    latest.sort_by(|a, b| a.service.cmp(&b.service));
    let overall = ["down", "degraded"]
        .into_iter()
        .find(|bad| latest.iter().any(|c| c.status == *bad))
        .unwrap_or("healthy");
    Ok(Json(json!({"status": overall, "services": latest})))
}

/// `GET /api/platform/health/{service}`: that service's recent checks, newest first.
pub async fn service_health(
    State(state): State<AppState>,
    ops: Ops,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let history = state.store.health_history(Some(&service), 100).await?;
    let Some(latest) = history.first() else {
        return Err(ApiError::NotFound { what: "service" });
    };
    Ok(Json(
        json!({"service": service, "status": latest.status, "history": history}),
    ))
}

/// `GET /api/platform/jobs`: each scheduled job's last run.
pub async fn jobs(State(state): State<AppState>, ops: Ops) -> Result<Json<Vec<JobRun>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.store.job_runs().await?))
}
