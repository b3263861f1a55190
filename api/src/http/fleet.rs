//! What Ops do with the fleet: list and inspect installations, set and lift
//! toggles, keep the version registry, read the overview and the audit log.

use super::values::{Cms, Environment, Status};
use super::{check_len, page, parse_version};
use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::store::{
    AuditEntry, InstallationDetail, InstallationFilter, InstallationSummary, NewVersion, Overview,
    Toggle, ToggleChange, ToggleKey, VersionEntry,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<Status>,
    cms: Option<Cms>,
    plugin_version: Option<String>,
    merchant_id: Option<Uuid>,
    environment: Option<Environment>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn installation_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

/// `GET /api/v1/plugins/list`: a page as a JSON array (the seed's shape); the
/// total matching the filter is in `X-Total-Count`.
pub async fn list(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<(HeaderMap, Json<Vec<InstallationSummary>>), ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    let filter = InstallationFilter {
        status: query.status.map(|status| status.as_str().to_owned()),
        cms: query.cms.map(|cms| cms.as_str().to_owned()),
        plugin_version: query.plugin_version,
        merchant_id: query.merchant_id,
        environment: query
            .environment
            .map(|environment| environment.as_str().to_owned()),
        limit,
        offset,
    };
    let (rows, total) = state
        .store
        .list_installations(&filter, state.clock.now())
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    Ok((headers, Json(rows)))
}

pub async fn detail(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<InstallationDetail>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let id = installation_id(&id)?;
    state
        .store
        .installation(id, state.clock.now())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            what: "installation",
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToggleRequest {
    toggle_key: ToggleKey,
    toggle_value: Value,
    reason: String,
    expires_at: Option<DateTime<Utc>>,
    /// Accepted for the seed's dashboard; the actor is always the token's
    /// agent, so another id here is refused.
    updated_by: Option<Uuid>,
}

/// Checks a toggle's value: a boolean, or for `rate_limit` requests per
/// minute (1–1,000,000).
fn toggle_value(key: ToggleKey, value: &Value) -> Result<Option<u32>, ApiError> {
    match key {
        ToggleKey::RateLimit => value
            .as_u64()
            .filter(|limit| (1..=1_000_000).contains(limit))
            .map(|limit| Some(limit as u32))
            .ok_or_else(|| {
                ApiError::invalid(
                    "toggle_value",
                    "rate_limit takes requests per minute: an integer from 1 to 1000000",
                )
            }),
        _ if value.is_boolean() => Ok(None),
        _ => Err(ApiError::invalid(
            "toggle_value",
            format!("{} takes true or false", key.as_str()),
        )),
    }
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "must say why (it goes to the audit log)",
        ));
    }
    check_len("reason", reason, 1_000)?;
    Ok(reason.to_owned())
}

pub async fn set_toggle(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ToggleRequest>,
) -> Result<Json<Toggle>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = installation_id(&id)?;
    let rate_limit = toggle_value(request.toggle_key, &request.toggle_value)?;
    let reason = check_reason(&request.reason)?;
    if request
        .updated_by
        .is_some_and(|agent| agent != ops.agent_id)
    {
        return Err(ApiError::invalid(
            "updated_by",
            "must be the agent of the token, or omitted",
        ));
    }
    let now = state.clock.now();
    let expires_at = request.expires_at.map(crate::clock::truncate_to_micros);
    if expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let change = ToggleChange {
        installation_id,
        key: request.toggle_key,
        value: request.toggle_value,
        reason,
        expires_at,
    };
    let toggle = state
        .store
        .set_toggle(&change, &ops.audit(), now)
        .await?
        .ok_or(ApiError::NotFound {
            what: "installation",
        })?;
    if request.toggle_key == ToggleKey::RateLimit {
        state.rate_limiter.set_limit(installation_id, rate_limit);
    }
    Ok(Json(toggle))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftQuery {
    toggle_key: ToggleKey,
    reason: Option<String>,
}

/// `DELETE /api/v1/plugins/{id}/toggle?toggle_key=…&reason=…`
pub async fn lift_toggle(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<LiftQuery>,
) -> Result<Json<Toggle>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = installation_id(&id)?;
    if let Some(reason) = &query.reason {
        check_len("reason", reason, 1_000)?;
    }
    let lifted = state
        .store
        .lift_toggle(
            installation_id,
            query.toggle_key,
            query.reason.as_deref(),
            &ops.audit(),
            state.clock.now(),
        )
        .await?
        .ok_or(ApiError::NotFound {
            what: "active toggle",
        })?;
    if query.toggle_key == ToggleKey::RateLimit {
        state.rate_limiter.set_limit(installation_id, None);
    }
    Ok(Json(lifted))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRequest {
    cms: Cms,
    version: String,
    #[serde(default)]
    is_latest: bool,
    #[serde(default)]
    security: bool,
    min_supported: Option<String>,
    release_notes: Option<String>,
}

pub async fn register_version(
    State(state): State<AppState>,
    ops: Ops,
    JsonBody(request): JsonBody<VersionRequest>,
) -> Result<(StatusCode, Json<VersionEntry>), ApiError> {
    ops.require(Permission::VersionsWrite)?;
    let version = parse_version("version", &request.version)?;
    if let Some(min_supported) = &request.min_supported {
        if parse_version("min_supported", min_supported)? > version {
            return Err(ApiError::invalid(
                "min_supported",
                "must not be newer than version",
            ));
        }
    }
    let release_notes = request.release_notes.unwrap_or_default();
    check_len("release_notes", &release_notes, 20_000)?;
    let new = NewVersion {
        cms: request.cms.as_str().to_owned(),
        version: version.to_string(),
        version_key: crate::version::sort_key(&version),
        is_latest: request.is_latest,
        security: request.security,
        min_supported: request.min_supported,
        release_notes,
    };
    let (entry, created) = state
        .store
        .register_version(&new, &ops.audit(), state.clock.now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsQuery {
    cms: Option<Cms>,
}

pub async fn list_versions(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<VersionsQuery>,
) -> Result<Json<Vec<VersionEntry>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let cms = query.cms.map(Cms::as_str);
    Ok(Json(state.store.list_versions(cms).await?))
}

pub async fn overview(State(state): State<AppState>, ops: Ops) -> Result<Json<Overview>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.store.overview(state.clock.now()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    ops.require(Permission::AuditRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    Ok(Json(state.store.audit_log(limit, offset).await?))
}
