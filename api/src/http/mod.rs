//! Routes and the middleware every request passes: a request id (taken from
//! `x-request-id` or made, echoed on the response, on every log line), a
//! tracing span, a body limit, and a JSON answer for panics, unknown routes
//! and wrong methods.

mod flags;
mod fleet;
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
        .route("/api/v1/audit", get(fleet::audit_log))
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
