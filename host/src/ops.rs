//! The plugin state a patch sees, the closed set of operations a patch may return, and the
//! pure functions that apply them and compute their inverse (rollback).
//!
//! Nothing here mutates its input: [`apply`] takes a state by reference and returns a new one,
//! so a failed run or a refused operation leaves the snapshot exactly as it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plugin's reported state, as the host hands it to a patch.
///
/// `config` and `tables` are what operations may change; every other top-level field
/// (`platform`, `plugin_version`, `php_version`, …) is a read-only fact kept in `facts`.
/// Maps are ordered, so the JSON a patch receives is canonical: the same state always
/// serializes to the same bytes.
///
/// JSON: `{"config":{…},"tables":{…},<facts…>}` — `config` and `tables` first, then the facts
/// in key order. (Hand-written serde impls: `#[serde(flatten)]` would buffer every field.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Plugin and runtime configuration: key → scalar value (`"memory_limit": "128M"`).
    pub config: BTreeMap<String, Value>,
    /// Database schema: table → column → SQL column type.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
    /// Every other top-level field, read-only for patches.
    pub facts: BTreeMap<String, Value>,
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2 + self.facts.len()))?;
        map.serialize_entry("config", &self.config)?;
        map.serialize_entry("tables", &self.tables)?;
        for (k, v) in &self.facts {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = State;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a plugin state object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<State, A::Error> {
                let mut state = State::default();
                let (mut seen_config, mut seen_tables) = (false, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "config" if !seen_config => {
                            seen_config = true;
                            state.config = map.next_value()?;
                        }
                        "tables" if !seen_tables => {
                            seen_tables = true;
                            state.tables = map.next_value()?;
                        }
                        "config" | "tables" => {
                            return Err(serde::de::Error::custom(format!("duplicate `{key}`")))
                        }
                        _ => {
                            let value = map.next_value()?;
                            if state.facts.insert(key, value).is_some() {
                                return Err(serde::de::Error::custom("duplicate fact"));
                            }
                        }
                    }
                }
                Ok(state)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Severity of a merchant notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// The closed set of operations a patch may return. Anything else in a patch's output is
/// refused as [`crate::RunError::InvalidOutput`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Add a column to an existing table; the column must not exist yet.
    AddColumn {
        table: String,
        column: String,
        column_type: String,
    },
    /// Drop an existing column: only ever the inverse of the patch's own `add_column`
    /// (a patch that returns one is refused, see [`validate_plan`]).
    DropColumn { table: String, column: String },
    /// Set a configuration key to a scalar value.
    SetConfig { key: String, value: Value },
    /// Remove a configuration key (no-op when absent).
    UnsetConfig { key: String },
    /// Tell the merchant something. Changes no state and has no inverse.
    NotifyMerchant {
        template: String,
        severity: Severity,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<BTreeMap<String, Value>>,
    },
}

/// The kind of an [`Operation`], as a manifest declares what its patch may do
/// (`"operations": ["add_column"]`) and a plugin checks a command against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    AddColumn,
    DropColumn,
    SetConfig,
    UnsetConfig,
    NotifyMerchant,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddColumn => "add_column",
            Self::DropColumn => "drop_column",
            Self::SetConfig => "set_config",
            Self::UnsetConfig => "unset_config",
            Self::NotifyMerchant => "notify_merchant",
        }
    }

    /// The kinds a rollback may use to undo an operation of this kind: what
    /// [`restore_operations`] produces for it.
    pub fn inverse_kinds(self) -> &'static [OperationKind] {
        match self {
            Self::AddColumn => &[Self::DropColumn],
            Self::SetConfig | Self::UnsetConfig => &[Self::SetConfig, Self::UnsetConfig],
            Self::DropColumn | Self::NotifyMerchant => &[],
        }
    }
}

impl Operation {
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::AddColumn { .. } => OperationKind::AddColumn,
            Self::DropColumn { .. } => OperationKind::DropColumn,
            Self::SetConfig { .. } => OperationKind::SetConfig,
            Self::UnsetConfig { .. } => OperationKind::UnsetConfig,
            Self::NotifyMerchant { .. } => OperationKind::NotifyMerchant,
        }
    }
}

