//! `GET /api/platform/logs` (the query) and `GET /api/platform/logs/stream` (Server-Sent
//! Events), for Ops with `logs:read`.

use super::{
    search_words, Live, LogCursor, LogEntry, LogFilter, LogLevel, LogPage, LogService, Service,
};
use crate::auth::{Ops, Permission};
use crate::error::ApiError;
use crate::extract::{uuid_param, QueryParams};
use crate::http::{check_len, page};
use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query))
        .routes(routes!(stream))
}

/// How often an idle stream sends a comment, so proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query's filters and page; the stream takes the filters (it has no pages).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// One level or several, comma-separated (`error,warn`).
    level: Option<String>,
    /// Only entries about this merchant (its id).
    tenant: Option<String>,
    #[param(inline)]
    service: Option<LogService>,
    /// Only entries of this action (`job.ran`, `ops.request`).
    action: Option<String>,
    /// Only entries of this request (its `x-request-id`).
    request_id: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339, exclusive).
    until: Option<DateTime<Utc>>,
    /// Words the message must all hold (whole words, any case; anything but letters and
    /// digits separates words).
    q: Option<String>,
    /// Entries per page: 1–500 (default 50); not on the stream.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before; not on the stream.
    cursor: Option<String>,
}

impl LogsQuery {
    fn filter(self) -> Result<LogFilter, ApiError> {
        let text = |name: &str, value: Option<String>| -> Result<Option<String>, ApiError> {
            let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            if let Some(value) = &value {
                check_len(name, value, 200)?;
            }
            Ok(value)
        };
        let levels = match text("level", self.level)? {
            None => Vec::new(),
            Some(levels) => levels
                .split(',')
                .map(|level| {
                    LogLevel::parse(level.trim()).ok_or_else(|| {
                        ApiError::invalid(
                            "level",
                            "must be error, warn, info or debug (or several, comma-separated)",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let merchant_id = text("tenant", self.tenant)?
            .map(|id| uuid_param("tenant", &id))
            .transpose()?;
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if until <= since {
                return Err(ApiError::invalid("until", "must be after since"));
            }
        }
        Ok(LogFilter {
            levels,
            merchant_id,
            service: self.service,
            action: text("action", self.action)?,
            request_id: text("request_id", self.request_id)?,
            since: self.since,
            until: self.until,
            words: text("q", self.q)?
                .as_deref()
                .map(search_words)
                .unwrap_or_default(),
        })
    }
}

/// The platform's log entries, newest first, filtered; pages by `cursor`.
#[utoipa::path(
    get,
    path = "/api/platform/logs",
    tag = "ops",
    security(("ops_token" = [])),
    params(LogsQuery),
    responses((status = 200, description = "Newest first", body = LogPage))
)]
async fn query(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<LogPage>, ApiError> {
    ops.require(Permission::LogsRead)?;
    let (limit, _) = page(query.limit, None)?;
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| {
            LogCursor::decode(cursor).ok_or_else(|| {
                ApiError::invalid("cursor", "must be a next_cursor this endpoint gave")
            })
        })
        .transpose()?;
    let filter = query.filter()?;
    Ok(Json(service.query(&filter, after, limit).await?))
}

/// The entries this replica stores from now on, as Server-Sent Events: each an
/// `event: log` whose data is the entry's JSON, the moment its batch commits. A client
/// that reads too slowly gets `event: log` again after an `event: lagged` with
/// `{"missed": n}`. An idle stream sends a comment every 15 s. Each replica streams its
/// own entries: behind a load balancer, query `GET /api/platform/logs` for the others'.
#[utoipa::path(
    get,
    path = "/api/platform/logs/stream",
    tag = "ops",
    security(("ops_token" = [])),
    params(LogsQuery),
    responses((status = 200, description = "Server-Sent Events: `log` (an entry) and `lagged` (`{\"missed\": n}`)",
        content_type = "text/event-stream", body = LogEntry))
)]
async fn stream(
    State(service): State<Arc<Service>>,
    ops: Ops,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    ops.require(Permission::LogsRead)?;
    for (field, given) in [
        ("limit", query.limit.is_some()),
        ("cursor", query.cursor.is_some()),
    ] {
        if given {
            return Err(ApiError::invalid(field, "a stream has no pages"));
        }
    }
    let live = service.stream(query.filter()?);
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let event = match live.next().await? {
            Live::Entry(entry) => Event::default().event("log").json_data(&*entry),
            Live::Lagged(missed) => Event::default()
                .event("lagged")
                .json_data(serde_json::json!({ "missed": missed })),
        }
        .expect("an entry serializes");
        Some((Ok(event), live))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
