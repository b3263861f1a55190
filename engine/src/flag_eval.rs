//! Feature flags: the model (six types), validation that names the field,
//! and evaluation against a precompiled [`FlagSnapshot`].
//!
//! Evaluation order (seed 002, Week 9), with the Rhai policy placed after the
//! explicit overrides:
//!
//! 1. flag disabled or archived → default (`DISABLED`);
//! 2. outside the schedule window `[start, end)` → default (`DEFAULT`);
//! 3. user override → its value (`TARGETING_MATCH`);
//! 4. tenant override → its value (`TARGETING_MATCH`);
//!    - the flag's Rhai policy, if any: `false` → default (`TARGETING_MATCH`),
//!      a variant name → that variant (`TARGETING_MATCH`), `true` → go on;
//! 5. tenant in `disabled_tenants` → default (`TARGETING_MATCH`);
//! 6. tenant in `enabled_tenants` → on (`TARGETING_MATCH`);
//! 7. user in `enabled_users` → on (`TARGETING_MATCH`);
//! 8. `percentage`: bucket ≤ percentage → on (`SPLIT`), else default (`DEFAULT`);
//! 9. variant selection (`SPLIT`) — "on" for a variant flag means this step;
//! 10. a flag with lists that matched none → default (`DEFAULT`); a flag
//!     without targeting is on for everyone (`STATIC`).
//!
//! Buckets are Unleash's: murmur3_x86_32("{group_id}:{stickiness value}", 0)
//! % 100 + 1 for rollouts; seed 86028157 and modulus the sum of the weights
//! for variants, picking the first variant whose cumulative weight reaches
//! the bucket.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::flags::{FlagPolicy, PolicyValue};
use crate::murmur3::{normalized_bucket, Murmur3};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Seed of the variant hash (Unleash's `VARIANT_NORMALIZATION_SEED`).
pub const VARIANT_SEED: u32 = 86_028_157;
/// Longest flag key, tenant, user or variant name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Most entries in one targeting list.
pub const MAX_LIST_LEN: usize = 10_000;
/// Most variants of one flag.
pub const MAX_VARIANTS: usize = 100;

/// The six flag types of the seed. The type fixes the value type (string for
/// `variant`, boolean otherwise) and which fields are required.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    Boolean,
    Percentage,
    TenantList,
    UserList,
    Schedule,
    Variant,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Percentage => "percentage",
            Self::TenantList => "tenant_list",
            Self::UserList => "user_list",
            Self::Schedule => "schedule",
            Self::Variant => "variant",
        }
    }

    pub fn value_type(self) -> ValueType {
        match self {
            Self::Variant => ValueType::String,
            _ => ValueType::Boolean,
        }
    }
}

/// The type of a flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Boolean,
    String,
}

impl ValueType {
    pub fn of(value: &Value) -> Option<ValueType> {
        match value {
            Value::Bool(_) => Some(Self::Boolean),
            Value::String(_) => Some(Self::String),
            _ => None,
        }
    }
}

/// Which context value keeps a caller in their bucket.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Stickiness {
    /// `user_id`, else `session_id`; without either only 0 % and 100 % decide.
    #[default]
    Default,
    UserId,
    TenantId,
    SessionId,
    /// A key of the context's `properties`.
    Property(String),
}

impl Stickiness {
    pub fn parse(text: &str) -> Stickiness {
        match text {
            "default" => Self::Default,
            "user_id" => Self::UserId,
            "tenant_id" => Self::TenantId,
            "session_id" => Self::SessionId,
            other => Self::Property(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Default => "default",
            Self::UserId => "user_id",
            Self::TenantId => "tenant_id",
            Self::SessionId => "session_id",
            Self::Property(name) => name,
        }
    }
}

impl Serialize for Stickiness {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stickiness {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Stickiness::parse(&text))
    }
}

/// A time window `[start, end)`; either end may be open.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
}

impl Schedule {
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.start.is_none_or(|start| now >= start) && self.end.is_none_or(|end| now < end)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    /// Any JSON the caller receives with the variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// Who a flag is for. A `platform` flag (the default) is the platform's own business: it is
/// evaluated for Ops, Sira and the platform's services. A `plugins` flag also reaches the
/// merchants' plugins: in every heartbeat reply, and through a merchant key's evaluations.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    #[default]
    Platform,
    Plugins,
}

