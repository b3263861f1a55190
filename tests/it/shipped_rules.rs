//! Every shipped healing rule against its shipped patch, as Ops meet them: a realistic
//! detection for the rule, on a realistic install, held for review, then approved without
//! an edit, dry-runs clean and queues its command.

use crate::support::{each_store, repo, TestApp};
use api::healing::HealingConfig;
use serde_json::{json, Value};

/// A rule's realistic case: what the install reports, and what Sira sends.
struct Case {
    rule: &'static str,
    heartbeat: Value,
    detected_issue: &'static str,
    patch_type: &'static str,
    proposed_patch: Value,
    /// Below the rule's auto-apply bar, so the detection waits for Ops.
    confidence: f64,
    /// The operation the dry run must plan.
    operation: &'static str,
}

fn cases() -> Vec<Case> {
    let woocommerce = |state: Value, php: &str| {
        json!({"cms": "woocommerce", "site_url": "https://shop.example", "plugin_version": "1.3.5",
               "php_version": php, "state": state})
    };
    let shop = json!({
        "config": {"memory_limit": "128M"},
        "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"}}
    });
    vec![
        Case {
            rule: "missing_database_column",
            heartbeat: woocommerce(shop.clone(), "8.1.27"),
            detected_issue: "SQLSTATE[42S22]: Column not found: 1054 Unknown column 'merchant_fee' in field list",
            patch_type: "database_patch",
            proposed_patch: json!({"type": "database_patch", "action": "add_missing_column",
                                   "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}),
            confidence: 70.0,
            operation: "add_column",
        },
        Case {
            rule: "memory_limit_exceeded",
            heartbeat: woocommerce(shop.clone(), "8.1.27"),
            detected_issue: "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)",
            patch_type: "config_update",
            proposed_patch: json!({"type": "config_update", "target": "memory_limit", "value": "256M"}),
            confidence: 90.0,
            operation: "set_config",
        },
        Case {
            rule: "api_key_expired",
            heartbeat: woocommerce(shop.clone(), "8.1.27"),
            detected_issue: "Molam API answered 401 Unauthorized: the API key has expired",
            patch_type: "notify",
            proposed_patch: json!({"type": "notify"}),
            confidence: 90.0,
            operation: "notify_merchant",
        },
        Case {
            rule: "outdated_php_dependency",
            heartbeat: woocommerce(shop, "7.4.33"),
            detected_issue: "PHP Fatal error: Molam Form requires PHP 8.1 or newer (this site runs 7.4.33)",
            patch_type: "notify",
            proposed_patch: json!({"type": "notify"}),
            confidence: 80.0,
            operation: "notify_merchant",
        },
    ]
}

#[test]
fn every_shipped_rule_has_a_case() {
    let rules = api::rules::load_rule_set(&repo().join("rules"), &engine::Limits::default())
        .expect("the shipped rules load");
    let mut shipped: Vec<&str> = rules
        .healing_rules()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    shipped.sort();
    let mut covered: Vec<&str> = cases().iter().map(|c| c.rule).collect();
    covered.sort();
    assert_eq!(shipped, covered);
}

#[tokio::test]
async fn every_shipped_rule_is_approved_as_it_stands() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        for case in cases() {
            let id = app.heartbeat(case.heartbeat.clone()).await;
            let detection = app
                .post(
                    "/api/v1/plugins/autoheal",
                    &app.sira,
                    &json!({"plugin_id": id, "detected_issue": case.detected_issue,
                            "patch_type": case.patch_type, "proposed_patch": case.proposed_patch,
                            "sira_confidence": case.confidence}),
                )
                .await;
            let log = &detection.ok()["log"];
            assert_eq!(log["rule_name"], case.rule, "{log}");
            assert_eq!(log["status"], "pending_review", "{}: {log}", case.rule);
            let path = format!(
                "/api/v1/plugins/autoheal/{}/apply",
                log["id"].as_str().unwrap()
            );
            let approved = app
                .call(axum::http::Method::POST, &path, Some(&app.operator), None)
                .await;
            let body = approved.ok();
            assert_eq!(body["status"], "ok", "{}: {body}", case.rule);
            assert_eq!(body["log"]["status"], "approved", "{}: {body}", case.rule);
            let operations = body["log"]["operations"].as_array().unwrap();
            assert!(
                operations.iter().any(|op| op["op"] == case.operation),
                "{}: {body}",
                case.rule
            );
        }
        app.store
    })
    .await;
}
