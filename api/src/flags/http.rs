//! `/api/platform/flags` (seed 002's route list): Ops manage flags, their overrides, the
//! kill switch and rollout plans (`flags:read` to read, `flags:write` to change; every
//! change audited); any authenticated caller evaluates.

use super::{
    check_steps, step_ends_at, FlagAuditEntry, FlagView, NewRollout, RolloutPlan, RolloutStep,
    Service, StoredOverride,
};
use crate::auth::{Caller, Ops, Permission, Principal};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::extract::{uuid_param, JsonBody, QueryParams};
use crate::http::{check_len, check_reason};
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
use std::sync::Arc;

/// Most flags one evaluate request may ask for.
pub const MAX_BATCH_FLAGS: usize = 1_000;

pub(crate) fn routes() -> Router<AppState> {
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
}

fn invalid(error: FieldError) -> ApiError {
    ApiError::invalid(error.field, error.message)
}

fn flag_key(key: &str) -> Result<(), ApiError> {
    engine::check_key("key", key).map_err(invalid)
}

async fn list(
    State(flags): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<Vec<FlagView>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    Ok(Json(flags.list()))
}

async fn show(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<FlagView>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    Ok(Json(flags.show(&key)?))
}

async fn create(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    JsonBody(definition): JsonBody<FlagDefinition>,
) -> Result<(StatusCode, Json<FlagView>), ApiError> {
    ops.require(Permission::FlagsWrite)?;
    let created = flags.create(definition, &ops.audit()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PATCH /{key}`: a JSON merge patch of the definition (`null` removes an
/// optional field); the key cannot change.
async fn update(
    State(flags): State<Arc<Service>>,
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
    let updated = flags
        .change(&key, "flag.update", &ops.audit(), |before| {
            let Value::Object(mut merged) =
                serde_json::to_value(&before).expect("a flag serializes")
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
struct ReasonRequest {
    reason: String,
}

/// The kill switch: the flag is off for every caller at once (each gets the
/// default value), on every replica within a second; audited.
async fn kill(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<FlagView>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let reason = check_reason(&request.reason)?;
    tracing::warn!(event = "flag_killed", flag_key = %key, reason = %reason, "kill switch");
    let killed = flags
        .change(&key, "flag.kill", &ops.audit(), |before| {
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
async fn remove(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let (deleted, file) = flags.remove(&key, &ops.audit()).await?;
    Ok(Json(serde_json::json!({
        "deleted": deleted,
        // The file's copy is in force again.
        "now_in_force_from_file": file,
    })))
}

async fn list_overrides(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Vec<StoredOverride>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    Ok(Json(flags.overrides(&key).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    scope: OverrideScope,
    target: String,
    value: Value,
    reason: String,
}

async fn set_override(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
    JsonBody(request): JsonBody<OverrideRequest>,
) -> Result<(StatusCode, Json<StoredOverride>), ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    if request.target.trim().is_empty() {
        return Err(ApiError::invalid("target", "must name a tenant or a user"));
    }
    check_len("target", &request.target, engine::MAX_NAME_CHARS)?;
    let reason = check_reason(&request.reason)?;
    let entry = FlagOverride {
        flag_key: key,
        scope: request.scope,
        target: request.target,
        value: request.value,
    };
    let stored = flags.set_override(entry, &reason, &ops.audit()).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn delete_override(
    State(flags): State<Arc<Service>>,
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
    Ok(Json(
        flags
            .delete_override(&key, scope, &target, &ops.audit())
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn audit(
    State(flags): State<Arc<Service>>,
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
    Ok(Json(flags.audit(&key, limit).await?))
}

/// One flag to evaluate, with the caller's default (OpenFeature's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateRequest {
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
struct EvaluationView<'a> {
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
async fn evaluate(
    State(flags): State<Arc<Service>>,
    State(clock): State<Clock>,
    Caller(principal): Caller,
    JsonBody(mut request): JsonBody<EvaluateRequest>,
) -> Result<Json<Value>, ApiError> {
    let for_plugins = matches!(principal, Principal::Merchant { .. });
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
    let keys = match (request.key.take(), request.keys.take()) {
        (Some(key), None) => Requested::One(key),
        (None, Some(keys)) if keys.len() > MAX_BATCH_FLAGS => {
            return Err(ApiError::invalid(
                "keys",
                format!("at most {MAX_BATCH_FLAGS} flags per request"),
            ))
        }
        (None, Some(keys)) => Requested::Batch(keys),
        _ => return Err(ApiError::invalid("key", "give either key or keys")),
    };
    let loaded = flags.current();
    let now = clock.now();
    let runs_policy = keys.all().any(|key| loaded.snapshot.runs_policy(key));
    let answer = flags
        .in_force()
        .within_policy_budget(runs_policy, move |deadline| {
            let resolve = |key: &str| {
                // A merchant's key sees only the flags meant for plugins.
                let evaluation = if for_plugins {
                    loaded
                        .snapshot
                        .evaluate_for_plugins(key, &request.context, now, deadline)
                } else {
                    loaded
                        .snapshot
                        .evaluate_within(key, &request.context, now, deadline)
                };
                let evaluation = match expected {
                    Some(expected) => evaluation.expecting(expected),
                    None => evaluation,
                };
                evaluation_json(key, evaluation, request.default_value.as_ref())
            };
            match &keys {
                Requested::One(key) => resolve(key),
                Requested::Batch(keys) => {
                    let results: Vec<Value> = keys.iter().map(|key| resolve(key)).collect();
                    serde_json::json!({ "results": results })
                }
            }
        })
        .await;
    Ok(Json(answer))
}

/// The flags one evaluation request names.
enum Requested {
    One(String),
    Batch(Vec<String>),
}

impl Requested {
    fn all(&self) -> impl Iterator<Item = &str> {
        match self {
            Self::One(key) => std::slice::from_ref(key).iter(),
            Self::Batch(keys) => keys.iter(),
        }
        .map(String::as_str)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutRequest {
    steps: Vec<RolloutStep>,
    /// Percent of failed outcomes in the cohort that halts the plan.
    error_rate_threshold: f64,
    /// Fewer outcomes than this are too few to judge (default 20).
    min_outcomes: Option<i64>,
}

#[derive(Serialize)]
struct RolloutView {
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

async fn list_rollouts(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path(key): Path<String>,
) -> Result<Json<Vec<RolloutView>>, ApiError> {
    ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    let plans = flags.rollouts(&key).await?;
    Ok(Json(plans.into_iter().map(rollout_view).collect()))
}

/// Starts a plan: the flag goes to the first step's percentage now; the
/// rollout job moves it on after each hold.
async fn create_rollout(
    State(flags): State<Arc<Service>>,
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
    let plan = NewRollout {
        flag_key: key,
        steps: request.steps,
        error_rate_threshold: request.error_rate_threshold,
        min_outcomes,
    };
    let created = flags.create_rollout(plan, &ops.audit()).await?;
    Ok((StatusCode::CREATED, Json(rollout_view(created))))
}

async fn cancel_rollout(
    State(flags): State<Arc<Service>>,
    ops: Ops,
    Path((key, id)): Path<(String, String)>,
    JsonBody(request): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
    let id = uuid_param("id", &id)?;
    let reason = check_reason(&request.reason)?;
    Ok(Json(
        flags.cancel_rollout(&key, id, reason, &ops.audit()).await?,
    ))
}
