//! Ops-facing endpoints: list, detail, toggles, versions, overview, audit;
//! permissions and bad input.

use crate::support::{each_app, TestApp};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) async fn install(app: &TestApp, cms: &str, version: &str, site: &str) -> Uuid {
    app.heartbeat(json!({
        "cms": cms, "plugin_version": version, "site_url": site, "environment": "production"
    }))
    .await
}

pub(crate) async fn register(app: &TestApp, cms: &str, version: &str, is_latest: bool) -> Value {
    let response = app
        .post(
            "/api/v1/plugins/versions",
            &app.admin,
            &json!({
                "cms": cms, "version": version, "is_latest": is_latest,
                "release_notes": "- Critical bug fixes\n- Improved 3DS2 flow"
            }),
        )
        .await;
    response.ok().clone()
}

pub(crate) async fn event(app: &TestApp, site: &str, event_type: &str) {
    app.post(
        "/api/v1/plugins/event",
        &app.merchant_key,
        &json!({
            "cms": "woocommerce", "site_url": site, "event_type": event_type
        }),
    )
    .await
    .ok();
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn status_follows_registry_heartbeats_and_blocks() {
    each_app(|app| async move {
        let old = install(&app, "woocommerce", "1.2.0", "https://a.example").await;
        let current = install(&app, "woocommerce", "1.10.0", "https://b.example").await;
        let shopify = install(&app, "shopify", "0.9.0", "https://c.example").await;
        register(&app, "woocommerce", "1.9.0", true).await;
        let latest = register(&app, "woocommerce", "1.10.0", true).await;
        assert_eq!(latest["is_latest"], true);

        let status_of = |id: Uuid| {
            let app = &app;
            async move {
                let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
                detail.ok()["status"].as_str().unwrap().to_owned()
            }
        };
        assert_eq!(status_of(old).await, "outdated");
        assert_eq!(
            status_of(current).await,
            "active",
            "1.10.0 is not below 1.10.0 (semver, not text)"
        );
        assert_eq!(
            status_of(shopify).await,
            "active",
            "no shopify release registered"
        );

        let detail = app
            .get(&format!("/api/v1/plugins/{old}"), &app.viewer)
            .await;
        assert_eq!(detail.ok()["latest_version"], "1.10.0");

        app.post(&format!("/api/v1/plugins/{current}/toggle"), &app.operator, &json!({
            "toggle_key": "block_plugin", "toggle_value": true, "reason": "Manually blocked by Ops"
        })).await.ok();
        assert_eq!(status_of(current).await, "blocked");

        // 47 h without a heartbeat is fine, 48 h and more is stale.
        app.clock.advance(Duration::hours(47));
        install(&app, "woocommerce", "1.2.0", "https://a.example").await;
        app.clock.advance(Duration::hours(2));
        assert_eq!(status_of(shopify).await, "error");
        assert_eq!(status_of(old).await, "outdated");
        assert_eq!(
            status_of(current).await,
            "blocked",
            "blocked wins over stale"
        );
        app
    })
    .await;
}

#[tokio::test]
async fn list_filters_and_paginates() {
    each_app(|app| async move {
        register(&app, "woocommerce", "1.3.5", true).await;
        let old = install(&app, "woocommerce", "1.2.0", "https://a.example").await;
        let new = install(&app, "woocommerce", "1.3.5", "https://b.example").await;
        let shop = install(&app, "shopify", "2.0.0", "https://c.example").await;
        app.heartbeat(
            json!({"cms": "magento", "plugin_version": "1.0.0", "environment": "staging"}),
        )
        .await;
        let (other_merchant, other_key) = app.create_merchant("Other").await;
        let response = app
            .post(
                "/api/v1/plugins/heartbeat",
                &other_key,
                &json!({"cms": "prestashop", "plugin_version": "1.0.0"}),
            )
            .await;
        response.ok();

        let list = |query: &str| {
            let app = &app;
            let query = query.to_owned();
            async move {
                app.get(&format!("/api/v1/plugins/list{query}"), &app.viewer)
                    .await
            }
        };
        let all = list("").await;
        assert_eq!(all.headers["x-total-count"], "5");
        let row = all
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["id"] == json!(old))
            .unwrap()
            .clone();
        for field in [
            "id",
            "merchant_id",
            "merchant_name",
            "merchant_email",
            "cms",
            "plugin_version",
            "latest_version",
            "status",
            "error_rate",
            "last_heartbeat",
            "errors_24h",
            "environment",
        ] {
            assert!(row.get(field).is_some(), "list rows carry {field}: {row}");
        }
        assert_eq!(row["merchant_name"], "My Shop");
        assert_eq!(row["merchant_email"], "merchant@example.com");

        assert_eq!(
            ids(list("?status=outdated").await.ok()),
            vec![old.to_string()]
        );
        assert_eq!(
            ids(list("?status=outdated&cms=woocommerce").await.ok()),
            vec![old.to_string()]
        );
        assert_eq!(
            ids(list("?cms=woocommerce").await.ok()),
            sorted(vec![old.to_string(), new.to_string()])
        );
        assert_eq!(
            ids(list("?plugin_version=2.0.0").await.ok()),
            vec![shop.to_string()]
        );
        assert_eq!(
            list("?environment=staging")
                .await
                .ok()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            list(&format!("?merchant_id={other_merchant}"))
                .await
                .ok()
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let first = list("?limit=2").await;
        assert_eq!(first.ok().as_array().unwrap().len(), 2);
        assert_eq!(first.headers["x-total-count"], "5");
        let rest = list("?limit=2&offset=2").await;
        let last = list("?limit=2&offset=4").await;
        let mut seen = ids(first.ok());
        seen.extend(ids(rest.ok()));
        seen.extend(ids(last.ok()));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5, "pages cover every installation once");

        for (query, field) in [
            ("?status=stale", "status"),
            ("?cms=joomla", "cms"),
            ("?limit=0", "limit"),
            ("?limit=501", "limit"),
            ("?offset=-1", "offset"),
            ("?limit=ten", "limit"),
            ("?merchant_id=42", "merchant_id"),
            ("?colour=red", "colour"),
        ] {
            let response = list(query).await;
            assert_eq!(
                response
                    .error(StatusCode::UNPROCESSABLE_ENTITY)
                    .1
                    .as_deref(),
                Some(field),
                "{query}"
            );
        }
        app
    })
    .await;
}

