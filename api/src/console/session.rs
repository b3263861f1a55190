//! Who is signed in: passwords (argon2id), session cookies, the CSRF token every form
//! and htmx request carries, and login throttling.
//!
//! The session id lives only in the agent's cookie; the store keeps its SHA-256. The CSRF
//! token is derived from the cookie's secret (a session's, or before sign-in the login
//! cookie's), so it needs no storage and a page from another origin cannot know it.

use super::error::ConsoleError;
use super::ConsoleConfig;
use crate::auth::{hash_secret, Ops};
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The session cookie: the session id, sent only to `/console`.
pub const SESSION_COOKIE: &str = "autoheal_session";
/// Set on the sign-in page: what its CSRF token is derived from before there is a session.
pub const LOGIN_COOKIE: &str = "autoheal_login";
/// A one-shot message for the next page ("Blocked 3 installations").
pub const FLASH_COOKIE: &str = "autoheal_flash";
/// The form field of the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header htmx sends the CSRF token in (set once on `<body hx-headers>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer ones too: argon2 would hash a megabyte, but no one types one.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The argon2id hash of `password` in PHC form, with a fresh salt and the crate's default
/// cost (19 MiB, 2 passes: OWASP's first recommendation).
pub fn hash_password(password: &str) -> Result<String, PasswordRefused> {
    check_password(password)?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password within the length limit")
        .to_string())
}

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordRefused {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

fn check_password(password: &str) -> Result<(), PasswordRefused> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordRefused::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRefused::TooLong);
    }
    Ok(())
}

/// True when `password` matches the PHC `hash` (false for a hash that does not parse).
pub fn verify_password(password: &str, hash: &str) -> bool {
    password.len() <= MAX_PASSWORD_BYTES
        && PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
}

/// Spends the time of one verification, so an unknown email answers as slowly as a wrong
/// password and the timing tells nothing.
pub fn verify_nothing(password: &str) {
    static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_password("decoy password, never used").expect("long enough")
    });
    let _ = verify_password(password, &DECOY);
}

/// The CSRF token that goes with a cookie's secret.
pub fn csrf_token(cookie_secret: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"autoheal console csrf\0");
    digest.update(cookie_secret.as_bytes());
    hex::encode(digest.finalize())
}

/// True when `token` is the CSRF token of one of the request's cookies (compared in
/// constant time).
pub fn csrf_matches(headers: &HeaderMap, token: &str) -> bool {
    [SESSION_COOKIE, LOGIN_COOKIE]
        .into_iter()
        .filter_map(|name| cookie(headers, name))
        .any(|secret| constant_time_eq(csrf_token(secret).as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value for a console cookie: `HttpOnly`, `SameSite=Strict`, path
/// `/console`, `Secure` when configured; `max_age` None makes it last the browser session,
/// zero deletes it.
pub fn set_cookie(
    config: &ConsoleConfig,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", max_age.as_secs()));
    }
    if config.secure_cookies {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie names and values are ASCII")
}

/// Adds a `Set-Cookie` header that deletes cookie `name`.
pub fn clear_cookie(headers: &mut HeaderMap, config: &ConsoleConfig, name: &str) {
    headers.append(
        SET_COOKIE,
        set_cookie(config, name, "", Some(Duration::ZERO)),
    );
}

/// A signed-in Ops agent: the same [`Ops`] (role, permissions, audit actor) a bearer token
/// gives the JSON API, from a live session cookie instead. Extracting it pushes the
/// session's idle deadline forward (at most once a minute: a page view is not a write).
pub struct Agent {
    pub ops: Ops,
    pub email: String,
    /// The CSRF token of this session, for the page's forms.
    pub csrf: String,
    /// The message the previous action left for this page, if any.
    pub flash: Option<String>,
}

/// How often at most a session's idle deadline is written.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let sign_in = ConsoleError::SignIn {
            htmx: parts.headers.contains_key("hx-request"),
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in);
        };
        let id_sha256 = hash_secret(secret);
        let now = state.clock.now();
        let session = state
            .store
            .live_console_session(&id_sha256, now)
            .await
            .map_err(crate::error::ApiError::from)?;
        let Some(session) = session else {
            return Err(sign_in);
        };
        let idle_until = now + idle_timeout(&state.config.console);
        if idle_until - session.idle_until >= TOUCH_EVERY {
            state
                .store
                .touch_console_session(&id_sha256, idle_until)
                .await
                .map_err(crate::error::ApiError::from)?;
        }
        let flash = cookie(&parts.headers, FLASH_COOKIE).map(|text| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        });
        crate::logs::OpsActor::note(&parts.extensions, session.agent_id);
        Ok(Self {
            ops: Ops {
                agent_id: session.agent_id,
                role: session.role,
                request_id: crate::auth::request_id(&parts.headers),
            },
            email: session.email,
            csrf: csrf_token(secret),
            flash,
        })
    }
}

pub(super) fn idle_timeout(config: &ConsoleConfig) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(config.idle_timeout).expect("idle timeout fits")
}

/// How long a subject with `failures` failed sign-ins in a row must wait after the last:
/// nothing for the first [`ConsoleConfig::max_failures`] − 1, then the lockout doubling
/// from [`ConsoleConfig::lockout`] per further failure, at most
/// [`ConsoleConfig::max_lockout`].
pub fn lockout(config: &ConsoleConfig, failures: u32) -> Duration {
    if failures < config.max_failures {
        return Duration::ZERO;
    }
    let doublings = (failures - config.max_failures).min(16);
    (config.lockout * 2u32.pow(doublings)).min(config.max_lockout)
}

/// When the subjects with these failures may try again (None: now).
pub fn locked_until(
    config: &ConsoleConfig,
    failures: &[(u32, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    failures
        .iter()
        .map(|(count, last)| {
            *last + chrono::TimeDelta::from_std(lockout(config, *count)).expect("lockout fits")
        })
        .filter(|until| *until > now)
        .max()
}
