//! `/console/flags`: every flag with its status switch; `/console/flags/{key}`: the flag,
//! its rollout percentage (a slider with presets), the kill switch behind a confirmation
//! that asks for a reason, and its audit trail with before/after diffs.

use super::super::form::Fields;
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use crate::auth::Permission;
use crate::error::ApiError;
use crate::flags::{flag_key, FlagAuditEntry, FlagView};
use crate::http::check_reason;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use engine::FlagDefinition;
use serde_json::Value;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/flags", get(list))
        .route("/console/flags/{key}", get(show))
        .route("/console/flags/{key}/switch", post(switch))
        .route("/console/flags/{key}/kill", post(kill))
        .route("/console/flags/{key}/percentage", post(percentage))
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

#[derive(Template)]
#[template(path = "console/flag.html")]
struct FlagPage {
    layout: Layout,
    flag: FlagView,
    definition: String,
    audit: Vec<AuditRow>,
    presets: [u32; 5],
    can_write: bool,
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
    page(
        &state,
        &agent,
        &FlagPage {
            layout: Layout::new(&agent, "flags", format!("Flag {key}")),
            definition: serde_json::to_string_pretty(&flag.definition).expect("JSON"),
            flag,
            audit,
            presets: [0, 5, 25, 50, 100],
            can_write: agent.ops.role.grants(Permission::FlagsWrite),
        },
    )
}

fn flag_path(key: &str) -> String {
    format!("/console/flags/{key}")
}

/// `POST /console/flags/{key}/switch`: `enabled` = `true` or `false`.
async fn switch(
    State(state): State<AppState>,
    agent: Agent,
    Path(key): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
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
    agent.ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
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
    Ok(done(
        &state,
        &flag_path(&key),
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
    agent.ops.require(Permission::FlagsWrite)?;
    flag_key(&key)?;
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
    Ok(done(
        &state,
        &flag_path(&key),
        &format!("Flag {key} rolled out to {percentage} %."),
    ))
}
