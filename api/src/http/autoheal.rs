//! The healing loop over HTTP (seed 001): Sira's detections, Ops review and rollback, the
//! plugin's command poll, ack and bundle download, logs, stats, the patch registry and the
//! per-rule breakers.

use super::check_len;
use crate::auth::{Merchant, Ops, Permission, Sira};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::healing::{self, edited_patch};
use crate::store::{
    AckOutcome, Command, DetectionOutcome, HealingLog, HealingLogFilter, HealingStats,
    HealingStatus, NewHealingLog, Preparation, RuleBreaker,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::{DecisionConfig, Detection, Outcome};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::values::Cms;

/// Sira's detection. Unknown fields are ignored: Sira may send more than this server reads.
#[derive(Deserialize)]
pub struct DetectionRequest {
    plugin_id: Uuid,
    detected_issue: String,
    issue_severity: Option<IssueSeverity>,
    patch_type: Option<PatchType>,
    proposed_patch: Option<Map<String, Value>>,
    sira_confidence: f64,
    idempotency_key: Option<String>,
}

super::values::closed_set!(IssueSeverity {
    Low = "low",
    Medium = "medium",
    High = "high",
    Critical = "critical",
});

super::values::closed_set!(PatchType {
    DatabasePatch = "database_patch",
    ConfigUpdate = "config_update",
    CodePatch = "code_patch",
    Notify = "notify",
});

fn uuid_param(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "must be a UUID"))
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

/// The decision's outcome in the seed's words.
fn response_status(log: &HealingLog) -> &'static str {
    match (log.status(), log.auto_applied) {
        (HealingStatus::PendingReview, _) => "pending_review",
        (HealingStatus::Rejected, _) => "rejected",
        (HealingStatus::Failed, _) => "failed",
        (_, true) => "applied",
        (status, false) => status.as_str(),
    }
}

/// `POST /api/v1/plugins/autoheal`: decide, and for an auto-applied patch dry-run it
/// against the install's snapshot and queue the command. 201 with the log; a retry with
/// the same idempotency key answers 200 with the same log and records nothing.
pub async fn detect(
    State(state): State<AppState>,
    _sira: Sira,
    headers: HeaderMap,
    JsonBody(request): JsonBody<DetectionRequest>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let key = idempotency_key(&headers, request.idempotency_key.clone())?;
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
    let request_sha256 = engine::sha256_hex(
        json!([
            request.plugin_id,
            request.detected_issue,
            request.issue_severity.map(IssueSeverity::as_str),
            request.patch_type.map(PatchType::as_str),
            request.proposed_patch,
            request.sira_confidence
        ])
        .to_string()
        .as_bytes(),
    );
    if let Some(key) = &key {
        if let Some(existing) = state.store.healing_log_by_idempotency_key(key).await? {
            return replay(existing, &request_sha256);
        }
    }
    let target = state
        .store
        .healing_target(request.plugin_id)
        .await?
        .ok_or_else(|| ApiError::invalid("plugin_id", "no such installation"))?;

    let detection = Detection {
        platform: target.cms.clone(),
        plugin_version: Some(target.plugin_version.clone()),
        detected_issue: request.detected_issue.clone(),
        issue_severity: request.issue_severity.map(|s| s.as_str().to_owned()),
        patch_type: request.patch_type.map(|p| p.as_str().to_owned()),
        proposed_patch: request.proposed_patch.clone().map(Value::Object),
        sira_confidence: request.sira_confidence,
    };
    let config = DecisionConfig {
        global_threshold: state.healing.global_threshold,
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_millis(50)),
    };
    let rules = state.rules.current();
    let decision = rules.decide(&detection, &config);
    let mut decision_json = serde_json::to_value(&decision).unwrap_or_default();
    let mut outcome = match decision.outcome {
        Outcome::NoMatch => DetectionOutcome::Rejected,
        Outcome::PendingReview => DetectionOutcome::PendingReview,
        Outcome::AutoApply => DetectionOutcome::AutoApplied(Preparation::Failed {
            patch: None,
            kind: String::new(),
            reason: String::new(),
        }),
    };
    if let (DetectionOutcome::AutoApplied(_), Some(rule)) = (&outcome, &decision.rule) {
        if state.suspended_rules.contains(&state.store, rule).await? {
            decision_json["auto_apply_suspended"] = json!(true);
            outcome = DetectionOutcome::PendingReview;
        }
    }
    let now = state.clock.now();
    if let DetectionOutcome::AutoApplied(preparation) = &mut outcome {
        let patch = decision.patch.clone().unwrap_or_default();
        *preparation = healing::prepare(
            &state,
            &target,
            &patch,
            Value::Object(decision.params.clone()),
        )
        .await;
    }
    let record = NewHealingLog {
        target,
        detected_issue: request.detected_issue,
        issue_severity: request
            .issue_severity
            .unwrap_or(IssueSeverity::Medium)
            .as_str()
            .to_owned(),
        patch_type: request.patch_type.map(|p| p.as_str().to_owned()),
        proposed_patch: request.proposed_patch.map(Value::Object),
        sira_confidence: request.sira_confidence,
        idempotency_key: key,
        request_sha256: request_sha256.clone(),
        rule_name: decision.rule.clone(),
        decision: decision_json,
    };
    let (log, created) = state.store.record_detection(record, outcome, now).await?;
    if !created {
        return replay(log, &request_sha256);
    }
    state.detection_latency.observe(started.elapsed());
    if log.status() == HealingStatus::Failed {
        if let Some(rule) = &log.rule_name {
            healing::check_rule_breaker(&state, rule, now).await?;
        }
    }
    let body = json!({"status": response_status(&log), "log": log});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A retried detection: the log recorded the first time, unless the key was reused for
