//! `/console/flags`: every flag with its status switch, and a link to create one;
//! `/console/flags/new`: the editor for a new flag; `/console/flags/{key}`: the flag, its
//! rollout percentage (a slider with presets), the kill switch behind a confirmation that
//! asks for a reason, the editor of its definition, its overrides, its staged rollout plans
//! and its audit trail with before/after diffs.
//!
//! The editor, overrides and plans take what the JSON API takes: a definition is built as the
//! API's JSON and goes through its parsing ([`parse_json`]) and the service's `validate`; an
//! override or a plan gets the API handler's checks, in its words, and the same service call.
//! A refusal names the same field with the same message.

use super::super::form::Fields;
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use super::when;
use crate::auth::Permission;
use crate::error::ApiError;
use crate::extract::{parse_json, uuid_param};
use crate::flags::{
    check_steps, flag_key, step_ends_at, FlagAuditEntry, FlagView, NewRollout, RolloutPlan,
    RolloutStep, StoredOverride,
};
use crate::http::{check_len, check_reason};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use engine::{FlagDefinition, FlagOverride, OverrideScope, Stickiness, ValueType};
use serde_json::{Map, Value};

pub(super) fn routes() -> Router<AppState> {
    // `/console/flags/new` is a static segment: axum (matchit) tries it before `{key}`, and
    // backtracks to `{key}` for `/console/flags/new_checkout` or `/console/flags/new/switch`.
    Router::new()
        .route("/console/flags", get(list).post(create))
        .route("/console/flags/new", get(new_flag))
        .route("/console/flags/{key}", get(show))
        .route("/console/flags/{key}/edit", post(edit))
        .route("/console/flags/{key}/switch", post(switch))
        .route("/console/flags/{key}/kill", post(kill))
        .route("/console/flags/{key}/percentage", post(percentage))
        .route("/console/flags/{key}/overrides", post(set_override))
        .route(
            "/console/flags/{key}/overrides/delete",
            post(delete_override),
        )
        .route("/console/flags/{key}/rollouts", post(create_rollout))
        .route(
            "/console/flags/{key}/rollouts/{id}/cancel",
            post(cancel_rollout),
        )
}

const AUDIT_ROWS: i64 = 50;

#[derive(Template)]
#[template(path = "console/flags.html")]
struct FlagsPage {
    layout: Layout,
    flags: Vec<FlagView>,
    can_write: bool,
}

async fn list(State(state): State<AppState>, agent: Agent) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::FlagsRead)?;
    page(
        &state,
        &agent,
        &FlagsPage {
            layout: Layout::new(&agent, "flags", "Flags"),
            flags: state.flags.list(),
            can_write: agent.ops.role.grants(Permission::FlagsWrite),
        },
    )
}

/// One changed field of an audit entry.
struct FieldChange {
    field: String,
    before: String,
    after: String,
}

struct AuditRow {
    entry: FlagAuditEntry,
    changes: Vec<FieldChange>,
}

/// The fields that differ between an entry's before and after.
fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let object = |value: Option<&Value>| {
        value
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (before, after) = (object(before), object(after));
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|field| before.get(*field) != after.get(*field))
        .map(|field| FieldChange {
            field: field.clone(),
            before: before
                .get(field)
                .map_or_else(|| "—".to_owned(), Value::to_string),
            after: after
                .get(field)
                .map_or_else(|| "—".to_owned(), Value::to_string),
        })
        .collect()
}

const FLAG_TYPES: [&str; 6] = [
    "boolean",
    "percentage",
    "tenant_list",
    "user_list",
    "schedule",
    "variant",
];
const AUDIENCES: [&str; 2] = ["platform", "plugins"];
/// The stickiness names the engine knows; any other is a context property.
const STICKINESS: [&str; 4] = ["default", "user_id", "tenant_id", "session_id"];
/// How a `datetime-local` input sends a time (seconds only with `step` below a minute).
const LOCAL_MINUTES: &str = "%Y-%m-%dT%H:%M";
const LOCAL_SECONDS: &str = "%Y-%m-%dT%H:%M:%S";