/// A flag as files, the API and the store hold it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagDefinition {
    pub key: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub audience: Audience,
    /// Off (kill switch, or not launched): every caller gets the default.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub archived: bool,
    /// What a caller gets when the flag is off or targets someone else.
    /// Boolean flags default to `false`; variant flags must name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// 0–100: share of callers (by bucket) the flag is on for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "is_default_stickiness")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub stickiness: Stickiness,
    /// Hash group of the rollout; the key when absent. Flags sharing a group
    /// roll out to the same callers first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// Stickiness of the variant split; the rollout's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub variant_stickiness: Option<Stickiness>,
    /// Hash group of the variant split; the key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_group_id: Option<String>,
    /// Name of a Rhai flag policy (`rules/flags/*.rhai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_default_stickiness(stickiness: &Stickiness) -> bool {
    *stickiness == Stickiness::Default
}

/// A validation failure naming the field (`variants[1].weight` …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A flag key: 1–200 characters of letters, digits, `.`, `_`, `-`.
pub fn check_key(field: &str, key: &str) -> Result<(), FieldError> {
    let valid = !key.is_empty()
        && key.chars().count() <= MAX_NAME_CHARS
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 1–{MAX_NAME_CHARS} letters, digits, '.', '_' or '-'"),
        ))
    }
}

fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be 1–{MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_list(field: &str, list: &[String]) -> Result<(), FieldError> {
    if list.len() > MAX_LIST_LEN {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    for (i, entry) in list.iter().enumerate() {
        check_name(&format!("{field}[{i}]"), entry)?;
    }
    Ok(())
}

impl FlagDefinition {
    /// The value type of this flag (string for variant flags).
    pub fn value_type(&self) -> ValueType {
        self.flag_type.value_type()
    }

    /// The default value, filled in for boolean flags.
    pub fn default_value(&self) -> Value {
        self.default_value.clone().unwrap_or(Value::Bool(false))
    }

    /// Checks everything a snapshot relies on; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_key("key", &self.key)?;
        if self.description.chars().count() > 2_000 {
            return Err(FieldError::new("description", "at most 2000 characters"));
        }
        let value_type = self.value_type();
        match (&self.default_value, value_type) {
            (None, ValueType::String) => {
                return Err(FieldError::new(
                    "default_value",
                    "a variant flag needs a default_value (a string)",
                ))
            }
            (Some(value), expected) if ValueType::of(value) != Some(expected) => {
                return Err(FieldError::new(
                    "default_value",
                    format!(
                        "must be a {} for a {} flag",
                        type_word(expected),
                        self.flag_type.as_str()
                    ),
                ))
            }
            _ => {}
        }
        if let Some(percentage) = self.percentage {
            if percentage > 100 {
                return Err(FieldError::new("percentage", "must be within 0..=100"));
            }
        }
        if let Stickiness::Property(name) = &self.stickiness {
            check_name("stickiness", name)?;
        }
        if let Some(Stickiness::Property(name)) = &self.variant_stickiness {
            check_name("variant_stickiness", name)?;
        }
        if let Some(group) = &self.group_id {
            check_name("group_id", group)?;
        }
        if let Some(group) = &self.variant_group_id {
            check_name("variant_group_id", group)?;
        }
        if let Some(Schedule {
            start: Some(start),
            end: Some(end),
        }) = &self.schedule
        {
            if end <= start {
                return Err(FieldError::new("schedule.end", "must be after start"));
            }
        }
        check_list("enabled_tenants", &self.enabled_tenants)?;
        check_list("disabled_tenants", &self.disabled_tenants)?;
        check_list("enabled_users", &self.enabled_users)?;
        if self.variants.len() > MAX_VARIANTS {
            return Err(FieldError::new(
                "variants",
                format!("at most {MAX_VARIANTS} variants"),
            ));
        }
        let mut names = HashSet::new();
        for (i, variant) in self.variants.iter().enumerate() {
            check_name(&format!("variants[{i}].name"), &variant.name)?;
            if !names.insert(variant.name.as_str()) {
                return Err(FieldError::new(
                    format!("variants[{i}].name"),
                    format!("variant {:?} is declared twice", variant.name),
                ));
            }
            if variant.weight > 1_000_000 {
                return Err(FieldError::new(
                    format!("variants[{i}].weight"),
                    "must be within 0..=1000000",
                ));
            }
        }
        if !self.variants.is_empty() && self.flag_type != FlagType::Variant {
            return Err(FieldError::new(
                "variants",
                format!(
                    "only variant flags have variants, not {}",
                    self.flag_type.as_str()
                ),
            ));
        }
        if let Some(policy) = &self.policy {
            check_name("policy", policy)?;
        }
        // What each type is about must be there.
        match self.flag_type {
            FlagType::Boolean => {}
            FlagType::Percentage if self.percentage.is_none() => {
                return Err(FieldError::new(
                    "percentage",
                    "a percentage flag needs a percentage (0–100)",
                ))
            }
            FlagType::TenantList
                if self.enabled_tenants.is_empty() && self.disabled_tenants.is_empty() =>
            {
                return Err(FieldError::new(
                    "enabled_tenants",
                    "a tenant_list flag needs enabled_tenants or disabled_tenants",
                ))
            }
            FlagType::UserList if self.enabled_users.is_empty() => {
                return Err(FieldError::new(
                    "enabled_users",
                    "a user_list flag needs enabled_users",
                ))
            }
            FlagType::Schedule if self.schedule.is_none() => {
                return Err(FieldError::new(
                    "schedule",
                    "a schedule flag needs a schedule {start, end}",
                ))
            }
            FlagType::Variant if self.variants.iter().all(|variant| variant.weight == 0) => {
                return Err(FieldError::new(
                    "variants",
                    "a variant flag needs at least one variant with a weight above 0",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks an override's value against this flag: the flag's value type,
    /// and for a variant flag the name of one of its variants.
    pub fn check_override_value(&self, field: &str, value: &Value) -> Result<(), FieldError> {
        let expected = self.value_type();
        if ValueType::of(value) != Some(expected) {
            return Err(FieldError::new(
                field,
                format!(
                    "must be a {} for a {} flag",
                    type_word(expected),
                    self.flag_type.as_str()
                ),
            ));
        }
        if let Value::String(name) = value {
            if !self.variants.iter().any(|variant| &variant.name == name) {
                return Err(FieldError::new(
                    field,
                    format!("{name:?} is not a variant of flag {}", self.key),
                ));
            }
        }
        Ok(())
    }
}

fn type_word(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Boolean => "boolean",
        ValueType::String => "string",
    }
}

/// Whom an override applies to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideScope {
    Tenant,
    User,
}

impl OverrideScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::User => "user",
        }
    }
}

/// A per-tenant or per-user value of one flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagOverride {
    pub flag_key: String,
    pub scope: OverrideScope,
    /// The tenant or user id.
    pub target: String,
    pub value: Value,
}

