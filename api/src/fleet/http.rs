//! The fleet over HTTP: what plugins send (hourly heartbeats and real-time telemetry
//! events, with the merchant's API key and scoped to that merchant) and what Ops do with the
//! fleet (list and inspect installations, set and lift toggles, keep the version registry,
//! read the overview).

use super::redact::{redact_json, redact_text};
use super::{
    Cursor, EventRecord, FleetDay, HeartbeatRecord, InstallDay, InstallStatus, InstallationDetail,
    InstallationFilter, InstallationSummary, NewVersion, Overview, Service, Toggle, ToggleChange,
    ToggleKey, VersionEntry,
};
use crate::auth::{Merchant, Ops, Permission};
use crate::error::ApiError;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason, page, parse_version, StatsQuery};
use crate::quotas::EventRate;
use crate::values::closed_set;
use crate::{AppState, Clock};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::Platform;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plugins/heartbeat", post(heartbeat))
        .route("/api/v1/plugins/event", post(event))
        .route("/api/v1/plugins/list", get(list))
        .route("/api/v1/plugins/stats/overview", get(overview))
        .route("/api/v1/plugins/stats/trends", get(trends))
        .route("/api/v1/plugins/{id}/metrics", get(install_metrics))
        .route(
            "/api/v1/plugins/versions",
            get(list_versions).post(register_version),
        )
        .route("/api/v1/plugins/{id}", get(detail))
        .route(
            "/api/v1/plugins/{id}/toggle",
            post(set_toggle).delete(lift_toggle),
        )
        .route("/api/v1/plugins/{id}/properties", patch(change_properties))
}

closed_set!(Environment {
    Production = "production",
    Staging = "staging",
    Development = "development",
    Test = "test",
});

closed_set!(EventType {
    PaymentSuccess = "payment_success",
    PaymentFailed = "payment_failed",
    Error = "error",
    Warning = "warning",
    Info = "info",
});

closed_set!(Severity {
    Debug = "debug",
    Info = "info",
    Warning = "warning",
    Error = "error",
    Critical = "critical",
});

impl EventType {
    /// The severity of an event that does not state one.
    fn default_severity(self) -> Severity {
        match self {
            Self::PaymentSuccess | Self::Info => Severity::Info,
            Self::PaymentFailed | Self::Error => Severity::Error,
            Self::Warning => Severity::Warning,
        }
    }
}

/// Plugins of any release may send fields this server does not know yet, so
/// unknown fields are ignored here (unlike Ops requests).
#[derive(Deserialize)]
struct HeartbeatRequest {
    merchant_id: Option<Uuid>,
    cms: Platform,
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
struct EventRequest {
    merchant_id: Option<Uuid>,
    cms: Platform,
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

async fn heartbeat(
    State(fleet): State<Arc<Service>>,
    merchant: Merchant,
    JsonBody(request): JsonBody<HeartbeatRequest>,
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
    if let Some(state) = &request.state {
        super::state::check_state(state)?;
    }
    let record = HeartbeatRecord {
        merchant_id: merchant.merchant_id,
        cms: request.cms.as_str().to_owned(),
        site_url: normalize_site_url(request.site_url)?,
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
    let answer = fleet.heartbeat(record).await?;
    let notices: Vec<Value> = answer
        .notices
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
        "installation_id": answer.installation_id,
        "toggles": answer.toggles,
        "notices": notices,
        "flags": answer.flags,
    })))
}

