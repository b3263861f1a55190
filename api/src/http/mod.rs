//! Routes and the middleware every request passes: a request id (taken from
//! `x-request-id` or made, echoed on the response, on every log line), a
//! tracing span, a body limit, and a JSON answer for panics, unknown routes
//! and wrong methods.

mod autoheal;
mod flags;
mod fleet;
mod interop;
mod metrics;
mod monitoring;
mod notifications;
mod outbox;
mod rules;
mod telemetry;
mod values;

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub fn app(state: AppState) -> Router {
    let max_body_bytes = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/plugins/heartbeat", post(telemetry::heartbeat))
        .route("/api/v1/plugins/event", post(telemetry::event))
        .route("/api/v1/plugins/list", get(fleet::list))
        .route("/api/v1/plugins/stats/overview", get(fleet::overview))
        .route(
            "/api/v1/plugins/versions",
            get(fleet::list_versions).post(fleet::register_version),
        )
        .route("/api/v1/plugins/{id}", get(fleet::detail))
        .route(
            "/api/v1/plugins/{id}/toggle",
            post(fleet::set_toggle).delete(fleet::lift_toggle),
        )
        .route(
            "/api/v1/plugins/{id}/notify-upgrade",
            post(notifications::notify_upgrade),
        )
        .route(
            "/api/v1/plugins/notifications/{id}/ack",
            post(notifications::acknowledge),
        )
        .route("/api/platform/alerts/{id}/ack", post(monitoring::acknowledge))
        .route("/api/platform/alerts/{id}/resolve", post(monitoring::resolve))
        .route("/api/platform/health", get(monitoring::health))
        .route("/api/platform/health/{service}", get(monitoring::service_health))
        .route("/api/platform/jobs", get(monitoring::jobs))
        .route("/api/v1/audit", get(fleet::audit_log))
        .route("/api/v1/plugins/autoheal", post(autoheal::detect))
        .route("/api/v1/plugins/autoheal/logs", get(autoheal::logs))
        .route("/api/v1/plugins/autoheal/stats", get(autoheal::stats))
        .route("/api/v1/plugins/autoheal/patches", get(autoheal::patches))
        .route("/api/v1/plugins/autoheal/rules", get(autoheal::breakers))
        .route(
            "/api/v1/plugins/autoheal/rules/{name}/resume",
            post(autoheal::resume_rule),
        )
        .route(
            "/api/v1/plugins/autoheal/commands/{plugin_id}",
            get(autoheal::poll_commands),
        )
        .route(
            "/api/v1/plugins/autoheal/commands/{command_id}/ack",
            post(autoheal::ack),
        )
        .route(
            "/api/v1/plugins/autoheal/bundles/{name}/{version}",
            get(autoheal::bundle),
        )
        .route("/api/v1/plugins/autoheal/{id}", get(autoheal::log_detail))
        .route("/api/v1/plugins/autoheal/{id}/apply", post(autoheal::apply))
        .route("/api/v1/plugins/autoheal/{id}/reject", post(autoheal::reject))
        .route("/api/v1/plugins/autoheal/{id}/rollback", post(autoheal::rollback))
        .route("/api/v1/plugins/interop/event", post(interop::ingest))
        .route("/api/v1/plugins/interop/events", get(interop::events))
        .route("/api/v1/plugins/interop/stats", get(interop::stats))
        .route(
            "/api/v1/plugins/interop/mappings",
            get(interop::mappings).post(interop::upsert_mapping),
        )
        .route("/api/platform/outbox", get(outbox::overview))
        .route("/api/platform/outbox/messages", get(outbox::messages))
        .route(
            "/api/platform/outbox/messages/{id}/retry",
            post(outbox::retry),
        )
        .route("/api/v1/rules/status", get(rules::status))
        .route("/api/v1/rules/reload", post(rules::reload))
        .merge(flags::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", request_id, method = %request.method(), path = %request.uri().path())
                }).on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(max_body_bytes))
                .layer(Extension(BodyLimit(max_body_bytes))),
        )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => {
            tracing::warn!(event = "not_ready", error = %error, "store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound { what: "route" }
}

async fn method_not_allowed() -> Response {
    let body = json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this route", "field": null}});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(event = "handler_panic", "a request handler panicked");
    let body = json!({"error": {"code": "internal", "message": "internal error", "field": null}});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// `limit` and `offset` of a list endpoint, checked.
pub(crate) fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset", "must be ≥ 0"));
    }
    Ok((limit, offset))
}

/// `?days=N` of the stats endpoints (default 30).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    days: Option<i64>,
}

impl StatsQuery {
    /// The start of the window the stats cover.
    pub(crate) fn since(
        &self,
        state: &AppState,
    ) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        Ok(days_ago(state, Some(self.days.unwrap_or(30)))?.expect("days given"))
    }
}

/// The start of a `days` filter (1–3650 days back), or None without one.
pub(crate) fn days_ago(
    state: &AppState,
    days: Option<i64>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match days {
        None => Ok(None),
        Some(days) if (1..=3650).contains(&days) => {
            Ok(Some(state.clock.now() - chrono::Duration::days(days)))
        }
        Some(_) => Err(ApiError::invalid("days", "must be between 1 and 3650")),
    }
}

/// Rejects strings longer than `max_chars`.
pub(crate) fn check_len(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// Parses a plugin version, naming `field` when it is not semver.
pub(crate) fn parse_version(field: &str, text: &str) -> Result<semver::Version, ApiError> {
    check_len(field, text, 64)?;
    crate::version::parse(text).map_err(|error| {
        ApiError::invalid(
            field,
            format!("must be a semantic version (e.g. 1.3.5): {error}"),
        )
    })
}
