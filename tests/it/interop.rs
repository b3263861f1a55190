//! The interop layer through HTTP on both backends: events normalized by the file
//! mappings, by store-held mappings (which take precedence) or passed through when already
//! normalized; redeliveries stored once; events nothing maps stored as failed; Ops listings,
//! stats and mapping management.

use crate::support::{each_store, repo, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const EVENT: &str = "/api/v1/plugins/interop/event";
const MAPPINGS: &str = "/api/v1/plugins/interop/mappings";

async fn install(app: &TestApp, cms: &str) -> Uuid {
    app.heartbeat(json!({"cms": cms, "site_url": format!("https://{cms}.example"), "plugin_version": "1.3.5"}))
        .await
}

async fn send(
    app: &TestApp,
    plugin_id: Uuid,
    event_type: &str,
    payload: Value,
) -> (StatusCode, Value) {
    let body = json!({"plugin_id": plugin_id, "event_type": event_type, "payload": payload});
    let response = app.post(EVENT, &app.merchant_key, &body).await;
    (response.status, response.body)
}

#[tokio::test]
async fn redeliveries_in_one_burst_are_stored_once() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        let woo = install(&app, "woocommerce").await;
        let order = json!({"id": "4242", "total": "9.99", "currency": "EUR"});
        let other = json!({"id": "4243", "total": "1.00", "currency": "EUR"});
        let send_order = |payload: &Value| {
            send(
                &app,
                woo,
                "woocommerce_checkout_order_processed",
                payload.clone(),
            )
        };
        // Sent together, they meet in one group commit.
        let (a, b, c, d) = tokio::join!(
            send_order(&order),
            send_order(&order),
            send_order(&other),
            send_order(&order)
        );
        let answers = [a, b, c, d];
        let firsts: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::CREATED)
            .collect();
        assert_eq!(firsts.len(), 2, "one first delivery per order: {answers:?}");
        let stored_id = |order_id: &str| {
            firsts
                .iter()
                .find(|(_, body)| body["normalized"]["order_id"] == order_id)
                .unwrap()
                .1["event_id"]
                .clone()
        };
        for (status, body) in &answers {
            assert!(status.is_success(), "{body}");
            assert_eq!(
                body["event_id"],
                stored_id(body["normalized"]["order_id"].as_str().unwrap())
            );
            assert_eq!(body["duplicate"], *status == StatusCode::OK);
        }
        let stored = app
            .get("/api/v1/plugins/interop/events?limit=100", &app.viewer)
            .await;
        assert_eq!(stored.ok().as_array().unwrap().len(), 2);
        // And a later redelivery finds the stored row.
        let (status, again) = send_order(&order).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["event_id"], stored_id("4242"));
        app.store
    })
    .await;
}

