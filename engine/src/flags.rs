//! Flag policies: a flag may carry a Rhai `evaluate(ctx)` function deciding it
//! for one evaluation context. Flag evaluation itself (overrides, percentages,
//! kill switch …) belongs to the flags module; this only compiles and runs the
//! policy, sandboxed.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LoadError, LoadErrorKind, ScriptError};
use crate::sandbox::{self, Limits, Script};
use crate::source::{self, FileKind, Meta, Origin};

/// What a policy returned: on/off, or the name of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicyValue {
    Bool(bool),
    Variant(String),
}

/// A compiled flag policy.
#[derive(Debug, Clone)]
pub struct FlagPolicy {
    /// The flag key this policy decides.
    pub name: String,
    pub description: Option<String>,
    pub file: String,
    script: Script,
}

const FLAG_FIELDS: &[&str] = &["name", "description"];

impl FlagPolicy {
    /// Compile one policy file on its own (e.g. a policy stored with a flag in
    /// the database). `file` names it in errors.
    pub fn compile(
        file: &str,
        source: &str,
        limits: &Limits,
    ) -> Result<FlagPolicy, Vec<LoadError>> {
        let engine = std::sync::Arc::new(sandbox::build_engine(limits));
        let limits = std::sync::Arc::new(limits.clone());
        let ev = source::evaluate_file(&engine, &limits, file, source, FileKind::Flags, None)
            .map_err(|e| vec![e])?;
        FlagPolicy::from_meta(&ev.meta, &ev.origin, ev.script)
    }

    pub(crate) fn from_meta(
        map: &Map<String, Value>,
        origin: &Origin,
        script: Script,
    ) -> Result<FlagPolicy, Vec<LoadError>> {
        let mut m = Meta::new(map, origin);
        m.check_known(FLAG_FIELDS);
        let name = m.string("name", true);
        let description = m.string("description", false);
        match script.ast.iter_functions().find(|f| f.name == "evaluate") {
            None => m.error_at(
                origin.decl,
                LoadErrorKind::MissingFunction {
                    function: "evaluate".into(),
                },
            ),
            Some(f) if f.params.len() != 1 => m.error_at(
                origin.decl,
                LoadErrorKind::WrongArity {
                    function: "evaluate".into(),
                    expected: 1,
                    found: f.params.len(),
                },
            ),
            Some(_) => {}
        }
        let errors = m.errors;
        match name {
            Some(name) if errors.is_empty() => Ok(FlagPolicy {
                name,
                description,
                file: origin.file.to_string(),
                script,
            }),
            _ => Err(errors),
        }
    }

    /// Run `evaluate(ctx)`. `ctx` is any JSON value (typically a map with the
    /// tenant, user, platform, plugin version …). Bounded by the limits and the deadline.
    pub fn evaluate(
        &self,
        ctx: &Value,
        deadline: Option<Instant>,
    ) -> Result<PolicyValue, ScriptError> {
        let out = self
            .script
            .call("evaluate", (sandbox::to_dynamic(ctx),), deadline)?;
        if let Ok(b) = out.as_bool() {
            return Ok(PolicyValue::Bool(b));
        }
        if out.is_string() {
            return Ok(PolicyValue::Variant(out.to_string()));
        }
        Err(self
            .script
            .wrong_return("a bool or a variant name (string)", &out))
    }
}
