//! What plugins send: hourly heartbeats and real-time telemetry events, both
//! with the merchant's API key and scoped to that merchant.

use super::values::{Cms, Environment, EventType, Severity};
use super::{check_len, parse_version};
use crate::auth::Merchant;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::rate_limit::InstallKey;
use crate::redact::{redact_json, redact_text};
use crate::store::{EventRecord, HeartbeatRecord, ToggleKey};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Plugins of any release may send fields this server does not know yet, so
/// unknown fields are ignored here (unlike Ops requests).
#[derive(Deserialize)]
pub struct HeartbeatRequest {
    merchant_id: Option<Uuid>,
    cms: Cms,
    site_url: Option<String>,
    plugin_version: String,
    sdk_language: Option<String>,
    errors_last_hour: Option<f64>,
    environment: Option<Environment>,
    php_version: Option<String>,
    wordpress_version: Option<String>,
    server_info: Option<Map<String, Value>>,
    /// Config and schema as the plugin reports them; the healing loop
    /// snapshots this before any patch.
    state: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
pub struct EventRequest {
    merchant_id: Option<Uuid>,
    cms: Cms,
    site_url: Option<String>,
    event_type: EventType,
    severity: Option<Severity>,
    event_data: Option<Map<String, Value>>,
    message: Option<String>,
    stack_trace: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// The body's merchant_id, if any, must be the key's own.
fn check_merchant(merchant: &Merchant, claimed: Option<Uuid>) -> Result<(), ApiError> {
    match claimed {
        Some(claimed) if claimed != merchant.merchant_id => Err(ApiError::Forbidden {
            message: "merchant_id is not the merchant of this API key".to_owned(),
            field: Some("merchant_id".to_owned()),
        }),
        _ => Ok(()),
    }
}

/// `https://shop.example/` and `https://shop.example` name the same site.
fn normalize_site_url(site_url: Option<String>) -> Result<String, ApiError> {
    let Some(site_url) = site_url else {
        return Ok(String::new());
    };
    let trimmed = site_url.trim().trim_end_matches('/');
    check_len("site_url", trimmed, 2048)?;
    let is_url = trimmed.starts_with("https://") || trimmed.starts_with("http://");
    if !trimmed.is_empty() && !is_url {
        return Err(ApiError::invalid("site_url", "must be an http(s) URL"));
    }
    Ok(trimmed.to_owned())
}

fn check_optional_len(
    field: &str,
    value: &Option<String>,
    max_chars: usize,
) -> Result<(), ApiError> {
    value
        .as_deref()
        .map_or(Ok(()), |value| check_len(field, value, max_chars))
}

fn rate_limited(state: &AppState, key: &InstallKey) -> Result<(), ApiError> {
    state
        .rate_limiter
        .check(key)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
}

pub async fn heartbeat(
    State(state): State<AppState>,
    merchant: Merchant,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    let answer = record_heartbeat(&state, merchant, request).await;
    state.heartbeat_latency.observe(started.elapsed());
    answer
}

async fn record_heartbeat(
    state: &AppState,
    merchant: Merchant,
    request: HeartbeatRequest,
) -> Result<Json<Value>, ApiError> {
    check_merchant(&merchant, request.merchant_id)?;
    let version = parse_version("plugin_version", &request.plugin_version)?;
    let errors_last_hour = request.errors_last_hour.unwrap_or(0.0);
    if !errors_last_hour.is_finite() || errors_last_hour < 0.0 {
        return Err(ApiError::invalid(
            "errors_last_hour",
            "must be a number ≥ 0",
        ));
    }
    check_optional_len("sdk_language", &request.sdk_language, 32)?;
    check_optional_len("php_version", &request.php_version, 64)?;
    check_optional_len("wordpress_version", &request.wordpress_version, 64)?;
    let key = InstallKey {
        merchant_id: merchant.merchant_id,
        cms: request.cms.as_str().to_owned(),
        site_url: normalize_site_url(request.site_url)?,
    };
    rate_limited(state, &key)?;
    let record = HeartbeatRecord {
        merchant_id: merchant.merchant_id,
        cms: key.cms.clone(),
        site_url: key.site_url.clone(),
        plugin_version: request.plugin_version,
        version_key: crate::version::sort_key(&version),
        sdk_language: request.sdk_language,
        environment: request
            .environment
            .unwrap_or(Environment::Production)
            .as_str()
            .to_owned(),
        php_version: request.php_version,
        wordpress_version: request.wordpress_version,
        server_info: request.server_info.map(Value::Object),
        state: request.state.map(Value::Object),
        errors_last_hour,
    };
    let flag_context = crate::flags::install_context(merchant.merchant_id, &record);
    let outcome = state
        .store
        .record_heartbeat(record, state.clock.now())
        .await?;

    let mut toggles: Map<String, Value> = ToggleKey::ALL
        .iter()
        .map(|key| (key.as_str().to_owned(), key.default_value()))
        .collect();
    toggles.extend(outcome.toggles);
    let per_minute = toggles
        .get(ToggleKey::RateLimit.as_str())
        .and_then(Value::as_u64)
        .and_then(|limit| u32::try_from(limit).ok());
    state
        .rate_limiter
        .learn(key, outcome.installation_id, per_minute);
    // In-app upgrade notices stay in every heartbeat answer until acknowledged.
    let waiting = state
        .pending_notices
        .may_have(&state.store, outcome.installation_id)
        .await?;
    let pending = if waiting {
        state.store.pending_in_app(outcome.installation_id).await?
    } else {
        Vec::new()
    };
    let notices: Vec<Value> = pending
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id, "priority": n.priority, "subject": n.subject,
                "current_version": n.current_version, "target_version": n.target_version,
                "security": n.security, "created_at": n.created_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "status": "ok",
        "installation_id": outcome.installation_id,
        "toggles": toggles,
        "notices": notices,
        "flags": state.flags.values_for(&flag_context, state.clock.now()),
    })))
}

pub async fn event(
    State(state): State<AppState>,
    merchant: Merchant,
    JsonBody(request): JsonBody<EventRequest>,
) -> Result<Json<Value>, ApiError> {
    check_merchant(&merchant, request.merchant_id)?;
    check_optional_len("message", &request.message, 8 * 1024)?;
    check_optional_len("stack_trace", &request.stack_trace, 64 * 1024)?;
    let key = InstallKey {
        merchant_id: merchant.merchant_id,
        cms: request.cms.as_str().to_owned(),
        site_url: normalize_site_url(request.site_url)?,
    };
    rate_limited(&state, &key)?;
    let mut event_data = Value::Object(request.event_data.unwrap_or_default());
    redact_json(&mut event_data);
    let record = EventRecord {
        merchant_id: merchant.merchant_id,
        cms: key.cms,
        site_url: key.site_url,
        event_type: request.event_type.as_str().to_owned(),
        severity: request
            .severity
            .unwrap_or_else(|| request.event_type.default_severity())
            .as_str()
            .to_owned(),
        event_data,
        message: request.message.as_deref().map(redact_text),
        stack_trace: request.stack_trace.as_deref().map(redact_text),
        occurred_at: request.occurred_at.map(crate::clock::truncate_to_micros),
    };
    let outcome = state.store.record_event(record, state.clock.now()).await?;
    Ok(Json(json!({
        "status": "ok",
        "event_id": outcome.event_id,
        "installation_id": outcome.installation_id,
        "blocked": outcome.install_blocked,
    })))
}
