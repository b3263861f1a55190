//! `/console/`: the seed's stat cards, the cms breakdown, trend charts, open alerts and
//! the healing queue's length. The figures refresh every 5 s from
//! `/console/overview/figures` (htmx); without JavaScript a reload does the same.

use super::super::session::Agent;
use super::super::{page, ConsoleError, Layout};
use super::charts::{line_chart, Series};
use super::percent;
use crate::auth::Permission;
use crate::fleet::CmsCount;
use crate::ops::PlatformAlert;
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/", get(overview))
        .route("/console/overview/figures", get(figures))
}

/// The queue length shown exactly up to this; beyond, "500+".
const QUEUE_COUNTED: i64 = 500;
/// Days the trend charts cover.
const TREND_DAYS: i64 = 14;

/// What the refreshing part of the overview shows.
pub(super) struct Figures {
    cards: Vec<(&'static str, String)>,
    cms: Vec<CmsCount>,
    alerts: Vec<PlatformAlert>,
    queue: String,
    error_chart: String,
    patch_chart: String,
    rates_as_of: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    layout: Layout,
    figures: Figures,
}

#[derive(Template)]
#[template(path = "console/overview_figures.html")]
struct FiguresFragment {
    figures: Figures,
}

async fn overview(State(state): State<AppState>, agent: Agent) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let figures = read_figures(&state).await?;
    page(
        &state,
        &agent,
        &OverviewPage {
            layout: Layout::new(&agent, "overview", "Overview"),
            figures,
        },
    )
}

async fn figures(State(state): State<AppState>, agent: Agent) -> Result<Response, ConsoleError> {
    agent.ops.require(Permission::PluginsRead)?;
    let figures = read_figures(&state).await?;
    page(&state, &agent, &FiguresFragment { figures })
}

async fn read_figures(state: &AppState) -> Result<Figures, ConsoleError> {
    let now = state.clock.now();
    let overview = state.fleet.overview().await?;
    let since = (now - chrono::TimeDelta::days(TREND_DAYS - 1)).date_naive();
    let days = state.fleet.trends(since).await?;
    let alerts = state.ops.alerts(Some("open")).await?;
    let pending = state.healing.queue_length(QUEUE_COUNTED + 1).await?;
    let queue = if pending > QUEUE_COUNTED {
        format!("{QUEUE_COUNTED}+")
    } else {
        pending.to_string()
    };
    let labels: Vec<String> = days
        .iter()
        .map(|day| day.day.format("%m-%d").to_string())
        .collect();
    let error_chart = line_chart(
        "Error rate per day",
        &labels,
        &[Series {
            class: "series-a",
            name: "error rate",
            values: days.iter().map(|day| day.error_rate).collect(),
        }],
        true,
    );
    let patch_chart = line_chart(
        "Patches applied and failed per day",
        &labels,
        &[
            Series {
                class: "series-a",
                name: "applied",
                values: days.iter().map(|day| day.patches_applied as f64).collect(),
            },
            Series {
                class: "series-b",
                name: "failed",
                values: days.iter().map(|day| day.patches_failed as f64).collect(),
            },
        ],
        false,
    );
    Ok(Figures {
        cards: vec![
            ("Active", overview.active_count.to_string()),
            ("Outdated", overview.outdated_count.to_string()),
            ("Blocked", overview.blocked_count.to_string()),
            ("Error", overview.error_count.to_string()),
            (
                "High error rate",
                overview.high_error_rate_count.to_string(),
            ),
            ("Stale", overview.stale_count.to_string()),
            ("Average error rate", percent(overview.avg_error_rate)),
            ("Healing queue", queue.clone()),
        ],
        cms: overview.cms_breakdown,
        alerts,
        queue,
        error_chart,
        patch_chart,
        rates_as_of: super::when(&overview.error_rates_as_of),
    })
}
