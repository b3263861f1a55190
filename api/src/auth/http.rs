//! The credential lifecycle for admins (`credentials:manage`): list every credential
//! (never a secret), revoke one with a reason, rotate one (the new secret is in that
//! response and nowhere else). Each change is audited and in force on every replica
//! within a second.

use super::store::{Credential, CredentialKind};
use super::{Ops, Permission};
use crate::error::ApiError;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_reason, page};
use crate::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest grace period a rotation may give the old secret: long enough to roll a
/// fleet's configuration, short enough that a leaked secret does not live on.
pub const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 3600;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/credentials", get(list))
        .route("/api/v1/credentials/{id}/revoke", post(revoke))
        .route("/api/v1/credentials/{id}/rotate", post(rotate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    kind: Option<CredentialKind>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/credentials[?kind=merchant|ops|sira]`: oldest first, a page at a time.
async fn list(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Vec<Credential>>, ApiError> {
    ops.require(Permission::CredentialsManage)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    Ok(Json(
        state
            .store
            .credentials(query.kind, limit, offset, state.clock.now())
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
}

/// `POST /api/v1/credentials/{id}/revoke` with `{"reason"}`.
async fn revoke(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Json<Credential>, ApiError> {
    ops.require(Permission::CredentialsManage)?;
    let id = uuid_param("id", &id)?;
    let reason = check_reason(&request.reason)?;
    let revoked = state
        .store
        .revoke_credential(id, &reason, &ops.audit(), state.clock.now())
        .await?
        .ok_or(ApiError::NotFound { what: "credential" })?;
    state.auth.forget_all();
    Ok(Json(revoked))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    grace_secs: Option<i64>,
}

/// `POST /api/v1/credentials/{id}/rotate`, optionally with `{"grace_secs": N}`: the new
/// credential and its secret (shown this once).
async fn rotate(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    body: Option<JsonBody<RotateRequest>>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::CredentialsManage)?;
    let id = uuid_param("id", &id)?;
    let grace_secs = body.and_then(|JsonBody(body)| body.grace_secs).unwrap_or(0);
    let grace =
        rotation_grace(grace_secs).map_err(|problem| ApiError::invalid("grace_secs", problem))?;
    let (credential, secret) = state
        .store
        .rotate_credential(id, grace, &ops.audit(), state.clock.now())
        .await?
        .ok_or(ApiError::NotFound { what: "credential" })?;
    state.auth.forget_all();
    Ok(Json(
        json!({"credential": credential, "secret": secret.secret}),
    ))
}

/// A rotation's grace period for the old secret, from seconds: 0 up to
/// [`MAX_ROTATION_GRACE_SECS`].
pub fn rotation_grace(secs: i64) -> Result<chrono::Duration, String> {
    if (0..=MAX_ROTATION_GRACE_SECS).contains(&secs) {
        Ok(chrono::Duration::seconds(secs))
    } else {
        Err(format!(
            "must be between 0 and {MAX_ROTATION_GRACE_SECS} seconds (30 days)"
        ))
    }
}
