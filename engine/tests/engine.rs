//! The engine's public API driven with real data: the shipped rule files, the
//! seed's detections and platform payloads, and broken or hostile files.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests read the shipped rule files from disk; the engine itself reads none"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::{
    run_cases, CheckKind, DecisionConfig, Detection, FlagPolicy, InteropEvent, Limits,
    LoadErrorKind, LoadOptions, Mapping, MappingSpec, NormalizeError, Outcome, PolicyValue,
    RuleSet, ScriptErrorKind,
};
use serde_json::{json, Value};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// The shipped `rules/` files as `(relative name, text)` pairs.
fn shipped_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kind in ["healing", "interop", "flags"] {
        let dir = rules_dir().join(kind);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{kind}/{}", path.file_name().unwrap().to_string_lossy());
            if engine::is_rule_file(&name) {
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

fn shipped() -> RuleSet {
    RuleSet::load(shipped_files()).unwrap_or_else(|errs| {
        panic!("shipped rules must load: {errs:#?}");
    })
}

// ---------------------------------------------------------------- loading

#[test]
fn shipped_set_loads_with_fingerprints() {
    let set = shipped();
    assert_eq!(set.healing_rules().len(), 4);
    assert_eq!(set.mappings().len(), 6);
    assert!(set.flag_policy("autoheal_auto_apply").is_some());
    assert_eq!(set.files().len(), 11);
    for f in set.files() {
        assert_eq!(f.sha256.len(), 64, "{f:?}");
        let text = shipped_files()
            .into_iter()
            .find(|(n, _)| *n == f.file)
            .unwrap()
            .1;
        assert_eq!(f.sha256, engine::sha256_hex(text.as_bytes()));
    }
    // Snapshot clones share the same data.
    let copy = set.clone();
    assert!(std::ptr::eq(copy.healing_rules(), set.healing_rules()));
}

#[test]
fn rule_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<RuleSet>();
    assert_send_sync::<FlagPolicy>();
    assert_send_sync::<Mapping>();
    let set = shipped();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let set = set.clone();
            std::thread::spawn(move || {
                set.decide(
                    &detection("woocommerce", COLUMN, 95.0),
                    &DecisionConfig::default(),
                )
                .outcome
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Outcome::AutoApply);
    }
}

#[test]
fn shipped_rules_match_the_seed_table() {
    let set = shipped();
    let row = |name: &str| {
        let r = set.healing_rules().iter().find(|r| r.name == name).unwrap();
        (
            r.pattern.as_str(),
            format!("{:?}", r.platforms),
            r.auto_apply,
            r.min_confidence,
            r.patch.as_str(),
        )
    };
    assert_eq!(
        row("outdated_php_dependency"),
        (
            "Fatal error:.*requires PHP.*",
            "Only([Woocommerce, Prestashop])".into(),
            false,
            85.0,
            "php_upgrade_notice"
        )
    );
    assert_eq!(
        row("missing_database_column"),
        (
            // The seed's pattern, widened to MySQL's own wording ("in 'field list'"): every
            // text the seed's matched still matches.
            "Unknown column.*in '?field list",
            "All".into(),
            true,
            90.0,
            "add_missing_column"
        )
    );
    assert_eq!(
        row("memory_limit_exceeded"),
        (
            "Allowed memory size.*exhausted",
            "All".into(),
            false,
            80.0,
            "update_memory_limit"
        )
    );
    assert_eq!(
        row("api_key_expired"),
        (
            "401.*Unauthorized.*API key",
            "All".into(),
            false,
            95.0,
            "api_key_refresh_notice"
        )
    );
}

/// Load one file (name, source) and expect it refused with `needle` in the
/// message and the given line (0 = don't care).
fn check_refused(file: &str, src: &str, line: usize, needle: &str) {
    check_refused_with(file, src, line, needle, &LoadOptions::default())
}

fn check_refused_with(file: &str, src: &str, line: usize, needle: &str, opts: &LoadOptions) {
    let mut files = shipped_files();
    files.push((file.to_string(), src.to_string()));
    let errs = match RuleSet::load_with(files, opts) {
        Ok(_) => panic!("{file} should be refused"),
        Err(e) => e,
    };
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let hit = errs
        .iter()
        .find(|e| e.file == file && e.to_string().contains(needle))
        .unwrap_or_else(|| panic!("no error containing {needle:?} for {file}: {msgs:#?}"));
    if line != 0 {
        assert_eq!(hit.line, line, "{hit}");
    }
    assert!(hit
        .to_string()
        .starts_with(&format!("{file}:{}:{}: ", hit.line, hit.column)));
}

const GOOD_RULE: &str = r#"let rule = #{
    name: "x", pattern: "boom", platforms: ["all"],
    auto_apply: true, min_confidence: 90, patch: "p",
};"#;

