//! `/api/platform/flags` (seed 002's route list): Ops manage flags, their
//! overrides, the kill switch and rollout plans (`flags:read` to read,
//! `flags:write` to change; every change audited); any authenticated caller
//! evaluates. And `/api/platform/alerts`, where a halted rollout shows up.

use super::check_len;
use crate::auth::{Caller, Ops, Permission};
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::flags::{check_steps, step_ends_at, FlagOrigin};
use crate::store::{
    FlagAuditEntry, FlagWrite, NewRollout, PlatformAlert, Principal, RolloutChange, RolloutPlan,
    RolloutStep, StoreError, StoredOverride,
};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use engine::{
    EvalContext, Evaluation, FieldError, FlagDefinition, FlagOverride, OverrideScope, ValueType,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Most flags one evaluate request may ask for.
pub const MAX_BATCH_FLAGS: usize = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/platform/flags", get(list).post(create))
        .route("/api/platform/flags/evaluate", post(evaluate))
        .route(
            "/api/platform/flags/{key}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/api/platform/flags/{key}/overrides",
            get(list_overrides).post(set_override),
        )
        .route(
            "/api/platform/flags/{key}/overrides/{scope}/{target}",
            delete(delete_override),
        )
        .route("/api/platform/flags/{key}/kill", post(kill))
        .route("/api/platform/flags/{key}/audit", get(audit))
        .route(
            "/api/platform/flags/{key}/rollouts",
            get(list_rollouts).post(create_rollout),
        )
        .route(
            "/api/platform/flags/{key}/rollouts/{id}/cancel",
            post(cancel_rollout),
        )
        .route("/api/platform/alerts", get(alerts))
}

fn invalid(error: FieldError) -> ApiError {
    ApiError::invalid(error.field, error.message)
}

/// A store conflict (a concurrent change, an active plan) is the client's
/// to resolve: 409 with the store's message.
fn conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(message) => ApiError::Conflict { message },
        other => ApiError::Store(other),
    }
}

fn flag_key(key: &str) -> Result<(), ApiError> {
    engine::check_key("key", key).map_err(invalid)
}

fn not_found() -> ApiError {
    ApiError::NotFound { what: "flag" }
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "must say why (it goes to the audit log)",
        ));
    }
    check_len("reason", reason, 1_000)?;
    Ok(reason.to_owned())
}

/// A flag with where it comes from.
#[derive(Serialize)]
pub struct FlagView {
    #[serde(flatten)]
    definition: FlagDefinition,
    #[serde(flatten)]
    origin: FlagOrigin,
}

fn view(state: &AppState, key: &str) -> Option<FlagView> {
    let loaded = state.flags.current();
    let definition = loaded.snapshot.definition(key)?.clone();
    let origin = loaded.origins.get(key)?.clone();
    Some(FlagView { definition, origin })
}

pub async fn list(
    State(state): State<AppState>,
    ops: Ops,
) -> Result<Json<Vec<FlagView>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    let loaded = state.flags.current();
    let flags = loaded
        .snapshot
        .definitions()
        .filter_map(|definition| {
            let origin = loaded.origins.get(&definition.key)?.clone();
            Some(FlagView {
                definition: definition.clone(),
                origin,
            })
        })
        .collect();
    Ok(Json(flags))
}

pub async fn show(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<FlagView>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    view(&state, &key).map(Json).ok_or_else(not_found)
}

