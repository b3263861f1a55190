//! The healing loop over HTTP (seed 001): Sira's detections, Ops review and rollback, the
//! plugin's command poll, ack and bundle download, logs, stats, the patch registry and the
//! per-rule breakers.

use super::patches::RegistryStatus;
use super::{
    BreakerScope, Command, HealingLog, HealingLogFilter, HealingStats, HealingStatus,
    IssueSeverity, NewDetection, PatchType, RuleBreaker, Service,
};
use crate::auth::{Merchant, Ops, Permission, Sira};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason, days_ago, page, StatsQuery};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::Platform;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plugins/autoheal", post(detect))
        .route("/api/v1/plugins/autoheal/logs", get(logs))
        .route("/api/v1/plugins/autoheal/stats", get(stats))
        .route("/api/v1/plugins/autoheal/patches", get(patches))
        .route("/api/v1/plugins/autoheal/rules", get(breakers))
        .route(
            "/api/v1/plugins/autoheal/rules/{name}/resume",
            post(resume_rule),
        )
        .route(
            "/api/v1/plugins/autoheal/commands/{plugin_id}",
            get(poll_commands),
        )
        .route(
            "/api/v1/plugins/autoheal/commands/{command_id}/ack",
            post(ack),
        )
        .route(BUNDLE_ROUTE, get(bundle))
        .route("/api/v1/plugins/autoheal/{id}", get(log_detail))
        .route("/api/v1/plugins/autoheal/{id}/apply", post(apply))
        .route("/api/v1/plugins/autoheal/{id}/reject", post(reject))
        .route("/api/v1/plugins/autoheal/{id}/rollback", post(rollback))
}

/// Where plugins download a signed bundle.
const BUNDLE_ROUTE: &str = "/api/v1/plugins/autoheal/bundles/{name}/{version}";

/// The download address of bundle `name` `version`, as a command names it.
pub(super) fn bundle_url(name: &str, version: &str) -> String {
    BUNDLE_ROUTE
        .replace("{name}", name)
        .replace("{version}", version)
}

/// Sira's detection. Unknown fields are ignored: Sira may send more than this server reads.
#[derive(Deserialize)]
struct DetectionRequest {
    plugin_id: Uuid,
    detected_issue: String,
    issue_severity: Option<IssueSeverity>,
    patch_type: Option<PatchType>,
    proposed_patch: Option<Map<String, Value>>,
    sira_confidence: f64,
    idempotency_key: Option<String>,
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
        })
        .await?;
    let status = detected.status();
    let response = if detected.replayed {
        let body = json!({"status": status, "current_status": detected.current_status(),
                          "log": detected.log, "replayed": true});
        (StatusCode::OK, Json(body))
    } else {
        let body = json!({"status": status, "log": detected.log});
        (StatusCode::CREATED, Json(body))
    };
    Ok(response.into_response())
}

async fn log_detail(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<HealingLog>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.log(uuid_param("id", &id)?).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    patch: Option<Map<String, Value>>,
}