#[test]
fn broken_files_are_refused_with_file_line_col() {
    // (file, source, expected line, text the message must contain)
    let cases: &[(&str, &str, usize, &str)] = &[
        ("healing/syntax.rhai", "let rule = #{ name: \"a\",\n  pattern: \"x\" ", 2, "syntax error"),
        ("healing/no_decl.rhai", "let r = #{};", 1, "missing `let rule"),
        ("healing/not_map.rhai", "let rule = 42;", 1, "must be an object map"),
        ("healing/missing.rhai", "let rule = #{\n name: \"m\" };", 1, "missing required field `pattern`"),
        ("healing/type.rhai", "let rule = #{ name: \"t\", pattern: \"a\", platforms: [\"all\"],\n auto_apply: \"yes\", min_confidence: 90, patch: \"p\" };", 2, "`auto_apply` must be a bool"),
        ("healing/conf.rhai", "let rule = #{ name: \"c\", pattern: \"a\", platforms: [\"all\"], auto_apply: true,\n\n min_confidence: 101, patch: \"p\" };", 3, "is 101, must be within 0..=100"),
        ("healing/platform.rhai", "let rule = #{ name: \"pl\", pattern: \"a\",\n platforms: [\"woocommerce\", \"wix\"], auto_apply: true, min_confidence: 90, patch: \"p\" };", 2, "unknown platform `wix`"),
        ("healing/regex.rhai", "let rule = #{ name: \"re\",\n   pattern: \"(unclosed\", platforms: [\"all\"], auto_apply: true, min_confidence: 90, patch: \"p\" };", 2, "invalid regex"),
        ("healing/typo.rhai", "let rule = #{ name: \"ty\", pattern: \"a\", platforms: [\"all\"], auto_apply: true, min_confidence: 90, patch: \"p\",\n  min_confidense: 3 };", 2, "unknown field `min_confidense`"),
        ("healing/dup.rhai", "let rule = #{ name: \"api_key_expired\", pattern: \"a\", platforms: [\"all\"], auto_apply: true, min_confidence: 90, patch: \"p\" };", 1, "duplicate healing rule `api_key_expired`, first declared in healing/api_key_expired.rhai"),
        ("interop/event.rhai", "let mapping = #{ source_platform: \"shopify\", source_event_type: \"x\",\n normalized_event_type: \"order.created\", field_mappings: #{ id: \"order_id\" } };", 2, "unknown normalized event type `order.created`"),
        ("interop/zz_dup.rhai", "let mapping = #{ source_platform: \"shopify\", source_event_type: \"orders/paid\", normalized_event_type: \"payment.succeeded\", field_mappings: #{ id: \"order_id\" } };", 1, "duplicate mapping for `shopify:orders/paid`"),
        ("interop/platform.rhai", "let mapping = #{ source_platform: \"all\", source_event_type: \"x\", normalized_event_type: \"plugin.error\", field_mappings: #{ id: \"order_id\" } };", 1, "unknown platform `all`"),
        ("flags/nofn.rhai", "let flag = #{ name: \"f\" };", 1, "missing required function `evaluate`"),
        ("flags/eval.rhai", "let flag = #{ name: \"f\" };\nfn evaluate(ctx) { eval(\"true\") }", 2, "syntax error"),
        ("healing/import.rhai", "import \"secrets\" as s;\nlet rule = #{};", 1, ""),
        ("README.md", "# hi", 0, "not a rule file"),
    ];
    for (file, src, line, needle) in cases {
        check_refused(file, src, *line, needle);
    }
}

#[test]
fn a_set_with_errors_reports_all_of_them() {
    let files = vec![
        ("healing/a.rhai", "let rule = #{ name: \"a\" };"),
        ("healing/b.rhai", "let rule = "),
        ("healing/c.rhai", GOOD_RULE),
    ];
    let errs = RuleSet::load(files).unwrap_err();
    let files: Vec<&str> = errs.iter().map(|e| e.file.as_str()).collect();
    assert!(
        files.contains(&"healing/a.rhai") && files.contains(&"healing/b.rhai"),
        "{errs:#?}"
    );
    assert!(
        errs.len() >= 6,
        "every missing field of a is reported: {errs:#?}"
    );
}

