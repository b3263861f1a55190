//! The built-in detector end to end, on SQLite and PostgreSQL: plugins report errors as
//! telemetry events, the errors group, and the detector raises detections of its own that go
//! through the same decision and review as Sira's.

use crate::support::{each_store, TestApp};
use api::healing::{DetectorConfig, DetectorRun, HealingConfig};
use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

const OUT_OF_MEMORY: &str =
    "PHP Fatal error: Allowed memory size of {limit} bytes exhausted (tried to allocate {size} bytes)";

async fn app_with(store: crate::support::TestStore, detector: DetectorConfig) -> TestApp {
    TestApp::healing(
        store,
        HealingConfig {
            detector,
            ..HealingConfig::default()
        },
    )
    .await
}

/// A WooCommerce install at `site` that reported its state.
async fn install(app: &TestApp, site: &str) -> Uuid {
    app.heartbeat(json!({
        "cms": "woocommerce",
        "site_url": site,
        "plugin_version": "1.3.5",
        "php_version": "8.1.27",
        "state": {
            "config": {"memory_limit": "128M"},
            "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"}}
        }
    }))
    .await
}

/// The install at `site` reports `message` as an error event.
async fn report(app: &TestApp, site: &str, message: &str) {
    app.post(
        "/api/v1/plugins/event",
        &app.merchant_key,
        &json!({"cms": "woocommerce", "site_url": site, "event_type": "error",
                "severity": "error", "event_data": {}, "message": message}),
    )
    .await
    .ok();
}

/// The install at `site` runs out of memory `times` times, each with other numbers.
async fn out_of_memory(app: &TestApp, site: &str, times: usize) {
    for n in 0..times {
        let message = OUT_OF_MEMORY
            .replace("{limit}", &(134_217_728 + n * 1024).to_string())
            .replace("{size}", &(20_480 + n * 8).to_string());
        report(app, site, &message).await;
    }
}

/// One look of the detector at the clock's now.
async fn look(app: &TestApp) -> DetectorRun {
    app.state
        .healing
        .run_detector(app.clock.now())
        .await
        .unwrap()
}

async fn detector_logs(app: &TestApp) -> Vec<Value> {
    let response = app
        .get(
            "/api/v1/plugins/autoheal/logs?source=detector",
            &app.operator,
        )
        .await;
    response.ok().as_array().unwrap().clone()
}

