//! The credential lifecycle for admins (`credentials:manage`): list every credential
//! (never a secret), revoke one with a reason, rotate one (the new secret is in that
//! response and nowhere else). Each change is audited and in force on every replica
//! within a second.

use super::store::{Credential, CredentialKind};
use super::{Ops, Permission};
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_reason, page};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The longest grace period a rotation may give the old secret: long enough to roll a
/// fleet's configuration, short enough that a leaked secret does not live on.
pub const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 3600;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(revoke))
        .routes(routes!(rotate))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only credentials of this kind.
    #[param(inline)]
    kind: Option<CredentialKind>,
    /// 1–500 (default 50).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/credentials[?kind=merchant|ops|sira]`: oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/credentials",
    tag = "credentials",
    security(("ops_token" = [])),
    params(ListQuery),
    responses((status = 200, description = "Oldest first; never a secret", body = Vec<Credential>))
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// Why (it goes to the audit log); 1–1,000 characters.
    reason: String,
}

/// `POST /api/v1/credentials/{id}/revoke` with `{"reason"}`.
#[utoipa::path(
    post,
    path = "/api/v1/credentials/{id}/revoke",
    tag = "credentials",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The credential")),
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked: the credential as it now stands", body = Credential),
        (status = 404, description = "No such credential", body = ErrorEnvelope),
        (status = 409, description = "Already revoked", body = ErrorEnvelope),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// How long the old secret keeps working, 0–2,592,000 s (default 0: it stops now).
    grace_secs: Option<i64>,
}

/// A rotation's answer: the only time the new secret exists outside its owner.
#[derive(Serialize, ToSchema)]
struct Rotated {
    credential: Credential,
    /// The new bearer secret, shown this once.
    secret: String,
}

/// `POST /api/v1/credentials/{id}/rotate`, optionally with `{"grace_secs": N}`: the new
/// credential and its secret (shown this once).
#[utoipa::path(
    post,
    path = "/api/v1/credentials/{id}/rotate",
    tag = "credentials",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The credential to replace")),
    request_body(content = Option<RotateRequest>, description = "Optional"),
    responses(
        (status = 200, description = "The new credential and its secret", body = Rotated),
        (status = 404, description = "No such credential", body = ErrorEnvelope),
        (status = 409, description = "Revoked or expired: create a new one", body = ErrorEnvelope),
    )
)]
async fn rotate(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    body: Option<JsonBody<RotateRequest>>,
) -> Result<Json<Rotated>, ApiError> {
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
    Ok(Json(Rotated {
        credential,
        secret: secret.secret,
    }))
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
