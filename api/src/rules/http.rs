//! Ops' view of the rule set in force, and the reload action.

use super::{RulesStatus, Service};
use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(reload))
}

/// The rule files in force, when they were loaded, and the errors of the last refused load.
#[utoipa::path(
    get,
    path = "/api/v1/rules/status",
    tag = "rules",
    security(("ops_token" = [])),
    responses((status = 200, description = "The rule set in force", body = RulesStatus))
)]
async fn status(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(rules.status()))
}

/// `POST /api/v1/rules/reload`: 200 with the new status, or 422 `rules_refused` listing
/// every error while the previous set stays; audited.
#[utoipa::path(
    post,
    path = "/api/v1/rules/reload",
    tag = "rules",
    security(("ops_token" = [])),
    responses(
        (status = 200, description = "The new set is in force", body = RulesStatus),
        (status = 422, description = "`rules_refused`: every error in `error.errors`; the previous set stays", body = ErrorEnvelope),
    )
)]
async fn reload(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::RulesReload)?;
    Ok(Json(rules.reload(&ops.audit()).await?))
}
