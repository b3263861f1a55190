//! The rules test runner (`autoheal rules test`): case files in, pass/fail with
//! a readable difference out. Pure: the caller reads the files.
//!
//! A case file is JSON: `{ "cases": [ CASE, ... ] }`, each case one of
//!
//! ```json
//! { "name": "…", "detection": { …Detection… }, "global_threshold": 85,
//!   "expect": { "outcome": "auto_apply", "rule": "…", "patch": "…", "params": { … } } }
//! { "name": "…", "event": { …InteropEvent… },
//!   "expect": { "type": "checkout.created", "data": { "amount": 55000 } } }
//! { "name": "…", "event": { … }, "expect_error": "missing_field" }
//! ```
//!
//! `expect` is a subset: only the keys it names are compared (recursively for
//! maps; arrays and scalars compare whole).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::healing::{Decision, DecisionConfig, Detection};
use crate::interop::InteropEvent;
use crate::ruleset::RuleSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    detection: Option<Detection>,
    #[serde(default)]
    global_threshold: Option<f64>,
    #[serde(default)]
    event: Option<InteropEvent>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<String>,
}

/// Result of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    /// One line per difference, `path: expected X, got Y`.
    pub diff: Vec<String>,
    /// What the engine produced (decision, event or error), for display.
    pub actual: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseReport {
    pub passed: usize,
    pub failed: usize,
    pub results: Vec<CaseResult>,
}

impl CaseReport {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let mark = if r.passed { "ok  " } else { "FAIL" };
            writeln!(f, "{mark} {} :: {}", r.file, r.name)?;
            for d in &r.diff {
                writeln!(f, "       {d}")?;
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Run every case in the given case files (`(file name, JSON text)`) against a set.
pub fn run_cases<I, N, S>(set: &RuleSet, files: I) -> CaseReport
where
    I: IntoIterator<Item = (N, S)>,
    N: AsRef<str>,
    S: AsRef<str>,
{
    let mut results = Vec::new();
    for (file, text) in files {
        let file = file.as_ref();
        let parsed: Result<CaseFile, _> = serde_json::from_str(text.as_ref());
        let cases = match parsed {
            Ok(c) => c.cases,
            Err(e) => {
                results.push(CaseResult {
                    file: file.into(),
                    name: "(case file)".into(),
                    passed: false,
                    diff: vec![format!(
                        "{file}:{}:{}: invalid case file: {e}",
                        e.line(),
                        e.column()
                    )],
                    actual: Value::Null,
                });
                continue;
            }
        };
        for case in cases {
            results.push(run_case(set, file, case));
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    CaseReport {
        passed,
        failed: results.len() - passed,
        results,
    }
}

/// A healing case's decision, with where the case is.
#[derive(Debug, Clone)]
pub struct CaseDecision {
    pub file: String,
    pub name: String,
    pub decision: Decision,
}

/// The decision of every healing case in the given case files (the files [`run_cases`]
/// reads): realistic detections, for checking what the rules hand their patches (`rules
/// check --patches`). A file that does not parse is left out; `run_cases` reports it.
pub fn case_decisions<I, N, S>(set: &RuleSet, files: I) -> Vec<CaseDecision>
where
    I: IntoIterator<Item = (N, S)>,
    N: AsRef<str>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for (file, text) in files {
        let Ok(parsed) = serde_json::from_str::<CaseFile>(text.as_ref()) else {
            continue;
        };
        for case in parsed.cases {
            if let Some(detection) = &case.detection {
                out.push(CaseDecision {
                    file: file.as_ref().to_owned(),
                    decision: set.decide(detection, &case_config(&case)),
                    name: case.name,
                });
            }
        }
    }
    out
}

fn case_config(case: &Case) -> DecisionConfig {
    DecisionConfig {
        global_threshold: case
            .global_threshold
            .unwrap_or(crate::healing::DEFAULT_GLOBAL_THRESHOLD),
        deadline: None,
    }
}

fn run_case(set: &RuleSet, file: &str, case: Case) -> CaseResult {
    let mut diff = Vec::new();
    let actual = match (&case.detection, &case.event) {
        (Some(d), None) => {
            let cfg = case_config(&case);
            let decision = set.decide(d, &cfg);
            // decide and explain must agree; a difference is an engine bug.
            let full = set.explain(d, &cfg);
            if full.outcome != decision.outcome || full.rule != decision.rule {
                diff.push(format!(
                    "decide/explain disagree: {} {:?} vs {} {:?}",
                    decision.outcome, decision.rule, full.outcome, full.rule
                ));
            }
            if case.expect_error.is_some() {
                diff.push("expect_error applies to events only".into());
            }
            serde_json::to_value(&decision).unwrap_or(Value::Null)
        }
        (None, Some(ev)) => match set.normalize(ev) {
            Ok(n) => {
                if let Some(code) = &case.expect_error {
                    diff.push(format!("error: expected `{code}`, got a normalized event"));
                }
                serde_json::to_value(&n).unwrap_or(Value::Null)
            }
            Err(e) => {
                match &case.expect_error {
                    Some(code) if code == e.code() => {}
                    Some(code) => {
                        diff.push(format!("error: expected `{code}`, got `{}`: {e}", e.code()))
                    }
                    None => diff.push(format!("unexpected error `{}`: {e}", e.code())),
                }
                serde_json::json!({ "error": e.code(), "message": e.to_string() })
            }
        },
        _ => {
            diff.push("a case needs exactly one of `detection` or `event`".into());
            Value::Null
        }
    };
    if let Some(expect) = &case.expect {
        if case.expect_error.is_none() || actual.get("error").is_none() {
            subset_diff("", expect, &actual, &mut diff);
        }
    } else if case.expect_error.is_none() {
        diff.push("a case needs `expect` or `expect_error`".into());
    }
    CaseResult {
        file: file.into(),
        name: case.name,
        passed: diff.is_empty(),
        diff,
        actual,
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => v.to_string(),
    }
}

/// Every key of `expected` must be in `actual` with an equal value.
pub(crate) fn subset_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => subset_diff(&p, ev, av, out),
                    None if ev.is_null() => {}
                    None => out.push(format!("{p}: expected {}, got {}", ev, show(None))),
                }
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => {
            let p = if path.is_empty() { "(root)" } else { path };
            out.push(format!("{p}: expected {e}, got {a}"));
        }
    }
}
