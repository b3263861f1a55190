//! Per-merchant quotas (issue 17), on SQLite and PostgreSQL: a merchant's installations are
//! bounded (a new site beyond the quota is refused, its existing sites keep reporting, also
//! after a restart), and its keys' event rate is bounded, telemetry and interop events
//! together; both answered 429 `quota_exceeded` with `Retry-After`. Other merchants are not
//! affected.

use crate::support::{each_store, TestApp};
use api::quotas::QuotaConfig;
use api::ServerConfig;
use axum::http::StatusCode;
use serde_json::{json, Value};

const HEARTBEAT: &str = "/api/v1/plugins/heartbeat";

fn site(n: usize) -> Value {
    json!({"cms": "woocommerce", "site_url": format!("https://shop-{n}.example"), "plugin_version": "1.3.5"})
}

#[track_caller]
fn quota_exceeded(response: &crate::support::TestResponse) -> u64 {
    let (code, _) = response.error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, "quota_exceeded", "{}", response.body);
    response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn config(max_installs: i64, events_per_second: u32) -> ServerConfig {
    ServerConfig {
        quotas: QuotaConfig {
            max_installs_per_merchant: max_installs,
            merchant_events_per_second: events_per_second,
        },
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_merchant_has_at_most_its_quota_of_installations() {
    each_store(|store| async {
        let app = TestApp::with_config(store, config(3, 0)).await;
        for n in 0..3 {
            app.heartbeat(site(n)).await;
        }
        let refused = app.post(HEARTBEAT, &app.merchant_key, &site(3)).await;
        assert_eq!(quota_exceeded(&refused), 3600);
        assert!(refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 installations"));
        // Its sites keep reporting, here and after a restart (nothing cached).
        app.heartbeat(site(0)).await;
        let app = app.rebuilt(|b| b).await;
        app.heartbeat(site(2)).await;
        quota_exceeded(&app.post(HEARTBEAT, &app.merchant_key, &site(4)).await);
        assert_eq!(
            app.store
                .count("SELECT COUNT(*) FROM plugin_installations")
                .await,
            3
        );
        // Another merchant has its own quota.
        let (_, other) = app.create_merchant("Other Shop").await;
        app.post(HEARTBEAT, &other, &site(9)).await.ok();
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_merchants_event_rate_is_bounded_across_telemetry_and_interop() {
    each_store(|store| async {
        let app = TestApp::with_config(store, config(100, 4)).await;
        let id = app.heartbeat(site(0)).await;
        let event = json!({"cms": "woocommerce", "site_url": "https://shop-0.example", "event_type": "payment_success"});
        let interop = json!({"plugin_id": id, "event_type": "checkout.created", "payload": {"order_id": "1"}});
        let mut accepted = 0;
        let mut refused = None;
        for n in 0..8 {
            let response = if n % 2 == 0 {
                app.post("/api/v1/plugins/event", &app.merchant_key, &event).await
            } else {
                app.post("/api/v1/plugins/interop/event", &app.merchant_key, &interop).await
            };
            if response.status.is_success() {
                accepted += 1;
            } else {
                refused.get_or_insert(response);
            }
        }
        // A bucket of one second's worth: 4, and at most one more refilled meanwhile.
        assert!((4..=5).contains(&accepted), "{accepted}");
        assert!(quota_exceeded(&refused.unwrap()) >= 1);
        // Another merchant's keys have their own bucket.
        let (_, other) = app.create_merchant("Other Shop").await;
        app.post("/api/v1/plugins/event", &other, &event).await.ok();
        app.store
    })
    .await;
}