/// The editor's fields as text: blank for a new flag, the definition's for an edit.
struct FlagForm {
    flag_type: String,
    description: String,
    audience: String,
    default_value: String,
    percentage: String,
    stickiness: String,
    group_id: String,
    enabled_tenants: String,
    disabled_tenants: String,
    enabled_users: String,
    schedule_start: String,
    schedule_end: String,
    variants: String,
    variant_stickiness: String,
    variant_group_id: String,
    policy: String,
    archived: bool,
}

impl FlagForm {
    fn blank() -> Self {
        let definition = serde_json::from_value(serde_json::json!({"key": "", "type": "boolean"}))
            .expect("a boolean flag needs nothing else");
        Self::of(&definition)
    }

    fn of(definition: &FlagDefinition) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let local = |time: Option<chrono::DateTime<chrono::Utc>>| {
            time.map_or_else(String::new, |time| {
                let format = if chrono::Timelike::second(&time) == 0 {
                    LOCAL_MINUTES
                } else {
                    LOCAL_SECONDS
                };
                time.format(format).to_string()
            })
        };
        let schedule = definition.schedule.as_ref();
        Self {
            flag_type: definition.flag_type.as_str().to_owned(),
            description: definition.description.clone(),
            audience: match definition.audience {
                engine::Audience::Platform => "platform",
                engine::Audience::Plugins => "plugins",
            }
            .to_owned(),
            default_value: definition
                .default_value
                .as_ref()
                .map_or_else(String::new, Value::to_string),
            percentage: definition
                .percentage
                .map_or_else(String::new, |p| p.to_string()),
            stickiness: match &definition.stickiness {
                Stickiness::Default => String::new(),
                other => other.as_str().to_owned(),
            },
            group_id: text(&definition.group_id),
            enabled_tenants: definition.enabled_tenants.join("\n"),
            disabled_tenants: definition.disabled_tenants.join("\n"),
            enabled_users: definition.enabled_users.join("\n"),
            schedule_start: local(schedule.and_then(|s| s.start)),
            schedule_end: local(schedule.and_then(|s| s.end)),
            variants: if definition.variants.is_empty() {
                String::new()
            } else {
                serde_json::to_string_pretty(&definition.variants).expect("JSON")
            },
            variant_stickiness: definition
                .variant_stickiness
                .as_ref()
                .map_or_else(String::new, |s| s.as_str().to_owned()),
            variant_group_id: text(&definition.variant_group_id),
            policy: text(&definition.policy),
            archived: definition.archived,
        }
    }

    fn types(&self) -> [&'static str; 6] {
        FLAG_TYPES
    }

    fn audiences(&self) -> [&'static str; 2] {
        AUDIENCES
    }

    fn stickiness_names(&self) -> [&'static str; 4] {
        STICKINESS
    }
}

/// A line or comma separated list, blanks left out.
fn list_of(text: Option<&str>) -> Vec<Value> {
    text.unwrap_or("")
        .split(['\n', ','])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| Value::String(entry.to_owned()))
        .collect()
}

/// A `datetime-local` value, read as UTC, in the JSON the API takes.
fn utc_time(fields: &Fields, field: &str) -> Result<Option<Value>, ConsoleError> {
    fields
        .text(field)
        .map(|text| {
            chrono::NaiveDateTime::parse_from_str(text, LOCAL_MINUTES)
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, LOCAL_SECONDS))
                .map(|local| serde_json::to_value(local.and_utc()).expect("JSON"))
                .map_err(|_| {
                    ApiError::invalid(field, "must be a date and time, YYYY-MM-DDTHH:MM (UTC)")
                        .into()
                })
        })
        .transpose()
}

