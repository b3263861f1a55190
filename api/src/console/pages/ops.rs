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
use crate::ops::{AlertStatus, AuditQuery, HealthCheck, PlatformAlert, ServiceHealth, TIERS};
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
/// Audit entries per page.
const AUDIT_ROWS: i64 = 50;

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
    first: i64,
    last: i64,
    newer: Option<String>,
    older: Option<String>,
}

/// `GET /console/audit`: the audit log as `GET /api/v1/audit` gives it, newest first, with
/// the same filters (`actor_kind`, `action` as a prefix, `target_type`) applied by the
/// store, and `offset` pages of 50.
async fn audit(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::AuditRead)?;
    let request: AuditQuery = query(&uri)?;
    let filter = request.filter()?;
    let (limit, offset) = crate::http::page(request.limit.or(Some(AUDIT_ROWS)), request.offset)?;
    // One more than shown says whether an older page exists.
    let mut entries = state.ops.audit_log(&filter, limit + 1, offset).await?;
    let has_older = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let link = |offset: i64| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("actor_kind", &filter.actor_kind),
            ("action", &filter.action_prefix),
            ("target_type", &filter.target_type),
        ] {
            if let Some(value) = value {
                link.append_pair(name, value);
            }
        }
        if limit != AUDIT_ROWS {
            link.append_pair("limit", &limit.to_string());
        }
        if offset > 0 {
            link.append_pair("offset", &offset.to_string());
        }
        format!("/console/audit?{}", link.finish())
    };
    let shown = entries.len() as i64;
    page(
        &state,
        &agent,
        &AuditPage {
            layout: Layout::new(&agent, "audit", "Audit log"),
            first: if shown == 0 { 0 } else { offset + 1 },
            last: offset + shown,
            newer: (offset > 0).then(|| link((offset - limit).max(0))),
            older: has_older.then(|| link(offset + limit)),
            rows: entries
                .into_iter()
                .map(|entry| AuditRow {
                    details: serde_json::to_string(&entry.details.0).expect("JSON"),
                    entry,
                })
                .collect(),
            actor_kind: filter.actor_kind.clone().unwrap_or_default(),
            action: filter.action_prefix.clone().unwrap_or_default(),
            target_type: filter.target_type.clone().unwrap_or_default(),
        },
    )
}
