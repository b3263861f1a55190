//! The console in a real browser: Debian's Chromium driven through chromedriver over
//! WebDriver, against the app served on loopback. Sign in, block an install from the
//! fleet page, approve a detection from the healing queue with the keyboard only, kill a
//! flag, sign out; axe-core checks each page. Required when `CI` is set; skipped, with a
//! message, where chromedriver is not installed.

use crate::console::{pending_detection, set_password, toggles_of, woo, PASSWORD};
use crate::support::{each_store, repo, TestApp};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// chromedriver, started on a free port and stopped with the test.
struct Driver {
    process: Child,
    port: u16,
}

impl Driver {
    fn start() -> Option<Self> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {CHROMEDRIVER} or {CHROMIUM} is missing: .ci/run installs chromium and chromium-driver"
            );
            eprintln!("skipped: the console's browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = crate::support::free_port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Some(Self { process, port })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One browser session, spoken to in the W3C WebDriver protocol.
struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    screenshots: PathBuf,
}

impl Browser {
    async fn open(driver: &Driver, base: String) -> Self {
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().unwrap().keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let root = format!("http://127.0.0.1:{}", driver.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        let session = loop {
            match http
                .post(format!("{root}/session"))
                .json(&capabilities)
                .send()
                .await
            {
                Ok(response) => {
                    let body: Value = response.json().await.unwrap();
                    break body["value"]["sessionId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("no session: {body}"))
                        .to_owned();
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("chromedriver does not answer: {error}"),
            }
        };
        let screenshots = repo().join("target/console-screenshots");
        std::fs::create_dir_all(&screenshots).unwrap();
        Self {
            http,
            session: format!("{root}/session/{session}"),
            base,
            screenshots,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn go(&self, path: &str) {
        self.command(
            reqwest::Method::POST,
            "/url",
            Some(json!({"url": format!("{}{path}", self.base)})),
        )
        .await;
    }

    async fn back(&self) {
        self.command(reqwest::Method::POST, "/back", Some(json!({})))
            .await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let element = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        element
            .as_object()
            .and_then(|object| object.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Presses keys on whatever has the focus, as a keyboard would.
    async fn keys(&self, keys: &str) {
        let element = self
            .command(reqwest::Method::GET, "/element/active", None)
            .await;
        let element = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": keys})),
        )
        .await;
    }

    /// Tabs through the page until the focused element matches `css` (at most 60 steps).
    async fn tab_to(&self, css: &str) {
        for _ in 0..60 {
            let here = self
                .run("return document.activeElement && document.activeElement.matches(arguments[0]);", json!([css]))
                .await;
            if here == json!(true) {
                return;
            }
            self.keys("\u{E004}").await;
        }
        panic!("{css} cannot be reached with the Tab key");
    }

    /// Waits until the page's text contains `text` (htmx swaps after the click returns).
    async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = self
                .run(
                    "return document.body ? document.body.innerText : '';",
                    json!([]),
                )
                .await;
            if body.as_str().unwrap_or("").contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never showed; the page says: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.screenshots.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Runs axe-core on the page: no serious or critical violation, and every form
    /// control labelled.
    async fn check_accessibility(&self, page: &str) {
        self.run(AXE, json!([])).await;
        let result = self
            .command(reqwest::Method::POST, "/execute/async", Some(json!({
                "script": "const done = arguments[arguments.length - 1]; axe.run(document).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html).slice(0, 3)})))).catch(e => done([{id: 'axe-error', impact: 'critical', nodes: [String(e)]}]));",
                "args": []
            })))
            .await;
        let serious: Vec<&Value> = result
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| {
                matches!(v["impact"].as_str(), Some("serious" | "critical")) || v["id"] == "label"
            })
            .collect();
        assert!(serious.is_empty(), "{page}: {serious:#?}");
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// Serves `app`'s router on loopback as `autoheal serve` does (with the peer address).
async fn serve(app: &TestApp) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app
        .router
        .clone()
        .into_make_service_with_connect_info::<api::wire::Peer>();
    let server = tokio::spawn(async move {
        axum::serve(api::wire::EnvelopedListener(listener), router)
            .await
            .unwrap();
    });
    (base, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let driver = &driver;
    // One backend is enough for the browser: the route tests cover both.
    each_store(move |store| async move {
        if store.store.kind() != api::db::BackendKind::Sqlite {
            return store;
        }
        let app = TestApp::healing(store, api::healing::HealingConfig::default()).await;
        set_password(&app, "operator@ops.test").await;
        let blocked = app.heartbeat(woo("https://block-me.example")).await;
        app.heartbeat(woo("https://keep-me.example")).await;
        // A fleet worth a screenshot: a newer release, so both are outdated, and a Shopify
        // shop on the latest.
        crate::fleet::register(&app, "woocommerce", "1.4.0", true).await;
        crate::fleet::register(&app, "shopify", "2.1.0", true).await;
        app.heartbeat(json!({"cms": "shopify", "site_url": "https://shopify.example", "plugin_version": "2.1.0"}))
            .await;
        let log_id = pending_detection(&app, blocked).await;
        app.post("/api/platform/flags", &app.operator, &json!({"key": "new_checkout", "type": "boolean", "audience": "plugins", "default_value": false}))
            .await
            .ok();
        let evaluate = || async {
            app.post("/api/platform/flags/evaluate", &app.merchant_key, &json!({"key": "new_checkout", "context": {}}))
                .await
                .ok()["value"]
                .clone()
        };
        assert_eq!(evaluate().await, json!(true));

        let (base, server) = serve(&app).await;
        let browser = Browser::open(driver, base).await;

        // Any page without a session lands on the sign-in form.
        browser.go("/console/fleet").await;
        assert!(browser.url().await.ends_with("/console/login"));
        browser.check_accessibility("login").await;
        browser.screenshot("login").await;
        browser.type_into("#email", "operator@ops.test").await;
        browser.type_into("#password", PASSWORD).await;
        browser.click("form button[type=submit]").await;
        browser.wait_for_text("Healing queue").await;
        assert!(browser.url().await.ends_with("/console/"));
        browser.check_accessibility("overview").await;
        browser.screenshot("overview").await;

        // The fleet lists the installs; block one with a reason.
        browser.go("/console/fleet").await;
        browser.wait_for_text("https://keep-me.example").await;
        browser.check_accessibility("fleet").await;
        browser.screenshot("fleet").await;
        browser.click(&format!("#pick-{blocked}")).await;
        browser.type_into("#bulk-reason", "chargeback storm").await;
        browser.click("button[value=block]").await;
        browser.wait_for_text("Blocked 1 of 1 installs.").await;
        assert_eq!(toggles_of(&app, &woo("https://block-me.example")).await["block_plugin"], true);
        browser.go(&format!("/console/installs/{blocked}")).await;
        browser.wait_for_text("chargeback storm").await;
        browser.check_accessibility("install").await;
        browser.screenshot("install").await;

        // The healing queue, from the keyboard alone: Tab to the log, Enter; Tab to
        // Approve, Enter.
        browser.go("/console/healing?status=pending_review").await;
        browser.wait_for_text("Review queue and logs").await;
        browser.check_accessibility("healing").await;
        browser.screenshot("healing").await;
        browser.tab_to(&format!("a[href='/console/healing/{log_id}#review']")).await;
        browser.keys("\u{E007}").await;
        browser.wait_for_text("Decision trace").await;
        browser.check_accessibility("healing log").await;
        browser.screenshot("healing-log").await;
        browser.tab_to("form[action$='/approve'] button[type=submit]").await;
        browser.keys("\u{E007}").await;
        browser.wait_for_text("Patch approved: dry run clean, command queued for the plugin.").await;
        let commands = app
            .get(&format!("/api/v1/plugins/autoheal/commands/{blocked}"), &app.merchant_key)
            .await;
        assert_eq!(commands.ok().as_array().unwrap().len(), 1, "{}", commands.body);

        // The kill switch asks for a reason and the key.
        browser.go("/console/flags/new_checkout").await;
        browser.wait_for_text("Kill").await;
        browser.check_accessibility("flag").await;
        browser.screenshot("flag").await;
        browser.type_into("#k-reason", "checkout errors spiking").await;
        browser.type_into("#k-confirm", "new_checkout").await;
        browser.click("form[action$='/kill'] button[type=submit]").await;
        browser.wait_for_text("killed: every caller gets its default").await;
        assert_eq!(evaluate().await, json!(false));
        browser.go("/console/flags").await;
        browser.wait_for_text("new_checkout").await;
        browser.check_accessibility("flags").await;

        // The other pages: each accessible, each saved.
        for (page, text) in [
            ("interop", "Mappings"),
            ("alerts", "Alerts"),
            ("health", "Health"),
            ("outbox", "Dead letters"),
        ] {
            browser.go(&format!("/console/{page}")).await;
            browser.wait_for_text(text).await;
            browser.check_accessibility(page).await;
            browser.screenshot(page).await;
        }

        // Signing out; the back button then shows the sign-in page, not the console.
        browser.go("/console/fleet").await;
        browser.wait_for_text("keep-me").await;
        browser.click("header form[action='/console/logout'] button").await;
        browser.wait_for_text("Sign in").await;
        browser.back().await;
        browser.wait_for_text("Sign in").await;
        assert!(browser.url().await.ends_with("/console/login"), "{}", browser.url().await);

        browser.close().await;
        server.abort();
        app.store
    })
    .await;
}
