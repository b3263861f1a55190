//! Flag evaluation through the public API: the six types, every step of the
//! seed's order at its boundaries, the OpenFeature result shape, the
//! definitions file format and its errors, and the shipped platform flags.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests read the shipped flag files from disk; the engine itself reads none"
)]

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use engine::{
    load_flag_files, parse_flag_file, ErrorCode, EvalContext, FlagDefinition, FlagOverride,
    FlagPolicy, FlagSnapshot, Limits, OverrideScope, Reason, RuleSet, ValueType,
};
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 18, 10, 0, 0).unwrap()
}

fn definition(value: Value) -> FlagDefinition {
    serde_json::from_value(value).expect("definition")
}

fn context(value: Value) -> EvalContext {
    serde_json::from_value(value).expect("context")
}

fn snapshot(definitions: Vec<Value>, overrides: Vec<(&str, &str, &str, Value)>) -> FlagSnapshot {
    let overrides = overrides
        .into_iter()
        .map(|(key, scope, target, value)| FlagOverride {
            flag_key: key.to_owned(),
            scope: if scope == "user" {
                OverrideScope::User
            } else {
                OverrideScope::Tenant
            },
            target: target.to_owned(),
            value,
        })
        .collect::<Vec<_>>();
    let (snapshot, errors) =
        FlagSnapshot::build(definitions.into_iter().map(definition), overrides, |_| None);
    assert!(errors.is_empty(), "{errors:?}");
    snapshot
}

/// Evaluates `key` at `at` and compares `{value, variant, reason, error_code}`.
#[track_caller]
fn check_at(snapshot: &FlagSnapshot, key: &str, ctx: Value, at: DateTime<Utc>, expected: Value) {
    let evaluation = snapshot.evaluate(key, &context(ctx.clone()), at);
    let actual = json!({
        "value": evaluation.value,
        "variant": evaluation.variant,
        "reason": evaluation.reason,
        "error_code": evaluation.error_code,
    });
    assert_eq!(actual, expected, "{key} for {ctx}");
}

#[track_caller]
fn check(snapshot: &FlagSnapshot, key: &str, ctx: Value, expected: Value) {
    check_at(snapshot, key, ctx, now(), expected)
}

fn result(value: Value, reason: &str) -> Value {
    json!({"value": value, "variant": null, "reason": reason, "error_code": null})
}

fn variant(name: &str, reason: &str) -> Value {
    json!({"value": name, "variant": name, "reason": reason, "error_code": null})
}

fn error(code: &str) -> Value {
    json!({"value": null, "variant": null, "reason": "ERROR", "error_code": code})
}

#[test]
fn boolean_flags_are_on_for_everyone_until_disabled_or_archived() {
    let flags = snapshot(
        vec![
            json!({"key": "on", "type": "boolean"}),
            json!({"key": "off", "type": "boolean", "enabled": false}),
            json!({"key": "archived", "type": "boolean", "archived": true}),
            json!({"key": "safe_on", "type": "boolean", "enabled": false, "default_value": true}),
        ],
        vec![("off", "user", "u1", json!(true))],
    );
    check(&flags, "on", json!({}), result(json!(true), "STATIC"));
    // Step 1 comes before the user override.
    check(
        &flags,
        "off",
        json!({"user_id": "u1"}),
        result(json!(false), "DISABLED"),
    );
    check(
        &flags,
        "archived",
        json!({}),
        result(json!(false), "DISABLED"),
    );
    check(
        &flags,
        "safe_on",
        json!({}),
        result(json!(true), "DISABLED"),
    );
    check(&flags, "missing", json!({}), error("FLAG_NOT_FOUND"));
}

