//! `autoheal flags eval`: evaluates a flag from Ops' files (no server, no
//! store), for checking a definition before it ships. The store's copies and
//! overrides are not read; the API's `POST /api/platform/flags/evaluate`
//! answers with those.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use engine::{EvalContext, FlagDefinition, FlagSnapshot};
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
    let definitions = load_files(rules)?;
    let policies = crate::rules_cmd::load(rules)?;
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

/// The flag definitions files under `rules/flags/` (none without that
/// folder); on any error prints each as `file: field: message` and fails.
pub fn load_files(rules: &Path) -> Result<Vec<(String, FlagDefinition)>> {
    let flags_dir = rules.join("flags");
    if !flags_dir.is_dir() {
        return Ok(vec![]);
    }
    let files = api::rules::read_tree(&flags_dir)
        .with_context(|| format!("cannot read {}", flags_dir.display()))?
        .into_iter()
        .map(|(name, text)| (format!("flags/{name}"), text));
    engine::load_flag_files(files).or_else(|errors| {
        for error in &errors {
            eprintln!("{error}");
        }
        bail!("{} error(s) in {}", errors.len(), flags_dir.display())
    })
}
