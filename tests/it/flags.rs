//! Feature flags end to end: the `/api/platform/flags` API on every backend
//! (create, validation naming the field, permissions, overrides, the kill
//! switch and its audit, file flags and the store's precedence), evaluation
//! for every kind of caller, flags in heartbeat replies, cross-replica
//! invalidation on PostgreSQL, staged rollouts with a manual clock, and
//! `autoheal flags eval`.

use crate::support::{
    each_app, each_store, json_stdout, serve_refusal, start_time, TestApp, TestStore, POSTGRES_ENV,
};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const FLAGS: &str = "/api/platform/flags";

fn shipped_rules() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
}

impl TestApp {
    /// Creates a flag as an operator.
    async fn create_flag(&self, flag: Value) {
        self.post(FLAGS, &self.operator, &flag).await.ok();
    }

    async fn patch(&self, path: &str, token: &str, body: &Value) -> crate::support::TestResponse {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Evaluates one flag with `token` and returns `(value, reason, error_code)`.
    async fn evaluate(&self, token: &str, key: &str, context: Value) -> (Value, Value, Value) {
        let response = self
            .post(
                &format!("{FLAGS}/evaluate"),
                token,
                &json!({"key": key, "context": context}),
            )
            .await;
        let body = response.ok();
        (
            body["value"].clone(),
            body["reason"].clone(),
            body["error_code"].clone(),
        )
    }
}

/// A write is refused with `status`, naming `field` when given.
async fn check_refused(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
    status: StatusCode,
    field: Option<&str>,
) {
    let response = app
        .call(method.clone(), path, Some(token), Some(&body))
        .await;
    let (_, named) = response.error(status);
    assert_eq!(
        named.as_deref(),
        field,
        "{method} {path} {body}: {}",
        response.body
    );
}

#[tokio::test]
async fn flags_are_created_validated_and_guarded_by_permissions() {
    each_app(|app| async move {
        let flag = json!({"key": "checkout.one_click", "type": "percentage", "percentage": 30,
                          "stickiness": "tenant_id", "description": "One-click checkout"});
        let created = app.post(FLAGS, &app.operator, &flag).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["source"], "store");
        assert_eq!(created.body["version"], 1);
        assert!(created.body["updated_by"].is_string() && created.body["updated_at"].is_string(), "{}", created.body);
        let again = app.post(FLAGS, &app.operator, &flag).await;
        again.error(StatusCode::CONFLICT);

        let cases = [
            (json!({"key": "a", "type": "percentage"}), Some("percentage")),
            (json!({"key": "a", "type": "percentage", "percentage": 101}), Some("percentage")),
            (json!({"key": "a b", "type": "boolean"}), Some("key")),
            (json!({"key": "a", "type": "nope"}), Some("type")),
            (json!({"key": "a", "type": "boolean", "colour": "red"}), Some("colour")),
            (json!({"key": "a", "type": "variant", "default_value": "x", "variants": [{"name": "x", "weight": "1"}]}), Some("variants[0].weight")),
            (json!({"key": "a", "type": "schedule", "schedule": {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}}), Some("schedule.end")),
        ];
        for (body, field) in cases {
            check_refused(&app, Method::POST, FLAGS, &app.operator, body, StatusCode::UNPROCESSABLE_ENTITY, field).await;
        }
        check_refused(&app, Method::POST, FLAGS, &app.viewer, json!({"key": "v", "type": "boolean"}), StatusCode::FORBIDDEN, None).await;
        check_refused(&app, Method::POST, FLAGS, &app.merchant_key, json!({"key": "m", "type": "boolean"}), StatusCode::FORBIDDEN, None).await;

        // Viewers read.
        let list = app.get(FLAGS, &app.viewer).await;
        assert_eq!(list.ok().as_array().unwrap().len(), 1);
        let shown = app.get(&format!("{FLAGS}/checkout.one_click"), &app.viewer).await;
        assert_eq!(shown.ok()["percentage"], 30);
        app.get(&format!("{FLAGS}/nope"), &app.viewer).await.error(StatusCode::NOT_FOUND);

        // PATCH merges; null removes an optional field; the key cannot change.
        let path = format!("{FLAGS}/checkout.one_click");
        let patched = app.patch(&path, &app.operator, &json!({"percentage": 60, "description": null})).await;
        assert_eq!(patched.ok()["percentage"], 60);
        assert_eq!(patched.body["version"], 2);
        assert!(patched.body.get("description").is_none_or(|d| d == ""), "{}", patched.body);
        check_refused(&app, Method::PATCH, &path, &app.operator, json!({"percentage": "lots"}), StatusCode::UNPROCESSABLE_ENTITY, Some("percentage")).await;
        check_refused(&app, Method::PATCH, &path, &app.operator, json!({"key": "other"}), StatusCode::UNPROCESSABLE_ENTITY, Some("key")).await;
        check_refused(&app, Method::PATCH, &path, &app.viewer, json!({"percentage": 1}), StatusCode::FORBIDDEN, None).await;

        // DELETE removes it; its audit trail stays.
        let deleted = app.call(Method::DELETE, &path, Some(&app.operator), None).await;
        assert_eq!(deleted.ok()["deleted"]["key"], "checkout.one_click");
        app.call(Method::DELETE, &path, Some(&app.operator), None).await.error(StatusCode::NOT_FOUND);
        let trail = app.get(&format!("{path}/audit"), &app.viewer).await;
        let actions: Vec<&str> = trail.ok().as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["flag.delete", "flag.update", "flag.create"]);
        app
    })
    .await;
}

