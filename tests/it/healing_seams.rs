//! The healing loop where its parts meet, on SQLite and PostgreSQL: a detection whose
//! parameters the install's state completes, one that waits for Ops with what it needs, the
//! rule breaker counting only what ran in the sandbox, and decisions that read as what
//! happened.

use crate::support::{each_store, TestApp};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const AUTOHEAL: &str = "/api/v1/plugins/autoheal";

/// A WooCommerce install reporting these tables (each without `merchant_fee`).
fn install(site: &str, tables: &[&str]) -> Value {
    let tables: serde_json::Map<String, Value> = tables
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"}),
            )
        })
        .collect();
    json!({"cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5",
           "state": {"config": {"memory_limit": "128M"}, "tables": tables}})
}

/// Seed 001's example detection: the column and its type, no table.
fn seed_detection(plugin_id: Uuid, detected_issue: &str) -> Value {
    json!({
        "plugin_id": plugin_id,
        "detected_issue": detected_issue,
        "issue_severity": "high",
        "patch_type": "database_patch",
        "proposed_patch": {"type": "database_patch", "action": "add_missing_column",
                           "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
        "sira_confidence": 92.5
    })
}

const SEED_ISSUE: &str = "Fatal error: Unknown column 'merchant_fee' in field list";

async fn detect(app: &TestApp, body: &Value) -> Value {
    let response = app.post(AUTOHEAL, &app.sira, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

fn params_note(decision: &Value) -> String {
    decision["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "params")
        .map(|c| c["detail"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_install_state_completes_a_detection_when_the_answer_is_unique() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        // One table, and it lacks the column: the table is that one.
        let single = app.heartbeat(install("https://one.example", &["wp_molam_orders"])).await;
        let answer = detect(&app, &seed_detection(single, SEED_ISSUE)).await;
        assert_eq!(answer["status"], "applied", "{answer}");
        let log = &answer["log"];
        assert_eq!(log["patch_params"]["table"], "wp_molam_orders");
        assert!(params_note(&log["decision"]).contains("wp_molam_orders"), "{log}");
        // Two tables lack it, but the error text names one.
        let two = app
            .heartbeat(install("https://two.example", &["wp_molam_orders", "wp_molam_refunds"]))
            .await;
        let named = "SQLSTATE[42S22]: Column not found: 1054 Unknown column 'merchant_fee' in field list \
                     (SQL: insert into `wp_molam_refunds` (`amount`, `merchant_fee`) values (10, 1))";
        let answer = detect(&app, &seed_detection(two, named)).await;
        assert_eq!(answer["status"], "applied", "{answer}");
        assert_eq!(answer["log"]["patch_params"]["table"], "wp_molam_refunds");
        app.store
    })
    .await;
}

#[tokio::test]
async fn an_incomplete_detection_waits_for_ops_and_never_trips_the_breaker() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let two = app
            .heartbeat(install("https://two.example", &["wp_molam_orders", "wp_molam_refunds"]))
            .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let answer = detect(&app, &seed_detection(two, SEED_ISSUE)).await;
            assert_eq!(answer["status"], "pending_review", "{answer}");
            let decision = &answer["log"]["decision"];
            assert_eq!(decision["needs"], json!(["table"]), "{decision}");
            assert_eq!(decision["outcome"], "pending_review", "{decision}");
            assert!(answer["log"]["failure_kind"].is_null());
            held.push(answer["log"]["id"].as_str().unwrap().to_owned());
        }
        // An install that never reported its state fails before the sandbox: not the
        // patch's fault either.
        let blind = app
            .heartbeat(json!({"cms": "woocommerce", "site_url": "https://blind.example", "plugin_version": "1.3.5"}))
            .await;
        let mut complete = seed_detection(blind, SEED_ISSUE);
        complete["proposed_patch"]["table"] = json!("wp_molam_orders");
        for _ in 0..3 {
            let answer = detect(&app, &complete).await;
            assert_eq!(answer["log"]["failure_kind"], "no_snapshot", "{answer}");
        }
        let breakers = app.get(&format!("{AUTOHEAL}/rules"), &app.viewer).await;
        assert!(
            breakers.ok().as_array().unwrap().iter().all(|b| b["suspended"] == false),
            "{}",
            breakers.body
        );
        let one = app.heartbeat(install("https://one.example", &["wp_molam_orders"])).await;
        assert_eq!(detect(&app, &seed_detection(one, SEED_ISSUE)).await["status"], "applied");

        // Ops give what was missing; the rule's other parameters stay.
        let approved = app
            .post(
                &format!("{AUTOHEAL}/{}/apply", held[0]),
                &app.operator,
                &json!({"patch": {"params": {"table": "wp_molam_refunds"}}}),
            )
            .await;
        let log = &approved.ok()["log"];
        assert_eq!(log["status"], "approved", "{log}");
        assert_eq!(
            log["patch_params"],
            json!({"table": "wp_molam_refunds", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"})
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_decision_reads_as_what_happened() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let one = app
            .heartbeat(install("https://one.example", &["wp_molam_orders"]))
            .await;
        app.state
            .store
            .set_rule_breaker(
                "missing_database_column",
                api::healing::BreakerScope::Fleet,
                true,
                "tripped",
                None,
                app.clock.now(),
            )
            .await
            .unwrap();
        let answer = detect(&app, &seed_detection(one, SEED_ISSUE)).await;
        assert_eq!(answer["status"], "pending_review");
        let decision = &answer["log"]["decision"];
        assert_eq!(decision["outcome"], "pending_review", "{decision}");
        assert_eq!(decision["auto_apply_suspended"], true);

        // A replay answers with the first answer's status, and the log's status now.
        let mut keyed = seed_detection(one, SEED_ISSUE);
        keyed["idempotency_key"] = json!("sira-1");
        let first = detect(&app, &keyed).await;
        assert_eq!(first["status"], "pending_review");
        let id = first["log"]["id"].as_str().unwrap();
        app.post(
            &format!("{AUTOHEAL}/{id}/reject"),
            &app.operator,
            &json!({"reason": "not ours"}),
        )
        .await
        .ok();
        let replay = app.post(AUTOHEAL, &app.sira, &keyed).await;
        assert_eq!(replay.status, StatusCode::OK);
        assert_eq!(replay.body["replayed"], true);
        assert_eq!(replay.body["status"], "pending_review", "{}", replay.body);
        assert_eq!(replay.body["current_status"], "rejected", "{}", replay.body);
        app.store
    })
    .await;
}

/// The `flag` check of a decision's trace.
fn flag_check(decision: &Value) -> Value {
    decision["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "flag")
        .cloned()
        .unwrap_or_else(|| panic!("no flag check in {decision}"))
}

#[tokio::test]
async fn the_auto_apply_flag_holds_old_plugins_and_sensitive_installs_for_ops() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let flag = |answer: &Value| answer["flags"]["autoheal.auto_apply"].clone();

        // A plugin before 1.2: the policy says no, and the decision says why.
        let mut old = install("https://old.example", &["wp_molam_orders"]);
        old["plugin_version"] = json!("1.1.9");
        let beat = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &old).await;
        assert_eq!(flag(&beat.body), false, "{}", beat.body);
        let old_id: Uuid = beat.body["installation_id"].as_str().unwrap().parse().unwrap();
        let answer = detect(&app, &seed_detection(old_id, SEED_ISSUE)).await;
        assert_eq!(answer["status"], "pending_review", "{answer}");
        let decision = &answer["log"]["decision"];
        assert_eq!(decision["outcome"], "pending_review");
        assert_eq!(decision["auto_apply_flag"]["value"], false, "{decision}");
        let check = flag_check(decision);
        assert_eq!(check["passed"], false);
        assert!(check["detail"].as_str().unwrap().contains("held for Ops"), "{check}");

        // A current plugin auto-applies, until Ops mark the install sensitive.
        let site = install("https://shop.example", &["wp_molam_orders"]);
        let id = app.heartbeat(site.clone()).await;
        let properties = format!("/api/v1/plugins/{id}/properties");
        let mark = |value: Value| json!({"properties": {"sensitive": value}, "reason": "merchant asked for reviews"});
        let marked = app
            .call(axum::http::Method::PATCH, &properties, Some(&app.operator), Some(&mark(json!(true))))
            .await;
        assert_eq!(marked.ok()["properties"], json!({"sensitive": true}));
        let beat = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &site).await;
        assert_eq!(flag(&beat.body), false, "the heartbeat's flags read the property too");
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["properties"], json!({"sensitive": true}));
        let held = detect(&app, &seed_detection(id, SEED_ISSUE)).await;
        assert_eq!(held["status"], "pending_review", "{held}");
        assert_eq!(held["log"]["decision"]["outcome"], "pending_review");
        assert_eq!(flag_check(&held["log"]["decision"])["passed"], false);

        // Unmarked (a null removes the property), it auto-applies again.
        let unmarked = app
            .call(axum::http::Method::PATCH, &properties, Some(&app.operator), Some(&mark(Value::Null)))
            .await;
        assert_eq!(unmarked.ok()["properties"], json!({}));
        let applied = detect(&app, &seed_detection(id, SEED_ISSUE)).await;
        assert_eq!(applied["status"], "applied", "{applied}");
        let check = flag_check(&applied["log"]["decision"]);
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(applied["log"]["decision"]["auto_apply_flag"]["value"], true);

        // Each change is audited, with its reason.
        let audit = app.get("/api/v1/audit", &app.admin).await;
        let changes: Vec<Value> = audit
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["action"] == "install.properties")
            .cloned()
            .collect();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[1]["details"]["changes"], json!({"sensitive": true}));
        assert_eq!(changes[1]["details"]["reason"], "merchant asked for reviews");
        assert_eq!(changes[0]["target_id"], json!(id.to_string()));

        // What is refused, by field, and changes nothing.
        let patch = |token: &str, body: Value| {
            let path = properties.clone();
            let token = token.to_owned();
            let app = &app;
            async move { app.call(axum::http::Method::PATCH, &path, Some(&token), Some(&body)).await }
        };
        patch(&app.viewer, mark(json!(true))).await.error(StatusCode::FORBIDDEN);
        for (body, field) in [
            (json!({"properties": {"plugin_version": "9.9.9"}, "reason": "x"}), "properties.plugin_version"),
            (json!({"properties": {"tier": {"a": 1}}, "reason": "x"}), "properties.tier"),
            (json!({"properties": {"Bad-Name": true}, "reason": "x"}), "properties.Bad-Name"),
            (json!({"properties": {}, "reason": "x"}), "properties"),
            (json!({"properties": {"sensitive": true}, "reason": " "}), "reason"),
            (json!({"properties": {"sensitive": true}}), "reason"),
        ] {
            let response = patch(&app.operator, body.clone()).await;
            let (_, named) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(named.as_deref(), Some(field), "{body}: {}", response.body);
        }
        let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("p{i}"), json!(i))).collect();
        let response = patch(&app.operator, json!({"properties": many, "reason": "x"})).await;
        assert_eq!(response.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("properties"));
        let nobody = format!("/api/v1/plugins/{}/properties", Uuid::now_v7());
        app.call(axum::http::Method::PATCH, &nobody, Some(&app.operator), Some(&mark(json!(true))))
            .await
            .error(StatusCode::NOT_FOUND);
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["properties"], json!({}));
        // The bound holds for what the install would hold, not only for one request.
        let full: serde_json::Map<String, Value> = (0..32).map(|i| (format!("p{i}"), json!(i))).collect();
        patch(&app.operator, json!({"properties": full, "reason": "x"})).await.ok();
        let response = patch(&app.operator, mark(json!(true))).await;
        assert_eq!(response.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("properties"));
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["properties"].as_object().unwrap().len(), 32);
        app.store
    })
    .await;
}
