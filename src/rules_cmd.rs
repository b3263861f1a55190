//! `autoheal rules check|explain|test|replay` and `autoheal interop normalize`: the
//! rule engine from a shell, reading Ops' files and handing their text to the
//! pure `engine` (`replay` also reads the store's past detections).

use anyhow::{anyhow, bail, Context, Result};
use api::db::StoreOptions;
use api::rules::replay::{DecidedNow, DecidedThen, ReplayOptions, ReplayReport};
use engine::{DecisionConfig, Detection, InteropEvent, RuleSet, ScriptErrorKind};
use host::bundle::Manifest;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn check(dir: &Path, patches: Option<&BTreeMap<String, Manifest>>) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let flags = crate::files::flag_files(dir)?;
    let needs = match patches {
        Some(patches) => check_params(dir, &set, patches)?,
        None => Vec::new(),
    };
    let warnings = policy_warnings(&set);
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
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
            "patches_checked": patches.map(BTreeMap::len),
            "needs": needs,
            "warnings": warnings,
            "files": files,
        })
    );
    Ok(())
}

/// Each flag policy that, on a sample install's context, runs into its operation limit,
/// call depth or the server's per-request budget: on the server every evaluation of it
/// would answer the flag's default with reason `ERROR`.
fn policy_warnings(set: &RuleSet) -> Vec<String> {
    let sample = api::flags::install_context(
        uuid::Uuid::nil(),
        "woocommerce",
        "https://shop.example",
        "1.3.5",
        "production",
    )
    .to_policy_value();
    let budget = api::flags::FlagsConfig::default().policy_budget;
    set.flag_policies()
        .filter_map(|policy| {
            let deadline = std::time::Instant::now() + budget;
            match policy.evaluate(&sample, Some(deadline)) {
                Err(error)
                    if matches!(
                        error.kind,
                        ScriptErrorKind::TooManyOperations { .. }
                            | ScriptErrorKind::CallDepth { .. }
                            | ScriptErrorKind::Deadline
                    ) =>
                {
                    Some(format!(
                        "{}: policy {} {} on a sample install's context ({} ms budget per request): \
                         every evaluation of its flag would answer the default with reason ERROR",
                        policy.file,
                        policy.name,
                        match error.kind {
                            ScriptErrorKind::Deadline => "ran past the budget".to_owned(),
                            kind => format!("stopped: {kind}"),
                        },
                        budget.as_millis()
                    ))
                }
                _ => None,
            }
        })
        .collect()
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

/// Holds every healing rule against its patch's manifest: the patch is loaded, and the
/// parameters the rule gives for each healing case under `DIR/tests` are ones the patch
/// takes, of the right type and format. Fails listing every misfit; returns the cases that
/// leave a required parameter out (what Ops would be asked for).
fn check_params(
    dir: &Path,
    set: &RuleSet,
    patches: &BTreeMap<String, Manifest>,
) -> Result<Vec<serde_json::Value>> {
    let mut problems = Vec::new();
    for rule in set.healing_rules() {
        if !patches.contains_key(&rule.patch) {
            problems.push(format!(
                "rule {}: patch {} is not among the verified bundles",
                rule.name, rule.patch
            ));
        }
    }
    let mut needs = Vec::new();
    let cases = if dir.join("tests").is_dir() {
        case_files(dir)?
    } else {
        Vec::new()
    };
    for case in engine::case_decisions(set, cases) {
        let (Some(rule), Some(manifest)) = (
            case.decision.rule.as_deref(),
            case.decision
                .patch
                .as_ref()
                .and_then(|patch| patches.get(patch)),
        ) else {
            continue;
        };
        // The parameters the rule gave, each checked against the schema; the required ones
        // it left out are what a detection like this one waits for Ops to give.
        let mut optional = manifest.clone();
        for spec in optional.params_schema.values_mut() {
            spec.required = false;
        }
        let params = serde_json::Value::Object(case.decision.params.clone());
        if let Err(error) = host::sandbox::validate_params(&optional, &params) {
            problems.push(format!(
                "{} :: {}: rule {rule} gives patch {} parameters it does not take: {error}",
                case.file, case.name, manifest.name
            ));
        }
        let missing: Vec<&String> = manifest
            .params_schema
            .iter()
            .filter(|(name, spec)| spec.required && !case.decision.params.contains_key(*name))
            .map(|(name, _)| name)
            .collect();
        if !missing.is_empty() {
            needs.push(json!({"case": format!("{} :: {}", case.file, case.name), "rule": rule, "needs": missing}));
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        bail!(
            "{} misfit(s) between the rules and their patches",
            problems.len()
        );
    }
    Ok(needs)
}

/// The case files under `DIR/tests`, as (`tests/NAME`, text).
fn case_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let cases_dir: PathBuf = dir.join("tests");
    Ok(api::rules::read_tree(&cases_dir)
        .with_context(|| format!("cannot read {}", cases_dir.display()))?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .map(|(name, text)| (format!("tests/{name}"), text))
        .collect())
}

/// Runs `DIR/tests/*.json` against the rules in `DIR`; fails on a mismatch.
pub fn test(dir: &Path) -> Result<()> {
    let set = crate::files::rule_set(dir)?;
    let report = engine::run_cases(&set, case_files(dir)?);
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

/// How `rules replay` reads the store and decides.
pub struct ReplayArgs<'a> {
    pub database_url: &'a str,
    pub since: &'a str,
    pub limit: usize,
    pub global_threshold: f64,
    pub json: bool,
}

/// Decides the detections stored since `--since` again with the rules in `dir`, and prints
/// both decisions of each with a summary (`--json`: the report as the API answers it).
/// A rule set with errors is refused as `rules check` refuses it, before the store is
/// opened; nothing is written.
pub async fn replay(
    dir: &Path,
    args: ReplayArgs<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let candidate = crate::files::rule_set(dir)?;
    let since = api::rules::replay::parse_since(args.since, now)
        .map_err(|problem| anyhow!("--since {problem}"))?;
    let options = ReplayOptions {
        since,
        until: now,
        limit: args.limit,
        global_threshold: args.global_threshold,
        script_deadline: api::ServerConfig::default().script_deadline,
    };
    let store = crate::open_store(args.database_url, &StoreOptions::default()).await?;
    let report = api::rules::replay::replay(&store, &candidate, &options).await;
    store.close().await;
    let report = report.context("cannot read the stored detections")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay_text(&report));
    }
    Ok(())
}

