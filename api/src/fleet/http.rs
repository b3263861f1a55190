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
use crate::delivery::Notification;
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason, page, parse_version, StatsQuery};
use crate::openapi::PlatformName;
use crate::quotas::EventRate;
use crate::values::closed_set;
use crate::{AppState, Clock};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
        .routes(routes!(heartbeat))
        .routes(routes!(event))
        .routes(routes!(list))
        .routes(routes!(overview))
        .routes(routes!(trends))
        .routes(routes!(install_metrics))
        .routes(routes!(list_versions, register_version))
        .routes(routes!(detail))
        .routes(routes!(set_toggle, lift_toggle))
        .routes(routes!(change_properties))
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
#[derive(Deserialize, ToSchema)]
struct HeartbeatRequest {
    /// The key's own merchant, if given.
    merchant_id: Option<Uuid>,
    #[schema(value_type = PlatformName)]
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
    /// snapshots this before any patch (`GET /api/v1/schemas/state.json`).
    state: Option<Map<String, Value>>,
}

/// What a heartbeat is answered with.
#[derive(Serialize, ToSchema)]
struct HeartbeatResponse {
    /// `ok`.
    status: &'static str,
    installation_id: Uuid,
    /// Every toggle key with its active, unexpired value (`false` or `null` when unset).
    toggles: Map<String, Value>,
    /// In-app upgrade notices not acknowledged yet.
    notices: Vec<NoticeView>,
    /// The value of every `plugins` feature flag for this install.
    flags: Map<String, Value>,
}

/// An in-app upgrade notice, as the heartbeat carries it.
#[derive(Serialize, ToSchema)]
struct NoticeView {
    id: Uuid,
    priority: String,
    subject: String,
    current_version: String,
    target_version: String,
    security: bool,
    created_at: DateTime<Utc>,
}

