//! Plugin-facing endpoints: heartbeat and event, their bad inputs and their
//! credentials.

use crate::support::{each_app, TestApp};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Duration;
use serde_json::{json, Value};

fn heartbeat_body(app: &TestApp) -> Value {
    json!({
        "merchant_id": app.merchant_id,
        "cms": "woocommerce",
        "plugin_version": "1.3.5",
        "sdk_language": "php",
        "errors_last_hour": 0.5,
        "environment": "production",
        "php_version": "8.1.0",
        "wordpress_version": "6.4",
        "server_info": {"server_software": "Apache/2.4.56", "max_execution_time": "300", "memory_limit": "256M"}
    })
}

#[tokio::test]
async fn heartbeat_upserts_one_installation_and_returns_toggles() {
    each_app(|app| async move {
        let body = heartbeat_body(&app);
        let first = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &body).await;
        let first = first.ok().clone();
        assert_eq!(first["status"], "ok");
        assert_eq!(
            first["toggles"],
            json!({"block_plugin": false, "force_update": false, "enable_debug": false, "rate_limit": null})
        );
        let again = app.heartbeat(body.clone()).await;
        assert_eq!(first["installation_id"], json!(again), "same install, same id");

        // Another site of the same merchant is another installation.
        let mut other_site = body.clone();
        other_site["site_url"] = json!("https://second.example/");
        let second = app.heartbeat(other_site).await;
        assert_ne!(json!(second), first["installation_id"]);

        let list = app.get("/api/v1/plugins/list", &app.viewer).await;
        assert_eq!(list.ok().as_array().unwrap().len(), 2);
        let detail = app.get(&format!("/api/v1/plugins/{again}"), &app.viewer).await;
        let detail = detail.ok();
        assert_eq!(detail["heartbeat_count"], 2);
        assert_eq!(detail["php_version"], "8.1.0");
        assert_eq!(detail["server_info"]["memory_limit"], "256M");
        assert_eq!(detail["reported_error_rate"], 0.5);
        app
    })
    .await;
}

