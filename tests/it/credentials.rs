//! The credential lifecycle (issue 17), on SQLite and PostgreSQL: admins list every
//! credential (never a secret), revoke one with a reason, rotate one (the old secret working
//! for a grace period), and a credential can expire. A revocation is in force at once on the
//! replica that made it and within a second on the others; each change is audited, and the
//! uses of a credential are written as `last_used_at` off the request path.

use crate::support::{each_app, each_store, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

const LIST: &str = "/api/v1/credentials";
const OVERVIEW: &str = "/api/v1/plugins/stats/overview";

fn revoke_path(id: Uuid) -> String {
    format!("/api/v1/credentials/{id}/revoke")
}

fn rotate_path(id: Uuid) -> String {
    format!("/api/v1/credentials/{id}/rotate")
}

/// The listed credential of the merchant's key.
async fn merchant_credential(app: &TestApp) -> Value {
    let all = app.get(&format!("{LIST}?kind=merchant"), &app.admin).await;
    let all = all.ok().as_array().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

fn id_of(credential: &Value) -> Uuid {
    credential["id"].as_str().unwrap().parse().unwrap()
}

/// Whether `secret` is accepted: a merchant key by a heartbeat, an Ops token by the
/// overview.
async fn accepted(app: &TestApp, secret: &str) -> bool {
    let response = if secret.starts_with("ahm_") {
        let probe = json!({"cms": "woocommerce", "site_url": "https://probe.example", "plugin_version": "1.3.5"});
        app.post("/api/v1/plugins/heartbeat", secret, &probe).await
    } else {
        app.get(OVERVIEW, secret).await
    };
    match response.status {
        StatusCode::UNAUTHORIZED => false,
        status if status.is_success() => true,
        status => panic!("{status}: {}", response.body),
    }
}

#[tokio::test]
async fn admins_list_every_credential_and_never_a_secret() {
    each_app(|app| async move {
        let response = app.get(LIST, &app.admin).await;
        let text = response.body.to_string();
        for secret in [
            &app.admin,
            &app.operator,
            &app.viewer,
            &app.merchant_key,
            &app.sira,
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is listed: {text}"
            );
        }
        let all = response.ok().as_array().unwrap();
        let kinds: Vec<_> = all.iter().map(|c| c["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ops", "ops", "ops", "merchant", "sira"]);
        let merchant = &all[3];
        assert_eq!(merchant["owner"], "My Shop");
        assert_eq!(merchant["merchant_id"], json!(app.merchant_id));
        assert_eq!(merchant["status"], "active");
        assert_eq!(all[0]["owner"], "admin@ops.test");
        assert_eq!(all[0]["role"], "admin");
        for field in [
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "revoked_reason",
        ] {
            assert!(merchant.get(field).is_some(), "{field} in {merchant}");
        }

        let sira = app.get(&format!("{LIST}?kind=sira"), &app.admin).await;
        assert_eq!(sira.ok().as_array().unwrap().len(), 1);
        let page = app
            .get(&format!("{LIST}?limit=2&offset=1"), &app.admin)
            .await;
        assert_eq!(page.ok()[0]["owner"], "operator@ops.test");

        let (_, field) = app
            .get(&format!("{LIST}?kind=root"), &app.admin)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("kind"));
        for token in [&app.operator, &app.viewer] {
            let (_, _) = app.get(LIST, token).await.error(StatusCode::FORBIDDEN);
        }
        app.get(LIST, &app.merchant_key)
            .await
            .error(StatusCode::FORBIDDEN);
        app
    })
    .await;
}

#[tokio::test]
async fn a_revoked_credential_is_refused_at_once_and_the_revocation_audited() {
    each_app(|app| async move {
        assert!(
            accepted(&app, &app.merchant_key).await,
            "cached before the revocation"
        );
        let id = id_of(&merchant_credential(&app).await);

        let (_, field) = app
            .post(&revoke_path(id), &app.admin, &json!({"reason": "  "}))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("reason"));
        app.post(
            &revoke_path(id),
            &app.operator,
            &json!({"reason": "leaked"}),
        )
        .await
        .error(StatusCode::FORBIDDEN);

        let revoked = app
            .post(
                &revoke_path(id),
                &app.admin,
                &json!({"reason": "leaked in a support ticket"}),
            )
            .await;
        let revoked = revoked.ok();
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(revoked["revoked_reason"], "leaked in a support ticket");
        assert!(!accepted(&app, &app.merchant_key).await);
        assert!(accepted(&app, &app.admin).await, "only that credential");

        let (code, _) = app
            .post(&revoke_path(id), &app.admin, &json!({"reason": "again"}))
            .await
            .error(StatusCode::CONFLICT);
        assert_eq!(code, "conflict");
        app.post(
            &revoke_path(Uuid::now_v7()),
            &app.admin,
            &json!({"reason": "x"}),
        )
        .await
        .error(StatusCode::NOT_FOUND);
        let (_, field) = app
            .post(
                "/api/v1/credentials/not-a-uuid/revoke",
                &app.admin,
                &json!({"reason": "x"}),
            )
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("id"));

        let audit = app.get("/api/v1/audit", &app.admin).await;
        let entry = &audit.ok()[0];
        assert_eq!(entry["action"], "credential.revoke");
        assert_eq!(entry["target_id"], id.to_string());
        assert_eq!(entry["actor_id"], json!(app.admin_id));
        assert_eq!(entry["details"]["reason"], "leaked in a support ticket");
        app
    })
    .await;
}

