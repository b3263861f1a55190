//! Outbound delivery against a real HTTP receiver on loopback: CloudEvents forwarding with
//! signatures, each error class, backoff and Retry-After, dead letters and their retry, and
//! the circuit breaker's transitions. Time is the manual clock; each round is one call.

use crate::support::{each_store, repo, Receiver, TestApp};
use api::delivery::{NewOutboxMessage, OutboxConfig, RoundReport};
use axum::http::StatusCode;
use chrono::Duration;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

fn config(receiver: &Receiver) -> OutboxConfig {
    OutboxConfig {
        cloudevents_webhooks: vec![format!("{}/events", receiver.base)],
        webhook_secret: Some("whsec_test".into()),
        max_attempts: 4,
        backoff_base: Duration::seconds(10),
        breaker_threshold: 3,
        breaker_cooldown: Duration::seconds(30),
        ..OutboxConfig::default()
    }
}

/// Runs `test` once per backend on an app delivering its outbox to a receiver on loopback
/// (the same receiver for both).
async fn each_app_delivering(test: impl AsyncFn(&TestApp, &Receiver)) {
    let receiver = Receiver::start().await;
    let (receiver, test) = (&receiver, &test);
    each_store(move |store| async move {
        let app = TestApp::new(store)
            .await
            .with_outbox(config(receiver))
            .await;
        test(&app, receiver).await;
        app.store
    })
    .await;
}

async fn round(app: &TestApp) -> RoundReport {
    app.state.delivery.deliver_due().await.unwrap()
}

async fn message(app: &TestApp, status: &str) -> Vec<Value> {
    let listed = app
        .get(
            &format!("/api/platform/outbox/messages?status={status}"),
            &app.viewer,
        )
        .await;
    listed.ok().as_array().unwrap().clone()
}

async fn enqueue(app: &TestApp, url: String) {
    let message = NewOutboxMessage {
        channel: "webhook",
        destination: url,
        payload: json!({"hello": "world"}),
        source_type: "test",
        source_id: None,
    };
    app.state
        .store
        .enqueue(&[message], app.clock.now())
        .await
        .unwrap();
}

#[tokio::test]
async fn normalized_events_are_forwarded_as_signed_cloudevents_once() {
    let receiver = Receiver::start().await;
    each_store(|store| async {
        let app = TestApp::with_rules(store, &repo().join("rules"))
            .await
            .with_outbox(config(&receiver))
            .await;
        let id = app
            .heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.3.5"}))
            .await;
        let event = json!({"plugin_id": id, "event_type": "woocommerce_checkout_order_processed",
                           "payload": {"id": "77", "total": "10.00", "currency": "EUR"}});
        app.post("/api/v1/plugins/interop/event", &app.merchant_key, &event)
            .await
            .ok();
        app.post("/api/v1/plugins/interop/event", &app.merchant_key, &event)
            .await
            .ok();
        let before = receiver.requests().len();
        assert_eq!(
            round(&app).await.delivered,
            1,
            "one forward for one event, redelivery or not"
        );
        let got = receiver.requests()[before].clone();
        assert_eq!(got.path, "/events");
        assert_eq!(got.headers["content-type"], "application/cloudevents+json");
        let cloud: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(cloud["specversion"], "1.0");
        assert_eq!(cloud["type"], "checkout.created");
        assert_eq!(
            cloud["data"],
            json!({"order_id": "77", "amount": 1000, "currency": "EUR"})
        );
        // The signature is HMAC-SHA256 over "<timestamp>.<body>" with the shared secret.
        let timestamp = got.headers["x-autoheal-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&got.body);
        let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            got.headers["x-autoheal-signature"].to_str().unwrap(),
            expected
        );
        assert!(!got.headers["x-autoheal-delivery"].is_empty());
        assert_eq!(round(&app).await, RoundReport::default(), "delivered once");
        assert_eq!(message(&app, "delivered").await.len(), 1);
        app.store
    })
    .await;
}