#[test]
fn runaway_scripts_are_refused_not_hung() {
    let started = Instant::now();
    check_refused(
        "healing/loop.rhai",
        "let x = 0;\nloop { x += 1; }\nlet rule = #{};",
        2,
        "operations limit",
    );
    check_refused(
        "healing/recurse.rhai",
        "fn down(n) { down(n + 1) }\nlet rule = down(0);",
        2,
        "call depth limit",
    );
    check_refused(
        "healing/bigstring.rhai",
        "let s = \"x\";\nwhile true { s += s; }\nlet rule = #{};",
        0,
        "size limit",
    );
    // A wall-clock deadline stops a script even with a huge operations budget.
    let opts = LoadOptions {
        limits: Limits {
            max_operations: u64::MAX / 2,
            ..Limits::default()
        },
        deadline: Some(Instant::now() + Duration::from_millis(50)),
    };
    check_refused_with(
        "healing/slow.rhai",
        "let x = 0;\nloop { x += 1; }",
        2,
        "deadline",
        &opts,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn too_large_regex_is_refused() {
    let src = "let rule = #{ name: \"huge\",\n  pattern: \"\\\\w{100}\", platforms: [\"all\"], auto_apply: true, min_confidence: 90, patch: \"p\" };";
    check_refused(
        "healing/huge.rhai",
        src,
        2,
        "regex compiles to more than 262144 bytes",
    );
    // Same pattern is fine under a bigger limit: the limit is the only reason.
    let opts = LoadOptions {
        limits: Limits {
            regex_size_limit_bytes: 16 << 20,
            ..Limits::default()
        },
        deadline: None,
    };
    assert!(RuleSet::load_with([("healing/huge.rhai", src)], &opts).is_ok());
}

#[test]
fn deep_expressions_are_refused() {
    let deep = format!("let rule = {}1{};", "(".repeat(200), ")".repeat(200));
    check_refused("healing/deep.rhai", &deep, 1, "expression nesting");
}

// ---------------------------------------------------------------- decisions

fn detection(platform: &str, issue: &str, confidence: f64) -> Detection {
    Detection {
        platform: platform.into(),
        plugin_version: Some("1.3.5".into()),
        detected_issue: issue.into(),
        issue_severity: Some("high".into()),
        patch_type: None,
        proposed_patch: None,
        sira_confidence: confidence,
        install: None,
    }
}

const COLUMN: &str = "Fatal error: Unknown column 'merchant_fee' in field list";
const MEMORY: &str = "PHP Fatal error: Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)";
const PHP: &str = "Fatal error: molam-form requires PHP version >= 8.1, running 7.4";
const API_KEY: &str = "HTTP 401 Unauthorized: API key expired";

/// Decide `(platform, issue, confidence)` with a global threshold and check
/// the outcome and winning rule.
fn check(
    set: &RuleSet,
    platform: &str,
    issue: &str,
    conf: f64,
    global: f64,
    outcome: Outcome,
    rule: Option<&str>,
) {
    let cfg = DecisionConfig {
        global_threshold: global,
        deadline: None,
    };
    let d = set.decide(&detection(platform, issue, conf), &cfg);
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (outcome, rule),
        "{platform} {issue:?} at {conf} (global {global}): {:#?}",
        d.trace
    );
    let e = set.explain(&detection(platform, issue, conf), &cfg);
    assert_eq!(
        (e.outcome, e.rule),
        (d.outcome, d.rule),
        "explain agrees with decide"
    );
}

#[test]
fn decisions_at_the_threshold_boundaries() {
    use Outcome::*;
    let set = shipped();
    let col = Some("missing_database_column");
    // missing_database_column: auto_apply, min 90; global 85.
    for (conf, global, outcome) in [
        (84.99, 85.0, PendingReview),
        (85.0, 85.0, PendingReview),
        (89.99, 85.0, PendingReview),
        (90.0, 85.0, AutoApply),
        (100.0, 85.0, AutoApply),
        (0.0, 85.0, PendingReview),
        // The global threshold binds when it is above the rule's minimum.
        (90.0, 95.0, PendingReview),
        (95.0, 95.0, AutoApply),
        (f64::NAN, 85.0, PendingReview),
        (150.0, 85.0, PendingReview),
    ] {
        check(&set, "woocommerce", COLUMN, conf, global, outcome, col);
    }
    // A rule whose minimum is below the global threshold: the global binds.
    let low = RuleSet::load([(
        "healing/low.rhai",
        "let rule = #{ name: \"low\", pattern: \"boom\", platforms: [\"all\"], auto_apply: true, min_confidence: 50, patch: \"p\" };",
    )])
    .unwrap();
    for (conf, outcome) in [
        (84.99, PendingReview),
        (85.0, AutoApply),
        (89.99, AutoApply),
        (90.0, AutoApply),
        (50.0, PendingReview),
    ] {
        check(&low, "generic", "boom", conf, 85.0, outcome, Some("low"));
    }
    // Rules that never auto-apply, whatever the confidence.
    check(
        &set,
        "generic",
        MEMORY,
        99.0,
        85.0,
        PendingReview,
        Some("memory_limit_exceeded"),
    );
    check(
        &set,
        "shopify",
        API_KEY,
        100.0,
        85.0,
        PendingReview,
        Some("api_key_expired"),
    );
    check(
        &set,
        "woocommerce",
        PHP,
        99.0,
        85.0,
        PendingReview,
        Some("outdated_php_dependency"),
    );
    // Platform restriction: the PHP rule is for woocommerce and prestashop only.
    check(
        &set,
        "prestashop",
        PHP,
        99.0,
        85.0,
        PendingReview,
        Some("outdated_php_dependency"),
    );
    check(&set, "shopify", PHP, 99.0, 85.0, NoMatch, None);
    check(&set, "wix", COLUMN, 99.0, 85.0, AutoApply, col);
    check(
        &set,
        "magento",
        "Everything is fine",
        99.0,
        85.0,
        NoMatch,
        None,
    );
}

#[test]
fn decision_carries_params_and_a_readable_trace() {
    let set = shipped();
    let mut det = detection("woocommerce", COLUMN, 92.5);
    det.proposed_patch = Some(
        json!({"type": "database_patch", "action": "add_missing_column", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}),
    );
    let d = set.decide(&det, &DecisionConfig::default());
    assert_eq!(d.outcome, Outcome::AutoApply);
    assert_eq!(d.patch.as_deref(), Some("add_missing_column"));
    assert_eq!(
        Value::Object(d.params.clone()),
        json!({"column": "merchant_fee", "column_type": "DECIMAL(10,2)"})
    );
    let kinds: Vec<CheckKind> = d.trace.iter().map(|c| c.check).collect();
    for k in [
        CheckKind::Pattern,
        CheckKind::Winner,
        CheckKind::AutoApply,
        CheckKind::RuleMinConfidence,
        CheckKind::GlobalThreshold,
    ] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    let min = d
        .trace
        .iter()
        .find(|c| c.check == CheckKind::RuleMinConfidence)
        .unwrap();
    assert_eq!(min.detail, "confidence 92.5 >= rule min_confidence 90");

    let mem = set.decide(
        &detection("generic", MEMORY, 88.0),
        &DecisionConfig::default(),
    );
    // Only what the patch takes: the new limit, double the exhausted one, at least 256M.
    assert_eq!(Value::Object(mem.params), json!({"memory_limit": "256M"}));
    let php = set.decide(
        &detection("woocommerce", PHP, 88.0),
        &DecisionConfig::default(),
    );
    assert_eq!(Value::Object(php.params), json!({"required_php": "8.1"}));
    // explain traces every rule's platform and pattern checks.
    let full = set.explain(&detection("shopify", PHP, 88.0), &DecisionConfig::default());
    assert_eq!(
        full.trace
            .iter()
            .filter(|c| c.check == CheckKind::Pattern)
            .count(),
        3
    );
    assert!(full.trace.iter().any(|c| c.check == CheckKind::Platform
        && !c.passed
        && c.rule.as_deref() == Some("outdated_php_dependency")));
}

#[test]
fn winner_is_priority_then_specificity_then_name() {
    let rule = |(name, pattern, platforms, priority): (&str, &str, &str, i64)| {
        (
            format!("healing/{name}.rhai"),
            format!("let rule = #{{ name: \"{name}\", pattern: \"{pattern}\", platforms: {platforms}, auto_apply: true, min_confidence: 50, patch: \"p_{name}\", priority: {priority} }};"),
        )
    };
    let text = "Fatal error: Unknown column 'x' in field list";
    let decide = |rules: [(&str, &str, &str, i64); 2]| {
        let set = RuleSet::load(rules.map(rule)).unwrap();
        set.decide(
            &detection("magento", text, 99.0),
            &DecisionConfig::default(),
        )
    };
    let check = |rules, winner: &str| assert_eq!(decide(rules).rule.unwrap(), winner);
    let (longer, shorter) = ("Unknown column", "Unknown");
    let (all, magento) = ("[\"all\"]", "[\"magento\"]");
    // Name breaks a full tie.
    check([("b", longer, all, 0), ("a", longer, all, 0)], "a");
    // Longer literal text is more specific.
    check([("a", shorter, all, 0), ("b", longer, all, 0)], "b");
    // Naming the platform beats `all`, even with shorter literal text.
    check([("a", longer, all, 0), ("b", shorter, magento, 0)], "b");
    // Priority beats everything.
    check([("a", longer, magento, 0), ("z", "column", all, 5)], "z");
    // A winner lists the others it beat.
    let d = decide([("a", shorter, all, 0), ("b", longer, all, 0)]);
    assert_eq!(d.matched, vec!["b", "a"]);
}

#[test]
fn a_runaway_params_function_holds_for_review() {
    let src = "let rule = #{ name: \"r\", pattern: \"boom\", platforms: [\"all\"], auto_apply: true, min_confidence: 50, patch: \"p\" };\n\nfn params(d, c) {\n  loop { }\n}";
    let set = RuleSet::load([("healing/r.rhai", src)]).unwrap();
    let started = Instant::now();
    let d = set.decide(
        &detection("generic", "boom", 99.0),
        &DecisionConfig::default(),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(d.outcome, Outcome::PendingReview);
    let p = d
        .trace
        .iter()
        .find(|c| c.check == CheckKind::Params)
        .unwrap();
    assert!(!p.passed);
    assert!(p.detail.starts_with("healing/r.rhai:3:1: "), "{}", p.detail);
    assert!(p.detail.contains("operations limit"), "{}", p.detail);
    // Recursion in params: bounded by the call depth.
    let src = src.replace("loop { }", "params(d, c)");
    let set = RuleSet::load([("healing/r.rhai", src)]).unwrap();
    let d = set.decide(
        &detection("generic", "boom", 99.0),
        &DecisionConfig::default(),
    );
    assert_eq!(d.outcome, Outcome::PendingReview);
    assert!(
        d.trace
            .iter()
            .any(|c| c.detail.contains("call depth limit")),
        "{:#?}",
        d.trace
    );
}

#[test]
fn detection_json_uses_the_seed_field_names() {
    let det: Detection = serde_json::from_value(json!({
        "cms": "woocommerce",
        "detected_issue": COLUMN,
        "issue_severity": "high",
        "patch_type": "database_patch",
        "proposed_patch": {"type": "database_patch", "column": "merchant_fee"},
        "sira_confidence": 92.5
    }))
    .unwrap();
    let d = shipped().decide(&det, &DecisionConfig::default());
    assert_eq!(d.outcome, Outcome::AutoApply);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["outcome"], "auto_apply");
    assert_eq!(v["params"]["column"], "merchant_fee");
}

// ---------------------------------------------------------------- interop

fn event(platform: &str, event_type: &str, payload: Value) -> InteropEvent {
    InteropEvent {
        platform: platform.into(),
        shop: "shop-42".into(),
        event_type: event_type.into(),
        event_id: Some("evt-1".into()),
        time: "2025-01-18T10:00:00Z".parse().unwrap(),
        payload,
    }
}

/// Normalize and compare the type, data and subject.
fn check_normalized(
    set: &RuleSet,
    platform: &str,
    event_type: &str,
    payload: Value,
    ty: &str,
    data: Value,
    subject: &str,
) {
    let n = set
        .normalize(&event(platform, event_type, payload))
        .unwrap_or_else(|e| panic!("{platform} {event_type}: {e}"));
    assert_eq!(n.event_type, ty);
    assert_eq!(Value::Object(n.data), data, "{platform} {event_type}");
    assert_eq!(n.subject.as_deref(), Some(subject));
    assert_eq!(n.specversion, "1.0");
    assert_eq!(n.source, format!("/plugins/{platform}/shop-42"));
}

#[test]
fn seed_mappings_normalize_platform_events() {
    let set = shipped();
    // ((platform, source event), payload, (type, subject), data)
    let cases = [
        (
            ("woocommerce", "woocommerce_checkout_order_processed"),
            json!({"id": "123", "total": 55000, "currency": "XOF"}),
            ("checkout.created", "123"),
            json!({"order_id": "123", "amount": 55000, "currency": "XOF"}),
        ),
        (
            ("woocommerce", "woocommerce_payment_complete"),
            json!({"order_id": 123, "total": "19.99", "currency": "usd"}),
            ("payment.succeeded", "123"),
            json!({"id": 123, "amount": 1999, "currency": "USD"}),
        ),
        (
            ("shopify", "orders/create"),
            json!({"id": 4501, "total_price": "550.00", "currency": "USD", "email": "x@y"}),
            ("checkout.created", "4501"),
            json!({"order_id": 4501, "amount": 55000, "currency": "USD"}),
        ),
        (
            ("shopify", "orders/paid"),
            json!({"id": 4501, "total_price": "12.345", "currency": "KWD"}),
            ("payment.succeeded", "4501"),
            json!({"order_id": 4501, "amount": 12345, "currency": "KWD"}),
        ),
        (
            ("prestashop", "actionValidateOrder"),
            json!({"id_order": 77, "total_paid": 1500.5, "currency": {"iso_code": "EUR"}}),
            ("checkout.created", "77"),
            json!({"order_id": 77, "amount": 150050, "currency": "EUR"}),
        ),
        (
            ("magento", "sales_order_place_after"),
            json!({"entity_id": "000012", "grand_total": 3000, "order_currency_code": "XOF"}),
            ("checkout.created", "000012"),
            json!({"order_id": "000012", "amount": 3000, "currency": "XOF"}),
        ),
    ];
    for ((p, e), payload, (ty, subject), data) in cases {
        check_normalized(&set, p, e, payload, ty, data, subject);
    }
}

#[test]
fn cloudevents_id_is_deterministic_per_platform_shop_and_event() {
    let set = shipped();
    let payload = json!({"id": 1, "total_price": "1.00", "currency": "USD"});
    let a = set
        .normalize(&event("shopify", "orders/create", payload.clone()))
        .unwrap();
    let b = set
        .normalize(&event("shopify", "orders/create", payload.clone()))
        .unwrap();
    assert_eq!(a.id, b.id, "a retried delivery gets the same id");
    let mut other_shop = event("shopify", "orders/create", payload.clone());
    other_shop.shop = "shop-43".into();
    assert_ne!(set.normalize(&other_shop).unwrap().id, a.id);
    let mut other_id = event("shopify", "orders/create", payload);
    other_id.event_id = Some("evt-2".into());
    assert_ne!(set.normalize(&other_id).unwrap().id, a.id);
    assert_eq!(a.id.len(), 36);
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(v["type"], "checkout.created");
    assert_eq!(v["time"], "2025-01-18T10:00:00Z");
    assert_eq!(v["category"], "checkout");
}

#[test]
fn normalization_errors_are_typed() {
    let set = shipped();
    let code =
        |p: &str, e: &str, payload: Value| set.normalize(&event(p, e, payload)).unwrap_err().code();
    assert_eq!(code("shopify", "orders/cancelled", json!({})), "no_mapping");
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"total_price": "1.00", "currency": "USD"})
        ),
        "missing_field"
    );
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"id": 1, "total_price": "1.001", "currency": "USD"})
        ),
        "invalid_amount"
    );
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"id": 1, "total_price": "abc", "currency": "USD"})
        ),
        "invalid_amount"
    );
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"id": 1, "total_price": "1.5", "currency": "XOF"})
        ),
        "invalid_amount"
    );
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"id": 1, "total_price": "1.00", "currency": "ZZZ"})
        ),
        "unknown_currency"
    );
    assert_eq!(
        code(
            "shopify",
            "orders/create",
            json!({"id": 1, "total_price": "1.00"})
        ),
        "missing_field"
    );
    assert_eq!(
        code("shopify", "orders/create", json!([1])),
        "payload_not_object"
    );
    let err = set
        .normalize(&event(
            "prestashop",
            "actionValidateOrder",
            json!({"id_order": 1, "total_paid": 1}),
        ))
        .unwrap_err();
    assert_eq!(
        err,
        NormalizeError::MissingField {
            mapping: "prestashop:actionValidateOrder".into(),
            path: "currency.iso_code".into()
        }
    );
}