#[tokio::test]
async fn events_are_normalized_stored_once_and_never_dropped() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        let woo = install(&app, "woocommerce").await;
        let magento = install(&app, "magento").await;

        // The seed's example: already in the normalized vocabulary, passed as it is.
        let seed_payload = json!({"order_id": "12345", "amount": 55000, "currency": "XOF", "customer_id": "c-1"});
        let (status, body) = send(&app, woo, "checkout.created", seed_payload.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "ack");
        assert_eq!(body["normalized"], seed_payload);

        // A platform event through the file mapping: fields renamed, amount in minor units.
        let order = json!({"id": "981", "total": "12.50", "currency": "EUR"});
        let (status, first) = send(&app, woo, "woocommerce_checkout_order_processed", order.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["event_type"], "checkout.created");
        assert_eq!(first["normalized"], json!({"order_id": "981", "amount": 1250, "currency": "EUR"}));
        // Redelivered: acknowledged again, stored once.
        let (status, again) = send(&app, woo, "woocommerce_checkout_order_processed", order).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["event_id"], first["event_id"]);

        // Nothing maps it: stored as failed with the reason.
        let (status, unmapped) = send(&app, woo, "woocommerce_mystery_hook", json!({"x": 1})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(unmapped["status"], "failed");
        assert_eq!(unmapped["error"]["code"], "no_mapping");
        // A payload the mapping cannot read: failed too, with the field.
        let (status, missing) = send(&app, magento, "sales_order_place_after", json!({"entity_id": 7})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(missing["error"]["code"], "missing_field");

        let failed = app.get("/api/v1/plugins/interop/events?processing_status=failed", &app.viewer).await;
        let failed = failed.ok().as_array().unwrap().clone();
        assert_eq!(failed.len(), 2);
        assert!(failed.iter().any(|e| e["failure_code"] == "no_mapping" && e["payload"] == json!({"x": 1})));
        let checkout = app
            .get("/api/v1/plugins/interop/events?event_category=checkout&source_platform=woocommerce&limit=100", &app.viewer)
            .await;
        let checkout = checkout.ok().as_array().unwrap().clone();
        assert_eq!(checkout.len(), 2, "the redelivery is stored once");
        let mapped = checkout.iter().find(|e| e["source_event_type"] == "woocommerce_checkout_order_processed").unwrap();
        assert_eq!(mapped["payload"]["total"], "12.50");
        assert_eq!(mapped["normalized_payload"]["amount"], 1250);
        assert_eq!(mapped["processing_status"], "processed");
        assert_eq!(mapped["plugin_id"], json!(woo));

        let stats = app.get("/api/v1/plugins/interop/stats?days=30", &app.viewer).await;
        let stats = stats.ok();
        let fields: Vec<&String> = stats.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["by_category", "by_platform", "failed", "pending", "platforms", "processed", "success_rate", "total_events", "unique_plugins"]);
        assert_eq!(stats["total_events"], 4);
        assert_eq!(stats["processed"], 2);
        assert_eq!(stats["failed"], 2);
        assert_eq!(stats["unique_plugins"], 2);
        assert_eq!(stats["platforms"], 2);
        assert_eq!(stats["success_rate"], 50.0);
        assert_eq!(stats["by_category"], json!([{"event_category": "checkout", "count": 2}]));
        assert_eq!(stats["by_platform"], json!([{"source_platform": "woocommerce", "count": 3}, {"source_platform": "magento", "count": 1}]));
        app.store
    })
    .await;
}

