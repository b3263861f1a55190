//! Every Ops action is logged once, here, rather than in each of dozens of handlers: the
//! router's middleware [`log_ops_actions`] puts an empty [`OpsActor`] slot in each request
//! that can change something (any method but GET, HEAD and OPTIONS); the `auth::Ops`
//! extractor (a bearer token or a console session) writes the agent into it. After the
//! handler, a request whose slot holds an agent is recorded with its method, route, path,
//! status and request id: `info`, `warn` for a 4xx (refused, invalid), `error` for a 5xx;
//! with the merchant of the install or healing log the route names, as its tenant.
//! Nothing of the body or the query string is logged (they can hold secrets); what the
//! action changed is in the audit log, under the same request id.

use super::{LogLevel, LogService, NewLogEntry};
use crate::AppState;
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
    State(state): State<AppState>,
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
        let mut entry = NewLogEntry::new(
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
        }));
        // One indexed read, for Ops requests only. Unknown (or unreadable): no tenant.
        if let Some(target) = target_of(&route, &path) {
            if let Ok(Some(merchant_id)) = state.store.merchant_of(target).await {
                entry = entry.merchant(merchant_id);
            }
        }
        state.platform_log.record(entry);
    }
    response
}

/// What an Ops route acts on, when that belongs to one merchant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpsTarget {
    Installation(Uuid),
    HealingLog(Uuid),
}

/// The install or healing log `{id}` of `route` names in `path`. Healing's routes come
/// first: `/api/v1/plugins/autoheal/{id}` is not an install.
fn target_of(route: &str, path: &str) -> Option<OpsTarget> {
    /// A route's prefix up to its `{id}`, and what the id names.
    type TargetRoute = (&'static str, fn(Uuid) -> OpsTarget);
    const ROUTES: [TargetRoute; 4] = [
        ("/api/v1/plugins/autoheal/{id}", OpsTarget::HealingLog),
        ("/console/healing/{id}", OpsTarget::HealingLog),
        ("/api/v1/plugins/{id}", OpsTarget::Installation),
        ("/console/installs/{id}", OpsTarget::Installation),
    ];
    let (prefix, target) = ROUTES.iter().find(|(prefix, _)| {
        route
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })?;
    let at = prefix.split('/').count() - 1;
    let id = path.split('/').nth(at)?;
    Uuid::parse_str(id).ok().map(target)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_of_reads_the_id_the_route_names() {
        let id = Uuid::now_v7();
        for (route, path, expected) in [
            (
                "/api/v1/plugins/{id}/toggle",
                format!("/api/v1/plugins/{id}/toggle"),
                Some(OpsTarget::Installation(id)),
            ),
            (
                "/api/v1/plugins/{id}",
                format!("/api/v1/plugins/{id}"),
                Some(OpsTarget::Installation(id)),
            ),
            (
                "/console/installs/{id}/lift",
                format!("/console/installs/{id}/lift"),
                Some(OpsTarget::Installation(id)),
            ),
            (
                "/api/v1/plugins/autoheal/{id}/apply",
                format!("/api/v1/plugins/autoheal/{id}/apply"),
                Some(OpsTarget::HealingLog(id)),
            ),
            (
                "/console/healing/{id}/approve",
                format!("/console/healing/{id}/approve"),
                Some(OpsTarget::HealingLog(id)),
            ),
            (
                "/api/v1/plugins/{id}/toggle",
                "/api/v1/plugins/not-a-uuid/toggle".to_owned(),
                None,
            ),
            (
                "/api/v1/plugins/autoheal",
                "/api/v1/plugins/autoheal".to_owned(),
                None,
            ),
            (
                "/api/platform/errors/{id}/status",
                format!("/api/platform/errors/{id}/status"),
                None,
            ),
            (
                "/api/v1/plugins/{idx}",
                format!("/api/v1/plugins/{id}"),
                None,
            ),
        ] {
            assert_eq!(target_of(route, &path), expected, "{route} {path}");
        }
    }
}
