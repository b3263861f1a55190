//! The healing loop end to end, through HTTP only, on SQLite and PostgreSQL: a simulated
//! WooCommerce install reports its state, Sira posts detections, the install polls, fetches
//! and verifies the signed bundle and acks; Ops approve, reject and roll back; a failed ack
//! and an error-rate regression roll back on their own; a rule that keeps failing stops
//! auto-applying.

use crate::support::{each_store, postgres_url, repo, TestApp, TestStore};
use api::healing::HealingConfig;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Duration;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

const MISSING_COLUMN: &str = "Fatal error: Unknown column 'merchant_fee' in field list";

/// What the WooCommerce install reports in its heartbeat.
fn woo_heartbeat() -> Value {
    json!({
        "cms": "woocommerce",
        "site_url": "https://shop.example",
        "plugin_version": "1.3.5",
        "php_version": "8.1.27",
        "state": {
            "config": {"memory_limit": "128M", "debug": false},
            "tables": {
                "wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)", "currency": "CHAR(3)"}
            }
        }
    })
}

fn detection(plugin_id: Uuid, confidence: f64, table: &str) -> Value {
    json!({
        "plugin_id": plugin_id,
        "detected_issue": MISSING_COLUMN,
        "issue_severity": "high",
        "patch_type": "database_patch",
        "proposed_patch": {
            "type": "database_patch", "action": "add_missing_column",
            "table": table, "column": "merchant_fee", "column_type": "DECIMAL(10,2)"
        },
        "sira_confidence": confidence
    })
}

struct Install<'a> {
    app: &'a TestApp,
    id: Uuid,
}

