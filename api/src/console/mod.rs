//! The Ops console: server-rendered pages under `/console/`, served by `autoheal serve`
//! itself. Templates (askama, `api/templates/console/`) are compiled into the binary; the
//! vendored htmx and the stylesheet are embedded ([`assets`]). Every page reads without
//! JavaScript; htmx makes forms partial (`hx-boost`) and refreshes the overview.
//!
//! A page or action calls the same feature service as its JSON endpoint, after the same
//! [`Permission`](crate::auth::Permission) check, with the agent of the session as the
//! audit actor. What the console never does:
//! - accept a bearer token (only the session cookie signs a request in), nor does the
//!   JSON API accept the cookie;
//! - take a POST without the CSRF token of the session ([`check_request`]);
//! - let a browser cache a page (`Cache-Control: no-store`: the back button after
//!   signing out shows the sign-in page), run a script it did not serve, or be framed.

mod assets;
mod error;
mod form;
mod login;
mod pages;
mod session;
mod store;

pub use error::ConsoleError;
pub use session::{hash_password, verify_password, PasswordRefused, MIN_PASSWORD_CHARS};
pub use store::{LiveSession, Origin, SignInCandidate};

use crate::AppState;
use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use session::Agent;
use std::time::Duration;

/// The console's settings (`autoheal serve --console-…`).
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// A session unused this long ends (30 min).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy (12 h).
    pub absolute_lifetime: Duration,
    /// Mark cookies `Secure` (served over TLS, or behind a proxy that terminates it).
    pub secure_cookies: bool,
    /// Failed sign-ins in a row, per email or per address, after which one must wait (5).
    pub max_failures: u32,
    /// The first wait; it doubles with each further failure (30 s) …
    pub lockout: Duration,
    /// … up to this (15 min). Failures older than this are forgotten.
    pub max_lockout: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            max_failures: 5,
            lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// The console's routes, outside the OpenAPI document (they answer HTML).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/assets/{name}", get(assets::asset))
        .merge(login::routes())
        .merge(pages::routes())
        .layer(middleware::from_fn(check_request))
}

/// Refuses a POST that does not carry the CSRF token of one of its cookies (in the
/// `csrf` form field or the `X-CSRF-Token` header), before any handler runs, and adds the
/// headers every console answer carries.
async fn check_request(request: Request<Body>, next: Next) -> Response {
    let mut response = if request.method() == Method::GET || request.method() == Method::HEAD {
        next.run(request).await
    } else {
        match form::with_csrf_checked(request).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => refusal.into_response(),
        }
    };
    let headers = response.headers_mut();
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// What every page's frame shows: who is signed in, the section, the message the last
/// action left, and the links to the assets.
pub struct Layout {
    pub title: String,
    pub section: &'static str,
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub flash: Option<String>,
    pub stylesheet: String,
    pub htmx: String,
}

impl Layout {
    pub fn new(agent: &Agent, section: &'static str, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            section,
            email: agent.email.clone(),
            role: agent.ops.role.as_str(),
            csrf: agent.csrf.clone(),
            flash: agent.flash.clone(),
            stylesheet: assets::ASSETS.stylesheet.url(),
            htmx: assets::ASSETS.htmx.url(),
        }
    }

    /// The sections of the navigation, with their paths.
    pub fn sections(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("overview", "/console/"),
            ("fleet", "/console/fleet"),
            ("healing", "/console/healing"),
            ("interop", "/console/interop"),
            ("flags", "/console/flags"),
            ("alerts", "/console/alerts"),
            ("health", "/console/health"),
            ("outbox", "/console/outbox"),
            ("audit", "/console/audit"),
        ]
    }
}

/// A rendered page, clearing the flash cookie when the page showed its message.
pub fn page(
    state: &AppState,
    agent: &Agent,
    template: &impl askama::Template,
) -> Result<Response, ConsoleError> {
    let mut response = Html(template.render()?).into_response();
    if agent.flash.is_some() {
        session::clear_cookie(
            response.headers_mut(),
            &state.config.console,
            session::FLASH_COOKIE,
        );
    }
    Ok(response)
}

/// After an action: back to `location` (303, so a reload does not repeat the POST), with
/// `message` for the page to show once.
pub fn done(state: &AppState, location: &str, message: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    let encoded =
        percent_encoding::utf8_percent_encode(message, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    response.headers_mut().append(
        SET_COOKIE,
        session::set_cookie(
            &state.config.console,
            session::FLASH_COOKIE,
            &encoded,
            Some(Duration::from_secs(60)),
        ),
    );
    response
}