#[tokio::test]
async fn store_mappings_are_validated_audited_and_take_precedence() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        let magento = install(&app, "magento").await;
        let woo = install(&app, "woocommerce").await;

        // A new mapping (the seed's request shape) is in force at once.
        let paid = json!({
            "source_platform": "magento", "source_event_type": "sales_order_payment_pay",
            "normalized_event_type": "payment.succeeded",
            "field_mappings": {"entity_id": "order_id", "grand_total": "amount", "order_currency_code": "currency"}
        });
        let created = app.post(MAPPINGS, &app.operator, &paid).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["is_active"], true);
        assert!(created.body["id"].is_string());
        let (status, body) = send(&app, magento, "sales_order_payment_pay", json!({"entity_id": 5, "grand_total": 100, "order_currency_code": "XOF"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["event_type"], "payment.succeeded");

        // A store mapping for a (platform, event) a file maps wins over the file.
        let woo_override = json!({
            "source_platform": "woocommerce", "source_event_type": "woocommerce_checkout_order_processed",
            "normalized_event_type": "checkout.created",
            "field_mappings": {"order_key": "order_id", "total": "amount", "currency": "currency"}
        });
        app.post(MAPPINGS, &app.admin, &woo_override).await.ok();
        let (_, body) = send(&app, woo, "woocommerce_checkout_order_processed", json!({"id": 1, "order_key": "wc_abc", "total": 9, "currency": "XOF"})).await;
        assert_eq!(body["normalized"]["order_id"], "wc_abc");
        let listed = app.get("/api/v1/plugins/interop/mappings?source_platform=woocommerce", &app.viewer).await;
        let listed = listed.ok().as_array().unwrap().clone();
        let file = listed.iter().find(|m| m["source_event_type"] == "woocommerce_checkout_order_processed" && m["source"] != "store").unwrap();
        assert_eq!(file["in_force"], false);
        assert!(file["source"].as_str().unwrap().starts_with("file:"));
        // Deactivated, the file mapping is in force again; an update answers 200.
        let mut inactive = woo_override.clone();
        inactive["is_active"] = json!(false);
        assert_eq!(app.post(MAPPINGS, &app.admin, &inactive).await.status, StatusCode::OK);
        let (_, body) = send(&app, woo, "woocommerce_checkout_order_processed", json!({"id": 2, "total": 9, "currency": "XOF"})).await;
        assert_eq!(body["normalized"]["order_id"], 2);

        // Validated by the engine, refused by field; nothing stored.
        for (change, field) in [
            (json!({"normalized_event_type": "checkout.exploded"}), "normalized_event_type"),
            (json!({"source_platform": "oscommerce"}), "source_platform"),
            (json!({"field_mappings": "id"}), "field_mappings"),
            (json!({"is_active": "yes"}), "is_active"),
            (json!({"surprise": 1}), "surprise"),
        ] {
            let mut body = paid.clone();
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            body["source_event_type"] = json!("another_event");
            let response = app.post(MAPPINGS, &app.operator, &body).await;
            let (_, got) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(got.as_deref(), Some(field), "{change}: {}", response.body);
        }
        app.post(MAPPINGS, &app.viewer, &paid).await.error(StatusCode::FORBIDDEN);
        app.post(MAPPINGS, &app.merchant_key, &paid).await.error(StatusCode::FORBIDDEN);
        let stored = app.get("/api/v1/plugins/interop/mappings", &app.viewer).await;
        assert_eq!(stored.ok().as_array().unwrap().iter().filter(|m| m["source"] == "store").count(), 2);
        let audit = app.get("/api/v1/audit", &app.admin).await;
        let upserts = audit.ok().as_array().unwrap().iter().filter(|e| e["action"] == "interop.mapping_upsert").count();
        assert_eq!(upserts, 3);
        app.store
    })
    .await;
}

#[tokio::test]
async fn bad_events_are_refused_by_field_and_tenants_stay_apart() {
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules")).await;
        let woo = install(&app, "woocommerce").await;
        let (_, other_key) = app.create_merchant("Other").await;
        let good = json!({"plugin_id": woo, "event_type": "checkout.created", "payload": {"order_id": "1"}});
        let with = |key: &str, value: Value| {
            let mut body = good.clone();
            body[key] = value;
            body
        };
        for (body, field) in [
            (with("payload", json!([1, 2])), "payload"),
            (with("payload", json!("text")), "payload"),
            (with("plugin_id", json!("x")), "plugin_id"),
            (with("plugin_id", json!(Uuid::nil())), "plugin_id"),
            (with("event_type", json!("")), "event_type"),
            (with("event_type", json!(5)), "event_type"),
            (with("occurred_at", json!("yesterday")), "occurred_at"),
        ] {
            let response = app.post(EVENT, &app.merchant_key, &body).await;
            let (_, got) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(got.as_deref(), Some(field), "{body}");
        }
        // Another merchant cannot post for this install; Ops tokens are not plugin keys.
        let (_, field) = app.post(EVENT, &other_key, &good).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("plugin_id"));
        app.post(EVENT, &app.admin, &good).await.error(StatusCode::FORBIDDEN);
        app.get("/api/v1/plugins/interop/events", &app.merchant_key).await.error(StatusCode::FORBIDDEN);
        let (_, field) = app.get("/api/v1/plugins/interop/events?processing_status=lost", &app.viewer).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("processing_status"));
        let (_, field) = app.get("/api/v1/plugins/interop/stats?days=0", &app.viewer).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("days"));
        let stored = app.get("/api/v1/plugins/interop/events", &app.viewer).await;
        assert!(stored.ok().as_array().unwrap().is_empty(), "nothing refused was stored");
        app.store
    })
    .await;
}
