//! The `autoheal` binary: credentials from the shell, and `serve` end to end
//! over a real socket, including a graceful stop.

use crate::support::{autoheal, free_port, json_stdout, serve_refusal};
use api::auth::Principal;
use api::db::{Store, StoreOptions};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `autoheal merchant create` for the shop `name`, reachable at `email`.
fn create_merchant(url: &str, name: &str, email: &str) -> Output {
    autoheal(
        url,
        &["merchant", "create", "--name", name, "--email", email],
    )
}

/// `autoheal ops-agent create` for `email` with `role`.
fn create_ops_agent(url: &str, email: &str, role: &str) -> Output {
    autoheal(
        url,
        &["ops-agent", "create", "--email", email, "--role", role],
    )
}

/// `autoheal sira-token create` named `name`.
fn create_sira_token(url: &str, name: &str) -> Output {
    autoheal(url, &["sira-token", "create", "--name", name])
}

/// The secret a successful `create` printed under `field`.
fn secret(output: &Output, field: &str) -> String {
    json_stdout(output)[field].as_str().unwrap().to_owned()
}

/// Creates the merchant "Shop" and returns its API key.
fn shop_key(url: &str) -> String {
    secret(&create_merchant(url, "Shop", "s@example.com"), "api_key")
}

/// Creates an Ops viewer and returns its token.
fn viewer_token(url: &str) -> String {
    secret(&create_ops_agent(url, "o@example.com", "viewer"), "token")
}

#[tokio::test]
async fn credentials_are_printed_once_and_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.db");
    let url = format!("sqlite://{}", path.display());

    assert_eq!(
        json_stdout(&autoheal(&url, &["migrate"]))["status"],
        "migrated"
    );
    let merchant = json_stdout(&create_merchant(&url, "My Shop", "m@example.com"));
    let api_key = merchant["api_key"].as_str().unwrap().to_owned();
    let agent = create_ops_agent(&url, "ops@example.com", "operator");
    let token = secret(&agent, "token");
    let sira_token = secret(&create_sira_token(&url, "sira-prod"), "token");

    let bad_role = create_ops_agent(&url, "x@example.com", "root");
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("admin, operator, viewer"));
    let duplicate = create_ops_agent(&url, "ops@example.com", "viewer");
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let merchant_id = merchant["merchant_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        store
            .authenticate(&api_key, chrono::Utc::now())
            .await
            .unwrap()
            .map(|found| found.principal),
        Some(Principal::Merchant { merchant_id })
    );
    assert!(matches!(
        store
            .authenticate(&token, chrono::Utc::now())
            .await
            .unwrap()
            .map(|found| found.principal),
        Some(Principal::Ops { .. })
    ));
    assert!(matches!(
        store
            .authenticate(&sira_token, chrono::Utc::now())
            .await
            .unwrap()
            .map(|found| found.principal),
        Some(Principal::Sira { .. })
    ));
    store.close().await;

    // The secrets themselves are nowhere in the database files.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&api_key, &token, &sira_token] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is stored in clear"
        );
    }
}

#[test]
fn unsupported_database_url_is_a_clear_error() {
    let output = autoheal("mysql://root:hunter2@localhost/db", &["migrate"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expected sqlite://PATH or postgres://"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is not echoed: {stderr}"
    );
}

/// A setting out of its range stops `serve` before it starts, naming the flag: none is
/// quietly clamped to something the operator did not ask for.
#[test]
fn serve_refuses_settings_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    let check = |flag: &str, value: &str| {
        let setting = format!("{flag}={value}");
        let output = autoheal(&url, &["serve", "--listen", "127.0.0.1:0", &setting]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{flag} {value}: {stderr}"
        );
    };
    check("--delivery-max-attempts", "0");
    check("--delivery-poll-ms", "5");
    check("--command-lease-secs", "0");
    check("--breaker-failure-rate", "1.5");
    check("--auto-apply-threshold", "101");
    check("--regression-margin", "-1");
    check("--notify-quiet-hours", "-3");
    check("--script-deadline-ms", "0");
    check("--script-max-variables", "0");
    check("--flags-refresh-ms", "0");
    check("--commands-per-poll", "5000");
    assert!(!dir.path().join("limits.db").exists(), "nothing was opened");
}

struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    fn start_with(database_url: &str, extra: &[&str]) -> Self {
        Self::start_logging(database_url, "json", extra)
    }

    fn start_logging(database_url: &str, log_format: &str, extra: &[&str]) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_autoheal"))
            .args(["serve", "--listen", &address, "--log-format", log_format])
            .args(extra)
            .env("DATABASE_URL", database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/healthz", None, None).is_none() {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A minimal HTTP/1.1 client: (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(&self.address).ok()?;
        let body = body.unwrap_or("");
        let auth = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())?;
        Some((status, body))
    }

    fn get(&self, path: &str, token: &str) -> (u16, String) {
        self.request("GET", path, Some(token), None).unwrap()
    }

    fn post(&self, path: &str, token: &str, body: &str) -> (u16, String) {
        self.request("POST", path, Some(token), Some(body)).unwrap()
    }

    /// Posts a heartbeat with the merchant's `key` and returns the installation id.
    fn heartbeat(&self, key: &str, body: &str) -> String {
        let (status, answer) = self.post("/api/v1/plugins/heartbeat", key, body);
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["installation_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `kill -9`: no shutdown, no flush.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }

    /// SIGTERM, which must end the server cleanly; returns its logs.
    fn stop(self) -> String {
        let (exit, logs) = self.terminate();
        assert!(exit.success(), "clean exit on SIGTERM: {exit:?}\n{logs}");
        logs
    }
}

/// A reason with a newline, a carriage return and terminal escapes forges no log line and
/// reaches no terminal raw, in text logs and in JSON logs: control characters in every
/// logged value are escaped.
#[tokio::test]
async fn a_logged_value_cannot_forge_a_log_line() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("logs.db").display());
        let admin = secret(&create_ops_agent(&url, "a@example.com", "admin"), "token");
        let server = Server::start_logging(&url, format, &[]);
        let forged = "2026-01-01T00:00:00.000000Z  INFO autoheal: forged";
        let body = json!({"reason": format!("spam\n{forged}\u{1b}[2J\rgone")}).to_string();
        server.post(
            "/api/platform/flags/payments.instant_payouts/kill",
            &admin,
            &body,
        );
        let logs = server.stop();
        assert!(logs.contains("flag_killed"), "{format}: {logs}");
        assert!(
            !logs.contains('\u{1b}'),
            "{format}: a raw ESC reached the log: {logs}"
        );
        assert!(!logs.contains('\r'), "{format}: {logs}");
        assert!(
            logs.lines().all(|line| !line.starts_with("2026-01-01")),
            "{format}: a forged line: {logs}"
        );
        let killed = logs
            .lines()
            .find(|line| line.contains("flag_killed"))
            .unwrap();
        assert!(
            killed.contains("forged"),
            "the value is kept, escaped: {killed}"
        );
        if format == "json" {
            assert!(logs
                .lines()
                .all(|line| serde_json::from_str::<Value>(line).is_ok()));
        }
    }
}

