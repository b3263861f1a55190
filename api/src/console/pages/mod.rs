//! The console's pages, one module per section. Each handler takes the session's
//! [`Agent`], checks the [`Permission`] its JSON endpoint checks, calls the same service,
//! and renders a template of `api/templates/console/`; each action answers with
//! [`done`](super::done) (a redirect back, with a message) or the console's error page.

mod charts;
mod flags;
mod fleet;
mod healing;
mod interop;
mod ops;
mod overview;

use crate::AppState;
use axum::Router;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .merge(overview::routes())
        .merge(fleet::routes())
        .merge(healing::routes())
        .merge(flags::routes())
        .merge(ops::routes())
        .merge(interop::routes())
}

/// A time as the console shows it: to the minute, in UTC.
pub(super) fn when(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A rate in percent (0–100), with one decimal.
pub(super) fn percent(rate: f64) -> String {
    format!("{rate:.1} %")
}