#[tokio::test]
async fn evaluate_for_every_caller_single_and_batch() {
    each_app(|app| async move {
        for flag in [
            json!({"key": "wise", "type": "tenant_list", "audience": "plugins", "enabled_tenants": [app.merchant_id.to_string()]}),
            json!({"key": "flow", "type": "variant", "audience": "plugins", "default_value": "v1",
                   "variants": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 1, "payload": {"steps": 2}}]}),
            json!({"key": "internal", "type": "boolean"}),
        ] {
            app.post(FLAGS, &app.admin, &flag).await.ok();
        }
        let sira = app.store.store.create_sira_token("sira", app.clock.now()).await.unwrap().secret;
        let tenant = app.merchant_id.to_string();

        // The merchant key evaluates as its own merchant.
        assert_eq!(app.evaluate(&app.merchant_key, "wise", json!({})).await, (json!(true), json!("TARGETING_MATCH"), Value::Null));
        let other = app.post(&format!("{FLAGS}/evaluate"), &app.merchant_key,
                             &json!({"key": "wise", "context": {"tenant_id": "someone-else"}})).await;
        assert_eq!(other.error(StatusCode::FORBIDDEN).1.as_deref(), Some("context.tenant_id"));
        // Ops and Sira name the tenant.
        assert_eq!(app.evaluate(&app.viewer, "wise", json!({"tenant_id": tenant})).await.0, json!(true));
        assert_eq!(app.evaluate(&sira, "wise", json!({"tenant_id": "other"})).await, (json!(false), json!("DEFAULT"), Value::Null));
        let anonymous = app.call(Method::POST, &format!("{FLAGS}/evaluate"), None, Some(&json!({"key": "wise"}))).await;
        anonymous.error(StatusCode::UNAUTHORIZED);

        // OpenFeature errors return the caller's default.
        let missing = app.post(&format!("{FLAGS}/evaluate"), &sira, &json!({"key": "nope", "default_value": true})).await;
        assert_eq!((missing.ok()["value"].clone(), missing.body["reason"].clone(), missing.body["error_code"].clone()),
                   (json!(true), json!("ERROR"), json!("FLAG_NOT_FOUND")));
        let mismatch = app.post(&format!("{FLAGS}/evaluate"), &sira, &json!({"key": "flow", "default_value": false})).await;
        assert_eq!(mismatch.ok()["error_code"], "TYPE_MISMATCH");
        assert_eq!(mismatch.body["value"], false);
        let bad_context = app.post(&format!("{FLAGS}/evaluate"), &sira, &json!({"key": "flow", "context": {"tenant": "x"}})).await;
        assert_eq!(bad_context.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("context.tenant"));
        let neither = app.post(&format!("{FLAGS}/evaluate"), &sira, &json!({"context": {}})).await;
        assert_eq!(neither.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("key"));
        let too_many: Vec<String> = (0..1_001).map(|i| format!("f{i}")).collect();
        let batch = app.post(&format!("{FLAGS}/evaluate"), &sira, &json!({"keys": too_many})).await;
        assert_eq!(batch.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("keys"));

        // A batch for one context. A platform flag is, to a merchant, a flag that does not
        // exist; Ops and Sira see it.
        let batch = app.post(&format!("{FLAGS}/evaluate"), &app.merchant_key,
                             &json!({"keys": ["wise", "flow", "nope", "internal"], "context": {"user_id": "u1"}})).await;
        let results = batch.ok()["results"].as_array().unwrap().clone();
        assert_eq!(results[0], json!({"key": "wise", "value": true, "variant": null, "reason": "TARGETING_MATCH", "error_code": null}));
        assert_eq!(results[1], json!({"key": "flow", "value": "v2", "variant": "v2", "reason": "SPLIT", "error_code": null, "payload": {"steps": 2}}));
        assert_eq!(results[2]["error_code"], "FLAG_NOT_FOUND");
        assert_eq!((results[3]["key"].clone(), results[3]["value"].clone(), results[3]["error_code"].clone()),
                   (json!("internal"), Value::Null, json!("FLAG_NOT_FOUND")));
        assert_eq!(app.evaluate(&sira, "internal", json!({})).await, (json!(true), json!("STATIC"), Value::Null));
        assert_eq!(app.evaluate(&app.merchant_key, "payments.instant_payouts", json!({})).await.2, json!("FLAG_NOT_FOUND"));
        app
    })
    .await;
}

