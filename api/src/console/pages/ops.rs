//! Ops' monitoring pages: `/console/alerts` (the alerts, acknowledge and resolve),
//! `/console/health` (the latest check of each service, by tier, and one service's
//! history), `/console/outbox` (counts, the breakers per destination, the dead letters and
//! their retry) and `/console/audit` (who did what, filtered).

use super::super::form::query;
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use crate::auth::Permission;
use crate::db::AuditEntry;
use crate::delivery::outbox::{Breaker, BreakerState};
use crate::delivery::{OutboxCounts, OutboxMessage};
use crate::extract::uuid_param;
use crate::http::check_len;
use crate::ops::{HealthCheck, PlatformAlert, ServiceHealth, TIERS};
use crate::values::closed_set;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/alerts", get(alerts))
        .route("/console/alerts/{id}/acknowledge", post(acknowledge))
        .route("/console/alerts/{id}/resolve", post(resolve))
        .route("/console/health", get(health))
        .route("/console/outbox", get(outbox))
        .route("/console/outbox/{id}/retry", post(retry))
        .route("/console/audit", get(audit))
}

/// Dead letters per page of the outbox.
const DEAD_ROWS: i64 = 50;
/// Audit entries the page reads (the most the JSON API gives at once) …
const AUDIT_READ: i64 = 500;
/// … and shows per page.
const AUDIT_ROWS: usize = 50;

closed_set!(AlertStatus {
    Open = "open",
    Acknowledged = "acknowledged",
    Resolved = "resolved",
});

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    status: Option<AlertStatus>,
}

