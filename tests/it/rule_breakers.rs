//! The rule breaker across tenants (issue 17), on SQLite and PostgreSQL: one merchant's
//! failing patches suspend a rule's auto-apply for that merchant's installs only; the rule
//! is suspended fleet-wide only when the failures come from at least
//! `breaker_min_merchants` merchants; Ops resume either scope; a rule that does not exist
//! cannot be resumed.

use crate::support::{each_store, TestApp};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const AUTOHEAL: &str = "/api/v1/plugins/autoheal";
const RULE: &str = "missing_database_column";

/// An install of the merchant whose key is `key`; returns its id.
async fn install(app: &TestApp, key: &str, site: &str) -> Uuid {
    let body = json!({"cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5",
        "state": {"config": {"memory_limit": "128M"},
                  "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED"}}}});
    let response = app.post("/api/v1/plugins/heartbeat", key, &body).await;
    response.ok()["installation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sira's detection of a missing column in `table`: a table the install does not have
/// makes the patch's dry run refuse it, a failure of the rule's patch.
async fn detect(app: &TestApp, plugin_id: Uuid, table: &str) -> String {
    let body = json!({
        "plugin_id": plugin_id,
        "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
        "issue_severity": "high",
        "patch_type": "database_patch",
        "proposed_patch": {"type": "database_patch", "action": "add_missing_column",
            "table": table, "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
        "sira_confidence": 95.0
    });
    let response = app.post(AUTOHEAL, &app.sira, &body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body["status"].as_str().unwrap().to_owned()
}

async fn breakers(app: &TestApp) -> Vec<Value> {
    let response = app.get(&format!("{AUTOHEAL}/rules"), &app.viewer).await;
    response.ok().as_array().unwrap().clone()
}

async fn resume(app: &TestApp, rule: &str, body: Value) -> crate::support::TestResponse {
    app.post(
        &format!("{AUTOHEAL}/rules/{rule}/resume"),
        &app.operator,
        &body,
    )
    .await
}

#[tokio::test]
async fn one_merchants_failures_suspend_the_rule_for_that_merchant_only() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let (hostile, hostile_key) = app.create_merchant("Hostile Shop").await;
        let (_, other_key) = app.create_merchant("Other Shop").await;
        let hostile_install = install(&app, &hostile_key, "https://hostile.example").await;
        let other = install(&app, &other_key, "https://other.example").await;
        let mine = install(&app, &app.merchant_key, "https://mine.example").await;
        for _ in 0..3 {
            assert_eq!(
                detect(&app, hostile_install, "wp_no_such_table").await,
                "failed"
            );
        }
        // The hostile merchant's own installs wait for Ops now …
        assert_eq!(
            detect(&app, hostile_install, "wp_molam_orders").await,
            "pending_review"
        );
        // … and everyone else's still heal.
        assert_eq!(detect(&app, other, "wp_molam_orders").await, "applied");
        assert_eq!(detect(&app, mine, "wp_molam_orders").await, "applied");
        let listed = breakers(&app).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["rule_name"], RULE);
        assert_eq!(listed[0]["scope"], "merchant");
        assert_eq!(listed[0]["merchant_id"], json!(hostile));
        assert_eq!(listed[0]["suspended"], true);

        // A failure at a second merchant makes it the fleet's problem: 4 of the rule's 6
        // patches failed, at 2 merchants.
        assert_eq!(detect(&app, other, "wp_no_such_table").await, "failed");
        assert_eq!(
            detect(&app, mine, "wp_molam_orders").await,
            "pending_review"
        );
        let fleet: Vec<Value> = breakers(&app)
            .await
            .into_iter()
            .filter(|b| b["scope"] == "fleet")
            .collect();
        assert_eq!(fleet.len(), 1);
        assert_eq!(fleet[0]["suspended"], true);
        assert!(fleet[0]["merchant_id"].is_null());
        assert!(
            fleet[0]["reason"].as_str().unwrap().contains("2 merchants"),
            "{}",
            fleet[0]
        );

        // Resuming the fleet-wide breaker leaves the merchants' own.
        let resumed = resume(&app, RULE, json!({"reason": "Sira fixed its tables"})).await;
        assert_eq!(resumed.ok()["resumed"], true);
        assert_eq!(resumed.body["scope"], "fleet");
        assert_eq!(detect(&app, mine, "wp_molam_orders").await, "applied");
        assert_eq!(
            detect(&app, hostile_install, "wp_molam_orders").await,
            "pending_review"
        );
        let resumed = resume(
            &app,
            RULE,
            json!({"reason": "talked to them", "merchant_id": hostile}),
        )
        .await;
        assert_eq!(resumed.ok()["resumed"], true);
        assert_eq!(resumed.body["merchant_id"], json!(hostile));
        assert_eq!(
            detect(&app, hostile_install, "wp_molam_orders").await,
            "applied"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn only_a_rule_that_exists_can_be_resumed() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let (_, field) = resume(&app, "no_such_rule", json!({"reason": "typo"}))
            .await
            .error(StatusCode::NOT_FOUND);
        assert_eq!(field, None);
        assert!(breakers(&app).await.is_empty(), "nothing was stored");
        // A rule that exists but was never suspended: 200, nothing resumed.
        assert_eq!(
            resume(&app, RULE, json!({"reason": "just in case"}))
                .await
                .ok()["resumed"],
            false
        );
        assert!(
            breakers(&app).await.is_empty(),
            "a resume stores no breaker"
        );
        let (_, field) = resume(
            &app,
            RULE,
            json!({"reason": "x", "merchant_id": "not-a-uuid"}),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("merchant_id"));
        app.store
    })
    .await;
}
