//! The test harness: a real store on every available backend (SQLite in a
//! temp dir always; PostgreSQL in a throwaway schema when
//! `AUTOHEAL_TEST_POSTGRES_URL` is set, and required when `CI` is set), the
//! app router driven through `oneshot`, and a manual clock.

use api::store::{Role, Store, StoreOptions};
use api::{AppState, Clock, ServerConfig};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use std::future::Future;
use tower::ServiceExt;
use uuid::Uuid;

pub const POSTGRES_ENV: &str = "AUTOHEAL_TEST_POSTGRES_URL";

/// A store that cleans up after itself.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_schema: Option<(String, String)>,
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("autoheal.db").display());
        let store = connect(&url).await;
        Self {
            store,
            url,
            _dir: Some(dir),
            postgres_schema: None,
        }
    }

    /// A fresh schema in the test database, so runs never collide.
    pub async fn postgres(admin_url: &str) -> Self {
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
        let store = connect(&url).await;
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

async fn connect(url: &str) -> Store {
    let store = Store::connect(url, &StoreOptions::default())
        .await
        .expect("connect store");
    store.migrate().await.expect("migrate");
    store
}

fn postgres_url() -> Option<String> {
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
    eprintln!("-- running on sqlite");
    let sqlite = test(TestStore::sqlite().await).await;
    sqlite.finish().await;
    match postgres_url() {
        Some(url) => {
            eprintln!("-- running on postgres");
            test(TestStore::postgres(&url).await).await.finish().await;
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
        Self::with_parts(store, config, api::rules::Rules::empty()).await
    }

    /// An app serving the rules under `dir`.
    pub async fn with_rules(store: TestStore, dir: &std::path::Path) -> Self {
        let rules = api::rules::Rules::load(dir, start_time()).expect("rules load");
        Self::with_parts(store, ServerConfig::default(), rules).await
    }

    async fn with_parts(store: TestStore, config: ServerConfig, rules: api::rules::Rules) -> Self {
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
        let state = AppState::new(store.store.clone(), clock.clone(), config).with_rules(rules);
        state.flags.reload(&state).await.expect("flags load");
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