async fn event(
    State(fleet): State<Arc<Service>>,
    State(event_rate): State<Arc<EventRate>>,
    merchant: Merchant,
    JsonBody(request): JsonBody<EventRequest>,
) -> Result<Json<Value>, ApiError> {
    check_merchant(&merchant, request.merchant_id)?;
    event_rate.take(merchant.merchant_id)?;
    check_optional_len("message", &request.message, 8 * 1024)?;
    check_optional_len("stack_trace", &request.stack_trace, 64 * 1024)?;
    let site_url = normalize_site_url(request.site_url)?;
    let mut event_data = Value::Object(request.event_data.unwrap_or_default());
    redact_json(&mut event_data);
    let record = EventRecord {
        merchant_id: merchant.merchant_id,
        cms: request.cms.as_str().to_owned(),
        site_url,
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
    let outcome = fleet.event(record).await?;
    Ok(Json(json!({
        "status": "ok",
        "event_id": outcome.event_id,
        "installation_id": outcome.installation_id,
        "blocked": outcome.install_blocked,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<InstallStatus>,
    cms: Option<Platform>,
    plugin_version: Option<String>,
    merchant_id: Option<Uuid>,
    environment: Option<Environment>,
    after: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/list`: a page as a JSON array (the seed's shape), newest heartbeat
/// first. `X-Total-Count` is the number matching the filter (at most `COUNT_CAP` for a
/// filter beyond status and cms, flagged `X-Total-Count-Capped: true`); `Link: <…>;
/// rel="next"` the next page, by cursor (`?after=`), while there is one.
async fn list(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<(HeaderMap, Json<Vec<InstallationSummary>>), ApiError> {
    ops.require(Permission::PluginsRead)?;
    let (limit, offset) = page(query.limit, query.offset)?;
    let after = match query.after.as_deref() {
        None => None,
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ApiError::invalid("after", "expected the cursor of a Link header's next page")
        })?),
    };
    if after.is_some() && query.offset.is_some() {
        return Err(ApiError::invalid(
            "offset",
            "a page is found by after or by offset, not both",
        ));
    }
    let filter = InstallationFilter {
        status: query.status,
        cms: query.cms.map(|cms| cms.as_str().to_owned()),
        plugin_version: query.plugin_version,
        merchant_id: query.merchant_id,
        environment: query
            .environment
            .map(|environment| environment.as_str().to_owned()),
        after,
        limit,
        offset,
    };
    let page = fleet.list(&filter).await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(page.total.count));
    if page.total.capped {
        headers.insert("x-total-count-capped", HeaderValue::from_static("true"));
    }
    if let Some(next) = page.next {
        headers.insert("link", next_link(&filter, next));
    }
    Ok((headers, Json(page.rows)))
}

/// The `Link` header of the page after `next`: the same filter and limit.
fn next_link(filter: &InstallationFilter, next: Cursor) -> HeaderValue {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let pairs = [
        ("status", filter.status.map(InstallStatus::as_str)),
        ("cms", filter.cms.as_deref()),
        ("plugin_version", filter.plugin_version.as_deref()),
        ("environment", filter.environment.as_deref()),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    if let Some(merchant_id) = filter.merchant_id {
        query.append_pair("merchant_id", &merchant_id.to_string());
    }
    query.append_pair("limit", &filter.limit.to_string());
    query.append_pair("after", &next.encode());
    HeaderValue::try_from(format!(
        "</api/v1/plugins/list?{}>; rel=\"next\"",
        query.finish()
    ))
    .expect("a URL-encoded query is a valid header value")
}

async fn detail(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<InstallationDetail>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(fleet.detail(uuid_param("id", &id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToggleRequest {
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

async fn set_toggle(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ToggleRequest>,
) -> Result<Json<Toggle>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
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
    let change = ToggleChange {
        installation_id,
        key: request.toggle_key,
        value: request.toggle_value,
        reason,
        expires_at: request.expires_at.map(crate::clock::truncate_to_micros),
    };
    Ok(Json(
        fleet.set_toggle(&change, rate_limit, &ops.audit()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiftQuery {
    toggle_key: ToggleKey,
    reason: Option<String>,
}

/// `DELETE /api/v1/plugins/{id}/toggle?toggle_key=…&reason=…`
async fn lift_toggle(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<LiftQuery>,
) -> Result<Json<Toggle>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
    if let Some(reason) = &query.reason {
        check_len("reason", reason, 1_000)?;
    }
    let lifted = fleet
        .lift_toggle(
            installation_id,
            query.toggle_key,
            query.reason.as_deref(),
            &ops.audit(),
        )
        .await?;
    Ok(Json(lifted))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertiesRequest {
    properties: Map<String, Value>,
    reason: String,
}

/// `PATCH /api/v1/plugins/{id}/properties`: sets the named properties, removes those given
/// as null, and answers the install's properties as they now are.
async fn change_properties(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<PropertiesRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
    super::properties::check_changes(&request.properties)?;
    let reason = check_reason(&request.reason)?;
    let properties = fleet
        .change_properties(installation_id, &request.properties, &reason, &ops.audit())
        .await?;
    Ok(Json(
        json!({"id": installation_id, "properties": properties}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRequest {
    cms: Platform,
    version: String,
    #[serde(default)]
    is_latest: bool,
    #[serde(default)]
    security: bool,
    min_supported: Option<String>,
    release_notes: Option<String>,
}

async fn register_version(
    State(fleet): State<Arc<Service>>,
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
    let (entry, created) = fleet.register_version(&new, &ops.audit()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsQuery {
    cms: Option<Platform>,
}

async fn list_versions(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<VersionsQuery>,
) -> Result<Json<Vec<VersionEntry>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(fleet.versions(query.cms.map(Platform::as_str)).await?))
}

/// `GET /api/v1/plugins/stats/overview`: the seed's fields, exact at the request but for
/// the two error-rate figures, whose time is in `X-Error-Rates-As-Of`.
async fn overview(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
) -> Result<(HeaderMap, Json<Overview>), ApiError> {
    ops.require(Permission::PluginsRead)?;
    let overview = fleet.overview().await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-error-rates-as-of",
        HeaderValue::try_from(overview.error_rates_as_of.to_rfc3339())
            .expect("an RFC 3339 time is a valid header value"),
    );
    Ok((headers, Json(overview)))
}

/// `GET /api/v1/plugins/stats/trends?days=30`: the fleet's figures per recorded day, oldest
/// first (what the console's charts draw).
async fn trends(
    State(fleet): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<Vec<FleetDay>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let since = query.since(clock.now())?.date_naive();
    Ok(Json(fleet.trends(since).await?))
}

/// `GET /api/v1/plugins/{id}/metrics?days=30`: the install's figures per recorded day,
/// oldest first.
async fn install_metrics(
    State(fleet): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<Vec<InstallDay>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let since = query.since(clock.now())?.date_naive();
    Ok(Json(
        fleet.install_metrics(uuid_param("id", &id)?, since).await?,
    ))
}