#[test]
fn amounts_to_minor_units() {
    let check = |v: Value, exp: u32, want: Result<i64, ()>| {
        assert_eq!(
            engine::to_minor_units(&v, exp).map_err(|_| ()),
            want,
            "{v} exp {exp}"
        );
    };
    check(json!("550.00"), 2, Ok(55000));
    check(json!(550), 2, Ok(55000));
    check(json!(550.5), 2, Ok(55050));
    check(json!(0.1), 2, Ok(10));
    check(json!(55000), 0, Ok(55000));
    check(json!("55000.00"), 0, Ok(55000));
    check(json!("1.234"), 3, Ok(1234));
    check(json!("-5.10"), 2, Ok(-510));
    check(json!(" 7 "), 2, Ok(700));
    check(json!("1.5"), 0, Err(()));
    check(json!("1e3"), 2, Err(()));
    check(json!("."), 2, Err(()));
    check(json!(true), 2, Err(()));
    check(json!("99999999999999999999"), 2, Err(()));
    assert_eq!(engine::currency_exponent("XOF"), Some(0));
    assert_eq!(engine::currency_exponent("USD"), Some(2));
    assert_eq!(engine::currency_exponent("KWD"), Some(3));
}

#[test]
fn mappings_from_data_share_the_validation() {
    // The seed's POST /interop/mappings body.
    let spec: MappingSpec = serde_json::from_value(json!({
        "source_platform": "magento",
        "source_event_type": "sales_order_place_after",
        "normalized_event_type": "checkout.created",
        "field_mappings": {"entity_id": "order_id", "grand_total": "amount", "order_currency_code": "currency", "customer.email": "customer.email"}
    }))
    .unwrap();
    let m = Mapping::from_spec("api:mapping/1", &spec).unwrap();
    let n = m
        .normalize(&event("magento", "sales_order_place_after", json!({"entity_id": 9, "grand_total": "10.50", "order_currency_code": "EUR", "customer": {"email": "a@b"}})))
        .unwrap();
    assert_eq!(
        Value::Object(n.data),
        json!({"order_id": 9, "amount": 1050, "currency": "EUR", "customer": {"email": "a@b"}})
    );
    // Duplicates a shipped mapping: refused when added to the set.
    assert!(shipped().with_mappings(vec![m.clone()]).is_err());
    assert!(RuleSet::empty()
        .with_mappings(vec![m])
        .unwrap()
        .mapping_for("magento", "sales_order_place_after")
        .is_some());

    let errs = Mapping::from_json("api:mapping/2", &json!({
        "source_platform": "wix", "source_event_type": "x", "normalized_event_type": "order.made",
        "field_mappings": {"a": "b"}, "colour": 1
    }))
    .unwrap_err();
    let kinds: Vec<&LoadErrorKind> = errs.iter().map(|e| &e.kind).collect();
    assert!(
        matches!(
            kinds[..],
            [
                LoadErrorKind::UnknownField { .. },
                LoadErrorKind::UnknownPlatform { .. },
                LoadErrorKind::UnknownEventType { .. }
            ]
        ),
        "{kinds:#?}"
    );
    assert!(errs[0]
        .to_string()
        .starts_with("api:mapping/2:0:0: unknown field `colour`"));
}