#[tokio::test]
async fn overrides_and_the_kill_switch_are_audited() {
    each_app(|app| async move {
        app.create_flag(json!({"key": "payouts", "type": "percentage", "percentage": 0})).await;
        let overrides = format!("{FLAGS}/payouts/overrides");
        let set = app.post(&overrides, &app.operator,
                           &json!({"scope": "user", "target": "vip", "value": true, "reason": "pilot customer"})).await;
        assert_eq!(set.status, StatusCode::CREATED, "{}", set.body);
        assert_eq!(app.evaluate(&app.viewer, "payouts", json!({"user_id": "vip"})).await.0, json!(true));
        assert_eq!(app.evaluate(&app.viewer, "payouts", json!({"user_id": "other"})).await.0, json!(false));
        for (body, field) in [
            (json!({"scope": "user", "target": "vip", "value": "yes", "reason": "r"}), "value"),
            (json!({"scope": "team", "target": "vip", "value": true, "reason": "r"}), "scope"),
            (json!({"scope": "user", "target": "", "value": true, "reason": "r"}), "target"),
            (json!({"scope": "user", "target": "vip", "value": true, "reason": " "}), "reason"),
        ] {
            check_refused(&app, Method::POST, &overrides, &app.operator, body, StatusCode::UNPROCESSABLE_ENTITY, Some(field)).await;
        }
        let listed = app.get(&overrides, &app.viewer).await;
        assert_eq!(listed.ok().as_array().unwrap().len(), 1);

        // The kill switch: off for everyone, overrides included, at once.
        let kill = format!("{FLAGS}/payouts/kill");
        check_refused(&app, Method::POST, &kill, &app.viewer, json!({"reason": "incident"}), StatusCode::FORBIDDEN, None).await;
        check_refused(&app, Method::POST, &kill, &app.operator, json!({}), StatusCode::UNPROCESSABLE_ENTITY, Some("reason")).await;
        let killed = app.post(&kill, &app.operator, &json!({"reason": "payouts failing, INC-42"})).await;
        assert_eq!(killed.ok()["enabled"], false);
        assert_eq!(app.evaluate(&app.viewer, "payouts", json!({"user_id": "vip"})).await,
                   (json!(false), json!("DISABLED"), Value::Null));

        let removed = app.call(Method::DELETE, &format!("{overrides}/user/vip"), Some(&app.operator), None).await;
        assert_eq!(removed.ok()["target"], "vip");
        app.call(Method::DELETE, &format!("{overrides}/user/vip"), Some(&app.operator), None).await.error(StatusCode::NOT_FOUND);

        // Every change in the flag's trail (who, before, after) and in the Ops audit log.
        let trail = app.get(&format!("{FLAGS}/payouts/audit"), &app.viewer).await;
        let trail = trail.ok().as_array().unwrap().clone();
        let actions: Vec<&str> = trail.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["flag.override.delete", "flag.kill", "flag.override.set", "flag.create"]);
        let kill_entry = &trail[1];
        assert_eq!(kill_entry["actor_kind"], "ops_agent");
        assert_eq!((kill_entry["before"]["enabled"].clone(), kill_entry["after"]["enabled"].clone()), (json!(true), json!(false)));
        assert!(kill_entry["actor_id"].is_string());
        let log = app.get("/api/v1/audit", &app.admin).await;
        let kill_logged = log.ok().as_array().unwrap().iter()
            .find(|e| e["action"] == "flag.kill").cloned().expect("flag.kill in the Ops audit log");
        assert_eq!(kill_logged["target_id"], "payouts");
        assert_eq!(kill_logged["details"]["after"]["enabled"], false);
        app
    })
    .await;
}

