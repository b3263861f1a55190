//! Unleash compatibility: the Unleash client specification (vendored in
//! `tests/unleash-spec/`, Apache-2.0, see its LICENSE) mapped into our flag
//! model and run; and a differential test against `unleash-yggdrasil`, the
//! reference engine, on random contexts.
//!
//! A case whose feature our model cannot express (constraint operators other
//! than IN / NOT_IN, several strategies OR-ed together, random rollouts,
//! segments, dependencies …) is reported as skipped with the reason and
//! counted apart; it never counts as passed.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests read the vendored specification from disk and evaluate at the real time; the engine itself does neither"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use engine::{
    rollout_bucket, variant_bucket, EvalContext, FlagDefinition, FlagOverride, FlagPolicy,
    FlagSnapshot, FlagType, FlagValue, Limits, OverrideScope, Stickiness, Variant, VARIANT_SEED,
};
use serde_json::{json, Map, Value};

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/unleash-spec")
}

/// The spec's files our model must run completely, without a skip.
const MUST_PASS: [&str; 6] = [
    "03-gradual-rollout-user-id-strategy.json",
    "04-gradual-rollout-session-id-strategy.json",
    "08-variants.json",
    "10-flexible-rollout-strategy.json",
    "12-custom-stickiness.json",
    "16-strategy-variants.json",
];

/// One Unleash feature in our terms.
struct Mapped {
    definition: FlagDefinition,
    overrides: Vec<FlagOverride>,
    /// Rhai source of the constraints, if the strategy has any.
    policy: Option<String>,
}

fn stickiness(unleash: &str) -> Result<Stickiness, String> {
    Ok(match unleash {
        "default" => Stickiness::Default,
        "userId" => Stickiness::UserId,
        "sessionId" => Stickiness::SessionId,
        "random" => return Err("random stickiness is not deterministic".into()),
        // environment, appName, remoteAddress and custom fields are context
        // properties here (see `context`).
        other => Stickiness::Property(other.to_owned()),
    })
}

fn param<'a>(strategy: &'a Value, name: &str) -> Option<&'a str> {
    strategy["parameters"][name].as_str()
}

/// `userId` and `sessionId` are first-class; every other Unleash context
/// field is a property, so a policy reads it as `ctx.environment` …
fn context_field(name: &str) -> String {
    match name {
        "userId" => "user_id".into(),
        "sessionId" => "session_id".into(),
        other => other.to_owned(),
    }
}

/// Unleash `IN` / `NOT_IN` constraints as a Rhai policy gate.
fn constraints_policy(key: &str, constraints: &[Value]) -> Result<Option<String>, String> {
    if constraints.is_empty() {
        return Ok(None);
    }
    let mut checks = Vec::new();
    for constraint in constraints {
        let operator = constraint["operator"].as_str().unwrap_or("");
        if constraint["inverted"].as_bool() == Some(true) {
            return Err("inverted constraint".into());
        }
        if constraint["caseInsensitive"].as_bool() == Some(true) {
            return Err("case-insensitive constraint".into());
        }
        let field = serde_json::to_string(&context_field(
            constraint["contextName"].as_str().unwrap_or(""),
        ))
        .unwrap();
        let values = serde_json::to_string(&constraint["values"]).unwrap();
        checks.push(match operator {
            "IN" => format!("({field} in ctx && ctx[{field}] in {values})"),
            "NOT_IN" => format!("(!({field} in ctx) || !(ctx[{field}] in {values}))"),
            other => return Err(format!("constraint operator {other}")),
        });
    }
    let name = serde_json::to_string(key).unwrap();
    Ok(Some(format!(
        "let flag = #{{ name: {name} }};\nfn evaluate(ctx) {{ {} }}\n",
        checks.join(" && ")
    )))
}

fn variants(list: &Value) -> Vec<Variant> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|variant| Variant {
            name: variant["name"].as_str().unwrap_or("").to_owned(),
            weight: variant["weight"].as_u64().unwrap_or(0) as u32,
            payload: variant.get("payload").cloned(),
        })
        .collect()
}