/// Who is asking: the tenant (a merchant), the user, the session, and any
/// other properties (plugin version, cms …) policies and custom stickiness read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

impl EvalContext {
    /// The context as a policy sees it: the properties, plus `tenant_id`,
    /// `user_id` and `session_id` when set.
    pub fn to_policy_value(&self) -> Value {
        let mut map = self.properties.clone();
        for (name, value) in [
            ("tenant_id", &self.tenant_id),
            ("user_id", &self.user_id),
            ("session_id", &self.session_id),
        ] {
            if let Some(value) = value {
                map.insert(name.to_owned(), Value::String(value.clone()));
            }
        }
        Value::Object(map)
    }
}

/// OpenFeature's resolution reasons.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    Default,
    TargetingMatch,
    Split,
    Disabled,
    Error,
}

/// OpenFeature's error codes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    TypeMismatch,
    InvalidContext,
    General,
}

/// A flag's value as evaluated; borrows from the snapshot.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FlagValue<'a> {
    Bool(bool),
    Str(&'a str),
}

impl FlagValue<'_> {
    pub fn value_type(self) -> ValueType {
        match self {
            Self::Bool(_) => ValueType::Boolean,
            Self::Str(_) => ValueType::String,
        }
    }

    pub fn to_json(self) -> Value {
        match self {
            Self::Bool(on) => Value::Bool(on),
            Self::Str(text) => Value::String(text.to_owned()),
        }
    }
}

