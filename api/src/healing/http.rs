//! The healing loop over HTTP (seed 001): Sira's detections, Ops review and rollback, the
//! plugin's command poll, ack and bundle download, logs, stats, the patch registry and the
//! per-rule breakers.

use super::patches::RegistryStatus;
use super::{
    BreakerScope, Command, DetectionSource, HealingLog, HealingLogFilter, HealingStats,
    HealingStatus, IssueSeverity, NewDetection, PatchType, RuleBreaker, Service,
};
use crate::auth::{Merchant, Ops, Permission, Sira};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason, days_ago, page, StatsQuery};
use crate::openapi::PlatformName;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::Platform;
use host::command::RefusalReason;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(detect))
        .routes(routes!(logs))
        .routes(routes!(stats))
        .routes(routes!(patches))
        .routes(routes!(breakers))
        .routes(routes!(resume_rule))
        .routes(routes!(poll_commands))
        .routes(routes!(ack))
        .routes(routes!(bundle))
        .routes(routes!(log_detail))
        .routes(routes!(apply))
        .routes(routes!(reject))
        .routes(routes!(rollback))
}

/// Where plugins download a signed bundle (the route of [`bundle`]).
const BUNDLE_ROUTE: &str = "/api/v1/plugins/autoheal/bundles/{name}/{version}";

/// The download address of bundle `name` `version`, as a command names it.
pub(super) fn bundle_url(name: &str, version: &str) -> String {
    BUNDLE_ROUTE
        .replace("{name}", name)
        .replace("{version}", version)
}

/// Sira's detection. Unknown fields are ignored: Sira may send more than this server reads.
#[derive(Deserialize, ToSchema)]
struct DetectionRequest {
    plugin_id: Uuid,
    detected_issue: String,
    issue_severity: Option<IssueSeverity>,
    patch_type: Option<PatchType>,
    proposed_patch: Option<Map<String, Value>>,
    /// 0–100.
    sira_confidence: f64,
    /// Or the `Idempotency-Key` header (they must agree).
    idempotency_key: Option<String>,
}

/// What a detection is answered with: what became of it, and its log.
#[derive(Serialize, ToSchema)]
struct DetectionResponse {
    /// `applied`, `pending_review`, `rejected`, `failed` or `not_needed` (the first answer's).
    status: &'static str,
    /// A retry with the same key only: the log's status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_status: Option<&'static str>,
    log: HealingLog,
    /// A retry with the same key only: `true`, nothing was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<bool>,
}

/// The idempotency key from the body or the `Idempotency-Key` header (they must agree).
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid(
                "idempotency_key",
                "differs from the Idempotency-Key header",
            ))
        }
        (h, b) => h.or(b),
    };
    if let Some(key) = &key {
        if key.is_empty() {
            return Err(ApiError::invalid("idempotency_key", "must not be empty"));
        }
        check_len("idempotency_key", key, 200)?;
    }
    Ok(key)
}

/// `POST /api/v1/plugins/autoheal`: decide, and for an auto-applied patch dry-run it
/// against the install's snapshot and queue the command. 201 with the log; a retry with
/// the same idempotency key answers 200 with the same log and records nothing.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal",
    tag = "healing",
    security(("sira_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "The detection's idempotency key (or `idempotency_key` in the body)")),
    request_body = DetectionRequest,
    responses(
        (status = 201, description = "Decided and recorded", body = DetectionResponse),
        (status = 200, description = "A retry with the same key: the first log, nothing recorded", body = DetectionResponse),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
        (status = 409, description = "The key was used for a different detection", body = ErrorEnvelope),
    )
)]
async fn detect(
    State(healing): State<Arc<Service>>,
    _sira: Sira,
    headers: HeaderMap,
    JsonBody(request): JsonBody<DetectionRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers, request.idempotency_key)?;
    if request.detected_issue.trim().is_empty() {
        return Err(ApiError::invalid("detected_issue", "must not be empty"));
    }
    check_len("detected_issue", &request.detected_issue, 8 * 1024)?;
    if !(0.0..=100.0).contains(&request.sira_confidence) {
        return Err(ApiError::invalid(
            "sira_confidence",
            "must be a number from 0 to 100",
        ));
    }
    let detected = healing
        .detect(NewDetection {
            plugin_id: request.plugin_id,
            detected_issue: request.detected_issue,
            issue_severity: request.issue_severity,
            patch_type: request.patch_type,
            proposed_patch: request.proposed_patch,
            sira_confidence: request.sira_confidence,
            idempotency_key,
            source: DetectionSource::Sira,
            raised_by: None,
        })
        .await?;
    let status = detected.status();
    let response = if detected.replayed {
        let body = DetectionResponse {
            status,
            current_status: Some(detected.current_status()),
            log: detected.log,
            replayed: Some(true),
        };
        (StatusCode::OK, Json(body))
    } else {
        let body = DetectionResponse {
            status,
            current_status: None,
            log: detected.log,
            replayed: None,
        };
        (StatusCode::CREATED, Json(body))
    };
    Ok(response.into_response())
}