#[test]
fn transform_handles_what_a_table_cannot() {
    let src = r#"
let mapping = #{
    source_platform: "generic",
    source_event_type: "refund",
    normalized_event_type: "refund.issued",
    field_mappings: #{ "order.id": "order_id", "refund.amount": "amount", "refund.currency": "currency", "lines.0.sku": "first_sku" },
};

// The plain-site plugin sends refunds as negative amounts; we store positive.
fn transform(data, payload) {
    if data.amount.starts_with("-") { data.amount = data.amount.sub_string(1); }
    data.reason = if "reason" in payload { payload.reason } else { "unspecified" };
    data
}
"#;
    let set = RuleSet::load([("interop/generic_refund.rhai", src)]).unwrap();
    let n = set
        .normalize(&event("generic", "refund", json!({"order": {"id": "A1"}, "refund": {"amount": "-12.50", "currency": "EUR"}, "lines": [{"sku": "S1"}]})))
        .unwrap();
    assert_eq!(n.event_type, "refund.issued");
    assert_eq!(n.category, "refund");
    assert_eq!(
        Value::Object(n.data),
        json!({"order_id": "A1", "amount": 1250, "currency": "EUR", "first_sku": "S1", "reason": "unspecified"})
    );

    let looping = src.replace("data.reason =", "loop {}\n    data.reason =");
    let set = RuleSet::load([("interop/generic_refund.rhai", looping)]).unwrap();
    let err = set
        .normalize(&event("generic", "refund", json!({"order": {"id": "A1"}, "refund": {"amount": "1", "currency": "EUR"}, "lines": [{"sku": "S1"}]})))
        .unwrap_err();
    match err {
        NormalizeError::Transform { error, .. } => {
            assert_eq!(
                error.kind,
                ScriptErrorKind::TooManyOperations { limit: 100_000 }
            );
            assert_eq!(
                (error.file.as_str(), error.line),
                ("interop/generic_refund.rhai", 10)
            );
        }
        other => panic!("{other}"),
    }
}

