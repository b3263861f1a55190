//! `autoheal rules check|explain|test` and `autoheal interop normalize`: the
//! rule engine from a shell, reading Ops' files and handing their text to the
//! pure `engine`.

use anyhow::{bail, Context, Result};
use engine::{DecisionConfig, Detection, InteropEvent};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn check(dir: &Path) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let flags = crate::files::flag_files(dir)?;
    let files: Vec<_> = set
        .files()
        .iter()
        .map(|file| json!({"file": file.file, "sha256": file.sha256}))
        .collect();
    println!(
        "{}",
        json!({
            "status": "ok",
            "healing_rules": set.healing_rules().len(),
            "interop_mappings": set.mappings().len(),
            "flag_policies": set.flag_policies().count(),
            "feature_flags": flags.len(),
            "files": files,
        })
    );
    Ok(())
}

pub fn explain(dir: &Path, detection: &Path, global_threshold: f64) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let text = std::fs::read_to_string(detection)
        .with_context(|| format!("cannot read {}", detection.display()))?;
    let detection: Detection = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a detection", detection.display()))?;
    let config = DecisionConfig {
        global_threshold,
        ..DecisionConfig::default()
    };
    let decision = set.explain(&detection, &config);
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(())
}

/// Runs `DIR/tests/*.json` against the rules in `DIR`; fails on a mismatch.
pub fn test(dir: &Path) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let cases_dir: PathBuf = dir.join("tests");
    let cases: Vec<(String, String)> = api::rules::read_tree(&cases_dir)
        .with_context(|| format!("cannot read {}", cases_dir.display()))?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .map(|(name, text)| (format!("tests/{name}"), text))
        .collect();
    let report = engine::run_cases(&set, cases);
    print!("{report}");
    if !report.ok() {
        bail!(
            "{} of {} case(s) failed",
            report.failed,
            report.passed + report.failed
        );
    }
    Ok(())
}

pub fn normalize(
    dir: &Path,
    platform: &str,
    event_type: &str,
    payload: &Path,
    shop: &str,
) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let text = std::fs::read_to_string(payload)
        .with_context(|| format!("cannot read {}", payload.display()))?;
    let payload = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", payload.display()))?;
    let event = InteropEvent {
        platform: platform.to_owned(),
        shop: shop.to_owned(),
        event_type: event_type.to_owned(),
        event_id: None,
        time: chrono::Utc::now(),
        payload,
    };
    let normalized = set
        .normalize(&event)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    println!("{}", serde_json::to_string_pretty(&normalized)?);
    Ok(())
}
