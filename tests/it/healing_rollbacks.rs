//! What a plugin's acks do to a healing log, on SQLite and PostgreSQL: an apply that
//! failed with nothing in effect ends `failed` and queues nothing; one that failed part way
//! rolls back exactly what it applied; a rollback is `rolling_back` until the plugin acks
//! it, then `rolled_back`, or `rollback_failed` with a critical alert; a plan with nothing
//! to do is `not_needed` and queues nothing; the stats count each patch by what became of
//! it.

use crate::support::{each_store, repo, rules, start_time, TestApp};
use api::healing::patches::PatchRegistry;
use api::healing::HealingConfig;
use api::ops::AlertChannels;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use uuid::Uuid;

const AUTOHEAL: &str = "/api/v1/plugins/autoheal";
const MISSING_COLUMN: &str = "Fatal error: Unknown column 'merchant_fee' in field list";
const TWO_STEP_FAULT: &str = "Two step fault: the fee column and the timeout";

fn heartbeat(site: &str, orders: Value) -> Value {
    json!({"cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5",
           "state": {"config": {"memory_limit": "128M"}, "tables": {"wp_molam_orders": orders}}})
}

fn orders() -> Value {
    json!({"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"})
}

fn detection(plugin_id: Uuid, issue: &str) -> Value {
    json!({
        "plugin_id": plugin_id,
        "detected_issue": issue,
        "issue_severity": "high",
        "patch_type": "database_patch",
        "proposed_patch": {"type": "database_patch", "action": "add_missing_column", "table": "wp_molam_orders",
                           "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
        "sira_confidence": 95.0
    })
}

/// A patch of two operations (add the fee column, raise a timeout) for the install
/// [`heartbeat`] describes, and a rule that auto-applies it; with the shipped rules and
/// bundles. Its module returns a fixed plan: it is only ever run against that state.
fn two_step_patch(dir: &Path) -> PatchRegistry {
    let patch = dir.join("two_step");
    std::fs::create_dir_all(&patch).unwrap();
    std::fs::write(
        patch.join("patch.json"),
        json!({
            "name": "two_step", "patch_type": "database_patch",
            "description": "Adds the fee column, then raises the payment timeout.",
            "platforms": ["woocommerce"], "plugin_versions": ">=1.0.0",
            "operations": ["add_column", "set_config"],
            "limits": {"fuel": 1000000, "max_memory_bytes": 1048576, "deadline_ms": 50, "max_output_bytes": 65536},
            "params_schema": {}
        })
        .to_string(),
    )
    .unwrap();
    let output = json!({
        "operations": [
            {"op": "add_column", "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
            {"op": "set_config", "key": "payment.timeout_ms", "value": 60000}
        ],
        "state": {
            "config": {"memory_limit": "128M", "payment.timeout_ms": 60000},
            "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)", "merchant_fee": "DECIMAL(10,2)"}},
            "platform": "woocommerce", "plugin_version": "1.3.5"
        }
    })
    .to_string();
    let escaped = output.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (if (i32.gt_u (global.get $bump) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (data (i32.const 16) "{escaped}")
  (func (export "run") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))))"#,
        output.len()
    );
    std::fs::write(patch.join("patch.wat"), wat).unwrap();
    host::tools::build_patch(&patch).unwrap();
    let keys = dir.join("keys");
    host::tools::write_keys(
        &keys,
        &host::SigningKey::from_seed(&[3; 32]),
        host::tools::KeyRole::Root,
    )
    .unwrap();
    let bundles = dir.join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    for shipped in std::fs::read_dir(repo().join("patches/bundles")).unwrap() {
        let shipped = shipped.unwrap().path();
        std::fs::copy(&shipped, bundles.join(shipped.file_name().unwrap())).unwrap();
    }
    host::tools::sign_patch_to_file(
        &patch,
        &keys.join(host::tools::PRIVATE_KEY_FILE),
        "1.0.0",
        chrono::Duration::days(1826),
        start_time(),
        &bundles.join("two_step-1.0.0.bundle.json"),
    )
    .unwrap();
    let trusted = host::tools::load_trusted_keys(&[
        repo().join("patches/dev-key/autoheal.pub"),
        keys.join(host::tools::PUBLIC_KEY_FILE),
    ])
    .unwrap();
    let host = host::Host::new(host::HostConfig::default()).unwrap();
    let registry = PatchRegistry::load(host, &bundles, trusted, start_time());
    assert!(
        registry.status(start_time()).refused.is_empty(),
        "{:?}",
        registry.status(start_time()).refused
    );
    registry
}

