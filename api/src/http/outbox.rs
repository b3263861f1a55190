//! Ops' view of outbound delivery: counts, the breakers per destination, the messages (the
//! dead letters with `status=dead`) and the retry of a dead letter.

use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::store::OutboxMessage;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// `GET /api/platform/outbox`: counts by status and every destination's breaker.
pub async fn overview(State(state): State<AppState>, ops: Ops) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let counts = state.store.outbox_counts().await?;
    Ok(Json(
        json!({"counts": counts, "breakers": state.outbox.breakers()}),
    ))
}

super::values::closed_set!(MessageStatus {
    Pending = "pending",
    Delivered = "delivered",
    Dead = "dead",
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    status: Option<MessageStatus>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/platform/outbox/messages?status=dead`: newest first.
pub async fn messages(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<Vec<OutboxMessage>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = super::page(query.limit, query.offset)?;
    let status = query.status.map(MessageStatus::as_str);
    Ok(Json(state.store.list_outbox(status, limit, offset).await?))
}

/// `POST /api/platform/outbox/messages/{id}/retry`: a dead letter is due again; audited.
pub async fn retry(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<OutboxMessage>, ApiError> {
    ops.require(Permission::OutboxManage)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", "must be a UUID"))?;
    state
        .store
        .retry_dead_letter(id, &ops.audit(), state.clock.now())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            what: "dead letter",
        })
}
