//! Delivery and notifications over HTTP: Ops' view of the outbox (counts, the breakers per
//! destination, the messages — the dead letters with `status=dead` — and the retry of a dead
//! letter); upgrade notifications (seed 000), which Ops send and plugins and merchants
//! acknowledge.

use super::{OutboxMessage, Service};
use crate::auth::{Merchant, Ops, Permission};
use crate::error::ApiError;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::page;
use crate::values::closed_set;
use crate::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plugins/{id}/notify-upgrade", post(notify_upgrade))
        .route("/api/v1/plugins/notifications/{id}/ack", post(acknowledge))
        .route("/api/platform/outbox", get(overview))
        .route("/api/platform/outbox/messages", get(messages))
        .route("/api/platform/outbox/messages/{id}/retry", post(retry))
}

/// `GET /api/platform/outbox`: counts by status and every destination's breaker.
async fn overview(State(delivery): State<Arc<Service>>, ops: Ops) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (counts, breakers) = delivery.overview().await?;
    Ok(Json(json!({"counts": counts, "breakers": breakers})))
}

closed_set!(MessageStatus {
    Pending = "pending",
    Delivered = "delivered",
    Dead = "dead",
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    status: Option<MessageStatus>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/platform/outbox/messages?status=dead`: newest first.
async fn messages(
    State(delivery): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<Vec<OutboxMessage>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    let status = query.status.map(MessageStatus::as_str);
    Ok(Json(delivery.messages(status, limit, offset).await?))
}

/// `POST /api/platform/outbox/messages/{id}/retry`: a dead letter is due again; audited.
async fn retry(
    State(delivery): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<OutboxMessage>, ApiError> {
    ops.require(Permission::OutboxManage)?;
    Ok(Json(
        delivery.retry(uuid_param("id", &id)?, &ops.audit()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyRequest {
    channel: String,
}

/// `POST /api/v1/plugins/{id}/notify-upgrade`: a notice of the cms's latest version on the
/// chosen channel, with the priority of seed 000's table; refused (409) when the same
/// version went to this install on this channel within the quiet period.
async fn notify_upgrade(
    State(delivery): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<NotifyRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::NotificationsSend)?;
    let channel = super::notifications::channel(&request.channel)?;
    let id = uuid_param("id", &id)?;
    let notification = delivery.notify_upgrade(id, channel, &ops.audit()).await?;
    Ok(Json(json!({
        "status": "ok",
        "message": "Notification sent",
        "notification": notification,
    })))
}

/// `POST /api/v1/plugins/notifications/{id}/ack` (merchant key, own installs): records
/// `acknowledged_at`; an in-app notice then leaves the heartbeat response. Idempotent.
async fn acknowledge(
    State(delivery): State<Arc<Service>>,
    merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let notification = delivery
        .acknowledge(merchant.merchant_id, uuid_param("id", &id)?)
        .await?;
    Ok(Json(json!({"status": "ok", "notification": notification})))
}
