//! Ops' view of the rule set in force, and the reload action.

use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::rules::RulesStatus;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::json;

pub async fn status(
    State(state): State<AppState>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.rules.status()))
}

/// `POST /api/v1/rules/reload`: 200 with the new status, or 422
/// `rules_refused` listing every error while the previous set stays.
pub async fn reload(
    State(state): State<AppState>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::RulesReload)?;
    let now = state.clock.now();
    let outcome = state.rules.reload(now);
    let details = match &outcome {
        Ok(status) => json!({"outcome": "loaded", "files": status.files.len()}),
        Err(errors) => json!({"outcome": "refused", "errors": errors}),
    };
    state
        .store
        .record_audit(&ops.audit(), "rules.reload", "rules", details, now)
        .await?;
    outcome
        .map(Json)
        .map_err(|errors| ApiError::RulesRefused { errors })
}
