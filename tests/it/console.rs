//! The Ops console through `app()`: sign-in, sessions, CSRF, roles, and each page and
//! action, as a browser would send them (cookies, urlencoded forms), on both backends.

use crate::support::{each_app, TestApp};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tower::ServiceExt;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// A browser without a script engine: a cookie jar, and the CSRF token of the last page.
pub struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
    csrf: Option<String>,
    /// Sent as `x-request-id`, to find the audit rows.
    request_id: Option<String>,
    /// The peer address `autoheal serve` would see (None: the router alone, as in most tests).
    peer: Option<std::net::SocketAddr>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub html: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get("location")
            .and_then(|value| value.to_str().ok())
    }

    #[track_caller]
    pub fn assert_sign_in(&self) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.html);
        assert_eq!(self.location(), Some("/console/login"));
    }

    #[track_caller]
    pub fn assert_ok(&self, contains: &str) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.html);
        assert!(
            self.html.contains(contains),
            "{contains:?} not in {}",
            self.html
        );
    }
}

/// The CSRF token of a page's first form.
fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[start..start + 64].to_owned())
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
            csrf: None,
            request_id: None,
            peer: None,
        }
    }

    /// A browser signed in as `email` (whose password is set to [`PASSWORD`]).
    pub async fn signed_in(app: &'a TestApp, email: &str) -> Self {
        set_password(app, email).await;
        let mut browser = Self::new(app);
        browser.get("/console/login").await.assert_ok("Sign in");
        let page = browser
            .post(
                "/console/login",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
        assert_eq!(page.location(), Some("/console/"));
        browser.get("/console/").await.assert_ok("Overview");
        browser
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn forget_cookies(&mut self) {
        self.cookies.clear();
    }

    pub async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header("cookie", header.join("; "));
        }
        if let Some(id) = &self.request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(peer) = self.peer {
            request = request.extension(axum::extract::ConnectInfo(api::wire::Peer(peer)));
        }
        let response = self
            .app
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(bytes.to_vec()).unwrap();
        if let Some(token) = csrf_of(&html) {
            self.csrf = Some(token);
        }
        Page {
            status,
            headers,
            html,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Request::get(path), Body::empty()).await
    }

    /// Posts `fields` as a form, with the CSRF token of the last page read.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut with_token = vec![("csrf", csrf.as_str())];
        with_token.extend_from_slice(fields);
        self.post_raw(path, &with_token).await
    }

    /// Posts exactly `fields`.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            Request::post(path).header("content-type", "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }
}

/// A WooCommerce install at `site` reporting the state the shipped rules heal.
pub fn woo(site: &str) -> Value {
    json!({
        "cms": "woocommerce", "site_url": site, "plugin_version": "1.3.5",
        "state": {"config": {"memory_limit": "128M"}, "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED"}}}
    })
}

