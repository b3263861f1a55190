//! `GET /api/platform/errors` (the groups), `GET /api/platform/errors/{id}` (one, with its
//! samples and hourly counts), for Ops with `logs:read`; `POST
//! /api/platform/errors/{id}/status`, for Ops with `errors:manage`.

use super::{
    ErrorGroup, ErrorGroupDetail, ErrorGroupFilter, ErrorGroupPage, ErrorStatus, GroupCursor,
    Service, DEFAULT_HOURS,
};
use crate::auth::{Ops, Permission};
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason, page};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail))
        .routes(routes!(set_status))
}

/// Most hours the detail counts.
const MAX_HOURS: i64 = 720;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only groups in this status (default `unresolved`).
    #[param(inline)]
    status: Option<ErrorStatus>,
    /// Only groups seen at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Text the title contains, in any case (1–200 characters).
    q: Option<String>,
    /// Groups per page: 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// The error groups, most recently seen first; pages by `cursor`. Each carries the healing
/// rule in force that matches its title on some platform (`rule`, or null).
#[utoipa::path(
    get,
    path = "/api/platform/errors",
    tag = "ops",
    security(("ops_token" = [])),
    params(ListQuery),
    responses((status = 200, description = "Most recently seen first", body = ErrorGroupPage))
)]
async fn list(
    State(errors): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ErrorGroupPage>, ApiError> {
    ops.require(Permission::LogsRead)?;
    let (limit, _) = page(query.limit, None)?;
    let title_contains = query
        .q
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if let Some(text) = &title_contains {
        check_len("q", text, 200)?;
    }
    let after = query
        .cursor
        .as_deref()
        .map(|text| {
            GroupCursor::decode(text).ok_or_else(|| {
                ApiError::invalid("cursor", "expected the next_cursor of the page before")
            })
        })
        .transpose()?;
    let filter = ErrorGroupFilter {
        status: query.status.unwrap_or(ErrorStatus::Unresolved),
        since: query.since,
        title_contains,
        after,
        limit,
    };
    Ok(Json(errors.list(&filter).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DetailQuery {
    /// Hours the hourly counts cover, the current one last: 1–720 (default 48).
    #[param(minimum = 1, maximum = 720)]
    hours: Option<i64>,
}

/// One group, its newest occurrences, its occurrences per hour (zero-filled) and the
/// installs with the most occurrences.
#[utoipa::path(
    get,
    path = "/api/platform/errors/{id}",
    tag = "ops",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The group"), DetailQuery),
    responses(
        (status = 200, description = "The group", body = ErrorGroupDetail),
        (status = 404, description = "No such group", body = ErrorEnvelope),
    )
)]
async fn detail(
    State(errors): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<DetailQuery>,
) -> Result<Json<ErrorGroupDetail>, ApiError> {
    ops.require(Permission::LogsRead)?;
    let id = uuid_param("id", &id)?;
    let hours = query.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::invalid(
            "hours",
            format!("must be between 1 and {MAX_HOURS}"),
        ));
    }
    Ok(Json(errors.detail(id, hours).await?))
}

/// A status Ops set on a group.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: ErrorStatus,
    /// Why (it goes to the audit log): 1–1,000 characters.
    reason: String,
}

/// Resolves, ignores or reopens a group; audited. A resolved group that recurs is
/// unresolved again; an ignored one stays ignored.
#[utoipa::path(
    post,
    path = "/api/platform/errors/{id}/status",
    tag = "ops",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The group")),
    request_body = StatusChange,
    responses(
        (status = 200, description = "The group in its new status", body = ErrorGroup),
        (status = 404, description = "No such group", body = ErrorEnvelope),
    )
)]
async fn set_status(
    State(errors): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<StatusChange>,
) -> Result<Json<ErrorGroup>, ApiError> {
    ops.require(Permission::ErrorsManage)?;
    let id = uuid_param("id", &id)?;
    let reason = check_reason(&change.reason)?;
    Ok(Json(
        errors
            .set_status(id, change.status, &reason, &ops.audit())
            .await?,
    ))
}
