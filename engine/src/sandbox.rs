//! The Rhai sandbox every Ops script runs in: explicit limits, no `eval`, no
//! modules (so no file access), no clock, no `print`. A wall-clock budget is
//! enforced through `on_progress` against a deadline the caller passes in.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Position, Scope, AST};
use serde::{Deserialize, Serialize};

use crate::error::{ScriptError, ScriptErrorKind};

/// Every limit the engine enforces, with its unit in its name. The defaults are
/// generous for Ops scripts (which are small) and tight for runaway ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Rhai operations per script run (top level at load, or one function call).
    pub max_operations: u64,
    /// Nested function calls (bounds recursion).
    pub max_call_levels: usize,
    /// Expression nesting depth at the top level of a file.
    pub max_expr_depth: usize,
    /// Expression nesting depth inside functions.
    pub max_fn_expr_depth: usize,
    /// Largest string a script may build or receive, in bytes.
    pub max_string_bytes: usize,
    /// Largest array, in elements.
    pub max_array_len: usize,
    /// Largest object map, in entries.
    pub max_map_len: usize,
    /// Compiled size limit of each regex, in bytes (`RegexBuilder::size_limit`).
    pub regex_size_limit_bytes: usize,
    /// Largest rule file accepted, in bytes.
    pub max_source_bytes: usize,
    /// Variables a script may have in scope at once.
    pub max_variables: usize,
    /// Functions one file may define.
    pub max_functions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_fn_expr_depth: 32,
            max_string_bytes: 64 * 1024,
            max_array_len: 1_024,
            max_map_len: 1_024,
            regex_size_limit_bytes: 256 * 1024,
            max_source_bytes: 256 * 1024,
            max_variables: 256,
            max_functions: 64,
        }
    }
}

thread_local! {
    /// Deadline of the script currently running on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets the thread's script deadline for its lifetime, restoring the previous one.
pub(crate) struct DeadlineGuard(Option<Instant>);

impl DeadlineGuard {
    pub(crate) fn set(deadline: Option<Instant>) -> Self {
        Self(DEADLINE.with(|d| d.replace(deadline)))
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.0));
    }
}

const DEADLINE_MARKER: &str = "autoheal: deadline exceeded";
/// How often (in operations) the progress callback looks at the clock.
const DEADLINE_CHECK_EVERY_OPS: u64 = 256;

/// Build the sandboxed engine for a set of limits.
pub(crate) fn build_engine(limits: &Limits) -> Engine {
    // `new_raw`: no module resolver (no `import` of files), no print/debug output.
    let mut engine = Engine::new_raw();
    // Deliberately no BasicTimePackage (`timestamp()` would be a clock) and no blobs.
    engine.register_global_module(CorePackage::new().as_shared_module());
    engine.register_global_module(LogicPackage::new().as_shared_module());
    engine.register_global_module(BasicMathPackage::new().as_shared_module());
    engine.register_global_module(BasicArrayPackage::new().as_shared_module());
    engine.register_global_module(BasicMapPackage::new().as_shared_module());
    engine.register_global_module(MoreStringPackage::new().as_shared_module());
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_len);
    engine.set_max_map_size(limits.max_map_len);
    engine.set_max_variables(limits.max_variables);
    engine.set_max_functions(limits.max_functions);
    engine.on_progress(|ops| {
        if ops % DEADLINE_CHECK_EVERY_OPS == 0 {
            if let Some(deadline) = DEADLINE.with(|d| d.get()) {
                if Instant::now() >= deadline {
                    return Some(Dynamic::from(DEADLINE_MARKER));
                }
            }
        }
        None
    });
    engine
}

pub(crate) fn pos(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(0), p.position().unwrap_or(0))
}

/// Convert a Rhai runtime error to our kind plus the innermost position.
pub(crate) fn classify(err: &EvalAltResult, limits: &Limits) -> (ScriptErrorKind, Position) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, p) => {
            let (kind, ip) = classify(inner, limits);
            (kind, if ip.is_none() { *p } else { ip })
        }
        EvalAltResult::ErrorTooManyOperations(p) => (
            ScriptErrorKind::TooManyOperations {
                limit: limits.max_operations,
            },
            *p,
        ),
        EvalAltResult::ErrorStackOverflow(p) => (
            ScriptErrorKind::CallDepth {
                limit: limits.max_call_levels,
            },
            *p,
        ),
        EvalAltResult::ErrorDataTooLarge(what, p) => {
            (ScriptErrorKind::DataTooLarge { what: what.clone() }, *p)
        }
        EvalAltResult::ErrorTerminated(_, p) => (ScriptErrorKind::Deadline, *p),
        EvalAltResult::ErrorParsing(rhai::ParseErrorType::ExprTooDeep, p) => {
            (ScriptErrorKind::ExprTooDeep, *p)
        }
        other => {
            // Strip Rhai's own " (line x, position y)" suffix: we print ours.
            let mut message = other.to_string();
            if let Some(i) = message.rfind(" (line ") {
                message.truncate(i);
            }
            (ScriptErrorKind::Runtime { message }, other.position())
        }
    }
}

pub(crate) fn script_error(file: &str, err: &EvalAltResult, limits: &Limits) -> ScriptError {
    let (kind, p) = classify(err, limits);
    let (line, column) = pos(p);
    ScriptError {
        file: file.to_string(),
        line,
        column,
        kind,
    }
}

/// A compiled Ops script: its engine (shared), its AST and where it came from.
#[derive(Clone)]
pub(crate) struct Script {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ast: AST,
    pub(crate) file: Arc<str>,
    pub(crate) limits: Arc<Limits>,
    /// Source text, to point at `fn name` when Rhai gives no position (it
    /// reports limit errors at the call site, which is ours).
    pub(crate) src: Option<Arc<str>>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("file", &self.file).finish()
    }
}

impl Script {
    pub(crate) fn has_fn(&self, name: &str) -> bool {
        self.ast.iter_functions().any(|f| f.name == name)
    }

    /// Call a function the file defines, under the deadline.
    pub(crate) fn call(
        &self,
        name: &str,
        args: impl FuncArgs,
        deadline: Option<Instant>,
    ) -> Result<Dynamic, ScriptError> {
        let _guard = DeadlineGuard::set(deadline);
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &self.ast, name, args)
            .map_err(|e| {
                let mut err = script_error(&self.file, &e, &self.limits);
                if err.line == 0 {
                    if let Some((line, column)) = self.src.as_deref().and_then(|s| fn_pos(s, name))
                    {
                        err.line = line;
                        err.column = column;
                    }
                }
                err
            })
    }

    pub(crate) fn wrong_return(&self, expected: &str, found: &Dynamic) -> ScriptError {
        ScriptError {
            file: self.file.to_string(),
            line: 0,
            column: 0,
            kind: ScriptErrorKind::WrongReturnType {
                expected: expected.to_string(),
                found: found.type_name().to_string(),
            },
        }
    }
}

pub(crate) fn to_dynamic(value: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

pub(crate) fn from_dynamic(value: &Dynamic) -> Option<serde_json::Value> {
    rhai::serde::from_dynamic::<serde_json::Value>(value).ok()
}

/// line:col of `fn name(` in a source.
fn fn_pos(src: &str, name: &str) -> Option<(usize, usize)> {
    let needle = format!("fn {name}(");
    let at = src.find(&needle)?;
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}
