//! The console's one error: what a page or an action answers when it cannot go on. A
//! request without a live session is sent to the sign-in page; anything else is a small
//! HTML page with the status and a message written for the agent (the same message the
//! JSON API would give: store internals are logged, never shown).

use crate::error::ApiError;
use askama::Template;
use axum::http::header::{CACHE_CONTROL, LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: sign in first. `htmx` when htmx made the request: it is told to
    /// navigate (a redirect it would follow inside its request, and swap the sign-in page
    /// into a fragment).
    SignIn {
        htmx: bool,
    },
    /// A POST without the CSRF token of the session (or of the sign-in page).
    Csrf,
    NotFound(&'static str),
    /// What the service refused or failed with.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<crate::db::StoreError> for ConsoleError {
    fn from(error: crate::db::StoreError) -> Self {
        Self::Api(error.into())
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(error: askama::Error) -> Self {
        tracing::error!(event = "template_error", error = %error, "a console page did not render");
        Self::Api(ApiError::Unavailable {
            message: "the page did not render".to_owned(),
        })
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    field: Option<&'a str>,
    stylesheet: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message, field, retry_after) = match &self {
            Self::SignIn { htmx } => {
                let (status, header) = if *htmx {
                    (StatusCode::OK, "hx-redirect")
                } else {
                    (StatusCode::SEE_OTHER, LOCATION.as_str())
                };
                let mut response = status.into_response();
                let headers = response.headers_mut();
                headers.insert(header, HeaderValue::from_static("/console/login"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return response;
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale: reload the page and try again"
                    .to_owned(),
                None,
                None,
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                format!("{what} not found"),
                None,
                None,
            ),
            Self::Api(error) => {
                error.log_internals();
                let (status, _, message, field) = error.parts();
                let retry_after = match error {
                    ApiError::RateLimited { retry_after_secs }
                    | ApiError::QuotaExceeded {
                        retry_after_secs, ..
                    } => Some(*retry_after_secs),
                    ApiError::Unavailable { .. } => Some(60),
                    _ => None,
                };
                (status, message, field.map(str::to_owned), retry_after)
            }
        };
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            field: field.as_deref(),
            stylesheet: super::assets::ASSETS.stylesheet.url(),
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{} {}", status.as_u16(), message));
        let mut response = (status, Html(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