#[tokio::test]
async fn each_error_class_is_handled_as_the_runbook_says() {
    each_app_delivering(async |app, receiver| {
        // TRANSIENT, then RATE_LIMITED with Retry-After, then delivered.
        receiver.answer(&[(503, None), (429, Some("120")), (200, None)]);
        enqueue(app, format!("{}/retry", receiver.base)).await;
        let report = round(app).await;
        assert_eq!((report.retrying, report.delivered), (1, 0));
        let pending = message(app, "pending").await;
        assert_eq!(pending[0]["last_error_class"], "TRANSIENT");
        assert_eq!(
            pending[0]["last_error"], "HTTP 503",
            "a summary, never the provider's body"
        );
        assert_eq!(
            round(app).await,
            RoundReport::default(),
            "not due before its backoff"
        );
        app.clock.advance(Duration::seconds(10));
        assert_eq!(round(app).await.retrying, 1);
        let pending = message(app, "pending").await;
        assert_eq!(pending[0]["last_error_class"], "RATE_LIMITED");
        let due: chrono::DateTime<chrono::Utc> = pending[0]["next_attempt_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            due >= app.clock.now() + Duration::seconds(120),
            "Retry-After honoured: {due}"
        );
        app.clock.advance(Duration::seconds(119));
        assert_eq!(round(app).await, RoundReport::default());
        app.clock.advance(Duration::seconds(1));
        assert_eq!(round(app).await.delivered, 1);

        // AUTH and PERMANENT are not retried: dead letters at once.
        receiver.answer(&[(401, None), (422, None)]);
        enqueue(app, format!("{}/auth", receiver.base)).await;
        assert_eq!(round(app).await.dead, 1);
        enqueue(app, format!("{}/bad", receiver.base)).await;
        assert_eq!(round(app).await.dead, 1);
        let dead = message(app, "dead").await;
        let classes: Vec<&str> = dead
            .iter()
            .map(|m| m["last_error_class"].as_str().unwrap())
            .collect();
        assert_eq!(classes, ["PERMANENT", "AUTH"]);

        // Ops retry a dead letter (audited); the receiver now accepts it.
        let id = dead[1]["id"].as_str().unwrap();
        let retry = async |token: &str| {
            let path = format!("/api/platform/outbox/messages/{id}/retry");
            app.post(&path, token, &json!({})).await
        };
        retry(&app.viewer).await.error(StatusCode::FORBIDDEN);
        assert_eq!(retry(&app.operator).await.ok()["status"], "pending");
        retry(&app.operator).await.error(StatusCode::NOT_FOUND);
        assert_eq!(round(app).await.delivered, 1);

        // A destination that never recovers: dead after the last attempt.
        receiver.answer(&[(500, None); 4]);
        enqueue(app, format!("{}/down", receiver.base)).await;
        let mut rounds = Vec::new();
        for _ in 0..4 {
            rounds.push(round(app).await);
            app.clock.advance(Duration::hours(1));
        }
        assert_eq!(rounds.iter().map(|r| r.retrying).sum::<usize>(), 3);
        assert_eq!(rounds[3].dead, 1);
        let counts = app.get("/api/platform/outbox", &app.viewer).await;
        assert_eq!(
            counts.ok()["counts"],
            json!({"pending": 0, "delivered": 2, "dead": 2})
        );
    })
    .await;
}