/// One evaluation, OpenFeature-shaped. `value` is None only with an error
/// (the caller's own default then applies).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Evaluation<'a> {
    pub value: Option<FlagValue<'a>>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    /// The chosen variant's payload, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a Value>,
}

impl<'a> Evaluation<'a> {
    fn error(code: ErrorCode) -> Self {
        Self {
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            payload: None,
        }
    }

    /// OpenFeature's typed resolution: a value of another type than the
    /// caller expects becomes `TYPE_MISMATCH`.
    pub fn expecting(self, expected: ValueType) -> Self {
        match self.value {
            Some(value) if value.value_type() != expected => Self::error(ErrorCode::TypeMismatch),
            _ => self,
        }
    }

    /// True when the flag is on for this caller: `true`, or any variant.
    pub fn is_on(&self) -> bool {
        match self.value {
            Some(FlagValue::Bool(on)) => on,
            Some(FlagValue::Str(_)) => self.variant.is_some(),
            None => false,
        }
    }
}

/// The stored value of an override, in the snapshot's form.
#[derive(Clone, Debug)]
enum OwnedValue {
    Bool(bool),
    /// Index into the flag's variants.
    Variant(usize),
    Str(Box<str>),
}

enum PolicyLink {
    None,
    Resolved(Box<FlagPolicy>),
    /// Named by the flag but absent from the rule set in force.
    Missing,
}

struct CompiledFlag {
    definition: FlagDefinition,
    default: OwnedValue,
    enabled_tenants: FastSet<Box<str>>,
    disabled_tenants: FastSet<Box<str>>,
    enabled_users: FastSet<Box<str>>,
    user_overrides: FastMap<Box<str>, OwnedValue>,
    tenant_overrides: FastMap<Box<str>, OwnedValue>,
    /// murmur3 states after `"{group_id}:"` (seed 0) and
    /// `"{variant_group_id}:"` (the variant seed): a bucket then hashes only
    /// the caller's value.
    rollout_prefix: Murmur3,
    variant_prefix: Murmur3,
    variant_stickiness: Stickiness,
    total_weight: u32,
    has_lists: bool,
    policy: PolicyLink,
}

/// A caller's stickiness value without allocating: a borrowed string, or a
/// number or boolean written into a stack buffer.
struct StickyValue {
    buffer: [u8; 48],
    len: usize,
}

impl std::fmt::Write for StickyValue {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        if end > self.buffer.len() {
            return Err(std::fmt::Error);
        }
        self.buffer[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

enum Sticky<'c> {
    Missing,
    Text(&'c [u8]),
    Formatted(StickyValue),
    Invalid,
}

impl Sticky<'_> {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Text(bytes) => Some(bytes),
            Self::Formatted(value) => Some(&value.buffer[..value.len]),
            _ => None,
        }
    }
}

fn sticky_value<'c>(stickiness: &Stickiness, context: &'c EvalContext) -> Sticky<'c> {
    let text = |value: &'c Option<String>| match value {
        Some(text) => Sticky::Text(text.as_bytes()),
        None => Sticky::Missing,
    };
    match stickiness {
        Stickiness::Default => match (&context.user_id, &context.session_id) {
            (Some(user), _) => Sticky::Text(user.as_bytes()),
            (None, Some(session)) => Sticky::Text(session.as_bytes()),
            (None, None) => Sticky::Missing,
        },
        Stickiness::UserId => text(&context.user_id),
        Stickiness::TenantId => text(&context.tenant_id),
        Stickiness::SessionId => text(&context.session_id),
        Stickiness::Property(name) => match context.properties.get(name) {
            None | Some(Value::Null) => Sticky::Missing,
            Some(Value::String(text)) => Sticky::Text(text.as_bytes()),
            Some(Value::Number(number)) => {
                let mut value = StickyValue {
                    buffer: [0; 48],
                    len: 0,
                };
                match write!(value, "{number}") {
                    Ok(()) => Sticky::Formatted(value),
                    Err(_) => Sticky::Invalid,
                }
            }
            Some(Value::Bool(on)) => Sticky::Text(if *on { b"true" } else { b"false" }),
            Some(_) => Sticky::Invalid,
        },
    }
}