#[tokio::test]
async fn file_flags_yield_to_the_store_copy_once_changed() {
    each_store(|store| async move {
        let app = TestApp::with_rules(store, shipped_rules()).await;
        let list = app.get(FLAGS, &app.viewer).await;
        let keys: Vec<&str> = list
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap())
            .collect();
        assert!(
            keys.contains(&"payments.wise_enabled") && keys.len() >= 14,
            "{keys:?}"
        );
        let path = format!("{FLAGS}/payments.wise_enabled");
        let shown = app.get(&path, &app.viewer).await;
        assert_eq!(
            (shown.ok()["source"].clone(), shown.body["file"].clone()),
            (json!("file"), json!("flags/platform.json"))
        );
        // The Wise flag's value for `tenant`.
        let wise_for = async |tenant: &str| {
            let context = json!({"tenant_id": tenant});
            app.evaluate(&app.viewer, "payments.wise_enabled", context)
                .await
                .0
        };
        assert_eq!(wise_for("rawdog").await, json!(true));

        app.post(
            FLAGS,
            &app.operator,
            &json!({"key": "payments.wise_enabled", "type": "boolean"}),
        )
        .await
        .error(StatusCode::CONFLICT);
        app.call(Method::DELETE, &path, Some(&app.operator), None)
            .await
            .error(StatusCode::CONFLICT);
        // The first change copies the flag into the store, which wins from then on.
        let patched = app
            .patch(
                &path,
                &app.operator,
                &json!({"enabled_tenants": ["rawdog", "newshop"]}),
            )
            .await;
        assert_eq!(
            (
                patched.ok()["source"].clone(),
                patched.body["version"].clone()
            ),
            (json!("store"), json!(1))
        );
        assert_eq!(wise_for("newshop").await, json!(true));
        // Deleting the store's copy puts the file's back in force.
        let deleted = app
            .call(Method::DELETE, &path, Some(&app.operator), None)
            .await;
        assert_eq!(
            deleted.ok()["now_in_force_from_file"],
            "flags/platform.json"
        );
        assert_eq!(wise_for("newshop").await, json!(false));
        // The policy-backed flag reads the install's properties.
        assert_eq!(
            app.evaluate(
                &app.viewer,
                "autoheal.auto_apply",
                json!({"properties": {"plugin_version": "1.1.9"}})
            )
            .await
            .0,
            json!(false)
        );
        app.store
    })
    .await;
}

/// Edited flag files are picked up by the next rebuild; a broken edit is
/// refused and the previous files stay in force.
#[tokio::test]
async fn edited_flag_files_reload_and_broken_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flags")).unwrap();
    let file = dir.path().join("flags/launch.json");
    std::fs::write(
        &file,
        r#"{"flags": [{"key": "launch", "type": "boolean"}]}"#,
    )
    .unwrap();
    let app = TestApp::with_rules(TestStore::sqlite().await, dir.path()).await;
    assert_eq!(
        app.evaluate(&app.viewer, "launch", json!({})).await.0,
        json!(true)
    );

    std::fs::write(
        &file,
        r#"{"flags": [{"key": "launch", "type": "boolean", "enabled": false}]}"#,
    )
    .unwrap();
    app.state.flags.reload().await.unwrap();
    assert_eq!(
        app.evaluate(&app.viewer, "launch", json!({})).await.1,
        json!("DISABLED")
    );

    std::fs::write(
        &file,
        r#"{"flags": [{"key": "launch", "type": "boolean", "enabled": "yes"}]}"#,
    )
    .unwrap();
    app.state.flags.reload().await.unwrap();
    assert_eq!(
        app.evaluate(&app.viewer, "launch", json!({})).await.1,
        json!("DISABLED")
    );
    app.store.finish().await;
}

#[tokio::test]
async fn heartbeat_replies_carry_the_flags_the_install_sees() {
    each_app(|app| async move {
        let tenant = app.merchant_id.to_string();
        app.create_flag(json!({"key": "checkout.express_pay", "type": "tenant_list", "audience": "plugins", "enabled_tenants": [tenant]})).await;
        app.create_flag(json!({"key": "wise", "type": "tenant_list", "audience": "plugins", "enabled_tenants": ["someone-else"]})).await;
        app.create_flag(json!({"key": "old", "type": "boolean", "audience": "plugins", "archived": true})).await;
        // The platform's own flags (the default audience) never reach a plugin.
        app.create_flag(json!({"key": "admin.secret_dashboard", "type": "boolean"})).await;
        app.create_flag(json!({"key": "payments.internal_payouts", "type": "boolean", "audience": "platform"})).await;
        let reply = app.post("/api/v1/plugins/heartbeat", &app.merchant_key,
                             &json!({"cms": "woocommerce", "plugin_version": "1.3.5"})).await;
        assert_eq!(reply.ok()["flags"], json!({"checkout.express_pay": true, "wise": false}));
        let bad = app.post(FLAGS, &app.admin, &json!({"key": "x", "type": "boolean", "audience": "everyone"})).await;
        assert_eq!(bad.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("audience"));
        app
    })
    .await;
}