// ---------------------------------------------------------------- flags

#[test]
fn flag_policies_evaluate_in_the_sandbox() {
    let set = shipped();
    let p = set.flag_policy("autoheal_auto_apply").unwrap();
    let check = |ctx: Value, want: bool| {
        assert_eq!(
            p.evaluate(&ctx, None).unwrap(),
            PolicyValue::Bool(want),
            "{ctx}"
        );
    };
    check(json!({"plugin_version": "1.3.5"}), true);
    check(json!({"plugin_version": "1.1.9"}), false);
    check(json!({"plugin_version": "2.0"}), true);
    check(json!({"plugin_version": "2.0", "sensitive": true}), false);
    check(json!({}), false);

    let variant = FlagPolicy::compile(
        "flags/checkout.rhai",
        "let flag = #{ name: \"checkout_v2\" };\nfn evaluate(ctx) { if ctx.platform == \"shopify\" { \"treatment\" } else { false } }",
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        variant
            .evaluate(&json!({"platform": "shopify"}), None)
            .unwrap(),
        PolicyValue::Variant("treatment".into())
    );
    assert_eq!(
        variant
            .evaluate(&json!({"platform": "magento"}), None)
            .unwrap(),
        PolicyValue::Bool(false)
    );

    let bad = FlagPolicy::compile(
        "flags/bad.rhai",
        "let flag = #{ name: \"b\" };\nfn evaluate(ctx) { 42 }",
        &Limits::default(),
    )
    .unwrap();
    let e = bad.evaluate(&json!({}), None).unwrap_err();
    assert!(
        matches!(e.kind, ScriptErrorKind::WrongReturnType { .. }),
        "{e}"
    );

    let spin = FlagPolicy::compile(
        "flags/spin.rhai",
        "let flag = #{ name: \"s\" };\nfn evaluate(ctx) {\n  let n = 0;\n  loop { n += 1; }\n}",
        &Limits {
            max_operations: u64::MAX / 2,
            ..Limits::default()
        },
    )
    .unwrap();
    let e = spin
        .evaluate(&json!({}), Some(Instant::now() + Duration::from_millis(30)))
        .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Deadline);
    assert_eq!(
        e.to_string(),
        "flags/spin.rhai:2:1: script exceeded the wall-clock deadline"
    );
}

// ---------------------------------------------------------------- rules test

