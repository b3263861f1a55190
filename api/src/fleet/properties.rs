//! Properties Ops set on an install (`PATCH /api/v1/plugins/{id}/properties`), such as
//! `sensitive`: flag policies read them beside what the plugin reports, so
//! `autoheal.auto_apply` can hold a merchant's patches for review. A property is an
//! identifier → a boolean, a number or a string of at most 256 characters; a null removes
//! it. The names the server sets from the heartbeat itself, and the context's ids, are
//! refused, so an install cannot be made to look like another platform or version.

use super::state::is_short_scalar;
use crate::error::ApiError;
use host::ops::{is_identifier, MAX_CONFIG_VALUE_CHARS};
use serde_json::{Map, Value};

pub const MAX_PROPERTIES: usize = 32;

/// The names a flag context already holds for an install.
pub const RESERVED: [&str; 7] = [
    "cms",
    "site_url",
    "plugin_version",
    "environment",
    "tenant_id",
    "user_id",
    "session_id",
];

/// Checks a change request's `properties`; the error names the first offending one.
pub fn check_changes(changes: &Map<String, Value>) -> Result<(), ApiError> {
    if changes.is_empty() {
        return Err(ApiError::invalid(
            "properties",
            "name at least one property",
        ));
    }
    if changes.len() > MAX_PROPERTIES {
        return Err(ApiError::invalid(
            "properties",
            format!("at most {MAX_PROPERTIES} properties"),
        ));
    }
    for (name, value) in changes {
        let path = format!("properties.{name}");
        if !is_identifier(name) {
            return Err(ApiError::invalid(
                path,
                "a property's name must be an identifier",
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(ApiError::invalid(
                path,
                "is set by the server from the install's heartbeat",
            ));
        }
        if !(value.is_null() || is_short_scalar(value)) {
            return Err(ApiError::invalid(
                path,
                format!("must be a boolean, a number, a string of at most {MAX_CONFIG_VALUE_CHARS} characters, or null to remove it"),
            ));
        }
    }
    Ok(())
}
