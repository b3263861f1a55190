//! Typed errors. Every error that comes from a file names the file, the line and
//! the column (1-based; `0:0` when the position is unknown, e.g. a whole-file
//! problem or data that came from JSON rather than a Rhai file).

use serde::Serialize;
use thiserror::Error;

/// A problem found while loading one file of a rule set.
#[derive(Debug, Clone, PartialEq, Error, Serialize)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub kind: LoadErrorKind,
}

/// What went wrong, in a form a caller can act on.
#[derive(Debug, Clone, PartialEq, Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadErrorKind {
    /// The file is not under `healing/`, `interop/` or `flags/`, or is not `.rhai`.
    #[error("not a rule file: expected healing/*.rhai, interop/*.rhai or flags/*.rhai")]
    UnknownFileKind,
    /// The file is larger than [`crate::Limits::max_source_bytes`].
    #[error("file is {bytes} bytes, over the limit of {limit_bytes} bytes")]
    FileTooLarge { bytes: usize, limit_bytes: usize },
    /// Rhai could not parse the file.
    #[error("syntax error: {message}")]
    Syntax { message: String },
    /// Running the file's top level failed (including a limit being hit).
    #[error("{0}")]
    Script(ScriptErrorKind),
    /// The file does not declare its metadata variable (`let rule = #{...};` …).
    #[error("missing `let {variable} = #{{ ... }};`")]
    MissingDeclaration { variable: String },
    #[error("missing required field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: String,
        found: String,
    },
    #[error("unknown field `{field}` (known: {known})")]
    UnknownField { field: String, known: String },
    #[error("field `{field}`: invalid regex: {message}")]
    InvalidRegex { field: String, message: String },
    #[error("field `{field}`: regex compiles to more than {limit_bytes} bytes")]
    RegexTooLarge { field: String, limit_bytes: usize },
    #[error("unknown platform `{platform}` (known: woocommerce, prestashop, shopify, magento, generic, all)")]
    UnknownPlatform { platform: String },
    #[error("field `{field}` is {value}, must be within 0..=100")]
    ConfidenceOutOfRange { field: String, value: f64 },
    #[error("unknown normalized event type `{event_type}` (known: {known})")]
    UnknownEventType { event_type: String, known: String },
    #[error("unknown currency `{code}` (expected an ISO 4217 code)")]
    UnknownCurrency { code: String },
    #[error("field `{field}`: {message}")]
    InvalidValue { field: String, message: String },
    /// A function the file defines has the wrong number of parameters.
    #[error("function `{function}` must take {expected} parameter(s), found {found}")]
    WrongArity {
        function: String,
        expected: usize,
        found: usize,
    },
    #[error("missing required function `{function}`")]
    MissingFunction { function: String },
    /// Two files (or two entries) declare the same name / key.
    #[error("duplicate {what} `{name}`, first declared in {first_file}")]
    Duplicate {
        what: String,
        name: String,
        first_file: String,
    },
}

/// Why a script stopped. Limits are separate variants so callers (and tests)
/// can tell a runaway script from an ordinary runtime error.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ScriptErrorKind {
    #[error("script exceeded the operations limit ({limit} operations)")]
    TooManyOperations { limit: u64 },
    #[error("script exceeded the call depth limit ({limit} levels): unbounded recursion?")]
    CallDepth { limit: usize },
    #[error("script exceeded the wall-clock deadline")]
    Deadline,
    #[error("script exceeded a size limit: {what}")]
    DataTooLarge { what: String },
    #[error("expression nesting exceeds the limit")]
    ExprTooDeep,
    #[error("script error: {message}")]
    Runtime { message: String },
    #[error("script returned {found}, expected {expected}")]
    WrongReturnType { expected: String, found: String },
}

/// A script failure at run time (after loading), with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct ScriptError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub kind: ScriptErrorKind,
}

/// Why an interop event could not be normalized.
#[derive(Debug, Clone, PartialEq, Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NormalizeError {
    #[error("no mapping for platform `{platform}` and event `{event_type}`")]
    NoMapping {
        platform: String,
        event_type: String,
    },
    #[error("payload must be a JSON object")]
    PayloadNotObject,
    #[error("mapping `{mapping}`: payload has no field `{path}`")]
    MissingField { mapping: String, path: String },
    #[error("mapping `{mapping}`: field `{field}` is not an amount: {reason}")]
    InvalidAmount {
        mapping: String,
        field: String,
        reason: String,
    },
    #[error("mapping `{mapping}`: no currency for amount field `{field}` (map a `currency` field or set `default_currency`)")]
    MissingCurrency { mapping: String, field: String },
    #[error("mapping `{mapping}`: unknown currency `{code}`")]
    UnknownCurrency { mapping: String, code: String },
    #[error("mapping `{mapping}`: transform failed: {error}")]
    Transform { mapping: String, error: ScriptError },
}

impl NormalizeError {
    /// Stable snake_case code, as used by `expect_error` in case files and in API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoMapping { .. } => "no_mapping",
            Self::PayloadNotObject => "payload_not_object",
            Self::MissingField { .. } => "missing_field",
            Self::InvalidAmount { .. } => "invalid_amount",
            Self::MissingCurrency { .. } => "missing_currency",
            Self::UnknownCurrency { .. } => "unknown_currency",
            Self::Transform { .. } => "transform",
        }
    }
}