/// One healing log: the decision, the patch, snapshot, operations, failure, review and
/// rollback.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/{id}",
    tag = "healing",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The healing log")),
    responses(
        (status = 200, description = "The log", body = HealingLog),
        (status = 404, description = "No such log", body = ErrorEnvelope),
    )
)]
async fn log_detail(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<HealingLog>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.log(uuid_param("id", &id)?).await?))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    /// An edited patch: `{"name", "params"}`, or the seed's `{"type", "target", "value"}` /
    /// `{"action", …params}`.
    patch: Option<Map<String, Value>>,
}

/// What an Ops action on a log is answered with.
#[derive(Serialize, ToSchema)]
struct ReviewResponse {
    /// `ok`; for an approval, `failed` when its dry run failed and `not_needed` when it
    /// planned nothing.
    status: &'static str,
    message: String,
    log: HealingLog,
}

/// `POST /api/v1/plugins/autoheal/{id}/apply`: Ops approve a pending patch, optionally
/// edited (re-validated against the patch's parameter schema by a new dry run); audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal/{id}/apply",
    tag = "healing",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The healing log")),
    request_body(content = Option<ApplyRequest>, description = "Optional: an empty body approves the patch as it is"),
    responses(
        (status = 200, description = "Approved and queued, or `failed` when the new dry run failed", body = ReviewResponse),
        (status = 404, description = "No such log", body = ErrorEnvelope),
        (status = 409, description = "The log is not pending review", body = ErrorEnvelope),
    )
)]
async fn apply(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    body: Option<JsonBody<ApplyRequest>>,
) -> Result<Json<ReviewResponse>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let id = uuid_param("id", &id)?;
    let request = body.map(|JsonBody(b)| b).unwrap_or_default();
    let log = healing
        .approve(id, request.patch.as_ref(), &ops.audit())
        .await?;
    let (status, message) = log.approval_outcome();
    Ok(Json(ReviewResponse {
        status,
        message,
        log,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonRequest {
    /// Why (it goes to the audit log): 1–1,000 characters.
    reason: String,
}

/// `POST /api/v1/plugins/autoheal/{id}/reject`: Ops reject a pending patch; audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal/{id}/reject",
    tag = "healing",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The healing log")),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Rejected", body = ReviewResponse),
        (status = 404, description = "No such log", body = ErrorEnvelope),
        (status = 409, description = "The log is not pending review", body = ErrorEnvelope),
    )
)]
async fn reject(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<ReviewResponse>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    let log = healing
        .reject(uuid_param("id", &id)?, &reason, &ops.audit())
        .await?;
    Ok(Json(ReviewResponse {
        status: "ok",
        message: "Patch rejected".to_owned(),
        log,
    }))
}

/// What a rollback request is answered with.
#[derive(Serialize, ToSchema)]
struct RollbackResponse {
    /// `ok`.
    status: &'static str,
    message: &'static str,
    result: RollbackQueued,
    log: HealingLog,
}