#[tokio::test]
async fn error_rate_counts_failures_over_24_hours() {
    each_app(|app| async move {
        let id = install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        for _ in 0..3 {
            event(&app, "https://a.example", "payment_success").await;
        }
        event(&app, "https://a.example", "payment_failed").await;
        event(&app, "https://a.example", "warning").await; // not an outcome
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["error_rate"], 25.0);
        assert_eq!(detail.ok()["errors_24h"], 1);

        app.clock.advance(Duration::hours(25));
        event(&app, "https://a.example", "error").await;
        install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(
            detail.ok()["error_rate"],
            100.0,
            "older events left the window"
        );
        assert_eq!(detail.ok()["errors_24h"], 1);
        app
    })
    .await;
}

#[tokio::test]
async fn detail_shows_events_and_toggles() {
    each_app(|app| async move {
        let id = install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        for _ in 0..25 {
            event(&app, "https://a.example", "info").await;
        }
        app.post(
            &format!("/api/v1/plugins/{id}/toggle"),
            &app.operator,
            &json!({
                "toggle_key": "force_update", "toggle_value": true, "reason": "security release"
            }),
        )
        .await
        .ok();
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        let detail = detail.ok();
        assert_eq!(detail["recent_events"].as_array().unwrap().len(), 20);
        let toggles = detail["active_toggles"].as_array().unwrap();
        assert_eq!(toggles.len(), 1);
        assert_eq!(toggles[0]["toggle_key"], "force_update");
        assert_eq!(toggles[0]["plugin_id"], json!(id));

        let missing = app
            .get(&format!("/api/v1/plugins/{}", Uuid::new_v4()), &app.viewer)
            .await;
        assert_eq!(missing.error(StatusCode::NOT_FOUND).0, "not_found");
        let bad = app.get("/api/v1/plugins/not-a-uuid", &app.viewer).await;
        assert_eq!(
            bad.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(),
            Some("id")
        );
        app
    })
    .await;
}

