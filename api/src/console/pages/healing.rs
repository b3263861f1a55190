//! `/console/healing`: the review queue and the logs (the seed's filters), the stats
//! cards, the rule breakers (resume), the patch registry and the rule files in force
//! (reload); `/console/healing/{id}`: one log with its decision trace, its operations as
//! a diff of the snapshot, and approve (optionally with edited params, dry-run before it
//! is accepted), reject and rollback.

use super::super::form::{query, Fields};
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use crate::auth::Permission;
use crate::error::ApiError;
use crate::extract::uuid_param;
use crate::healing::patches::RegistryStatus;
use crate::healing::status_filter;
use crate::healing::{
    BreakerScope, Command, HealingLog, HealingLogFilter, HealingStats, HealingStatus,
    IssueSeverity, RuleBreaker,
};
use crate::http::{check_len, check_reason, days_ago};
use crate::rules::RulesStatus;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use engine::Platform;
use host::Operation;
use serde::Deserialize;
use serde_json::{Map, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/healing", get(overview))
        .route("/console/healing/{id}", get(log))
        .route("/console/healing/{id}/approve", post(approve))
        .route("/console/healing/{id}/reject", post(reject))
        .route("/console/healing/{id}/rollback", post(rollback))
        .route("/console/healing/rules/reload", post(reload_rules))
        .route("/console/healing/breakers/resume", post(resume))
}

const LOG_ROWS: i64 = 100;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    status: Option<String>,
    issue_severity: Option<IssueSeverity>,
    cms: Option<Platform>,
    rule: Option<String>,
    days: Option<i64>,
}

#[derive(Template)]
#[template(path = "console/healing.html")]
struct HealingPage {
    layout: Layout,
    logs: Vec<HealingLog>,
    stats: HealingStats,
    breakers: Vec<RuleBreaker>,
    registry: RegistryStatus,
    rules: RulesStatus,
    status: String,
    issue_severity: &'static str,
    cms: &'static str,
    rule: String,
    days: String,
    statuses: &'static [HealingStatus],
    severities: &'static [IssueSeverity],
    platforms: [Platform; 5],
    can_review: bool,
    can_reload: bool,
}

async fn overview(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: LogsQuery = query(&uri)?;
    let status = request.status.as_deref().map(status_filter).transpose()?;
    if let Some(rule) = &request.rule {
        check_len("rule", rule, 200)?;
    }
    let now = state.clock.now();
    let filter = HealingLogFilter {
        status,
        issue_severity: request.issue_severity.map(|s| s.as_str().to_owned()),
        cms: request.cms.map(|cms| cms.as_str().to_owned()),
        plugin_id: None,
        rule_name: request.rule.clone(),
        since: days_ago(now, request.days)?,
        source: None,
        limit: LOG_ROWS,
        offset: 0,
    };
    let logs = state.healing.logs(&filter).await?;
    let stats = state
        .healing
        .stats(now - chrono::TimeDelta::days(30))
        .await?;
    let breakers = state.healing.breakers().await?;
    page(
        &state,
        &agent,
        &HealingPage {
            layout: Layout::new(&agent, "healing", "Healing"),
            logs,
            stats,
            breakers,
            registry: state.healing.registry(),
            rules: state.rules_admin.status(),
            status: status.map_or("", HealingStatus::as_str).to_owned(),
            issue_severity: request.issue_severity.map_or("", IssueSeverity::as_str),
            cms: request.cms.map_or("", Platform::as_str),
            rule: request.rule.unwrap_or_default(),
            days: request.days.map(|d| d.to_string()).unwrap_or_default(),
            statuses: &HealingStatus::ALL,
            severities: IssueSeverity::ALL,
            platforms: Platform::ALL,
            can_review: agent.ops.role.grants(Permission::AutohealApprove),
            can_reload: agent.ops.role.grants(Permission::RulesReload),
        },
    )
}

/// One line of a patch's diff of the snapshot: `+` adds, `-` removes, `~` changes.
pub(super) struct DiffLine {
    pub sign: &'static str,
    pub class: &'static str,
    pub text: String,
}