/// `POST /api/v1/plugins/autoheal/{id}/apply`: Ops approve a pending patch, optionally
/// edited (re-validated against the patch's parameter schema by a new dry run).
async fn apply(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    body: Option<JsonBody<ApplyRequest>>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let id = uuid_param("id", &id)?;
    let request = body.map(|JsonBody(b)| b).unwrap_or_default();
    let log = healing
        .approve(id, request.patch.as_ref(), &ops.audit())
        .await?;
    let (status, message) = match log.status {
        HealingStatus::Approved => (
            "ok",
            "Patch approved: dry run clean, command queued for the plugin".to_owned(),
        ),
        _ => (
            "failed",
            format!(
                "Dry run failed ({}); nothing was queued",
                log.failure_kind.map_or("unknown", |kind| kind.as_str())
            ),
        ),
    };
    Ok(Json(
        json!({"status": status, "message": message, "log": log}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonRequest {
    reason: String,
}

/// `POST /api/v1/plugins/autoheal/{id}/reject`.
async fn reject(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    let log = healing
        .reject(uuid_param("id", &id)?, &reason, &ops.audit())
        .await?;
    Ok(Json(
        json!({"status": "ok", "message": "Patch rejected", "log": log}),
    ))
}

/// `POST /api/v1/plugins/autoheal/{id}/rollback`: queues a rollback command with the
/// restore operations and the snapshot; the log is `rolling_back` until the plugin acks.
async fn rollback(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    let (log, command) = healing
        .rollback(uuid_param("id", &id)?, &reason, &ops.audit())
        .await?;
    let restored_version = command.command_payload.0["snapshot"]["plugin_version"].clone();
    Ok(Json(json!({
        "status": "ok",
        "message": "Rollback queued: the log is rolling_back until the plugin acks the rollback command",
        "result": {
            "success": true,
            "plugin_id": log.plugin_id,
            "restored_version": restored_version,
            "command_id": command.id,
        },
        "log": log,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    status: Option<String>,
    issue_severity: Option<IssueSeverity>,
    cms: Option<Platform>,
    plugin_id: Option<Uuid>,
    rule: Option<String>,
    days: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/autoheal/logs`: newest first, filtered, paginated.
async fn logs(
    State(healing): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<Vec<HealingLog>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let status = match query.status.as_deref() {
        None => None,
        // The seed's dashboard says `pending` for what waits for Ops.
        Some("pending") => Some(HealingStatus::PendingReview),
        Some(text) => Some(HealingStatus::parse(text).ok_or_else(|| {
            let all: Vec<&str> = HealingStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid("status", format!("must be one of {}", all.join(", ")))
        })?),
    };
    let (limit, offset) = page(query.limit, query.offset)?;
    let filter = HealingLogFilter {
        status,
        issue_severity: query.issue_severity.map(|s| s.as_str().to_owned()),
        cms: query.cms.map(|c| c.as_str().to_owned()),
        plugin_id: query.plugin_id,
        rule_name: query.rule,
        since: days_ago(clock.now(), query.days)?,
        limit,
        offset,
    };
    Ok(Json(healing.logs(&filter).await?))
}

/// `GET /api/v1/plugins/autoheal/stats?days=30`: exactly the seed's fields.
async fn stats(
    State(healing): State<Arc<Service>>,
    State(clock): State<Clock>,
    ops: Ops,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<HealingStats>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.stats(query.since(clock.now())?).await?))
}

/// `GET /api/v1/plugins/autoheal/commands/{plugin_id}`: the install's pending commands by
/// priority, leased to this poll.
async fn poll_commands(
    State(healing): State<Arc<Service>>,
    merchant: Merchant,
    Path(plugin_id): Path<String>,
) -> Result<Json<Vec<Command>>, ApiError> {
    let plugin_id = uuid_param("plugin_id", &plugin_id)?;
    Ok(Json(healing.poll(merchant.merchant_id, plugin_id).await?))
}

#[derive(Deserialize)]
struct AckRequest {
    success: bool,
    #[serde(default)]
    result: Option<Map<String, Value>>,
}

/// `POST /api/v1/plugins/autoheal/commands/{command_id}/ack`: idempotent. An apply's
/// ack says what it left in effect (`result.applied_operations`); a failed apply with some
/// in effect queues the rollback of those at once.
async fn ack(
    State(healing): State<Arc<Service>>,
    merchant: Merchant,
    Path(command_id): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<Json<Value>, ApiError> {
    let command_id = uuid_param("command_id", &command_id)?;
    let result = Value::Object(request.result.unwrap_or_default());
    if result.to_string().len() > 16 * 1024 {
        return Err(ApiError::invalid(
            "result",
            "must be at most 16 KiB of JSON",
        ));
    }
    let (command, repeated) = healing
        .ack(merchant.merchant_id, command_id, request.success, &result)
        .await?;
    Ok(Json(
        json!({"status": "ok", "command": command, "repeated": repeated}),
    ))
}

/// `GET /api/v1/plugins/autoheal/bundles/{name}/{version}`: the signed bundle bytes,
/// unchanged, so the plugin verifies exactly what was signed. Immutable per version.
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
async fn patches(
    State(healing): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RegistryStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.registry()))
}

/// `GET /api/v1/plugins/autoheal/rules`: the rules' breakers.
async fn breakers(
    State(healing): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<Vec<RuleBreaker>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(healing.breakers().await?))
}

/// `POST /api/v1/plugins/autoheal/rules/{name}/resume`: Ops re-enable a suspended rule's
/// auto-apply; audited.
async fn resume_rule(
    State(healing): State<Arc<Service>>,
    ops: Ops,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ResumeRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let reason = check_reason(&request.reason)?;
    check_len("name", &name, 200)?;
    let scope = request
        .merchant_id
        .map_or(BreakerScope::Fleet, BreakerScope::Merchant);
    let changed = healing
        .resume_rule(&name, scope, &reason, &ops.audit())
        .await?;
    Ok(Json(
        json!({"status": "ok", "rule": name, "scope": scope.as_str(),
        "merchant_id": scope.merchant_id(), "resumed": changed}),
    ))
}

/// Without `merchant_id`, the fleet-wide breaker; with it, that merchant's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    reason: String,
    #[serde(default)]
    merchant_id: Option<Uuid>,
}
