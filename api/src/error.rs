//! The one error type of the HTTP boundary. Every handler returns
//! `Result<_, ApiError>`; `IntoResponse` logs internals once (inside the
//! request's span, so with its request id) and answers a safe JSON body:
//! `{"error": {"code", "message", "field"}}`.

use crate::db::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, truncated).
    #[error("{message}")]
    BadJson { message: String },
    /// Well-formed input with a wrong type, an unknown value or a failed rule.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("request body exceeds {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("missing or invalid credential")]
    Unauthorized,
    #[error("{message}")]
    Forbidden {
        message: String,
        field: Option<String>,
    },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// A merchant's quota (installations, event rate) is spent.
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{message}")]
    Conflict { message: String },
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A rule set with errors; the previous set stays in force.
    #[error("the rule set was refused ({} error(s)); the previous set stays in force", errors.len())]
    RulesRefused { errors: Vec<String> },
    /// The server cannot do this now (not the store: that is [`ApiError::Store`]).
    #[error("{message}")]
    Unavailable { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
            field: None,
        }
    }

    /// Writes down what a client is not told: the store's own error. The only place store
    /// internals are logged; the client gets the generic message of [`Self::parts`].
    pub(crate) fn log_internals(&self) {
        if let Self::Store(
            error @ (StoreError::Database(_)
            | StoreError::Unavailable(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::WriterStopped
            | StoreError::Inconsistent(_)),
        ) = self
        {
            tracing::error!(event = "store_error", error = %error, "request failed in the store");
        }
    }

    /// The status, code, message (written for clients) and field of this error.
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String, Option<&str>) {
        match self {
            Self::BadJson { message } => {
                (StatusCode::BAD_REQUEST, "bad_json", message.clone(), None)
            }
            Self::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                message.clone(),
                Some(field),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                self.to_string(),
                None,
            ),
            Self::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
                None,
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                self.to_string(),
                None,
            ),
            Self::Forbidden { message, field } => (
                StatusCode::FORBIDDEN,
                "forbidden",
                message.clone(),
                field.as_deref(),
            ),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", self.to_string(), None),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                self.to_string(),
                None,
            ),
            Self::QuotaExceeded { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                message.clone(),
                None,
            ),
            Self::Conflict { message } => (StatusCode::CONFLICT, "conflict", message.clone(), None),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                self.to_string(),
                None,
            ),
            Self::RulesRefused { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "rules_refused",
                self.to_string(),
                None,
            ),
            Self::Unavailable { message } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message.clone(),
                None,
            ),
            // Store conflicts carry messages written for clients (an illegal transition).
            Self::Store(StoreError::Conflict(message)) => {
                (StatusCode::CONFLICT, "conflict", message.clone(), None)
            }
            Self::Store(error) if error.is_unavailable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unavailable; nothing was recorded, retry later".to_owned(),
                None,
            ),
            Self::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; nothing was recorded".to_owned(),
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = self.parts();
        self.log_internals();
        let errors = match &self {
            Self::RulesRefused { errors } => Some(errors.clone()),
            _ => None,
        };
        let body = ErrorEnvelope {
            error: ErrorDetail {
                code,
                message,
                field: field.map(str::to_owned),
                errors,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::Unavailable { .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(60));
        }
        if let Self::RateLimited { retry_after_secs }
        | Self::QuotaExceeded {
            retry_after_secs, ..
        } = self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

/// The body of every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for a program: `bad_json`, `invalid_field`, `unsupported_media_type`,
    /// `payload_too_large`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `rate_limited`, `quota_exceeded`, `conflict`, `rules_refused`, `unavailable`,
    /// `internal`; and, for a request head the HTTP server refuses before any handler,
    /// `bad_request`, `uri_too_long`, `headers_too_large`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The body field (`server_info.os[1]`), query parameter or path parameter at fault.
    pub field: Option<String>,
    /// `rules_refused` only: every `file:line:col: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}