/// The seed's WordPress plugin posts `json_encode($body)` with no
/// Content-Type, which curl labels form-urlencoded; it must still work.
#[tokio::test]
async fn heartbeat_accepts_json_bodies_that_plugins_label_loosely() {
    each_app(|app| async move {
        let body = serde_json::to_vec(&heartbeat_body(&app)).unwrap();
        for content_type in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("text/plain; charset=utf-8"),
        ] {
            let mut request = Request::post("/api/v1/plugins/heartbeat")
                .header("authorization", format!("Bearer {}", app.merchant_key));
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = app
                .send(request.body(Body::from(body.clone())).unwrap())
                .await;
            assert_eq!(response.ok()["status"], "ok", "{content_type:?}");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn heartbeat_keeps_the_reported_state_for_snapshots() {
    each_app(|app| async move {
        let mut body = heartbeat_body(&app);
        body["state"] = json!({"config": {"memory_limit": "128M"},
                              "tables": {"wp_molam_orders": {"id": "bigint(20) unsigned", "amount": "decimal(10,2)"}}});
        let id = app.heartbeat(body.clone()).await;
        // A heartbeat without state keeps the last one reported.
        body.as_object_mut().unwrap().remove("state");
        app.heartbeat(body).await;
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["reported_state"]["config"]["memory_limit"], "128M");
        app
    })
    .await;
}

#[tokio::test]
async fn heartbeat_refuses_bad_credentials() {
    each_app(|app| async move {
        let body = heartbeat_body(&app);
        let path = "/api/v1/plugins/heartbeat";
        let none = app.call(Method::POST, path, None, Some(&body)).await;
        assert_eq!(none.error(StatusCode::UNAUTHORIZED).0, "unauthorized");
        let wrong = app.post(path, "ahm_not-a-real-key", &body).await;
        wrong.error(StatusCode::UNAUTHORIZED);
        let ops = app.post(path, &app.admin, &body).await;
        assert_eq!(ops.error(StatusCode::FORBIDDEN).0, "forbidden");

        // A valid key claiming another merchant's id.
        let (other_id, _) = app.create_merchant("Other Shop").await;
        let mut claim = body.clone();
        claim["merchant_id"] = json!(other_id);
        let refused = app.post(path, &app.merchant_key, &claim).await;
        assert_eq!(
            refused.error(StatusCode::FORBIDDEN).1.as_deref(),
            Some("merchant_id")
        );
        app
    })
    .await;
}

/// One bad heartbeat per case: (what to change, expected status, field).
#[tokio::test]
async fn heartbeat_rejects_bad_input_naming_the_field() {
    each_app(|app| async move {
        let cases: Vec<(&str, Value, StatusCode, Option<&str>)> = vec![
            (
                "cms",
                json!("wordpress"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("cms"),
            ),
            (
                "cms",
                json!(5),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("cms"),
            ),
            (
                "plugin_version",
                json!("1.3"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("plugin_version"),
            ),
            (
                "plugin_version",
                json!(135),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("plugin_version"),
            ),
            (
                "errors_last_hour",
                json!(-1),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("errors_last_hour"),
            ),
            (
                "errors_last_hour",
                json!("many"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("errors_last_hour"),
            ),
            (
                "environment",
                json!("prod"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("environment"),
            ),
            (
                "merchant_id",
                json!("not-a-uuid"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("merchant_id"),
            ),
            (
                "site_url",
                json!("ftp://shop"),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("site_url"),
            ),
            (
                "sdk_language",
                json!("x".repeat(33)),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("sdk_language"),
            ),
            (
                "server_info",
                json!([1, 2]),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("server_info"),
            ),
        ];
        for (field, value, status, expected_field) in cases {
            let mut body = heartbeat_body(&app);
            body[field] = value.clone();
            let response = app
                .post("/api/v1/plugins/heartbeat", &app.merchant_key, &body)
                .await;
            assert_eq!(
                response.status, status,
                "{field}={value}: {}",
                response.body
            );
            let (code, got_field) = response.error(status);
            assert_eq!(code, "invalid_field", "{field}={value}");
            assert_eq!(
                got_field.as_deref(),
                expected_field,
                "{field}={value}: {}",
                response.body
            );
        }

        let mut missing = heartbeat_body(&app);
        missing.as_object_mut().unwrap().remove("cms");
        let response = app
            .post("/api/v1/plugins/heartbeat", &app.merchant_key, &missing)
            .await;
        assert_eq!(
            response
                .error(StatusCode::UNPROCESSABLE_ENTITY)
                .1
                .as_deref(),
            Some("cms")
        );

        let malformed = Request::post("/api/v1/plugins/heartbeat")
            .header("authorization", format!("Bearer {}", app.merchant_key))
            .header("content-type", "application/json")
            .body(Body::from("{\"cms\": \"woocommerce\","))
            .unwrap();
        assert_eq!(
            app.send(malformed).await.error(StatusCode::BAD_REQUEST).0,
            "bad_json"
        );

        let not_json = Request::post("/api/v1/plugins/heartbeat")
            .header("authorization", format!("Bearer {}", app.merchant_key))
            .header("content-type", "application/xml")
            .body(Body::from("<cms>woocommerce</cms>"))
            .unwrap();
        app.send(not_json)
            .await
            .error(StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let mut huge = heartbeat_body(&app);
        huge["server_info"] = json!({"blob": "x".repeat(300 * 1024)});
        let response = app
            .post("/api/v1/plugins/heartbeat", &app.merchant_key, &huge)
            .await;
        assert_eq!(
            response.error(StatusCode::PAYLOAD_TOO_LARGE).0,
            "payload_too_large"
        );

        // Nothing above was stored.
        let list = app.get("/api/v1/plugins/list", &app.viewer).await;
        assert_eq!(list.ok(), &json!([]));
        app
    })
    .await;
}

#[tokio::test]
async fn heartbeat_returns_active_unexpired_toggles() {
    each_app(|app| async move {
        let id = app.heartbeat(heartbeat_body(&app)).await;
        let expires = (app.clock.now() + Duration::hours(2)).to_rfc3339();
        let toggle_path = format!("/api/v1/plugins/{id}/toggle");
        app.post(&toggle_path, &app.operator, &json!({
            "toggle_key": "block_plugin", "toggle_value": true, "reason": "Critical security vulnerability",
            "expires_at": expires
        })).await.ok();
        app.post(&toggle_path, &app.operator, &json!({
            "toggle_key": "enable_debug", "toggle_value": true, "reason": "investigating"
        })).await.ok();

        let response = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &heartbeat_body(&app)).await;
        let toggles = &response.ok()["toggles"];
        assert_eq!(toggles["block_plugin"], true);
        assert_eq!(toggles["enable_debug"], true);
        assert_eq!(toggles["force_update"], false);

        app.clock.advance(Duration::hours(3));
        let response = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &heartbeat_body(&app)).await;
        let toggles = &response.ok()["toggles"];
        assert_eq!(toggles["block_plugin"], false, "the block expired");
        assert_eq!(toggles["enable_debug"], true);
        app
    })
    .await;
}

#[tokio::test]
async fn rate_limit_toggle_gives_429_with_retry_after() {
    each_app(|app| async move {
        let id = app.heartbeat(heartbeat_body(&app)).await;
        app.post(
            &format!("/api/v1/plugins/{id}/toggle"),
            &app.operator,
            &json!({
                "toggle_key": "rate_limit", "toggle_value": 3, "reason": "flooding the API"
            }),
        )
        .await
        .ok();
        let event = json!({"cms": "woocommerce", "event_type": "info", "event_data": {}});
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let response = app
                .post("/api/v1/plugins/event", &app.merchant_key, &event)
                .await;
            if response.status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after: u64 = response.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=20).contains(&retry_after), "retry-after {retry_after}");
                assert_eq!(
                    response.error(StatusCode::TOO_MANY_REQUESTS).0,
                    "rate_limited"
                );
            }
            statuses.push(response.status.as_u16());
        }
        assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
        let heartbeat = app
            .post(
                "/api/v1/plugins/heartbeat",
                &app.merchant_key,
                &heartbeat_body(&app),
            )
            .await;
        heartbeat.error(StatusCode::TOO_MANY_REQUESTS);

        // Another installation is not limited.
        let mut other = heartbeat_body(&app);
        other["cms"] = json!("prestashop");
        app.heartbeat(other).await;

        // Lifting the toggle lifts the limit.
        let lift = app
            .call(
                Method::DELETE,
                &format!("/api/v1/plugins/{id}/toggle?toggle_key=rate_limit"),
                Some(&app.operator),
                None,
            )
            .await;
        lift.ok();
        app.post("/api/v1/plugins/event", &app.merchant_key, &event)
            .await
            .ok();
        app
    })
    .await;
}

#[tokio::test]
async fn events_are_stored_redacted_and_marked_when_blocked() {
    each_app(|app| async move {
        let id = app.heartbeat(heartbeat_body(&app)).await;
        let event = json!({
            "merchant_id": app.merchant_id,
            "cms": "woocommerce",
            "event_type": "payment_failed",
            "event_data": {
                "order_id": "12345", "amount": 55000, "currency": "XOF",
                "error_code": "card_declined", "message": "Insufficient funds",
                "card_number": "4111111111111111", "cvv": "123",
                "request": {"headers": {"Authorization": "Bearer sk_live_abcdefgh12345678"}}
            },
            "severity": "error",
            "message": "declined card 4111 1111 1111 1111 with password=hunter2",
            "stack_trace": "#0 pay(api_key=sk_live_abcdefgh12345678)"
        });
        let response = app
            .post("/api/v1/plugins/event", &app.merchant_key, &event)
            .await;
        let body = response.ok();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["installation_id"], json!(id));
        assert_eq!(body["blocked"], false);

        app.post(
            &format!("/api/v1/plugins/{id}/toggle"),
            &app.operator,
            &json!({
                "toggle_key": "block_plugin", "toggle_value": true, "reason": "fraud"
            }),
        )
        .await
        .ok();
        let blocked = app
            .post(
                "/api/v1/plugins/event",
                &app.merchant_key,
                &json!({
                    "cms": "woocommerce", "event_type": "error", "message": "still running"
                }),
            )
            .await;
        assert_eq!(blocked.ok()["blocked"], true, "stored and marked");

        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        let events = detail.ok()["recent_events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 2);
        let failed = events
            .iter()
            .find(|event| event["event_type"] == "payment_failed")
            .unwrap();
        let stored = failed.to_string();
        for secret in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "hunter2",
            "sk_live_abcdefgh12345678",
            "\"123\"",
        ] {
            assert!(!stored.contains(secret), "{secret} leaked into {stored}");
        }
        assert_eq!(failed["event_data"]["order_id"], "12345");
        assert_eq!(failed["event_data"]["amount"], 55000);
        assert_eq!(failed["event_data"]["cvv"], "[REDACTED]");
        assert_eq!(failed["severity"], "error");
        let marked = events
            .iter()
            .find(|event| event["event_type"] == "error")
            .unwrap();
        assert_eq!(marked["install_blocked"], true);
        assert_eq!(marked["severity"], "error", "defaulted from the event type");
        app
    })
    .await;
}

#[tokio::test]
async fn event_before_any_heartbeat_is_kept() {
    each_app(|app| async move {
        let response = app
            .post(
                "/api/v1/plugins/event",
                &app.merchant_key,
                &json!({
                    "cms": "shopify", "event_type": "error", "message": "boot failure"
                }),
            )
            .await;
        let body = response.ok();
        assert_eq!(body["installation_id"], Value::Null);
        assert!(body["event_id"].is_string());
        app
    })
    .await;
}

#[tokio::test]
async fn event_rejects_bad_input_naming_the_field() {
    each_app(|app| async move {
        let cases = [
            (
                json!({"cms": "woocommerce", "event_type": "crash"}),
                "event_type",
            ),
            (
                json!({"cms": "woocommerce", "event_type": "error", "severity": "fatal"}),
                "severity",
            ),
            (
                json!({"cms": "woocommerce", "event_type": "error", "event_data": "oops"}),
                "event_data",
            ),
            (
                json!({"cms": "woocommerce", "event_type": "error", "message": "x".repeat(8193)}),
                "message",
            ),
            (
                json!({"cms": "woocommerce", "event_type": "error", "occurred_at": "yesterday"}),
                "occurred_at",
            ),
            (json!({"cms": "woocommerce"}), "event_type"),
        ];
        for (body, field) in cases {
            let response = app
                .post("/api/v1/plugins/event", &app.merchant_key, &body)
                .await;
            assert_eq!(
                response
                    .error(StatusCode::UNPROCESSABLE_ENTITY)
                    .1
                    .as_deref(),
                Some(field),
                "{body}"
            );
        }
        let response = app
            .call(
                Method::POST,
                "/api/v1/plugins/event",
                None,
                Some(&json!({})),
            )
            .await;
        response.error(StatusCode::UNAUTHORIZED);
        app
    })
    .await;
}
