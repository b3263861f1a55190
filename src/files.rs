//! Ops' files read from a shell, for the commands that check or evaluate them without a
//! server: the same readers `serve` uses (`api::rules`), with every error printed as
//! `file:line:col: message` (rules) or `file: field: message` (flags).

use anyhow::{bail, Result};
use engine::{FlagDefinition, RuleSet};
use std::path::Path;

/// The rule set under `dir`, with the default script limits.
pub fn rule_set(dir: &Path) -> Result<RuleSet> {
    api::rules::load_rule_set(dir, &engine::Limits::default()).or_else(|errors| {
        for error in &errors {
            eprintln!("{error}");
        }
        bail!(
            "{} error(s) in {}; nothing was loaded",
            errors.len(),
            dir.display()
        )
    })
}

/// The flag definition files under `rules/flags/` (none without that folder).
pub fn flag_files(rules: &Path) -> Result<Vec<(String, FlagDefinition)>> {
    api::rules::read_flag_files(rules).or_else(|errors| {
        for error in &errors {
            eprintln!("{error}");
        }
        bail!(
            "{} error(s) in {}",
            errors.len(),
            rules.join("flags").display()
        )
    })
}
