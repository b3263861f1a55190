//! Ops' view of the rule set in force, the reload action, and the replay of a candidate.

use super::replay::{self, ReplayReport};
use super::{RulesStatus, Service};
use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::error::ErrorEnvelope;
use crate::extract::JsonBody;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(reload))
        .routes(routes!(replay))
}

/// The rule files in force, when they were loaded, and the errors of the last refused load.
#[utoipa::path(
    get,
    path = "/api/v1/rules/status",
    tag = "rules",
    security(("ops_token" = [])),
    responses((status = 200, description = "The rule set in force", body = RulesStatus))
)]
async fn status(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::PluginsRead)?;
    Ok(Json(rules.status()))
}

/// `POST /api/v1/rules/reload`: 200 with the new status, or 422 `rules_refused` listing
/// every error while the previous set stays; audited.
#[utoipa::path(
    post,
    path = "/api/v1/rules/reload",
    tag = "rules",
    security(("ops_token" = [])),
    responses(
        (status = 200, description = "The new set is in force", body = RulesStatus),
        (status = 422, description = "`rules_refused`: every error in `error.errors`; the previous set stays", body = ErrorEnvelope),
    )
)]
async fn reload(
    State(rules): State<Arc<Service>>,
    ops: Ops,
) -> Result<Json<RulesStatus>, ApiError> {
    ops.require(Permission::RulesReload)?;
    Ok(Json(rules.reload(&ops.audit()).await?))
}

/// Detections one replay over HTTP decides when the request does not say.
const DEFAULT_REPLAY_LIMIT: usize = 1_000;
/// The most one replay over HTTP decides (every one is in the answer).
const MAX_REPLAY_LIMIT: usize = 10_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// The candidate rule set: its files inline (a path would let a client read the
    /// server's files), each named as in a rules folder (`healing/x.rhai`).
    files: Vec<CandidateFile>,
    /// The oldest detections replayed: a duration before now (`30m`, `12h`, `7d`, the
    /// default) or an RFC 3339 time.
    since: Option<String>,
    /// The most detections replayed, newest first: 1–10,000 (default 1,000).
    limit: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CandidateFile {
    /// `healing/NAME.rhai`, `interop/NAME.rhai` or `flags/NAME.rhai`.
    name: String,
    /// The file's text.
    source: String,
}

/// `POST /api/v1/rules/replay`: decides the detections received since `since` again with
/// the candidate rule set in the body and answers, per detection, what the rules decided
/// then and what the candidate decides now, with a summary. Decisions only: the rule match,
/// confidence thresholds and auto_apply of the rules; flags, breakers and dry runs are not
/// replayed, nothing is written (but the audit row) and no patch runs. A candidate with
/// errors is a 422 `rules_refused` listing every one.
#[utoipa::path(
    post,
    path = "/api/v1/rules/replay",
    tag = "rules",
    security(("ops_token" = [])),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "Both decisions of every detection replayed, and the summary", body = ReplayReport),
        (status = 422, description = "`rules_refused`: the candidate's errors in `error.errors`; or a field (`files`, `since`, `limit`) is invalid", body = ErrorEnvelope),
    )
)]
async fn replay(
    State(rules): State<Arc<Service>>,
    ops: Ops,
    JsonBody(request): JsonBody<ReplayRequest>,
) -> Result<Json<ReplayReport>, ApiError> {
    ops.require(Permission::RulesReload)?;
    let limit = request.limit.unwrap_or(DEFAULT_REPLAY_LIMIT);
    if !(1..=MAX_REPLAY_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_REPLAY_LIMIT}"),
        ));
    }
    let mut names = HashSet::new();
    for (at, file) in request.files.iter().enumerate() {
        if !names.insert(file.name.as_str()) {
            return Err(ApiError::invalid(
                format!("files[{at}].name"),
                format!("{:?} is given twice", file.name),
            ));
        }
    }
    let files = request
        .files
        .into_iter()
        .map(|file| (file.name, file.source))
        .collect();
    let since = request.since.as_deref().unwrap_or(replay::DEFAULT_SINCE);
    Ok(Json(rules.replay(files, since, limit, &ops.audit()).await?))
}