#[derive(Serialize, ToSchema)]
struct RollbackQueued {
    success: bool,
    plugin_id: Uuid,
    /// The plugin version of the snapshot the rollback restores.
    restored_version: Value,
    command_id: Uuid,
}

/// `POST /api/v1/plugins/autoheal/{id}/rollback`: queues a rollback command with the
/// restore operations and the snapshot; the log is `rolling_back` until the plugin acks;
/// audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal/{id}/rollback",
    tag = "healing",
    security(("ops_token" = [])),
    params(("id" = Uuid, Path, description = "The healing log")),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Rollback queued", body = RollbackResponse),
        (status = 404, description = "No such log", body = ErrorEnvelope),
        (status = 409, description = "The log has nothing in effect to roll back", body = ErrorEnvelope),
    )
)]
async fn rollback(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<RollbackResponse>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    let (log, command) = healing
        .rollback(uuid_param("id", &id)?, &reason, &ops.audit())
        .await?;
    let restored_version = command.command_payload.0["snapshot"]["plugin_version"].clone();
    Ok(Json(RollbackResponse {
        status: "ok",
        message:
            "Rollback queued: the log is rolling_back until the plugin acks the rollback command",
        result: RollbackQueued {
            success: true,
            plugin_id: log.plugin_id,
            restored_version,
            command_id: command.id,
        },
        log,
    }))
}

