//! The test harness: a real store on every available backend (SQLite in a
//! temp dir always; PostgreSQL in a throwaway schema when
//! `AUTOHEAL_TEST_POSTGRES_URL` is set, and required when `CI` is set), the
//! app router driven through `oneshot`, a manual clock, and the built binary.

use api::auth::Role;
use api::db::{Store, StoreOptions};
use api::{AppBuilder, AppState, Clock, ServerConfig};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use std::future::Future;
use std::process::{Command, Output};
use tower::ServiceExt;
use uuid::Uuid;

pub const POSTGRES_ENV: &str = "AUTOHEAL_TEST_POSTGRES_URL";

/// `$body` with `$pool`, a pool of its own on the database at `$url`, of either backend.
macro_rules! on_raw_pool {
    ($url:expr, $pool:ident => $body:expr) => {
        if $url.starts_with("sqlite:") {
            let $pool = sqlx::SqlitePool::connect($url).await.expect("open");
            let out = $body;
            $pool.close().await;
            out
        } else {
            let $pool = sqlx::PgPool::connect($url).await.expect("open");
            let out = $body;
            $pool.close().await;
            out
        }
    };
}

/// A store that cleans up after itself.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_schema: Option<(String, String)>,
}

impl TestStore {
    pub async fn sqlite() -> Self {
        Self::sqlite_with(&StoreOptions::default()).await
    }

    /// A SQLite store with settings of its own.
    pub async fn sqlite_with(options: &StoreOptions) -> Self {
        Self::sqlite_at(options, None).await
    }

    /// A SQLite store migrated up to migration `upto` (None: all of them).
    async fn sqlite_at(options: &StoreOptions, upto: Option<i64>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("autoheal.db").display());
        let store = connect(&url, options, upto).await;
        Self {
            store,
            url,
            _dir: Some(dir),
            postgres_schema: None,
        }
    }

    /// A fresh schema in the test database, so runs never collide.
    pub async fn postgres(admin_url: &str) -> Self {
        Self::postgres_at(admin_url, None).await
    }

    /// A fresh PostgreSQL schema migrated up to migration `upto` (None: all of them).
    async fn postgres_at(admin_url: &str, upto: Option<i64>) -> Self {
        let schema = format!("autoheal_test_{}", Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .expect("connect to AUTOHEAL_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let store = connect(&url, &StoreOptions::default(), upto).await;
        Self {
            store,
            url,
            _dir: None,
            postgres_schema: Some((admin_url.to_owned(), schema)),
        }
    }

    /// Closes the store and drops a PostgreSQL schema.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, schema)) = &self.postgres_schema {
            if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
    }
}

impl TestStore {
    /// Counts rows straight from the database (`sql` is a `SELECT count(*) …`), for
    /// what no endpoint shows.
    pub async fn count(&self, sql: &str) -> i64 {
        on_raw_pool!(&self.url, pool => sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql))
    }

    /// Runs `sql` straight on the database: to leave it as an older server did.
    pub async fn execute(&self, sql: &str) {
        on_raw_pool!(&self.url, pool => sqlx::query(sql).execute(&pool).await.map(drop).expect(sql))
    }

    /// Another connection to the same database, as a second replica has; the database
    /// stays with the store that created it.
    pub async fn replica(&self) -> Self {
        Self {
            store: connect(&self.url, &StoreOptions::default(), None).await,
            url: self.url.clone(),
            _dir: None,
            postgres_schema: None,
        }
    }
}

/// The store at `url`, migrated up to migration `upto` (None: all of them, as the server
/// does; `Store::migrate` completes a partly migrated one).
async fn connect(url: &str, options: &StoreOptions, upto: Option<i64>) -> Store {
    let store = Store::connect(url, options).await.expect("connect store");
    let Some(upto) = upto else {
        store.migrate().await.expect("migrate");
        return store;
    };
    let backend = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let mut migrator = sqlx::migrate::Migrator::new(repo().join("migrations").join(backend))
        .await
        .expect("read migrations");
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= upto)
        .cloned()
        .collect();
    on_raw_pool!(url, pool => migrator.run(&pool).await.expect("migrate"));
    store
}