/// The definition's fields the editor sets, as the API's JSON has them; None for a field
/// left blank (absent from a create, removed by an edit as `null` removes it in a PATCH).
/// Only what is not JSON yet is converted here: the types, ranges and what each flag type
/// needs are checked by the API's parsing and the engine's `validate`.
fn editor_fields(fields: &Fields) -> Result<Vec<(&'static str, Option<Value>)>, ConsoleError> {
    let string = |name: &str| fields.text(name).map(|text| Value::String(text.to_owned()));
    let list = |name: &str| Some(list_of(fields.text(name))).filter(|l| !l.is_empty());
    // JSON, or a bare word as a string (a variant's name).
    let default_value = fields.text("default_value").map(|text| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    });
    let percentage = fields
        .parsed::<u32>("percentage", "an integer from 0 to 100")?
        .map(Value::from);
    let start = utc_time(fields, "schedule.start")?;
    let end = utc_time(fields, "schedule.end")?;
    let schedule = (start.is_some() || end.is_some()).then(|| {
        let mut window = Map::new();
        window.extend(start.map(|start| ("start".to_owned(), start)));
        window.extend(end.map(|end| ("end".to_owned(), end)));
        Value::Object(window)
    });
    let variants = fields
        .text("variants")
        .map(|text| {
            serde_json::from_str::<Value>(text).map_err(|_| {
                ApiError::invalid(
                    "variants",
                    "must be a JSON array: [{\"name\": …, \"weight\": …, \"payload\": …}]",
                )
            })
        })
        .transpose()?;
    Ok(vec![
        (
            "type",
            Some(Value::String(fields.required("type")?.to_owned())),
        ),
        ("description", string("description")),
        ("audience", string("audience")),
        ("default_value", default_value),
        ("percentage", percentage),
        ("stickiness", string("stickiness")),
        ("group_id", string("group_id")),
        ("schedule", schedule),
        ("enabled_tenants", list("enabled_tenants").map(Value::Array)),
        (
            "disabled_tenants",
            list("disabled_tenants").map(Value::Array),
        ),
        ("enabled_users", list("enabled_users").map(Value::Array)),
        ("variants", variants),
        ("variant_stickiness", string("variant_stickiness")),
        ("variant_group_id", string("variant_group_id")),
        ("policy", string("policy")),
    ])
}

#[derive(Template)]
#[template(path = "console/flag_new.html")]
struct NewFlagPage {
    layout: Layout,
    form: FlagForm,
}

/// `GET /console/flags/new`: the editor, blank (`flags:write`: it is the create's form).
async fn new_flag(State(state): State<AppState>, agent: Agent) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::FlagsWrite)?;
    page(
        &state,
        &agent,
        &NewFlagPage {
            layout: Layout::new(&agent, "flags", "New flag"),
            form: FlagForm::blank(),
        },
    )
}

/// `POST /console/flags`: `key`, optional `enabled` (`true`, the API's default, or
/// `false`) and the editor's fields, as the API's create takes them.
async fn create(
    State(state): State<AppState>,
    agent: Agent,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::FlagsWrite)?;
    let key = fields.required("key")?.to_owned();
    let mut object = Map::new();
    object.insert("key".to_owned(), Value::String(key.clone()));
    match fields.text("enabled") {
        None => {}
        Some("true") => {
            object.insert("enabled".to_owned(), Value::Bool(true));
        }
        Some("false") => {
            object.insert("enabled".to_owned(), Value::Bool(false));
        }
        Some(_) => return Err(ApiError::invalid("enabled", "must be true or false").into()),
    }
    for (field, value) in editor_fields(&fields)? {
        if let Some(value) = value {
            object.insert(field.to_owned(), value);
        }
    }
    let definition: FlagDefinition = parse_json(&serde_json::to_vec(&object).expect("JSON"))?;
    state.flags.create(definition, &agent.ops.audit()).await?;
    Ok(changed(&state, &key, &format!("Flag {key} created.")))
}

/// `POST /console/flags/{key}/edit`: the editor's fields and `archived` (a checkbox),
/// applied as the API's PATCH applies a merge patch: a blank field removes it; `enabled`
/// is left to the switch and the kill switch.
async fn edit(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let mut patch = editor_fields(&fields)?;
    patch.push((
        "archived",
        Some(Value::Bool(fields.text("archived").is_some())),
    ));
    state
        .flags
        .change(&key, "flag.update", &agent.ops.audit(), |before| {
            let Value::Object(mut merged) =
                serde_json::to_value(&before).expect("a flag serializes")
            else {
                unreachable!("a flag serializes to an object");
            };
            for (field, value) in patch {
                match value {
                    Some(value) => merged.insert(field.to_owned(), value),
                    None => merged.remove(field),
                };
            }
            parse_json(&serde_json::to_vec(&merged).expect("JSON"))
        })
        .await?;
    Ok(changed(&state, &key, &format!("Flag {key} saved.")))
}

