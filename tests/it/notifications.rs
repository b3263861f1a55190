//! Upgrade notifications through HTTP, delivered by the outbox to real receivers: an SMTP
//! server (aiosmtpd), and HTTP receivers for the merchant webhook, Slack and the SMS
//! provider. The seed's priority table, its email template, in-app notices in heartbeats
//! until acknowledged, and the quiet period.

use crate::support::{each_store, Receiver, SmtpServer, TestApp};
use api::delivery::notifications::priority;
use api::delivery::{NotificationConfig, OutboxConfig};
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};

#[test]
fn priority_follows_the_seed_table() {
    let v = |s: &str| semver::Version::parse(s).unwrap();
    let cases = [
        ("1.2.0", "1.2.1", false, "low", vec!["in-app"]),
        ("1.2.5", "1.3.0", false, "normal", vec!["email", "in-app"]),
        ("1.9.0", "2.0.0", false, "high", vec!["email", "in-app"]),
        ("1.2.0", "1.2.1", true, "critical", vec!["email", "sms"]),
        ("1.2.0", "3.0.0", true, "critical", vec!["email", "sms"]),
    ];
    for (current, target, security, expected, channels) in cases {
        let (got, got_channels) = priority(&v(current), &v(target), security);
        assert_eq!(
            (got, got_channels.to_vec()),
            (expected, channels),
            "{current} → {target} security={security}"
        );
    }
}

/// The message with its quoted-printable body decoded (soft line breaks joined, `=XX`
/// bytes restored).
fn quoted_printable(raw: &str) -> String {
    let joined = raw.replace("\r\n", "\n").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn setup(app: &TestApp, version: &str, security: bool) -> uuid::Uuid {
    let release = json!({"cms": "woocommerce", "version": version, "is_latest": true, "security": security,
                         "release_notes": "Critical bug fixes\nImproved 3DS2 flow\nPerformance optimizations"});
    app.post("/api/v1/plugins/versions", &app.admin, &release)
        .await
        .ok();
    app.heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.2.0", "site_url": "https://shop.example"})).await
}

#[tokio::test]
async fn notices_reach_every_channel_once() {
    let smtp = SmtpServer::start();
    let receiver = Receiver::start().await;
    each_store(|store| async {
        let outbox = OutboxConfig {
            smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port)),
            ..OutboxConfig::default()
        };
        let notifications = NotificationConfig {
            slack_webhook_url: Some(format!("{}/slack", receiver.base)),
            sms_provider_url: Some(format!("{}/sms", receiver.base)),
            ..NotificationConfig::default()
        };
        let app = TestApp::new(store).await.with_outbox(outbox).await;
        let app = app.rebuilt(|parts| parts.config(api::ServerConfig { notifications, ..api::ServerConfig::default() })).await;
        let id = setup(&app, "1.3.5", false).await;
        let path = format!("/api/v1/plugins/{id}/notify-upgrade");
        let before_mail = smtp.messages().len();
        let before_http = receiver.requests().len();

        // Email: the seed's template, filled in, through a real SMTP server with AUTH.
        let sent = app.post(&path, &app.operator, &json!({"channel": "email"})).await;
        assert_eq!(sent.ok()["message"], "Notification sent");
        assert_eq!(sent.body["notification"]["priority"], "normal");
        // SMS and webhook need the merchant's phone and endpoint.
        let (_, field) = app.post(&path, &app.operator, &json!({"channel": "sms"})).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("channel"));
        app.state.store.set_merchant_contacts(app.merchant_id, Some("+221771234567"), Some(&format!("{}/merchant", receiver.base))).await.unwrap();
        for channel in ["sms", "webhook", "slack", "in-app"] {
            app.post(&path, &app.operator, &json!({"channel": channel})).await.ok();
        }
        let report = app.state.delivery.deliver_due().await.unwrap();
        assert_eq!(report.delivered, 4, "{report:?}");

        let mail = smtp.messages()[before_mail..].to_vec();
        assert_eq!(mail.len(), 1);
        let text = quoted_printable(&mail[0]);
        for expected in [
            "Subject: Molam Form WooCommerce Update Available (v1.3.5)",
            "Hi My Shop,",
            "Current Version: 1.2.0",
            "Latest Version: 1.3.5",
            "- Improved 3DS2 flow",
            "Upgrade Priority: NORMAL",
            &format!("https://dashboard.molam.com/plugins/upgrade/{id}"),
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let http = receiver.requests()[before_http..].to_vec();
        let by_path = |p: &str| -> Value { serde_json::from_slice(&http.iter().find(|r| r.path == p).unwrap().body).unwrap() };
        assert_eq!(by_path("/sms")["to"], "+221771234567");
        assert!(by_path("/sms")["message"].as_str().unwrap().contains("1.3.5"));
        assert_eq!(by_path("/merchant")["type"], "plugin.upgrade_available");
        assert_eq!(by_path("/merchant")["latest_version"], "1.3.5");
        assert!(by_path("/slack")["text"].as_str().unwrap().contains("My Shop"));

        // The same version on the same channel within the quiet period: refused.
        app.post(&path, &app.operator, &json!({"channel": "email"})).await.error(StatusCode::CONFLICT);
        app.clock.advance(Duration::days(8));
        app.post(&path, &app.operator, &json!({"channel": "email"})).await.ok();

        // In-app: in every heartbeat until acknowledged (by the merchant, idempotently).
        let beat = json!({"cms": "woocommerce", "plugin_version": "1.2.0", "site_url": "https://shop.example"});
        let answer = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &beat).await;
        let notices = answer.ok()["notices"].as_array().unwrap().clone();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0]["target_version"], "1.3.5");
        let ack = format!("/api/v1/plugins/notifications/{}/ack", notices[0]["id"].as_str().unwrap());
        let (_, other) = app.create_merchant("Other").await;
        app.post(&ack, &other, &json!({})).await.error(StatusCode::NOT_FOUND);
        let acked = app.post(&ack, &app.merchant_key, &json!({})).await;
        let at = acked.ok()["notification"]["acknowledged_at"].clone();
        assert!(at.is_string());
        assert_eq!(app.post(&ack, &app.merchant_key, &json!({})).await.ok()["notification"]["acknowledged_at"], at);
        let answer = app.post("/api/v1/plugins/heartbeat", &app.merchant_key, &beat).await;
        assert!(answer.ok()["notices"].as_array().unwrap().is_empty());

        // Bad input and permissions.
        let (_, field) = app.post(&path, &app.operator, &json!({"channel": "pigeon"})).await.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("channel"));
        app.post(&path, &app.viewer, &json!({"channel": "email"})).await.error(StatusCode::FORBIDDEN);
        let audit = app.get("/api/v1/audit", &app.admin).await;
        assert!(audit.ok().as_array().unwrap().iter().any(|e| e["action"] == "notification.send"));
        app.store
    })
    .await;
}