/// The report for a terminal: a header saying what is replayed, one line per detection
/// (`*` where the candidate changes the outcome or the rule), then the summary.
fn replay_text(report: &ReplayReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay of the detections received from {} to {}, newest first, global threshold {}",
        report
            .since
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        report
            .until
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        report.global_threshold
    );
    let _ = writeln!(out, "{}\n", report.scope);
    let _ = writeln!(
        out,
        "  {:<36}  {:<20}  {:<36}  {:<58}  NOW",
        "LOG", "RECEIVED", "INSTALL", "THEN (STATUS NOW)"
    );
    for detection in &report.detections {
        let _ = writeln!(
            out,
            "{} {:<36}  {:<20}  {:<36}  {:<58}  {}",
            if detection.changed { '*' } else { ' ' },
            detection.log_id,
            detection
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            detection.plugin_id,
            then_text(&detection.then),
            now_text(&detection.now),
        );
    }
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "\n{} replayed, {} change outcome or rule",
        summary.replayed, summary.changed
    );
    for change in &summary.outcome_changes {
        let _ = writeln!(
            out,
            "  outcome {} -> {}: {}",
            change.from.as_str(),
            change.to.as_str(),
            change.detections
        );
    }
    for change in &summary.rule_changes {
        let _ = writeln!(
            out,
            "  rule {}: gains {}, loses {}",
            change.rule, change.gained, change.lost
        );
    }
    let _ = writeln!(
        out,
        "  matched a rule then, none now: {}",
        summary.no_longer_matched
    );
    if report.capped {
        let _ = writeln!(
            out,
            "capped at {} detections (--limit): older ones were not replayed",
            report.limit
        );
    }
    out
}

fn then_text(then: &DecidedThen) -> String {
    let mut text = format!(
        "{} {}",
        then.outcome.as_str(),
        then.rule.as_deref().unwrap_or("-")
    );
    if !then.held_by.is_empty() {
        let held: Vec<String> = then
            .held_by
            .iter()
            .map(|check| json!(check).as_str().unwrap_or_default().to_owned())
            .collect();
        text.push_str(&format!(" [held: {}]", held.join(", ")));
    }
    text.push_str(&format!(" ({})", then.status.as_str()));
    text
}

fn now_text(now: &DecidedNow) -> String {
    format!(
        "{} {}",
        now.outcome.as_str(),
        now.rule.as_deref().unwrap_or("-")
    )
}