/// The platform log's entries of `action`, once the buffered writer has written `count`.
async fn logged(app: &TestApp, action: &str, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let page = app
            .get(
                &format!("/api/platform/logs?action={action}"),
                &app.operator,
            )
            .await;
        let entries = page.ok()["entries"].as_array().unwrap().clone();
        if entries.len() >= count {
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("fewer than {count} {action} entries were written");
}

const SITES: [&str; 3] = [
    "https://one.example",
    "https://two.example",
    "https://three.example",
];

#[tokio::test]
async fn detector_raises_detections_that_wait_for_review_once_per_install_and_rule() {
    each_store(|store| async move {
        let app = app_with(store, DetectorConfig::default()).await;
        let mut installs = Vec::new();
        for site in SITES {
            installs.push(install(&app, site).await);
            out_of_memory(&app, site, 3).await;
        }
        // Two events are not a burst: this install stays below the threshold.
        install(&app, "https://four.example").await;
        out_of_memory(&app, "https://four.example", 2).await;

        let groups = app.get("/api/platform/errors", &app.operator).await;
        let groups = groups.ok()["groups"].as_array().unwrap().clone();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0]["installs"], 4);
        assert_eq!(groups[0]["events"], 11);
        assert_eq!(groups[0]["rule"], "memory_limit_exceeded");

        // The job's run (claimed once: a second call at the same time runs nothing).
        let run = app.state.healing.run_detector_due().await.unwrap().unwrap();
        assert_eq!(run.raised.len(), 3, "{run:?}");
        assert!(app
            .state
            .healing
            .run_detector_due()
            .await
            .unwrap()
            .is_none());
        // The platform log has the run and each decision.
        let ran = logged(&app, "detector.ran", 1).await;
        assert_eq!(ran.len(), 1);
        assert_eq!(ran[0]["service"], "detector");
        assert_eq!(
            ran[0]["message"],
            "the detector raised 3 detections and held back 0"
        );
        assert_eq!(ran[0]["data"]["raised"].as_array().unwrap().len(), 3);
        let decided = logged(&app, "healing.decided", 3).await;
        assert_eq!(decided.len(), 3);
        assert!(decided
            .iter()
            .all(|entry| entry["data"]["source"] == "detector"));
        let logs = detector_logs(&app).await;
        assert_eq!(logs.len(), 3);
        for log in &logs {
            assert_eq!(log["source"], "detector");
            assert_eq!(log["status"], "pending_review", "{log}");
            assert_eq!(log["rule_name"], "memory_limit_exceeded");
            assert!(installs.contains(&log["plugin_id"].as_str().unwrap().parse().unwrap()));
            // Why it was raised: the group, the events it counted, the confidence's inputs.
            let why = &log["raised_by"];
            assert_eq!(why["group_id"], groups[0]["id"]);
            assert_eq!(why["events"].as_array().unwrap().len(), 3, "{why}");
            assert_eq!(why["events_in_window"], 3);
            assert_eq!(
                why["confidence"],
                json!({"value": 50.0, "successes": 0, "failures": 0, "prior_successes": 1.0,
                       "prior_failures": 1.0, "window_days": 30})
            );
            assert_eq!(log["sira_confidence"], 50.0);
            assert!(log["detected_issue"]
                .as_str()
                .unwrap()
                .starts_with("PHP Fatal error: Allowed memory size of"));
        }
        // The console's log page says who raised it and why.
        let mut browser = crate::console::Browser::signed_in(&app, "operator@ops.test").await;
        let page = browser
            .get(&format!(
                "/console/healing/{}",
                logs[0]["id"].as_str().unwrap()
            ))
            .await;
        page.assert_ok("Why the detector raised it");
        page.assert_ok("the built-in detector");
        page.assert_ok(groups[0]["id"].as_str().unwrap());
        // Sira's detections are Sira's.
        let sira = app
            .get("/api/v1/plugins/autoheal/logs?source=sira", &app.operator)
            .await;
        assert_eq!(sira.ok().as_array().unwrap().len(), 0);

        // Ops approve one: its command is queued, with the limit the rule read from the error.
        let first = logs
            .iter()
            .find(|log| log["plugin_id"] == json!(installs[0]))
            .unwrap();
        let approved = app
            .post(
                &format!(
                    "/api/v1/plugins/autoheal/{}/apply",
                    first["id"].as_str().unwrap()
                ),
                &app.operator,
                &json!({}),
            )
            .await;
        assert_eq!(
            approved.ok()["log"]["status"],
            "approved",
            "{}",
            approved.body
        );
        let polled = app
            .get(
                &format!("/api/v1/plugins/autoheal/commands/{}", installs[0]),
                &app.merchant_key,
            )
            .await;
        let commands = polled.ok().as_array().unwrap().clone();
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0]["command_type"], "apply_patch");

        // More errors while the detections are open raise nothing new.
        for site in SITES {
            out_of_memory(&app, site, 3).await;
        }
        let again = look(&app).await;
        assert!(again.raised.is_empty(), "{again:?}");
        assert_eq!(again.skipped.len(), 3);
        assert!(again
            .skipped
            .iter()
            .all(|skip| skip.reason == "a detection is open for this install and rule"));
        assert_eq!(detector_logs(&app).await.len(), 3);

        // After Ops reject one, only new events count: none yet, so nothing…
        let third = logs
            .iter()
            .find(|log| log["plugin_id"] == json!(installs[2]))
            .unwrap();
        app.clock.advance(Duration::seconds(30));
        app.post(
            &format!(
                "/api/v1/plugins/autoheal/{}/reject",
                third["id"].as_str().unwrap()
            ),
            &app.operator,
            &json!({"reason": "not now"}),
        )
        .await
        .ok();
        let quiet = look(&app).await;
        assert!(quiet.raised.is_empty(), "{quiet:?}");
        // …until the install crosses the threshold again.
        app.clock.advance(Duration::seconds(30));
        out_of_memory(&app, SITES[2], 3).await;
        let recurred = look(&app).await;
        assert_eq!(recurred.raised.len(), 1, "{recurred:?}");
        assert_eq!(detector_logs(&app).await.len(), 4);

        // Events older than the window are not a burst.
        app.clock.advance(Duration::minutes(11));
        let later = look(&app).await;
        assert!(
            later.raised.is_empty() && later.skipped.is_empty(),
            "{later:?}"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn detector_off_raises_nothing() {
    each_store(|store| async move {
        let off = DetectorConfig {
            enabled: false,
            ..DetectorConfig::default()
        };
        let app = app_with(store, off).await;
        for site in SITES {
            install(&app, site).await;
            out_of_memory(&app, site, 5).await;
        }
        let run = look(&app).await;
        assert!(run.raised.is_empty() && run.skipped.is_empty(), "{run:?}");
        assert!(app
            .state
            .healing
            .run_detector_due()
            .await
            .unwrap()
            .is_none());
        assert!(detector_logs(&app).await.is_empty());
        app.store
    })
    .await;
}

#[tokio::test]
async fn the_detector_flag_and_the_hourly_limit_hold_detections_back() {
    each_store(|store| async move {
        let limited = DetectorConfig {
            max_per_hour: 2,
            ..DetectorConfig::default()
        };
        let app = app_with(store, limited).await;
        for site in SITES {
            install(&app, site).await;
            out_of_memory(&app, site, 3).await;
        }
        // Off by the flag (Ops' live switch).
        let flag = json!({"key": "autoheal.detector", "type": "boolean", "audience": "plugins",
                          "enabled": false});
        let created = app.post("/api/platform/flags", &app.operator, &flag).await;
        assert!(created.status.is_success(), "{}", created.body);
        app.state.flags.reload().await.unwrap();
        let run = look(&app).await;
        assert!(run.raised.is_empty(), "{run:?}");
        assert!(run
            .skipped
            .iter()
            .all(|skip| skip.reason == "the autoheal.detector flag is off for this install"));
        assert_eq!(run.skipped.len(), 3);

        // Flag on again: two are raised, the third waits for the next hour.
        let on = app
            .call(
                axum::http::Method::PATCH,
                "/api/platform/flags/autoheal.detector",
                Some(&app.operator),
                Some(&json!({"enabled": true})),
            )
            .await;
        assert!(on.status.is_success(), "{}", on.body);
        app.state.flags.reload().await.unwrap();
        let run = look(&app).await;
        assert_eq!(run.raised.len(), 2, "{run:?}");
        assert_eq!(run.skipped.len(), 1);
        assert_eq!(
            run.skipped[0].reason,
            "the detector's hourly limit is reached"
        );
        app.clock.advance(Duration::minutes(61));
        out_of_memory(&app, SITES[2], 3).await;
        let next_hour = look(&app).await;
        assert_eq!(next_hour.raised.len(), 1, "{next_hour:?}");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_missing_column_waits_for_review_until_the_rule_has_a_track_record() {
    each_store(|store| async move {
        let app = app_with(store, DetectorConfig::default()).await;
        install(&app, SITES[0]).await;
        for _ in 0..3 {
            report(
                &app,
                SITES[0],
                "WordPress database error Unknown column 'merchant_fee' in 'field list' for query INSERT INTO wp_molam_orders",
            )
            .await;
        }
        let run = look(&app).await;
        assert_eq!(run.raised.len(), 1, "{run:?}");
        let logs = detector_logs(&app).await;
        assert_eq!(logs[0]["rule_name"], "missing_database_column");
        assert_eq!(logs[0]["status"], "pending_review", "{}", logs[0]);
        assert_eq!(logs[0]["decision"]["outcome"], "pending_review");
        app.store
    })
    .await;
}
