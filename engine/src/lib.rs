//! The rule engine: healing rules, interop mappings and flag policies, written
//! by Ops as Rhai files under `rules/`, compiled and validated once, then used
//! to decide, normalize and evaluate.
//!
//! Pure: no IO (callers pass `(file name, source text)` pairs), no async, no
//! clock (callers pass `now`, and a deadline for scripts), no HTTP, SQL or
//! wasmtime. Every Ops script runs sandboxed (see [`Limits`]).
//!
//! Entry points:
//! - [`RuleSet::load`] → a validated, `Arc`-shared snapshot, or every [`LoadError`];
//! - [`RuleSet::decide`] / [`RuleSet::explain`] → a [`Decision`] with its trace;
//! - [`RuleSet::normalize`] / [`Mapping::normalize`] → a CloudEvents [`NormalizedEvent`];
//! - [`Mapping::from_spec`] → a mapping from data, validated like a file;
//! - [`FlagPolicy::compile`] / [`FlagPolicy::evaluate`];
//! - [`FlagSnapshot::build`] / [`FlagSnapshot::evaluate`] → an OpenFeature-shaped
//!   [`Evaluation`] of a feature flag (see the order in `flag_eval.rs`);
//! - [`run_cases`] → the `rules test` report;
//! - [`fingerprint()`] / [`parameterize`] → an error event's group key, Sentry-style.

mod cases;
mod error;
pub mod fingerprint;
mod flag_eval;
mod flags;
mod healing;
mod interop;
mod murmur3;
mod ruleset;
mod sandbox;
mod source;

pub use cases::{case_decisions, run_cases, CaseDecision, CaseReport, CaseResult};
pub use error::{LoadError, LoadErrorKind, NormalizeError, ScriptError, ScriptErrorKind};
pub use fingerprint::{fingerprint, parameterize, Fingerprint, FINGERPRINT_VERSION};
pub use flag_eval::{
    check_key, is_flag_file, load_flag_files, parse_flag_file, rollout_bucket, variant_bucket,
    Audience, ErrorCode, EvalContext, Evaluation, FieldError, FlagDefinition, FlagFileError,
    FlagOverride, FlagSnapshot, FlagType, FlagValue, OverrideScope, Reason, Schedule,
    SnapshotError, Stickiness, ValueType, Variant, MAX_NAME_CHARS, VARIANT_SEED,
};
pub use flags::{FlagPolicy, PolicyValue};
pub use healing::{
    Check, CheckKind, Decision, DecisionConfig, Detection, HealingRule, Outcome, Platform,
    Platforms, DEFAULT_GLOBAL_THRESHOLD,
};
pub use interop::{
    already_normalized, category_of, currency_exponent, event_id, to_minor_units, InteropEvent,
    Mapping, MappingSpec, NormalizedEvent, EVENT_TYPES,
};
pub use murmur3::{murmur3_32, Murmur3};
pub use ruleset::{decide, normalize, sha256_hex, FileInfo, LoadOptions, RuleSet};
pub use sandbox::Limits;
pub use source::{is_rule_file, FileKind};
