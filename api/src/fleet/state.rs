//! The `state` a plugin reports in its heartbeat: what the healing loop snapshots and a patch
//! runs against. It is checked on arrival, so a shape no patch can read is a 422 naming its
//! path (`state.tables.wp_orders.fee`), not a dry run failing hours later with "table does
//! not exist". `sdk/schemas/state.json` is the same contract as a JSON Schema (a test holds
//! the two to the same cases).
//!
//! - `config`: config key (lower-case identifiers joined by dots) → a string of at most 256
//!   characters, a number or a boolean; at most [`MAX_CONFIG_KEYS`].
//! - `tables`: table identifier → column identifier → the column's type as the database
//!   reports it ([`host::ops::is_reported_column_type`]); at most [`MAX_TABLES`] tables of
//!   [`MAX_COLUMNS`] columns.
//! - anything else: a fact a rule may read (identifier → a short scalar, or a list of at
//!   most [`MAX_FACT_ITEMS`] of them); at most [`MAX_FACTS`]. The facts the server sets
//!   itself from the heartbeat's own fields ([`SERVER_FACTS`]) are refused.

use crate::error::ApiError;
use host::ops::{is_config_key, is_identifier, is_reported_column_type, MAX_CONFIG_VALUE_CHARS};
use serde_json::{Map, Value};

pub const MAX_CONFIG_KEYS: usize = 512;
pub const MAX_TABLES: usize = 512;
pub const MAX_COLUMNS: usize = 512;
pub const MAX_FACTS: usize = 64;
pub const MAX_FACT_ITEMS: usize = 64;

/// Facts the server takes from the heartbeat itself (`cms`, `plugin_version`, …), so a
/// state cannot contradict them.
pub const SERVER_FACTS: [&str; 4] = [
    "platform",
    "plugin_version",
    "php_version",
    "wordpress_version",
];

/// Checks a heartbeat's `state`; the error names the first offending path.
pub fn check_state(state: &Map<String, Value>) -> Result<(), ApiError> {
    let mut facts = 0;
    for (key, value) in state {
        let path = format!("state.{key}");
        match key.as_str() {
            "config" => check_config(&path, value)?,
            "tables" => check_tables(&path, value)?,
            reserved if SERVER_FACTS.contains(&reserved) => {
                return Err(ApiError::invalid(
                    path,
                    "is set by the server from the heartbeat's own fields; leave it out of state",
                ))
            }
            _ => {
                facts += 1;
                if facts > MAX_FACTS {
                    return Err(ApiError::invalid(
                        "state",
                        format!("at most {MAX_FACTS} facts besides config and tables"),
                    ));
                }
                check_key(
                    &path,
                    is_identifier(key),
                    "a fact's name must be an identifier",
                )?;
                check_fact(&path, value)?;
            }
        }
    }
    Ok(())
}

fn check_config(path: &str, config: &Value) -> Result<(), ApiError> {
    let config = object(path, config, MAX_CONFIG_KEYS, "config keys")?;
    for (key, value) in config {
        let path = format!("{path}.{key}");
        check_key(
            &path,
            is_config_key(key),
            "a config key is lower-case identifiers joined by dots, at most 64 characters",
        )?;
        if !is_short_scalar(value) {
            return Err(ApiError::invalid(
                path,
                format!("must be a string of at most {MAX_CONFIG_VALUE_CHARS} characters, a number or a boolean"),
            ));
        }
    }
    Ok(())
}

fn check_tables(path: &str, tables: &Value) -> Result<(), ApiError> {
    let tables = object(path, tables, MAX_TABLES, "tables")?;
    for (table, columns) in tables {
        let path = format!("{path}.{table}");
        check_key(
            &path,
            is_identifier(table),
            "a table name must be an identifier",
        )?;
        let columns = object(&path, columns, MAX_COLUMNS, "columns")?;
        for (column, column_type) in columns {
            let path = format!("{path}.{column}");
            check_key(
                &path,
                is_identifier(column),
                "a column name must be an identifier",
            )?;
            let reported = column_type.as_str().is_some_and(is_reported_column_type);
            if !reported {
                return Err(ApiError::invalid(
                    path,
                    "must be the column's SQL type as a string, e.g. \"bigint(20) unsigned\" or \"DECIMAL(10,2)\"",
                ));
            }
        }
    }
    Ok(())
}

fn check_fact(path: &str, value: &Value) -> Result<(), ApiError> {
    let fits = match value {
        Value::Array(items) => items.len() <= MAX_FACT_ITEMS && items.iter().all(is_short_scalar),
        other => other.is_null() || is_short_scalar(other),
    };
    if fits {
        Ok(())
    } else {
        Err(ApiError::invalid(
            path,
            format!(
                "a fact is null, a short scalar, or a list of at most {MAX_FACT_ITEMS} of them"
            ),
        ))
    }
}

fn object<'a>(
    path: &str,
    value: &'a Value,
    max: usize,
    what: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid(path, "must be an object"))?;
    if map.len() > max {
        return Err(ApiError::invalid(path, format!("at most {max} {what}")));
    }
    Ok(map)
}

fn check_key(path: &str, ok: bool, message: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(path, message))
    }
}

/// A string of at most [`MAX_CONFIG_VALUE_CHARS`], a number or a boolean (what a config
/// value, a fact's item and an install property may be).
pub(super) fn is_short_scalar(value: &Value) -> bool {
    match value {
        Value::String(text) => text.chars().count() <= MAX_CONFIG_VALUE_CHARS,
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    }
}