#[tokio::test]
async fn toggles_are_validated_permissioned_and_audited() {
    each_app(|app| async move {
        let id = install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        let path = format!("/api/v1/plugins/{id}/toggle");
        let good = json!({
            "toggle_key": "block_plugin", "toggle_value": true,
            "reason": "Critical security vulnerability",
            "expires_at": "2025-01-25T00:00:00Z"
        });

        let viewer = app.post(&path, &app.viewer, &good).await;
        viewer.error(StatusCode::FORBIDDEN);
        let merchant = app.post(&path, &app.merchant_key, &good).await;
        merchant.error(StatusCode::FORBIDDEN);
        let anonymous = app.call(Method::POST, &path, None, Some(&good)).await;
        anonymous.error(StatusCode::UNAUTHORIZED);

        let cases = [
            (json!({"toggle_key": "self_destruct", "toggle_value": true, "reason": "x"}), "toggle_key"),
            (json!({"toggle_key": "block_plugin", "toggle_value": "yes", "reason": "x"}), "toggle_value"),
            (json!({"toggle_key": "rate_limit", "toggle_value": 0, "reason": "x"}), "toggle_value"),
            (json!({"toggle_key": "rate_limit", "toggle_value": 1.5, "reason": "x"}), "toggle_value"),
            (json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "  "}), "reason"),
            (json!({"toggle_key": "block_plugin", "toggle_value": true}), "reason"),
            (json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "x", "expires_at": "2025-01-01T00:00:00Z"}), "expires_at"),
            (json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "x", "updated_by": Uuid::new_v4()}), "updated_by"),
            (json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "x", "colour": "red"}), "colour"),
        ];
        for (body, field) in cases {
            let response = app.post(&path, &app.operator, &body).await;
            assert_eq!(response.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some(field), "{body}");
        }
        let unknown = app.post(&format!("/api/v1/plugins/{}/toggle", Uuid::new_v4()), &app.operator, &good).await;
        unknown.error(StatusCode::NOT_FOUND);

        let mut by_admin = good.clone();
        by_admin["updated_by"] = json!(app.admin_id);
        let set = app.post(&path, &app.admin, &by_admin).await;
        let set = set.ok().clone();
        assert_eq!(set["plugin_id"], json!(id));
        assert_eq!(set["toggle_key"], "block_plugin");
        assert_eq!(set["toggle_value"], true);
        assert_eq!(set["reason"], "Critical security vulnerability");
        assert_eq!(set["expires_at"], "2025-01-25T00:00:00Z");
        assert_eq!(set["created_by"], json!(app.admin_id));

        let lift_path = format!("{path}?toggle_key=block_plugin&reason=fixed");
        let lifted = app.call(Method::DELETE, &lift_path, Some(&app.operator), None).await;
        assert_eq!(lifted.ok()["id"], set["id"]);
        let again = app.call(Method::DELETE, &lift_path, Some(&app.operator), None).await;
        again.error(StatusCode::NOT_FOUND);
        let bad_key = app.call(Method::DELETE, &format!("{path}?toggle_key=nope"), Some(&app.operator), None).await;
        assert_eq!(bad_key.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("toggle_key"));

        let audit = app.get("/api/v1/audit", &app.admin).await;
        let audit = audit.ok().as_array().unwrap().clone();
        let actions: Vec<&str> = audit.iter().map(|entry| entry["action"].as_str().unwrap()).collect();
        assert_eq!(actions, vec!["toggle.lift", "toggle.set"], "only accepted changes are audited");
        let set_entry = &audit[1];
        assert_eq!(set_entry["actor_id"], json!(app.admin_id));
        assert_eq!(set_entry["target_id"], json!(id.to_string()));
        assert_eq!(set_entry["details"]["reason"], "Critical security vulnerability");
        assert!(set_entry["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(audit[0]["details"]["reason"], "fixed");
        app.get("/api/v1/audit", &app.operator).await.error(StatusCode::FORBIDDEN);
        app
    })
    .await;
}

