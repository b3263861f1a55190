//! `errors_last_hour`, on SQLite and PostgreSQL: an install that sends only heartbeats is
//! judged by the error rate it reports — in its status view, the overview, the fleet's
//! alerts and the regression analysis after a patch — and outcome events, where there are
//! any, come first.

use crate::support::{each_store, TestApp};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

fn heartbeat(site: &str, errors_last_hour: f64) -> Value {
    json!({"cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5",
           "errors_last_hour": errors_last_hour,
           "state": {"tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED"}}}})
}

async fn installs(app: &TestApp) -> Vec<Value> {
    let list = app.get("/api/v1/plugins/list?limit=500", &app.viewer).await;
    list.ok().as_array().unwrap().clone()
}

fn by_site<'a>(installs: &'a [Value], site: &str) -> &'a Value {
    installs.iter().find(|i| i["site_url"] == site).unwrap()
}

#[tokio::test]
async fn heartbeat_only_installs_show_the_error_rate_they_report() {
    each_store(|store| async {
        let app = TestApp::new(store).await;
        app.heartbeat(heartbeat("https://reports.example", 12.5)).await;
        // Outcome events come first: 10 payments, none failed.
        app.heartbeat(heartbeat("https://events.example", 40.0)).await;
        for _ in 0..10 {
            let event = json!({"cms": "woocommerce", "site_url": "https://events.example", "event_type": "payment_success"});
            app.post("/api/v1/plugins/event", &app.merchant_key, &event).await.ok();
        }
        // A percentage: more than 100 reads as 100.
        app.heartbeat(heartbeat("https://counts.example", 250.0)).await;

        let list = installs(&app).await;
        let expect = [
            ("https://reports.example", 12.5, "heartbeat"),
            ("https://events.example", 0.0, "events"),
            ("https://counts.example", 100.0, "heartbeat"),
        ];
        for (site, rate, source) in expect {
            let install = by_site(&list, site);
            assert_eq!(install["error_rate"], json!(rate), "{install}");
            assert_eq!(install["error_rate_source"], source, "{install}");
        }
        let id = by_site(&list, "https://reports.example")["id"].as_str().unwrap().to_owned();
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["error_rate"], 12.5);
        let overview = app.get("/api/v1/plugins/stats/overview", &app.viewer).await;
        let overview = overview.ok();
        assert_eq!(overview["high_error_rate_count"], 2, "{overview}");
        assert_eq!(overview["avg_error_rate"], 37.5, "{overview}");

        // Six installs above 5 % that send no events: the fleet alert fires.
        for n in 0..4 {
            app.heartbeat(heartbeat(&format!("https://more{n}.example"), 10.0)).await;
        }
        app.state.ops.run_due().await.unwrap();
        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await;
        let names: Vec<Value> = alerts.ok().as_array().unwrap().iter().map(|a| a["name"].clone()).collect();
        assert!(names.contains(&json!("PluginHighErrorRate")), "{names:?}");

        // A report older than the 24 h window says nothing any more.
        app.clock.advance(Duration::hours(25));
        let list = installs(&app).await;
        let stale = by_site(&list, "https://reports.example");
        assert_eq!((stale["error_rate"].clone(), stale["error_rate_source"].clone()), (json!(0.0), json!("none")));
        app.store
    })
    .await;
}

/// Auto-applies the seed's column patch on `site` and acks it applied; the log id.
async fn applied_patch(app: &TestApp, site: &str, errors_last_hour: f64) -> (Uuid, String) {
    let install = app.heartbeat(heartbeat(site, errors_last_hour)).await;
    let detection = json!({
        "plugin_id": install, "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
        "issue_severity": "high", "patch_type": "database_patch", "sira_confidence": 95.0,
        "proposed_patch": {"type": "database_patch", "action": "add_missing_column", "table": "wp_molam_orders",
                           "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}
    });
    let created = app
        .post("/api/v1/plugins/autoheal", &app.sira, &detection)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "applied", "{}", created.body);
    let commands = app
        .get(
            &format!("/api/v1/plugins/autoheal/commands/{install}"),
            &app.merchant_key,
        )
        .await;
    let command = commands.ok()[0]["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/plugins/autoheal/commands/{command}/ack"),
        &app.merchant_key,
        &json!({"success": true, "result": {}}),
    )
    .await
    .ok();
    (
        install,
        created.body["log"]["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_patch_on_a_heartbeat_only_install_rolls_back_when_its_reported_rate_rises() {
    each_store(|store| async {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let (_, steady) = applied_patch(&app, "https://steady.example", 0.5).await;
        let (_, rising) = applied_patch(&app, "https://rising.example", 0.5).await;
        let log = |id: String| {
            let app = &app;
            async move {
                app.get(&format!("/api/v1/plugins/autoheal/{id}"), &app.viewer)
                    .await
                    .ok()
                    .clone()
            }
        };
        assert_eq!(
            log(rising.clone()).await["reported_error_rate_at_apply"],
            0.5
        );

        // Half an hour on, a heartbeat's hour still holds time before the apply: no verdict.
        app.clock.advance(Duration::minutes(30));
        app.heartbeat(heartbeat("https://rising.example", 30.0))
            .await;
        app.clock.advance(Duration::minutes(35));
        assert!(app
            .state
            .healing
            .analyze_regressions()
            .await
            .unwrap()
            .is_empty());

        // A heartbeat whose hour is wholly after the apply: 0.5 % → 30 % is a regression.
        app.clock.advance(Duration::minutes(5));
        app.heartbeat(heartbeat("https://rising.example", 30.0))
            .await;
        app.heartbeat(heartbeat("https://steady.example", 0.5))
            .await;
        let rolled = app.state.healing.analyze_regressions().await.unwrap();
        assert_eq!(rolled.len(), 1);
        let rolled = log(rising).await;
        assert_eq!(rolled["status"], "rolling_back", "{rolled}");
        assert_eq!(rolled["rollback_trigger"], "regression");
        let reason = rolled["rollback_reason"].as_str().unwrap();
        assert!(
            reason.contains("0.5 %") && reason.contains("30.0 %"),
            "{reason}"
        );
        assert_eq!(log(steady).await["status"], "applied");
        app.store
    })
    .await;
}
