//! The interop layer over HTTP (seed 001): plugins post platform events; Ops read them,
//! their stats, and manage the store-held mappings.

use super::{
    mapping_json, InteropFilter, InteropStats, NewInteropEvent, Service, StoredInteropEvent,
    StoredMapping,
};
use crate::auth::{Merchant, Ops, Permission};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::extract::{JsonBody, QueryParams};
use crate::http::{check_len, days_ago, page, StatsQuery};
use crate::openapi::PlatformName;
use crate::quotas::EventRate;
use crate::values::closed_set;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use engine::Platform;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .routes(routes!(events))
        .routes(routes!(stats))
        .routes(routes!(mappings, upsert_mapping))
}

/// What a plugin posts. Unknown fields are ignored (plugins of any release).
#[derive(Deserialize, ToSchema)]
struct EventRequest {
    /// The merchant's own installation.
    plugin_id: Uuid,
    /// The platform's (`woocommerce_checkout_order_processed`) or already normalized
    /// (`checkout.created`).
    event_type: String,
    payload: Map<String, Value>,
    /// The platform's own id of this delivery (webhook id), if it has one: the strongest
    /// deduplication key.
    source_event_id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// What an interop event is answered with: `ack` with the normalized event, or `failed`
/// with why nothing normalized it (it is stored all the same).
#[derive(Serialize, ToSchema)]
struct IngestResponse {
    /// `ack` or `failed`.
    status: &'static str,
    event_id: Uuid,
    /// A redelivery of an event already stored: nothing was written.
    duplicate: bool,
    /// `ack` only: the CloudEvent's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_event_id: Option<String>,
    /// `ack` only: the normalized event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    /// `ack` only: the normalized payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    normalized: Option<Map<String, Value>>,
    /// `failed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<IngestFailure>,
}

/// Why an event was stored as `failed`.
#[derive(Serialize, ToSchema)]
struct IngestFailure {
    code: &'static str,
    message: String,
}

/// `POST /api/v1/plugins/interop/event`: 201 `ack` with the normalized payload; 200 for a
/// redelivery of an event already stored; 202 `failed` when no mapping applies or the
/// payload does not fit it (stored as failed with the reason, never dropped).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/interop/event",
    tag = "interop",
    security(("merchant_key" = [])),
    request_body = EventRequest,
    responses(
        (status = 201, description = "Normalized and stored (`ack`)", body = IngestResponse),
        (status = 200, description = "A redelivery of an event already stored", body = IngestResponse),
        (status = 202, description = "Stored as `failed`: no mapping applies, or the payload does not fit it", body = IngestResponse),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
        (status = 429, description = "The merchant's event rate", body = ErrorEnvelope),
    )
)]
async fn ingest(
    State(interop): State<Arc<Service>>,
    State(event_rate): State<Arc<EventRate>>,
    merchant: Merchant,
    JsonBody(request): JsonBody<EventRequest>,
) -> Result<Response, ApiError> {
    event_rate.take(merchant.merchant_id)?;
    if request.event_type.trim().is_empty() {
        return Err(ApiError::invalid("event_type", "must not be empty"));
    }
    check_len("event_type", &request.event_type, 200)?;
    if let Some(id) = &request.source_event_id {
        check_len("source_event_id", id, 200)?;
    }
    let ingested = interop
        .ingest(
            merchant.merchant_id,
            NewInteropEvent {
                plugin_id: request.plugin_id,
                event_type: request.event_type,
                payload: request.payload,
                source_event_id: request.source_event_id,
                occurred_at: request.occurred_at,
            },
        )
        .await?;
    let duplicate = ingested.stored.duplicate;
    let response = match ingested.normalized {
        Ok(cloud_event) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            Json(IngestResponse {
                status: "ack",
                event_id: ingested.stored.id,
                duplicate,
                cloud_event_id: Some(cloud_event.id),
                event_type: Some(cloud_event.event_type),
                normalized: Some(cloud_event.data),
                error: None,
            }),
        ),
        Err(error) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            Json(IngestResponse {
                status: "failed",
                event_id: ingested.stored.id,
                duplicate,
                cloud_event_id: None,
                event_type: None,
                normalized: None,
                error: Some(IngestFailure {
                    code: error.code(),
                    message: error.to_string(),
                }),
            }),
        ),
    };
    Ok(response.into_response())
}

