//! The interop layer over HTTP (seed 001): plugins post platform events; Ops read them,
//! their stats, and manage the store-held mappings.

use super::{
    mapping_json, InteropFilter, InteropStats, NewInteropEvent, Service, StoredInteropEvent,
};
use crate::auth::{Merchant, Ops, Permission};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::http::{check_len, days_ago, page, StatsQuery};
use crate::quotas::EventRate;
use crate::values::closed_set;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::Platform;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plugins/interop/event", post(ingest))
        .route("/api/v1/plugins/interop/events", get(events))
        .route("/api/v1/plugins/interop/stats", get(stats))
        .route(
            "/api/v1/plugins/interop/mappings",
            get(mappings).post(upsert_mapping),
        )
}

/// What a plugin posts. Unknown fields are ignored (plugins of any release).
#[derive(Deserialize)]
struct EventRequest {
    plugin_id: Uuid,
    event_type: String,
    payload: Map<String, Value>,
    /// The platform's own id of this delivery (webhook id), if it has one: the strongest
    /// deduplication key.
    source_event_id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/plugins/interop/event`: 201 `ack` with the normalized payload; 200 for a
/// redelivery of an event already stored; 202 `failed` when no mapping applies or the
/// payload does not fit it (stored as failed with the reason, never dropped).
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
    let response = match &ingested.normalized {
        Ok(cloud_event) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            Json(json!({
                "status": "ack",
                "event_id": ingested.stored.id,
                "duplicate": duplicate,
                "cloud_event_id": cloud_event.id,
                "event_type": cloud_event.event_type,
                "normalized": cloud_event.data,
            })),
        ),
        Err(error) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            Json(json!({
                "status": "failed",
                "event_id": ingested.stored.id,
                "duplicate": duplicate,
                "error": {"code": error.code(), "message": error.to_string()},
            })),
        ),
    };
    Ok(response.into_response())
}

closed_set!(ProcessingStatus {
    Pending = "pending",
    Processed = "processed",
    Failed = "failed",
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    event_category: Option<String>,
    event_type: Option<String>,
    source_platform: Option<Platform>,
    processing_status: Option<ProcessingStatus>,
    plugin_id: Option<Uuid>,
    days: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/interop/events`: newest first, filtered, paginated.
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
fn mapping_request(mut body: Map<String, Value>) -> Result<(engine::MappingSpec, bool), ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingsQuery {
    source_platform: Option<Platform>,
}

/// `GET /api/v1/plugins/interop/mappings`: the store's mappings and the files', each with
/// `source` and whether it is the one `in_force` for its (platform, event).
async fn mappings(
    State(interop): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<MappingsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let platform = query.source_platform.map(Platform::as_str);
    Ok(Json(interop.mappings(platform).await?))
}
