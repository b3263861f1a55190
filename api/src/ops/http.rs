//! Ops' monitoring endpoints: the alerts and their workflow (open → acknowledged → resolved,
//! by whom and when), the health of the dependencies (`/api/platform/health`), the scheduled
//! jobs, the audit log, and `GET /metrics` (aggregates only: no tenant, install or secret
//! appears in a label, so a scraper on the internal network needs no token).

use super::{JobRun, PlatformAlert, Service};
use crate::auth::{Ops, Permission};
use crate::db::AuditEntry;
use crate::error::ApiError;
use crate::extract::{uuid_param, QueryParams};
use crate::http::page;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/platform/alerts", get(alerts))
        .route("/api/platform/alerts/{id}/ack", post(acknowledge))
        .route("/api/platform/alerts/{id}/resolve", post(resolve))
        .route("/api/platform/health", get(health))
        .route("/api/platform/health/{service}", get(service_health))
        .route("/api/platform/jobs", get(jobs))
        .route("/api/v1/audit", get(audit_log))
}

async fn metrics(State(ops): State<Arc<Service>>) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics().await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<AlertStatus>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

async fn alerts(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<AlertsQuery>,
) -> Result<Json<Vec<PlatformAlert>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let status = query.status.map(|status| match status {
        AlertStatus::Open => "open",
        AlertStatus::Acknowledged => "acknowledged",
        AlertStatus::Resolved => "resolved",
    });
    Ok(Json(service.alerts(status).await?))
}

async fn move_alert(
    service: &Service,
    ops: &Ops,
    id: &str,
    to: &str,
) -> Result<Json<PlatformAlert>, ApiError> {
    ops.require(Permission::AlertsManage)?;
    let id = uuid_param("id", id)?;
    Ok(Json(service.move_alert(id, to, &ops.audit()).await?))
}

/// `POST /api/platform/alerts/{id}/ack`.
async fn acknowledge(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&service, &ops, &id, "acknowledged").await
}

/// `POST /api/platform/alerts/{id}/resolve`.
async fn resolve(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&service, &ops, &id, "resolved").await
}

/// `GET /api/platform/health`: the latest check of each service and the overall status
/// (the worst of them); 200 whatever the status, so a dashboard can read it.
async fn health(State(service): State<Arc<Service>>, ops: Ops) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.health().await?))
}

/// `GET /api/platform/health/{service}`: that service's recent checks, newest first.
async fn service_health(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.service_health(&name).await?))
}

/// `GET /api/platform/jobs`: each scheduled job's last run.
async fn jobs(
    State(service): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<Vec<JobRun>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.jobs().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn audit_log(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    ops.require(Permission::AuditRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    Ok(Json(service.audit_log(limit, offset).await?))
}