#[tokio::test]
async fn version_registry_keeps_one_latest_per_cms() {
    each_app(|app| async move {
        let first = app.post("/api/v1/plugins/versions", &app.admin, &json!({
            "cms": "woocommerce", "version": "1.3.5", "is_latest": true, "security": true,
            "min_supported": "1.2.0", "release_notes": "fixes"
        })).await;
        assert_eq!(first.status, StatusCode::CREATED);
        register(&app, "woocommerce", "1.4.0", true).await;
        register(&app, "prestashop", "1.0.0", true).await;
        // Registering a known version again updates it.
        let update = app.post("/api/v1/plugins/versions", &app.admin, &json!({
            "cms": "woocommerce", "version": "1.3.5", "security": true, "release_notes": "fixes, again"
        })).await;
        assert_eq!(update.status, StatusCode::OK);
        assert_eq!(update.body["id"], first.body["id"]);

        let listed = app.get("/api/v1/plugins/versions?cms=woocommerce", &app.viewer).await;
        let listed = listed.ok().as_array().unwrap().clone();
        let versions: Vec<(&str, bool)> = listed.iter()
            .map(|entry| (entry["version"].as_str().unwrap(), entry["is_latest"].as_bool().unwrap()))
            .collect();
        assert_eq!(versions, vec![("1.4.0", true), ("1.3.5", false)]);
        assert_eq!(listed[1]["release_notes"], "fixes, again");

        let cases = [
            (json!({"cms": "woocommerce", "version": "1.4"}), "version"),
            (json!({"cms": "wordpress", "version": "1.4.0"}), "cms"),
            (json!({"cms": "woocommerce", "version": "1.4.0", "min_supported": "2.0.0"}), "min_supported"),
            (json!({"cms": "woocommerce", "version": "1.4.0", "is_latest": "yes"}), "is_latest"),
            (json!({"version": "1.4.0"}), "cms"),
        ];
        for (body, field) in cases {
            let response = app.post("/api/v1/plugins/versions", &app.admin, &body).await;
            assert_eq!(response.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some(field), "{body}");
        }
        let operator = app.post("/api/v1/plugins/versions", &app.operator, &json!({"cms": "woocommerce", "version": "9.0.0"})).await;
        operator.error(StatusCode::FORBIDDEN);
        let bad_query = app.get("/api/v1/plugins/versions?cms=joomla", &app.viewer).await;
        bad_query.error(StatusCode::UNPROCESSABLE_ENTITY);
        app
    })
    .await;
}

