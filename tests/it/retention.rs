//! Retention (issue 16): expired rows go, recent rows stay, and the figures the rollups hold
//! do not change when the raw rows they summarize expire.

use crate::fleet::install;
use crate::support::{each_store, repo, TestApp};
use api::ops::retention::RetentionConfig;
use api::ops::HealthCheck;
use chrono::Duration;
use serde_json::json;

async fn event(app: &TestApp, event_type: &str, severity: &str) {
    app.post(
        "/api/v1/plugins/event",
        &app.merchant_key,
        &json!({"cms": "woocommerce", "site_url": "https://a.example",
                "event_type": event_type, "severity": severity}),
    )
    .await
    .ok();
}

/// The stored events' severities, sorted.
async fn severities(app: &TestApp) -> Vec<String> {
    let mut kept = Vec::new();
    for severity in ["critical", "debug", "error", "info", "warning"] {
        let n = app
            .store
            .count(&format!(
                "SELECT COUNT(*) FROM plugin_telemetry_events WHERE severity = '{severity}'"
            ))
            .await;
        kept.extend((0..n).map(|_| severity.to_owned()));
    }
    kept
}

async fn prune(app: &TestApp) -> api::ops::retention::Pruned {
    app.state
        .store
        .prune(&RetentionConfig::default(), app.clock.now())
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_rows_go_recent_rows_stay_and_the_figures_hold() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        // The job prepares the months ahead first (on PostgreSQL): the events below land
        // in the month they arrive in, not in the default partition.
        prune(&app).await;
        let id = install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        for (event_type, severity) in [
            ("payment_failed", "critical"),
            ("error", "error"),
            ("warning", "warning"),
            ("payment_success", "info"),
            ("info", "debug"),
        ] {
            event(&app, event_type, severity).await;
        }
        let interop = json!({"plugin_id": id, "event_type": "checkout.created", "payload": {"order_id": "1"}});
        app.post("/api/v1/plugins/interop/event", &app.merchant_key, &interop)
            .await
            .ok();
        let check = |at| HealthCheck {
            service: "database".into(),
            tier: "critical".into(),
            status: "healthy".into(),
            latency_ms: 1.0,
            detail: None,
            checked_at: at,
        };
        app.state.store.record_health(&check(app.clock.now())).await.unwrap();
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!((&detail.ok()["error_rate"], &detail.ok()["errors_24h"]), (&json!(66.67), &json!(2)));

        let all = ["critical", "debug", "error", "info", "warning"];
        let expected: [(i64, &[&str]); 5] = [
            (0, &all),
            (2, &["critical", "error", "info", "warning"]),
            (8, &["critical", "error", "warning"]),
            (15, &["critical", "error"]),
            (31, &[]),
        ];
        let mut elapsed = 0;
        for (days, kept) in expected {
            app.clock.advance(Duration::days(days - elapsed) + Duration::minutes(1));
            elapsed = days;
            prune(&app).await;
            assert_eq!(severities(&app).await, kept, "after {days} days");
        }
        assert_eq!(app.store.count("SELECT COUNT(*) FROM plugin_interop_events").await, 0);
        assert_eq!(app.store.count("SELECT COUNT(*) FROM health_check_history").await, 0);
        assert_eq!(
            app.store.count("SELECT COUNT(*) FROM plugin_event_rollups").await,
            1,
            "the rollups outlive the raw events"
        );
        assert_eq!(app.store.count("SELECT COUNT(*) FROM plugin_installations").await, 1);

        // A month past the longest retention goes whole on PostgreSQL.
        app.clock.advance(Duration::days(75 - elapsed));
        let pruned = prune(&app).await;
        if !app.store.url.starts_with("sqlite:") {
            assert!(
                pruned.partitions_dropped.contains(&"plugin_telemetry_events_y2025m01".to_owned()),
                "{pruned:?}"
            );
            let default_rows = app
                .store
                .count("SELECT COUNT(*) FROM plugin_telemetry_events_default")
                .await;
            assert_eq!(default_rows, 0, "every event landed in its month");
        }
        app.store
    })
    .await;
}

#[tokio::test]
async fn rollups_may_not_go_before_the_events_they_summarize() {
    let config = RetentionConfig {
        rollups: Duration::days(7),
        ..RetentionConfig::default()
    };
    assert!(config.check().is_err());
    assert!(RetentionConfig::default().check().is_ok());
}

#[tokio::test]
async fn grouped_error_events_expire_and_their_groups_stay() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        let error = json!({"cms": "woocommerce", "site_url": "https://a.example", "event_type": "error",
                           "severity": "error", "message": "cURL error 28: timed out after 30001 ms"});
        app.post("/api/v1/plugins/event", &app.merchant_key, &error).await.ok();
        app.clock.advance(Duration::days(29));
        app.post("/api/v1/plugins/event", &app.merchant_key, &error).await.ok();
        app.clock.advance(Duration::days(1) + Duration::minutes(1));
        let pruned = prune(&app).await;
        assert_eq!(pruned.rows.get("error_occurrences"), Some(&1), "{pruned:?}");
        assert_eq!(app.store.count("SELECT COUNT(*) FROM error_occurrences").await, 1);
        let groups = app.get("/api/platform/errors", &app.operator).await;
        assert_eq!(groups.ok()["groups"][0]["events"], 2, "the group keeps its count");
        app.store
    })
    .await;
}