impl Install<'_> {
    async fn poll(&self) -> Vec<Value> {
        let response = self
            .app
            .get(
                &format!("/api/v1/plugins/autoheal/commands/{}", self.id),
                &self.app.merchant_key,
            )
            .await;
        response.ok().as_array().unwrap().clone()
    }

    async fn ack(&self, command: &Value, success: bool) -> Value {
        let result = if success {
            json!({"timestamp": 1737201600, "plugin_version": "1.3.5"})
        } else {
            // The column was added; the plugin's check after it failed.
            json!({"timestamp": 1737201600, "plugin_version": "1.3.5",
                   "error": "ALTER TABLE failed: disk full", "applied_operations": 1})
        };
        let response = self
            .app
            .post(
                &format!(
                    "/api/v1/plugins/autoheal/commands/{}/ack",
                    command["id"].as_str().unwrap()
                ),
                &self.app.merchant_key,
                &json!({"success": success, "result": result}),
            )
            .await;
        response.ok().clone()
    }

    /// Fetches the command's bundle and verifies it as a plugin does: against the trusted
    /// public key, with the sha256 the command names.
    async fn fetch_and_verify(&self, command: &Value) -> host::VerifiedBundle {
        let patch = &command["command_payload"]["patch"];
        let request = Request::get(patch["bundle_url"].as_str().unwrap())
            .header("authorization", format!("Bearer {}", self.app.merchant_key))
            .body(Body::empty())
            .unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert!(response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            host::bundle::sha256_hex(&bytes),
            patch["bundle_sha256"].as_str().unwrap()
        );
        assert_eq!(
            etag,
            format!("\"{}\"", patch["bundle_sha256"].as_str().unwrap())
        );
        let on_disk = std::fs::read(repo().join(format!(
            "patches/bundles/{}-{}.bundle.json",
            patch["name"].as_str().unwrap(),
            patch["version"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(bytes.as_ref(), on_disk.as_slice(), "served unchanged");
        // A second fetch with the ETag is a 304.
        let again = Request::get(patch["bundle_url"].as_str().unwrap())
            .header("authorization", format!("Bearer {}", self.app.merchant_key))
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap();
        let response = self.app.router.clone().oneshot(again).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let key =
            host::tools::read_public_key(&repo().join("patches/dev-key/autoheal.pub")).unwrap();
        host::verify_bundle(
            &bytes,
            &[key].into_iter().collect(),
            &host::AcceptedVersions::new(),
            self.app.clock.now(),
        )
        .expect("the plugin verifies the bundle")
    }
}

/// Runs `test` once per backend on an app running the healing loop, with the id of a
/// WooCommerce install that has reported its state.
async fn each_install(test: impl AsyncFn(&TestApp, Uuid)) {
    let test = &test;
    each_store(move |store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let id = app.heartbeat(woo_heartbeat()).await;
        test(&app, id).await;
        app.store
    })
    .await;
}

async fn detect(app: &TestApp, body: &Value) -> Value {
    let response = app.post("/api/v1/plugins/autoheal", &app.sira, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

async fn log(app: &TestApp, id: &Value) -> Value {
    app.get(
        &format!("/api/v1/plugins/autoheal/{}", id.as_str().unwrap()),
        &app.viewer,
    )
    .await
    .ok()
    .clone()
}

async fn send_outcomes(app: &TestApp, site_url: &str, successes: usize, failures: usize) {
    for (event_type, count) in [("payment_success", successes), ("payment_failed", failures)] {
        for _ in 0..count {
            let body =
                json!({"cms": "woocommerce", "site_url": site_url, "event_type": event_type});
            app.post("/api/v1/plugins/event", &app.merchant_key, &body)
                .await
                .ok();
        }
    }
}

#[tokio::test]
async fn the_healing_loop_end_to_end() {
    each_install(async |app, id| {
        let install = Install { app, id };

        // 92.5 → auto-applied: dry run clean, snapshot stored, command queued.
        let created = detect(app, &detection(id, 92.5, "wp_molam_orders")).await;
        assert_eq!(created["status"], "applied");
        let first = &created["log"];
        assert_eq!(first["status"], "approved", "awaits the plugin's ack");
        assert_eq!(first["rule_name"], "missing_database_column");
        assert_eq!(first["decision"]["confidence"], 92.5);
        assert_eq!(first["patch_name"], "add_missing_column");
        assert_eq!(first["operations"][0]["op"], "add_column");
        assert_eq!(first["restore_operations"][0]["op"], "drop_column");
        assert!(first["snapshot_id"].is_string());

        // The install polls: one apply_patch command naming the bundle; it is leased.
        let commands = install.poll().await;
        assert_eq!(commands.len(), 1, "{commands:?}");
        let command = &commands[0];
        assert_eq!(command["command_type"], "apply_patch");
        assert_eq!(command["command_payload"]["healing_log_id"], first["id"]);
        assert_eq!(command["priority"], 8);
        let verified = install.fetch_and_verify(command).await;
        assert_eq!(verified.manifest().name, "add_missing_column");
        assert!(install.poll().await.is_empty(), "leased to the first poll");
        // The plugin died before acking: after the lease the command is handed out again.
        app.clock.advance(Duration::minutes(11));
        let again = install.poll().await;
        assert_eq!(again[0]["id"], command["id"]);
        assert_eq!(again[0]["deliveries"], 2);

        let acked = install.ack(command, true).await;
        assert_eq!(acked["repeated"], false);
        assert_eq!(log(app, &first["id"]).await["status"], "applied");
        // The same ack again changes nothing; a contradicting one is a conflict.
        assert_eq!(install.ack(command, true).await["repeated"], true);
        let contradiction = app
            .post(
                &format!(
                    "/api/v1/plugins/autoheal/commands/{}/ack",
                    command["id"].as_str().unwrap()
                ),
                &app.merchant_key,
                &json!({"success": false}),
            )
            .await;
        contradiction.error(StatusCode::CONFLICT);
        assert!(install.poll().await.is_empty());

        // 70 → pending review; Ops approve → command → ack → applied.
        let pending = detect(app, &detection(id, 70.0, "wp_molam_orders")).await;
        assert_eq!(pending["status"], "pending_review");
        assert_eq!(pending["log"]["status"], "pending_review");
        assert!(
            install.poll().await.is_empty(),
            "nothing queued without approval"
        );
        let apply_path = format!(
            "/api/v1/plugins/autoheal/{}/apply",
            pending["log"]["id"].as_str().unwrap()
        );
        app.call(Method::POST, &apply_path, Some(&app.viewer), None)
            .await
            .error(StatusCode::FORBIDDEN);
        let approved = app
            .call(Method::POST, &apply_path, Some(&app.operator), None)
            .await;
        assert_eq!(approved.ok()["status"], "ok");
        assert_eq!(approved.body["log"]["status"], "approved");
        assert!(approved.body["log"]["reviewed_by"].is_string());
        let (code, _) = app
            .call(Method::POST, &apply_path, Some(&app.operator), None)
            .await
            .error(StatusCode::CONFLICT);
        assert_eq!(code, "conflict");
        let commands = install.poll().await;
        assert_eq!(commands.len(), 1);
        install.ack(&commands[0], true).await;
        assert_eq!(log(app, &pending["log"]["id"]).await["status"], "applied");

        // A failed ack with its operation in effect → the rollback of it is queued at once
        // with the snapshot; rolled back once the plugin acks that.
        let failing = detect(app, &detection(id, 92.5, "wp_molam_orders")).await;
        let commands = install.poll().await;
        install.ack(&commands[0], false).await;
        let failed = log(app, &failing["log"]["id"]).await;
        assert_eq!(failed["status"], "rolling_back");
        assert_eq!(failed["rollback_trigger"], "failed_ack");
        assert_eq!(failed["failure_kind"], "plugin_failed");
        assert_eq!(failed["failure_reason"], "ALTER TABLE failed: disk full");
        let rollback = install.poll().await;
        assert_eq!(rollback.len(), 1);
        assert_eq!(rollback[0]["command_type"], "rollback");
        assert_eq!(rollback[0]["priority"], 10);
        let payload = &rollback[0]["command_payload"];
        assert_eq!(payload["restore_operations"][0]["op"], "drop_column");
        assert_eq!(payload["snapshot"]["plugin_version"], "1.3.5");
        assert_eq!(
            payload["snapshot"]["state"]["tables"],
            woo_heartbeat()["state"]["tables"]
        );
        install.ack(&rollback[0], true).await;
        assert_eq!(
            log(app, &failing["log"]["id"]).await["status"],
            "rolled_back"
        );

        // An error-rate regression after an apply → automatic rollback (on a second site of
        // the merchant, so the first site's patches stay out of its windows).
        let mut second_site = woo_heartbeat();
        second_site["site_url"] = json!("https://second.example");
        let second = Install {
            app,
            id: app.heartbeat(second_site).await,
        };
        send_outcomes(app, "https://second.example", 20, 0).await;
        app.clock.advance(Duration::minutes(30));
        let regressing = detect(app, &detection(second.id, 95.0, "wp_molam_orders")).await;
        let commands = second.poll().await;
        second.ack(&commands[0], true).await;
        app.clock.advance(Duration::minutes(10));
        send_outcomes(app, "https://second.example", 10, 10).await;
        // Not yet a full window after the apply: nothing happens.
        assert!(app
            .state
            .healing
            .analyze_regressions()
            .await
            .unwrap()
            .is_empty());
        app.clock.advance(Duration::minutes(55));
        let rolled = app.state.healing.analyze_regressions().await.unwrap();
        assert_eq!(rolled.len(), 1);
        let regressed = log(app, &regressing["log"]["id"]).await;
        assert_eq!(regressed["status"], "rolling_back");
        assert_eq!(regressed["rollback_trigger"], "regression");
        assert!(
            regressed["rollback_reason"]
                .as_str()
                .unwrap()
                .contains("50.0 %"),
            "{regressed}"
        );
        // The first site's patches saw no regression.
        assert_eq!(log(app, &first["id"]).await["status"], "applied");
        let rollback = second.poll().await;
        assert_eq!(rollback[0]["command_type"], "rollback");
        second.ack(&rollback[0], true).await;

        // A third failure of the rule (its dry run refuses a missing table) → suspended for
        // this merchant (every failure was at its installs).
        let refused = detect(app, &detection(id, 92.5, "wp_no_such_table")).await;
        assert_eq!(refused["status"], "failed");
        assert_eq!(refused["log"]["failure_kind"], "patch_refused");
        assert!(
            install.poll().await.is_empty(),
            "a failed dry run queues nothing"
        );
        let breakers = app.get("/api/v1/plugins/autoheal/rules", &app.viewer).await;
        assert_eq!(breakers.ok()[0]["rule_name"], "missing_database_column");
        assert_eq!(breakers.body[0]["suspended"], true);
        assert_eq!(breakers.body[0]["scope"], "merchant");
        let held = detect(app, &detection(id, 99.0, "wp_molam_orders")).await;
        assert_eq!(held["status"], "pending_review");
        assert_eq!(held["log"]["decision"]["auto_apply_suspended"], true);
        let resume = app
            .post(
                "/api/v1/plugins/autoheal/rules/missing_database_column/resume",
                &app.operator,
                &json!({"reason": "column types fixed in Sira", "merchant_id": app.merchant_id}),
            )
            .await;
        assert_eq!(resume.ok()["resumed"], true);
        let audit = app.get("/api/v1/audit", &app.admin).await;
        let actions: Vec<&str> = audit
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert!(
            actions.contains(&"autoheal.rule_resume") && actions.contains(&"autoheal.approve"),
            "{actions:?}"
        );

        // Ops roll back an applied patch: restored version and the rollback command.
        let rollback_path = format!(
            "/api/v1/plugins/autoheal/{}/rollback",
            first["id"].as_str().unwrap()
        );
        let (_, field) = app
            .post(&rollback_path, &app.operator, &json!({"reason": ""}))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("reason"));
        let rolled = app
            .post(
                &rollback_path,
                &app.operator,
                &json!({"reason": "New version causing checkout failures"}),
            )
            .await;
        assert_eq!(rolled.ok()["result"]["success"], true);
        assert_eq!(rolled.body["result"]["restored_version"], "1.3.5");
        assert_eq!(rolled.body["result"]["plugin_id"], json!(id));
        assert_eq!(rolled.body["log"]["rollback_trigger"], "ops");
        assert_eq!(rolled.body["log"]["status"], "rolling_back");
        app.post(&rollback_path, &app.operator, &json!({"reason": "again"}))
            .await
            .error(StatusCode::CONFLICT);
        install.ack(&install.poll().await[0], true).await;

        // Logs and stats.
        let logs = app
            .get(
                "/api/v1/plugins/autoheal/logs?status=rolled_back&issue_severity=high&limit=50",
                &app.viewer,
            )
            .await;
        assert_eq!(logs.ok().as_array().unwrap().len(), 3);
        let stats = app
            .get("/api/v1/plugins/autoheal/stats?days=30", &app.viewer)
            .await;
        let stats = stats.ok();
        let fields: Vec<&String> = stats.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            [
                "applied",
                "avg_confidence",
                "failed",
                "not_needed",
                "refused",
                "rollback_failed",
                "rolled_back",
                "rolling_back",
                "success_rate",
                "total_patches"
            ]
        );
        assert_eq!(stats["total_patches"], 5);
        assert_eq!(stats["applied"], 1);
        // The failed apply counts as failed, though its partial rollback completed.
        assert_eq!(stats["rolled_back"], 2);
        assert_eq!(stats["failed"], 2);
        assert_eq!(stats["success_rate"], 20.0);
    })
    .await;
}

/// Posts `body` to `path` with `token` and expects `status` naming `field`.
async fn check_refused(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
    status: StatusCode,
    field: Option<&str>,
) {
    let response = app.post(path, token, &body).await;
    let (_, got) = response.error(status);
    assert_eq!(got.as_deref(), field, "{path} {body}: {}", response.body);
}

#[tokio::test]
async fn detections_are_idempotent_and_bad_input_is_refused_by_field() {
    each_install(async |app, id| {
        let path = "/api/v1/plugins/autoheal";

        // A retry with the same key (body or header) returns the same log and queues nothing more.
        let mut body = detection(id, 92.5, "wp_molam_orders");
        body["idempotency_key"] = json!("sira-7f3a");
        let first = detect(app, &body).await;
        let retry = app.post(path, &app.sira, &body).await;
        assert_eq!(retry.status, StatusCode::OK);
        assert_eq!(retry.body["log"]["id"], first["log"]["id"]);
        assert_eq!(retry.body["replayed"], true);
        let by_header = Request::post(path)
            .header("authorization", format!("Bearer {}", app.sira))
            .header("idempotency-key", "sira-7f3a")
            .body(Body::from(
                detection(id, 92.5, "wp_molam_orders").to_string(),
            ))
            .unwrap();
        assert_eq!(
            app.send(by_header).await.body["log"]["id"],
            first["log"]["id"]
        );
        let commands = app
            .get(
                &format!("/api/v1/plugins/autoheal/commands/{id}"),
                &app.merchant_key,
            )
            .await;
        assert_eq!(
            commands.ok().as_array().unwrap().len(),
            1,
            "one command for one detection"
        );
        // The same key for another detection is a conflict.
        body["sira_confidence"] = json!(93.0);
        app.post(path, &app.sira, &body)
            .await
            .error(StatusCode::CONFLICT);

        let sira = app.sira.clone();
        let good = detection(id, 92.5, "wp_molam_orders");
        let with = |key: &str, value: Value| {
            let mut body = good.clone();
            body[key] = value;
            body
        };
        for (body, field) in [
            (with("sira_confidence", json!(150)), "sira_confidence"),
            (with("sira_confidence", json!("high")), "sira_confidence"),
            (with("plugin_id", json!("not-a-uuid")), "plugin_id"),
            (with("plugin_id", json!(Uuid::nil())), "plugin_id"),
            (
                with("issue_severity", json!("apocalyptic")),
                "issue_severity",
            ),
            (with("patch_type", json!("rm_rf")), "patch_type"),
            (with("detected_issue", json!("  ")), "detected_issue"),
            (with("proposed_patch", json!([1])), "proposed_patch"),
            (with("idempotency_key", json!("")), "idempotency_key"),
        ] {
            check_refused(
                app,
                path,
                &sira,
                body,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(field),
            )
            .await;
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("detected_issue");
        check_refused(
            app,
            path,
            &sira,
            missing,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("detected_issue"),
        )
        .await;
        let not_json = Request::post(path)
            .header("authorization", format!("Bearer {sira}"))
            .header("content-type", "application/json")
            .body(Body::from("{\"plugin_id\":"))
            .unwrap();
        app.send(not_json).await.error(StatusCode::BAD_REQUEST);
        // Only Sira posts detections.
        app.post(path, &app.merchant_key, &good)
            .await
            .error(StatusCode::FORBIDDEN);
        app.post(path, &app.admin, &good)
            .await
            .error(StatusCode::FORBIDDEN);
        app.call(Method::POST, path, None, Some(&good))
            .await
            .error(StatusCode::UNAUTHORIZED);
        // Nothing refused was recorded.
        let logs = app.get("/api/v1/plugins/autoheal/logs", &app.viewer).await;
        assert_eq!(logs.ok().as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_retries_record_one_log_and_answer_what_is_stored() {
    each_install(async |app, id| {
        let mut body = detection(id, 92.5, "wp_molam_orders");
        body["idempotency_key"] = json!("sira-burst");
        let post = || app.post("/api/v1/plugins/autoheal", &app.sira, &body);
        // Sent together, they meet in one group commit.
        let (a, b, c, d, e, f) = tokio::join!(post(), post(), post(), post(), post(), post());
        let answers = [a, b, c, d, e, f];
        let created: Vec<_> = answers
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .collect();
        assert_eq!(created.len(), 1, "one of the retries records the log");
        let recorded = &created[0].body["log"];
        for answer in &answers {
            assert!(answer.status.is_success(), "{}", answer.body);
            assert_eq!(answer.body["log"]["id"], recorded["id"]);
        }
        // The log answered is the log stored, field for field.
        assert_eq!(recorded["status"], "approved");
        assert_eq!(&log(app, &recorded["id"]).await, recorded);
        let commands = Install { app, id }.poll().await;
        assert_eq!(commands.len(), 1, "one command: {commands:?}");
        assert_eq!(
            commands[0]["command_payload"]["snapshot_id"],
            recorded["snapshot_id"]
        );
        let snapshots = app
            .store
            .count("SELECT count(*) FROM plugin_snapshots")
            .await;
        assert_eq!(snapshots, 1, "the retries' own snapshots are not kept");

        // So is an approval's.
        let pending = detect(app, &detection(id, 70.0, "wp_molam_orders")).await;
        let approved = app
            .post(
                &format!(
                    "/api/v1/plugins/autoheal/{}/apply",
                    pending["log"]["id"].as_str().unwrap()
                ),
                &app.operator,
                &json!({}),
            )
            .await;
        let approved = &approved.ok()["log"];
        assert_eq!(approved["status"], "approved");
        assert_eq!(&log(app, &approved["id"]).await, approved);
    })
    .await;
}

/// Two replicas on one PostgreSQL database: a rule suspended or resumed through one is in
/// force on the other within a second, by NOTIFY (what a replica caches of the breakers is
/// otherwise trusted for 5 s).
#[tokio::test]
async fn a_rule_breaker_change_reaches_the_other_replica() {
    let Some(url) = postgres_url() else {
        eprintln!("-- skipped: no PostgreSQL");
        return;
    };
    let first = TestApp::healing(TestStore::postgres(&url).await, HealingConfig::default()).await;
    let second = first.replica().await;
    let listener = second.listening().await;
    let id = first.heartbeat(woo_heartbeat()).await;
    let rule = "missing_database_column";
    let answers = |want: &'static str| {
        let second = &second;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                let answer = detect(second, &detection(id, 92.5, "wp_molam_orders")).await;
                if answer["status"] == want {
                    return true;
                }
                if std::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert!(answers("applied").await, "the second replica auto-applies");
    first
        .state
        .store
        .set_rule_breaker(
            rule,
            api::healing::BreakerScope::Fleet,
            true,
            "tripped on the first replica",
            None,
            first.clock.now(),
        )
        .await
        .unwrap();
    assert!(
        answers("pending_review").await,
        "the suspension did not reach the second replica within 1 s"
    );
    first
        .post(
            &format!("/api/v1/plugins/autoheal/rules/{rule}/resume"),
            &first.operator,
            &json!({"reason": "fixed"}),
        )
        .await
        .ok();
    assert!(
        answers("applied").await,
        "the resume did not reach the second replica within 1 s"
    );
    listener.stop().await;
    second.store.finish().await;
    first.store.finish().await;
}

#[tokio::test]
async fn plugins_reach_only_their_own_commands_and_bundles() {
    each_install(async |app, id| {
        detect(app, &detection(id, 92.5, "wp_molam_orders")).await;
        let (_, other_key) = app.create_merchant("Other Shop").await;
        let poll = format!("/api/v1/plugins/autoheal/commands/{id}");
        app.get(&poll, &other_key)
            .await
            .error(StatusCode::NOT_FOUND);
        app.get(&poll, &app.admin)
            .await
            .error(StatusCode::FORBIDDEN);
        app.get("/api/v1/plugins/autoheal/commands/nope", &app.merchant_key)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        let commands = app.get(&poll, &app.merchant_key).await.ok().clone();
        let ack = format!(
            "/api/v1/plugins/autoheal/commands/{}/ack",
            commands[0]["id"].as_str().unwrap()
        );
        app.post(&ack, &other_key, &json!({"success": true}))
            .await
            .error(StatusCode::NOT_FOUND);
        check_refused(
            app,
            &ack,
            &app.merchant_key,
            json!({"success": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("success"),
        )
        .await;
        check_refused(
            app,
            &ack,
            &app.merchant_key,
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("success"),
        )
        .await;
        let bundle = "/api/v1/plugins/autoheal/bundles/add_missing_column";
        app.get(&format!("{bundle}/1.0.3"), &app.admin)
            .await
            .error(StatusCode::FORBIDDEN);
        app.get(&format!("{bundle}/9.9.9"), &app.merchant_key)
            .await
            .error(StatusCode::NOT_FOUND);
        let (_, field) = app
            .get(&format!("{bundle}/latest"), &app.merchant_key)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("version"));
    })
    .await;
}

#[tokio::test]
async fn illegal_transitions_are_conflicts_that_change_nothing() {
    each_install(async |app, id| {
        let pending = detect(app, &detection(id, 70.0, "wp_molam_orders")).await;
        let pending_id = pending["log"]["id"].as_str().unwrap().to_owned();
        let base = format!("/api/v1/plugins/autoheal/{pending_id}");
        let reason = json!({"reason": "not needed"});
        // Nothing was applied, so there is nothing to roll back.
        app.post(&format!("{base}/rollback"), &app.operator, &reason).await.error(StatusCode::CONFLICT);
        // An edited patch with parameters the patch does not accept changes nothing.
        let bad_edit = json!({"patch": {"params": {"table": "wp_molam_orders", "column": "x; DROP TABLE", "column_type": "INT"}}});
        let (_, field) = app.post(&format!("{base}/apply"), &app.operator, &bad_edit).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("patch.params"));
        let unknown = json!({"patch": {"name": "format_disk", "params": {}}});
        let (_, field) = app.post(&format!("{base}/apply"), &app.operator, &unknown).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("patch.name"));
        assert_eq!(log(app, &json!(pending_id)).await["status"], "pending_review");
        // Rejected is final.
        let rejected = app.post(&format!("{base}/reject"), &app.operator, &reason).await;
        assert_eq!(rejected.ok()["log"]["status"], "rejected");
        for (action, body) in [("apply", json!({})), ("reject", reason.clone()), ("rollback", reason.clone())] {
            let (code, _) = app.post(&format!("{base}/{action}"), &app.operator, &body).await.error(StatusCode::CONFLICT);
            assert_eq!(code, "conflict");
        }
        assert_eq!(log(app, &json!(pending_id)).await["status"], "rejected");
        // An Ops edit in the seed's spelling is re-validated and applied.
        let memory = json!({
            "plugin_id": id, "detected_issue": "Allowed memory size of 134217728 bytes exhausted",
            "issue_severity": "medium", "patch_type": "config_update", "sira_confidence": 88.5
        });
        let waiting = detect(app, &memory).await;
        assert_eq!(waiting["status"], "pending_review", "memory rule never auto-applies");
        let edit = json!({"patch": {"type": "config_update", "target": "memory_limit", "value": "256M"}});
        let approved = app
            .post(&format!("/api/v1/plugins/autoheal/{}/apply", waiting["log"]["id"].as_str().unwrap()), &app.operator, &edit)
            .await;
        assert_eq!(approved.ok()["log"]["status"], "approved", "{}", approved.body);
        assert_eq!(approved.body["log"]["operations"], json!([{"op": "set_config", "key": "memory_limit", "value": "256M"}]));
        // A detection nothing matches is rejected and recorded.
        let unmatched = json!({"plugin_id": id, "detected_issue": "The moon is full", "sira_confidence": 99});
        assert_eq!(detect(app, &unmatched).await["status"], "rejected");
        // Unknown ids and malformed ones.
        let missing = format!("/api/v1/plugins/autoheal/{}/apply", Uuid::nil());
        app.post(&missing, &app.operator, &json!({})).await.error(StatusCode::NOT_FOUND);
        let (_, field) = app.post("/api/v1/plugins/autoheal/xyz/apply", &app.operator, &json!({})).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("id"));
    })
    .await;
}

#[tokio::test]
async fn an_install_without_reported_state_gets_no_command() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let mut heartbeat = woo_heartbeat();
        heartbeat.as_object_mut().unwrap().remove("state");
        let id = app.heartbeat(heartbeat).await;
        let created = detect(&app, &detection(id, 92.5, "wp_molam_orders")).await;
        assert_eq!(created["status"], "failed");
        assert_eq!(created["log"]["failure_kind"], "no_snapshot");
        assert!(created["log"]["snapshot_id"].is_null());
        let commands = app
            .get(
                &format!("/api/v1/plugins/autoheal/commands/{id}"),
                &app.merchant_key,
            )
            .await;
        assert!(commands.ok().as_array().unwrap().is_empty());
        app.store
    })
    .await;
}

/// The patch registry over a folder it is given: each bundle verified on its own, bad ones
/// refused with the reason while the others serve, reloads that add versions and refuse
/// downgrades, and per-patch run figures.
#[tokio::test]
async fn the_patch_registry_refuses_bad_bundles_and_keeps_the_rest() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    for entry in std::fs::read_dir(repo().join("patches/bundles")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let dev_key = repo().join("patches/dev-key/autoheal.key");
    let now = crate::support::start_time();
    let sign = |version: &str, key: &std::path::Path, out: &str| {
        host::tools::sign_patch_to_file(
            &repo().join("patches/add_missing_column"),
            key,
            version,
            chrono::Duration::days(30),
            now,
            &dir.join(out),
        )
        .unwrap();
    };
    // Signed by a key the server does not trust, and a module swapped under its manifest.
    let rogue =
        host::tools::generate_keys(&folder.path().join("rogue"), host::tools::KeyRole::Root)
            .unwrap();
    sign("2.0.0", &rogue.private_key, "rogue-2.0.0.bundle.json");
    let mut tampered: Value = serde_json::from_slice(
        &std::fs::read(dir.join("update_memory_limit-1.0.3.bundle.json")).unwrap(),
    )
    .unwrap();
    // One base64 character of the module changed: other bytes under the signed manifest.
    let mut module = tampered["module"].as_str().unwrap().to_owned();
    let flipped = if &module[100..101] == "A" { "B" } else { "A" };
    module.replace_range(100..101, flipped);
    tampered["module"] = json!(module);
    std::fs::write(
        dir.join("tampered.bundle.json"),
        serde_json::to_vec(&tampered).unwrap(),
    )
    .unwrap();

    let trusted =
        host::tools::load_trusted_keys(&[repo().join("patches/dev-key/autoheal.pub")]).unwrap();
    let registry = api::healing::patches::PatchRegistry::load(
        host::Host::new(host::HostConfig::default()).unwrap(),
        dir,
        trusted,
        now,
    );
    let status = registry.status(now);
    let loaded: Vec<(&str, &str)> = status
        .patches
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        loaded,
        [
            ("add_missing_column", "1.0.3"),
            ("api_key_refresh_notice", "1.0.3"),
            ("php_upgrade_notice", "1.0.3"),
            ("update_memory_limit", "1.0.3")
        ]
    );
    let refused: Vec<(&str, String)> = status
        .refused
        .iter()
        .map(|r| (r.file.as_str(), r.reason.to_string()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|(f, r)| *f == "rogue-2.0.0.bundle.json" && r.contains("trusted key")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|(f, r)| *f == "tampered.bundle.json" && r.contains("module SHA-256")),
        "{refused:?}"
    );

    // A newer version appears: it becomes current; the older stays downloadable.
    sign("1.0.4", &dev_key, "add_missing_column-1.0.4.bundle.json");
    registry.reload(now);
    let current = || {
        let current = registry.current("add_missing_column", now).unwrap();
        current.version().to_string()
    };
    assert_eq!(current(), "1.0.4");
    assert!(registry
        .get("add_missing_column", &"1.0.3".parse().unwrap(), now)
        .is_some());
    // An older one appearing later is a downgrade, refused; the current one stays.
    sign("1.0.1", &dev_key, "add_missing_column-1.0.1.bundle.json");
    let refused = registry.reload(now);
    assert!(
        refused
            .iter()
            .any(|r| r.file == "add_missing_column-1.0.1.bundle.json"
                && matches!(
                    r.reason,
                    api::healing::patches::Refusal::Verify(host::VerifyError::Downgrade { .. })
                )),
        "{refused:?}"
    );
    assert_eq!(current(), "1.0.4");

    // Over HTTP: the listing with run figures after a detection's dry run.
    each_install(async |app, id| {
        detect(app, &detection(id, 92.5, "wp_molam_orders")).await;
        detect(app, &detection(id, 92.5, "wp_missing")).await;
        let listing = app
            .get("/api/v1/plugins/autoheal/patches", &app.viewer)
            .await;
        let patch = listing.ok()["patches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "add_missing_column")
            .unwrap()
            .clone();
        assert_eq!(patch["status"], "loaded");
        assert_eq!(patch["current"], true);
        assert_eq!(patch["runs"]["runs"], 2);
        assert_eq!(patch["runs"]["failures"], 1);
        assert_eq!(patch["runs"]["failures_by_kind"]["patch_refused"], 1);
        assert_eq!(patch["key_ids"].as_array().unwrap().len(), 1);
        assert!(listing.body["refused"].as_array().unwrap().is_empty());
        app.get("/api/v1/plugins/autoheal/patches", &app.merchant_key)
            .await
            .error(StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn metrics_expose_the_loop_and_the_registry() {
    each_install(async |app, id| {
        detect(app, &detection(id, 92.5, "wp_molam_orders")).await;
        detect(app, &detection(id, 70.0, "wp_molam_orders")).await;
        let body = json!({"plugin_id": id, "event_type": "checkout.created", "payload": {"order_id": "1"}});
        app.post("/api/v1/plugins/interop/event", &app.merchant_key, &body).await.ok();
        let text = app.metrics().await;
        for line in [
            "plugin_autoheal_patches_total{status=\"approved\"} 1",
            "plugin_autoheal_patches_total{status=\"pending_review\"} 1",
            "plugin_autoheal_patches_total{status=\"rolled_back\"} 0",
            "plugin_autoheal_avg_confidence 81.25",
            "plugin_interop_events_total{platform=\"woocommerce\"} 1",
            "plugin_interop_events_total{category=\"checkout\"} 1",
            "plugin_interop_events_total{processing_status=\"processed\"} 1",
            "plugin_interop_success_rate 100.00",
            "autoheal_patch_bundles{state=\"loaded\"} 4",
            "autoheal_patch_dry_runs_total{patch=\"add_missing_column\"} 1",
            "plugin_installations_total{cms=\"woocommerce\"} 1",
            "plugin_outdated_percentage 0.00",
            "plugin_heartbeat_latency_seconds_count 1",
            "plugin_autoheal_detection_seconds_count 2",
            "provider_requests_total{outcome=\"delivered\"} 0",
            "outbox_messages{status=\"pending\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(&id.to_string()), "no install ids in labels");
    })
    .await;
}
