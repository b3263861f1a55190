//! Request extractors that turn every kind of bad input into an [`ApiError`]
//! naming the field: JSON bodies (syntax → 400, types and values → 422,
//! oversized → 413) and query strings (→ 422).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON request body, parsed with the path of any failing field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `Option<JsonBody<T>>`: an empty body is `None` (an optional body, like an approval that
/// edits nothing); anything else must be valid JSON for `T`.
impl<S, T> OptionalFromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let bytes = json_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse_json(&bytes).map(|value| Some(JsonBody(value)))
    }
}

/// The body's bytes, if its media type is JSON or a label plugin HTTP clients put on JSON
/// bodies by default: the seed's WordPress heartbeat posts json_encode() without a
/// Content-Type, which curl sends as form-urlencoded.
async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let acceptable = match request.headers().get(CONTENT_TYPE) {
        None => true,
        Some(value) => value.to_str().is_ok_and(|value| {
            let mime = value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
                || mime == "application/x-www-form-urlencoded"
                || mime == "text/plain"
        }),
    };
    if !acceptable {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map(|limit| limit.0)
        .unwrap_or(0);
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(_) => {
                ApiError::PayloadTooLarge { limit_bytes: limit }
            }
            other => ApiError::BadJson {
                message: other.body_text(),
            },
        })
}

/// The configured body limit, put in request extensions so the 413 message
/// can say what the limit is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// What a NUL character in any input is answered with (PostgreSQL cannot store it in text
/// or JSON, and the same input must get the same answer on both backends).
pub(crate) const NUL_REFUSED: &str = "must not contain the NUL character (\\u0000)";

/// Parses JSON, reporting the path of the field that failed. A string (or key) holding a
/// NUL character is refused by its path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(path) = nul_path(bytes) {
        return Err(ApiError::invalid(path, NUL_REFUSED));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        // serde_json reports some type errors (a number where an enum is
        // expected) as syntax errors, so "is it JSON at all" is asked anew.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof if !is_json => {
                bad_json(inner)
            }
            _ => field_error(&error.path().to_string(), &inner.to_string()),
        }
    })?;
    deserializer.end().map_err(|error| bad_json(&error))?;
    Ok(value)
}

/// The path (`a.b[2].c`; a NUL in a key written `\0`) of the first string or key with a NUL
/// character in it, when the JSON has one. JSON can only hold one as the escape
/// `\u0000`, so a body without that text is not parsed twice.
fn nul_path(bytes: &[u8]) -> Option<String> {
    let escaped = bytes
        .windows(6)
        .any(|w| w[..2] == *b"\\u" && w[2..].iter().all(|b| *b == b'0'));
    if !escaped {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    fn find(value: &serde_json::Value, path: &str) -> Option<String> {
        let joined = |name: &str| {
            let name = name.replace('\0', "\\0");
            if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            }
        };
        match value {
            serde_json::Value::String(text) if text.contains('\0') => Some(if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            }),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| find(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(name, field)| {
                if name.contains('\0') {
                    Some(joined(name))
                } else {
                    find(field, &joined(name))
                }
            }),
            _ => None,
        }
    }
    find(&value, "")
}

fn bad_json(error: &serde_json::Error) -> ApiError {
    ApiError::BadJson {
        message: format!("request body is not valid JSON: {error}"),
    }
}

/// A path segment that must be a UUID, named `field` in the 422 when it is not.
pub fn uuid_param(field: &str, raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// A query string, parsed with the name of any failing parameter.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(QueryParams)
    }
}

/// A query string as `T`; a NUL, or a value `T` does not take, is a 422 naming the field.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    // PostgreSQL can neither store nor compare text with a NUL in it.
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
    {
        return Err(ApiError::invalid(name.replace('\0', "\\0"), NUL_REFUSED));
    }
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer)
        .map_err(|error| field_error(&error.path().to_string(), &error.inner().to_string()))
}

/// Builds the 422 for a deserialization failure. serde reports a missing or
/// unknown field at the parent's path with the name in the message, so the
/// name is lifted from there.
fn field_error(path: &str, message: &str) -> ApiError {
    let message = strip_position(message);
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (named, path) {
        (Some(name), "." | "") => name.to_owned(),
        // An unknown field's path already ends with its name.
        (Some(name), path) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => String::new(),
        (None, path) => path.to_owned(),
    };
    ApiError::invalid(field, message)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}