fn group_prefix(group_id: &str, seed: u32) -> Murmur3 {
    let mut prefix = Murmur3::new(seed);
    prefix.write(group_id.as_bytes());
    prefix.write(b":");
    prefix
}

/// Unleash's bucket, 1..=modulus, continuing a group's prefix state.
#[inline]
fn bucket(mut prefix: Murmur3, value: &[u8], modulus: u32) -> u32 {
    prefix.write(value);
    prefix.finish() % modulus + 1
}

/// Rollout bucket of a stickiness value, 1..=100 (Unleash's
/// `normalizedValue` with seed 0).
pub fn rollout_bucket(group_id: &str, value: &str) -> u32 {
    normalized_bucket(group_id, value.as_bytes(), 100, 0)
}

/// Variant bucket of a stickiness value, 1..=total_weight.
pub fn variant_bucket(group_id: &str, value: &str, total_weight: u32) -> u32 {
    normalized_bucket(group_id, value.as_bytes(), total_weight, VARIANT_SEED)
}

impl CompiledFlag {
    fn new(
        definition: FlagDefinition,
        policy: Option<&FlagPolicy>,
    ) -> Result<CompiledFlag, FieldError> {
        definition.validate()?;
        let default = match definition.default_value() {
            Value::Bool(on) => OwnedValue::Bool(on),
            Value::String(text) => match definition.variants.iter().position(|v| v.name == text) {
                Some(index) => OwnedValue::Variant(index),
                None => OwnedValue::Str(text.into()),
            },
            // validate() allows only booleans and strings.
            _ => OwnedValue::Bool(false),
        };
        let set = |list: &[String]| list.iter().map(|entry| Box::from(entry.as_str())).collect();
        let policy = match (&definition.policy, policy) {
            (None, _) => PolicyLink::None,
            (Some(_), Some(policy)) => PolicyLink::Resolved(Box::new(policy.clone())),
            (Some(_), None) => PolicyLink::Missing,
        };
        Ok(CompiledFlag {
            enabled_tenants: set(&definition.enabled_tenants),
            disabled_tenants: set(&definition.disabled_tenants),
            enabled_users: set(&definition.enabled_users),
            user_overrides: FastMap::default(),
            tenant_overrides: FastMap::default(),
            rollout_prefix: group_prefix(
                definition.group_id.as_deref().unwrap_or(&definition.key),
                0,
            ),
            variant_prefix: group_prefix(
                definition
                    .variant_group_id
                    .as_deref()
                    .unwrap_or(&definition.key),
                VARIANT_SEED,
            ),
            variant_stickiness: definition
                .variant_stickiness
                .clone()
                .unwrap_or_else(|| definition.stickiness.clone()),
            total_weight: definition.variants.iter().map(|v| v.weight).sum(),
            has_lists: !definition.enabled_tenants.is_empty()
                || !definition.enabled_users.is_empty(),
            default,
            policy,
            definition,
        })
    }

    fn owned(&self, value: &Value) -> Option<OwnedValue> {
        match value {
            Value::Bool(on) if self.definition.value_type() == ValueType::Boolean => {
                Some(OwnedValue::Bool(*on))
            }
            Value::String(name) if self.definition.value_type() == ValueType::String => self
                .definition
                .variants
                .iter()
                .position(|variant| &variant.name == name)
                .map(OwnedValue::Variant),
            _ => None,
        }
    }

    fn value<'a>(&'a self, value: &'a OwnedValue, reason: Reason) -> Evaluation<'a> {
        match value {
            OwnedValue::Bool(on) => Evaluation {
                value: Some(FlagValue::Bool(*on)),
                variant: None,
                reason,
                error_code: None,
                payload: None,
            },
            OwnedValue::Variant(index) => self.variant(*index, reason),
            OwnedValue::Str(text) => Evaluation {
                value: Some(FlagValue::Str(text)),
                variant: None,
                reason,
                error_code: None,
                payload: None,
            },
        }
    }

