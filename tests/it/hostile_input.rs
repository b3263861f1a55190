//! Input an attacker sends (issue 17), on SQLite and PostgreSQL alike: a NUL character in
//! any string (a body field, a key, a query parameter, a path segment) and a path segment
//! whose percent-encoding is not UTF-8 are answered with a 4xx JSON error naming the field,
//! never a 500 and never stored on one backend but not the other.

use crate::support::{each_store, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// Asserts a 422 JSON error naming `field`.
#[track_caller]
fn refused(response: &crate::support::TestResponse, field: &str) {
    let (code, named) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code, "invalid_field", "{}", response.body);
    assert_eq!(named.as_deref(), Some(field), "{}", response.body);
}

async fn install(app: &TestApp) -> Uuid {
    app.heartbeat(json!({"cms": "woocommerce", "site_url": "https://shop.example", "plugin_version": "1.3.5"}))
        .await
}

#[tokio::test]
async fn a_nul_character_anywhere_is_refused_by_its_field() {
    each_store(|store| async {
        let app = TestApp::new(store).await;
        let id = install(&app).await;
        let body_cases: [(&str, &str, Value, &str); 7] = [
            (
                "/api/v1/plugins/heartbeat",
                "merchant",
                json!({"cms": "woocommerce", "site_url": "https://shop.example",
                       "plugin_version": "1.3.5", "php_version": "8.1\u{0}"}),
                "php_version",
            ),
            (
                "/api/v1/plugins/heartbeat",
                "merchant",
                json!({"cms": "woocommerce", "plugin_version": "1.3.5",
                       "server_info": {"os": ["linux", "x\u{0}"]}}),
                "server_info.os[1]",
            ),
            (
                "/api/v1/plugins/heartbeat",
                "merchant",
                json!({"cms": "woocommerce", "plugin_version": "1.3.5",
                       "server_info": {"a\u{0}b": 1}}),
                "server_info.a\\0b",
            ),
            (
                "/api/v1/plugins/event",
                "merchant",
                json!({"cms": "woocommerce", "site_url": "https://shop.example",
                       "event_type": "error", "message": "boom\u{0}"}),
                "message",
            ),
            (
                "/api/v1/plugins/interop/event",
                "merchant",
                json!({"plugin_id": id, "event_type": "woocommerce_checkout_order_processed",
                       "payload": {"id": "42\u{0}"}}),
                "payload.id",
            ),
            (
                &format!("/api/v1/plugins/{id}/toggle"),
                "operator",
                json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "why\u{0}"}),
                "reason",
            ),
            (
                "/api/platform/flags/payments.instant_payouts/kill",
                "admin",
                json!({"reason": "\u{0}"}),
                "reason",
            ),
        ];
        for (path, who, body, field) in &body_cases {
            let token = match *who {
                "merchant" => &app.merchant_key,
                "operator" => &app.operator,
                _ => &app.admin,
            };
            refused(&app.post(path, token, body).await, field);
        }
        // A backslash before `u0000` is text, not a NUL: stored as sent.
        let literal = app
            .post(
                "/api/v1/plugins/event",
                &app.merchant_key,
                &json!({"cms": "woocommerce", "site_url": "https://shop.example",
                        "event_type": "error", "message": "C:\\u0000"}),
            )
            .await;
        literal.ok();

        for (query, field) in [
            ("plugin_version=%00", "plugin_version"),
            ("environment=prod%00", "environment"),
            ("a%00=1", "a\\0"),
        ] {
            refused(
                &app.get(&format!("/api/v1/plugins/list?{query}"), &app.viewer)
                    .await,
                field,
            );
        }
        for (path, token, field) in [
            (format!("/api/v1/plugins/{id}%00"), &app.viewer, "id"),
            ("/api/platform/flags/a%00b".to_owned(), &app.viewer, "key"),
        ] {
            refused(&app.get(&path, token).await, field);
        }
        refused(
            &app.post(
                "/api/v1/plugins/autoheal/rules/x%00/resume",
                &app.operator,
                &json!({"reason": "r"}),
            )
            .await,
            "name",
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_a_json_error() {
    each_store(|store| async {
        let app = TestApp::new(store).await;
        for (path, field) in [
            ("/api/v1/plugins/%FF%FE", "id"),
            ("/api/platform/flags/%C3%28", "key"),
            ("/api/v1/plugins/autoheal/%80", "id"),
        ] {
            let response = app.get(path, &app.admin).await;
            refused(&response, field);
            assert_eq!(
                response.headers["content-type"], "application/json",
                "{path}"
            );
        }
        app.store
    })
    .await;
}
