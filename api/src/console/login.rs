//! `/console/login` and `/console/logout`: signing in with email and password, throttled
//! per email and per address, and signing out. Every sign-in, failure and sign-out is in
//! the audit log.

use super::error::ConsoleError;
use super::form::Fields;
use super::session::{
    self, clear_cookie, cookie, csrf_token, locked_until, set_cookie, verify_nothing,
    verify_password, Agent, LOGIN_COOKIE, SESSION_COOKIE,
};
use super::store::Origin;
use super::{assets, ConsoleConfig};
use crate::auth::{hash_secret, random_secret};
use crate::db::AuditContext;
use crate::wire::Peer;
use crate::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(show).post(sign_in))
        .route("/console/logout", post(sign_out))
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    problem: Option<String>,
    stylesheet: String,
}

/// The sign-in form. It sets the login cookie its CSRF token is derived from, unless the
/// browser already has one.
async fn show(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ConsoleError> {
    if signed_in(&state, &headers).await? {
        return Ok(Redirect::to("/console/").into_response());
    }
    login_page(&state.config.console, &headers, StatusCode::OK, "", None)
}

fn login_page(
    config: &ConsoleConfig,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    problem: Option<String>,
) -> Result<Response, ConsoleError> {
    let (secret, fresh) = match cookie(headers, LOGIN_COOKIE) {
        Some(secret) => (secret.to_owned(), false),
        None => (random_secret(), true),
    };
    let page = LoginPage {
        csrf: csrf_token(&secret),
        email: email.to_owned(),
        problem,
        stylesheet: assets::ASSETS.stylesheet.url(),
    };
    let mut response = (status, Html(page.render()?)).into_response();
    if fresh {
        response
            .headers_mut()
            .append(SET_COOKIE, set_cookie(config, LOGIN_COOKIE, &secret, None));
    }
    Ok(response)
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<bool, ConsoleError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(false);
    };
    Ok(state
        .store
        .live_console_session(&hash_secret(secret), state.clock.now())
        .await?
        .is_some())
}

/// Where a request comes from: the peer's address (when the server was started with
/// connection info, as `autoheal serve` is) and its user agent.
pub(super) struct ClientOrigin(Origin);

impl<S: Send + Sync> FromRequestParts<S> for ClientOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|ConnectInfo(Peer(peer))| peer.ip().to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|text| text.chars().take(256).collect());
        Ok(Self(Origin {
            address,
            user_agent,
        }))
    }
}

const WRONG: &str = "The email or the password is wrong.";

async fn sign_in(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    let config = &state.config.console;
    let email = fields.text("email").unwrap_or("");
    // An address is at most 254 characters; a longer one would only fill the audit log.
    crate::http::check_len("email", email, 254)?;
    let password = fields.raw("password").unwrap_or("");
    let now = state.clock.now();
    let mut subjects = vec![format!("email:{}", email.to_lowercase())];
    if let Some(address) = &origin.address {
        subjects.push(format!("address:{address}"));
    }
    let audit = AuditContext {
        actor_kind: "console",
        actor_id: None,
        request_id: crate::auth::request_id(&headers),
    };
    let details =
        |reason: &str| json!({ "email": email, "address": origin.address, "reason": reason });
    let failures = state.store.login_failures(&subjects).await?;
    if let Some(until) = locked_until(config, &failures, now) {
        state
            .store
            .record_login_failure(&[], now, details("throttled"), &audit, now)
            .await?;
        let wait = (until - now).num_seconds().max(1);
        let mut response = login_page(
            config,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            email,
            Some(format!(
                "Too many failed sign-ins. Try again in {wait} seconds."
            )),
        )?;
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(wait));
        return Ok(response);
    }
    let candidate = state.store.sign_in_candidate(email).await?;
    // argon2id takes tens of milliseconds of a core by design: off the async workers.
    let (password, hash) = (
        password.to_owned(),
        candidate.as_ref().map(|c| c.password_hash.clone()),
    );
    let verified = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            verify_nothing(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(candidate) = candidate.filter(|_| verified) else {
        let forget_before =
            now - chrono::TimeDelta::from_std(config.max_lockout).expect("lockout fits");
        state
            .store
            .record_login_failure(&subjects, forget_before, details("wrong"), &audit, now)
            .await?;
        return login_page(
            config,
            &headers,
            StatusCode::UNAUTHORIZED,
            email,
            Some(WRONG.to_owned()),
        );
    };
    let secret = random_secret();
    let audit = AuditContext {
        actor_kind: "ops_agent",
        actor_id: Some(candidate.agent_id),
        ..audit
    };
    let lifetime = config.absolute_lifetime;
    state
        .store
        .open_console_session(
            &hash_secret(&secret),
            candidate.agent_id,
            now + session::idle_timeout(config),
            now + chrono::TimeDelta::from_std(lifetime).expect("lifetime fits"),
            &origin,
            &subjects,
            &audit,
            now,
        )
        .await?;
    let mut response = Redirect::to("/console/").into_response();
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(config, SESSION_COOKIE, &secret, Some(lifetime)),
    );
    clear_cookie(headers, config, LOGIN_COOKIE);
    Ok(response)
}

async fn sign_out(
    State(state): State<AppState>,
    agent: Result<Agent, ConsoleError>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let (Ok(agent), Some(secret)) = (agent, cookie(&headers, SESSION_COOKIE)) {
        state
            .store
            .end_console_session(&hash_secret(secret), &agent.ops.audit(), state.clock.now())
            .await?;
    }
    let mut response = Redirect::to("/console/login").into_response();
    let response_headers = response.headers_mut();
    clear_cookie(response_headers, &state.config.console, SESSION_COOKIE);
    response_headers.insert(
        "clear-site-data",
        HeaderValue::from_static("\"cache\", \"storage\""),
    );
    Ok(response)
}
