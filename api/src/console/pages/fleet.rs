//! `/console/fleet` (the install list: filters, search, keyset pages, bulk block and
//! notify) and `/console/installs/{id}` (facts, reported state, toggles, events, healing
//! history, notify-upgrade).

use super::super::form::{query, Fields};
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use super::percent;
use crate::auth::Permission;
use crate::error::ApiError;
use crate::extract::uuid_param;
use crate::fleet::{
    search_text, toggle_value, Cursor, Environment, InstallStatus, InstallationDetail,
    InstallationFilter, InstallationSummary, ToggleChange, ToggleKey,
};
use crate::healing::{Command, HealingLog, HealingLogFilter};
use crate::http::check_reason;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use engine::Platform;
use serde::Deserialize;
use serde_json::Value;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/fleet", get(list))
        .route("/console/fleet/bulk", post(bulk))
        .route("/console/installs/{id}", get(install))
        .route("/console/installs/{id}/toggle", post(set_toggle))
        .route("/console/installs/{id}/lift", post(lift_toggle))
        .route("/console/installs/{id}/notify", post(notify))
}

/// Rows per page of the list.
const PAGE_ROWS: i64 = 50;
/// Installs one bulk action takes at most (a page's worth, and then some).
const MAX_BULK: usize = 500;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FleetQuery {
    status: Option<InstallStatus>,
    cms: Option<Platform>,
    environment: Option<Environment>,
    search: Option<String>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/fleet.html")]
struct FleetPage {
    layout: Layout,
    rows: Vec<InstallationSummary>,
    total: String,
    next: Option<String>,
    status: &'static str,
    cms: &'static str,
    environment: &'static str,
    search: String,
    statuses: &'static [InstallStatus],
    platforms: [Platform; 5],
    environments: &'static [Environment],
    can_block: bool,
    can_notify: bool,
}

impl FleetPage {
    fn rate(&self, row: &InstallationSummary) -> String {
        percent(row.error_rate)
    }
}

async fn list(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: FleetQuery = query(&uri)?;
    let after = match request.after.as_deref() {
        None => None,
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ApiError::invalid("after", "expected the cursor of a next page link")
        })?),
    };
    let filter = InstallationFilter {
        status: request.status,
        cms: request.cms.map(|cms| cms.as_str().to_owned()),
        environment: request.environment.map(|e| e.as_str().to_owned()),
        search: search_text(request.search.clone())?,
        after,
        limit: PAGE_ROWS,
        ..InstallationFilter::default()
    };
    let found = state.fleet.list(&filter).await?;
    let next = found.next.map(|cursor| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", request.status.map(InstallStatus::as_str)),
            ("cms", request.cms.map(Platform::as_str)),
            ("environment", request.environment.map(Environment::as_str)),
            ("search", filter.search.as_deref()),
        ] {
            if let Some(value) = value {
                link.append_pair(name, value);
            }
        }
        link.append_pair("after", &cursor.encode());
        format!("/console/fleet?{}", link.finish())
    });
    let total = if found.total.capped && filter.search.is_some() {
        format!("{} or more", found.total.count)
    } else if found.total.capped {
        format!("more than {}", found.total.count)
    } else {
        found.total.count.to_string()
    };
    page(
        &state,
        &agent,
        &FleetPage {
            layout: Layout::new(&agent, "fleet", "Fleet"),
            rows: found.rows,
            total,
            next,
            status: request.status.map_or("", InstallStatus::as_str),
            cms: request.cms.map_or("", Platform::as_str),
            environment: request.environment.map_or("", Environment::as_str),
            search: request.search.unwrap_or_default(),
            statuses: InstallStatus::ALL,
            platforms: Platform::ALL,
            environments: Environment::ALL,
            can_block: agent.ops.role.grants(Permission::PluginsToggle),
            can_notify: agent.ops.role.grants(Permission::NotificationsSend),
        },
    )
}

/// `POST /console/fleet/bulk`: `action` (`block` with a `reason`, or `notify` on a
/// `channel`) for each checked `install`. Each install is its own change: one that fails
/// (unknown, not behind) is named in the message and the others still happen.
async fn bulk(
    State(state): State<AppState>,
    agent: Agent,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    let installs = fields
        .all("install")
        .into_iter()
        .map(|id| uuid_param("install", id))
        .collect::<Result<Vec<_>, _>>()?;
    if installs.is_empty() {
        return Err(ApiError::invalid("install", "check at least one install").into());
    }
    if installs.len() > MAX_BULK {
        return Err(ApiError::invalid("install", format!("at most {MAX_BULK} at once")).into());
    }
    let back = fields
        .text("back")
        .filter(|back| back.starts_with("/console/fleet"))
        .unwrap_or("/console/fleet");
    let audit = agent.ops.audit();
    let mut refused = Vec::new();
    let verb = match fields.required("action")? {
        "block" => {
            agent.ops.require(Permission::PluginsToggle)?;
            let reason = check_reason(fields.required("reason")?)?;
            for installation_id in &installs {
                let change = ToggleChange {
                    installation_id: *installation_id,
                    key: ToggleKey::BlockPlugin,
                    value: Value::Bool(true),
                    reason: reason.clone(),
                    expires_at: None,
                };
                if let Err(error) = state.fleet.set_toggle(&change, None, &audit).await {
                    refused.push(format!("{installation_id}: {error}"));
                }
            }
            "Blocked"
        }
        "notify" => {
            agent.ops.require(Permission::NotificationsSend)?;
            let channel =
                crate::delivery::notifications::channel(fields.text("channel").unwrap_or("email"))?;
            for installation_id in &installs {
                if let Err(error) = state
                    .delivery
                    .notify_upgrade(*installation_id, channel, &audit)
                    .await
                {
                    refused.push(format!("{installation_id}: {error}"));
                }
            }
            "Notified"
        }
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("{other:?} is not an action: block or notify"),
            )
            .into())
        }
    };
    let succeeded = installs.len() - refused.len();
    let mut message = format!("{verb} {succeeded} of {} installs.", installs.len());
    if !refused.is_empty() {
        message.push_str(&format!(" Not done: {}", refused.join("; ")));
    }
    Ok(done(&state, back, &message))
}

