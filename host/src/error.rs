//! Typed errors. Every refusal of a bundle is a [`VerifyError`] variant; every way a load or
//! a run can fail is a [`RunError`] variant; the CLI helpers add IO around both in
//! [`ToolError`].

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::ops::OpError;

/// Why a bundle was refused. Nothing is compiled or run before these checks pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("bundle is not readable: {0}")]
    Malformed(String),
    #[error("bundle is {size} bytes, more than the {max} allowed")]
    BundleTooLarge { size: usize, max: usize },
    #[error("bundle carries no signature")]
    NoSignature,
    #[error("no signature is by a trusted key (bundle key ids: {key_ids:?})")]
    UnknownKey { key_ids: Vec<String> },
    #[error("signature by key {key_id} does not verify")]
    SignatureInvalid { key_id: String },
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest ABI version {found}, this host runs {supported}")]
    UnsupportedAbi { found: u32, supported: u32 },
    #[error("module is {actual} bytes, the manifest says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("module SHA-256 is {actual}, the manifest says {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("bundle expired at {expires_at} (now {now})")]
    Expired {
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("{name} {offered} is older than the accepted {accepted}")]
    Downgrade {
        name: String,
        offered: semver::Version,
        accepted: semver::Version,
    },
    #[error("{name} {version} was already accepted (replay)")]
    Replay {
        name: String,
        version: semver::Version,
    },
}

/// Why a verified patch could not be loaded or why a run failed. A failed run changes
/// nothing: the snapshot is only ever read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    // --- load ---
    #[error("module is not valid WebAssembly: {0}")]
    Compile(String),
    #[error("module imports `{module}::{name}`, which the host does not provide")]
    ForbiddenImport { module: String, name: String },
    #[error("module does not export `{name}`")]
    MissingExport { name: String },
    #[error("export `{name}` has the wrong type: expected {expected}")]
    ExportType { name: String, expected: String },
    #[error("module is {size} bytes, more than the {max} allowed")]
    ModuleTooLarge { size: usize, max: usize },

    // --- before the run ---
    #[error("parameter `{param}`: {reason}")]
    InvalidParams { param: String, reason: String },
    #[error("input is {size} bytes, more than the {max} allowed")]
    InputTooLarge { size: usize, max: usize },
    #[error("no sandbox slot free (all {slots} pooled instances busy)")]
    Busy { slots: u32 },
    #[error("instantiation failed: {0}")]
    Instantiate(String),

    // --- the run ---
    #[error("fuel exhausted ({fuel} units)")]
    FuelExhausted { fuel: u64 },
    #[error("wall-clock deadline of {deadline_ms} ms exceeded")]
    DeadlineExceeded { deadline_ms: u64 },
    #[error("memory limit of {max_memory_bytes} bytes reached")]
    MemoryLimit { max_memory_bytes: u64 },
    #[error("table limit of {max_table_elements} elements reached")]
    TableLimit { max_table_elements: u64 },
    #[error("stack overflow")]
    StackOverflow,
    #[error("trap: {0}")]
    Trap(String),

    // --- the output ---
    #[error("patch broke the ABI: {0}")]
    AbiViolation(String),
    #[error("output is {size} bytes, more than the {max} allowed")]
    OutputTooLarge { size: u64, max: u64 },
    #[error("output is not UTF-8 (valid up to byte {valid_up_to})")]
    OutputNotUtf8 { valid_up_to: usize },
    #[error("output is not JSON: {0}")]
    OutputNotJson(String),
    #[error("output is not a valid result: {0}")]
    InvalidOutput(String),
    #[error("output operations are refused: {0}")]
    InvalidOperation(#[from] OpError),
    #[error("returned state is not the snapshot with the operations applied")]
    StateMismatch,
    #[error("patch refused to run: {0}")]
    PatchRefused(String),
}

/// What kind of [`RunError`] a run ended with, without its details: the stable name that
/// logs, metrics and stored records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunErrorKind {
    Compile,
    ForbiddenImport,
    MissingExport,
    ExportType,
    ModuleTooLarge,
    InvalidParams,
    InputTooLarge,
    Busy,
    Instantiate,
    FuelExhausted,
    DeadlineExceeded,
    MemoryLimit,
    TableLimit,
    StackOverflow,
    Trap,
    AbiViolation,
    OutputTooLarge,
    OutputNotUtf8,
    OutputNotJson,
    InvalidOutput,
    InvalidOperation,
    StateMismatch,
    PatchRefused,
}