/// A step of a plan as the form shows it.
struct StepRow {
    percentage: u32,
    hold: String,
    current: bool,
}

struct RolloutRow {
    plan: RolloutPlan,
    steps: Vec<StepRow>,
    started: String,
    /// When the current step's hold ends (an active plan's).
    step_ends_at: Option<String>,
}

impl RolloutRow {
    fn new(plan: RolloutPlan) -> Self {
        let active = plan.status == "active";
        let steps = plan
            .steps
            .0
            .iter()
            .enumerate()
            .map(|(i, step)| StepRow {
                percentage: step.percentage,
                hold: hold_text(step.hold_minutes),
                current: active && i64::try_from(i).is_ok_and(|i| i == plan.current_step),
            })
            .collect();
        Self {
            started: when(&plan.created_at),
            step_ends_at: step_ends_at(&plan).filter(|_| active).map(|at| when(&at)),
            steps,
            plan,
        }
    }

    /// The stylesheet's badge for the plan's status.
    fn badge(&self) -> &'static str {
        match self.plan.status.as_str() {
            "active" => "active",
            "completed" => "ok",
            "halted" => "critical",
            _ => "disabled",
        }
    }
}

/// A hold as the plan form takes it: `30m`, `2h`, `1d`, `0`.
fn hold_text(minutes: u32) -> String {
    match minutes {
        0 => "0".to_owned(),
        m if m % 1440 == 0 => format!("{}d", m / 1440),
        m if m % 60 == 0 => format!("{}h", m / 60),
        m => format!("{m}m"),
    }
}

#[derive(Template)]
#[template(path = "console/flag.html")]
struct FlagPage {
    layout: Layout,
    flag: FlagView,
    definition: String,
    audit: Vec<AuditRow>,
    presets: [u32; 5],
    can_write: bool,
    form: FlagForm,
    overrides: Vec<StoredOverride>,
    /// What an override may set: `true`/`false`, or a variant flag's variant names.
    override_values: Vec<String>,
    rollouts: Vec<RolloutRow>,
    has_active_plan: bool,
}

async fn show(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::FlagsRead)?;
    flag_key(&key)?;
    let flag = state.flags.show(&key)?;
    let audit = state
        .flags
        .audit(&key, AUDIT_ROWS)
        .await?
        .into_iter()
        .map(|entry| AuditRow {
            changes: changes(
                entry.before.as_ref().map(|json| &json.0),
                entry.after.as_ref().map(|json| &json.0),
            ),
            entry,
        })
        .collect();
    let overrides = state.flags.overrides(&key).await?;
    let rollouts: Vec<RolloutRow> = state
        .flags
        .rollouts(&key)
        .await?
        .into_iter()
        .map(RolloutRow::new)
        .collect();
    let override_values = match flag.definition.value_type() {
        ValueType::Boolean => vec!["true".to_owned(), "false".to_owned()],
        ValueType::String => flag
            .definition
            .variants
            .iter()
            .map(|variant| variant.name.clone())
            .collect(),
    };
    page(
        &state,
        &agent,
        &FlagPage {
            layout: Layout::new(&agent, "flags", format!("Flag {key}")),
            definition: serde_json::to_string_pretty(&flag.definition).expect("JSON"),
            form: FlagForm::of(&flag.definition),
            has_active_plan: rollouts.iter().any(|row| row.plan.status == "active"),
            flag,
            audit,
            presets: [0, 5, 25, 50, 100],
            can_write: agent.ops.role.grants(Permission::FlagsWrite),
            overrides,
            override_values,
            rollouts,
        },
    )
}

/// What every change of a flag checks first: the permission, and a key the API takes.
fn may_change(agent: &Agent, key: &str) -> Result<(), ConsoleError> {
    agent.ops.require(Permission::FlagsWrite)?;
    Ok(flag_key(key)?)
}

/// After a change: back to the flag's page with `message`.
fn changed(state: &AppState, key: &str, message: &str) -> Response {
    done(state, &flag_path(key), message)
}

/// The flag's page; a key outside ASCII is percent-encoded for the `Location` header.
fn flag_path(key: &str) -> String {
    let key = percent_encoding::utf8_percent_encode(key, percent_encoding::CONTROLS);
    format!("/console/flags/{key}")
}

