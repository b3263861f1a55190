//! The interop layer over HTTP (seed 001): plugins post platform events, which are
//! normalized to CloudEvents and stored raw and normalized; Ops read them, their stats, and
//! manage the store-held mappings.

use super::check_len;
use super::values::Cms;
use crate::auth::{Merchant, Ops, Permission};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::store::{
    InteropFilter, InteropRecord, InteropStats, NewOutboxMessage, StoredInteropEvent,
};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use engine::InteropEvent;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What a plugin posts. Unknown fields are ignored (plugins of any release).
#[derive(Deserialize)]
pub struct EventRequest {
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
pub async fn ingest(
    State(state): State<AppState>,
    merchant: Merchant,
    JsonBody(request): JsonBody<EventRequest>,
) -> Result<Response, ApiError> {
    if request.event_type.trim().is_empty() {
        return Err(ApiError::invalid("event_type", "must not be empty"));
    }
    check_len("event_type", &request.event_type, 200)?;
    if let Some(id) = &request.source_event_id {
        check_len("source_event_id", id, 200)?;
    }
    let target = state
        .installs
        .get(&state.store, request.plugin_id)
        .await?
        .filter(|t| t.merchant_id == merchant.merchant_id)
        .ok_or_else(|| ApiError::invalid("plugin_id", "no such installation of this merchant"))?;
    let now = state.clock.now();
    let event = InteropEvent {
        platform: target.cms.clone(),
        shop: target.id.to_string(),
        event_type: request.event_type,
        event_id: request.source_event_id,
        time: request.occurred_at.unwrap_or(now),
        payload: Value::Object(request.payload),
    };
    let rules = state.rules.current();
    let normalized =
        crate::interop::normalize(&state.store, &state.interop_mappings, &rules, &event).await?;
    let record = match &normalized.result {
        Ok(cloud_event) => InteropRecord {
            installation_id: target.id,
            merchant_id: target.merchant_id,
            event_id: cloud_event.id.clone(),
            source_platform: target.cms.clone(),
            source_event_type: event.event_type.clone(),
            event_type: Some(cloud_event.event_type.clone()),
            event_category: Some(cloud_event.category.clone()),
            payload: event.payload.clone(),
            normalized_payload: Some(Value::Object(cloud_event.data.clone())),
            cloud_event: serde_json::to_value(cloud_event).ok(),
            mapping: normalized.mapping.clone(),
            processing_status: "processed",
            failure_code: None,
            failure_reason: None,
            forwards: forwards(&state, cloud_event),
        },
        Err(error) => InteropRecord {
            installation_id: target.id,
            merchant_id: target.merchant_id,
            event_id: engine::event_id(
                &event.platform,
                &event.shop,
                &event.event_type,
                event.event_id.as_deref(),
                None,
                &event.payload,
            ),
            source_platform: target.cms.clone(),
            source_event_type: event.event_type.clone(),
            event_type: None,
            event_category: None,
            payload: event.payload.clone(),
            normalized_payload: None,
            cloud_event: None,
            mapping: normalized.mapping.clone(),
            processing_status: "failed",
            failure_code: Some(error.code().to_owned()),
            failure_reason: Some(error.to_string()),
            forwards: Vec::new(),
        },
    };
    let outcome = state.store.record_interop_event(record, now).await?;
    let response = match (&normalized.result, outcome.duplicate) {
        (Ok(cloud_event), duplicate) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            Json(json!({
                "status": "ack",
                "event_id": outcome.id,
                "duplicate": duplicate,
                "cloud_event_id": cloud_event.id,
                "event_type": cloud_event.event_type,
                "normalized": cloud_event.data,
            })),
        ),
        (Err(error), duplicate) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            Json(json!({
                "status": "failed",
                "event_id": outcome.id,
                "duplicate": duplicate,
                "error": {"code": error.code(), "message": error.to_string()},
            })),
        ),
    };
    Ok(response.into_response())
}