/// Two replicas on one PostgreSQL database: a kill through one is in force
/// on the other within a second, by NOTIFY (the periodic refresh is set to
/// an hour, so it cannot be what delivers it).
#[tokio::test]
async fn a_change_through_one_replica_reaches_the_other_within_a_second() {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        // As in `support`: PostgreSQL is not optional in CI.
        assert!(
            std::env::var("CI").is_err(),
            "{POSTGRES_ENV} must be set in CI"
        );
        eprintln!("-- skipped: {POSTGRES_ENV} is not set");
        return;
    };
    let first = TestApp::new(TestStore::postgres(&url).await).await;
    let (second, tasks) = started_replica(&first, std::time::Duration::from_secs(3_600)).await;
    let second = second.state;

    first
        .create_flag(json!({"key": "checkout.new_flow", "type": "boolean"}))
        .await;
    let context = engine::EvalContext::default();
    let seen = |want: bool| {
        let second = second.clone();
        let context = context.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                let loaded = second.flags.current();
                if loaded
                    .snapshot
                    .evaluate("checkout.new_flow", &context, start_time())
                    .is_on()
                    == want
                {
                    return true;
                }
                if std::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    assert!(
        seen(true).await,
        "the created flag did not reach the second replica within 1 s"
    );
    first
        .post(
            &format!("{FLAGS}/checkout.new_flow/kill"),
            &first.operator,
            &json!({"reason": "incident"}),
        )
        .await
        .ok();
    assert!(
        seen(false).await,
        "the kill did not reach the second replica within 1 s"
    );
    tasks.stop().await;
    second.store.close().await;
    first.store.finish().await;
}

/// Without a notice (two processes on one SQLite file have no NOTIFY), the
/// periodic refresh still brings a change in.
#[tokio::test]
async fn the_periodic_refresh_catches_changes_without_a_notice() {
    let first = TestApp::new(TestStore::sqlite().await).await;
    let (second, tasks) = started_replica(&first, std::time::Duration::from_millis(100)).await;
    let second = second.state;
    first
        .create_flag(json!({"key": "launch", "type": "boolean"}))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while second
        .flags
        .current()
        .snapshot
        .definition("launch")
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the periodic refresh did not pick the flag up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tasks.stop().await;
    second.store.close().await;
    first.store.finish().await;
}

impl TestApp {
    /// Payment outcomes from a merchant's site, through the event endpoint.
    async fn outcomes(&self, key: &str, failed: usize, succeeded: usize) {
        for (event_type, count) in [("payment_failed", failed), ("payment_success", succeeded)] {
            for _ in 0..count {
                self.post(
                    "/api/v1/plugins/event",
                    key,
                    &json!({"cms": "woocommerce", "event_type": event_type}),
                )
                .await
                .ok();
            }
        }
    }

    /// A merchant inside the first `percentage` % of `group`'s tenant buckets.
    async fn merchant_in_cohort(&self, group: &str, percentage: u32) -> String {
        for n in 0.. {
            let (id, key) = self.create_merchant(&format!("shop{n}")).await;
            if engine::rollout_bucket(group, &id.to_string()) <= percentage {
                return key;
            }
        }
        unreachable!()
    }
}

#[tokio::test]
async fn a_rollout_plan_advances_after_each_hold_and_completes() {
    each_app(|app| async move {
        app.create_flag(json!({"key": "payouts", "type": "percentage", "percentage": 0, "stickiness": "tenant_id"})).await;
        let rollouts = format!("{FLAGS}/payouts/rollouts");
        for (body, field) in [
            (json!({"steps": [], "error_rate_threshold": 5}), "steps"),
            (json!({"steps": [{"percentage": 50, "hold_minutes": 1}, {"percentage": 10, "hold_minutes": 1}], "error_rate_threshold": 5}), "steps[1].percentage"),
            (json!({"steps": [{"percentage": 101, "hold_minutes": 1}], "error_rate_threshold": 5}), "steps[0].percentage"),
            (json!({"steps": [{"percentage": 10, "hold_minutes": 1}], "error_rate_threshold": 500}), "error_rate_threshold"),
        ] {
            check_refused(&app, Method::POST, &rollouts, &app.operator, body, StatusCode::UNPROCESSABLE_ENTITY, Some(field)).await;
        }
        let plan = json!({"steps": [{"percentage": 10, "hold_minutes": 60}, {"percentage": 50, "hold_minutes": 60},
                                    {"percentage": 100, "hold_minutes": 0}], "error_rate_threshold": 5.0});
        let created = app.post(&rollouts, &app.operator, &plan).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        app.post(&rollouts, &app.operator, &plan).await.error(StatusCode::CONFLICT);
        let percentage = || async { app.get(&format!("{FLAGS}/payouts"), &app.viewer).await.body["percentage"].clone() };
        assert_eq!(percentage().await, 10);

        let mut actions = Vec::new();
        for (minutes, expected) in [(59, 10), (1, 50), (59, 50), (1, 100), (0, 100)] {
            app.clock.advance(Duration::minutes(minutes));
            let moves = app.state.flags.run_rollouts().await.unwrap();
            actions.extend(moves.iter().map(|m| m.action));
            assert_eq!(percentage().await, expected, "after {minutes} more minutes");
        }
        assert_eq!(actions, ["advance", "advance", "complete"]);
        let listed = app.get(&rollouts, &app.viewer).await;
        assert_eq!(listed.ok()[0]["status"], "completed");
        let trail = app.get(&format!("{FLAGS}/payouts/audit"), &app.viewer).await;
        let system: Vec<&str> = trail.ok().as_array().unwrap().iter()
            .filter(|e| e["actor_kind"] == "system").map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(system, ["rollout.complete", "rollout.advance", "flag.update", "rollout.advance", "flag.update"]);
        app
    })
    .await;
}

