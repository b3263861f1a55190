//! Ops' view of the rule set in force, and the reload action.

use super::{RulesStatus, Service};
use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules/status", get(status))
        .route("/api/v1/rules/reload", post(reload))
}

async fn status(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(rules.status()))
}

/// `POST /api/v1/rules/reload`: 200 with the new status, or 422 `rules_refused` listing
/// every error while the previous set stays.
async fn reload(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::RulesReload)?;
    Ok(Json(rules.reload(&ops.audit()).await?))
}