fn map_feature(feature: &Value) -> Result<Mapped, String> {
    let key = feature["name"].as_str().unwrap_or("").to_owned();
    if feature["dependencies"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        return Err("dependent features".into());
    }
    let strategies: Vec<&Value> = feature["strategies"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if strategies
        .iter()
        .any(|s| s["segments"].as_array().is_some_and(|s| !s.is_empty()))
    {
        return Err("segments".into());
    }
    let mut definition = FlagDefinition {
        enabled: feature["enabled"].as_bool().unwrap_or(false),
        ..boolean(&key, FlagType::Boolean)
    };
    let mut policy = None;
    let mut strategy_variants = Vec::new();
    let unconstrained_default = strategies.iter().any(|s| {
        s["name"] == "default" && s["constraints"].as_array().is_none_or(|c| c.is_empty())
    });
    if unconstrained_default {
        // Strategies are OR-ed: an unconditional `default` makes the flag on
        // for everyone. Its variants are the ones Unleash would use only if
        // it comes first.
        let with_variants = |s: &&Value| s["variants"].as_array().is_some_and(|v| !v.is_empty());
        if strategies[0]["name"] == "default" {
            strategy_variants = variants(&strategies[0]["variants"]);
        } else if strategies.iter().any(with_variants) {
            return Err("strategy variants chosen by which strategy matches first".into());
        }
    } else if strategies.len() > 1 {
        return Err(format!(
            "{} strategies OR-ed together; a flag has one targeting chain",
            strategies.len()
        ));
    } else if let Some(strategy) = strategies.first() {
        let name = strategy["name"].as_str().unwrap_or("");
        let percentage = |p: Option<&str>| -> Result<u32, String> {
            p.unwrap_or("0")
                .parse()
                .map_err(|_| "percentage is not an integer".to_string())
        };
        match name {
            "default" => {}
            "userWithId" => {
                definition.flag_type = FlagType::UserList;
                definition.enabled_users = param(strategy, "userIds")
                    .unwrap_or("")
                    .split(',')
                    .map(|id| id.trim().to_owned())
                    .filter(|id| !id.is_empty())
                    .collect();
            }
            "gradualRolloutUserId" | "gradualRolloutSessionId" => {
                definition.flag_type = FlagType::Percentage;
                definition.percentage = Some(percentage(param(strategy, "percentage"))?);
                definition.group_id = param(strategy, "groupId").map(str::to_owned);
                definition.stickiness = if name == "gradualRolloutUserId" {
                    Stickiness::UserId
                } else {
                    Stickiness::SessionId
                };
            }
            "flexibleRollout" => {
                definition.flag_type = FlagType::Percentage;
                definition.percentage = Some(percentage(param(strategy, "rollout"))?);
                definition.group_id = Some(param(strategy, "groupId").unwrap_or(&key).to_owned());
                definition.stickiness =
                    stickiness(param(strategy, "stickiness").unwrap_or("default"))?;
            }
            other => return Err(format!("strategy {other}")),
        }
        policy = constraints_policy(
            &key,
            strategy["constraints"]
                .as_array()
                .map_or(&[], |c| c.as_slice()),
        )?;
        strategy_variants = variants(&strategy["variants"]);
        if !strategy_variants.is_empty() {
            definition.variant_group_id =
                Some(param(strategy, "groupId").unwrap_or(&key).to_owned());
            definition.variant_stickiness = Some(stickiness(
                param(strategy, "stickiness").unwrap_or("default"),
            )?);
        }
    }
    let mut overrides = Vec::new();
    if strategy_variants.is_empty() {
        // The feature's own variants: stickiness of the first, group = key.
        let list = &feature["variants"];
        definition.variants = variants(list);
        if let Some(first) = list.as_array().and_then(|l| l.first()) {
            definition.variant_stickiness = Some(stickiness(
                first["stickiness"].as_str().unwrap_or("default"),
            )?);
            definition.variant_group_id = None;
        }
        for variant in list.as_array().into_iter().flatten() {
            for entry in variant["overrides"].as_array().into_iter().flatten() {
                if entry["contextName"] != "userId" {
                    return Err(format!("variant override on {}", entry["contextName"]));
                }
                for user in entry["values"].as_array().into_iter().flatten() {
                    overrides.push(FlagOverride {
                        flag_key: key.clone(),
                        scope: OverrideScope::User,
                        target: user.as_str().unwrap_or("").to_owned(),
                        value: variant["name"].clone(),
                    });
                }
            }
        }
    } else {
        definition.variants = strategy_variants;
    }
    if !definition.variants.is_empty() {
        definition.flag_type = FlagType::Variant;
        definition.default_value = Some(json!("disabled"));
    }
    if policy.is_some() {
        definition.policy = Some(key.clone());
    }
    definition
        .validate()
        .map_err(|e| format!("not a valid flag here: {e}"))?;
    Ok(Mapped {
        definition,
        overrides,
        policy,
    })
}

fn context(unleash: &Value) -> EvalContext {
    let mut properties: Map<String, Value> = unleash["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in ["environment", "appName", "remoteAddress", "currentTime"] {
        if let Some(value) = unleash.get(field) {
            properties.insert(field.to_owned(), value.clone());
        }
    }
    EvalContext {
        tenant_id: None,
        user_id: unleash["userId"].as_str().map(str::to_owned),
        session_id: unleash["sessionId"].as_str().map(str::to_owned),
        properties,
    }
}

#[derive(Default, Debug)]
struct Report {
    passed: usize,
    failed: Vec<String>,
    skipped: Vec<(String, String)>,
}

fn run_file(name: &str) -> Report {
    let text = std::fs::read_to_string(spec_dir().join(name)).unwrap();
    let suite: Value = serde_json::from_str(&text).unwrap();
    let mut report = Report::default();
    let cases: Vec<&Value> = suite["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(suite["variantTests"].as_array().into_iter().flatten())
        .collect();
    let Some(features) = suite["state"]["features"].as_array() else {
        for case in cases {
            report.skipped.push((
                case["description"].as_str().unwrap_or("").to_owned(),
                "delta API events: Unleash's sync protocol, not evaluation".into(),
            ));
        }
        return report;
    };
    let mut unmapped: BTreeMap<String, String> = BTreeMap::new();
    let mut definitions = Vec::new();
    let mut overrides = Vec::new();
    let mut policies = BTreeMap::new();
    for feature in features {
        let key = feature["name"].as_str().unwrap_or("").to_owned();
        match map_feature(feature) {
            Ok(mapped) => {
                if let Some(source) = &mapped.policy {
                    let policy = FlagPolicy::compile(
                        &format!("flags/{key}.rhai"),
                        source,
                        &Limits::default(),
                    )
                    .unwrap_or_else(|e| panic!("{key}: generated policy: {e:?}\n{source}"));
                    policies.insert(key.clone(), policy);
                }
                definitions.push(mapped.definition);
                overrides.extend(mapped.overrides);
            }
            Err(reason) => {
                unmapped.insert(key, reason);
            }
        }
    }
    let (snapshot, errors) = FlagSnapshot::build(definitions, overrides, |name| policies.get(name));
    assert!(errors.is_empty(), "{name}: {errors:?}");
    let now = Utc.with_ymd_and_hms(2025, 1, 18, 10, 0, 0).unwrap();
    for case in cases {
        let description = case["description"].as_str().unwrap_or("").to_owned();
        let toggle = case["toggleName"].as_str().unwrap_or("");
        if let Some(reason) = unmapped.get(toggle) {
            report.skipped.push((description, reason.clone()));
            continue;
        }
        let evaluation = snapshot.evaluate(toggle, &context(&case["context"]), now);
        let expected = &case["expectedResult"];
        let actual = if expected.is_boolean() {
            json!(evaluation.is_on())
        } else {
            match (evaluation.value, evaluation.variant) {
                (Some(FlagValue::Str(_)), Some(variant)) => {
                    let mut out =
                        json!({"name": variant, "enabled": true, "feature_enabled": true});
                    if let Some(payload) = evaluation.payload {
                        out["payload"] = payload.clone();
                    }
                    out
                }
                _ => json!({"name": "disabled", "enabled": false,
                            "feature_enabled": evaluation.value == Some(FlagValue::Bool(true))}),
            }
        };
        if &actual == expected {
            report.passed += 1;
        } else {
            report.failed.push(format!(
                "{description}: expected {expected}, got {actual} ({evaluation:?})"
            ));
        }
    }
    report
}

#[test]
fn unleash_client_specification() {
    let index: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(spec_dir().join("index.json")).unwrap())
            .unwrap();
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for name in &index {
        let report = run_file(name);
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            report.passed,
            report.failed.len(),
            report.skipped.len()
        );
        for (case, reason) in &report.skipped {
            println!("    skipped: {case} — {reason}");
        }
        for failure in &report.failed {
            println!("    FAILED: {failure}");
        }
        if MUST_PASS.contains(&name.as_str()) {
            assert!(
                report.skipped.is_empty() && report.passed > 0,
                "{name} must run completely: {report:?}"
            );
        }
        passed += report.passed;
        failed.extend(report.failed.iter().map(|f| format!("{name}: {f}")));
        skipped += report.skipped.len();
    }
    println!(
        "total: {passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

// ------------------------------------------------------------ differential

/// xorshift64*: reproducible random contexts without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Ids as they come: digits, uuids, e-mails, non-ASCII.
    fn id(&mut self) -> String {
        const ALPHABET: &[char] = &[
            'a', 'b', 'z', 'A', 'Q', '0', '1', '9', '-', '_', '@', '.', ':', 'é', 'ß', '日', '本',
            '🚀',
        ];
        let len = 1 + self.below(40) as usize;
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

#[test]
fn buckets_and_variants_match_yggdrasil() {
    use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

    let percentages = [0u32, 1, 5, 10, 25, 33, 50, 75, 99, 100];
    let weights = [
        vec![1u32],
        vec![1, 1],
        vec![33, 33, 34],
        vec![1, 49, 50],
        vec![250, 0, 750],
        vec![100, 200, 300, 400],
    ];
    let mut features = Vec::new();
    let mut definitions = Vec::new();
    for percentage in percentages {
        let key = format!("rollout.{percentage}");
        features.push(json!({
            "name": key, "enabled": true,
            "strategies": [{"name": "flexibleRollout", "parameters": {
                "rollout": percentage.to_string(), "stickiness": "userId", "groupId": format!("group-{percentage}")}}],
        }));
        definitions.push(FlagDefinition {
            percentage: Some(percentage),
            stickiness: Stickiness::UserId,
            group_id: Some(format!("group-{percentage}")),
            ..boolean(&key, FlagType::Percentage)
        });
    }
    for (i, weights) in weights.iter().enumerate() {
        let key = format!("variants.{i}");
        let list: Vec<Variant> = weights
            .iter()
            .enumerate()
            .map(|(n, weight)| Variant {
                name: format!("v{n}"),
                weight: *weight,
                payload: None,
            })
            .collect();
        features.push(json!({
            "name": key, "enabled": true, "strategies": [],
            "variants": list.iter().map(|v| json!({"name": v.name, "weight": v.weight, "stickiness": "userId"})).collect::<Vec<_>>(),
        }));
        definitions.push(FlagDefinition {
            default_value: Some(json!("off")),
            variants: list,
            variant_stickiness: Some(Stickiness::UserId),
            ..boolean(&key, FlagType::Variant)
        });
    }
    let state: UpdateMessage =
        serde_json::from_value(json!({"version": 2, "features": features})).unwrap();
    let yggdrasil = EngineState::default();
    assert!(yggdrasil.take_state(state).is_none());
    let (ours, errors) = FlagSnapshot::build(definitions, vec![], |_| None);
    assert!(errors.is_empty(), "{errors:?}");
    let now = Utc::now();

    let mut rng = Rng(0x5eed_f1a9);
    let (mut rollouts, mut on) = (0, 0);
    for _ in 0..2_000 {
        let user = rng.id();
        let their_context = Context {
            user_id: Some(user.clone()),
            ..Context::default()
        };
        let our_context = EvalContext {
            user_id: Some(user.clone()),
            ..EvalContext::default()
        };
        for percentage in percentages {
            let key = format!("rollout.{percentage}");
            let theirs = yggdrasil.is_enabled(&key, &their_context, &None);
            let mine = ours.evaluate(&key, &our_context, now).is_on();
            assert_eq!(mine, theirs, "{key} for user {user:?}");
            let bucket = unleash_yggdrasil::strategy_parsing::normalized_hash(
                &format!("group-{percentage}"),
                &user,
                100,
                0,
            )
            .unwrap();
            assert_eq!(
                rollout_bucket(&format!("group-{percentage}"), &user),
                bucket
            );
            on += usize::from(mine);
            rollouts += 1;
        }
        for (i, weights) in weights.iter().enumerate() {
            let key = format!("variants.{i}");
            let theirs = yggdrasil.get_variant(&key, &their_context, &None);
            let mine = ours.evaluate(&key, &our_context, now);
            assert_eq!(
                mine.variant,
                Some(theirs.name.as_str()),
                "{key} for user {user:?}"
            );
            let total: u32 = weights.iter().sum();
            let bucket = unleash_yggdrasil::strategy_parsing::normalized_hash(
                &key,
                &user,
                total,
                VARIANT_SEED,
            )
            .unwrap();
            assert_eq!(variant_bucket(&key, &user, total), bucket);
        }
    }
    // The rollouts are neither all on nor all off: the comparison is not vacuous.
    assert!(
        on > rollouts / 10 && on < rollouts * 9 / 10,
        "{on} of {rollouts}"
    );
}

/// An enabled flag of `flag_type` with nothing else set.
fn boolean(key: &str, flag_type: FlagType) -> FlagDefinition {
    FlagDefinition {
        key: key.to_owned(),
        flag_type,
        description: String::new(),
        audience: engine::Audience::default(),
        enabled: true,
        archived: false,
        default_value: None,
        percentage: None,
        stickiness: Stickiness::Default,
        group_id: None,
        schedule: None,
        enabled_tenants: vec![],
        disabled_tenants: vec![],
        enabled_users: vec![],
        variants: vec![],
        variant_stickiness: None,
        variant_group_id: None,
        policy: None,
    }
}