#[tokio::test]
async fn a_rollout_halts_and_alerts_when_the_cohort_fails() {
    each_app(|app| async move {
        app.create_flag(json!({"key": "payouts", "type": "percentage", "percentage": 0, "stickiness": "tenant_id"})).await;
        let plan = json!({"steps": [{"percentage": 50, "hold_minutes": 60}, {"percentage": 100, "hold_minutes": 60}],
                          "error_rate_threshold": 10.0, "min_outcomes": 10});
        app.post(&format!("{FLAGS}/payouts/rollouts"), &app.operator, &plan).await.ok();
        // Same buckets (group), but at 0 % its cohort is empty: the failures
        // below are not its cohort's.
        app.create_flag(json!({"key": "other", "type": "percentage", "percentage": 0, "stickiness": "tenant_id", "group_id": "payouts"})).await;
        app.post(&format!("{FLAGS}/other/rollouts"), &app.operator,
                 &json!({"steps": [{"percentage": 0, "hold_minutes": 600}, {"percentage": 100, "hold_minutes": 60}],
                         "error_rate_threshold": 10.0, "min_outcomes": 10})).await.ok();
        let in_cohort = app.merchant_in_cohort("payouts", 50).await;
        // Too few outcomes to judge: nothing happens before the hold ends.
        app.outcomes(&in_cohort, 5, 0).await;
        assert!(app.state.flags.run_rollouts().await.unwrap().is_empty());
        // 6 failed of 11: far above 10 %.
        app.outcomes(&in_cohort, 1, 5).await;
        let moves = app.state.flags.run_rollouts().await.unwrap();
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!((moves[0].flag_key.as_str(), moves[0].action), ("payouts", "halt"));
        assert!((moves[0].error_rate.unwrap() - 6.0 * 100.0 / 11.0).abs() < 1e-9);

        // Halted: no advance after the hold, the flag stays where it was.
        app.clock.advance(Duration::minutes(120));
        assert!(app.state.flags.run_rollouts().await.unwrap().is_empty());
        assert_eq!(app.get(&format!("{FLAGS}/payouts"), &app.viewer).await.body["percentage"], 50);
        let plans = app.get(&format!("{FLAGS}/payouts/rollouts"), &app.viewer).await;
        assert_eq!(plans.ok()[0]["status"], "halted");
        assert!(plans.body[0]["status_reason"].as_str().unwrap().contains("above threshold"));
        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await;
        let alert = alerts.ok()[0].clone();
        assert_eq!((alert["name"].clone(), alert["severity"].clone(), alert["status"].clone()),
                   (json!("flag_rollout_halted"), json!("critical"), json!("open")));
        assert_eq!(alert["labels"]["flag_key"], "payouts");
        let trail = app.get(&format!("{FLAGS}/payouts/audit"), &app.viewer).await;
        assert_eq!(trail.ok()[0]["action"], "rollout.halt");
        app
    })
    .await;
}