/// A log status to filter by; `pending` is read as `pending_review` (the seed's dashboard
/// says `pending` for what waits for Ops).
pub(crate) fn status_filter(text: &str) -> Result<HealingStatus, ApiError> {
    if text == "pending" {
        return Ok(HealingStatus::PendingReview);
    }
    HealingStatus::parse(text).ok_or_else(|| {
        let all: Vec<&str> = HealingStatus::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::invalid("status", format!("must be one of {}", all.join(", ")))
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// A log status (`pending` is read as `pending_review`).
    status: Option<String>,
    #[param(inline)]
    issue_severity: Option<IssueSeverity>,
    #[param(value_type = Option<PlatformName>)]
    cms: Option<Platform>,
    plugin_id: Option<Uuid>,
    rule: Option<String>,
    /// Who raised the detections: `sira` or `detector`.
    #[param(inline)]
    source: Option<DetectionSource>,
    /// 1–3650 days back.
    #[param(minimum = 1, maximum = 3650)]
    days: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/autoheal/logs`: newest first, filtered, paginated.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/logs",
    tag = "healing",
    security(("ops_token" = [])),
    params(LogsQuery),
    responses((status = 200, description = "Newest first", body = Vec<HealingLog>))
)]
async fn logs(
    State(healing): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<Vec<HealingLog>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let status = query.status.as_deref().map(status_filter).transpose()?;
    let (limit, offset) = page(query.limit, query.offset)?;
    let filter = HealingLogFilter {
        status,
        issue_severity: query.issue_severity.map(|s| s.as_str().to_owned()),
        cms: query.cms.map(|c| c.as_str().to_owned()),
        plugin_id: query.plugin_id,
        rule_name: query.rule,
        source: query.source,
        since: days_ago(clock.now(), query.days)?,
        limit,
        offset,
    };
    Ok(Json(healing.logs(&filter).await?))
}

/// `GET /api/v1/plugins/autoheal/stats?days=30`: the seed's fields and the states it did
/// not know.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/stats",
    tag = "healing",
    security(("ops_token" = [])),
    params(StatsQuery),
    responses((status = 200, description = "The stats", body = HealingStats))
)]
async fn stats(
    State(healing): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<HealingStats>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.stats(query.since(clock.now())?).await?))
}

/// Whether a poll takes the commands it shows.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    /// `false`: look without taking — the commands come unsigned, without `sequence`, and
    /// stay where they are, so no plugin can act on what a person looked at. Default `true`.
    lease: Option<bool>,
}

/// `GET /api/v1/plugins/autoheal/commands/{plugin_id}`: the install's pending commands by
/// priority, leased to this poll and signed (`sdk/PROTOCOL.md`).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/commands/{plugin_id}",
    tag = "healing",
    security(("merchant_key" = [])),
    params(("plugin_id" = Uuid, Path, description = "The installation (the merchant's own)"), PollQuery),
    responses(
        (status = 200, description = "Leased, signed commands, by priority (`GET /api/v1/schemas/command.json`)", body = Vec<Command>),
        (status = 404, description = "No such installation", body = ErrorEnvelope),
    )
)]
async fn poll_commands(
    State(healing): State<Arc<Service>>,
    merchant: Merchant,
    Path(plugin_id): Path<String>,
    QueryParams(query): QueryParams<PollQuery>,
) -> Result<Json<Vec<Command>>, ApiError> {
    let plugin_id = uuid_param("plugin_id", &plugin_id)?;
    let lease = query.lease.unwrap_or(true);
    Ok(Json(
        healing.poll(merchant.merchant_id, plugin_id, lease).await?,
    ))
}

/// What the plugin did with a command.
#[derive(Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AckOutcomeName {
    /// Applied (`success: true`).
    Applied,
    /// Tried and failed (`success: false`; say what is in effect).
    Failed,
    /// Not applied because it did not verify (`success: false`, `result.reason`).
    Refused,
}

#[derive(Deserialize, ToSchema)]
struct AckRequest {
    success: bool,
    /// `applied`, `failed` or `refused`; without it, what `success` says.
    #[serde(default)]
    outcome: Option<AckOutcomeName>,
    /// What the plugin did (`applied_operations`, `error`, a refusal's `reason`, …;
    /// `GET /api/v1/schemas/ack.json`), at most 16 KiB of JSON.
    #[serde(default)]
    result: Option<Map<String, Value>>,
}

/// What an ack is answered with.
#[derive(Serialize, ToSchema)]
struct AckResponse {
    /// `ok`.
    status: &'static str,
    command: Command,
    /// The same ack again: nothing changed.
    repeated: bool,
}

/// `POST /api/v1/plugins/autoheal/commands/{command_id}/ack`: idempotent. An apply's
/// ack says what it left in effect (`result.applied_operations`); a failed apply with some
/// in effect queues the rollback of those at once.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal/commands/{command_id}/ack",
    tag = "healing",
    security(("merchant_key" = [])),
    params(("command_id" = Uuid, Path, description = "The command")),
    request_body = AckRequest,
    responses(
        (status = 200, description = "Recorded (or repeated)", body = AckResponse),
        (status = 404, description = "No such command", body = ErrorEnvelope),
        (status = 409, description = "A different ack was recorded before", body = ErrorEnvelope),
    )
)]
async fn ack(
    State(healing): State<Arc<Service>>,
    merchant: Merchant,
    Path(command_id): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    let command_id = uuid_param("command_id", &command_id)?;
    let result = Value::Object(request.result.unwrap_or_default());
    if result.to_string().len() > 16 * 1024 {
        return Err(ApiError::invalid(
            "result",
            "must be at most 16 KiB of JSON",
        ));
    }
    let refused = match (request.outcome, request.success) {
        (None | Some(AckOutcomeName::Applied), true)
        | (None | Some(AckOutcomeName::Failed), false) => None,
        (Some(AckOutcomeName::Refused), false) => Some(refusal_reason(&result)?),
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "outcome",
                "must agree with success: applied when true, failed or refused when false",
            ))
        }
    };
    let (command, repeated) = healing
        .ack(
            merchant.merchant_id,
            command_id,
            request.success,
            refused,
            &result,
        )
        .await?;
    Ok(Json(AckResponse {
        status: "ok",
        command,
        repeated,
    }))
}

/// A refused ack's `result.reason`: one of the verifier's reasons (`sdk/PROTOCOL.md`).
fn refusal_reason(result: &Value) -> Result<RefusalReason, ApiError> {
    result
        .get("reason")
        .and_then(Value::as_str)
        .and_then(RefusalReason::parse)
        .ok_or_else(|| {
            let names: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::invalid(
                "result.reason",
                format!("a refused ack says why, one of: {}", names.join(", ")),
            )
        })
}

/// `GET /api/v1/plugins/autoheal/bundles/{name}/{version}`: the signed bundle bytes,
/// unchanged, so the plugin verifies exactly what was signed. Immutable per version.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/bundles/{name}/{version}",
    tag = "healing",
    security(("merchant_key" = [])),
    params(
        ("name" = String, Path, description = "The patch"),
        ("version" = String, Path, description = "Its semantic version"),
        ("If-None-Match" = Option<String>, Header, description = "A bundle's ETag"),
    ),
    responses(
        (status = 200, description = "The signed bundle's bytes (`patches/README.md`)", content_type = "application/json", body = Object,
            headers(("etag" = String), ("x-bundle-sha256" = String, description = "SHA-256 of the bytes"))),
        (status = 304, description = "The ETag matches"),
        (status = 404, description = "No such verified, unexpired bundle", body = ErrorEnvelope),
    )
)]
async fn bundle(
    State(healing): State<Arc<Service>>,
    _merchant: Merchant,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = semver::Version::parse(&version)
        .map_err(|_| ApiError::invalid("version", "must be a semantic version"))?;
    let patch = healing
        .bundle(&name, &version)
        .ok_or(ApiError::NotFound { what: "bundle" })?;
    let etag = format!("\"{}\"", patch.bundle_sha256);
    let cache = "public, max-age=31536000, immutable";
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(axum::body::Bytes::copy_from_slice(&patch.bytes)),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        "x-bundle-sha256",
        HeaderValue::from_str(&patch.bundle_sha256).expect("hex"),
    );
    Ok(response)
}

/// `GET /api/v1/plugins/autoheal/patches`: the registry — loaded and refused bundles, with
/// per-patch run counts, failures by kind and latency.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/patches",
    tag = "healing",
    security(("ops_token" = [])),
    responses((status = 200, description = "The registry", body = RegistryStatus))
)]
async fn patches(
    State(healing): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RegistryStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.registry()))
}

/// `GET /api/v1/plugins/autoheal/rules`: the rules' breakers.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/autoheal/rules",
    tag = "healing",
    security(("ops_token" = [])),
    responses((status = 200, description = "Every breaker", body = Vec<RuleBreaker>))
)]
async fn breakers(
    State(healing): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<Vec<RuleBreaker>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.breakers().await?))
}

/// `POST /api/v1/plugins/autoheal/rules/{name}/resume`: Ops re-enable a suspended rule's
/// auto-apply; audited.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/autoheal/rules/{name}/resume",
    tag = "healing",
    security(("ops_token" = [])),
    params(("name" = String, Path, description = "The rule")),
    request_body = ResumeRequest,
    responses(
        (status = 200, description = "Resumed, or `resumed: false` when it was not suspended", body = ResumeResponse),
        (status = 404, description = "A rule neither loaded nor ever suspended", body = ErrorEnvelope),
    )
)]
async fn resume_rule(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ResumeRequest>,
) -> Result<Json<ResumeResponse>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    check_len("name", &name, 200)?;
    let scope = request
        .merchant_id
        .map_or(BreakerScope::Fleet, BreakerScope::Merchant);
    let changed = healing
        .resume_rule(&name, scope, &reason, &ops.audit())
        .await?;
    Ok(Json(ResumeResponse {
        status: "ok",
        rule: name,
        scope: scope.as_str(),
        merchant_id: scope.merchant_id(),
        resumed: changed,
    }))
}

/// What resuming a rule is answered with.
#[derive(Serialize, ToSchema)]
struct ResumeResponse {
    /// `ok`.
    status: &'static str,
    rule: String,
    /// `fleet` or `merchant`.
    scope: &'static str,
    merchant_id: Option<Uuid>,
    /// Whether a suspended breaker was closed.
    resumed: bool,
}

/// Without `merchant_id`, the fleet-wide breaker; with it, that merchant's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    reason: String,
    #[serde(default)]
    merchant_id: Option<Uuid>,
}
