//! Upgrade notifications over HTTP (seed 000): Ops send one on a channel; plugins and
//! merchants acknowledge it.

use crate::auth::{Merchant, Ops, Permission};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::notifications::{priority, Notice, CHANNELS};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    channel: String,
}

fn uuid(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// `POST /api/v1/plugins/{id}/notify-upgrade`: a notice of the cms's latest version on the
/// chosen channel, with the priority of seed 000's table; refused (409) when the same
/// version went to this install on this channel within the quiet period.
pub async fn notify_upgrade(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<NotifyRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::NotificationsSend)?;
    let Some(channel) = CHANNELS.into_iter().find(|c| *c == request.channel) else {
        return Err(ApiError::invalid(
            "channel",
            format!("must be one of {}", CHANNELS.join(", ")),
        ));
    };
    let id = uuid("id", &id)?;
    let target = state
        .store
        .notification_target(id)
        .await?
        .ok_or(ApiError::NotFound {
            what: "installation",
        })?;
    let latest = state
        .store
        .list_versions(Some(&target.cms))
        .await?
        .into_iter()
        .find(|v| v.is_latest)
        .ok_or_else(|| ApiError::Conflict {
            message: format!("no latest version is registered for {}", target.cms),
        })?;
    let current = crate::version::parse_or_lowest(&target.plugin_version);
    let newest = crate::version::parse_or_lowest(&latest.version);
    if newest <= current {
        return Err(ApiError::Conflict {
            message: format!(
                "the install already runs {} (latest {})",
                target.plugin_version, latest.version
            ),
        });
    }
    let now = state.clock.now();
    let config = &state.notifications;
    if let Some(previous) = state
        .store
        .recent_notification(id, &latest.version, channel, now - config.quiet_period)
        .await?
    {
        return Err(ApiError::Conflict {
            message: format!(
                "{} {} was sent to this install on {channel} at {} (quiet period {} h)",
                target.cms,
                latest.version,
                previous.created_at.to_rfc3339(),
                config.quiet_period.num_hours()
            ),
        });
    }
    let (priority, _) = priority(&current, &newest, latest.security);
    let notice = Notice {
        target: &target,
        latest_version: &latest.version,
        release_notes: &latest.release_notes,
        priority,
        security: latest.security,
        upgrade_url: format!(
            "{}/{}",
            config.upgrade_url_base.trim_end_matches('/'),
            target.installation_id
        ),
    };
    let new = notice
        .on(channel, config, false)
        .map_err(|reason| ApiError::invalid("channel", reason))?;
    let stored = state
        .store
        .record_notifications(&target, &[new], Some(&ops.audit()), now)
        .await?;
    if channel == "in-app" {
        state.pending_notices.add(target.installation_id);
    }
    Ok(Json(json!({
        "status": "ok",
        "message": "Notification sent",
        "notification": stored.first(),
    })))
}

/// `POST /api/v1/plugins/notifications/{id}/ack` (merchant key, own installs): records
/// `acknowledged_at`; an in-app notice then leaves the heartbeat response. Idempotent.
pub async fn acknowledge(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid("id", &id)?;
    let owned = state
        .store
        .notification(id)
        .await?
        .filter(|n| n.merchant_id == merchant.merchant_id)
        .ok_or(ApiError::NotFound {
            what: "notification",
        })?;
    let acknowledged = state
        .store
        .acknowledge_notification(owned.id, state.clock.now())
        .await?;
    Ok(Json(json!({"status": "ok", "notification": acknowledged})))
}