    fn variant(&self, index: usize, reason: Reason) -> Evaluation<'_> {
        let variant = &self.definition.variants[index];
        Evaluation {
            value: Some(FlagValue::Str(&variant.name)),
            variant: Some(&variant.name),
            reason,
            error_code: None,
            payload: variant.payload.as_ref(),
        }
    }

    fn default(&self, reason: Reason) -> Evaluation<'_> {
        self.value(&self.default, reason)
    }

    /// "On": `true`, or for a variant flag the variant split (step 9).
    fn on<'a>(&'a self, context: &EvalContext, reason: Reason) -> Evaluation<'a> {
        if self.definition.flag_type != FlagType::Variant {
            return Evaluation {
                value: Some(FlagValue::Bool(true)),
                variant: None,
                reason,
                error_code: None,
                payload: None,
            };
        }
        let target = match sticky_value(&self.variant_stickiness, context) {
            Sticky::Invalid => return Evaluation::error(ErrorCode::InvalidContext),
            // Unleash picks at random without a stickiness value; a pure
            // engine cannot, so every such caller gets the first variant.
            Sticky::Missing => 1,
            sticky => bucket(
                self.variant_prefix,
                sticky.bytes().unwrap_or_default(),
                self.total_weight,
            ),
        };
        let mut cumulative = 0;
        for (index, variant) in self.definition.variants.iter().enumerate() {
            cumulative += variant.weight;
            if variant.weight > 0 && cumulative >= target {
                let reason = if reason == Reason::Static {
                    Reason::Split
                } else {
                    reason
                };
                return self.variant(index, reason);
            }
        }
        // Unreachable for validated flags (total weight > 0), kept total.
        self.default(Reason::Default)
    }

    fn evaluate<'a>(
        &'a self,
        context: &EvalContext,
        now: DateTime<Utc>,
        policy_deadline: Option<Instant>,
    ) -> Evaluation<'a> {
        let definition = &self.definition;
        // 1. Off or archived.
        if !definition.enabled || definition.archived {
            return self.default(Reason::Disabled);
        }
        // 2. Outside the schedule window.
        if let Some(schedule) = &definition.schedule {
            if !schedule.contains(now) {
                return self.default(Reason::Default);
            }
        }
        // 3. User override, 4. tenant override.
        if let Some(user) = &context.user_id {
            if let Some(value) = self.user_overrides.get(user.as_str()) {
                return self.value(value, Reason::TargetingMatch);
            }
        }
        if let Some(tenant) = &context.tenant_id {
            if let Some(value) = self.tenant_overrides.get(tenant.as_str()) {
                return self.value(value, Reason::TargetingMatch);
            }
        }
        // The Rhai policy, after the explicit overrides Ops set.
        match &self.policy {
            PolicyLink::None => {}
            PolicyLink::Missing => return Evaluation::error(ErrorCode::General),
            PolicyLink::Resolved(policy) => {
                match policy.evaluate(&context.to_policy_value(), policy_deadline) {
                    Ok(PolicyValue::Bool(false)) => return self.default(Reason::TargetingMatch),
                    Ok(PolicyValue::Bool(true)) => {}
                    Ok(PolicyValue::Variant(name)) => {
                        return match definition.variants.iter().position(|v| v.name == name) {
                            Some(index) => self.variant(index, Reason::TargetingMatch),
                            None => Evaluation::error(ErrorCode::General),
                        }
                    }
                    Err(_) => return Evaluation::error(ErrorCode::General),
                }
            }
        }
        // 5. Disabled tenants, 6. enabled tenants, 7. enabled users.
        if let Some(tenant) = &context.tenant_id {
            if self.disabled_tenants.contains(tenant.as_str()) {
                return self.default(Reason::TargetingMatch);
            }
            if self.enabled_tenants.contains(tenant.as_str()) {
                return self.on(context, Reason::TargetingMatch);
            }
        }
        if let Some(user) = &context.user_id {
            if self.enabled_users.contains(user.as_str()) {
                return self.on(context, Reason::TargetingMatch);
            }
        }
        // 8. Percentage rollout.
        if let Some(percentage) = definition.percentage {
            let in_rollout = match sticky_value(&definition.stickiness, context) {
                Sticky::Invalid => return Evaluation::error(ErrorCode::InvalidContext),
                // Without a value only "everyone" includes the caller, and
                // only under default stickiness (as Unleash).
                Sticky::Missing => {
                    percentage == 100 && definition.stickiness == Stickiness::Default
                }
                sticky => {
                    percentage > 0
                        && bucket(self.rollout_prefix, sticky.bytes().unwrap_or_default(), 100)
                            <= percentage
                }
            };
            return if in_rollout {
                self.on(context, Reason::Split)
            } else {
                self.default(Reason::Default)
            };
        }
        // 10. Lists that matched no one; 9. variants; no targeting: on.
        if self.has_lists {
            return self.default(Reason::Default);
        }
        let reason = if definition.schedule.is_some() {
            Reason::TargetingMatch
        } else {
            Reason::Static
        };
        self.on(context, reason)
    }
}