#[test]
fn percentage_boundaries_and_stickiness() {
    let flags = snapshot(
        vec![
            json!({"key": "p0", "type": "percentage", "percentage": 0}),
            json!({"key": "p100", "type": "percentage", "percentage": 100}),
            json!({"key": "p100_user", "type": "percentage", "percentage": 100, "stickiness": "user_id"}),
            // Unleash spec 10: group "Feature.flexibleRollout.10", user 174 is
            // in the 10 %, user 499 is not.
            json!({"key": "p10", "type": "percentage", "percentage": 10, "group_id": "Feature.flexibleRollout.10"}),
            json!({"key": "p10_tenant", "type": "percentage", "percentage": 10, "stickiness": "tenant_id",
                   "group_id": "Feature.flexibleRollout.10"}),
            json!({"key": "p10_prop", "type": "percentage", "percentage": 10, "stickiness": "site",
                   "group_id": "Feature.flexibleRollout.10"}),
        ],
        vec![],
    );
    for user in ["a", "b", "174", "499"] {
        check(
            &flags,
            "p0",
            json!({"user_id": user}),
            result(json!(false), "DEFAULT"),
        );
        check(
            &flags,
            "p100",
            json!({"user_id": user}),
            result(json!(true), "SPLIT"),
        );
    }
    // No stickiness value: only 100 % under default stickiness includes the caller.
    check(&flags, "p100", json!({}), result(json!(true), "SPLIT"));
    check(
        &flags,
        "p100_user",
        json!({}),
        result(json!(false), "DEFAULT"),
    );
    check(&flags, "p10", json!({}), result(json!(false), "DEFAULT"));
    check(
        &flags,
        "p10",
        json!({"user_id": "174"}),
        result(json!(true), "SPLIT"),
    );
    check(
        &flags,
        "p10",
        json!({"user_id": "499"}),
        result(json!(false), "DEFAULT"),
    );
    // Default stickiness falls back to the session.
    check(
        &flags,
        "p10",
        json!({"session_id": "174"}),
        result(json!(true), "SPLIT"),
    );
    check(
        &flags,
        "p10",
        json!({"user_id": "499", "session_id": "174"}),
        result(json!(false), "DEFAULT"),
    );
    check(
        &flags,
        "p10_tenant",
        json!({"tenant_id": "174", "user_id": "499"}),
        result(json!(true), "SPLIT"),
    );
    check(
        &flags,
        "p10_prop",
        json!({"properties": {"site": "174"}}),
        result(json!(true), "SPLIT"),
    );
    // A number is hashed as its text.
    check(
        &flags,
        "p10_prop",
        json!({"properties": {"site": 174}}),
        result(json!(true), "SPLIT"),
    );
    check(
        &flags,
        "p10_prop",
        json!({"properties": {"site": {"id": 1}}}),
        error("INVALID_CONTEXT"),
    );
}

#[test]
fn schedule_window_is_start_inclusive_end_exclusive() {
    let start = now();
    let end = now() + Duration::hours(2);
    let flags = snapshot(
        vec![
            json!({"key": "holiday", "type": "schedule", "schedule": {"start": start, "end": end}}),
        ],
        vec![("holiday", "user", "u1", json!(true))],
    );
    let tick = Duration::microseconds(1);
    check_at(
        &flags,
        "holiday",
        json!({}),
        start - tick,
        result(json!(false), "DEFAULT"),
    );
    check_at(
        &flags,
        "holiday",
        json!({}),
        start,
        result(json!(true), "TARGETING_MATCH"),
    );
    check_at(
        &flags,
        "holiday",
        json!({}),
        end - tick,
        result(json!(true), "TARGETING_MATCH"),
    );
    check_at(
        &flags,
        "holiday",
        json!({}),
        end,
        result(json!(false), "DEFAULT"),
    );
    // Step 2 comes before the overrides.
    check_at(
        &flags,
        "holiday",
        json!({"user_id": "u1"}),
        end,
        result(json!(false), "DEFAULT"),
    );
}

#[test]
fn overrides_then_tenant_lists_then_users_then_rollout() {
    let flags = snapshot(
        vec![json!({
            "key": "wise", "type": "tenant_list",
            "enabled_tenants": ["rawdog", "both", "t6"], "disabled_tenants": ["blocked", "both"],
            "enabled_users": ["beta"], "percentage": 0,
        })],
        vec![
            ("wise", "user", "vip", json!(true)),
            ("wise", "user", "banned", json!(false)),
            ("wise", "tenant", "blocked", json!(true)),
            ("wise", "tenant", "rawdog", json!(false)),
        ],
    );
    let on = || result(json!(true), "TARGETING_MATCH");
    let off = || result(json!(false), "TARGETING_MATCH");
    // 3. The user override beats the tenant override and every list.
    check(
        &flags,
        "wise",
        json!({"user_id": "vip", "tenant_id": "rawdog"}),
        on(),
    );
    check(
        &flags,
        "wise",
        json!({"user_id": "banned", "tenant_id": "both"}),
        off(),
    );
    // 4. The tenant override beats the lists.
    check(&flags, "wise", json!({"tenant_id": "blocked"}), on());
    check(
        &flags,
        "wise",
        json!({"tenant_id": "rawdog", "user_id": "beta"}),
        off(),
    );
    // 5. Disabled tenants beat enabled tenants and enabled users.
    check(&flags, "wise", json!({"tenant_id": "both"}), off());
    // 6. Enabled tenants.
    check(
        &flags,
        "wise",
        json!({"tenant_id": "t6", "user_id": "x"}),
        on(),
    );
    check(
        &flags,
        "wise",
        json!({"tenant_id": "both", "user_id": "beta"}),
        off(),
    );
    // 7. Enabled users.
    check(
        &flags,
        "wise",
        json!({"tenant_id": "other", "user_id": "beta"}),
        on(),
    );
    // 8. Then the rollout (0 %): default.
    check(
        &flags,
        "wise",
        json!({"tenant_id": "other", "user_id": "x"}),
        result(json!(false), "DEFAULT"),
    );
}