pub async fn create(
    State(state): State<AppState>,
    ops: Ops,
    JsonBody(definition): JsonBody<FlagDefinition>,
) -> Result<(StatusCode, Json<FlagView>), ApiError> {
    ops.require(Permission::FlagsWrite)?;
    definition.validate().map_err(invalid)?;
    let loaded = state.flags.current();
    if let Some(file) = loaded.file_of(&definition.key) {
        return Err(ApiError::Conflict {
            message: format!(
                "flag {} is defined in {file}; PATCH it to change it",
                definition.key
            ),
        });
    }
    if loaded.snapshot.definition(&definition.key).is_some() {
        return Err(ApiError::Conflict {
            message: format!("flag {} already exists", definition.key),
        });
    }
    let key = definition.key.clone();
    let write = FlagWrite {
        action: "flag.create",
        before: None,
        after: definition,
        expected_version: None,
    };
    state
        .store
        .write_flag(&write, &ops.audit(), state.clock.now())
        .await
        .map_err(|error| match error {
            StoreError::Conflict(_) => ApiError::Conflict {
                message: format!("flag {key} already exists"),
            },
            other => ApiError::Store(other),
        })?;
    state.flags.changed(&state, &key).await?;
    let created = view(&state, &key).ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Applies `change` to the flag in force and writes it: the store's copy,
/// or a new one copied from the file.
async fn change_flag(
    state: &AppState,
    ops: &Ops,
    key: &str,
    action: &'static str,
    change: impl FnOnce(FlagDefinition) -> Result<FlagDefinition, ApiError>,
) -> Result<FlagView, ApiError> {
    let (before, version) = state.flags.current().base(key).ok_or_else(not_found)?;
    let after = change(before.clone())?;
    after.validate().map_err(invalid)?;
    let write = FlagWrite {
        action,
        before: Some(before),
        after,
        expected_version: version,
    };
    state
        .store
        .write_flag(&write, &ops.audit(), state.clock.now())
        .await
        .map_err(conflict)?;
    state.flags.changed(state, key).await?;
    view(state, key).ok_or_else(not_found)
}

/// `PATCH /{key}`: a JSON merge patch of the definition (`null` removes an
/// optional field); the key cannot change.
pub async fn update(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> Result<Json<FlagView>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    if patch
        .get("key")
        .is_some_and(|new| new.as_str() != Some(key.as_str()))
    {
        return Err(ApiError::invalid("key", "the key of a flag cannot change"));
    }
    let updated = change_flag(&state, &ops, &key, "flag.update", |before| {
        let Value::Object(mut merged) = serde_json::to_value(&before).expect("a flag serializes")
        else {
            unreachable!("a flag serializes to an object");
        };
        for (field, value) in patch {
            if value.is_null() {
                merged.remove(&field);
            } else {
                merged.insert(field, value);
            }
        }
        crate::extract::parse_json(&serde_json::to_vec(&merged).expect("JSON"))
    })
    .await?;
    Ok(Json(updated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    reason: String,
}

/// The kill switch: the flag is off for every caller at once (each gets the
/// default value), on every replica within a second; audited.
pub async fn kill(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<KillRequest>,
) -> Result<Json<FlagView>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let reason = check_reason(&request.reason)?;
    tracing::warn!(event = "flag_killed", flag_key = %key, reason = %reason, "kill switch");
    let killed = change_flag(&state, &ops, &key, "flag.kill", |before| {
        Ok(FlagDefinition {
            enabled: false,
            ..before
        })
    })
    .await?;
    Ok(Json(killed))
}

/// `DELETE /{key}`: removes the store's copy (and its overrides). A flag
/// defined only in a file is removed from the file, or archived.
pub async fn remove(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let deleted = state
        .store
        .delete_flag(&key, &ops.audit(), state.clock.now())
        .await?;
    let loaded = state.flags.current();
    match deleted {
        Some(definition) => {
            state.flags.changed(&state, &key).await?;
            let file = loaded.file_of(&key).map(str::to_owned);
            Ok(Json(serde_json::json!({
                "deleted": definition,
                // The file's copy is in force again.
                "now_in_force_from_file": file,
            })))
        }
        None => match loaded.file_of(&key) {
            Some(file) => Err(ApiError::Conflict {
                message: format!(
                    "flag {key} is defined in {file}; remove it there, or archive it with PATCH"
                ),
            }),
            None => Err(not_found()),
        },
    }
}

pub async fn list_overrides(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Vec<StoredOverride>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    if state.flags.current().snapshot.definition(&key).is_none() {
        return Err(not_found());
    }
    Ok(Json(state.store.flag_overrides(&key).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    scope: OverrideScope,
    target: String,
    value: Value,
    reason: String,
}

pub async fn set_override(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<OverrideRequest>,
) -> Result<(StatusCode, Json<StoredOverride>), ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let definition = state
        .flags
        .current()
        .snapshot
        .definition(&key)
        .cloned()
        .ok_or_else(not_found)?;
    if request.target.trim().is_empty() {
        return Err(ApiError::invalid("target", "must name a tenant or a user"));
    }
    check_len("target", &request.target, engine::MAX_NAME_CHARS)?;
    definition
        .check_override_value("value", &request.value)
        .map_err(invalid)?;
    let reason = check_reason(&request.reason)?;
    let entry = FlagOverride {
        flag_key: key.clone(),
        scope: request.scope,
        target: request.target,
        value: request.value,
    };
    let stored = state
        .store
        .set_flag_override(&entry, &reason, &ops.audit(), state.clock.now())
        .await?;
    state.flags.changed(&state, &key).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub async fn delete_override(
    State(state): State<AppState>,
    ops: Ops,
    Path((key, scope, target)): Path<(String, String, String)>,
) -> Result<Json<StoredOverride>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let scope = match scope.as_str() {
        "tenant" => OverrideScope::Tenant,
        "user" => OverrideScope::User,
        _ => return Err(ApiError::invalid("scope", "must be tenant or user")),
    };
    let deleted = state
        .store
        .delete_flag_override(&key, scope, &target, &ops.audit(), state.clock.now())
        .await?
        .ok_or(ApiError::NotFound { what: "override" })?;
    state.flags.changed(&state, &key).await?;
    Ok(Json(deleted))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Vec<FlagAuditEntry>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    Ok(Json(state.store.flag_audit(&key, limit).await?))
}

/// One flag to evaluate, with the caller's default (OpenFeature's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// One flag…
    key: Option<String>,
    /// …or several, for the same context.
    keys: Option<Vec<String>>,
    #[serde(default)]
    context: EvalContext,
    /// The caller's default: returned on an error, and its type is the type
    /// the caller expects (a different one is `TYPE_MISMATCH`).
    default_value: Option<Value>,
}

#[derive(Serialize)]
pub struct EvaluationView<'a> {
    key: &'a str,
    #[serde(flatten)]
    evaluation: Evaluation<'a>,
}

fn evaluation_json(key: &str, evaluation: Evaluation<'_>, default_value: Option<&Value>) -> Value {
    let mut out = serde_json::to_value(EvaluationView { key, evaluation }).expect("JSON");
    if evaluation.value.is_none() {
        out["value"] = default_value.cloned().unwrap_or(Value::Null);
    }
    out
}

/// `POST /evaluate`: `{key | keys, context, default_value?}`. A merchant key
/// evaluates as its own tenant only.
pub async fn evaluate(
    State(state): State<AppState>,
    Caller(principal): Caller,
    JsonBody(mut request): JsonBody<EvaluateRequest>,
) -> Result<Json<Value>, ApiError> {
    if let Principal::Merchant { merchant_id } = principal {
        let own = merchant_id.to_string();
        if request
            .context
            .tenant_id
            .as_ref()
            .is_some_and(|tenant| *tenant != own)
        {
            return Err(ApiError::Forbidden {
                message: "a merchant key evaluates flags for its own merchant only".to_owned(),
                field: Some("context.tenant_id".to_owned()),
            });
        }
        request.context.tenant_id = Some(own);
    }
    let expected =
        match &request.default_value {
            None => None,
            Some(value) => Some(ValueType::of(value).ok_or_else(|| {
                ApiError::invalid("default_value", "must be a boolean or a string")
            })?),
        };
    let loaded = state.flags.current();
    let now = state.clock.now();
    let resolve = |key: &str| {
        let evaluation = loaded.snapshot.evaluate(key, &request.context, now);
        let evaluation = match expected {
            Some(expected) => evaluation.expecting(expected),
            None => evaluation,
        };
        evaluation_json(key, evaluation, request.default_value.as_ref())
    };
    match (&request.key, &request.keys) {
        (Some(key), None) => Ok(Json(resolve(key))),
        (None, Some(keys)) => {
            if keys.len() > MAX_BATCH_FLAGS {
                return Err(ApiError::invalid(
                    "keys",
                    format!("at most {MAX_BATCH_FLAGS} flags per request"),
                ));
            }
            let results: Vec<Value> = keys.iter().map(|key| resolve(key)).collect();
            Ok(Json(serde_json::json!({ "results": results })))
        }
        _ => Err(ApiError::invalid("key", "give either key or keys")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    steps: Vec<RolloutStep>,
    /// Percent of failed outcomes in the cohort that halts the plan.
    error_rate_threshold: f64,
    /// Fewer outcomes than this are too few to judge (default 20).
    min_outcomes: Option<i64>,
}

#[derive(Serialize)]
pub struct RolloutView {
    #[serde(flatten)]
    plan: RolloutPlan,
    step_ends_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn rollout_view(plan: RolloutPlan) -> RolloutView {
    RolloutView {
        step_ends_at: step_ends_at(&plan),
        plan,
    }
}

pub async fn list_rollouts(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Vec<RolloutView>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    let plans = state.store.rollouts(&key).await?;
    Ok(Json(plans.into_iter().map(rollout_view).collect()))
}

/// Starts a plan: the flag goes to the first step's percentage now; the
/// rollout job moves it on after each hold.
pub async fn create_rollout(
    State(state): State<AppState>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<RolloutRequest>,
) -> Result<(StatusCode, Json<RolloutView>), ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    check_steps(&request.steps).map_err(invalid)?;
    if !(request.error_rate_threshold.is_finite()
        && (0.0..=100.0).contains(&request.error_rate_threshold))
    {
        return Err(ApiError::invalid(
            "error_rate_threshold",
            "must be a percentage within 0..=100",
        ));
    }
    let min_outcomes = request.min_outcomes.unwrap_or(20);
    if !(1..=1_000_000).contains(&min_outcomes) {
        return Err(ApiError::invalid(
            "min_outcomes",
            "must be between 1 and 1000000",
        ));
    }
    let (before, version) = state.flags.current().base(&key).ok_or_else(not_found)?;
    if before.percentage.is_none() {
        return Err(ApiError::invalid(
            "steps",
            format!("flag {key} has no percentage to roll out"),
        ));
    }
    if !before.enabled || before.archived {
        return Err(ApiError::Conflict {
            message: format!("flag {key} is off or archived; turn it on before rolling it out"),
        });
    }
    let after = FlagDefinition {
        percentage: Some(request.steps[0].percentage),
        ..before.clone()
    };
    let plan = NewRollout {
        flag_key: key.clone(),
        steps: request.steps,
        error_rate_threshold: request.error_rate_threshold,
        min_outcomes,
    };
    let write = FlagWrite {
        action: "flag.update",
        before: Some(before),
        after,
        expected_version: version,
    };
    let created = state
        .store
        .create_rollout(&plan, &write, &ops.audit(), state.clock.now())
        .await
        .map_err(conflict)?;
    state.flags.changed(&state, &key).await?;
    Ok((StatusCode::CREATED, Json(rollout_view(created))))
}

pub async fn cancel_rollout(
    State(state): State<AppState>,
    ops: Ops,
    Path((key, id)): Path<(String, String)>,
    JsonBody(request): JsonBody<KillRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", "must be a UUID"))?;
    let reason = check_reason(&request.reason)?;
    let plan = state
        .store
        .rollouts(&key)
        .await?
        .into_iter()
        .find(|plan| plan.id == id && plan.status == "active")
        .ok_or(ApiError::NotFound {
            what: "active rollout plan",
        })?;
    let change = RolloutChange {
        action: "rollout.cancel",
        next_step: plan.current_step,
        status: "cancelled",
        reason: Some(reason),
        flag: None,
        alert: None,
    };
    if !state
        .store
        .move_rollout(&plan, &change, &ops.audit(), state.clock.now())
        .await?
    {
        return Err(ApiError::Conflict {
            message: "the plan moved meanwhile; read it again".to_owned(),
        });
    }
    Ok(Json(serde_json::json!({"id": id, "status": "cancelled"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    status: Option<AlertStatus>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

pub async fn alerts(
    State(state): State<AppState>,
    ops: Ops,
    QueryParams(query): QueryParams<AlertsQuery>,
) -> Result<Json<Vec<PlatformAlert>>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    let status = query.status.map(|status| match status {
        AlertStatus::Open => "open",
        AlertStatus::Acknowledged => "acknowledged",
        AlertStatus::Resolved => "resolved",
    });
    Ok(Json(state.store.platform_alerts(status).await?))
}
