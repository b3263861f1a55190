//! Ops' monitoring endpoints: the alerts and their workflow (open → acknowledged → resolved,
//! by whom and when), the health of the dependencies (`/api/platform/health`), the scheduled
//! jobs, the audit log, and `GET /metrics` (aggregates only: no tenant, install or secret
//! appears in a label, so a scraper on the internal network needs no token).

use super::{HealthView, JobRun, PlatformAlert, Service, ServiceHealth};
use crate::auth::{Ops, Permission};
use crate::db::AuditEntry;
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{uuid_param, QueryParams};
use crate::http::{check_len, page};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(alerts))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(health))
        .routes(routes!(service_health))
        .routes(routes!(jobs))
        .routes(routes!(audit_log))
}

/// The Prometheus exposition: aggregates only, no credential.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 503, description = "The store is unreachable", body = ErrorEnvelope),
    )
)]
async fn metrics(State(ops): State<Arc<Service>>) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics().await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AlertsQuery {
    #[param(inline)]
    status: Option<AlertStatus>,
}

crate::values::closed_set!(
    /// An alert's status, as the alert list filters by it.
    AlertStatus {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
);

/// The alerts, newest first.
#[utoipa::path(
    get,
    path = "/api/platform/alerts",
    tag = "ops",
    security(("ops_token" = [])),
    params(AlertsQuery),
    responses((status = 200, description = "Newest first", body = Vec<PlatformAlert>))
)]
async fn alerts(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<AlertsQuery>,
) -> Result<Json<Vec<PlatformAlert>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(
        service
            .alerts(query.status.map(AlertStatus::as_str))
            .await?,
    ))
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

/// `POST /api/platform/alerts/{id}/ack`: `open → acknowledged`; audited.
#[utoipa::path(
    post,
    path = "/api/platform/alerts/{id}/ack",
    tag = "ops",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The alert")),
    responses(
        (status = 200, description = "Acknowledged", body = PlatformAlert),
        (status = 404, description = "No such alert", body = ErrorEnvelope),
        (status = 409, description = "The alert is not open", body = ErrorEnvelope),
    )
)]
async fn acknowledge(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&service, &ops, &id, "acknowledged").await
}

/// `POST /api/platform/alerts/{id}/resolve`: `open`/`acknowledged → resolved`; audited.
#[utoipa::path(
    post,
    path = "/api/platform/alerts/{id}/resolve",
    tag = "ops",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The alert")),
    responses(
        (status = 200, description = "Resolved", body = PlatformAlert),
        (status = 404, description = "No such alert", body = ErrorEnvelope),
        (status = 409, description = "The alert is resolved already", body = ErrorEnvelope),
    )
)]
async fn resolve(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<PlatformAlert>, ApiError> {
    move_alert(&service, &ops, &id, "resolved").await
}

/// `GET /api/platform/health`: the latest check of each service and the overall status
/// (the worst of them); 200 whatever the status, so a dashboard can read it.
#[utoipa::path(
    get,
    path = "/api/platform/health",
    tag = "ops",
    security(("ops_token" = [])),
    responses((status = 200, description = "Whatever the status", body = HealthView))
)]
async fn health(
    State(service): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<HealthView>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.health().await?))
}

/// `GET /api/platform/health/{service}`: that service's recent checks, newest first.
#[utoipa::path(
    get,
    path = "/api/platform/health/{service}",
    tag = "ops",
    security(("ops_token" = [])),
    params(("service" = String, Path, description = "A checked service (`store`, `smtp`, a destination)")),
    responses(
        (status = 200, description = "Its checks, newest first", body = ServiceHealth),
        (status = 404, description = "No check of that service", body = ErrorEnvelope),
    )
)]
async fn service_health(
    State(service): State<Arc<Service>>,
    ops: Ops,
    Path(name): Path<String>,
) -> Result<Json<ServiceHealth>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.service_health(&name).await?))
}

/// `GET /api/platform/jobs`: each scheduled job's last run.
#[utoipa::path(
    get,
    path = "/api/platform/jobs",
    tag = "ops",
    security(("ops_token" = [])),
    responses((status = 200, description = "Each job's last run", body = Vec<JobRun>))
)]
async fn jobs(
    State(service): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<Vec<JobRun>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(service.jobs().await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only entries of this actor kind (`ops_agent`, `console`, `cli`, `system`).
    pub(crate) actor_kind: Option<String>,
    /// Only entries whose action starts with this (`flag.` is every flag change).
    pub(crate) action: Option<String>,
    /// Only entries about this kind of target (`installation`, `flag`, `ops_agent`, …).
    pub(crate) target_type: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<i64>,
    #[param(minimum = 0)]
    pub(crate) offset: Option<i64>,
}

impl AuditQuery {
    /// The filter, each field checked (at most 200 characters).
    pub(crate) fn filter(&self) -> Result<crate::db::AuditFilter, ApiError> {
        let field = |name: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
            let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
            if let Some(value) = value {
                check_len(name, value, 200)?;
            }
            Ok(value.map(str::to_owned))
        };
        Ok(crate::db::AuditFilter {
            actor_kind: field("actor_kind", &self.actor_kind)?,
            action_prefix: field("action", &self.action)?,
            target_type: field("target_type", &self.target_type)?,
        })
    }
}

/// Who did what, when, with which request id; newest first, optionally filtered.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "ops",
    security(("ops_token" = [])),
    params(AuditQuery),
    responses((status = 200, description = "Newest first", body = Vec<AuditEntry>))
)]
async fn audit_log(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    ops.require(Permission::AuditRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    Ok(Json(
        service.audit_log(&query.filter()?, limit, offset).await?,
    ))
}