/// Posts a detection for `plugin_id` that waits for review; returns its log's id.
pub async fn pending_detection(app: &TestApp, plugin_id: Uuid) -> String {
    let detection = app
        .post("/api/v1/plugins/autoheal", &app.sira, &json!({
            "plugin_id": plugin_id,
            "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
            "issue_severity": "high", "patch_type": "database_patch",
            "proposed_patch": {"type": "database_patch", "action": "add_missing_column",
                "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
            "sira_confidence": 70.0
        }))
        .await;
    assert_eq!(
        detection.ok()["status"],
        "pending_review",
        "{}",
        detection.body
    );
    detection.body["log"]["id"].as_str().unwrap().to_owned()
}

/// The toggles the install that sends `heartbeat` gets in its answer.
pub async fn toggles_of(app: &TestApp, heartbeat: &Value) -> Value {
    app.post("/api/v1/plugins/heartbeat", &app.merchant_key, heartbeat)
        .await
        .ok()["toggles"]
        .clone()
}

pub async fn set_password(app: &TestApp, email: &str) {
    let hash = api::console::hash_password(PASSWORD).unwrap();
    assert!(app
        .store
        .store
        .set_ops_agent_password(email, &hash, &api::db::AuditContext::cli(), app.clock.now())
        .await
        .unwrap());
}

/// The audit entries whose action starts with `prefix`, as the API filters them.
async fn audit_actions(app: &TestApp, prefix: &str) -> Vec<Value> {
    let page = app
        .get(
            &format!("/api/v1/audit?limit=500&action={prefix}"),
            &app.admin,
        )
        .await;
    let rows = page.ok().as_array().unwrap().clone();
    assert!(
        rows.iter()
            .all(|row| row["action"].as_str().unwrap().starts_with(prefix)),
        "{rows:?}"
    );
    rows
}

#[tokio::test]
async fn signing_in_sets_a_hardened_cookie_and_stores_only_its_hash() {
    each_app(|app: TestApp| async move {
        set_password(&app, "admin@ops.test").await;
        let mut browser = Browser::new(&app);
        let login = browser.get("/console/login").await;
        login.assert_ok("name=\"password\"");
        assert_eq!(login.headers["cache-control"], "no-store");
        assert!(login.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert!(browser.cookie("autoheal_login").is_some());

        // Without the token, and with another one: refused before the password is read.
        let zeros = "0".repeat(64);
        for fields in [
            vec![("email", "admin@ops.test"), ("password", PASSWORD)],
            vec![
                ("csrf", zeros.as_str()),
                ("email", "admin@ops.test"),
                ("password", PASSWORD),
            ],
        ] {
            let refused = browser.post_raw("/console/login", &fields).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
            assert!(browser.cookie("autoheal_session").is_none());
        }

        let long = format!("{}@ops.test", "a".repeat(300));
        let too_long = browser
            .post(
                "/console/login",
                &[("email", &long), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            too_long.html.contains("<code>email</code>"),
            "{}",
            too_long.html
        );
        let wrong = browser
            .post(
                "/console/login",
                &[
                    ("email", "admin@ops.test"),
                    ("password", "not the password"),
                ],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.html.contains("The email or the password is wrong."));
        let unknown = browser
            .post(
                "/console/login",
                &[("email", "nobody@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert!(unknown.html.contains("The email or the password is wrong."));

        let signed_in = browser
            .post(
                "/console/login",
                &[("email", "admin@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
        let cookie = signed_in
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("autoheal_session="))
            .expect("a session cookie");
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/console",
            "Max-Age=43200",
        ] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        assert!(!cookie.contains("Secure"), "not over plain HTTP by default");
        let secret = browser.cookie("autoheal_session").unwrap().to_owned();
        assert_eq!(
            app.store
                .count(&format!(
                    "SELECT COUNT(*) FROM console_sessions WHERE id_sha256 = '{}'",
                    api::auth::hash_secret(&secret)
                ))
                .await,
            1
        );
        assert_eq!(
            app.store
                .count(&format!(
                    "SELECT COUNT(*) FROM console_sessions WHERE id_sha256 = '{secret}'"
                ))
                .await,
            0
        );
        browser.get("/console/").await.assert_ok("admin@ops.test");
        // Signed in, the sign-in page sends the agent on.
        assert_eq!(
            browser.get("/console/login").await.location(),
            Some("/console/")
        );

        let failures = audit_actions(&app, "console.login_failed").await;
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures
            .iter()
            .all(|row| row["details"]["reason"] == "wrong"));
        let logins = audit_actions(&app, "console.login").await;
        assert!(logins
            .iter()
            .any(|row| row["action"] == "console.login" && row["actor_id"] == json!(app.admin_id)));
        app
    })
    .await;
}

#[tokio::test]
async fn a_session_cookie_opens_only_the_console_and_a_token_only_the_api() {
    each_app(|app: TestApp| async move {
        let mut browser = Browser::signed_in(&app, "admin@ops.test").await;
        let cookie = format!(
            "autoheal_session={}",
            browser.cookie("autoheal_session").unwrap()
        );
        let api = app
            .send(
                Request::get("/api/v1/plugins/list")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        api.error(StatusCode::UNAUTHORIZED);
        browser.forget_cookies();
        let with_token = browser
            .send(
                Request::get("/console/fleet")
                    .header("authorization", format!("Bearer {}", app.admin)),
                Body::empty(),
            )
            .await;
        with_token.assert_sign_in();
        app
    })
    .await;
}

/// Every page, what it must show, and whether a viewer may read it (the audit log needs
/// `audit:read`, which only admins have).
const PAGES: &[(&str, &str, bool)] = &[
    ("/console/", "Healing queue", true),
    ("/console/overview/figures", "Average error rate", true),
    ("/console/fleet", "version → latest", true),
    ("/console/healing", "Review queue and logs", true),
    ("/console/flags", "No flags are defined.", true),
    ("/console/interop", "Mappings", true),
    ("/console/alerts", "Alerts", true),
    ("/console/health", "Health", true),
    ("/console/outbox", "Dead letters", true),
    ("/console/audit", "Audit log", false),
];

#[tokio::test]
async fn every_page_needs_a_session_and_renders_for_each_role() {
    each_app(|app: TestApp| async move {
        let mut anonymous = Browser::new(&app);
        for (path, _, _) in PAGES {
            anonymous.get(path).await.assert_sign_in();
        }
        // htmx is told to navigate, not handed the sign-in page as a fragment.
        let htmx = anonymous
            .send(
                Request::get("/console/overview/figures").header("hx-request", "true"),
                Body::empty(),
            )
            .await;
        assert_eq!(htmx.status, StatusCode::OK);
        assert_eq!(htmx.headers["hx-redirect"], "/console/login");

        for (email, admin) in [
            ("admin@ops.test", true),
            ("operator@ops.test", false),
            ("viewer@ops.test", false),
        ] {
            let mut browser = Browser::signed_in(&app, email).await;
            for (path, expected, everyone) in PAGES {
                let page = browser.get(path).await;
                if *everyone || admin {
                    page.assert_ok(expected);
                } else {
                    assert_eq!(page.status, StatusCode::FORBIDDEN, "{email} {path}");
                    assert!(
                        page.html.contains("lacks permission audit:read"),
                        "{}",
                        page.html
                    );
                }
            }
        }
        app
    })
    .await;
}

#[tokio::test]
async fn a_viewer_sees_no_actions_and_a_forged_one_is_refused() {
    each_app(|app: TestApp| async move {
        let id = app.heartbeat(woo("https://viewer.example")).await;
        let mut viewer = Browser::signed_in(&app, "viewer@ops.test").await;
        let fleet = viewer.get("/console/fleet").await;
        fleet.assert_ok("https://viewer.example");
        assert!(
            !fleet.html.contains("value=\"block\""),
            "no block button for a viewer"
        );
        let install = viewer.get(&format!("/console/installs/{id}")).await;
        install.assert_ok("https://viewer.example");
        assert!(!install.html.contains("Set toggle"));
        let forged = viewer
            .post(
                "/console/fleet/bulk",
                &[
                    ("action", "block"),
                    ("reason", "forged"),
                    ("install", &id.to_string()),
                ],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
        assert!(forged.html.contains("lacks permission plugins:toggle"));
        assert_eq!(
            toggles_of(&app, &woo("https://viewer.example")).await["block_plugin"],
            false
        );
        app
    })
    .await;
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    each_app(|app: TestApp| async move {
        let mut browser = Browser::signed_in(&app, "admin@ops.test").await;
        let mut other = Browser::signed_in(&app, "operator@ops.test").await;
        other.get("/console/flags").await;
        let others_token = other.csrf.clone().unwrap();
        for fields in [
            vec![("action", "block")],
            vec![("csrf", others_token.as_str()), ("action", "block")],
        ] {
            let refused = browser.post_raw("/console/fleet/bulk", &fields).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
            assert!(refused.html.contains("security token"));
        }
        // In the header, as htmx sends it.
        let wrong_header = browser
            .send(
                Request::post("/console/logout").header("x-csrf-token", &others_token),
                Body::empty(),
            )
            .await;
        assert_eq!(wrong_header.status, StatusCode::FORBIDDEN);
        browser.get("/console/").await.assert_ok("Overview");
        app
    })
    .await;
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_lifetime_and_on_sign_out() {
    each_app(|app: TestApp| async move {
        // Idle: 29 minutes apart keeps it; 31 minutes ends it.
        let mut browser = Browser::signed_in(&app, "admin@ops.test").await;
        app.clock.advance(chrono::Duration::minutes(29));
        browser.get("/console/").await.assert_ok("Overview");
        app.clock.advance(chrono::Duration::minutes(29));
        browser.get("/console/").await.assert_ok("Overview");
        app.clock.advance(chrono::Duration::minutes(31));
        browser.get("/console/").await.assert_sign_in();

        // Busy: still over after 12 hours.
        let mut busy = Browser::signed_in(&app, "admin@ops.test").await;
        for _ in 0..(12 * 60 / 20) {
            app.clock.advance(chrono::Duration::minutes(20));
            let page = busy.get("/console/flags").await;
            if page.status != StatusCode::OK {
                page.assert_sign_in();
                break;
            }
        }
        busy.get("/console/flags").await.assert_sign_in();

        // Sign-out: the cookie is cleared and the session ended in the store, so a copy
        // of the cookie opens nothing.
        let mut leaving = Browser::signed_in(&app, "admin@ops.test").await;
        let copy = leaving.cookie("autoheal_session").unwrap().to_owned();
        let out = leaving.post("/console/logout", &[]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert_eq!(out.location(), Some("/console/login"));
        assert!(leaving.cookie("autoheal_session").is_none());
        leaving.get("/console/").await.assert_sign_in();
        let mut thief = Browser::new(&app);
        thief.cookies.insert("autoheal_session".into(), copy);
        thief.get("/console/").await.assert_sign_in();
        assert_eq!(audit_actions(&app, "console.logout").await.len(), 1);

        // Retention drops a session a day past its end; the audit log keeps the sign-ins.
        let sessions = "SELECT COUNT(*) FROM console_sessions";
        assert_eq!(app.store.count(sessions).await, 3);
        app.clock.advance(chrono::Duration::hours(12 + 23));
        let retention = api::ops::retention::RetentionConfig::default();
        app.store
            .store
            .prune(&retention, app.clock.now())
            .await
            .unwrap();
        assert_eq!(
            app.store.count(sessions).await,
            1,
            "the last is not a day past its end"
        );
        app.clock.advance(chrono::Duration::hours(2));
        app.store
            .store
            .prune(&retention, app.clock.now())
            .await
            .unwrap();
        assert_eq!(app.store.count(sessions).await, 0);
        assert_eq!(audit_actions(&app, "console.login").await.len(), 3);
        app
    })
    .await;
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_email_and_audited() {
    each_app(|app: TestApp| async move {
        set_password(&app, "operator@ops.test").await;
        let mut browser = Browser::new(&app);
        browser.get("/console/login").await;
        for _ in 0..5 {
            let wrong = browser
                .post(
                    "/console/login",
                    &[
                        ("email", "operator@ops.test"),
                        ("password", "wrong password!"),
                    ],
                )
                .await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        }
        // The right password, too soon: still refused, with the wait.
        let throttled = browser
            .post(
                "/console/login",
                &[("email", "operator@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(
            throttled.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            throttled.html
        );
        assert_eq!(throttled.headers["retry-after"], "30");
        assert!(throttled.html.contains("Try again in 30 seconds"));
        // Another agent is not affected.
        set_password(&app, "viewer@ops.test").await;
        let other = browser
            .post(
                "/console/login",
                &[("email", "viewer@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(other.status, StatusCode::SEE_OTHER);
        browser.forget_cookies();
        browser.get("/console/login").await;
        app.clock.advance(chrono::Duration::seconds(31));
        let later = browser
            .post(
                "/console/login",
                &[("email", "operator@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(later.status, StatusCode::SEE_OTHER, "{}", later.html);
        let failures = audit_actions(&app, "console.login_failed").await;
        assert_eq!(failures.len(), 6);
        assert_eq!(
            failures
                .iter()
                .filter(|row| row["details"]["reason"] == "throttled")
                .count(),
            1
        );
        app
    })
    .await;
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address_across_emails() {
    each_app(|app: TestApp| async move {
        set_password(&app, "admin@ops.test").await;
        let mut guesser = Browser::new(&app);
        guesser.peer = Some("192.0.2.7:50000".parse().unwrap());
        guesser.get("/console/login").await;
        for n in 0..5 {
            let email = format!("guess{n}@ops.test");
            let wrong = guesser
                .post(
                    "/console/login",
                    &[("email", &email), ("password", PASSWORD)],
                )
                .await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        }
        let throttled = guesser
            .post(
                "/console/login",
                &[("email", "admin@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
        // From another address the same agent signs in.
        let mut elsewhere = Browser::new(&app);
        elsewhere.peer = Some("198.51.100.9:40000".parse().unwrap());
        elsewhere.get("/console/login").await;
        let signed_in = elsewhere
            .post(
                "/console/login",
                &[("email", "admin@ops.test"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
        let logins = audit_actions(&app, "console.login").await;
        assert!(
            logins.iter().any(|row| row["action"] == "console.login"
                && row["details"]["address"] == "198.51.100.9"),
            "{logins:?}"
        );
        app
    })
    .await;
}

#[tokio::test]
async fn blocking_from_the_fleet_page_reaches_the_next_heartbeat_and_is_audited() {
    each_app(|app: TestApp| async move {
        let beat =
            |site: &str| json!({"cms": "woocommerce", "site_url": site, "plugin_version": "1.0.0"});
        let blocked = app.heartbeat(beat("https://block.example")).await;
        app.heartbeat(beat("https://keep.example")).await;
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        browser.request_id = Some("console-test-1".into());
        browser
            .get("/console/fleet?search=BLOCK.exa")
            .await
            .assert_ok("https://block.example");
        // The API searches the same way; `%` and `_` are text, not wildcards.
        for (search, found) in [
            ("BLOCK.example", 1),
            ("My%20Sh", 2),
            ("%25", 0),
            ("block_", 0),
            ("block-", 0),
        ] {
            let listed = app
                .get(
                    &format!("/api/v1/plugins/list?search={search}"),
                    &app.viewer,
                )
                .await;
            assert_eq!(listed.ok().as_array().unwrap().len(), found, "{search}");
            assert_eq!(
                listed.headers["x-total-count"],
                found.to_string().as_str(),
                "{search}"
            );
        }
        let searched = browser.get("/console/fleet?search=block.exa").await;
        assert!(!searched.html.contains("https://keep.example"));
        let missing_reason = browser
            .post(
                "/console/fleet/bulk",
                &[("action", "block"), ("install", &blocked.to_string())],
            )
            .await;
        assert_eq!(missing_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(missing_reason
            .html
            .contains("<code>reason</code>: is required"));
        let done = browser
            .post(
                "/console/fleet/bulk",
                &[
                    ("action", "block"),
                    ("reason", "chargeback storm"),
                    ("install", &blocked.to_string()),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER);
        browser
            .get("/console/fleet")
            .await
            .assert_ok("Blocked 1 of 1 installs.");
        // The message shows once.
        let again = browser.get("/console/fleet").await;
        assert!(!again.html.contains("Blocked 1 of 1 installs."));

        assert_eq!(
            toggles_of(&app, &beat("https://block.example")).await["block_plugin"],
            true
        );
        assert_eq!(
            toggles_of(&app, &beat("https://keep.example")).await["block_plugin"],
            false
        );
        let audit: Vec<Value> = audit_actions(&app, "toggle").await;
        assert!(
            audit.iter().any(
                |row| row["request_id"] == "console-test-1" && row["actor_kind"] == "ops_agent"
            ),
            "{audit:?}"
        );

        // Lifted from the install page.
        let lifted = browser
            .post(
                &format!("/console/installs/{blocked}/lift"),
                &[("toggle_key", "block_plugin")],
            )
            .await;
        assert_eq!(lifted.status, StatusCode::SEE_OTHER, "{}", lifted.html);
        assert_eq!(
            toggles_of(&app, &beat("https://block.example")).await["block_plugin"],
            false
        );
        let unknown = browser
            .get(&format!("/console/installs/{}", Uuid::now_v7()))
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let nowhere = browser.get("/console/nowhere").await;
        assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
        assert!(nowhere.html.contains("page not found"), "{}", nowhere.html);
        let bad = browser.get("/console/fleet?status=sideways").await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.html.contains("<code>status</code>"), "{}", bad.html);
        app
    })
    .await;
}
