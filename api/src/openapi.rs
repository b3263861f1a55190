//! The OpenAPI 3.1 document of the whole API, served without a credential at
//! `GET /api/openapi.json`. It is generated, not written: every route is registered with
//! `utoipa_axum::routes!`, which adds a handler to the router and its `#[utoipa::path]`
//! operation to the document in one step, and the request and response types derive their
//! schemas. What every operation of a kind can answer (the error envelope for a bad body,
//! a bad parameter, a missing credential, an unreachable store) is added here from the
//! operation itself, so a handler lists only the answers that are its own.

use crate::error::ErrorEnvelope;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use std::borrow::Cow;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "autoheal",
        description = "Control plane of a fleet of e-commerce payment plugins: telemetry, \
                       the healing loop, interop events, feature flags, delivery and monitoring. \
                       Every error is `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&Credentials),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = "fleet", description = "Heartbeats and telemetry (plugins); installs, toggles, versions, overview (Ops)"),
        (name = "healing", description = "Detections, review, commands, bundles, logs, breakers (seed 001)"),
        (name = "interop", description = "Platform events, their stats and mappings (seed 001)"),
        (name = "flags", description = "Feature flags, overrides, rollouts (seed 002)"),
        (name = "delivery", description = "The outbox and upgrade notifications (seeds 000, 003)"),
        (name = "ops", description = "Alerts, health, jobs, the audit log, metrics"),
        (name = "rules", description = "The rule set in force"),
        (name = "credentials", description = "Merchant keys, Ops tokens and Sira tokens: list, revoke, rotate (admins)"),
        (name = "meta", description = "Liveness, readiness, the published schemas and this document"),
    )
)]
pub(crate) struct ApiDoc;

/// The three kinds of bearer secret, by the names the operations' `security` uses.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("merchant_key", "A merchant's API key, `ahm_…` (`autoheal merchant create`): plugins, scoped to the merchant's own installs"),
            ("ops_token", "An Ops agent's token, `aho_…` (`autoheal ops-agent create --role viewer|operator|admin`): what it may do follows from its role"),
            ("sira_token", "Sira's token, `ahs_…` (`autoheal sira-token create`): posts detections"),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// Adds to every operation the error answers its kind can give, unless it lists them itself:
/// a secured one 401, 403 and 503; one with a body 400, 413, 415 and 422; one with
/// parameters 422.
pub(crate) fn add_common_errors(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = operation.request_body.is_some();
            let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if secured {
                add_error(
                    operation,
                    401,
                    "No credential, or an unknown or revoked one",
                );
                add_error(
                    operation,
                    403,
                    "A credential of another kind, without the permission, or for another merchant's data",
                );
                add_error(
                    operation,
                    503,
                    "The store is unreachable; nothing was recorded",
                );
            }
            if has_body {
                add_error(operation, 400, "The body is not JSON");
                add_error(operation, 413, "The body is over the server's limit");
                add_error(
                    operation,
                    415,
                    "The body is labelled as something other than JSON",
                );
            }
            if has_body || has_params {
                add_error(
                    operation,
                    422,
                    "A field, query parameter or path parameter is invalid (`field` names it)",
                );
            }
        }
    }
}

fn add_error(operation: &mut Operation, status: u16, description: &str) {
    let responses = &mut operation.responses.responses;
    let status = status.to_string();
    if responses.contains_key(&status) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
                .build(),
        )
        .build();
    responses.insert(status, RefOr::T(response));
}

/// The document as served, serialized once when the app is built.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) Bytes);

/// The OpenAPI 3.1 document of every endpoint.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}

/// The schema of `engine::Platform` (the engine knows nothing of HTTP, so it derives none):
/// its names, from `Platform::ALL`.
pub(crate) struct PlatformName;

impl PartialSchema for PlatformName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(engine::Platform::ALL.map(engine::Platform::as_str)))
            .description(Some("The plugin's platform (cms)"))
            .into()
    }
}

impl ToSchema for PlatformName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Platform")
    }
}