/// A self-signed certificate for 127.0.0.1 (openssl), as (cert path, key path, PEM).
fn certificate(dir: &std::path::Path) -> (String, String, Vec<u8>) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let pem = std::fs::read(&cert).unwrap();
    (cert.display().to_string(), key.display().to_string(), pem)
}

/// A real SMTP server that requires STARTTLS (with a fresh self-signed certificate) and AUTH
/// as `mailer:s3cret`, with the certificate's PEM and the folder holding it.
fn starttls_smtp() -> (SmtpServer, Vec<u8>, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(certs.path());
    let smtp = SmtpServer::start_with(&["--tls", &cert, &key, "--auth", "mailer:s3cret"]);
    (smtp, pem, certs)
}

/// The outbox sending through `smtp` (from [`starttls_smtp`]) as `mailer` with `password`.
fn starttls_outbox(smtp: &SmtpServer, pem: &[u8], password: &str) -> OutboxConfig {
    OutboxConfig {
        smtp_url: Some(format!(
            "smtp://mailer:{password}@127.0.0.1:{}?tls=required",
            smtp.port
        )),
        smtp_ca_pem: Some(pem.to_vec()),
        ..OutboxConfig::default()
    }
}

/// An install that is behind, and an Ops email notice about it, queued in the outbox.
async fn queue_email_notice(app: &TestApp) {
    let id = setup(app, "1.3.5", false).await;
    app.post(
        &format!("/api/v1/plugins/{id}/notify-upgrade"),
        &app.operator,
        &json!({"channel": "email"}),
    )
    .await
    .ok();
}