/// Two changes based on the same version: the second is refused, not lost.
#[tokio::test]
async fn a_concurrent_change_is_a_conflict() {
    each_app(|app| async move {
        app.create_flag(json!({"key": "flow", "type": "boolean"}))
            .await;
        let base = app.state.flags.current().base("flow").unwrap();
        assert_eq!(base.1, Some(1));
        let write = |enabled: bool| api::flags::FlagWrite {
            action: "flag.update",
            before: Some(base.0.clone()),
            after: engine::FlagDefinition {
                enabled,
                ..base.0.clone()
            },
            expected_version: base.1,
        };
        let audit = api::db::AuditContext::system();
        app.store
            .store
            .write_flag(&write(false), &audit, app.clock.now())
            .await
            .unwrap();
        let second = app
            .store
            .store
            .write_flag(&write(true), &audit, app.clock.now())
            .await;
        assert!(
            matches!(second, Err(api::db::StoreError::Conflict(_))),
            "{second:?}"
        );
        app
    })
    .await;
}

#[tokio::test]
async fn the_kill_switch_cancels_an_active_rollout() {
    each_app(|app| async move {
        app.create_flag(json!({"key": "payouts", "type": "percentage", "percentage": 0})).await;
        let rollouts = format!("{FLAGS}/payouts/rollouts");
        app.post(&rollouts, &app.operator,
                 &json!({"steps": [{"percentage": 10, "hold_minutes": 5}, {"percentage": 100, "hold_minutes": 0}],
                         "error_rate_threshold": 5.0})).await.ok();
        app.post(&format!("{FLAGS}/payouts/kill"), &app.operator, &json!({"reason": "incident"})).await.ok();
        app.clock.advance(Duration::minutes(10));
        let moves = app.state.flags.run_rollouts().await.unwrap();
        assert_eq!(moves.iter().map(|m| m.action).collect::<Vec<_>>(), ["cancel"]);
        let flag = app.get(&format!("{FLAGS}/payouts"), &app.viewer).await;
        assert_eq!((flag.ok()["enabled"].clone(), flag.body["percentage"].clone()), (json!(false), json!(10)));
        assert_eq!(app.get(&rollouts, &app.viewer).await.ok()[0]["status"], "cancelled");
        // A killed flag cannot start a new plan.
        let again = app.post(&rollouts, &app.operator,
                             &json!({"steps": [{"percentage": 50, "hold_minutes": 5}], "error_rate_threshold": 5.0})).await;
        again.error(StatusCode::CONFLICT);
        app
    })
    .await;
}

fn autoheal_flags(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["flags", "eval"])
        .args(args)
        .output()
        .expect("run autoheal")
}

#[test]
fn cli_evaluates_file_flags() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.json");
    let context_file = context.to_str().unwrap();
    let rules = shipped_rules().to_str().unwrap();
    let check = |key: &str, ctx: Value, at: &str, value: bool, reason: &str| {
        std::fs::write(&context, ctx.to_string()).unwrap();
        let output =
            autoheal_flags(&[key, "--context", context_file, "--rules", rules, "--at", at]);
        let expected = json!({"key": key, "value": value, "variant": null,
                              "reason": reason, "error_code": null});
        assert_eq!(json_stdout(&output), expected, "{key}");
    };
    check(
        "payments.wise_enabled",
        json!({"tenant_id": "rawdog"}),
        "2025-01-18T10:00:00Z",
        true,
        "TARGETING_MATCH",
    );
    let onboarding = "creators.self_service_onboarding";
    for (at, value, reason) in [
        ("2026-01-05T08:59:59Z", false, "DEFAULT"),
        ("2026-01-05T09:00:00Z", true, "TARGETING_MATCH"),
    ] {
        check(onboarding, json!({}), at, value, reason);
    }

    let refused = |key: &str, context: &str, error: &str| {
        let output = autoheal_flags(&[key, "--context", context, "--rules", rules]);
        assert!(!output.status.success(), "{key} {context}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(error), "{stderr}");
    };
    std::fs::write(&context, "{}").unwrap();
    refused("nope", context_file, "flag nope is not defined");
    std::fs::write(&context, r#"{"tenant": "x"}"#).unwrap();
    refused(
        "checkout.new_flow",
        context_file,
        "is not an evaluation context",
    );
    refused(
        "checkout.new_flow",
        "/nonexistent.json",
        "cannot read the context /nonexistent.json",
    );
}

#[test]
fn serve_refuses_to_start_on_broken_flag_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("flags")).unwrap();
    std::fs::write(
        rules.join("flags/launch.json"),
        r#"{"flags": [{"key": "launch", "type": "percentage", "percentage": 150}]}"#,
    )
    .unwrap();
    let stderr = serve_refusal(&rules);
    assert!(
        stderr.contains("flags/launch.json: flags[0].percentage"),
        "{stderr}"
    );
}