/// The normalized event, as a CloudEvent, for each configured webhook.
fn forwards(state: &AppState, cloud_event: &engine::NormalizedEvent) -> Vec<NewOutboxMessage> {
    let webhooks = &state.outbox.config.cloudevents_webhooks;
    if webhooks.is_empty() {
        return Vec::new();
    }
    let payload = serde_json::to_value(cloud_event).unwrap_or_default();
    webhooks
        .iter()
        .map(|url| NewOutboxMessage {
            channel: "cloudevents",
            destination: url.clone(),
            payload: payload.clone(),
            source_type: "interop_event",
            source_id: Some(cloud_event.id.clone()),
        })
        .collect()
}

super::values::closed_set!(ProcessingStatus {
    Pending = "pending",
    Processed = "processed",
    Failed = "failed",
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    event_category: Option<String>,
    event_type: Option<String>,
    source_platform: Option<Cms>,
    processing_status: Option<ProcessingStatus>,
    plugin_id: Option<Uuid>,
    days: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/interop/events`: newest first, filtered, paginated.
pub async fn events(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Json<Vec<StoredInteropEvent>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = super::page(query.limit, query.offset)?;
    let filter = InteropFilter {
        event_category: query.event_category,
        event_type: query.event_type,
        source_platform: query.source_platform.map(|p| p.as_str().to_owned()),
        processing_status: query.processing_status.map(|s| s.as_str().to_owned()),
        plugin_id: query.plugin_id,
        since: super::days_ago(&state, query.days)?,
        limit,
        offset,
    };
    Ok(Json(state.store.list_interop_events(&filter).await?))
}

/// `GET /api/v1/plugins/interop/stats?days=30`: exactly the seed's fields.
pub async fn stats(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<super::StatsQuery>,
) -> Result<Json<InteropStats>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.store.interop_stats(query.since(&state)?).await?))
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
pub async fn upsert_mapping(
    State(state): State<AppState>,
    ops: Ops,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    ops.require(Permission::InteropWrite)?;
    let (spec, is_active) = mapping_request(body)?;
    if let Err(problems) = crate::interop::validate(&spec) {
        let (field, message) = problems.into_iter().next().expect("at least one problem");
        return Err(ApiError::invalid(field, message));
    }
    let (mapping, created) = state
        .store
        .upsert_mapping(&spec, is_active, &ops.audit(), state.clock.now())
        .await?;
    state.interop_mappings.refresh(&state.store).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(mapping_json(&mapping))).into_response())
}

fn mapping_json(mapping: &crate::store::StoredMapping) -> Value {
    let mut value = serde_json::to_value(mapping).unwrap_or_default();
    value["source"] = json!("store");
    value
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingsQuery {
    source_platform: Option<Cms>,
}

/// `GET /api/v1/plugins/interop/mappings`: the store's mappings and the files', each with
/// `source` and whether it is the one `in_force` for its (platform, event).
pub async fn mappings(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<MappingsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let platform = query.source_platform.map(Cms::as_str);
    let stored = state.store.list_mappings(platform).await?;
    let mut out: Vec<Value> = stored
        .iter()
        .map(|m| {
            let mut value = mapping_json(m);
            value["in_force"] = json!(m.is_active);
            value
        })
        .collect();
    let rules = state.rules.current();
    for mapping in rules.mappings() {
        let platform_name = mapping.source_platform.as_str();
        if platform.is_some_and(|p| p != platform_name) {
            continue;
        }
        let overridden = stored.iter().any(|m| {
            m.is_active
                && m.source_platform == platform_name
                && m.source_event_type == mapping.source_event_type
        });
        let spec = mapping.spec();
        out.push(json!({
            "id": null,
            "source_platform": platform_name,
            "source_event_type": spec.source_event_type,
            "normalized_event_type": spec.normalized_event_type,
            "field_mappings": spec.field_mappings,
            "is_active": true,
            "source": format!("file:{}", mapping.file),
            "in_force": !overridden,
        }));
    }
    Ok(Json(out))
}