#[tokio::test]
async fn overview_has_exactly_the_seed_fields() {
    each_app(|app| async move {
        register(&app, "woocommerce", "1.3.5", true).await;
        let outdated = install(&app, "woocommerce", "1.2.0", "https://a.example").await;
        install(&app, "woocommerce", "1.3.5", "https://b.example").await;
        let blocked = install(&app, "prestashop", "1.0.0", "https://c.example").await;
        let failing = install(&app, "woocommerce", "1.3.5", "https://d.example").await;
        install(&app, "shopify", "1.0.0", "https://e.example").await;
        app.post(&format!("/api/v1/plugins/{blocked}/toggle"), &app.operator, &json!({
            "toggle_key": "block_plugin", "toggle_value": true, "reason": "x"
        })).await.ok();
        for event_type in ["payment_failed", "payment_success"] {
            app.post("/api/v1/plugins/event", &app.merchant_key, &json!({
                "cms": "woocommerce", "site_url": "https://d.example", "event_type": event_type
            })).await.ok();
        }
        let _ = (outdated, failing);
        // The shopify install goes stale; the others keep beating.
        app.clock.advance(Duration::hours(49));
        for (cms, version, site) in [("woocommerce", "1.2.0", "https://a.example"), ("woocommerce", "1.3.5", "https://b.example"),
                                     ("prestashop", "1.0.0", "https://c.example"), ("woocommerce", "1.3.5", "https://d.example")] {
            install(&app, cms, version, site).await;
        }
        app.post("/api/v1/plugins/event", &app.merchant_key, &json!({
            "cms": "woocommerce", "site_url": "https://d.example", "event_type": "payment_failed"
        })).await.ok();

        let overview = app.get("/api/v1/plugins/stats/overview", &app.viewer).await;
        let overview = overview.ok();
        let mut keys: Vec<&str> = overview.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["active_count", "avg_error_rate", "blocked_count", "cms_breakdown", "error_count",
                              "high_error_rate_count", "outdated_count", "stale_count"]);
        assert_eq!(overview["active_count"], 3, "live, not blocked: a, b, d");
        assert_eq!(overview["outdated_count"], 1);
        assert_eq!(overview["blocked_count"], 1);
        assert_eq!(overview["error_count"], 1);
        assert_eq!(overview["stale_count"], 1);
        assert_eq!(overview["high_error_rate_count"], 1, "d: 1 failure in the last 24 h = 100%");
        assert_eq!(overview["avg_error_rate"], 20.0, "100 / 5 installations");
        assert_eq!(overview["cms_breakdown"], json!([
            {"cms": "woocommerce", "count": 3}, {"cms": "prestashop", "count": 1}, {"cms": "shopify", "count": 1}
        ]));
        app
    })
    .await;
}

#[tokio::test]
async fn ops_reads_need_a_token_with_permission() {
    each_app(|app| async move {
        for path in [
            "/api/v1/plugins/list",
            "/api/v1/plugins/stats/overview",
            "/api/v1/plugins/versions",
        ] {
            app.call(Method::GET, path, None, None)
                .await
                .error(StatusCode::UNAUTHORIZED);
            app.get(path, "aho_forged")
                .await
                .error(StatusCode::UNAUTHORIZED);
            app.get(path, &app.merchant_key)
                .await
                .error(StatusCode::FORBIDDEN);
            app.get(path, &app.viewer).await.ok();
        }
        let id = app
            .heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.0.0"}))
            .await;
        let detail = format!("/api/v1/plugins/{id}");
        app.call(Method::GET, &detail, None, None)
            .await
            .error(StatusCode::UNAUTHORIZED);
        app.get(&detail, &app.merchant_key)
            .await
            .error(StatusCode::FORBIDDEN);
        app.get(&detail, &app.viewer).await.ok();
        let sira = app
            .store
            .store
            .create_sira_token("sira", app.clock.now())
            .await
            .unwrap();
        app.get("/api/v1/plugins/list", &sira.secret)
            .await
            .error(StatusCode::FORBIDDEN);
        app
    })
    .await;
}

#[tokio::test]
async fn every_response_has_a_request_id_and_errors_are_json() {
    each_app(|app| async move {
        let health = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(health.ok()["status"], "ok");
        assert!(health.headers.contains_key("x-request-id"));
        let ready = app.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.ok()["status"], "ready");

        let request = axum::http::Request::get("/healthz")
            .header("x-request-id", "trace-me-42")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            app.send(request).await.headers["x-request-id"],
            "trace-me-42"
        );

        let missing = app.call(Method::GET, "/api/v1/nowhere", None, None).await;
        assert_eq!(missing.error(StatusCode::NOT_FOUND).0, "not_found");
        let wrong_method = app
            .call(Method::PUT, "/api/v1/plugins/heartbeat", None, None)
            .await;
        assert_eq!(
            wrong_method.error(StatusCode::METHOD_NOT_ALLOWED).0,
            "method_not_allowed"
        );
        app
    })
    .await;
}