/// Why an operation list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("operation {index}: invalid {field}: {reason}")]
    Invalid {
        index: usize,
        field: &'static str,
        reason: String,
    },
    #[error("operation {index}: table `{table}` does not exist")]
    TableMissing { index: usize, table: String },
    #[error("operation {index}: column `{table}.{column}` already exists")]
    ColumnExists {
        index: usize,
        table: String,
        column: String,
    },
    #[error("operation {index}: column `{table}.{column}` does not exist")]
    ColumnMissing {
        index: usize,
        table: String,
        column: String,
    },
    #[error("too many operations: {count} (at most {max})")]
    TooMany { count: usize, max: usize },
    #[error("operation {index}: drop_column is a restore operation only: a patch may not drop what it did not create")]
    RestoreOnly { index: usize },
    #[error("operation {index}: `{kind}` is not among the operations the manifest declares")]
    Undeclared { index: usize, kind: &'static str },
}

/// At most this many operations per run.
pub const MAX_OPERATIONS: usize = 64;
/// Longest identifier (table, column, config key, template).
pub const MAX_IDENTIFIER_CHARS: usize = 64;
/// Longest merchant message.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest string config value.
pub const MAX_CONFIG_VALUE_CHARS: usize = 256;

/// SQL base types a patch may add (the type may carry `(n)` or `(p,s)` and a trailing
/// `UNSIGNED`, `NULL`, `NOT NULL`).
pub const SQL_BASE_TYPES: &[&str] = &[
    "TINYINT",
    "SMALLINT",
    "INT",
    "INTEGER",
    "BIGINT",
    "DECIMAL",
    "NUMERIC",
    "FLOAT",
    "DOUBLE",
    "VARCHAR",
    "CHAR",
    "TEXT",
    "MEDIUMTEXT",
    "LONGTEXT",
    "DATE",
    "DATETIME",
    "TIMESTAMP",
    "BOOLEAN",
    "JSON",
];

/// `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_IDENTIFIER_CHARS`].
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    s.len() <= MAX_IDENTIFIER_CHARS && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A config key: lower-case identifier, dots allowed between parts (`payment.timeout_ms`).
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDENTIFIER_CHARS
        && s.split('.')
            .all(|part| is_identifier(part) && !part.chars().any(|c| c.is_ascii_uppercase()))
}

/// `DECIMAL(10,2)`, `VARCHAR(191) NOT NULL`, `BIGINT UNSIGNED` … from [`SQL_BASE_TYPES`].
pub fn is_sql_column_type(s: &str) -> bool {
    if s.len() > MAX_IDENTIFIER_CHARS {
        return false;
    }
    let base_end = s.find(|c: char| !c.is_ascii_uppercase()).unwrap_or(s.len());
    if !SQL_BASE_TYPES.contains(&&s[..base_end]) {
        return false;
    }
    let mut rest = &s[base_end..];
    if let Some(args) = rest.strip_prefix('(') {
        let Some(close) = args.find(')') else {
            return false;
        };
        let inner = &args[..close];
        let parts: Vec<&str> = inner.split(',').collect();
        if parts.len() > 2
            || parts
                .iter()
                .any(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return false;
        }
        rest = &args[close + 1..];
    }
    let mut words = rest.split(' ');
    if words.next() != Some("") && !rest.is_empty() {
        return false;
    }
    let modifiers: Vec<&str> = words.collect();
    matches!(
        modifiers.as_slice(),
        [] | ["UNSIGNED"]
            | ["NULL"]
            | ["NOT", "NULL"]
            | ["UNSIGNED", "NULL"]
            | ["UNSIGNED", "NOT", "NULL"]
    )
}

/// Longest column type a plugin may report.
pub const MAX_REPORTED_TYPE_CHARS: usize = 128;