impl From<Notification> for NoticeView {
    fn from(n: Notification) -> Self {
        NoticeView {
            id: n.id,
            priority: n.priority,
            subject: n.subject,
            current_version: n.current_version,
            target_version: n.target_version,
            security: n.security,
            created_at: n.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
struct EventRequest {
    merchant_id: Option<Uuid>,
    #[schema(value_type = PlatformName)]
    cms: Platform,
    site_url: Option<String>,
    event_type: EventType,
    severity: Option<Severity>,
    event_data: Option<Map<String, Value>>,
    message: Option<String>,
    stack_trace: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

/// What a telemetry event is answered with.
#[derive(Serialize, ToSchema)]
struct EventResponse {
    /// `ok`.
    status: &'static str,
    event_id: Uuid,
    /// Null before the install's first heartbeat (the event is still kept).
    installation_id: Option<Uuid>,
    /// The install is blocked (the event is stored all the same).
    blocked: bool,
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

/// A plugin's heartbeat: an idempotent upsert of the install (merchant, `cms`, `site_url`).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/heartbeat",
    tag = "fleet",
    security(("merchant_key" = [])),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Recorded", body = HeartbeatResponse),
        (status = 429, description = "The install's `rate_limit` toggle, or the merchant's install quota", body = ErrorEnvelope),
    )
)]
async fn heartbeat(
    State(fleet): State<Arc<Service>>,
    merchant: Merchant,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
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
    Ok(Json(HeartbeatResponse {
        status: "ok",
        installation_id: answer.installation_id,
        toggles: answer.toggles,
        notices: answer.notices.into_iter().map(NoticeView::from).collect(),
        flags: answer.flags,
    }))
}

/// A plugin's telemetry event, redacted before it is stored.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/event",
    tag = "fleet",
    security(("merchant_key" = [])),
    request_body = EventRequest,
    responses(
        (status = 200, description = "Recorded", body = EventResponse),
        (status = 429, description = "The install's `rate_limit` toggle, or the merchant's event rate", body = ErrorEnvelope),
    )
)]
async fn event(
    State(fleet): State<Arc<Service>>,
    State(event_rate): State<Arc<EventRate>>,
    merchant: Merchant,
    JsonBody(request): JsonBody<EventRequest>,
) -> Result<Json<EventResponse>, ApiError> {
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
    Ok(Json(EventResponse {
        status: "ok",
        event_id: outcome.event_id,
        installation_id: outcome.installation_id,
        blocked: outcome.install_blocked,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(inline)]
    status: Option<InstallStatus>,
    #[param(value_type = Option<PlatformName>)]
    cms: Option<Platform>,
    plugin_version: Option<String>,
    merchant_id: Option<Uuid>,
    #[param(inline)]
    environment: Option<Environment>,
    /// Text the site URL or the merchant's name contains, in any case (1–200 characters).
    /// A search reads more than a filter (README, "The Ops console"), and its
    /// `X-Total-Count` counts only the rows up to this page's end, with
    /// `X-Total-Count-Capped: true` while a next page exists.
    search: Option<String>,
    /// The cursor of a `Link` header's next page (not with `offset`).
    after: Option<String>,
    /// Rows per page: 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/list`: a page as a JSON array (the seed's shape), newest heartbeat
/// first. `X-Total-Count` is the number matching the filter (at most `COUNT_CAP` for a
/// filter beyond status and cms, flagged `X-Total-Count-Capped: true`); `Link: <…>;
/// rel="next"` the next page, by cursor (`?after=`), while there is one.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/list",
    tag = "fleet",
    security(("ops_token" = [])),
    params(ListQuery),
    responses((
        status = 200,
        description = "A page, newest heartbeat first",
        body = Vec<InstallationSummary>,
        headers(
            ("x-total-count" = i64, description = "Rows matching the filter (capped at 10,000 beyond status and cms)"),
            ("link" = String, description = "`<…>; rel=\"next\"` while more rows follow"),
        ),
    ))
)]
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
        search: search_text(query.search)?,
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

/// A search's text, trimmed and checked; None when blank.
pub(crate) fn search_text(search: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(search) = search.map(|text| text.trim().to_owned()) else {
        return Ok(None);
    };
    if search.is_empty() {
        return Ok(None);
    }
    check_len("search", &search, 200)?;
    Ok(Some(search))
}

/// The `Link` header of the page after `next`: the same filter and limit.
fn next_link(filter: &InstallationFilter, next: Cursor) -> HeaderValue {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let pairs = [
        ("status", filter.status.map(InstallStatus::as_str)),
        ("cms", filter.cms.as_deref()),
        ("plugin_version", filter.plugin_version.as_deref()),
        ("environment", filter.environment.as_deref()),
        ("search", filter.search.as_deref()),
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

/// An installation: the list's fields, its reported facts and state, properties, recent
/// events and active toggles.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{id}",
    tag = "fleet",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation")),
    responses(
        (status = 200, description = "The installation", body = InstallationDetail),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
    )
)]
async fn detail(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<InstallationDetail>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(fleet.detail(uuid_param("id", &id)?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ToggleRequest {
    toggle_key: ToggleKey,
    /// A boolean; for `rate_limit`, requests per minute (1–1,000,000).
    toggle_value: Value,
    reason: String,
    expires_at: Option<DateTime<Utc>>,
    /// Accepted for the seed's dashboard; the actor is always the token's
    /// agent, so another id here is refused.
    updated_by: Option<Uuid>,
}

/// Checks a toggle's value: a boolean, or for `rate_limit` requests per
/// minute (1–1,000,000).
pub(crate) fn toggle_value(key: ToggleKey, value: &Value) -> Result<Option<u32>, ApiError> {
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

/// Sets a toggle on an installation, replacing the key's previous one; audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{id}/toggle",
    tag = "fleet",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation")),
    request_body = ToggleRequest,
    responses(
        (status = 200, description = "The toggle in force", body = Toggle),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
    )
)]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LiftQuery {
    #[param(inline)]
    toggle_key: ToggleKey,
    reason: Option<String>,
}

/// `DELETE /api/v1/plugins/{id}/toggle?toggle_key=…&reason=…`: lifts the active toggle;
/// audited.
#[utoipa::path(
    delete,
    path = "/api/v1/plugins/{id}/toggle",
    tag = "fleet",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation"), LiftQuery),
    responses(
        (status = 200, description = "The toggle lifted", body = Toggle),
        (status = 404, description = "No such installation or no such active toggle", body = ErrorEnvelope),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PropertiesRequest {
    /// Identifier → boolean, number or string (≤ 256 characters); `null` removes it.
    properties: Map<String, Value>,
    reason: String,
}

/// An install's properties as they are after a change.
#[derive(Serialize, ToSchema)]
struct PropertiesResponse {
    id: Uuid,
    properties: Map<String, Value>,
}

/// `PATCH /api/v1/plugins/{id}/properties`: sets the named properties, removes those given
/// as null, and answers the install's properties as they now are; audited.
#[utoipa::path(
    patch,
    path = "/api/v1/plugins/{id}/properties",
    tag = "fleet",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation")),
    request_body = PropertiesRequest,
    responses(
        (status = 200, description = "The install's properties", body = PropertiesResponse),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
    )
)]
async fn change_properties(
    State(fleet): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<PropertiesRequest>,
) -> Result<Json<PropertiesResponse>, ApiError> {
    ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
    super::properties::check_changes(&request.properties)?;
    let reason = check_reason(&request.reason)?;
    let properties = fleet
        .change_properties(installation_id, &request.properties, &reason, &ops.audit())
        .await?;
    Ok(Json(PropertiesResponse {
        id: installation_id,
        properties,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VersionRequest {
    #[schema(value_type = PlatformName)]
    cms: Platform,
    version: String,
    #[serde(default)]
    is_latest: bool,
    #[serde(default)]
    security: bool,
    min_supported: Option<String>,
    release_notes: Option<String>,
}

/// Registers a plugin version (marking one latest unmarks the previous); audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/versions",
    tag = "fleet",
    security(("ops_token" = [])),
    request_body = VersionRequest,
    responses(
        (status = 201, description = "A new version", body = VersionEntry),
        (status = 200, description = "A known version, updated", body = VersionEntry),
    )
)]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VersionsQuery {
    #[param(value_type = Option<PlatformName>)]
    cms: Option<Platform>,
}

/// The version registry, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/versions",
    tag = "fleet",
    security(("ops_token" = [])),
    params(VersionsQuery),
    responses((status = 200, description = "Newest first", body = Vec<VersionEntry>))
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/plugins/stats/overview",
    tag = "fleet",
    security(("ops_token" = [])),
    responses((
        status = 200,
        description = "The overview",
        body = Overview,
        headers(("x-error-rates-as-of" = String, description = "When the two error-rate figures were computed (RFC 3339)")),
    ))
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/plugins/stats/trends",
    tag = "fleet",
    security(("ops_token" = [])),
    params(StatsQuery),
    responses((status = 200, description = "Oldest first", body = Vec<FleetDay>))
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{id}/metrics",
    tag = "fleet",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The installation"), StatsQuery),
    responses(
        (status = 200, description = "Oldest first", body = Vec<InstallDay>),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
    )
)]
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