/// `POST /console/flags/{key}/switch`: `enabled` = `true` or `false`.
async fn switch(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let enabled = match fields.required("enabled")? {
        "true" => true,
        "false" => false,
        _ => return Err(ApiError::invalid("enabled", "must be true or false").into()),
    };
    state
        .flags
        .change(&key, "flag.update", &agent.ops.audit(), |before| {
            Ok(FlagDefinition { enabled, ..before })
        })
        .await?;
    let back = match fields.text("back") {
        Some("list") => "/console/flags".to_owned(),
        _ => flag_path(&key),
    };
    let word = if enabled { "on" } else { "off" };
    Ok(done(&state, &back, &format!("Flag {key} switched {word}.")))
}

/// `POST /console/flags/{key}/kill`: off for every caller at once; `reason` and
/// `confirm` (the flag's key, typed again) are required.
async fn kill(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let reason = check_reason(fields.required("reason")?)?;
    if fields.text("confirm") != Some(key.as_str()) {
        return Err(ApiError::invalid("confirm", "type the flag's key to confirm the kill").into());
    }
    tracing::warn!(event = "flag_killed", flag_key = %key, reason = %reason, "kill switch");
    state
        .flags
        .change(&key, "flag.kill", &agent.ops.audit(), |before| {
            Ok(FlagDefinition {
                enabled: false,
                ..before
            })
        })
        .await?;
    Ok(changed(
        &state,
        &key,
        &format!("Flag {key} killed: every caller gets its default."),
    ))
}

/// `POST /console/flags/{key}/percentage`: `percentage` 0–100 of a percentage flag.
async fn percentage(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let percentage: u32 = fields
        .parsed("percentage", "an integer from 0 to 100")?
        .ok_or_else(|| ApiError::invalid("percentage", "is required"))?;
    if percentage > 100 {
        return Err(ApiError::invalid("percentage", "must be an integer from 0 to 100").into());
    }
    state
        .flags
        .change(&key, "flag.update", &agent.ops.audit(), |before| {
            Ok(FlagDefinition {
                percentage: Some(percentage),
                ..before
            })
        })
        .await?;
    Ok(changed(
        &state,
        &key,
        &format!("Flag {key} rolled out to {percentage} %."),
    ))
}

/// An override's `scope`, in the API's words.
fn scope(fields: &Fields) -> Result<OverrideScope, ConsoleError> {
    match fields.text("scope") {
        Some("tenant") => Ok(OverrideScope::Tenant),
        Some("user") => Ok(OverrideScope::User),
        _ => Err(ApiError::invalid("scope", "must be tenant or user").into()),
    }
}

/// `POST /console/flags/{key}/overrides`: `scope`, `target`, `value` and `reason`, the
/// API's checks. `value` is `true`/`false`, or for a variant flag a variant's name (any
/// other text is sent as a string, for the service to refuse against the flag's type).
async fn set_override(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let scope = scope(&fields)?;
    let target = fields
        .text("target")
        .ok_or_else(|| ApiError::invalid("target", "must name a tenant or a user"))?;
    check_len("target", target, engine::MAX_NAME_CHARS)?;
    let reason = check_reason(fields.text("reason").unwrap_or(""))?;
    let flag = state.flags.show(&key)?;
    let value = match (flag.definition.value_type(), fields.required("value")?) {
        (ValueType::Boolean, "true") => Value::Bool(true),
        (ValueType::Boolean, "false") => Value::Bool(false),
        (_, text) => Value::String(text.to_owned()),
    };
    let entry = FlagOverride {
        flag_key: key.clone(),
        scope,
        target: target.to_owned(),
        value,
    };
    state
        .flags
        .set_override(entry, &reason, &agent.ops.audit())
        .await?;
    Ok(changed(
        &state,
        &key,
        &format!("Override for {} {target} set.", scope.as_str()),
    ))
}

/// `POST /console/flags/{key}/overrides/delete`: `scope` and `target` of the override.
async fn delete_override(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let scope = scope(&fields)?;
    let target = fields.required("target")?;
    state
        .flags
        .delete_override(&key, scope, target, &agent.ops.audit())
        .await?;
    Ok(changed(
        &state,
        &key,
        &format!("Override for {} {target} removed.", scope.as_str()),
    ))
}