#[test]
fn enabled_tenants_without_override() {
    let flags = snapshot(
        vec![
            json!({"key": "wise", "type": "tenant_list", "enabled_tenants": ["rawdog"]}),
            json!({"key": "beta", "type": "user_list", "enabled_users": ["user_123"]}),
            json!({"key": "all_but", "type": "tenant_list", "disabled_tenants": ["noisy"]}),
        ],
        vec![],
    );
    // Only a deny list: on for every other tenant.
    check(
        &flags,
        "all_but",
        json!({"tenant_id": "noisy"}),
        result(json!(false), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "all_but",
        json!({"tenant_id": "quiet"}),
        result(json!(true), "STATIC"),
    );
    check(&flags, "all_but", json!({}), result(json!(true), "STATIC"));
    check(
        &flags,
        "wise",
        json!({"tenant_id": "rawdog"}),
        result(json!(true), "TARGETING_MATCH"),
    );
    // 10. Lists that match no one: default.
    check(
        &flags,
        "wise",
        json!({"tenant_id": "other"}),
        result(json!(false), "DEFAULT"),
    );
    check(&flags, "wise", json!({}), result(json!(false), "DEFAULT"));
    check(
        &flags,
        "beta",
        json!({"user_id": "user_123"}),
        result(json!(true), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "beta",
        json!({"user_id": "user_124"}),
        result(json!(false), "DEFAULT"),
    );
}

#[test]
fn variants_split_by_weight_and_overrides_name_a_variant() {
    let flags = snapshot(
        vec![
            // Unleash spec 08, Feature.Variants.D: users 712, 525, 537 get v1, v2, v3.
            json!({"key": "Feature.Variants.D", "type": "variant", "default_value": "control",
                   "variant_stickiness": "user_id",
                   "variants": [{"name": "variant1", "weight": 1}, {"name": "variant2", "weight": 49},
                                {"name": "variant3", "weight": 50, "payload": {"v": 3}}]}),
            json!({"key": "flow", "type": "variant", "default_value": "v1", "percentage": 0,
                   "enabled_tenants": ["t1"],
                   "variants": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 1}]}),
        ],
        vec![("Feature.Variants.D", "tenant", "t9", json!("variant1"))],
    );
    check(
        &flags,
        "Feature.Variants.D",
        json!({"user_id": "712"}),
        variant("variant1", "SPLIT"),
    );
    check(
        &flags,
        "Feature.Variants.D",
        json!({"user_id": "525"}),
        variant("variant2", "SPLIT"),
    );
    check(
        &flags,
        "Feature.Variants.D",
        json!({"user_id": "537"}),
        variant("variant3", "SPLIT"),
    );
    check(
        &flags,
        "Feature.Variants.D",
        json!({"user_id": "537", "tenant_id": "t9"}),
        variant("variant1", "TARGETING_MATCH"),
    );
    // No stickiness value: the first variant with a weight.
    check(
        &flags,
        "Feature.Variants.D",
        json!({}),
        variant("variant1", "SPLIT"),
    );
    let payload = flags
        .evaluate(
            "Feature.Variants.D",
            &context(json!({"user_id": "537"})),
            now(),
        )
        .payload;
    assert_eq!(payload, Some(&json!({"v": 3})));
    // A targeted tenant gets the split (v1 weighs 0); others are outside the 0 % rollout.
    check(
        &flags,
        "flow",
        json!({"tenant_id": "t1", "user_id": "a"}),
        variant("v2", "TARGETING_MATCH"),
    );
    check(
        &flags,
        "flow",
        json!({"tenant_id": "t2", "user_id": "a"}),
        variant("v1", "DEFAULT"),
    );
}