/// The shipped rules and one more: [`TWO_STEP_FAULT`] auto-applies `two_step`.
fn two_step_rules(dir: &Path) -> api::rules::Rules {
    let copy = dir.join("rules");
    for kind in ["healing", "flags", "interop"] {
        let from = repo().join("rules").join(kind);
        std::fs::create_dir_all(copy.join(kind)).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
                std::fs::copy(&file, copy.join(kind).join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::write(
        copy.join("healing/two_step.rhai"),
        r#"let rule = #{
    name: "two_step",
    description: "Add the fee column and raise the timeout",
    pattern: "Two step fault",
    platforms: ["all"],
    auto_apply: true,
    min_confidence: 50,
    patch: "two_step",
};
"#,
    )
    .unwrap();
    rules(&copy)
}

async fn app_with_two_step(app: TestApp, dir: &Path, alerts: AlertChannels) -> TestApp {
    let (registry, rule_set) = (two_step_patch(dir), two_step_rules(dir));
    app.rebuilt(|parts| {
        parts
            .rules(rule_set)
            .patches(registry)
            .config(api::ServerConfig {
                alerts,
                ..api::ServerConfig::default()
            })
    })
    .await
}

async fn detect(app: &TestApp, body: &Value) -> Value {
    let response = app.post(AUTOHEAL, &app.sira, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body.clone()
}

async fn poll(app: &TestApp, plugin_id: Uuid) -> Vec<Value> {
    app.get(
        &format!("{AUTOHEAL}/commands/{plugin_id}"),
        &app.merchant_key,
    )
    .await
    .ok()
    .as_array()
    .unwrap()
    .clone()
}

fn ack_path(command: &Value) -> String {
    format!(
        "{AUTOHEAL}/commands/{}/ack",
        command["id"].as_str().unwrap()
    )
}

async fn ack(app: &TestApp, command: &Value, body: Value) -> Value {
    let response = app.post(&ack_path(command), &app.merchant_key, &body).await;
    response.ok().clone()
}

async fn log(app: &TestApp, id: &Value) -> Value {
    let response = app
        .get(&format!("{AUTOHEAL}/{}", id.as_str().unwrap()), &app.viewer)
        .await;
    response.ok().clone()
}

async fn stats(app: &TestApp) -> Value {
    app.get(&format!("{AUTOHEAL}/stats?days=30"), &app.viewer)
        .await
        .ok()
        .clone()
}

#[tokio::test]
async fn a_failed_apply_with_nothing_in_effect_ends_failed_and_queues_nothing() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        // The snapshot lacks the column; the merchant's real database has it, so the
        // plugin's ALTER TABLE fails. A rollback's drop_column would drop the merchant's
        // column and its data.
        let install = app.heartbeat(heartbeat("https://shop.example", orders())).await;
        let answer = detect(&app, &detection(install, MISSING_COLUMN)).await;
        assert_eq!(answer["status"], "applied", "{answer}");
        let commands = poll(&app, install).await;
        let command = &commands[0];
        assert_eq!(command["command_type"], "apply_patch");

        // The ack must say what is in effect.
        for (result, message) in [
            (json!({"error": "Duplicate column name 'merchant_fee'"}), "must say how many"),
            (json!({"error": "x", "applied_operations": 2}), "from 0 to 1"),
            (json!({"error": "x", "applied_operations": -1}), "from 0 to 1"),
            (json!({"error": "x", "applied_operations": "1"}), "from 0 to 1"),
        ] {
            let response = app
                .post(&ack_path(command), &app.merchant_key, &json!({"success": false, "result": result}))
                .await;
            let (code, field) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!((code.as_str(), field.as_deref()), ("invalid_field", Some("result.applied_operations")));
            assert!(response.body.to_string().contains(message), "{}", response.body);
        }
        let success_with_less = app
            .post(&ack_path(command), &app.merchant_key, &json!({"success": true, "result": {"applied_operations": 0}}))
            .await;
        success_with_less.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(log(&app, &answer["log"]["id"]).await["status"], "approved", "a refused ack changes nothing");

        let failed = json!({"success": false, "result": {"error": "Duplicate column name 'merchant_fee'", "applied_operations": 0}});
        assert_eq!(ack(&app, command, failed.clone()).await["repeated"], false);
        let failed_log = log(&app, &answer["log"]["id"]).await;
        assert_eq!(failed_log["status"], "failed", "{failed_log}");
        assert_eq!(failed_log["failure_kind"], "plugin_failed");
        assert_eq!(failed_log["applied_operations"], 0);
        assert_eq!(failed_log["restore_operations"], json!([]));
        assert!(failed_log["rollback_trigger"].is_null());
        assert!(poll(&app, install).await.is_empty(), "no rollback queued");
        // The same ack again is a repeat.
        assert_eq!(ack(&app, command, failed).await["repeated"], true);
        // Ops cannot roll back what is not in effect.
        let refused = app
            .post(&format!("{AUTOHEAL}/{}/rollback", answer["log"]["id"].as_str().unwrap()), &app.operator, &json!({"reason": "undo"}))
            .await;
        refused.error(StatusCode::CONFLICT);
        assert!(refused.body.to_string().contains("nothing to roll back"), "{}", refused.body);

        let stats = stats(&app).await;
        assert_eq!((stats["failed"].as_i64(), stats["rolled_back"].as_i64()), (Some(1), Some(0)), "{stats}");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_failed_apply_rolls_back_exactly_what_it_applied() {
    each_store(|store| async {
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let app = app_with_two_step(app, dir.path(), AlertChannels::default()).await;
        let install = app.heartbeat(heartbeat("https://shop.example", orders())).await;
        let answer = detect(&app, &detection(install, TWO_STEP_FAULT)).await;
        assert_eq!(answer["status"], "applied", "{answer}");
        let planned = &answer["log"]["operations"];
        assert_eq!(planned.as_array().unwrap().len(), 2, "{planned}");
        let commands = poll(&app, install).await;

        // The column was added, then setting the timeout failed.
        let body = json!({"success": false, "result": {"error": "options table is read-only", "applied_operations": 1}});
        ack(&app, &commands[0], body).await;
        let partial = log(&app, &answer["log"]["id"]).await;
        assert_eq!(partial["status"], "rolling_back", "{partial}");
        assert_eq!(partial["rollback_trigger"], "failed_ack");
        assert_eq!(partial["applied_operations"], 1);
        assert_eq!(partial["failure_reason"], "options table is read-only");
        let undo_the_column = json!([{"op": "drop_column", "table": "wp_molam_orders", "column": "merchant_fee"}]);
        assert_eq!(partial["restore_operations"], undo_the_column);
        let rollback = poll(&app, install).await;
        assert_eq!(rollback.len(), 1);
        assert_eq!(rollback[0]["command_type"], "rollback");
        assert_eq!(rollback[0]["command_payload"]["restore_operations"], undo_the_column, "the timeout was never set: nothing restores it");
        assert!(partial["rolled_back_at"].is_null(), "not rolled back before the plugin says so");

        ack(&app, &rollback[0], json!({"success": true})).await;
        let done = log(&app, &answer["log"]["id"]).await;
        assert_eq!(done["status"], "rolled_back", "{done}");
        assert!(done["rolled_back_at"].is_string());
        // A failed patch, counted once as failed, whatever became of its partial rollback.
        let stats = stats(&app).await;
        assert_eq!((stats["failed"].as_i64(), stats["rolled_back"].as_i64()), (Some(1), Some(0)), "{stats}");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_rollback_is_rolling_back_until_the_plugin_acks_it() {
    let receiver = crate::support::Receiver::start().await;
    each_store(|store| async {
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let channels = AlertChannels {
            webhook_url: Some(format!("{}/alerts", receiver.base)),
            ..AlertChannels::default()
        };
        let app = app_with_two_step(app, dir.path(), channels).await;
        let install = app.heartbeat(heartbeat("https://shop.example", orders())).await;
        let answer = detect(&app, &detection(install, TWO_STEP_FAULT)).await;
        let id = answer["log"]["id"].clone();
        let commands = poll(&app, install).await;
        ack(&app, &commands[0], json!({"success": true})).await;
        let applied = log(&app, &id).await;
        assert_eq!((applied["status"].as_str(), applied["applied_operations"].as_i64()), (Some("applied"), Some(2)));

        let rollback_path = format!("{AUTOHEAL}/{}/rollback", id.as_str().unwrap());
        let asked = app
            .post(&rollback_path, &app.operator, &json!({"reason": "checkout slower since"}))
            .await;
        assert_eq!(asked.ok()["log"]["status"], "rolling_back", "{}", asked.body);
        assert!(asked.body["log"]["rollback_requested_at"].is_string());
        assert!(asked.body["log"]["rolled_back_at"].is_null());
        assert_eq!(stats(&app).await["rolled_back"], 0, "not before the plugin acks");
        assert_eq!(stats(&app).await["rolling_back"], 1);
        app.post(&rollback_path, &app.operator, &json!({"reason": "again"}))
            .await
            .error(StatusCode::CONFLICT);

        // The plugin fails to roll back: rollback_failed, and a critical alert.
        let rollback = poll(&app, install).await;
        assert_eq!(
            rollback[0]["command_payload"]["restore_operations"],
            json!([{"op": "unset_config", "key": "payment.timeout_ms"},
                   {"op": "drop_column", "table": "wp_molam_orders", "column": "merchant_fee"}])
        );
        ack(&app, &rollback[0], json!({"success": false, "result": {"error": "ALTER TABLE timed out"}})).await;
        let failed = log(&app, &id).await;
        assert_eq!(failed["status"], "rollback_failed", "{failed}");
        assert_eq!(failed["rollback_failure_reason"], "ALTER TABLE timed out");
        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await;
        let alert = alerts
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "AutoHealRollbackFailed")
            .cloned()
            .unwrap_or_else(|| panic!("no rollback alert: {}", alerts.body));
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["labels"]["healing_log_id"], id);
        assert!(alert["summary"].as_str().unwrap().contains("ALTER TABLE timed out"), "{alert}");
        let queued: i64 = app
            .store
            .count("SELECT COUNT(*) FROM outbox_messages WHERE source_type = 'alert' AND channel = 'webhook'")
            .await;
        assert_eq!(queued, 1, "dispatched to the alert webhook");
        let stats_now = stats(&app).await;
        assert_eq!(stats_now["rollback_failed"], 1, "{stats_now}");

        // Ops ask again; this time it completes.
        let again = app
            .post(&rollback_path, &app.operator, &json!({"reason": "retry after the lock cleared"}))
            .await;
        assert_eq!(again.ok()["log"]["status"], "rolling_back");
        assert!(again.body["log"]["rollback_failure_reason"].is_null());
        let retry = poll(&app, install).await;
        assert_eq!(retry.len(), 1);
        ack(&app, &retry[0], json!({"success": true})).await;
        let done = log(&app, &id).await;
        assert_eq!(done["status"], "rolled_back", "{done}");
        assert!(done["rolled_back_at"].is_string());
        let stats = stats(&app).await;
        assert_eq!((stats["rolled_back"].as_i64(), stats["rollback_failed"].as_i64()), (Some(1), Some(0)), "{stats}");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_plan_with_nothing_to_do_is_not_needed_and_queues_nothing() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let mut with_fee = orders();
        with_fee["merchant_fee"] = json!("DECIMAL(10,2)");
        let install = app
            .heartbeat(heartbeat("https://shop.example", with_fee))
            .await;
        let answer = detect(&app, &detection(install, MISSING_COLUMN)).await;
        assert_eq!(answer["status"], "not_needed", "{answer}");
        let recorded = &answer["log"];
        assert_eq!(recorded["status"], "not_needed");
        assert_eq!(recorded["operations"], json!([]));
        assert!(recorded["snapshot_id"].is_null());
        assert!(poll(&app, install).await.is_empty(), "nothing queued");

        // The same through Ops' approval.
        let mut held = detection(install, MISSING_COLUMN);
        held["sira_confidence"] = json!(70.0);
        let pending = detect(&app, &held).await;
        assert_eq!(pending["status"], "pending_review");
        let approved = app
            .post(
                &format!(
                    "{AUTOHEAL}/{}/apply",
                    pending["log"]["id"].as_str().unwrap()
                ),
                &app.operator,
                &json!({}),
            )
            .await;
        assert_eq!(
            approved.ok()["log"]["status"],
            "not_needed",
            "{}",
            approved.body
        );
        assert_eq!(approved.body["status"], "not_needed");
        assert_eq!(
            approved.body["message"],
            "Nothing to do: the install already has what the patch would change; nothing was queued"
        );
        assert!(poll(&app, install).await.is_empty());
        let stats = stats(&app).await;
        assert_eq!(
            (
                stats["not_needed"].as_i64(),
                stats["total_patches"].as_i64()
            ),
            (Some(2), Some(0)),
            "{stats}"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn logs_an_older_server_marked_rolled_back_take_the_state_their_rollback_reached() {
    crate::support::each_store_before(8, |store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        // What a server before migration 0009 left, written as it wrote it (today's code
        // reads columns a schema this old does not have): four auto-applied patches, told
        // apart by Sira's confidence. Three were marked rolled_back the moment their
        // rollback was queued, whatever the plugin then said; one is applied.
        let sqlite = app.store.url.starts_with("sqlite:");
        let id = |n: u128| {
            let id = Uuid::from_u128(n);
            if sqlite {
                format!("X'{}'", id.simple())
            } else {
                format!("'{id}'")
            }
        };
        let (install, merchant) = (id(1), id(app.merchant_id.as_u128()));
        let at = "'2025-01-18T10:00:00Z'";
        app.store
            .execute(&format!(
                "INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, version_key, \
                   environment, reported_state, first_seen_at, last_heartbeat) \
                 VALUES ({install}, {merchant}, 'woocommerce', 'https://shop.example', '1.3.5', '1.3.5', 'production', \
                   '{}', {at}, {at})",
                heartbeat("https://shop.example", orders())["state"]
            ))
            .await;
        let operations = r#"[{"op": "add_column", "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}]"#;
        let rolled_back = "status = 'rolled_back', rollback_trigger = 'ops', rollback_reason = 'undo', \
                           rolled_back_at = '2025-01-18T10:20:00Z'";
        let applied = "status = 'applied', applied_at = '2025-01-18T10:10:00Z'";
        let issue = MISSING_COLUMN.replace('\'', "''");
        let mut ids = Vec::new();
        for (n, (confidence, log, command)) in [
            (91, rolled_back, "command_type = 'rollback', status = 'pending'"),
            (92, rolled_back, "command_type = 'rollback', status = 'succeeded', acked_at = '2025-01-18T10:30:00Z', ack_result = '{}'"),
            (93, rolled_back, r#"command_type = 'rollback', status = 'failed', acked_at = '2025-01-18T10:30:00Z', ack_result = '{"error": "table locked"}'"#),
            (94, applied, "status = 'succeeded', acked_at = '2025-01-18T10:10:00Z', ack_result = '{}'"),
        ]
        .into_iter()
        .enumerate()
        {
            let (log_id, command_id) = (10 + n as u128, 20 + n as u128);
            ids.push(json!(Uuid::from_u128(log_id).to_string()));
            let (log_id, command_id) = (id(log_id), id(command_id));
            app.store
                .execute(&format!(
                    "INSERT INTO plugin_auto_healing_logs (id, installation_id, merchant_id, cms, plugin_version, \
                       detected_issue, issue_severity, sira_confidence, request_sha256, status, auto_applied, \
                       rule_name, decision, patch_name, patch_version, operations, restore_operations, \
                       created_at, updated_at) \
                     VALUES ({log_id}, {install}, {merchant}, 'woocommerce', '1.3.5', '{issue}', 'high', \
                       {confidence}, 'sha', 'approved', TRUE, 'missing_database_column', '{{}}', \
                       'add_missing_column', '1.0.2', '{operations}', '[]', {at}, {at})"
                ))
                .await;
            app.store
                .execute(&format!("UPDATE plugin_auto_healing_logs SET {log} WHERE id = {log_id}"))
                .await;
            app.store
                .execute(&format!(
                    "INSERT INTO plugin_commands (id, installation_id, healing_log_id, command_type, \
                       command_payload, priority, status, issued_at) \
                     VALUES ({command_id}, {install}, {log_id}, 'apply_patch', '{{}}', 8, 'pending', {at})"
                ))
                .await;
            app.store
                .execute(&format!("UPDATE plugin_commands SET {command} WHERE id = {command_id}"))
                .await;
        }

        app.state.store.migrate().await.expect("0009 migrates");
        let [pending, succeeded, failed, applied] = [0, 1, 2, 3].map(|i| ids[i].clone());
        let pending = log(&app, &pending).await;
        assert_eq!(pending["status"], "rolling_back", "{pending}");
        assert!(pending["rolled_back_at"].is_null());
        assert_eq!(pending["rollback_requested_at"], "2025-01-18T10:20:00Z");
        let succeeded = log(&app, &succeeded).await;
        assert_eq!(succeeded["status"], "rolled_back", "{succeeded}");
        assert_eq!(succeeded["rolled_back_at"], "2025-01-18T10:30:00Z");
        let failed = log(&app, &failed).await;
        assert_eq!(failed["status"], "rollback_failed", "{failed}");
        assert_eq!(failed["rollback_failure_reason"], "table locked");
        assert_eq!(log(&app, &applied).await["applied_operations"], 1);
        let kept = app.store.count("SELECT COUNT(*) FROM plugin_commands").await;
        assert_eq!(kept, 4, "every command still names its log");
        // The rebuilt table takes the new states (SQLite's CHECK is the new one).
        let install = app.heartbeat(heartbeat("https://shop.example", orders())).await;
        assert_eq!(install, Uuid::from_u128(1));
        let again = detect(&app, &detection(install, MISSING_COLUMN)).await;
        assert_eq!(again["status"], "applied");
        app.store
    })
    .await;
}