fn case_files() -> Vec<(String, String)> {
    let dir = rules_dir().join("tests");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                format!("tests/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn shipped_cases_pass_and_cover_every_rule_and_mapping() {
    let set = shipped();
    let files = case_files();
    let report = run_cases(&set, files.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    assert!(report.ok(), "{report}");
    let all = files.iter().map(|(_, t)| t.as_str()).collect::<String>();
    for r in set.healing_rules() {
        assert!(
            all.contains(&format!("\"rule\": \"{}\"", r.name)),
            "no case for rule {}",
            r.name
        );
    }
    for m in set.mappings() {
        assert!(
            all.contains(&format!("\"event_type\": \"{}\"", m.source_event_type)),
            "no case for mapping {}",
            m.name
        );
    }
}

#[test]
fn failing_cases_show_a_readable_diff() {
    let set = shipped();
    let file = r#"{"cases": [
      {"name": "wrong outcome", "detection": {"platform": "woocommerce", "detected_issue": "Unknown column 'a' in field list", "sira_confidence": 89.99},
       "expect": {"outcome": "auto_apply", "params": {"column": "b"}}},
      {"name": "wrong amount", "event": {"platform": "shopify", "shop": "s", "event_type": "orders/paid", "payload": {"id": 1, "total_price": "5.00", "currency": "USD"}},
       "expect": {"data": {"amount": 5}}},
      {"name": "wrong error", "event": {"platform": "shopify", "shop": "s", "event_type": "orders/paid", "payload": {"total_price": "5.00"}},
       "expect_error": "no_mapping"}
    ]}"#;
    let report = run_cases(&set, [("tests/bad.json", file), ("tests/broken.json", "{")]);
    assert_eq!((report.passed, report.failed), (0, 4));
    let text = report.to_string();
    for needle in [
        "FAIL tests/bad.json :: wrong outcome",
        "outcome: expected \"auto_apply\", got \"pending_review\"",
        "params.column: expected \"b\", got \"a\"",
        "data.amount: expected 5, got 500",
        "error: expected `no_mapping`, got `missing_field`",
        "tests/broken.json:1:1: invalid case file",
        "0 passed, 4 failed",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn the_literal_prefilter_never_changes_a_decision() {
    // Patterns of every shape: shared words, alternations, case-insensitive,
    // no literal at all. `explain` checks every rule without the prefilter.
    let patterns = [
        "Fatal error: (?P<mod>\\\\w+) failed",
        "Fatal error:.*requires PHP",
        "(?i)timeout after \\\\d+s",
        "deadlock|lock wait timeout",
        "^\\\\d{3} ",
        "failed",
        "Unknown column '(?P<column>[^']+)'",
        "gateway (refused|timed out)",
        "[Cc]url error \\\\d+",
        "E\\\\d{4}.*failed",
    ];
    let files: Vec<(String, String)> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let platforms = ["[\"all\"]", "[\"shopify\"]", "[\"woocommerce\", \"magento\"]"][i % 3];
            (
                format!("healing/r{i}.rhai"),
                format!("let rule = #{{ name: \"r{i}\", pattern: \"{p}\", platforms: {platforms}, auto_apply: true, min_confidence: 50, patch: \"p\", priority: {} }};", i % 2),
            )
        })
        .collect();
    let set = RuleSet::load(files).unwrap();
    let texts = [
        "Fatal error: cart failed",
        "fatal error: cart failed",
        "Fatal error: plugin requires PHP 8",
        "TIMEOUT after 30s",
        "Lock wait timeout exceeded",
        "500 Internal",
        "E1234 sync failed",
        "curl error 28",
        "Curl error 7",
        "the gateway timed out",
        "Unknown column 'x' in field list",
        "nothing to see",
        "",
    ];
    for text in texts {
        for platform in ["woocommerce", "shopify", "magento", "generic", "wix"] {
            let d = detection(platform, text, 90.0);
            let fast = set.decide(&d, &DecisionConfig::default());
            let full = set.explain(&d, &DecisionConfig::default());
            assert_eq!(
                (fast.outcome, &fast.rule, &fast.matched, &fast.params),
                (full.outcome, &full.rule, &full.matched, &full.params),
                "{platform} {text:?}"
            );
        }
    }
}

#[test]
fn every_size_limit_has_a_test_that_hits_it() {
    // (file, source, message): arrays, maps, strings and the file itself.
    let cases: &[(&str, String, &str)] = &[
        ("healing/array.rhai", "let a = [];\nfor i in 0..5000 { a.push(i); }\nlet rule = #{};".into(), "size limit"),
        // (Rhai 1.27 checks map size on `+=`, not on `m[new_key] = v`.)
        ("healing/map.rhai", "let m = #{};\nfor i in 0..5000 { let n = #{}; n[`k${i}`] = i; m += n; }\nlet rule = #{};".into(), "size limit"),
        ("healing/meta.rhai", "let rule = #{};\nfor i in 0..5000 { rule[`k${i}`] = i; }".into(), "`rule` has 5000 entries, over 1024"),
        ("healing/string.rhai", "let s = \"ab\";\nfor i in 0..20 { s += s; }\nlet rule = #{};".into(), "size limit"),
        ("healing/big.rhai", format!("// {}\nlet rule = #{{}};", "x".repeat(300 * 1024)), "over the limit of 262144 bytes"),
    ];
    for (file, src, needle) in cases {
        check_refused(file, src, 0, needle);
    }
    // The same scripts pass under larger limits: the limit is the only reason.
    let roomy = LoadOptions {
        limits: Limits {
            max_array_len: 10_000,
            max_map_len: 10_000,
            max_string_bytes: 4 << 20,
            max_source_bytes: 1 << 20,
            ..Limits::default()
        },
        deadline: None,
    };
    for (file, src, _) in cases.iter().filter(|c| c.0 != "healing/meta.rhai") {
        let errs =
            RuleSet::load_with([(file, src.replace("let rule = #{};", GOOD_RULE))], &roomy).err();
        assert!(errs.is_none(), "{file}: {errs:#?}");
    }
}

