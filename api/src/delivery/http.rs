//! Delivery and notifications over HTTP: Ops' view of the outbox (counts, the breakers per
//! destination, the messages — the dead letters with `status=dead` — and the retry of a dead
//! letter); upgrade notifications (seed 000), which Ops send and plugins and merchants
//! acknowledge.

use super::outbox::Breaker;
use super::{Notification, OutboxCounts, OutboxMessage, Service};
use crate::auth::{Merchant, Ops, Permission};
use crate::error::{ApiError, ErrorEnvelope};
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::page;
use crate::values::closed_set;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(notify_upgrade))
        .routes(routes!(acknowledge))
        .routes(routes!(overview))
        .routes(routes!(messages))
        .routes(routes!(retry))
}

/// The outbox at a glance.
#[derive(Serialize, ToSchema)]
struct OutboxOverview {
    counts: OutboxCounts,
    breakers: Vec<Breaker>,
}

/// `GET /api/platform/outbox`: counts by status and every destination's breaker.
#[utoipa::path(
    get,
    path = "/api/platform/outbox",
    tag = "delivery",
    security(("ops_token" = [])),
    responses((status = 200, description = "Counts and breakers", body = OutboxOverview))
)]
async fn overview(
    State(delivery): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<OutboxOverview>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (counts, breakers) = delivery.overview().await?;
    Ok(Json(OutboxOverview { counts, breakers }))
}

closed_set!(MessageStatus {
    Pending = "pending",
    Delivered = "delivered",
    Dead = "dead",
});

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    #[param(inline)]
    status: Option<MessageStatus>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `GET /api/platform/outbox/messages?status=dead`: newest first.
#[utoipa::path(
    get,
    path = "/api/platform/outbox/messages",
    tag = "delivery",
    security(("ops_token" = [])),
    params(MessagesQuery),
    responses((status = 200, description = "Newest first", body = Vec<OutboxMessage>))
)]
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
#[utoipa::path(
    post,
    path = "/api/platform/outbox/messages/{id}/retry",
    tag = "delivery",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The message")),
    responses(
        (status = 200, description = "Due again, attempts reset", body = OutboxMessage),
        (status = 404, description = "No such message", body = ErrorEnvelope),
        (status = 409, description = "The message is not a dead letter", body = ErrorEnvelope),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NotifyRequest {
    /// `email`, `in-app`, `webhook`, `sms` or `slack`.
    channel: String,
}

/// What a notification request or ack is answered with.
#[derive(Serialize, ToSchema)]
struct NotificationResponse {
    /// `ok`.
    status: &'static str,
    /// `Notification sent` (a request only).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    notification: Notification,
}

/// `POST /api/v1/plugins/{id}/notify-upgrade`: a notice of the cms's latest version on the
/// chosen channel, with the priority of seed 000's table; refused (409) when the same
/// version went to this install on this channel within the quiet period.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/notify-upgrade",
    tag = "delivery",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation")),
    request_body = NotifyRequest,
    responses(
        (status = 200, description = "Sent (or queued in the outbox)", body = NotificationResponse),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
        (status = 409, description = "No newer version is registered, or the quiet period holds", body = ErrorEnvelope),
    )
)]
async fn notify_upgrade(
    State(delivery): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<NotifyRequest>,
) -> Result<Json<NotificationResponse>, ApiError> {
    ops.require(Permission::NotificationsSend)?;
    let channel = super::notifications::channel(&request.channel)?;
    let id = uuid_param("id", &id)?;
    let notification = delivery.notify_upgrade(id, channel, &ops.audit()).await?;
    Ok(Json(NotificationResponse {
        status: "ok",
        message: Some("Notification sent"),
        notification,
    }))
}

/// `POST /api/v1/plugins/notifications/{id}/ack` (merchant key, own installs): records
/// `acknowledged_at`; an in-app notice then leaves the heartbeat response. Idempotent.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/notifications/{id}/ack",
    tag = "delivery",
    security(("merchant_key" = [])),
    params(("id" = Uuid, Path, description = "The notification")),
    responses(
        (status = 200, description = "Acknowledged", body = NotificationResponse),
        (status = 404, description = "No such notification of this merchant's", body = ErrorEnvelope),
    )
)]
async fn acknowledge(
    State(delivery): State<Arc<Service>>,
    merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<NotificationResponse>, ApiError> {
    let notification = delivery
        .acknowledge(merchant.merchant_id, uuid_param("id", &id)?)
        .await?;
    Ok(Json(NotificationResponse {
        status: "ok",
        message: None,
        notification,
    }))
}