/// An alert with its labels as one line (`name=value, …`).
struct AlertRow {
    alert: PlatformAlert,
    labels: String,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct AlertsPage {
    layout: Layout,
    rows: Vec<AlertRow>,
    status: &'static str,
    statuses: &'static [AlertStatus],
    can_manage: bool,
}

/// A JSON object's members as `name=value`, strings without their quotes.
fn labels(value: &Value) -> String {
    match value {
        Value::Object(members) => members
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn alerts(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: AlertsQuery = query(&uri)?;
    let status = request.status.map(AlertStatus::as_str);
    let rows = state
        .ops
        .alerts(status)
        .await?
        .into_iter()
        .map(|alert| AlertRow {
            labels: labels(&alert.labels.0),
            alert,
        })
        .collect();
    page(
        &state,
        &agent,
        &AlertsPage {
            layout: Layout::new(&agent, "alerts", "Alerts"),
            rows,
            status: status.unwrap_or(""),
            statuses: AlertStatus::ALL,
            can_manage: agent.ops.role.grants(Permission::AlertsManage),
        },
    )
}

/// Moves an alert the way `POST /api/platform/alerts/{id}/…` does (the service refuses a
/// move its state does not allow: resolving twice is a conflict, not a no-op).
async fn move_alert(
    state: &AppState,
    agent: &Agent,
    id: &str,
    to: &str,
) -> Result<PlatformAlert, ConsoleError> {
    agent.ops.require(Permission::AlertsManage)?;
    let id = uuid_param("id", id)?;
    Ok(state.ops.move_alert(id, to, &agent.ops.audit()).await?)
}

/// `POST /console/alerts/{id}/acknowledge`: `open → acknowledged`.
async fn acknowledge(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let alert = move_alert(&state, &agent, &id, "acknowledged").await?;
    Ok(done(
        &state,
        "/console/alerts",
        &format!("Alert {} acknowledged.", alert.name),
    ))
}

/// `POST /console/alerts/{id}/resolve`: `open`/`acknowledged → resolved`.
async fn resolve(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let alert = move_alert(&state, &agent, &id, "resolved").await?;
    Ok(done(
        &state,
        "/console/alerts",
        &format!("Alert {} resolved.", alert.name),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    service: Option<String>,
}

/// A check with the link to its service's history.
struct CheckRow {
    check: HealthCheck,
    link: String,
}

/// The services of one tier, by name.
struct Tier {
    name: String,
    checks: Vec<CheckRow>,
}

#[derive(Template)]
#[template(path = "console/health.html")]
struct HealthPage {
    layout: Layout,
    overall: &'static str,
    tiers: Vec<Tier>,
    history: Option<ServiceHealth>,
}

fn service_link(service: &str) -> String {
    let mut link = form_urlencoded::Serializer::new(String::new());
    link.append_pair("service", service);
    format!("/console/health?{}#history", link.finish())
}

/// The checks grouped by tier: the scheduler's tiers in their order (most urgent first),
/// then any other tier a check names, so no service is left out.
fn by_tier(checks: Vec<HealthCheck>) -> Vec<Tier> {
    let mut tiers: Vec<Tier> = TIERS
        .iter()
        .map(|(name, _)| Tier {
            name: (*name).to_owned(),
            checks: Vec::new(),
        })
        .collect();
    for check in checks {
        let row = CheckRow {
            link: service_link(&check.service),
            check,
        };
        match tiers.iter_mut().find(|tier| tier.name == row.check.tier) {
            Some(tier) => tier.checks.push(row),
            None => tiers.push(Tier {
                name: row.check.tier.clone(),
                checks: vec![row],
            }),
        }
    }
    tiers
}

async fn health(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: HealthQuery = query(&uri)?;
    let view = state.ops.health().await?;
    let history = match &request.service {
        Some(service) => Some(state.ops.service_health(service).await?),
        None => None,
    };
    page(
        &state,
        &agent,
        &HealthPage {
            layout: Layout::new(&agent, "health", "Health"),
            overall: view.status,
            tiers: by_tier(view.services),
            history,
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    offset: Option<i64>,
}

/// A breaker with its state as text and the badge it shows as (an open breaker is the
/// alarm; closed is the healthy state).
struct BreakerRow {
    breaker: Breaker,
    state: &'static str,
    class: &'static str,
}

impl From<Breaker> for BreakerRow {
    fn from(breaker: Breaker) -> Self {
        let (state, class) = match breaker.state {
            BreakerState::Closed => ("closed", "healthy"),
            BreakerState::Open => ("open", "open"),
            BreakerState::HalfOpen => ("half_open", "pending"),
        };
        Self {
            breaker,
            state,
            class,
        }
    }
}

#[derive(Template)]
#[template(path = "console/outbox.html")]
struct OutboxPage {
    layout: Layout,
    counts: OutboxCounts,
    breakers: Vec<BreakerRow>,
    dead: Vec<OutboxMessage>,
    newer: Option<String>,
    older: Option<String>,
    can_retry: bool,
}

fn outbox_link(offset: i64) -> String {
    format!("/console/outbox?offset={offset}#dead")
}

/// The dead letters are `GET /api/platform/outbox/messages?status=dead`, a page at a time.
async fn outbox(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: OutboxQuery = query(&uri)?;
    let (limit, offset) = crate::http::page(Some(DEAD_ROWS), request.offset)?;
    let (counts, breakers) = state.delivery.overview().await?;
    // One more than shown: whether there is an older page.
    let mut dead = state
        .delivery
        .messages(Some("dead"), limit + 1, offset)
        .await?;
    let older = (dead.len() as i64 > limit).then(|| outbox_link(offset + limit));
    dead.truncate(limit as usize);
    page(
        &state,
        &agent,
        &OutboxPage {
            layout: Layout::new(&agent, "outbox", "Outbox"),
            counts,
            breakers: breakers.into_iter().map(BreakerRow::from).collect(),
            dead,
            newer: (offset > 0).then(|| outbox_link((offset - limit).max(0))),
            older,
            can_retry: agent.ops.role.grants(Permission::OutboxManage),
        },
    )
}

/// `POST /console/outbox/{id}/retry`: the dead letter is due again, its attempts reset.
async fn retry(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::OutboxManage)?;
    let message = state
        .delivery
        .retry(uuid_param("id", &id)?, &agent.ops.audit())
        .await?;
    Ok(done(
        &state,
        "/console/outbox",
        &format!(
            "Message to {} is due again; the next round sends it.",
            message.destination
        ),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor_kind: Option<String>,
    action: Option<String>,
    target_type: Option<String>,
    offset: Option<i64>,
}

/// An entry with its details as one line of JSON.
struct AuditRow {
    entry: AuditEntry,
    details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    layout: Layout,
    rows: Vec<AuditRow>,
    actor_kind: String,
    action: String,
    target_type: String,
    actor_kinds: Vec<String>,
    target_types: Vec<String>,
    matched: usize,
    first: usize,
    last: usize,
    read: usize,
    newer: Option<String>,
    older: Option<String>,
}

/// The distinct values of one column among the entries read, sorted, with the filter's
/// own value kept even when nothing read has it (the select still shows what was asked).
fn choices<'a>(values: impl Iterator<Item = &'a str>, selected: &str) -> Vec<String> {
    let mut choices: Vec<String> = values.map(str::to_owned).collect();
    if !selected.is_empty() {
        choices.push(selected.to_owned());
    }
    choices.sort();
    choices.dedup();
    choices
}

/// `GET /console/audit`: the audit log as `GET /api/v1/audit` gives it, newest first.
/// The store has no filtered read of the audit log, so the page reads the newest 500
/// entries (`audit_log(500, 0)`, the API's largest page) and applies `actor_kind`,
/// `action` (a prefix: `flag.` is every flag change) and `target_type` to those in Rust;
/// `offset` pages through the matches, 50 at a time. Older entries are the JSON API's
/// (`limit`/`offset`).
async fn audit(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::AuditRead)?;
    let request: AuditQuery = query(&uri)?;
    for (field, value) in [
        ("actor_kind", &request.actor_kind),
        ("action", &request.action),
        ("target_type", &request.target_type),
    ] {
        if let Some(value) = value {
            check_len(field, value, 200)?;
        }
    }
    let (_, offset) = crate::http::page(Some(AUDIT_ROWS as i64), request.offset)?;
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let entries = state.ops.audit_log(AUDIT_READ, 0).await?;
    let read = entries.len();
    let actor_kind = request.actor_kind.unwrap_or_default();
    let action = request.action.unwrap_or_default();
    let target_type = request.target_type.unwrap_or_default();
    let actor_kinds = choices(entries.iter().map(|e| e.actor_kind.as_str()), &actor_kind);
    let target_types = choices(entries.iter().map(|e| e.target_type.as_str()), &target_type);
    let matching: Vec<AuditEntry> = entries
        .into_iter()
        .filter(|e| actor_kind.is_empty() || e.actor_kind == actor_kind)
        .filter(|e| e.action.starts_with(action.as_str()))
        .filter(|e| target_type.is_empty() || e.target_type == target_type)
        .collect();
    let matched = matching.len();
    let rows: Vec<AuditRow> = matching
        .into_iter()
        .skip(offset)
        .take(AUDIT_ROWS)
        .map(|entry| AuditRow {
            details: serde_json::to_string(&entry.details.0).expect("JSON"),
            entry,
        })
        .collect();
    let link = |offset: usize| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("actor_kind", &actor_kind),
            ("action", &action),
            ("target_type", &target_type),
        ] {
            if !value.is_empty() {
                link.append_pair(name, value);
            }
        }
        if offset > 0 {
            link.append_pair("offset", &offset.to_string());
        }
        let link = link.finish();
        if link.is_empty() {
            "/console/audit".to_owned()
        } else {
            format!("/console/audit?{link}")
        }
    };
    let newer = (offset > 0).then(|| link(offset.saturating_sub(AUDIT_ROWS)));
    let older = (offset.saturating_add(AUDIT_ROWS) < matched).then(|| link(offset + AUDIT_ROWS));
    page(
        &state,
        &agent,
        &AuditPage {
            layout: Layout::new(&agent, "audit", "Audit log"),
            first: if rows.is_empty() { 0 } else { offset + 1 },
            last: offset.saturating_add(rows.len()),
            rows,
            actor_kind,
            action,
            target_type,
            actor_kinds,
            target_types,
            matched,
            read,
            newer,
            older,
        },
    )
}