#[test]
fn rules_check_validates_the_flag_files() {
    let shipped = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["rules", "check", shipped_rules().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        shipped.status.success(),
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );
    let report: Value = serde_json::from_slice(&shipped.stdout).unwrap();
    assert_eq!(report["feature_flags"], 15);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flags")).unwrap();
    std::fs::write(
        dir.path().join("flags/launch.json"),
        r#"{"flags": [{"key": "launch", "type": "user_list"}]}"#,
    )
    .unwrap();
    let broken = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["rules", "check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("flags/launch.json: flags[0].enabled_users"),
        "{stderr}"
    );
}

/// A second replica of `first` refreshing its flags every `refresh`, listening.
async fn started_replica(
    first: &TestApp,
    refresh: std::time::Duration,
) -> (TestApp, api::tasks::Tasks) {
    let second = first
        .replica()
        .await
        .rebuilt(|app| {
            app.config(api::ServerConfig {
                flags: api::flags::FlagsConfig {
                    refresh,
                    ..api::flags::FlagsConfig::default()
                },
                ..api::ServerConfig::default()
            })
        })
        .await;
    let tasks = second.listening().await;
    (second, tasks)
}

/// A rules folder holding `flags/spin.rhai`, a policy that never ends.
fn spinning_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flags")).unwrap();
    std::fs::write(
        dir.path().join("flags/spin.rhai"),
        "let flag = #{ name: \"spin\" };\nfn evaluate(ctx) { loop { } }\n",
    )
    .unwrap();
    dir
}

/// A policy that never ends holds neither its request nor the server (issue 17): the
/// policies of one request share a CPU budget, past which each flag answers its default
/// with reason ERROR (a batch of 1,000 keys costs one budget, not 1,000), and they run off
/// the async workers, so `/healthz` answers while one runs. A heartbeat's flags are held to
/// the same budget (the runaway flag is left out of its reply).
#[tokio::test]
async fn a_runaway_policy_costs_one_budget_per_request_and_stalls_nothing() {
    let dir = spinning_policy();
    std::fs::write(
        dir.path().join("flags/spin.json"),
        r#"{"flags": [{"key": "spin", "type": "boolean", "policy": "spin", "audience": "plugins"},
                      {"key": "plain", "type": "boolean", "audience": "plugins"}]}"#,
    )
    .unwrap();
    // Only the budget can stop this policy: its operation limit is out of reach.
    let limits = engine::Limits {
        max_operations: u64::MAX,
        ..engine::Limits::default()
    };
    let rules = api::rules::Rules::load(dir.path(), &limits, start_time()).expect("rules load");
    let config = api::ServerConfig {
        script_limits: limits,
        flags: api::flags::FlagsConfig {
            policy_budget: std::time::Duration::from_millis(1_500),
            ..api::flags::FlagsConfig::default()
        },
        ..api::ServerConfig::default()
    };
    let app = TestApp::with_config(TestStore::sqlite().await, config)
        .await
        .rebuilt(|parts| parts.rules(rules))
        .await;

    let keys = vec!["spin"; 1_000];
    let request = axum::http::Request::post(format!("{FLAGS}/evaluate"))
        .header("authorization", format!("Bearer {}", app.viewer))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"keys": keys, "default_value": false}).to_string(),
        ))
        .unwrap();
    let router = app.router.clone();
    let batch = tokio::spawn(async move {
        use tower::ServiceExt;
        router.oneshot(request).await.unwrap()
    });
    // This test runs on one thread: had the batch's policies run on it, this sleep would
    // end only after them.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        !batch.is_finished(),
        "/healthz answered while the policy ran"
    );

    let response = batch.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1_000);
    for result in results {
        assert_eq!(
            (&result["value"], &result["reason"], &result["error_code"]),
            (&json!(false), &json!("ERROR"), &json!("GENERAL")),
            "{result}"
        );
    }

    let reply = app
        .post(
            "/api/v1/plugins/heartbeat",
            &app.merchant_key,
            &json!({"cms": "woocommerce", "plugin_version": "1.3.5"}),
        )
        .await;
    let flags = reply.ok()["flags"].as_object().unwrap();
    assert_eq!(flags.get("plain"), Some(&json!(true)));
    assert!(!flags.contains_key("spin"), "{flags:?}");
    app.store.finish().await;
}

/// `autoheal rules check` warns of a flag policy that runs into its operation limit on a
/// sample install's context, and still passes the set (the policy is valid Rhai).
#[test]
fn rules_check_warns_of_a_policy_that_exhausts_its_limit() {
    let dir = spinning_policy();
    std::fs::write(
        dir.path().join("flags/fine.rhai"),
        "let flag = #{ name: \"fine\" };\nfn evaluate(ctx) { ctx.cms == \"woocommerce\" }\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let report = json_stdout(&output);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with("flags/spin.rhai") && warning.contains("operations limit"),
        "{warning}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("warning: {warning}")), "{stderr}");
}