#[tokio::test]
async fn email_goes_over_starttls_with_auth() {
    let (smtp, pem, _certs) = starttls_smtp();
    each_store(|store| async {
        let app = TestApp::new(store)
            .await
            .with_outbox(starttls_outbox(&smtp, &pem, "s3cret"))
            .await;
        let before = smtp.messages().len();
        queue_email_notice(&app).await;
        let report = app.state.delivery.deliver_due().await.unwrap();
        assert_eq!(report.delivered, 1, "{report:?}");
        let envelope = smtp.envelopes()[before].clone();
        assert_eq!(
            (
                envelope["tls"].as_bool(),
                envelope["authenticated"].as_bool()
            ),
            (Some(true), Some(true))
        );
        assert_eq!(envelope["to"], json!(["merchant@example.com"]));
        app.store
    })
    .await;
}

/// A wrong SMTP password: the email is a dead letter of class AUTH at once (retrying with
/// the same credentials cannot help), the error names the SMTP reply and never the
/// password, and once the credentials are mended an Ops retry delivers it.
#[tokio::test]
async fn a_wrong_smtp_password_is_a_dead_letter_until_mended() {
    let (smtp, pem, _certs) = starttls_smtp();
    each_store(|store| async {
        let app = TestApp::new(store)
            .await
            .with_outbox(starttls_outbox(&smtp, &pem, "not-the-password"))
            .await;
        let before = smtp.messages().len();
        queue_email_notice(&app).await;
        let report = app.state.delivery.deliver_due().await.unwrap();
        assert_eq!((report.delivered, report.dead), (0, 1), "{report:?}");
        assert_eq!(smtp.messages().len(), before);

        let dead = app
            .get("/api/platform/outbox/messages?status=dead", &app.admin)
            .await;
        let listed = dead.ok().to_string();
        assert!(!listed.contains("not-the-password"), "{listed}");
        let letter = dead.body[0].clone();
        assert_eq!(letter["last_error_class"], "AUTH", "{letter}");
        assert_eq!(letter["last_error"], "SMTP 535", "{letter}");

        let app = app
            .with_outbox(starttls_outbox(&smtp, &pem, "s3cret"))
            .await;
        let retry = format!(
            "/api/platform/outbox/messages/{}/retry",
            letter["id"].as_str().unwrap()
        );
        app.post(&retry, &app.admin, &json!({})).await.ok();
        let report = app.state.delivery.deliver_due().await.unwrap();
        assert_eq!(report.delivered, 1, "{report:?}");
        assert_eq!(smtp.envelopes()[before]["authenticated"], true);
        app.store
    })
    .await;
}

/// An SMTP server that takes the connection and never answers: the attempt ends at the
/// request timeout as a TRANSIENT timeout (retried later; its lease, twice that timeout,
/// is not outlived), and the health probe calls it down, instead of both waiting for the
/// server to hang up.
#[tokio::test]
async fn a_silent_smtp_server_times_out_the_attempt() {
    // Never accepted: the kernel completes the handshake and nothing is ever said.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let bound = std::time::Duration::from_secs(10);
    each_store(|store| async {
        let outbox = OutboxConfig {
            smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
            request_timeout: std::time::Duration::from_millis(300),
            ..OutboxConfig::default()
        };
        let app = TestApp::new(store).await.with_outbox(outbox).await;
        queue_email_notice(&app).await;
        let report = tokio::time::timeout(bound, app.state.delivery.deliver_due())
            .await
            .expect("the attempt ends at the request timeout")
            .unwrap();
        assert_eq!((report.delivered, report.retrying), (0, 1), "{report:?}");
        let pending = app
            .get("/api/platform/outbox/messages?status=pending", &app.admin)
            .await;
        let letter = pending.ok()[0].clone();
        assert_eq!(
            (&letter["last_error_class"], &letter["last_error"]),
            (&json!("TRANSIENT"), &json!("timeout")),
            "{letter}"
        );

        let checks = tokio::time::timeout(bound, app.state.ops.check_tier("core"))
            .await
            .expect("the probe ends at the request timeout");
        assert_eq!(
            checks
                .iter()
                .map(|c| (c.service.as_str(), c.status.as_str()))
                .collect::<Vec<_>>(),
            [("smtp", "down")]
        );
        app.store
    })
    .await;
}