/// a different detection.
fn replay(existing: HealingLog, request_sha256: &str) -> Result<Response, ApiError> {
    if existing.request_sha256 != request_sha256 {
        return Err(ApiError::Conflict {
            message: "this idempotency key was used for a different detection".into(),
        });
    }
    let body = json!({"status": response_status(&existing), "log": existing, "replayed": true});
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn log_or_404(state: &AppState, raw_id: &str) -> Result<HealingLog, ApiError> {
    let id = uuid_param("id", raw_id)?;
    state
        .store
        .healing_log(id)
        .await?
        .ok_or(ApiError::NotFound {
            what: "healing log",
        })
}

pub async fn log_detail(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
) -> Result<Json<HealingLog>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(log_or_404(&state, &id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    patch: Option<Map<String, Value>>,
}

/// `POST /api/v1/plugins/autoheal/{id}/apply`: Ops approve a pending patch, optionally
/// edited (re-validated against the patch's parameter schema by a new dry run).
pub async fn apply(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    body: Option<JsonBody<ApplyRequest>>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    let log = log_or_404(&state, &id).await?;
    if !log.status().can_move_to(HealingStatus::Approved) {
        return Err(ApiError::Conflict {
            message: format!(
                "healing log {} is {}; only pending_review can be approved",
                log.id, log.status
            ),
        });
    }
    let request = body.map(|JsonBody(b)| b).unwrap_or_default();
    let rule_patch = log
        .decision
        .0
        .get("patch")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (name, params) = match &request.patch {
        Some(patch) => {
            let (name, params) = edited_patch(patch).map_err(|message| {
                let (field, message) = message.split_once(": ").unwrap_or(("", &message));
                ApiError::invalid(format!("patch.{field}"), message)
            })?;
            (name.or(rule_patch), params)
        }
        None => (
            rule_patch,
            log.decision.0.get("params").cloned().unwrap_or(json!({})),
        ),
    };
    let Some(name) = name else {
        return Err(ApiError::invalid(
            "patch.name",
            "no rule matched this detection: name the patch to apply",
        ));
    };
    let target = state
        .store
        .healing_target(log.plugin_id)
        .await?
        .ok_or(ApiError::NotFound {
            what: "installation",
        })?;
    let preparation = healing::prepare(&state, &target, &name, params).await;
    if let Preparation::Failed { kind, reason, .. } = &preparation {
        // An Ops edit with parameters the patch does not accept changes nothing.
        if kind == "invalid_params" || kind == "unknown_patch" {
            let field = if kind == "unknown_patch" {
                "patch.name"
            } else {
                "patch.params"
            };
            return Err(ApiError::invalid(field, reason.clone()));
        }
    }
    let now = state.clock.now();
    let log = state
        .store
        .approve_healing(&log, &preparation, &ops.audit(), now)
        .await?;
    let (status, message) = match log.status() {
        HealingStatus::Approved => (
            "ok",
            "Patch approved: dry run clean, command queued for the plugin".to_owned(),
        ),
        _ => (
            "failed",
            format!(
                "Dry run failed ({}); nothing was queued",
                log.failure_kind.as_deref().unwrap_or("unknown")
            ),
        ),
    };
    Ok(Json(
        json!({"status": status, "message": message, "log": log}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    reason: String,
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::invalid("reason", "must not be empty"));
    }
    check_len("reason", reason, 2000)
}

/// `POST /api/v1/plugins/autoheal/{id}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    check_reason(&request.reason)?;
    let log = log_or_404(&state, &id).await?;
    let log = state
        .store
        .reject_healing(&log, &request.reason, &ops.audit(), state.clock.now())
        .await?;
    Ok(Json(
        json!({"status": "ok", "message": "Patch rejected", "log": log}),
    ))
}

/// `POST /api/v1/plugins/autoheal/{id}/rollback`: queues a rollback command with the
/// restore operations and the snapshot.
pub async fn rollback(
    State(state): State<AppState>,
    ops: Ops,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    check_reason(&request.reason)?;
    let log = log_or_404(&state, &id).await?;
    let now = state.clock.now();
    let (log, command) = state
        .store
        .rollback_healing(&log, "ops", &request.reason, Some(&ops.audit()), now)
        .await?;
    if let Some(rule) = &log.rule_name {
        healing::check_rule_breaker(&state, rule, now).await?;
    }
    let restored_version = command.command_payload.0["snapshot"]["plugin_version"].clone();
    Ok(Json(json!({
        "status": "ok",
        "message": "Patch rolled back: rollback command queued for the plugin",
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
pub struct LogsQuery {
    status: Option<String>,
    issue_severity: Option<IssueSeverity>,
    cms: Option<Cms>,
    plugin_id: Option<Uuid>,
    rule: Option<String>,
    days: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/plugins/autoheal/logs`: newest first, filtered, paginated.
pub async fn logs(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<Vec<HealingLog>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let status = match query.status.as_deref() {
        None => None,
        // The seed's dashboard says `pending` for what waits for Ops.
        Some("pending") => Some(HealingStatus::PendingReview),
        Some(text) => Some(HealingStatus::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "must be one of pending_review, approved, applied, failed, rolled_back, rejected",
            )
        })?),
    };
    let (limit, offset) = super::page(query.limit, query.offset)?;
    let since = super::days_ago(&state, query.days)?;
    let filter = HealingLogFilter {
        status: status.map(|s| s.as_str().to_owned()),
        issue_severity: query.issue_severity.map(|s| s.as_str().to_owned()),
        cms: query.cms.map(|c| c.as_str().to_owned()),
        plugin_id: query.plugin_id,
        rule_name: query.rule,
        since,
        limit,
        offset,
    };
    Ok(Json(state.store.list_healing_logs(&filter).await?))
}

/// `GET /api/v1/plugins/autoheal/stats?days=30`: exactly the seed's fields.
pub async fn stats(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<super::StatsQuery>,
) -> Result<Json<HealingStats>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.store.healing_stats(query.since(&state)?).await?))
}

/// `GET /api/v1/plugins/autoheal/commands/{plugin_id}`: the install's pending commands by
/// priority, leased to this poll.
pub async fn poll_commands(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(plugin_id): Path<String>,
) -> Result<Json<Vec<Command>>, ApiError> {
    let plugin_id = uuid_param("plugin_id", &plugin_id)?;
    let target = state.store.healing_target(plugin_id).await?;
    // Another merchant's install answers exactly like a missing one.
    if target.is_none_or(|t| t.merchant_id != merchant.merchant_id) {
        return Err(ApiError::NotFound {
            what: "installation",
        });
    }
    let commands = state
        .store
        .lease_commands(
            plugin_id,
            state.clock.now(),
            state.healing.command_lease,
            20,
        )
        .await?;
    Ok(Json(commands))
}

#[derive(Deserialize)]
pub struct AckRequest {
    success: bool,
    #[serde(default)]
    result: Option<Map<String, Value>>,
}

/// `POST /api/v1/plugins/autoheal/commands/{command_id}/ack`: idempotent. A failed
/// `apply_patch` ack queues the rollback at once.
pub async fn ack(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(command_id): Path<String>,
    JsonBody(request): JsonBody<AckRequest>,
) -> Result<Json<Value>, ApiError> {
    let command_id = uuid_param("command_id", &command_id)?;
    let command = state
        .store
        .command(command_id)
        .await?
        .filter(|c| c.merchant_id == merchant.merchant_id)
        .ok_or(ApiError::NotFound { what: "command" })?;
    let result = Value::Object(request.result.unwrap_or_default());
    if result.to_string().len() > 16 * 1024 {
        return Err(ApiError::invalid(
            "result",
            "must be at most 16 KiB of JSON",
        ));
    }
    let now = state.clock.now();
    let outcome = state
        .store
        .ack_command(&command, request.success, &result, now)
        .await?;
    let (command, repeated) = match outcome {
        AckOutcome::Recorded(command) => (command, false),
        AckOutcome::Repeated(command) => (command, true),
    };
    if !repeated && !request.success && command.command_type == "apply_patch" {
        if let Some(log) = state.store.healing_log(command.healing_log_id).await? {
            if let Some(rule) = &log.rule_name {
                healing::check_rule_breaker(&state, rule, now).await?;
            }
        }
    }
    Ok(Json(
        json!({"status": "ok", "command": command, "repeated": repeated}),
    ))
}

/// `GET /api/v1/plugins/autoheal/bundles/{name}/{version}`: the signed bundle bytes,
/// unchanged, so the plugin verifies exactly what was signed. Immutable per version.
pub async fn bundle(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = semver::Version::parse(&version)
        .map_err(|_| ApiError::invalid("version", "must be a semantic version"))?;
    let patch = state
        .patches
        .get(&name, &version)
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
pub async fn patches(
    State(state): State<AppState>,
    ops: Ops,
) -> Result<Json<crate::patches::RegistryStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.patches.status()))
}

/// `GET /api/v1/plugins/autoheal/rules`: the rules' breakers.
pub async fn breakers(
    State(state): State<AppState>,
    ops: Ops,
) -> Result<Json<Vec<RuleBreaker>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(state.store.rule_breakers().await?))
}

/// `POST /api/v1/plugins/autoheal/rules/{name}/resume`: Ops re-enable a suspended rule's
/// auto-apply; audited.
pub async fn resume_rule(
    State(state): State<AppState>,
    ops: Ops,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::AutohealApprove)?;
    check_reason(&request.reason)?;
    check_len("name", &name, 200)?;
    let changed = healing::set_rule_breaker(
        &state,
        &name,
        false,
        &request.reason,
        Some(&ops.audit()),
        state.clock.now(),
    )
    .await?;
    Ok(Json(
        json!({"status": "ok", "rule": name, "resumed": changed}),
    ))
}