/// The PostgreSQL server the tests may use; required in CI.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok() => {
            panic!("{POSTGRES_ENV} must be set in CI: the PostgreSQL backend is not optional there")
        }
        _ => None,
    }
}

/// Runs `test` once per available backend, each on a fresh store.
pub async fn each_store<F, Fut>(test: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = TestStore>,
{
    each_store_at(None, test).await
}

/// Runs `test` once per available backend, each on a fresh store migrated up to migration
/// `upto` only: what a server of that time left behind.
pub async fn each_store_before<F, Fut>(upto: i64, test: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = TestStore>,
{
    each_store_at(Some(upto), test).await
}

async fn each_store_at<F, Fut>(upto: Option<i64>, test: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = TestStore>,
{
    eprintln!("-- running on sqlite");
    let sqlite = test(TestStore::sqlite_at(&StoreOptions::default(), upto).await).await;
    sqlite.finish().await;
    match postgres_url() {
        Some(url) => {
            eprintln!("-- running on postgres");
            test(TestStore::postgres_at(&url, upto).await)
                .await
                .finish()
                .await;
        }
        None => eprintln!("-- postgres skipped: {POSTGRES_ENV} is not set"),
    }
}

/// Runs `test` once per available backend, each on a fresh app.
pub async fn each_app<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = TestApp>,
{
    let test = &test;
    each_store(move |store| async move {
        let app = test(TestApp::new(store).await).await;
        app.store
    })
    .await;
}

/// Runs the `autoheal` binary with `args` on the database at `database_url`.
pub fn autoheal(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run autoheal")
}

/// The JSON document a command printed, which must have succeeded.
#[track_caller]
pub fn json_stdout(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// `autoheal serve` on a fresh database with the rules under `rules`, which it must refuse
/// to start on: what it printed to stderr.
pub fn serve_refusal(rules: &std::path::Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("autoheal.db").display());
    let rules = rules.to_str().unwrap();
    let output = autoheal(
        &url,
        &["serve", "--listen", "127.0.0.1:0", "--rules", rules],
    );
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A loopback port that nothing listened on when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository's root (rules/, patches/).
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

/// The rules under `dir`, loaded with the default limits.
pub fn rules(dir: &std::path::Path) -> api::rules::Rules {
    api::rules::Rules::load(dir, &engine::Limits::default(), start_time()).expect("rules load")
}

/// The shipped bundles, trusted through the repository's development key; every one loads.
pub fn shipped_patches() -> api::healing::patches::PatchRegistry {
    let trusted = host::tools::load_trusted_keys(&[repo().join("patches/dev-key/autoheal.pub")])
        .expect("dev key");
    let host = host::Host::new(host::HostConfig::default()).expect("host");
    let registry = api::healing::patches::PatchRegistry::load(
        host,
        &repo().join("patches/bundles"),
        trusted,
        start_time(),
    );
    assert!(
        registry.status(start_time()).refused.is_empty(),
        "{:?}",
        registry.status(start_time()).refused
    );
    registry
}

/// 2025-01-18T10:00:00Z, the seed's example time.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 18, 10, 0, 0).unwrap()
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: TestStore,
    pub clock: Clock,
    pub admin: String,
    pub admin_id: Uuid,
    pub operator: String,
    pub viewer: String,
    pub merchant_id: Uuid,
    pub merchant_key: String,
    pub sira: String,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// Asserts the error shape and returns (code, field).
    #[track_caller]
    pub fn error(&self, status: StatusCode) -> (String, Option<String>) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let error = &self.body["error"];
        assert!(
            error["message"].is_string(),
            "error message in {}",
            self.body
        );
        (
            error["code"].as_str().unwrap_or_default().to_owned(),
            error["field"].as_str().map(str::to_owned),
        )
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(self.status.is_success(), "{}: {}", self.status, self.body);
        &self.body
    }
}

impl TestApp {
    pub async fn new(store: TestStore) -> Self {
        Self::with_config(store, ServerConfig::default()).await
    }

    pub async fn with_config(store: TestStore, config: ServerConfig) -> Self {
        Self::build(store, |app| app.config(config)).await
    }

    /// An app serving the rules under `dir`.
    pub async fn with_rules(store: TestStore, dir: &std::path::Path) -> Self {
        Self::build(store, |app| app.rules(rules(dir))).await
    }

    /// An app running the healing loop as a fresh clone serves it: the repository's rules,
    /// and its shipped bundles trusted through the development key.
    pub async fn healing(store: TestStore, config: api::healing::HealingConfig) -> Self {
        Self::build(store, |app| {
            app.rules(rules(&repo().join("rules")))
                .patches(shipped_patches())
                .config(ServerConfig {
                    healing: config,
                    ..ServerConfig::default()
                })
        })
        .await
    }

    /// A second replica of this app: the same database, rules, patches, settings, clock
    /// and credentials, its own process state (caches, invalidation bus).
    pub async fn replica(&self) -> Self {
        let store = self.store.replica().await;
        let state = self.state.to_builder().store(store.store.clone()).build();
        state.flags.reload().await.expect("flags load");
        Self {
            router: api::app(state.clone()),
            state,
            store,
            clock: self.clock.clone(),
            admin: self.admin.clone(),
            admin_id: self.admin_id,
            operator: self.operator.clone(),
            viewer: self.viewer.clone(),
            merchant_id: self.merchant_id,
            merchant_key: self.merchant_key.clone(),
            sira: self.sira.clone(),
        }
    }

    /// The same app rebuilt with `change` applied to its parts (a new outbox, other
    /// settings): as the server restarted on the same database.
    pub async fn rebuilt(mut self, change: impl FnOnce(AppBuilder) -> AppBuilder) -> Self {
        self.state = change(self.state.to_builder()).build();
        self.state.flags.reload().await.expect("flags load");
        self.router = api::app(self.state.clone());
        self
    }

    /// Starts what keeps this replica's caches fresh (the invalidation listener on
    /// PostgreSQL, the flag notices and refresh, the poll of credential changes and the
    /// writer of their uses; the rollout job is left off) and returns those tasks.
    pub async fn listening(&self) -> api::tasks::Tasks {
        let mut watchers = api::tasks::Tasks::default();
        let mut jobs = api::tasks::Tasks::default();
        self.state
            .flags
            .start(&mut jobs, &mut watchers)
            .await
            .expect("flags start");
        self.state.auth.start(&mut watchers);
        jobs.stop().await;
        watchers
    }

    /// The same app delivering its outbox with `config`.
    pub async fn with_outbox(self, config: api::delivery::OutboxConfig) -> Self {
        let outbox = api::delivery::Outbox::try_new(config).expect("outbox config");
        self.rebuilt(|app| app.outbox(outbox)).await
    }

    /// An app on `store` with a manual clock, its parts set by `parts`, and the test
    /// credentials: an admin, an operator and a viewer, a merchant and a Sira token.
    async fn build(store: TestStore, parts: impl FnOnce(AppBuilder) -> AppBuilder) -> Self {
        let clock = Clock::manual(start_time());
        let now = clock.now();
        let (admin_id, admin) = store
            .store
            .create_ops_agent("admin@ops.test", Role::Admin, now)
            .await
            .unwrap();
        let (_, operator) = store
            .store
            .create_ops_agent("operator@ops.test", Role::Operator, now)
            .await
            .unwrap();
        let (_, viewer) = store
            .store
            .create_ops_agent("viewer@ops.test", Role::Viewer, now)
            .await
            .unwrap();
        let (merchant_id, merchant_key) = store
            .store
            .create_merchant("My Shop", "merchant@example.com", now)
            .await
            .unwrap();
        let sira = store.store.create_sira_token("sira", now).await.unwrap();
        let state = parts(AppState::builder(store.store.clone(), clock.clone())).build();
        state.flags.reload().await.expect("flags load");
        let router = api::app(state.clone());
        Self {
            router,
            state,
            store,
            clock,
            admin: admin.secret,
            admin_id,
            operator: operator.secret,
            viewer: viewer.secret,
            merchant_id,
            merchant_key: merchant_key.secret,
            sira: sira.secret,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(serde_json::to_vec(body).unwrap())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// `GET /metrics` (no token), asserting the text exposition's content type.
    pub async fn metrics(&self) -> String {
        let response = self
            .router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> TestResponse {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// A heartbeat for this app's merchant; returns the installation id.
    pub async fn heartbeat(&self, body: Value) -> Uuid {
        let response = self
            .post("/api/v1/plugins/heartbeat", &self.merchant_key, &body)
            .await;
        response.ok()["installation_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn create_merchant(&self, name: &str) -> (Uuid, String) {
        let (id, key) = self
            .store
            .store
            .create_merchant(name, &format!("{name}@example.com"), self.clock.now())
            .await
            .unwrap();
        (id, key.secret)
    }
}

/// The answers a [`Receiver`] gives next: (status, Retry-After).
type Script = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(u16, Option<String>)>>>;

/// A real HTTP receiver on loopback for outbound webhooks: records every request and
/// answers from a script (status and headers), 200 once the script is empty.
pub struct Receiver {
    pub base: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    script: Script,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    pub async fn start_on(listener: tokio::net::TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let script: Script = Default::default();
        let (log, answers) = (received.clone(), script.clone());
        let app = Router::new().fallback(move |request: Request<Body>| {
            let (log, answers) = (log.clone(), answers.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes().to_vec();
                log.lock().unwrap().push(Received {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                let (status, retry_after) =
                    answers.lock().unwrap().pop_front().unwrap_or((200, None));
                let mut response = axum::http::Response::builder().status(status);
                if let Some(after) = retry_after {
                    response = response.header("retry-after", after);
                }
                response
                    .body(Body::from("provider internals: stack trace here"))
                    .unwrap()
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            received,
            script,
            task,
        }
    }

    /// The next answers, in order: (status, Retry-After).
    pub fn answer(&self, answers: &[(u16, Option<&str>)]) {
        self.script
            .lock()
            .unwrap()
            .extend(answers.iter().map(|(s, r)| (*s, r.map(str::to_owned))));
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real SMTP server (aiosmtpd, `tests/smtp/server.py`) on loopback, writing what it
/// accepts to a folder.
pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With the server's options (`--tls CERT KEY`, `--auth USER:PASSWORD`).
    pub fn start_with(options: &[&str]) -> Self {
        use std::io::BufRead;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("python3");
        command
            .arg(repo().join("tests/smtp/server.py"))
            .arg(port.to_string())
            .arg(dir.path())
            .args(options)
            .stdout(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .expect("python3 runs tests/smtp/server.py (pip install aiosmtpd)");
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP server starts (is aiosmtpd installed?)"
        );
        Self { port, dir, child }
    }

    /// The envelopes received so far (`from`, `to`, `tls`, `authenticated`), in order.
    pub fn envelopes(&self) -> Vec<Value> {
        (1..=self.messages().len())
            .map(|n| {
                let text =
                    std::fs::read_to_string(self.dir.path().join(format!("{n}.json"))).unwrap();
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }

    /// The messages received so far, as raw RFC 5322 text, in order.
    pub fn messages(&self) -> Vec<String> {
        let mut n = 1;
        let mut out = Vec::new();
        while let Ok(text) = std::fs::read_to_string(self.dir.path().join(format!("{n}.eml"))) {
            out.push(text);
            n += 1;
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
