//! `/console/interop`: the stats of the last 7 days, the events (the API's filters, a page
//! at a time), the mappings in the store and the files with the one in force, and the
//! mapping form: create, edit (prefilled from a mapping) or deactivate a store mapping,
//! validated by the same engine code as `POST /api/v1/plugins/interop/mappings`.

use super::super::form::{query, Fields};
use super::super::session::Agent;
use super::super::{done, page, ConsoleError, Layout};
use super::percent;
use crate::auth::Permission;
use crate::error::ApiError;
use crate::http::days_ago;
use crate::interop::{
    mapping_request, InteropFilter, InteropStats, ProcessingStatus, StoredInteropEvent,
};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use engine::{MappingSpec, Platform};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/interop", get(overview))
        .route("/console/interop/mappings", post(save_mapping))
}

/// Events per page.
const EVENT_ROWS: i64 = 50;
/// Days the stats cards cover.
const STATS_DAYS: i64 = 7;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InteropQuery {
    event_category: Option<String>,
    event_type: Option<String>,
    source_platform: Option<Platform>,
    processing_status: Option<ProcessingStatus>,
    plugin_id: Option<Uuid>,
    days: Option<i64>,
    offset: Option<i64>,
    /// The mapping the form is prefilled from: its platform and source event type.
    edit_platform: Option<String>,
    edit_event: Option<String>,
}

/// A mapping of the list: what `GET /api/v1/plugins/interop/mappings` shows, with its
/// whole spec (the list leaves out the optional knobs) for the edit form and for
/// deactivation, which re-posts the mapping as it is with `is_active=false`.
struct MappingRow {
    source_platform: String,
    source_event_type: String,
    normalized_event_type: String,
    field_mappings: String,
    source: String,
    is_active: bool,
    in_force: bool,
    /// None for a file's mapping the rule set no longer holds (reloaded in between).
    form: Option<MappingForm>,
    edit_link: String,
}

/// The mapping form's fields, as text.
#[derive(Clone, Default)]
struct MappingForm {
    name: String,
    source_platform: String,
    source_event_type: String,
    normalized_event_type: String,
    field_mappings: String,
    optional: String,
    amount_fields: String,
    default_currency: String,
    subject_field: String,
    active: bool,
}

impl MappingForm {
    fn new() -> Self {
        Self {
            field_mappings: "{\n  \"id\": \"order_id\"\n}".to_owned(),
            active: true,
            ..Self::default()
        }
    }

    fn from_spec(spec: MappingSpec, active: bool) -> Self {
        Self {
            name: spec.name.unwrap_or_default(),
            source_platform: spec.source_platform,
            source_event_type: spec.source_event_type,
            normalized_event_type: spec.normalized_event_type,
            field_mappings: serde_json::to_string_pretty(&spec.field_mappings).expect("JSON"),
            optional: spec.optional.join(", "),
            amount_fields: spec.amount_fields.unwrap_or_default().join(", "),
            default_currency: spec.default_currency.unwrap_or_default(),
            subject_field: spec.subject_field.unwrap_or_default(),
            active,
        }
    }
}

#[derive(Template)]
#[template(path = "console/interop.html")]
struct InteropPage {
    layout: Layout,
    stats: InteropStats,
    events: Vec<StoredInteropEvent>,
    mappings: Vec<MappingRow>,
    form: MappingForm,
    editing: bool,
    event_category: String,
    event_type: String,
    source_platform: &'static str,
    processing_status: &'static str,
    plugin_id: String,
    days: String,
    newer: Option<String>,
    older: Option<String>,
    platforms: [Platform; 5],
    statuses: &'static [ProcessingStatus],
    can_write: bool,
}

impl InteropPage {
    fn success_rate(&self) -> String {
        percent(self.stats.success_rate)
    }
}

fn text(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}