#[tokio::test]
async fn serve_takes_heartbeats_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let key = shop_key(&url);

    let server = Server::start(&url);
    let (status, body) = server.request("GET", "/readyz", None, None).unwrap();
    assert_eq!((status, body.contains("ready")), (200, true));
    let heartbeat = r#"{"cms": "woocommerce", "plugin_version": "1.3.5"}"#;
    let id = server.heartbeat(&key, heartbeat);
    let (status, _) = server.post("/api/v1/plugins/heartbeat", "wrong", heartbeat);
    assert_eq!(status, 401);

    let logs = server.stop();
    // JSON logs, each request line carrying its request id, no secret.
    let request_lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line.get("span")
                .is_some_and(|span| span.get("request_id").is_some())
        })
        .collect();
    assert!(
        !request_lines.is_empty(),
        "request logs carry request ids:\n{logs}"
    );
    assert!(!logs.contains(&key), "the API key is never logged");
    assert!(logs.contains("stopped"));

    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(
        store
            .installation(id.parse().unwrap(), chrono::Utc::now())
            .await
            .unwrap()
            .is_some(),
        "acknowledged means stored"
    );
    store.close().await;
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_a_bad_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rules.db").display());
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("healing")).unwrap();
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/healing/api_key_expired.rhai");
    std::fs::copy(&shipped, rules.join("healing/api_key_expired.rhai")).unwrap();
    let token = viewer_token(&url);

    let server = Server::start_with(
        &url,
        &["--rules", rules.to_str().unwrap(), "--rules-poll-ms", "0"],
    );
    let status = |server: &Server| {
        let (code, body) = server.get("/api/v1/rules/status", &token);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert_eq!(status(&server)["files"].as_array().unwrap().len(), 1);

    std::fs::write(rules.join("healing/broken.rhai"), "let rule = #{ name: ").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = status(&server);
        if current["last_errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty())
        {
            assert!(current["last_errors"][0]
                .as_str()
                .unwrap()
                .starts_with("healing/broken.rhai:"));
            assert_eq!(
                current["files"].as_array().unwrap().len(),
                1,
                "the previous set stays"
            );
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = server.stop();
    assert!(logs.contains("rules_refused"), "{logs}");
}

#[test]
fn serve_refuses_to_start_on_broken_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("healing")).unwrap();
    std::fs::write(rules.join("healing/broken.rhai"), "let rule = #{ name: ").unwrap();
    let stderr = serve_refusal(&rules);
    assert!(stderr.contains("healing/broken.rhai:"), "{stderr}");
    assert!(stderr.contains("autoheal rules check"), "{stderr}");
}

/// A fresh clone's `serve` runs the healing loop with the shipped rules and bundles: the
/// bundles verify with the development key (and the server says it trusts that key), a
/// detection is dry-run and its command queued.
#[tokio::test]
async fn serve_runs_the_shipped_patches_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let key = shop_key(&url);
    let sira = secret(&create_sira_token(&url, "sira"), "token");
    let ops = viewer_token(&url);
    let server = Server::start(&url);
    let (status, body) = server.get("/api/v1/plugins/autoheal/patches", &ops);
    assert_eq!(status, 200, "{body}");
    let registry: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = registry["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "add_missing_column",
            "api_key_refresh_notice",
            "php_upgrade_notice",
            "update_memory_limit"
        ]
    );
    assert!(registry["refused"].as_array().unwrap().is_empty(), "{body}");

    let heartbeat = r#"{"cms": "woocommerce", "plugin_version": "1.3.5", "state": {"config": {}, "tables": {"wp_molam_orders": {"id": "BIGINT"}}}}"#;
    let id = server.heartbeat(&key, heartbeat);
    let detection = format!(
        r#"{{"plugin_id": "{id}", "detected_issue": "Unknown column 'merchant_fee' in field list", "sira_confidence": 92.5,
            "proposed_patch": {{"table": "wp_molam_orders", "column_type": "DECIMAL(10,2)"}}}}"#
    );
    let (status, body) = server.post("/api/v1/plugins/autoheal", &sira, &detection);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "applied"
    );
    let (_, body) = server.get(&format!("/api/v1/plugins/autoheal/commands/{id}"), &key);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["command_type"],
        "apply_patch"
    );

    let logs = server.stop();
    assert!(logs.contains("development_key_trusted"), "{logs}");
}

