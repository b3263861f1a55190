//! Every Ops action is logged once, here, rather than in each of dozens of handlers: the
//! router's middleware [`log_ops_actions`] puts an empty [`OpsActor`] slot in each request
//! that can change something (any method but GET, HEAD and OPTIONS); the `auth::Ops`
//! extractor (a bearer token or a console session) writes the agent into it. After the
//! handler, a request whose slot holds an agent is recorded with its method, route, path,
//! status and request id: `info`, `warn` for a 4xx (refused, invalid), `error` for a 5xx.
//! Nothing of the body or the query string is logged (they can hold secrets); what the
//! action changed is in the audit log, under the same request id.

use super::{LogLevel, LogService, NewLogEntry, PlatformLog};
use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{Extensions, Method, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// The Ops agent a request was made by, once its credential was verified.
#[derive(Clone, Default)]
pub(crate) struct OpsActor(Arc<OnceLock<Uuid>>);

impl OpsActor {
    /// Notes `agent_id` as the request's actor (when the request has a slot).
    pub(crate) fn note(extensions: &Extensions, agent_id: Uuid) {
        if let Some(actor) = extensions.get::<Self>() {
            let _ = actor.0.set(agent_id);
        }
    }
}

pub(crate) async fn log_ops_actions(
    State(log): State<PlatformLog>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let actor = OpsActor::default();
    request.extensions_mut().insert(actor.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |route| route.as_str().to_owned());
    let request_id = crate::auth::request_id(request.headers());
    let response = next.run(request).await;
    if let Some(agent_id) = actor.0.get() {
        let status = response.status();
        let level = if status.is_server_error() {
            LogLevel::Error
        } else if status.is_client_error() {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        log.record(
            NewLogEntry::new(
                level,
                service_of(&route),
                "ops.request",
                format!("{method} {route} answered {}", status.as_u16()),
            )
            .agent(*agent_id)
            .request_id(request_id)
            .data(json!({
                "method": method.as_str(),
                "route": route,
                "path": path,
                "status": status.as_u16(),
            })),
        );
    }
    response
}

/// The feature a route belongs to (its folder under `api/src`).
fn service_of(route: &str) -> LogService {
    const PREFIXES: [(&str, LogService); 11] = [
        ("/api/v1/plugins/autoheal", LogService::Healing),
        ("/api/v1/plugins/interop", LogService::Interop),
        ("/api/v1/plugins/notifications", LogService::Delivery),
        ("/api/v1/plugins/{id}/notify-upgrade", LogService::Delivery),
        ("/api/v1/plugins", LogService::Fleet),
        ("/api/platform/flags", LogService::Flags),
        ("/api/platform/outbox", LogService::Delivery),
        ("/api/platform/errors", LogService::Errors),
        ("/api/v1/rules", LogService::Rules),
        ("/api/v1/credentials", LogService::Auth),
        ("/console/", LogService::Console),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| route.starts_with(prefix))
        .map_or(LogService::Ops, |(_, service)| *service)
}