/// The list of the mappings, each with its whole spec: a store mapping's as stored, a
/// file's as the rule set in force compiled it.
async fn mapping_rows(state: &AppState) -> Result<Vec<MappingRow>, ConsoleError> {
    let listed = state.interop.mappings(None).await?;
    let stored = state.store.list_mappings(None).await?;
    let rules = state.rules.current();
    Ok(listed
        .into_iter()
        .map(|value| {
            let source_platform = text(&value, "source_platform");
            let source_event_type = text(&value, "source_event_type");
            let source = text(&value, "source");
            let is_active = value["is_active"].as_bool().unwrap_or(false);
            let spec = if source == "store" {
                stored
                    .iter()
                    .find(|m| {
                        m.source_platform == source_platform
                            && m.source_event_type == source_event_type
                    })
                    .and_then(|m| serde_json::from_value::<MappingSpec>(m.spec.0.clone()).ok())
            } else {
                rules
                    .mappings()
                    .iter()
                    .find(|m| {
                        m.source_platform.as_str() == source_platform
                            && m.source_event_type == source_event_type
                            && source == format!("file:{}", m.file)
                    })
                    .map(engine::Mapping::spec)
            };
            let mut edit = form_urlencoded::Serializer::new(String::new());
            edit.append_pair("edit_platform", &source_platform);
            edit.append_pair("edit_event", &source_event_type);
            MappingRow {
                normalized_event_type: text(&value, "normalized_event_type"),
                field_mappings: value["field_mappings"].to_string(),
                in_force: value["in_force"].as_bool().unwrap_or(false),
                form: spec.map(|spec| MappingForm::from_spec(spec, is_active)),
                edit_link: format!("/console/interop?{}#mapping-form", edit.finish()),
                source_platform,
                source_event_type,
                source,
                is_active,
            }
        })
        .collect())
}

async fn overview(
    State(state): State<AppState>,
    agent: Agent,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let request: InteropQuery = query(&uri)?;
    let (limit, offset) = crate::http::page(Some(EVENT_ROWS), request.offset)?;
    let now = state.clock.now();
    let filter = InteropFilter {
        event_category: request.event_category.clone(),
        event_type: request.event_type.clone(),
        source_platform: request.source_platform.map(|p| p.as_str().to_owned()),
        processing_status: request.processing_status.map(|s| s.as_str().to_owned()),
        plugin_id: request.plugin_id,
        since: days_ago(now, request.days)?,
        // One more than shown: whether there is an older page.
        limit: limit + 1,
        offset,
    };
    let mut events = state.interop.events(&filter).await?;
    let link = |offset: i64| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        let plugin_id = request.plugin_id.map(|id| id.to_string());
        let days = request.days.map(|days| days.to_string());
        for (name, value) in [
            ("event_category", request.event_category.as_deref()),
            ("event_type", request.event_type.as_deref()),
            (
                "source_platform",
                request.source_platform.map(Platform::as_str),
            ),
            (
                "processing_status",
                request.processing_status.map(ProcessingStatus::as_str),
            ),
            ("plugin_id", plugin_id.as_deref()),
            ("days", days.as_deref()),
        ] {
            if let Some(value) = value {
                link.append_pair(name, value);
            }
        }
        link.append_pair("offset", &offset.to_string());
        format!("/console/interop?{}#events", link.finish())
    };
    let older = (events.len() as i64 > limit).then(|| link(offset + limit));
    let newer = (offset > 0).then(|| link((offset - limit).max(0)));
    events.truncate(limit as usize);
    let stats = state
        .interop
        .stats(now - chrono::TimeDelta::days(STATS_DAYS))
        .await?;
    let mappings = mapping_rows(&state).await?;
    // Prefer the store's mapping to edit: saving the form replaces it (a file's is
    // overridden by a new store mapping of the same platform and event).
    let form = match (&request.edit_platform, &request.edit_event) {
        (Some(platform), Some(event)) => Some(
            mappings
                .iter()
                .filter(|m| &m.source_platform == platform && &m.source_event_type == event)
                .filter_map(|m| m.form.as_ref().map(|form| (m.source == "store", form)))
                .max_by_key(|(store, _)| *store)
                .map(|(_, form)| form.clone())
                .ok_or(ConsoleError::NotFound("mapping"))?,
        ),
        _ => None,
    };
    let editing = form.is_some();
    page(
        &state,
        &agent,
        &InteropPage {
            layout: Layout::new(&agent, "interop", "Interop"),
            stats,
            events,
            mappings,
            form: form.unwrap_or_else(MappingForm::new),
            editing,
            event_category: request.event_category.unwrap_or_default(),
            event_type: request.event_type.unwrap_or_default(),
            source_platform: request.source_platform.map_or("", Platform::as_str),
            processing_status: request
                .processing_status
                .map_or("", ProcessingStatus::as_str),
            plugin_id: request
                .plugin_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            days: request
                .days
                .map(|days| days.to_string())
                .unwrap_or_default(),
            newer,
            older,
            platforms: Platform::ALL,
            statuses: ProcessingStatus::ALL,
            can_write: agent.ops.role.grants(Permission::InteropWrite),
        },
    )
}