/// The patches folder is watched: a bundle added while serving is verified and listed (a
/// bad one refused with its reason) without a restart.
#[tokio::test]
async fn serve_picks_up_new_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let bundles = dir.path().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    let ops = viewer_token(&url);
    let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("patches");
    let public = dev.join("dev-key/autoheal.pub");
    let server = Server::start_with(
        &url,
        &[
            "--patches",
            bundles.to_str().unwrap(),
            "--patches-poll-ms",
            "50",
            "--trusted-key",
            public.to_str().unwrap(),
        ],
    );
    let listing = || {
        let (_, body) = server.get("/api/v1/plugins/autoheal/patches", &ops);
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert!(listing()["patches"].as_array().unwrap().is_empty());
    std::fs::copy(
        dev.join("bundles/update_memory_limit-1.0.3.bundle.json"),
        bundles.join("update_memory_limit-1.0.3.bundle.json"),
    )
    .unwrap();
    std::fs::write(bundles.join("junk.bundle.json"), b"{}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = listing();
        if now["patches"].as_array().unwrap().len() == 1
            && now["refused"].as_array().unwrap().len() == 1
        {
            assert_eq!(now["patches"][0]["name"], "update_memory_limit");
            assert_eq!(now["refused"][0]["file"], "junk.bundle.json");
            break;
        }
        assert!(Instant::now() < deadline, "not picked up: {now}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

/// A message accepted into the outbox is delivered even when the server is killed (-9)
/// before it could deliver, once a server runs again on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let key = shop_key(&url);
    // The receiver's port, with nothing listening yet: every delivery fails.
    let port = free_port();
    let webhook = format!("http://127.0.0.1:{port}/events");
    let flags = [
        "--cloudevents-webhook",
        &webhook,
        "--delivery-poll-ms",
        "20",
        "--delivery-backoff-ms",
        "50",
    ];
    let server = Server::start_with(&url, &flags);
    let id = server.heartbeat(&key, r#"{"cms": "shopify", "plugin_version": "2.0.0"}"#);
    let event = format!(
        r#"{{"plugin_id": "{id}", "event_type": "orders/paid", "payload": {{"id": 5, "total_price": "19.99", "currency": "USD"}}}}"#
    );
    let (status, body) = server.post("/api/v1/plugins/interop/event", &key, &event);
    assert_eq!(status, 201, "{body}");
    std::thread::sleep(Duration::from_millis(200));
    server.kill();

    let receiver = crate::support::Receiver::start_on(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    let server = Server::start_with(&url, &flags);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.requests().is_empty() {
        if Instant::now() > deadline {
            let (_, logs) = server.terminate();
            let store = Store::connect(&url, &StoreOptions::default())
                .await
                .unwrap();
            let rows = store.list_outbox(None, 10, 0).await.unwrap();
            panic!("not delivered after the restart: {rows:?}\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cloud: Value = serde_json::from_slice(&receiver.requests()[0].body).unwrap();
    assert_eq!(cloud["type"], "payment.succeeded");
    assert_eq!(cloud["data"]["amount"], 1999);
    server.stop();
}

/// `autoheal credentials` from a shell beside a running server on SQLite: the list shows
/// every credential and no secret; a key revoked by the CLI (another process) is refused
/// by the server within a second; a rotation prints the new secret once, and the old one
/// lasts its grace period; `--expires-in` is bounded; each change is in the audit log.
#[tokio::test]
async fn credentials_are_listed_revoked_and_rotated_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("credentials.db").display());
    let merchant = json_stdout(&autoheal(
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "Shop",
            "--email",
            "s@example.com",
            "--expires-in",
            "90d",
        ],
    ));
    let key = merchant["api_key"].as_str().unwrap().to_owned();
    let key_id = merchant["credential_id"].as_str().unwrap().to_owned();
    assert!(merchant["expires_at"].is_string(), "{merchant}");
    let admin = secret(&create_ops_agent(&url, "a@example.com", "admin"), "token");
    let sira = json_stdout(&autoheal(&url, &["sira-token", "create", "--name", "sira"]));
    let sira_id = sira["credential_id"].as_str().unwrap().to_owned();

    let too_long = autoheal(
        &url,
        &[
            "sira-token",
            "create",
            "--name",
            "x",
            "--expires-in",
            "100000000d",
        ],
    );
    assert!(!too_long.status.success());
    assert!(
        String::from_utf8_lossy(&too_long.stderr).contains("--expires-in"),
        "{too_long:?}"
    );

    let table = autoheal(&url, &["credentials", "list"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    let header = table.lines().next().unwrap();
    for column in [
        "ID",
        "KIND",
        "OWNER",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        table.contains(&key_id) && table.contains("a@example.com"),
        "{table}"
    );
    assert!(
        !table.contains(&key) && !table.contains(&admin),
        "no secret: {table}"
    );
    let merchants = json_stdout(&autoheal(
        &url,
        &["credentials", "list", "--kind", "merchant", "--json"],
    ));
    assert_eq!(merchants.as_array().unwrap().len(), 1);
    assert_eq!(merchants[0]["owner"], "Shop");

    let server = Server::start(&url);
    let heartbeat = r#"{"cms": "woocommerce", "plugin_version": "1.3.5"}"#;
    server.heartbeat(&key, heartbeat);
    let revoked = autoheal(
        &url,
        &["credentials", "revoke", &key_id, "--reason", "leaked"],
    );
    assert!(revoked.status.success(), "{revoked:?}");
    let since = Instant::now();
    while server.post("/api/v1/plugins/heartbeat", &key, heartbeat).0 != 401 {
        assert!(
            since.elapsed() < Duration::from_millis(1_500),
            "the server still accepts the key"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = autoheal(
        &url,
        &["credentials", "revoke", &key_id, "--reason", "leaked"],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already revoked"),
        "{again:?}"
    );
    let unknown = autoheal(
        &url,
        &["credentials", "rotate", &uuid::Uuid::now_v7().to_string()],
    );
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no credential"),
        "{unknown:?}"
    );

    let rotated = json_stdout(&autoheal(
        &url,
        &["credentials", "rotate", &sira_id, "--grace-secs", "60"],
    ));
    let new_sira = rotated["secret"].as_str().unwrap();
    assert!(new_sira.starts_with("ahs_"));
    let detection = r#"{"plugin_id": "00000000-0000-0000-0000-000000000000"}"#;
    for token in [sira["token"].as_str().unwrap(), new_sira] {
        let (status, body) = server.post("/api/v1/plugins/autoheal", token, detection);
        assert_ne!(status, 401, "{body}");
    }
    let (status, audit) = server.get("/api/v1/audit", &admin);
    assert_eq!(status, 200);
    for action in [
        "credential.create",
        "credential.revoke",
        "credential.rotate",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(audit.contains(r#""actor_kind":"cli""#), "{audit}");
    server.stop();
}

/// The heads hyper refuses before any handler runs — a control byte in a header, headers
/// of 1 MB, a URI past the buffer — are answered with the JSON error envelope, like every
/// other 4xx; a good request on the same server is answered as before.
#[tokio::test]
async fn a_request_head_hyper_refuses_is_answered_with_the_json_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wire.db").display());
    let server = Server::start(&url);
    let raw = |head: Vec<u8>| {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        // The server may answer and close before it has read all of a large head.
        let mut writer = stream.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&head).is_ok());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        writing.join().unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{answer}");
        assert!(head.contains("content-type: application/json"), "{answer}");
        let body: Value = serde_json::from_str(body).unwrap();
        (status, body["error"]["code"].as_str().unwrap().to_owned())
    };
    let control = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n".to_vec();
    assert_eq!(raw(control), (400, "bad_request".to_owned()));
    let mut huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend(b"\r\n\r\n");
    assert_eq!(raw(huge), (431, "headers_too_large".to_owned()));
    let garbage = b"NOT HTTP AT ALL\r\n\r\n".to_vec();
    assert_eq!(raw(garbage).0, 400);

    let (status, body) = server.request("GET", "/healthz", None, None).unwrap();
    assert_eq!((status, body.contains("ok")), (200, true), "{body}");
    let (status, body) = server.get("/api/v1/plugins/list", "wrong");
    assert_eq!(status, 401, "{body}");
    server.stop();
}
