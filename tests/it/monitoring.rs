//! Scheduled jobs, alerts and health through the public API on both backends: a job runs
//! once per interval even with two replicas, a missed run is caught up once, the alert rules
//! open and resolve alerts (dispatched to a real receiver), Ops acknowledge and resolve them,
//! security releases notify outdated installs, and the dependencies' health is recorded.

use crate::support::{each_store, Receiver, TestApp};
use api::ops::AlertChannels;
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::json;

async fn outdated_fleet(app: &TestApp, security: bool) {
    let release = json!({"cms": "woocommerce", "version": "1.3.5", "is_latest": true, "security": security, "release_notes": "Fixes"});
    app.post("/api/v1/plugins/versions", &app.admin, &release)
        .await
        .ok();
    for site in ["a", "b", "c"] {
        app.heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.2.0", "site_url": format!("https://{site}.example")})).await;
    }
}

#[tokio::test]
async fn jobs_run_once_per_interval_and_catch_up_once() {
    let receiver = Receiver::start().await;
    each_store(|store| async {
        let app = TestApp::new(store).await;
        let alerts = AlertChannels { slack_url: Some(format!("{}/alerts", receiver.base)), ..AlertChannels::default() };
        let app = app.rebuilt(|parts| parts.config(api::ServerConfig { alerts, ..api::ServerConfig::default() })).await;
        outdated_fleet(&app, false).await;
        // Two replicas check the schedule at the same moment: each job runs once.
        let replica = app.state.clone();
        let (a, b) = tokio::join!(app.state.ops.run_due(), replica.ops.run_due());
        let mut ran = [a.unwrap().jobs, b.unwrap().jobs].concat();
        ran.sort();
        assert_eq!(ran, ["daily_health", "hourly_fleet_check", "retention"]);
        assert!(app.state.ops.run_due().await.unwrap().jobs.is_empty(), "not due again");
        app.clock.advance(Duration::minutes(59));
        assert!(app.state.ops.run_due().await.unwrap().jobs.is_empty());
        app.clock.advance(Duration::minutes(1));
        assert_eq!(app.state.ops.run_due().await.unwrap().jobs, ["hourly_fleet_check", "retention"]);
        // No server for five hours: the hourly job runs once when one is back, not five times.
        app.clock.advance(Duration::hours(5));
        assert_eq!(app.state.ops.run_due().await.unwrap().jobs, ["hourly_fleet_check", "retention"]);
        assert!(app.state.ops.run_due().await.unwrap().jobs.is_empty());
        let runs = app.get("/api/platform/jobs", &app.viewer).await;
        let hourly = runs.ok().as_array().unwrap().iter().find(|j| j["job"] == "hourly_fleet_check").unwrap().clone();
        assert_eq!((hourly["runs"].as_i64(), hourly["last_status"].as_str()), (Some(3), Some("ok")));

        // The fleet is 100 % outdated: one PluginOutdatedHigh alert (not one per run),
        // dispatched through the outbox.
        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await;
        let open: Vec<_> = alerts.ok().as_array().unwrap().iter().filter(|a| a["name"] == "PluginOutdatedHigh").cloned().collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0]["severity"], "critical");
        app.state.delivery.deliver_due().await.unwrap();
        assert!(receiver.requests().iter().any(|r| String::from_utf8_lossy(&r.body).contains("PluginOutdatedHigh")));

        // Ops acknowledge, then resolve; every move recorded, an illegal one refused.
        let id = open[0]["id"].as_str().unwrap();
        app.post(&format!("/api/platform/alerts/{id}/ack"), &app.viewer, &json!({})).await.error(StatusCode::FORBIDDEN);
        let acked = app.post(&format!("/api/platform/alerts/{id}/ack"), &app.operator, &json!({})).await;
        assert_eq!(acked.ok()["status"], "acknowledged");
        assert!(acked.body["acknowledged_by"].is_string() && acked.body["acknowledged_at"].is_string());
        app.post(&format!("/api/platform/alerts/{id}/ack"), &app.operator, &json!({})).await.error(StatusCode::CONFLICT);
        let resolved = app.post(&format!("/api/platform/alerts/{id}/resolve"), &app.operator, &json!({})).await;
        assert_eq!(resolved.ok()["status"], "resolved");
        app.post(&format!("/api/platform/alerts/{id}/resolve"), &app.operator, &json!({})).await.error(StatusCode::CONFLICT);
        let audit = app.get("/api/v1/audit", &app.admin).await;
        let actions: Vec<&str> = audit.ok().as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"alert.acknowledge") && actions.contains(&"alert.resolve"));

        // Still firing at the next run: a new alert. Once the fleet upgrades, the system
        // resolves it.
        app.clock.advance(Duration::hours(1));
        app.state.ops.run_due().await.unwrap();
        let reopened = app.get("/api/platform/alerts?status=open", &app.viewer).await;
        let again = reopened.ok().as_array().unwrap().iter().find(|a| a["name"] == "PluginOutdatedHigh").cloned().unwrap();
        for site in ["a", "b", "c"] {
            app.heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.3.5", "site_url": format!("https://{site}.example")})).await;
        }
        app.clock.advance(Duration::hours(1));
        app.state.ops.run_due().await.unwrap();
        let all = app.get("/api/platform/alerts", &app.viewer).await;
        let cleared = all.ok().as_array().unwrap().iter().find(|a| a["id"] == again["id"]).cloned().unwrap();
        assert_eq!(cleared["status"], "resolved");
        assert!(cleared["resolved_by"].is_null(), "resolved by the system");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_security_release_notifies_outdated_installs_daily() {
    each_store(|store| async {
        let app = TestApp::new(store).await;
        outdated_fleet(&app, true).await;
        app.state.ops.run_due().await.unwrap();
        // Critical: email (the merchant has no phone, so no SMS); one per install, and not
        // again on the next day within the quiet period.
        let messages = app
            .get("/api/platform/outbox/messages?limit=100", &app.viewer)
            .await;
        let emails = messages
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["channel"] == "email" && m["source_type"] == "upgrade_notification")
            .count();
        assert_eq!(emails, 3);
        app.clock.advance(Duration::days(1));
        app.state.ops.run_due().await.unwrap();
        let messages = app
            .get("/api/platform/outbox/messages?limit=100", &app.viewer)
            .await;
        assert_eq!(
            messages
                .ok()
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["channel"] == "email")
                .count(),
            3
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn dependency_health_is_recorded_per_tier() {
    let receiver = Receiver::start().await;
    each_store(|store| async {
        let app = TestApp::new(store).await;
        app.get("/api/platform/health/store", &app.viewer)
            .await
            .error(StatusCode::NOT_FOUND);
        let checks = app.state.ops.check_tier("critical").await;
        assert_eq!(checks[0].service, "store");
        assert_eq!(checks[0].status, "healthy");
        // A webhook destination whose breaker is open is down.
        let message = api::delivery::NewOutboxMessage {
            channel: "webhook",
            destination: format!("{}/down", receiver.base),
            payload: json!({}),
            source_type: "test",
            source_id: None,
        };
        receiver.answer(&[(503, None); 5]);
        for _ in 0..5 {
            app.state
                .store
                .enqueue(std::slice::from_ref(&message), app.clock.now())
                .await
                .unwrap();
        }
        app.state.delivery.deliver_due().await.unwrap();
        app.state.ops.check_tier("integrations").await;
        let health = app.get("/api/platform/health", &app.viewer).await;
        assert_eq!(health.ok()["status"], "down");
        let services: Vec<&str> = health.body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["service"].as_str().unwrap())
            .collect();
        let label = api::delivery::outbox::destination_label(&format!("{}/down", receiver.base));
        assert_eq!(services, ["store".to_owned(), format!("webhook:{label}")]);
        assert!(
            !label.contains("/down"),
            "no URL in a service name: {label}"
        );
        // A service found down opens a DependencyDown alert; healthy again, it is resolved.
        let alerts = app
            .get("/api/platform/alerts?status=open", &app.viewer)
            .await;
        let down: Vec<_> = alerts
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["name"] == "DependencyDown")
            .cloned()
            .collect();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0]["labels"]["service"], format!("webhook:{label}"));
        app.clock.advance(Duration::seconds(31));
        app.state.delivery.deliver_due().await.unwrap();
        app.state.ops.check_tier("integrations").await;
        let alerts = app
            .get("/api/platform/alerts?status=open", &app.viewer)
            .await;
        assert!(
            alerts
                .ok()
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["name"] != "DependencyDown"),
            "{}",
            alerts.body
        );
        let store_history = app.get("/api/platform/health/store", &app.viewer).await;
        assert_eq!(store_history.ok()["status"], "healthy");
        assert_eq!(store_history.body["history"][0]["tier"], "critical");
        app.get("/api/platform/health", &app.merchant_key)
            .await
            .error(StatusCode::FORBIDDEN);
        app.store
    })
    .await;
}