#[tokio::test]
async fn a_revocation_is_in_force_on_every_replica_within_a_second() {
    each_store(|store| async move {
        let first = TestApp::new(store).await;
        let second = first.replica().await;
        let tasks = second.listening().await;
        assert!(
            accepted(&second, &second.merchant_key).await,
            "cached on the second replica"
        );
        let id = id_of(&merchant_credential(&first).await);
        first
            .post(&revoke_path(id), &first.admin, &json!({"reason": "leaked"}))
            .await
            .ok();
        let revoked = Instant::now();
        while accepted(&second, &second.merchant_key).await {
            assert!(
                revoked.elapsed() < Duration::from_millis(1_500),
                "the second replica still accepts the key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tasks.stop().await;
        second.store.finish().await;
        first.store
    })
    .await;
}

#[tokio::test]
async fn a_rotated_credential_keeps_its_owner_and_the_old_secret_lasts_the_grace_period() {
    each_app(|app| async move {
        let id = id_of(&merchant_credential(&app).await);
        let (_, field) = app
            .post(&rotate_path(id), &app.admin, &json!({"grace_secs": -1}))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("grace_secs"));

        let rotated = app
            .post(&rotate_path(id), &app.admin, &json!({"grace_secs": 300}))
            .await;
        let rotated = rotated.ok().clone();
        let new_key = rotated["secret"].as_str().unwrap().to_owned();
        assert!(new_key.starts_with("ahm_") && new_key != app.merchant_key);
        assert_eq!(rotated["credential"]["rotated_from"], json!(id));
        assert_eq!(rotated["credential"]["merchant_id"], json!(app.merchant_id));
        // The new key acts for the same merchant: it sees the same installations.
        let site = json!({"cms": "woocommerce", "site_url": "https://a.example", "plugin_version": "1.3.5"});
        let installation = app.heartbeat(site.clone()).await;
        let again = app.post("/api/v1/plugins/heartbeat", &new_key, &site).await;
        assert_eq!(again.ok()["installation_id"], json!(installation));

        assert!(accepted(&app, &app.merchant_key).await, "the old key, within the grace");
        app.clock.advance(chrono::Duration::seconds(301));
        assert!(!accepted(&app, &app.merchant_key).await, "the old key, after the grace");
        assert!(accepted(&app, &new_key).await);
        let listed = app.get(&format!("{LIST}?kind=merchant"), &app.admin).await;
        let statuses: Vec<_> = listed.ok().as_array().unwrap().iter().map(|c| c["status"].clone()).collect();
        assert_eq!(statuses, [json!("expired"), json!("active")]);
        assert!(!listed.body.to_string().contains(&new_key));

        // Without a grace period the old secret stops at once; a stopped one is not rotated.
        let new_id: Uuid = rotated["credential"]["id"].as_str().unwrap().parse().unwrap();
        let third = app.call(axum::http::Method::POST, &rotate_path(new_id), Some(&app.admin), None).await;
        let third_key = third.ok()["secret"].as_str().unwrap().to_owned();
        assert!(!accepted(&app, &new_key).await);
        assert!(accepted(&app, &third_key).await);
        app.post(&rotate_path(new_id), &app.admin, &json!({}))
            .await
            .error(StatusCode::CONFLICT);
        app.post(&rotate_path(id), &app.admin, &json!({}))
            .await
            .error(StatusCode::CONFLICT);
        let audit = app.get("/api/v1/audit", &app.admin).await;
        assert_eq!(audit.ok()[0]["action"], "credential.rotate");
        app
    })
    .await;
}

#[tokio::test]
async fn a_credential_stops_working_when_it_expires_even_if_cached() {
    each_store(|store| async move {
        let app = TestApp::new(store).await;
        let now = app.clock.now();
        let (_, key) = app
            .store
            .store
            .create_merchant_until(
                "Brief",
                "b@example.com",
                Some(now + chrono::Duration::hours(1)),
                now,
            )
            .await
            .unwrap();
        assert!(accepted(&app, &key.secret).await);
        app.clock.advance(chrono::Duration::minutes(59));
        assert!(accepted(&app, &key.secret).await);
        app.clock.advance(chrono::Duration::minutes(1));
        assert!(!accepted(&app, &key.secret).await);
        app.store
    })
    .await;
}

#[tokio::test]
async fn last_used_is_written_off_the_request_path() {
    each_app(|app| async move {
        for _ in 0..20 {
            assert!(accepted(&app, &app.merchant_key).await);
        }
        let before = merchant_credential(&app).await;
        assert_eq!(before["last_used_at"], Value::Null, "no write per request");
        app.state.auth.flush_uses().await.unwrap();
        let after = merchant_credential(&app).await;
        assert_eq!(after["last_used_at"], json!(app.clock.now()));
        // A flush with nothing new leaves it as it was; a later use moves it on.
        app.clock.advance(chrono::Duration::minutes(2));
        app.state.auth.flush_uses().await.unwrap();
        assert_eq!(
            merchant_credential(&app).await["last_used_at"],
            after["last_used_at"]
        );
        assert!(accepted(&app, &app.merchant_key).await);
        app.state.auth.flush_uses().await.unwrap();
        assert_eq!(
            merchant_credential(&app).await["last_used_at"],
            json!(app.clock.now())
        );
        app
    })
    .await;
}
