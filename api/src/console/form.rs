//! The console's form posts: the CSRF check every POST passes before its handler, and
//! [`Fields`], the urlencoded body a handler reads, with errors that name the field.

use super::error::ConsoleError;
use super::session::{csrf_matches, CSRF_FIELD, CSRF_HEADER};
use crate::error::ApiError;
use crate::extract::{parse_query, BodyLimit, NUL_REFUSED};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};

/// The request back, with its body re-attached, when it carries the CSRF token of one of
/// its cookies in the header htmx sends or in the form's `csrf` field.
pub(super) async fn with_csrf_checked(request: Request<Body>) -> Result<Request, ConsoleError> {
    let header_token = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(token) = header_token {
        return if csrf_matches(request.headers(), &token) {
            Ok(request)
        } else {
            Err(ConsoleError::Csrf)
        };
    }
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(256 * 1024, |limit| limit.0);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit_bytes: limit })?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    match token {
        Some(token) if csrf_matches(&parts.headers, &token) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(ConsoleError::Csrf),
    }
}

/// A form's fields, in order (a field may repeat: the checked boxes of a bulk action).
pub struct Fields(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::invalid("body", "could not be read"))?;
        Fields::parse(&bytes)
    }
}

impl Fields {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConsoleError> {
        let mut fields = Vec::new();
        for (key, value) in form_urlencoded::parse(bytes) {
            if value.contains('\0') || key.contains('\0') {
                return Err(ApiError::invalid(key.replace('\0', ""), NUL_REFUSED).into());
            }
            fields.push((key.into_owned(), value.into_owned()));
        }
        Ok(Self(fields))
    }

    /// The field's value, trimmed; None when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The field's value, which must be given.
    pub fn required(&self, name: &str) -> Result<&str, ConsoleError> {
        self.text(name)
            .ok_or_else(|| ApiError::invalid(name, "is required").into())
    }

    /// The field's value exactly as sent (a password keeps its spaces).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every non-blank value of a repeated field.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .collect()
    }

    /// The field parsed as `T`, if given; a value that does not parse names the field.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ConsoleError> {
        self.text(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| ApiError::invalid(name, format!("must be {expected}")).into())
            })
            .transpose()
    }
}

/// The query string of a console page as `T`, as the API reads one, but for blank fields
/// (a filter form's "any"), which are left out.
pub fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ConsoleError> {
    let raw = uri.query().unwrap_or("");
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        if !value.trim().is_empty() {
            kept.append_pair(&key, value.trim());
        }
    }
    Ok(parse_query(&kept.finish())?)
}
