//! Routes and the middleware every request passes: a request id (taken from
//! `x-request-id` or made, echoed on the response, on every log line), a
//! tracing span, a body limit, and a JSON answer for panics, unknown routes
//! and wrong methods.

use crate::error::{ApiError, ErrorDetail, ErrorEnvelope};
use crate::extract::{BodyLimit, NUL_REFUSED};
use crate::openapi::{ApiDoc, Document};
use crate::AppState;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The one router `autoheal serve` and the tests use: every feature's routes, behind the
/// middleware every request passes, and the OpenAPI document of exactly those routes.
pub fn app(state: AppState) -> Router {
    let max_body_bytes = state.config.max_body_bytes;
    let (router, mut document) = routes().split_for_parts();
    crate::openapi::add_common_errors(&mut document);
    let document = Document(Bytes::from(
        document.to_json().expect("the OpenAPI document serializes"),
    ));
    router
        .merge(crate::console::routes())
        .route_layer(middleware::from_fn(check_path_params))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the request id's layer, so an Ops action's entry carries it.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::logs::log_ops_actions,
        ))
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
                .layer(Extension(BodyLimit(max_body_bytes)))
                .layer(Extension(document)),
        )
}

/// Every route with its operation: a feature's `routes()` registers each handler with
/// `routes!`, which is what puts it in the document.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(crate::openapi::openapi_json))
        .merge(crate::fleet::routes())
        .merge(crate::healing::routes())
        .merge(crate::interop::routes())
        .merge(crate::flags::routes())
        .merge(crate::delivery::routes())
        .merge(crate::ops::routes())
        .merge(crate::rules::routes())
        .merge(crate::schemas::routes())
        .merge(crate::auth::routes())
        .merge(crate::logs::routes())
        .merge(crate::errors::routes())
}

/// Refuses a request whose path parameter is not text a store can hold, naming the
/// parameter: percent-encoding that is not UTF-8 (axum's own answer would be a plain-text
/// 400), or a NUL character (which PostgreSQL cannot store or compare). The matched
/// route's template tells which segment is which parameter.
async fn check_path_params(request: Request<Body>, next: Next) -> Response {
    if let Some(template) = request.extensions().get::<MatchedPath>() {
        let params = template.as_str().split('/');
        for (param, raw) in params.zip(request.uri().path().split('/')) {
            let Some(name) = param.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                continue;
            };
            let name = name.trim_start_matches('*');
            let problem = match percent_encoding::percent_decode_str(raw).decode_utf8() {
                Err(_) => Some("must be percent-encoded UTF-8"),
                Ok(text) if text.contains('\0') => Some(NUL_REFUSED),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return ApiError::invalid(name, problem).into_response();
            }
        }
    }
    next.run(request).await
}

/// What the liveness and readiness probes answer.
#[derive(Serialize, ToSchema)]
struct Probe {
    /// `ok` (alive), `ready` or `unavailable` (the store does not answer).
    status: &'static str,
}

/// Answers while the process is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Probe)))]
async fn healthz() -> Json<Probe> {
    Json(Probe { status: "ok" })
}

/// Answers 200 when the store answers too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "The store answers", body = Probe),
        (status = 503, description = "The store does not answer", body = Probe),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(Probe { status: "ready" }).into_response(),
        Err(error) => {
            tracing::warn!(event = "not_ready", error = %error, "store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Probe {
                    status: "unavailable",
                }),
            )
                .into_response()
        }
    }
}

/// No route: the console's HTML page under `/console/` (a person followed a link), the
/// JSON error everywhere else.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/console/") {
        crate::console::ConsoleError::NotFound("page").into_response()
    } else {
        ApiError::NotFound { what: "route" }.into_response()
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(event = "handler_panic", "a request handler panicked");
    let body = ErrorEnvelope {
        error: ErrorDetail {
            code: "internal",
            message: "internal error".to_owned(),
            field: None,
            errors: None,
        },
    };
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
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// How many days back the figures go: 1–3650 (default 30).
    #[param(minimum = 1, maximum = 3650)]
    days: Option<i64>,
}

impl StatsQuery {
    /// The start of the window the stats cover, counted back from `now`.
    pub(crate) fn since(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        Ok(days_ago(now, Some(self.days.unwrap_or(30)))?.expect("days given"))
    }
}

/// The start of a `days` filter (1–3650 days before `now`), or None without one.
pub(crate) fn days_ago(
    now: chrono::DateTime<chrono::Utc>,
    days: Option<i64>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match days {
        None => Ok(None),
        Some(days) if (1..=3650).contains(&days) => Ok(Some(now - chrono::Duration::days(days))),
        Some(_) => Err(ApiError::invalid("days", "must be between 1 and 3650")),
    }
}

/// The reason an Ops action gives (it goes to the audit log): required, trimmed, at most
/// 1,000 characters.
pub(crate) fn check_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "must say why (it goes to the audit log)",
        ));
    }
    check_len("reason", reason, 1_000)?;
    Ok(reason.to_owned())
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