/// Every flag in force with its overrides, compiled for evaluation: a key
/// lookup, at most four set lookups and one murmur3 per evaluation, no
/// allocation unless a Rhai policy runs. Immutable; replace it whole.
#[derive(Default)]
pub struct FlagSnapshot {
    flags: FastMap<Box<str>, CompiledFlag>,
    /// Keys in order, for listing.
    keys: Vec<Box<str>>,
}

/// A flag the snapshot refused, with why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flag {key}: {error}")]
pub struct SnapshotError {
    pub key: String,
    pub error: FieldError,
}

impl FlagSnapshot {
    /// Compiles `definitions` (later ones win on a repeated key) and their
    /// `overrides`; `policy` resolves a flag's policy name. A definition that
    /// does not validate, or an override of an unknown flag or with a value
    /// of the wrong type, is left out and reported.
    pub fn build<'p>(
        definitions: impl IntoIterator<Item = FlagDefinition>,
        overrides: impl IntoIterator<Item = FlagOverride>,
        policy: impl Fn(&str) -> Option<&'p FlagPolicy>,
    ) -> (FlagSnapshot, Vec<SnapshotError>) {
        let mut errors = Vec::new();
        let mut flags: FastMap<Box<str>, CompiledFlag> = FastMap::default();
        for definition in definitions {
            let key = definition.key.clone();
            let linked = definition.policy.as_deref().and_then(&policy);
            match CompiledFlag::new(definition, linked) {
                Ok(flag) => {
                    flags.insert(key.into(), flag);
                }
                Err(error) => errors.push(SnapshotError { key, error }),
            }
        }
        for entry in overrides {
            let Some(flag) = flags.get_mut(entry.flag_key.as_str()) else {
                errors.push(SnapshotError {
                    key: entry.flag_key,
                    error: FieldError::new("flag_key", "override of an unknown flag"),
                });
                continue;
            };
            let Some(value) = flag.owned(&entry.value) else {
                errors.push(SnapshotError {
                    key: entry.flag_key,
                    error: FieldError::new("value", "override value does not fit the flag"),
                });
                continue;
            };
            let map = match entry.scope {
                OverrideScope::User => &mut flag.user_overrides,
                OverrideScope::Tenant => &mut flag.tenant_overrides,
            };
            map.insert(entry.target.into(), value);
        }
        let mut keys: Vec<Box<str>> = flags.keys().cloned().collect();
        keys.sort();
        (FlagSnapshot { flags, keys }, errors)
    }

    /// Evaluates `key` for `context` at `now`.
    pub fn evaluate<'a>(
        &'a self,
        key: &str,
        context: &EvalContext,
        now: DateTime<Utc>,
    ) -> Evaluation<'a> {
        self.evaluate_within(key, context, now, None)
    }

    /// As [`FlagSnapshot::evaluate`], with the flag's policy (if any) stopped at
    /// `policy_deadline`: past it, the flag answers its default with reason `ERROR`, as for
    /// a policy that fails. A caller evaluating many flags for one request passes the same
    /// deadline to each, so the request's policies together take no longer than that.
    pub fn evaluate_within<'a>(
        &'a self,
        key: &str,
        context: &EvalContext,
        now: DateTime<Utc>,
        policy_deadline: Option<Instant>,
    ) -> Evaluation<'a> {
        match self.flags.get(key) {
            Some(flag) => flag.evaluate(context, now, policy_deadline),
            None => Evaluation::error(ErrorCode::FlagNotFound),
        }
    }

    /// Whether evaluating `key` may run a Rhai policy (work to keep off an async runtime).
    pub fn runs_policy(&self, key: &str) -> bool {
        self.flags
            .get(key)
            .is_some_and(|flag| matches!(flag.policy, PolicyLink::Resolved(_)))
    }

    /// Evaluates `key` as a merchant's plugin may: a flag that is not for the plugins'
    /// audience is answered as one that does not exist, so a merchant learns nothing of it.
    pub fn evaluate_for_plugins<'a>(
        &'a self,
        key: &str,
        context: &EvalContext,
        now: DateTime<Utc>,
        policy_deadline: Option<Instant>,
    ) -> Evaluation<'a> {
        match self.definition(key) {
            Some(definition) if definition.audience == Audience::Plugins => {
                self.evaluate_within(key, context, now, policy_deadline)
            }
            _ => Evaluation::error(ErrorCode::FlagNotFound),
        }
    }

    pub fn definition(&self, key: &str) -> Option<&FlagDefinition> {
        self.flags.get(key).map(|flag| &flag.definition)
    }

    /// Every flag, by key.
    pub fn definitions(&self) -> impl Iterator<Item = &FlagDefinition> {
        self.keys.iter().map(|key| &self.flags[key].definition)
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}