#[test]
fn typed_resolution_reports_type_mismatch() {
    let flags = snapshot(
        vec![
            json!({"key": "b", "type": "boolean"}),
            json!({"key": "v", "type": "variant", "default_value": "x", "variants": [{"name": "x", "weight": 1}]}),
        ],
        vec![],
    );
    let ctx = EvalContext::default();
    let as_string = flags
        .evaluate("b", &ctx, now())
        .expecting(ValueType::String);
    assert_eq!(
        (as_string.reason, as_string.error_code),
        (Reason::Error, Some(ErrorCode::TypeMismatch))
    );
    let as_bool = flags
        .evaluate("v", &ctx, now())
        .expecting(ValueType::Boolean);
    assert_eq!(as_bool.error_code, Some(ErrorCode::TypeMismatch));
    let fine = flags
        .evaluate("b", &ctx, now())
        .expecting(ValueType::Boolean);
    assert_eq!(fine.error_code, None);
}

#[test]
fn policy_sits_after_overrides_and_gates_the_rest() {
    let policy = FlagPolicy::compile(
        "flags/plugin_gate.rhai",
        r#"let flag = #{ name: "plugin_gate" };
           fn evaluate(ctx) {
               if "plugin_version" in ctx && ctx.plugin_version == "0.9.0" { return false; }
               if "cms" in ctx && ctx.cms == "shopify" { return "v2"; }
               if "cms" in ctx && ctx.cms == "broken" { return "no-such-variant"; }
               true
           }"#,
        &Limits::default(),
    )
    .unwrap();
    let definitions = [
        json!({"key": "gated", "type": "user_list", "enabled_users": ["u1"], "policy": "plugin_gate"}),
        json!({"key": "gated_variant", "type": "variant", "default_value": "v1", "policy": "plugin_gate",
               "variants": [{"name": "v1", "weight": 1}, {"name": "v2", "weight": 0}]}),
        json!({"key": "dangling", "type": "boolean", "policy": "not_loaded"}),
    ];
    let overrides = vec![FlagOverride {
        flag_key: "gated".into(),
        scope: OverrideScope::User,
        target: "u2".into(),
        value: json!(true),
    }];
    let (flags, errors) =
        FlagSnapshot::build(definitions.into_iter().map(definition), overrides, |name| {
            (name == "plugin_gate").then_some(&policy)
        });
    assert!(errors.is_empty());
    let old = json!({"plugin_version": "0.9.0"});
    check(
        &flags,
        "gated",
        json!({"user_id": "u1", "properties": old}),
        result(json!(false), "TARGETING_MATCH"),
    );
    // The user override comes first.
    check(
        &flags,
        "gated",
        json!({"user_id": "u2", "properties": old}),
        result(json!(true), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "gated",
        json!({"user_id": "u1"}),
        result(json!(true), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "gated",
        json!({"user_id": "u3"}),
        result(json!(false), "DEFAULT"),
    );
    check(
        &flags,
        "gated_variant",
        json!({"properties": {"cms": "shopify"}}),
        variant("v2", "TARGETING_MATCH"),
    );
    check(
        &flags,
        "gated_variant",
        json!({"properties": {"cms": "broken"}}),
        error("GENERAL"),
    );
    check(&flags, "dangling", json!({}), error("GENERAL"));
}

#[test]
fn snapshot_reports_bad_overrides_and_keeps_the_rest() {
    let overrides = vec![
        FlagOverride {
            flag_key: "nope".into(),
            scope: OverrideScope::User,
            target: "u".into(),
            value: json!(true),
        },
        FlagOverride {
            flag_key: "b".into(),
            scope: OverrideScope::User,
            target: "u".into(),
            value: json!("x"),
        },
    ];
    let (flags, errors) = FlagSnapshot::build(
        vec![definition(json!({"key": "b", "type": "boolean"}))],
        overrides,
        |_| None,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(flags.len(), 1);
}

/// Validation names the field.
#[track_caller]
fn check_invalid(flag: Value, field: &str) {
    let text = json!({"flags": [{"key": "ok", "type": "boolean"}, flag]}).to_string();
    let errors = parse_flag_file("flags/platform.json", &text).expect_err("must be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "flags/platform.json");
    assert_eq!(errors[0].field, field, "{errors:?}");
}

#[test]
fn definitions_are_validated_naming_file_and_field() {
    check_invalid(
        json!({"key": "a", "type": "percentage"}),
        "flags[1].percentage",
    );
    check_invalid(
        json!({"key": "a", "type": "percentage", "percentage": 101}),
        "flags[1].percentage",
    );
    check_invalid(
        json!({"key": "a", "type": "percent", "percentage": 1}),
        "flags[1].type",
    );
    check_invalid(json!({"key": "a b", "type": "boolean"}), "flags[1].key");
    check_invalid(json!({"key": "ok", "type": "boolean"}), "flags[1].key");
    check_invalid(
        json!({"key": "a", "type": "boolean", "colour": 1}),
        "flags[1].colour",
    );
    check_invalid(
        json!({"key": "a", "type": "boolean", "default_value": "on"}),
        "flags[1].default_value",
    );
    check_invalid(
        json!({"key": "a", "type": "tenant_list"}),
        "flags[1].enabled_tenants",
    );
    check_invalid(
        json!({"key": "a", "type": "user_list", "enabled_users": [""]}),
        "flags[1].enabled_users[0]",
    );
    check_invalid(json!({"key": "a", "type": "schedule"}), "flags[1].schedule");
    check_invalid(
        json!({"key": "a", "type": "schedule", "schedule": {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}}),
        "flags[1].schedule.end",
    );
    check_invalid(
        json!({"key": "a", "type": "variant", "variants": [{"name": "x", "weight": 1}]}),
        "flags[1].default_value",
    );
    check_invalid(
        json!({"key": "a", "type": "variant", "default_value": "x", "variants": [{"name": "x", "weight": 0}]}),
        "flags[1].variants",
    );
    check_invalid(
        json!({"key": "a", "type": "variant", "default_value": "x",
               "variants": [{"name": "x", "weight": 1}, {"name": "x", "weight": 1}]}),
        "flags[1].variants[1].name",
    );
    check_invalid(
        json!({"key": "a", "type": "boolean", "variants": [{"name": "x", "weight": 1}]}),
        "flags[1].variants",
    );
    let not_json = parse_flag_file("flags/x.json", "{").unwrap_err();
    assert_eq!(
        (not_json[0].file.as_str(), not_json[0].field.as_str()),
        ("flags/x.json", "")
    );
}

#[test]
fn a_key_in_two_files_is_refused() {
    let one = json!({"flags": [{"key": "a", "type": "boolean"}]}).to_string();
    let errors = load_flag_files([
        ("flags/one.json", one.as_str()),
        ("flags/two.json", one.as_str()),
    ])
    .unwrap_err();
    assert_eq!(errors[0].file, "flags/two.json");
    assert!(errors[0].message.contains("flags/one.json"), "{errors:?}");
    // Other files of the tree are not flag files.
    assert!(load_flag_files([("healing/x.json", "not json")])
        .unwrap()
        .is_empty());
}

#[test]
fn shipped_platform_flags_load_with_their_policies() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut files = Vec::new();
    let mut rhai = Vec::new();
    for entry in std::fs::read_dir(rules.join("flags")).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("flags/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        if engine::is_rule_file(&name) {
            rhai.push((name.clone(), text.clone()));
        }
        files.push((name, text));
    }
    let definitions: Vec<FlagDefinition> = load_flag_files(files)
        .expect("shipped flag files are valid")
        .into_iter()
        .map(|(_, definition)| definition)
        .collect();
    let keys: Vec<&str> = definitions.iter().map(|d| d.key.as_str()).collect();
    for key in [
        "platform.maintenance_mode",
        "platform.new_tenant_signup",
        "checkout.new_flow",
        "checkout.express_pay",
        "payments.wise_enabled",
        "payments.instant_payouts",
        "mcp.streaming_enabled",
        "mcp.tools_v2",
        "ai.review_moderation",
        "ai.product_descriptions",
        "creators.v2_portal",
        "creators.self_service_onboarding",
        "admin.realtime_dashboard",
        "admin.ai_insights",
    ] {
        assert!(keys.contains(&key), "{key} is not shipped");
    }
    let set = RuleSet::load(rhai).expect("flag policies load");
    let (flags, errors) = FlagSnapshot::build(definitions, vec![], |name| set.flag_policy(name));
    assert!(errors.is_empty(), "{errors:?}");
    check(
        &flags,
        "payments.wise_enabled",
        json!({"tenant_id": "rawdog"}),
        result(json!(true), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "platform.maintenance_mode",
        json!({}),
        result(json!(false), "DISABLED"),
    );
    check(
        &flags,
        "autoheal.auto_apply",
        json!({"properties": {"plugin_version": "1.1.0"}}),
        result(json!(false), "TARGETING_MATCH"),
    );
    check(
        &flags,
        "autoheal.auto_apply",
        json!({"properties": {"plugin_version": "1.2.0"}}),
        result(json!(true), "STATIC"),
    );
}