closed_set!(ProcessingStatus {
    Pending = "pending",
    Processed = "processed",
    Failed = "failed",
});

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    event_category: Option<String>,
    event_type: Option<String>,
    #[param(value_type = Option<PlatformName>)]
    source_platform: Option<Platform>,
    #[param(inline)]
    processing_status: Option<ProcessingStatus>,
    plugin_id: Option<Uuid>,
    /// 1–3650 days back.
    #[param(minimum = 1, maximum = 3650)]
    days: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/interop/events`: newest first, filtered, paginated.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/interop/events",
    tag = "interop",
    security(("ops_token" = [])),
    params(EventsQuery),
    responses((status = 200, description = "Newest first", body = Vec<StoredInteropEvent>))
)]
async fn events(
    State(interop): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Json<Vec<StoredInteropEvent>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    let filter = InteropFilter {
        event_category: query.event_category,
        event_type: query.event_type,
        source_platform: query.source_platform.map(|p| p.as_str().to_owned()),
        processing_status: query.processing_status.map(|s| s.as_str().to_owned()),
        plugin_id: query.plugin_id,
        since: days_ago(clock.now(), query.days)?,
        limit,
        offset,
    };
    Ok(Json(interop.events(&filter).await?))
}

/// `GET /api/v1/plugins/interop/stats?days=30`: exactly the seed's fields.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/interop/stats",
    tag = "interop",
    security(("ops_token" = [])),
    params(StatsQuery),
    responses((status = 200, description = "The stats", body = InteropStats))
)]
async fn stats(
    State(interop): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<InteropStats>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(interop.stats(query.since(clock.now())?).await?))
}

/// A mapping as the API takes it: [`engine::MappingSpec`]'s fields (the seed's, plus the
/// engine's optional knobs) and `is_active` (default true).
pub(crate) fn mapping_request(
    mut body: Map<String, Value>,
) -> Result<(engine::MappingSpec, bool), ApiError> {
    let is_active = match body.remove("is_active") {
        None => true,
        Some(Value::Bool(active)) => active,
        Some(_) => return Err(ApiError::invalid("is_active", "must be a boolean")),
    };
    let spec = crate::extract::parse_json(Value::Object(body).to_string().as_bytes())?;
    Ok((spec, is_active))
}

/// `POST /api/v1/plugins/interop/mappings`: creates or replaces the mapping of (platform,
/// source event), validated by the same engine code as a mapping file; audited. In force
/// at once on this server, within seconds on the others.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/interop/mappings",
    tag = "interop",
    security(("ops_token" = [])),
    request_body(content = Object, description = "`source_platform`, `source_event_type`, `normalized_event_type`, `field_mappings`; optional `optional`, `amount_fields`, `default_currency`, `subject_field`, `is_active`"),
    responses(
        (status = 201, description = "A new mapping (`source: store`)", body = StoredMapping),
        (status = 200, description = "The mapping replaced", body = StoredMapping),
    )
)]
async fn upsert_mapping(
    State(interop): State<Arc<Service>>,
    ops: Ops,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    ops.require(Permission::InteropWrite)?;
    let (spec, is_active) = mapping_request(body)?;
    let (mapping, created) = interop
        .upsert_mapping(&spec, is_active, &ops.audit())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(mapping_json(&mapping))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MappingsQuery {
    #[param(value_type = Option<PlatformName>)]
    source_platform: Option<Platform>,
}

/// `GET /api/v1/plugins/interop/mappings`: the store's mappings and the files', each with
/// `source` and whether it is the one `in_force` for its (platform, event).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/interop/mappings",
    tag = "interop",
    security(("ops_token" = [])),
    params(MappingsQuery),
    responses((status = 200, description = "Each mapping with `source` (`store` or `file:…`) and `in_force`", body = Vec<Object>))
)]
async fn mappings(
    State(interop): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<MappingsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let platform = query.source_platform.map(Platform::as_str);
    Ok(Json(interop.mappings(platform).await?))
}