/// A problem in a flag definitions file, naming the file and the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct FlagFileError {
    pub file: String,
    /// `flags[3].percentage`, or empty for a whole-file problem.
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagFile {
    flags: Vec<Value>,
}

/// Parses and validates one definitions file: `{"flags": [definition, …]}`.
/// Every problem is reported, each naming `flags[i].field`.
pub fn parse_flag_file(file: &str, text: &str) -> Result<Vec<FlagDefinition>, Vec<FlagFileError>> {
    let error = |field: String, message: String| FlagFileError {
        file: file.to_owned(),
        field,
        message,
    };
    let parsed: FlagFile = serde_json::from_str(text).map_err(|e| {
        vec![error(
            String::new(),
            format!("not a flag file ({{\"flags\": [...]}}): {e}"),
        )]
    })?;
    let mut errors = Vec::new();
    let mut definitions = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in parsed.flags.into_iter().enumerate() {
        let definition = match serde_path_to_error::deserialize::<_, FlagDefinition>(raw) {
            Ok(definition) => definition,
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." {
                    format!("flags[{i}]")
                } else {
                    format!("flags[{i}].{path}")
                };
                errors.push(error(field, e.into_inner().to_string()));
                continue;
            }
        };
        if let Err(e) = definition.validate() {
            errors.push(error(format!("flags[{i}].{}", e.field), e.message));
            continue;
        }
        if !seen.insert(definition.key.clone()) {
            errors.push(error(
                format!("flags[{i}].key"),
                format!("flag {} is defined twice", definition.key),
            ));
            continue;
        }
        definitions.push(definition);
    }
    if errors.is_empty() {
        Ok(definitions)
    } else {
        Err(errors)
    }
}

/// Loads every definitions file of a `rules/` tree (`flags/*.json`), given
/// as `(relative path, text)` pairs, into `(file, definition)` pairs. A key
/// defined in two files is an error.
pub fn load_flag_files<I, N, S>(
    files: I,
) -> Result<Vec<(String, FlagDefinition)>, Vec<FlagFileError>>
where
    I: IntoIterator<Item = (N, S)>,
    N: AsRef<str>,
    S: AsRef<str>,
{
    let mut errors = Vec::new();
    let mut all: Vec<(String, FlagDefinition)> = Vec::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    for (name, text) in files {
        let name = name.as_ref();
        if !is_flag_file(name) {
            continue;
        }
        match parse_flag_file(name, text.as_ref()) {
            Ok(definitions) => {
                for definition in definitions {
                    if let Some(first) = origin.get(&definition.key) {
                        errors.push(FlagFileError {
                            file: name.to_owned(),
                            field: "key".to_owned(),
                            message: format!(
                                "flag {} is already defined in {first}",
                                definition.key
                            ),
                        });
                    } else {
                        origin.insert(definition.key.clone(), name.to_owned());
                        all.push((name.to_owned(), definition));
                    }
                }
            }
            Err(file_errors) => errors.extend(file_errors),
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(errors)
    }
}

/// `flags/*.json` (at any depth): a flag definitions file.
pub fn is_flag_file(path: &str) -> bool {
    let path = path.replace('\\', "/");
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or("");
    name.ends_with(".json") && parts.next() == Some("flags")
}