/// A column type as a plugin reports its schema (`bigint(20) unsigned`, `enum('a','b')`,
/// `timestamp(6) with time zone`): words, at most one parenthesized argument list of
/// letters, digits, `_ , ' . -` and spaces, then words; at most
/// [`MAX_REPORTED_TYPE_CHARS`]. Wider than [`is_sql_column_type`], which is what a patch
/// may add: a site's tables hold types no patch creates. (`sdk/schemas/state.json` spells
/// the same rule as a pattern.)
pub fn is_reported_column_type(s: &str) -> bool {
    fn words(text: &str) -> bool {
        text.split(' ').all(|word| {
            let mut chars = word.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }
    if s.is_empty() || s.len() > MAX_REPORTED_TYPE_CHARS {
        return false;
    }
    let Some(open) = s.find('(') else {
        return words(s);
    };
    let Some(close) = s[open..].find(')').map(|at| open + at) else {
        return false;
    };
    let args_ok = s[open + 1..close]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_,' .-".contains(c));
    let after = &s[close + 1..];
    let after_ok = after.is_empty() || after.strip_prefix(' ').is_some_and(words);
    words(&s[..open]) && args_ok && after_ok
}

fn invalid(index: usize, field: &'static str, reason: impl Into<String>) -> OpError {
    OpError::Invalid {
        index,
        field,
        reason: reason.into(),
    }
}

/// Check each operation's fields (names, types, sizes) without looking at any state.
pub fn validate(ops: &[Operation]) -> Result<(), OpError> {
    if ops.len() > MAX_OPERATIONS {
        return Err(OpError::TooMany {
            count: ops.len(),
            max: MAX_OPERATIONS,
        });
    }
    for (index, op) in ops.iter().enumerate() {
        match op {
            Operation::AddColumn {
                table,
                column,
                column_type,
            } => {
                if !is_identifier(table) {
                    return Err(invalid(index, "table", "not an identifier"));
                }
                if !is_identifier(column) {
                    return Err(invalid(index, "column", "not an identifier"));
                }
                if !is_sql_column_type(column_type) {
                    return Err(invalid(index, "column_type", "not an allowed SQL type"));
                }
            }
            Operation::DropColumn { table, column } => {
                if !is_identifier(table) {
                    return Err(invalid(index, "table", "not an identifier"));
                }
                if !is_identifier(column) {
                    return Err(invalid(index, "column", "not an identifier"));
                }
            }
            Operation::SetConfig { key, value } => {
                if !is_config_key(key) {
                    return Err(invalid(index, "key", "not a config key"));
                }
                match value {
                    Value::String(s) if s.chars().count() > MAX_CONFIG_VALUE_CHARS => {
                        return Err(invalid(index, "value", "string too long"));
                    }
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                    _ => return Err(invalid(index, "value", "must be a string, number or bool")),
                }
            }
            Operation::UnsetConfig { key } => {
                if !is_config_key(key) {
                    return Err(invalid(index, "key", "not a config key"));
                }
            }
            Operation::NotifyMerchant {
                template,
                message,
                data,
                ..
            } => {
                if !is_identifier(template) {
                    return Err(invalid(index, "template", "not an identifier"));
                }
                if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
                    return Err(invalid(index, "message", "empty or too long"));
                }
                if let Some(data) = data {
                    if data.len() > 16 {
                        return Err(invalid(index, "data", "more than 16 fields"));
                    }
                    for (k, v) in data {
                        if !is_identifier(k) {
                            return Err(invalid(index, "data", "key is not an identifier"));
                        }
                        let ok = match v {
                            Value::String(s) => s.chars().count() <= MAX_CONFIG_VALUE_CHARS,
                            Value::Object(_) | Value::Array(_) => false,
                            _ => true,
                        };
                        if !ok {
                            return Err(invalid(index, "data", "values must be short scalars"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Check a patch's plan: [`validate`], and nothing that destroys what the patch did not
/// create. Restore operations may drop a column; they only ever undo the patch's own.
pub fn validate_plan(ops: &[Operation]) -> Result<(), OpError> {
    validate(ops)?;
    match ops
        .iter()
        .position(|op| matches!(op, Operation::DropColumn { .. }))
    {
        Some(index) => Err(OpError::RestoreOnly { index }),
        None => Ok(()),
    }
}

/// Check that every operation is of a kind in `declared` (a manifest's `operations`).
pub fn check_declared(ops: &[Operation], declared: &[OperationKind]) -> Result<(), OpError> {
    match ops.iter().position(|op| !declared.contains(&op.kind())) {
        Some(index) => Err(OpError::Undeclared {
            index,
            kind: ops[index].kind().as_str(),
        }),
        None => Ok(()),
    }
}

/// Apply `ops` in order to a copy of `state`. The input is never modified.
pub fn apply(state: &State, ops: &[Operation]) -> Result<State, OpError> {
    validate(ops)?;
    let mut next = state.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut next, index, op)?;
    }
    Ok(next)
}

fn apply_one(state: &mut State, index: usize, op: &Operation) -> Result<(), OpError> {
    match op {
        Operation::AddColumn {
            table,
            column,
            column_type,
        } => {
            let columns = state
                .tables
                .get_mut(table)
                .ok_or_else(|| OpError::TableMissing {
                    index,
                    table: table.clone(),
                })?;
            if columns.contains_key(column) {
                return Err(OpError::ColumnExists {
                    index,
                    table: table.clone(),
                    column: column.clone(),
                });
            }
            columns.insert(column.clone(), column_type.clone());
        }
        Operation::DropColumn { table, column } => {
            let columns = state
                .tables
                .get_mut(table)
                .ok_or_else(|| OpError::TableMissing {
                    index,
                    table: table.clone(),
                })?;
            if columns.remove(column).is_none() {
                return Err(OpError::ColumnMissing {
                    index,
                    table: table.clone(),
                    column: column.clone(),
                });
            }
        }
        Operation::SetConfig { key, value } => {
            state.config.insert(key.clone(), value.clone());
        }
        Operation::UnsetConfig { key } => {
            state.config.remove(key);
        }
        Operation::NotifyMerchant { .. } => {}
    }
    Ok(())
}

/// The operations that take the state reached by applying `ops` to `snapshot` back to
/// `snapshot` (the rollback plan). Notifications have no inverse and are skipped.
///
/// Property (tested): `apply(&apply(s, ops)?, &restore_operations(s, ops)?)? == *s`.
pub fn restore_operations(snapshot: &State, ops: &[Operation]) -> Result<Vec<Operation>, OpError> {
    apply_with_restore(snapshot, ops).map(|(_, restore)| restore)
}

/// [`apply`] and [`restore_operations`] in one pass (one copy of the state).
pub fn apply_with_restore(
    snapshot: &State,
    ops: &[Operation],
) -> Result<(State, Vec<Operation>), OpError> {
    validate(ops)?;
    let mut state = snapshot.clone();
    let mut inverse = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        match op {
            Operation::AddColumn { table, column, .. } => inverse.push(Operation::DropColumn {
                table: table.clone(),
                column: column.clone(),
            }),
            Operation::DropColumn { table, column } => {
                if let Some(column_type) = state.tables.get(table).and_then(|t| t.get(column)) {
                    inverse.push(Operation::AddColumn {
                        table: table.clone(),
                        column: column.clone(),
                        column_type: column_type.clone(),
                    });
                }
            }
            Operation::SetConfig { key, .. } | Operation::UnsetConfig { key } => {
                match state.config.get(key) {
                    Some(old) => inverse.push(Operation::SetConfig {
                        key: key.clone(),
                        value: old.clone(),
                    }),
                    None => inverse.push(Operation::UnsetConfig { key: key.clone() }),
                }
            }
            Operation::NotifyMerchant { .. } => {}
        }
        apply_one(&mut state, index, op)?;
    }
    inverse.reverse();
    Ok((state, inverse))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_types() {
        for ok in [
            "DECIMAL(10,2)",
            "VARCHAR(191)",
            "BIGINT UNSIGNED",
            "TEXT",
            "INT NOT NULL",
            "BIGINT UNSIGNED NOT NULL",
        ] {
            assert!(is_sql_column_type(ok), "{ok}");
        }
        for bad in [
            "",
            "decimal(10,2)",
            "DECIMAL(10,2); DROP TABLE x",
            "VARCHAR(",
            "VARCHAR()",
            "INT  NOT NULL",
            "BLOB",
            "TEXT DEFAULT 1",
        ] {
            assert!(!is_sql_column_type(bad), "{bad}");
        }
    }

    #[test]
    fn reported_column_types() {
        for ok in [
            "bigint(20) unsigned",
            "varchar(191)",
            "DECIMAL(10,2)",
            "enum('pending','paid')",
            "timestamp(6) with time zone",
            "double precision",
            "longblob",
            "tinyint(1) NOT NULL",
        ] {
            assert!(is_reported_column_type(ok), "{ok}");
        }
        for bad in [
            "",
            " int",
            "int ",
            "int  unsigned",
            "int; DROP TABLE x",
            "varchar(191",
            "varchar(1)(2)",
            "enum(\"a\")",
            "int)",
            "1int",
        ] {
            assert!(!is_reported_column_type(bad), "{bad}");
        }
        assert!(!is_reported_column_type(
            &"a".repeat(MAX_REPORTED_TYPE_CHARS + 1)
        ));
    }

    #[test]
    fn identifiers_and_keys() {
        assert!(is_identifier("merchant_fee"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a-b"));
        assert!(is_config_key("memory_limit"));
        assert!(is_config_key("payment.timeout_ms"));
        assert!(!is_config_key("Memory"));
        assert!(!is_config_key("a..b"));
    }
}
