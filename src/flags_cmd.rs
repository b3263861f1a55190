//! `autoheal flags eval`: evaluates a flag from Ops' files (no server, no
//! store), for checking a definition before it ships. The store's copies and
//! overrides are not read; the API's `POST /api/platform/flags/evaluate`
//! answers with those.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use engine::{EvalContext, FlagSnapshot};
use serde_json::json;
use std::path::Path;

/// Prints the evaluation of `key` for the context in `context_file`, at
/// `now`, against `rules/flags/*.json` and their policies.
pub fn eval(key: &str, context_file: &Path, rules: &Path, now: DateTime<Utc>) -> Result<()> {
    let text = std::fs::read_to_string(context_file)
        .with_context(|| format!("cannot read the context {}", context_file.display()))?;
    let context: EvalContext = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an evaluation context ({{\"tenant_id\", \"user_id\", \"session_id\", \"properties\"}})",
            context_file.display()
        )
    })?;
    let definitions = crate::files::flag_files(rules)?;
    let policies = crate::files::rule_set(rules)?;
    let (snapshot, errors) = FlagSnapshot::build(
        definitions.into_iter().map(|(_, definition)| definition),
        vec![],
        |name| policies.flag_policy(name),
    );
    if let Some(error) = errors.first() {
        bail!("{error}");
    }
    if snapshot.definition(key).is_none() {
        let known: Vec<&str> = snapshot.definitions().map(|d| d.key.as_str()).collect();
        bail!(
            "flag {key} is not defined in {} (known: {})",
            rules.join("flags").display(),
            known.join(", ")
        );
    }
    let evaluation = snapshot.evaluate(key, &context, now);
    let mut out = serde_json::to_value(evaluation)?;
    out["key"] = json!(key);
    println!("{out}");
    Ok(())
}