/// A comma- or line-separated list of the form as a JSON array.
fn list(text: &str) -> Value {
    Value::Array(
        text.split([',', '\n'])
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_owned()))
            .collect(),
    )
}

/// `POST /console/interop/mappings`: the API's fields — `source_platform`,
/// `source_event_type`, `normalized_event_type`, `field_mappings` (a JSON object, source
/// path → target path); optional `name`, `optional` and `amount_fields` (comma-separated),
/// `default_currency`, `subject_field`, `is_active` (`true`/`false`; `active` is taken
/// too). They become the JSON body the API's upsert takes and go through the same checks
/// and the same service call, so the form cannot store a mapping the API would refuse;
/// the engine's refusal names the field. Deactivating re-posts a mapping with
/// `is_active=false`.
async fn save_mapping(
    State(state): State<AppState>,
    agent: Agent,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::InteropWrite)?;
    let mut body = Map::new();
    for name in [
        "source_platform",
        "source_event_type",
        "normalized_event_type",
    ] {
        body.insert(
            name.to_owned(),
            Value::String(fields.required(name)?.to_owned()),
        );
    }
    let field_mappings: Value = serde_json::from_str(fields.required("field_mappings")?)
        .map_err(|error| ApiError::invalid("field_mappings", format!("is not JSON: {error}")))?;
    if !field_mappings.is_object() {
        return Err(ApiError::invalid(
            "field_mappings",
            "must be a JSON object of source path → target path",
        )
        .into());
    }
    body.insert("field_mappings".to_owned(), field_mappings);
    for name in ["name", "default_currency", "subject_field"] {
        if let Some(value) = fields.text(name) {
            body.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    for name in ["optional", "amount_fields"] {
        if let Some(value) = fields.text(name) {
            body.insert(name.to_owned(), list(value));
        }
    }
    match fields.text("is_active").or_else(|| fields.text("active")) {
        None => {}
        Some("true") => {
            body.insert("is_active".to_owned(), Value::Bool(true));
        }
        Some("false") => {
            body.insert("is_active".to_owned(), Value::Bool(false));
        }
        Some(_) => return Err(ApiError::invalid("is_active", "must be true or false").into()),
    }
    let (spec, is_active) = mapping_request(body)?;
    let (mapping, created) = state
        .interop
        .upsert_mapping(&spec, is_active, &agent.ops.audit())
        .await?;
    let verb = match (created, mapping.is_active) {
        (true, true) => "created",
        (true, false) => "created, inactive",
        (false, true) => "saved",
        (false, false) => "deactivated",
    };
    Ok(done(
        &state,
        "/console/interop",
        &format!(
            "Mapping {} {} → {} {verb}.",
            mapping.source_platform, mapping.source_event_type, mapping.normalized_event_type
        ),
    ))
}