/// The most minutes a hold may name before `check_steps` refuses it (30 days): a larger
/// number is refused here, before it could overflow.
const MAX_HOLD_MINUTES: u32 = 30 * 24 * 60;

/// A plan's `steps`, one a line, `PERCENT HOLD`: `5 30m`, `25 2h`, `50 1d`, `100 0` (a
/// `%` after the percentage is allowed; the hold is minutes, or `m`, `h`, `d`; left out it
/// is 0). Each line is one `{percentage, hold_minutes}` of the API's request, and the
/// errors name `steps[i]…` as the API's do.
fn steps(text: &str) -> Result<Vec<RolloutStep>, ApiError> {
    text.lines()
        .map(|line| line.replace('%', " "))
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (percentage, hold) = match words.as_slice() {
                [percentage] => (*percentage, "0"),
                [percentage, hold] => (*percentage, *hold),
                _ => {
                    return Err(ApiError::invalid(
                        format!("steps[{i}]"),
                        "write a step as PERCENT HOLD, e.g. 5 30m",
                    ))
                }
            };
            let percentage = percentage.parse::<u32>().map_err(|_| {
                ApiError::invalid(
                    format!("steps[{i}].percentage"),
                    "must be an integer within 0..=100",
                )
            })?;
            let (number, unit) = match hold.find(|c: char| !c.is_ascii_digit()) {
                Some(at) => hold.split_at(at),
                None => (hold, "m"),
            };
            let scale = match unit {
                "m" | "min" => Some(1),
                "h" => Some(60),
                "d" => Some(1440),
                _ => None,
            };
            let hold_minutes = scale
                .zip(number.parse::<u32>().ok())
                .and_then(|(scale, number)| number.checked_mul(scale))
                .filter(|minutes| *minutes <= MAX_HOLD_MINUTES)
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("steps[{i}].hold_minutes"),
                        "must be minutes (30m), hours (2h) or days (1d), at most 30 days",
                    )
                })?;
            Ok(RolloutStep {
                percentage,
                hold_minutes,
            })
        })
        .collect()
}

/// `POST /console/flags/{key}/rollouts`: `steps` (see [`steps`]), `error_rate_threshold`
/// (percent) and optional `min_outcomes` (20), with the API's checks and messages.
async fn create_rollout(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let steps = steps(fields.text("steps").unwrap_or(""))?;
    check_steps(&steps).map_err(|error| ApiError::invalid(error.field, error.message))?;
    let threshold: f64 = fields
        .parsed("error_rate_threshold", "a percentage within 0..=100")?
        .ok_or_else(|| ApiError::invalid("error_rate_threshold", "is required"))?;
    if !(threshold.is_finite() && (0.0..=100.0).contains(&threshold)) {
        return Err(ApiError::invalid(
            "error_rate_threshold",
            "must be a percentage within 0..=100",
        )
        .into());
    }
    let min_outcomes: i64 = fields
        .parsed("min_outcomes", "between 1 and 1000000")?
        .unwrap_or(20);
    if !(1..=1_000_000).contains(&min_outcomes) {
        return Err(ApiError::invalid("min_outcomes", "must be between 1 and 1000000").into());
    }
    let first = steps[0].percentage;
    let plan = NewRollout {
        flag_key: key.clone(),
        steps,
        error_rate_threshold: threshold,
        min_outcomes,
    };
    state.flags.create_rollout(plan, &agent.ops.audit()).await?;
    Ok(changed(
        &state,
        &key,
        &format!("Rollout plan started: flag {key} is at {first} %."),
    ))
}

/// `POST /console/flags/{key}/rollouts/{id}/cancel`: `reason`; the flag stays at the
/// percentage it reached.
async fn cancel_rollout(
    State(state): State<AppState>,
    agent: Agent,
    Path((key, id)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    may_change(&agent, &key)?;
    let id = uuid_param("id", &id)?;
    let reason = check_reason(fields.text("reason").unwrap_or(""))?;
    state
        .flags
        .cancel_rollout(&key, id, reason, &agent.ops.audit())
        .await?;
    Ok(changed(
        &state,
        &key,
        &format!("Rollout plan of flag {key} cancelled."),
    ))
}