#[tokio::test]
async fn the_breaker_opens_probes_and_closes() {
    each_app_delivering(async |app, receiver| {
        let url = format!("{}/flaky", receiver.base);
        receiver.answer(&[(503, None); 4]);
        for _ in 0..3 {
            enqueue(app, url.clone()).await;
        }
        // Three consecutive failures: open.
        assert_eq!(round(app).await.retrying, 3);
        let breaker = |body: &Value| {
            body["breakers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["destination"] == url.as_str())
                .cloned()
                .unwrap()
        };
        let overview = app.get("/api/platform/outbox", &app.viewer).await;
        assert_eq!(breaker(overview.ok())["state"], "open");
        // While open nothing is sent; the attempts are not spent.
        let sent = receiver.requests().len();
        app.clock.advance(Duration::seconds(20));
        assert_eq!(round(app).await.deferred, 3);
        assert_eq!(receiver.requests().len(), sent);
        // After the cool-down one probe goes; it fails: open again.
        app.clock.advance(Duration::seconds(30));
        let report = round(app).await;
        assert_eq!((report.retrying, report.deferred), (1, 2));
        assert_eq!(receiver.requests().len(), sent + 1);
        assert_eq!(
            breaker(app.get("/api/platform/outbox", &app.viewer).await.ok())["state"],
            "open"
        );
        // The destination recovers: the next probe succeeds and closes the breaker.
        app.clock.advance(Duration::minutes(5));
        let report = round(app).await;
        assert_eq!(report.delivered, 1);
        assert_eq!(
            breaker(app.get("/api/platform/outbox", &app.viewer).await.ok())["state"],
            "closed"
        );
        app.clock.advance(Duration::seconds(1));
        let report = round(app).await;
        assert_eq!(report.delivered, 2, "the rest flow once closed");
    })
    .await;
}

/// `pending` in the interop stats, and the `InteropProcessingBacklog` alert, are the
/// normalized events whose forward still waits in the outbox.
#[tokio::test]
async fn a_forward_waiting_in_the_outbox_is_the_interop_backlog() {
    let receiver = Receiver::start().await;
    each_store(|store| async {
        let jobs = api::ops::JobsConfig { interop_backlog_alert: 1, ..Default::default() };
        let app = TestApp::with_rules(store, &repo().join("rules"))
            .await
            .rebuilt(|parts| parts.config(api::ServerConfig { jobs, ..api::ServerConfig::default() }))
            .await
            .with_outbox(config(&receiver))
            .await;
        let id = app.heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.3.5"})).await;
        for order in ["77", "78"] {
            let event = json!({"plugin_id": id, "event_type": "woocommerce_checkout_order_processed",
                               "payload": {"id": order, "total": "10.00", "currency": "EUR"}});
            app.post("/api/v1/plugins/interop/event", &app.merchant_key, &event).await.ok();
        }
        let stats = async |app: &TestApp| {
            app.get("/api/v1/plugins/interop/stats?days=1", &app.viewer).await.ok().clone()
        };
        let before = stats(&app).await;
        assert_eq!((before["processed"].clone(), before["pending"].clone()), (json!(2), json!(2)), "{before}");
        let backlog = async |app: &TestApp| {
            let open = app.get("/api/platform/alerts?status=open", &app.viewer).await;
            open.ok().as_array().unwrap().iter().filter(|a| a["name"] == "InteropProcessingBacklog").count()
        };
        app.state.ops.run_due().await.unwrap();
        assert_eq!(backlog(&app).await, 1, "two forwards wait, past a threshold of one");

        assert_eq!(round(&app).await.delivered, 2);
        let after = stats(&app).await;
        assert_eq!((after["processed"].clone(), after["pending"].clone()), (json!(2), json!(0)), "{after}");
        app.clock.advance(Duration::hours(1));
        app.state.ops.run_due().await.unwrap();
        assert_eq!(backlog(&app).await, 0, "delivered: the alert is resolved");
        app.store
    })
    .await;
}

#[tokio::test]
async fn the_console_lists_dead_letters_and_retries_one() {
    each_app_delivering(async |app, receiver| {
        receiver.answer(&[(422, None)]);
        enqueue(app, format!("{}/bad", receiver.base)).await;
        assert_eq!(round(app).await.dead, 1);
        let id = message(app, "dead").await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let mut viewer = crate::console::Browser::signed_in(app, "viewer@ops.test").await;
        let page = viewer.get("/console/outbox").await;
        page.assert_ok("/bad</code>");
        assert!(
            !page.html.contains("Retry"),
            "a viewer gets no retry button"
        );
        let path = format!("/console/outbox/{id}/retry");
        assert_eq!(viewer.post(&path, &[]).await.status, StatusCode::FORBIDDEN);

        let mut operator = crate::console::Browser::signed_in(app, "operator@ops.test").await;
        operator.get("/console/outbox").await.assert_ok("Retry");
        let retried = operator.post(&path, &[]).await;
        assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.html);
        assert_eq!(message(app, "pending").await[0]["id"], id.as_str());
        assert_eq!(
            operator.post(&path, &[]).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(round(app).await.delivered, 1);
    })
    .await;
}
