//! The plugin protocol as JSON Schemas (draft 2020-12), committed under `sdk/schemas/` and
//! served as they are at `GET /api/v1/schemas/{name}.json`, without a credential: what a
//! plugin sends (`heartbeat`, its `state`, `ack`) and receives (`command`, its
//! `signed_command` payload and its `certificate`). Each `$id` is
//! its path here, so `heartbeat.json`'s `$ref: state.json` resolves against the server.

use crate::error::{ApiError, ErrorEnvelope};
use crate::AppState;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every schema by name, as committed.
pub const SCHEMAS: [(&str, &str); 6] = [
    (
        "heartbeat",
        include_str!("../../sdk/schemas/heartbeat.json"),
    ),
    ("state", include_str!("../../sdk/schemas/state.json")),
    ("command", include_str!("../../sdk/schemas/command.json")),
    ("ack", include_str!("../../sdk/schemas/ack.json")),
    (
        "signed_command",
        include_str!("../../sdk/schemas/signed_command.json"),
    ),
    (
        "certificate",
        include_str!("../../sdk/schemas/certificate.json"),
    ),
];

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(schema))
}

/// `GET /api/v1/schemas/{name}.json`: a JSON Schema (draft 2020-12) of the plugin protocol.
#[utoipa::path(
    get,
    path = "/api/v1/schemas/{file}",
    tag = "meta",
    params(("file" = String, Path, description = "`heartbeat.json`, `state.json`, `command.json` or `ack.json`")),
    responses(
        (status = 200, description = "The schema, as committed in `sdk/schemas/`", content_type = "application/schema+json", body = Object),
        (status = 404, description = "No such schema", body = ErrorEnvelope),
    )
)]
async fn schema(Path(file): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let text = file
        .strip_suffix(".json")
        .and_then(|name| SCHEMAS.iter().find(|(known, _)| *known == name))
        .map(|(_, text)| *text)
        .ok_or(ApiError::NotFound { what: "schema" })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/schema+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    ))
}