/// The operations as a diff: each change with what the snapshot had before it (read
/// from the restore operations, which put back exactly that).
fn diff(operations: Option<&Value>, restore: Option<&Value>) -> Vec<DiffLine> {
    let parse = |value: Option<&Value>| -> Vec<Operation> {
        value
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default()
    };
    let restore = parse(restore);
    let before = |key: &str| {
        restore.iter().find_map(|op| match op {
            Operation::SetConfig { key: k, value } if k == key => Some(value.to_string()),
            Operation::UnsetConfig { key: k } if k == key => Some("(absent)".to_owned()),
            _ => None,
        })
    };
    parse(operations)
        .into_iter()
        .map(|op| match op {
            Operation::AddColumn {
                table,
                column,
                column_type,
            } => DiffLine {
                sign: "+",
                class: "diff-add",
                text: format!("column {table}.{column} {column_type}"),
            },
            Operation::DropColumn { table, column } => DiffLine {
                sign: "-",
                class: "diff-del",
                text: format!("column {table}.{column}"),
            },
            Operation::SetConfig { key, value } => DiffLine {
                sign: "~",
                class: "diff-add",
                text: format!(
                    "config {key}: {} → {value}",
                    before(&key).unwrap_or_else(|| "(absent)".to_owned())
                ),
            },
            Operation::UnsetConfig { key } => DiffLine {
                sign: "-",
                class: "diff-del",
                text: format!(
                    "config {key} (was {})",
                    before(&key).unwrap_or_else(|| "unknown".to_owned())
                ),
            },
            Operation::NotifyMerchant {
                template, message, ..
            } => DiffLine {
                sign: "!",
                class: "",
                text: format!("notify merchant ({template}): {message}"),
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/healing_log.html")]
struct LogPage {
    layout: Layout,
    log: HealingLog,
    decision: String,
    proposed: String,
    /// Why the detector raised it (empty for Sira's).
    raised_by: String,
    params: String,
    diff: Vec<DiffLine>,
    commands: Vec<Command>,
    can_review: bool,
    pending: bool,
    can_roll_back: bool,
}

async fn log(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let log = state.healing.log(uuid_param("id", &id)?).await?;
    let commands = state
        .healing
        .commands_of(log.plugin_id, Some(log.id), 20)
        .await?;
    let pretty = |value: Option<&Value>| {
        value.map_or_else(String::new, |value| {
            serde_json::to_string_pretty(value).expect("JSON")
        })
    };
    let can_review = agent.ops.role.grants(Permission::AutohealApprove);
    page(
        &state,
        &agent,
        &LogPage {
            layout: Layout::new(
                &agent,
                "healing",
                format!("Healing log: {}", log.detected_issue),
            ),
            decision: pretty(Some(&log.decision.0)),
            proposed: pretty(log.proposed_patch.as_ref().map(|json| &json.0)),
            raised_by: pretty(log.raised_by.as_ref().map(|json| &json.0)),
            params: pretty(
                log.patch_params
                    .as_ref()
                    .map(|json| &json.0)
                    .or_else(|| log.decision.0.get("params")),
            ),
            diff: diff(
                log.operations.as_ref().map(|json| &json.0),
                log.restore_operations.as_ref().map(|json| &json.0),
            ),
            commands,
            pending: log.status.can_move_to(HealingStatus::Approved),
            can_roll_back: log.status.can_move_to(HealingStatus::RollingBack),
            can_review,
            log,
        },
    )
}

fn log_path(id: uuid::Uuid) -> String {
    format!("/console/healing/{id}")
}

/// `POST /console/healing/{id}/approve`: optional `patch_name` and `params` (a JSON
/// object) edit the patch; the service dry-runs it before anything is queued, and a
/// refusal names the field.
async fn approve(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::AutohealApprove)?;
    let id = uuid_param("id", &id)?;
    let mut edit = Map::new();
    if let Some(name) = fields.text("patch_name") {
        edit.insert("name".to_owned(), Value::String(name.to_owned()));
    }
    if let Some(params) = fields.text("params") {
        let params: Value = serde_json::from_str(params)
            .map_err(|error| ApiError::invalid("params", format!("is not JSON: {error}")))?;
        if !params.is_object() {
            return Err(ApiError::invalid("params", "must be a JSON object").into());
        }
        edit.insert("params".to_owned(), params);
    }
    let log = state
        .healing
        .approve(id, (!edit.is_empty()).then_some(&edit), &agent.ops.audit())
        .await?;
    let (_, message) = log.approval_outcome();
    Ok(done(&state, &log_path(id), &format!("{message}.")))
}

/// What reject and rollback take: the permission, the log and a reason.
fn reasoned(
    agent: &Agent,
    id: &str,
    fields: &Fields,
) -> Result<(uuid::Uuid, String), ConsoleError> {
    agent.ops.require(Permission::AutohealApprove)?;
    Ok((
        uuid_param("id", id)?,
        check_reason(fields.required("reason")?)?,
    ))
}

async fn reject(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    let (id, reason) = reasoned(&agent, &id, &fields)?;
    state
        .healing
        .reject(id, &reason, &agent.ops.audit())
        .await?;
    Ok(done(&state, &log_path(id), "Rejected."))
}

async fn rollback(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    let (id, reason) = reasoned(&agent, &id, &fields)?;
    state
        .healing
        .rollback(id, &reason, &agent.ops.audit())
        .await?;
    Ok(done(
        &state,
        &log_path(id),
        "Rollback queued: the log is rolling_back until the plugin acks.",
    ))
}

async fn reload_rules(
    State(state): State<AppState>,
    agent: Agent,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::RulesReload)?;
    match state.rules_admin.reload(&agent.ops.audit()).await {
        Ok(status) => Ok(done(
            &state,
            "/console/healing",
            &format!("Rules reloaded: {} files in force.", status.files.len()),
        )),
        Err(ApiError::RulesRefused { errors }) => Ok(done(
            &state,
            "/console/healing",
            &format!(
                "The rule set was refused; the previous set stays in force. {}",
                errors.join(" | ")
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `POST /console/healing/breakers/resume`: `rule`, `reason`, and `merchant_id` for a
/// merchant's breaker (none: the fleet's).
async fn resume(
    State(state): State<AppState>,
    agent: Agent,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::AutohealApprove)?;
    let rule = fields.required("rule")?;
    check_len("rule", rule, 200)?;
    let reason = check_reason(fields.required("reason")?)?;
    let scope = match fields.text("merchant_id") {
        Some(id) => BreakerScope::Merchant(uuid_param("merchant_id", id)?),
        None => BreakerScope::Fleet,
    };
    let resumed = state
        .healing
        .resume_rule(rule, scope, &reason, &agent.ops.audit())
        .await?;
    let message = if resumed {
        format!("Rule {rule} resumed.")
    } else {
        format!("Rule {rule} was not suspended.")
    };
    Ok(done(&state, "/console/healing", &message))
}