#[derive(Template)]
#[template(path = "console/install.html")]
struct InstallPage {
    layout: Layout,
    install: InstallationDetail,
    reported_state: String,
    server_info: String,
    properties: String,
    history: Vec<HealingLog>,
    commands: Vec<Command>,
    toggle_keys: [ToggleKey; 4],
    can_toggle: bool,
    can_notify: bool,
}

impl InstallPage {
    fn rate(&self) -> String {
        percent(self.install.summary.error_rate)
    }
}

async fn install(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let id = uuid_param("id", &id)?;
    let install = state.fleet.detail(id).await?;
    let history = state
        .healing
        .logs(&HealingLogFilter {
            status: None,
            issue_severity: None,
            cms: None,
            plugin_id: Some(id),
            rule_name: None,
            since: None,
            source: None,
            limit: 20,
            offset: 0,
        })
        .await?;
    let commands = state.healing.commands_of(id, None, 20).await?;
    let pretty = |value: Option<&Value>| {
        value.map_or_else(
            || "—".to_owned(),
            |value| serde_json::to_string_pretty(value).expect("JSON"),
        )
    };
    let title = install.summary.site_url.clone();
    page(
        &state,
        &agent,
        &InstallPage {
            layout: Layout::new(&agent, "fleet", title),
            reported_state: pretty(install.facts.reported_state.as_ref().map(|json| &json.0)),
            server_info: pretty(install.facts.server_info.as_ref().map(|json| &json.0)),
            properties: pretty(Some(&Value::Object(install.facts.properties.0.clone()))),
            install,
            history,
            commands,
            toggle_keys: ToggleKey::ALL,
            can_toggle: agent.ops.role.grants(Permission::PluginsToggle),
            can_notify: agent.ops.role.grants(Permission::NotificationsSend),
        },
    )
}

fn install_path(id: uuid::Uuid) -> String {
    format!("/console/installs/{id}")
}

fn toggle_key(text: &str) -> Result<ToggleKey, ConsoleError> {
    ToggleKey::ALL
        .into_iter()
        .find(|key| key.as_str() == text)
        .ok_or_else(|| {
            let keys: Vec<&str> = ToggleKey::ALL.iter().map(|key| key.as_str()).collect();
            ApiError::invalid("toggle_key", format!("must be one of {}", keys.join(", "))).into()
        })
}

/// `POST /console/installs/{id}/toggle`: `toggle_key`, `toggle_value` (`true`/`false`,
/// or requests per minute for `rate_limit`), `reason`, optional `expires_at`
/// (`YYYY-MM-DDTHH:MM`, UTC, as a `datetime-local` input sends it).
async fn set_toggle(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
    let key = toggle_key(fields.required("toggle_key")?)?;
    let raw_value = fields.text("toggle_value").unwrap_or("true");
    let value = match key {
        ToggleKey::RateLimit => raw_value.parse::<u64>().map(Value::from).map_err(|_| {
            ApiError::invalid(
                "toggle_value",
                "rate_limit takes requests per minute: an integer from 1 to 1000000",
            )
        })?,
        _ => match raw_value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(ApiError::invalid("toggle_value", "must be true or false").into()),
        },
    };
    let rate_limit = toggle_value(key, &value)?;
    let reason = check_reason(fields.required("reason")?)?;
    let expires_at = fields
        .text("expires_at")
        .map(|text| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                .map(|local| local.and_utc())
                .map_err(|_| {
                    ApiError::invalid(
                        "expires_at",
                        "must be a date and time, YYYY-MM-DDTHH:MM (UTC)",
                    )
                })
        })
        .transpose()?;
    let change = ToggleChange {
        installation_id,
        key,
        value,
        reason,
        expires_at,
    };
    state
        .fleet
        .set_toggle(&change, rate_limit, &agent.ops.audit())
        .await?;
    Ok(done(
        &state,
        &install_path(installation_id),
        &format!("Set {}.", key.as_str()),
    ))
}

/// `POST /console/installs/{id}/lift`: lifts the active `toggle_key`, with an optional
/// `reason`.
async fn lift_toggle(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsToggle)?;
    let installation_id = uuid_param("id", &id)?;
    let key = toggle_key(fields.required("toggle_key")?)?;
    let reason = fields.text("reason").map(check_reason).transpose()?;
    state
        .fleet
        .lift_toggle(installation_id, key, reason.as_deref(), &agent.ops.audit())
        .await?;
    Ok(done(
        &state,
        &install_path(installation_id),
        &format!("Lifted {}.", key.as_str()),
    ))
}

/// `POST /console/installs/{id}/notify`: the latest version's notice on `channel`.
async fn notify(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::NotificationsSend)?;
    let installation_id = uuid_param("id", &id)?;
    let channel =
        crate::delivery::notifications::channel(fields.text("channel").unwrap_or("email"))?;
    let sent = state
        .delivery
        .notify_upgrade(installation_id, channel, &agent.ops.audit())
        .await?;
    Ok(done(
        &state,
        &install_path(installation_id),
        &format!("Upgrade notice queued on {channel} ({}).", sent.id),
    ))
}