impl RunErrorKind {
    pub const ALL: [Self; 23] = [
        Self::Compile,
        Self::ForbiddenImport,
        Self::MissingExport,
        Self::ExportType,
        Self::ModuleTooLarge,
        Self::InvalidParams,
        Self::InputTooLarge,
        Self::Busy,
        Self::Instantiate,
        Self::FuelExhausted,
        Self::DeadlineExceeded,
        Self::MemoryLimit,
        Self::TableLimit,
        Self::StackOverflow,
        Self::Trap,
        Self::AbiViolation,
        Self::OutputTooLarge,
        Self::OutputNotUtf8,
        Self::OutputNotJson,
        Self::InvalidOutput,
        Self::InvalidOperation,
        Self::StateMismatch,
        Self::PatchRefused,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compile => "compile",
            Self::ForbiddenImport => "forbidden_import",
            Self::MissingExport => "missing_export",
            Self::ExportType => "export_type",
            Self::ModuleTooLarge => "module_too_large",
            Self::InvalidParams => "invalid_params",
            Self::InputTooLarge => "input_too_large",
            Self::Busy => "busy",
            Self::Instantiate => "instantiate",
            Self::FuelExhausted => "fuel_exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::MemoryLimit => "memory_limit",
            Self::TableLimit => "table_limit",
            Self::StackOverflow => "stack_overflow",
            Self::Trap => "trap",
            Self::AbiViolation => "abi_violation",
            Self::OutputTooLarge => "output_too_large",
            Self::OutputNotUtf8 => "output_not_utf8",
            Self::OutputNotJson => "output_not_json",
            Self::InvalidOutput => "invalid_output",
            Self::InvalidOperation => "invalid_operation",
            Self::StateMismatch => "state_mismatch",
            Self::PatchRefused => "patch_refused",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether the patch's code ran: false for a failure while the module loaded or before
    /// the run (its parameters, its input, a free slot), which says nothing of the patch.
    pub fn ran(self) -> bool {
        !matches!(
            self,
            Self::Compile
                | Self::ForbiddenImport
                | Self::MissingExport
                | Self::ExportType
                | Self::ModuleTooLarge
                | Self::InvalidParams
                | Self::InputTooLarge
                | Self::Busy
                | Self::Instantiate
        )
    }
}

impl std::fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunError {
    /// The kind of failure, for logs, metrics and stored records.
    pub fn kind(&self) -> RunErrorKind {
        match self {
            Self::Compile(_) => RunErrorKind::Compile,
            Self::ForbiddenImport { .. } => RunErrorKind::ForbiddenImport,
            Self::MissingExport { .. } => RunErrorKind::MissingExport,
            Self::ExportType { .. } => RunErrorKind::ExportType,
            Self::ModuleTooLarge { .. } => RunErrorKind::ModuleTooLarge,
            Self::InvalidParams { .. } => RunErrorKind::InvalidParams,
            Self::InputTooLarge { .. } => RunErrorKind::InputTooLarge,
            Self::Busy { .. } => RunErrorKind::Busy,
            Self::Instantiate(_) => RunErrorKind::Instantiate,
            Self::FuelExhausted { .. } => RunErrorKind::FuelExhausted,
            Self::DeadlineExceeded { .. } => RunErrorKind::DeadlineExceeded,
            Self::MemoryLimit { .. } => RunErrorKind::MemoryLimit,
            Self::TableLimit { .. } => RunErrorKind::TableLimit,
            Self::StackOverflow => RunErrorKind::StackOverflow,
            Self::Trap(_) => RunErrorKind::Trap,
            Self::AbiViolation(_) => RunErrorKind::AbiViolation,
            Self::OutputTooLarge { .. } => RunErrorKind::OutputTooLarge,
            Self::OutputNotUtf8 { .. } => RunErrorKind::OutputNotUtf8,
            Self::OutputNotJson(_) => RunErrorKind::OutputNotJson,
            Self::InvalidOutput(_) => RunErrorKind::InvalidOutput,
            Self::InvalidOperation(_) => RunErrorKind::InvalidOperation,
            Self::StateMismatch => RunErrorKind::StateMismatch,
            Self::PatchRefused(_) => RunErrorKind::PatchRefused,
        }
    }
}

/// Errors of the CLI-facing helpers in [`crate::tools`].
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Verify {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("random source: {0}")]
    Random(String),
}