#[test]
fn the_variable_and_function_caps_are_limits() {
    let limits = |max_variables, max_functions| LoadOptions {
        limits: Limits {
            max_variables,
            max_functions,
            ..Limits::default()
        },
        deadline: None,
    };
    let variables = format!(
        "{}\n{GOOD_RULE}",
        (0..5)
            .map(|i| format!("let v{i} = {i};"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    check_refused_with(
        "healing/vars.rhai",
        &variables,
        5,
        "Too many variables",
        &limits(4, 64),
    );
    assert!(
        RuleSet::load_with([("healing/vars.rhai", variables.as_str())], &limits(8, 64)).is_ok()
    );
    let functions = format!(
        "{}\n{GOOD_RULE}",
        (0..3)
            .map(|i| format!("fn f{i}() {{ {i} }}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    check_refused_with(
        "healing/fns.rhai",
        &functions,
        3,
        "Number of functions defined exceeds maximum limit",
        &limits(256, 2),
    );
    assert!(
        RuleSet::load_with([("healing/fns.rhai", functions.as_str())], &limits(256, 3)).is_ok()
    );
}

#[test]
fn params_may_read_the_install_and_leave_notes_in_the_trace() {
    let column = |install: Option<Value>| {
        let set = shipped();
        let mut d = detection("woocommerce", COLUMN, 92.5);
        d.install = install;
        set.decide(&d, &DecisionConfig::default())
    };
    // The only table without the column is the one to change, and the trace says so.
    let one = column(Some(json!({"tables": {
        "wp_molam_orders": {"id": "BIGINT"},
        "wp_molam_refunds": {"id": "BIGINT", "merchant_fee": "DECIMAL(10,2)"}
    }})));
    assert_eq!(one.params["table"], "wp_molam_orders");
    let note = one
        .trace
        .iter()
        .find(|c| c.check == CheckKind::Params)
        .unwrap();
    assert!(
        note.detail.contains("the only table without merchant_fee"),
        "{note:?}"
    );
    assert!(
        !one.params.keys().any(|k| k.starts_with('_')),
        "{:?}",
        one.params
    );
    // Two candidates, or no state: nothing is guessed.
    let two = column(Some(
        json!({"tables": {"a": {"id": "BIGINT"}, "b": {"id": "BIGINT"}}}),
    ));
    assert!(!two.params.contains_key("table"));
    assert!(!column(None).params.contains_key("table"));
    // `params` takes two or three parameters.
    check_refused(
        "healing/four.rhai",
        &format!("{GOOD_RULE}\nfn params(a, b, c, d) {{ #{{}} }}"),
        0,
        "function `params` must take 3 parameter(s), found 4",
    );
}

#[test]
fn matching_rule_is_the_winner_decide_would_pick() {
    let set = shipped();
    let name = |platform: Option<&str>, text: &str| set.matching_rule(platform, text);
    assert_eq!(name(None, MEMORY), Some("memory_limit_exceeded"));
    assert_eq!(
        name(Some("magento"), COLUMN),
        Some("missing_database_column")
    );
    // A rule for some platforms: not on another, nor on one no rule names; with no
    // platform (an error group of many installs), any platform's rule matches.
    assert_eq!(
        name(Some("woocommerce"), PHP),
        Some("outdated_php_dependency")
    );
    assert_eq!(name(Some("magento"), PHP), None);
    assert_eq!(name(Some("wix"), PHP), None);
    assert_eq!(name(None, PHP), Some("outdated_php_dependency"));
    assert_eq!(name(None, "Fatal error: nothing a rule knows"), None);

    // The same rules and order as a decision, over rules of every shape and platform.
    let rule = |(name, pattern, platforms, priority): (&str, &str, &str, i64)| {
        (
            format!("healing/{name}.rhai"),
            format!("let rule = #{{ name: \"{name}\", pattern: \"{pattern}\", platforms: {platforms}, auto_apply: true, min_confidence: 50, patch: \"p_{name}\", priority: {priority} }};\nfn params(d, c) {{ throw \"never run\"; }}"),
        )
    };
    let set = RuleSet::load(
        [
            ("column", "Unknown column", "[\"all\"]", 0),
            ("column_magento", "Unknown", "[\"magento\"]", 0),
            ("urgent", "column", "[\"shopify\"]", 5),
            ("memory", "(?i)allowed memory", "[\"all\"]", 0),
        ]
        .map(rule),
    )
    .unwrap();
    for text in [
        "Fatal error: Unknown column 'x' in field list",
        "ALLOWED MEMORY size exhausted",
        "Unknown table",
        "nothing",
    ] {
        let mut matched_somewhere = Vec::new();
        for platform in ["woocommerce", "shopify", "magento", "generic", "wix"] {
            let decision = set.decide(&detection(platform, text, 90.0), &DecisionConfig::default());
            assert_eq!(
                set.matching_rule(Some(platform), text),
                decision.rule.as_deref(),
                "{platform} {text:?}"
            );
            matched_somewhere.extend(decision.matched);
        }
        // Any platform: the first rule, in winner order, that matches on some platform.
        let expected = set
            .healing_rules()
            .iter()
            .find(|rule| matched_somewhere.contains(&rule.name))
            .map(|rule| rule.name.as_str());
        assert_eq!(set.matching_rule(None, text), expected, "{text:?}");
    }
}
