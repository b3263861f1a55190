//! The store conformance suite: the same cases against SQLite and, when
//! configured, PostgreSQL, through the store's public API.

use crate::support::{each_store, start_time, TestStore};
use api::auth::{Principal, Role};
use api::db::{AuditContext, Store, StoreError, StoreOptions, WriterOptions};
use api::fleet::{EventRecord, HeartbeatRecord, InstallationFilter, ToggleChange, ToggleKey};
use chrono::Duration;
use serde_json::json;
use uuid::Uuid;

fn heartbeat(merchant_id: Uuid, site: &str, version: &str) -> HeartbeatRecord {
    let parsed = api::version::parse(version).unwrap();
    HeartbeatRecord {
        merchant_id,
        cms: "woocommerce".into(),
        site_url: site.into(),
        plugin_version: version.into(),
        version_key: api::version::sort_key(&parsed),
        sdk_language: Some("php".into()),
        environment: "production".into(),
        php_version: None,
        wordpress_version: None,
        server_info: None,
        state: Some(json!({"config": {"memory_limit": "128M"}})),
        errors_last_hour: 0.0,
    }
}

async fn merchant(store: &Store) -> Uuid {
    let (merchant_id, _) = store
        .create_merchant("Shop", "s@example.com", start_time())
        .await
        .unwrap();
    merchant_id
}

async fn admin(store: &Store) -> Uuid {
    let (agent_id, _) = store
        .create_ops_agent("ops@example.com", Role::Admin, start_time())
        .await
        .unwrap();
    agent_id
}

fn audit(agent_id: Uuid) -> AuditContext {
    AuditContext {
        actor_kind: "ops_agent",
        actor_id: Some(agent_id),
        request_id: Some("test-request".into()),
    }
}

fn all() -> InstallationFilter {
    InstallationFilter {
        limit: 500,
        ..InstallationFilter::default()
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_store_answers() {
    each_store(|test: TestStore| async move {
        test.store.migrate().await.unwrap();
        test.store.ping().await.unwrap();
        test
    })
    .await;
}

#[tokio::test]
async fn credentials_authenticate_by_hash_only() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let store = &test.store;
        let (merchant_id, key) = store
            .create_merchant("Shop", "s@example.com", now)
            .await
            .unwrap();
        assert!(key.secret.starts_with("ahm_") && key.secret.len() == 68);
        assert_eq!(
            store
                .authenticate(&key.secret, now)
                .await
                .unwrap()
                .map(|found| found.principal),
            Some(Principal::Merchant { merchant_id })
        );
        assert_eq!(
            store
                .authenticate("ahm_unknown", now)
                .await
                .unwrap()
                .map(|found| found.principal),
            None
        );
        let (agent_id, token) = store
            .create_ops_agent("ops@example.com", Role::Operator, now)
            .await
            .unwrap();
        assert_eq!(
            store
                .authenticate(&token.secret, now)
                .await
                .unwrap()
                .map(|found| found.principal),
            Some(Principal::Ops {
                agent_id,
                role: Role::Operator
            })
        );
        let duplicate = store
            .create_ops_agent("ops@example.com", Role::Admin, now)
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{duplicate:?}"
        );
        let sira = store.create_sira_token("sira", now).await.unwrap();
        assert!(matches!(
            store
                .authenticate(&sira.secret, now)
                .await
                .unwrap()
                .map(|found| found.principal),
            Some(Principal::Sira { .. })
        ));
        test
    })
    .await;
}

#[tokio::test]
async fn concurrent_heartbeats_are_all_durable() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let merchant_id = merchant(&test.store).await;
        // 300 installations, each beating twice, all at once: group commit
        // batches them, and every acknowledged write must be there.
        let mut tasks = Vec::new();
        for round in 0..2 {
            for site in 0..300 {
                let store = test.store.clone();
                tasks.push(tokio::spawn(async move {
                    let record =
                        heartbeat(merchant_id, &format!("https://{site}.example"), "1.0.0");
                    let outcome = store
                        .write(record, now + Duration::seconds(round))
                        .await
                        .unwrap();
                    (site, outcome.installation_id)
                }));
            }
        }
        let mut ids = std::collections::HashMap::new();
        for task in tasks {
            let (site, id) = task.await.unwrap();
            assert_eq!(
                *ids.entry(site).or_insert(id),
                id,
                "one id per installation"
            );
        }
        // Read back through a second, independent connection pool.
        let reopened = Store::connect(&test.url, &StoreOptions::default())
            .await
            .unwrap();
        let page = reopened.list_installations(&all(), now).await.unwrap();
        assert_eq!(page.total.count, 300);
        assert_eq!(page.rows.len(), 300);
        let detail = reopened.installation(ids[&7], now).await.unwrap().unwrap();
        assert_eq!(detail.facts.heartbeat_count, 2);
        reopened.close().await;
        test
    })
    .await;
}

#[tokio::test]
async fn shutdown_commits_what_was_accepted() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let merchant_id = merchant(&test.store).await;
        let writes: Vec<_> = (0..50)
            .map(|site| {
                let store = test.store.clone();
                tokio::spawn(async move {
                    store
                        .write(
                            heartbeat(merchant_id, &format!("https://{site}.example"), "1.0.0"),
                            now,
                        )
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        test.store.close().await;
        let mut acknowledged = 0;
        for write in writes {
            match write.await.unwrap() {
                Ok(_) => acknowledged += 1,
                Err(error) => assert!(error.is_unavailable(), "refused, never lost: {error}"),
            }
        }
        let reopened = Store::connect(&test.url, &StoreOptions::default())
            .await
            .unwrap();
        let total = reopened
            .list_installations(&all(), now)
            .await
            .unwrap()
            .total;
        assert_eq!(
            total.count, acknowledged,
            "every acknowledged heartbeat is stored"
        );
        // After close, new writes are refused rather than dropped.
        let late = test
            .store
            .write(heartbeat(merchant_id, "https://late.example", "1.0.0"), now)
            .await;
        assert!(late.is_err());
        reopened.close().await;
        test
    })
    .await;
}

#[tokio::test]
async fn toggles_replace_expire_and_lift() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let store = &test.store;
        let merchant_id = merchant(store).await;
        let agent_id = admin(store).await;
        let beat = async |at| {
            let record = heartbeat(merchant_id, "", "1.0.0");
            store.write(record, at).await.unwrap()
        };
        let id = beat(now).await.installation_id;
        let change = |key, value, expires_at| ToggleChange {
            installation_id: id,
            key,
            value,
            reason: "test".into(),
            expires_at,
        };
        let audit = audit(agent_id);
        // Whether the toggle was set: not on an installation that does not exist.
        let set = async |change: ToggleChange, at| {
            let toggle = store.set_toggle(&change, &audit, at).await.unwrap();
            toggle.is_some()
        };
        assert!(set(change(ToggleKey::RateLimit, json!(10), None), now).await);
        assert!(set(change(ToggleKey::RateLimit, json!(20), None), now).await);
        let for_an_hour = Some(now + Duration::hours(1));
        let block = change(ToggleKey::BlockPlugin, json!(true), for_an_hour);
        assert!(set(block, now).await);
        let mut toggles: Vec<_> = beat(now)
            .await
            .toggles
            .into_iter()
            .map(|(key, value)| (key, value.to_string()))
            .collect();
        toggles.sort();
        assert_eq!(
            toggles,
            vec![
                ("block_plugin".into(), "true".into()),
                ("rate_limit".into(), "20".into())
            ]
        );

        let later = now + Duration::hours(2);
        let toggles = beat(later).await.toggles;
        assert_eq!(toggles.len(), 1, "the block expired: {toggles:?}");
        // Setting the key again after expiry works (the expired row is lifted).
        assert!(set(change(ToggleKey::BlockPlugin, json!(true), None), later).await);
        let lift = async || {
            let key = ToggleKey::RateLimit;
            store.lift_toggle(id, key, None, &audit, later).await
        };
        assert!(lift().await.unwrap().is_some());
        assert!(lift().await.unwrap().is_none());
        let elsewhere = ToggleChange {
            installation_id: Uuid::new_v4(),
            ..change(ToggleKey::EnableDebug, json!(true), None)
        };
        assert!(!set(elsewhere, later).await);

        let log = store.audit_log(50, 0).await.unwrap();
        assert_eq!(log.len(), 5, "4 sets and 1 lift");
        assert!(log.iter().all(|entry| entry.actor_id == Some(agent_id)
            && entry.request_id.as_deref() == Some("test-request")));
        test
    })
    .await;
}

#[tokio::test]
async fn events_link_to_their_installation_and_block() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let store = &test.store;
        let merchant_id = merchant(store).await;
        let event = |site: &str| EventRecord {
            merchant_id,
            cms: "woocommerce".into(),
            site_url: site.into(),
            event_type: "payment_failed".into(),
            severity: "error".into(),
            event_data: json!({"order_id": "1"}),
            message: Some("declined".into()),
            stack_trace: None,
            occurred_at: Some(now - Duration::seconds(3)),
        };
        let orphan = store
            .write(event("https://new.example"), now)
            .await
            .unwrap();
        assert_eq!(orphan.installation_id, None);
        let id = store
            .write(heartbeat(merchant_id, "https://a.example", "1.0.0"), now)
            .await
            .unwrap()
            .installation_id;
        let linked = store.write(event("https://a.example"), now).await.unwrap();
        assert_eq!(linked.installation_id, Some(id));
        assert!(!linked.install_blocked);
        let detail = store.installation(id, now).await.unwrap().unwrap();
        assert_eq!(detail.recent_events.len(), 1);
        assert_eq!(
            detail.recent_events[0].occurred_at,
            Some(now - Duration::seconds(3))
        );
        assert_eq!(detail.summary.error_rate, 100.0);
        test
    })
    .await;
}

#[tokio::test]
async fn version_order_is_semver_in_sql() {
    each_store(|test: TestStore| async move {
        let now = start_time();
        let store = &test.store;
        let merchant_id = merchant(store).await;
        let agent_id = admin(store).await;
        let latest = api::version::parse("1.10.0").unwrap();
        store
            .register_version(
                &api::fleet::NewVersion {
                    cms: "woocommerce".into(),
                    version: "1.10.0".into(),
                    version_key: api::version::sort_key(&latest),
                    is_latest: true,
                    security: false,
                    min_supported: None,
                    release_notes: String::new(),
                },
                &audit(agent_id),
                now,
            )
            .await
            .unwrap();
        for (site, version, status) in [
            ("a", "1.9.0", "outdated"),
            ("b", "1.10.0", "active"),
            ("c", "1.10.0-rc.1", "outdated"),
            ("d", "1.10.1", "active"),
            ("e", "1.2.0", "outdated"),
        ] {
            let id = store
                .write(heartbeat(merchant_id, site, version), now)
                .await
                .unwrap()
                .installation_id;
            let detail = store.installation(id, now).await.unwrap().unwrap();
            assert_eq!(detail.summary.status, status, "{version} against 1.10.0");
        }
        let filter = InstallationFilter {
            status: Some(api::fleet::InstallStatus::Outdated),
            ..all()
        };
        let page = store.list_installations(&filter, now).await.unwrap();
        assert_eq!(page.total.count, 3);
        assert_eq!(page.rows.len(), 3);
        test
    })
    .await;
}

#[tokio::test]
async fn a_connection_dropped_by_the_server_while_idle_is_replaced_before_use() {
    let Some(admin_url) = crate::support::postgres_url() else {
        return;
    };
    let test_store = TestStore::postgres(&admin_url).await;
    // A name of its own, so only this store's connection is cut.
    let name = format!("autoheal_idle_{}", Uuid::new_v4().simple());
    let url = format!("{}&application_name={name}", test_store.url);
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, &options).await.expect("connect");
    store.ping().await.expect("first use");

    // What a database restart or an idle timeout on the server does.
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("admin");
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .expect("terminate");
    admin.close().await;
    assert_eq!(cut, vec![true], "the store's one connection was cut");

    // Idle for longer than the pool trusts a connection unchecked.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    store
        .ping()
        .await
        .expect("the dead connection is replaced, not handed out");
    store.close().await;
    test_store.finish().await;
}

#[tokio::test]
async fn an_ops_write_gets_through_a_steady_stream_of_telemetry() {
    // SQLite has one write connection: the group-commit writer keeps it between batches
    // while work is queued, and must still hand it over to an Ops write in time.
    let options = StoreOptions {
        acquire_timeout_ms: 1_000,
        // Small batches, so that the queue never runs dry while the writer commits.
        writer: WriterOptions {
            max_batch: 4,
            ..WriterOptions::default()
        },
        ..StoreOptions::default()
    };
    let test = TestStore::sqlite_with(&options).await;
    let store = test.store.clone();
    let now = start_time();
    let merchant_id = merchant(&store).await;
    let agent_id = admin(&store).await;
    let id = store
        .write(heartbeat(merchant_id, "https://ops.example", "1.0.0"), now)
        .await
        .unwrap()
        .installation_id;

    // Telemetry for longer than an Ops write may wait for the connection.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2_500);
    let telemetry: Vec<_> = (0..16)
        .map(|site| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = 0;
                while std::time::Instant::now() < until {
                    let beat = heartbeat(merchant_id, &format!("https://{site}.example"), "1.0.0");
                    store.write(beat, now).await.unwrap();
                    written += 1;
                }
                written
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for limit in [10, 20, 30] {
        let change = ToggleChange {
            installation_id: id,
            key: ToggleKey::RateLimit,
            value: json!(limit),
            reason: "test".into(),
            expires_at: None,
        };
        let set = store.set_toggle(&change, &audit(agent_id), now).await;
        assert!(set.is_ok(), "the toggle waited out the telemetry: {set:?}");
    }
    for task in telemetry {
        assert!(task.await.unwrap() > 0);
    }
    test.finish().await;
}

#[tokio::test]
async fn sqlite_commits_reach_the_database_file_without_waiting_for_a_full_wal() {
    // SQLite copies the WAL into the database file (a checkpoint) on its own only inside
    // the commit that crosses 1 000 pages, which then keeps every queued write waiting.
    // The store checkpoints from a connection of its own after the batches instead.
    let test = TestStore::sqlite().await;
    let now = start_time();
    let merchant_id = merchant(&test.store).await;
    for site in 0..20 {
        let beat = heartbeat(merchant_id, &format!("https://{site}.example"), "1.0.0");
        test.store.write(beat, now).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The database file alone, without its WAL: what has been checkpointed.
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("checkpointed.db");
    std::fs::copy(test.url.trim_start_matches("sqlite://"), &copied).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", copied.display()))
        .await
        .unwrap();
    let installations: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM plugin_installations")
            .fetch_one(&pool)
            .await;
    pool.close().await;
    assert_eq!(
        installations.ok(),
        Some(20),
        "the heartbeats are checkpointed"
    );
    test.finish().await;
}

/// Tables and their columns, as a backend's migrations define them (sqlx's own table left
/// out, and each backend's full-text index: FTS5's virtual and shadow tables on SQLite, a
/// `tsvector` column on PostgreSQL).
type Schema = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

async fn sqlite_schema(url: &str) -> Schema {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations' \
           AND m.name IN (SELECT name FROM pragma_table_list WHERE type = 'table')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    schema(columns)
}

async fn postgres_schema(url: &str) -> Schema {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        // A table's monthly partitions are how PostgreSQL stores that one table.
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
           AND data_type <> 'tsvector' \
           AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = table_name \
                           AND c.relnamespace = current_schema()::regnamespace AND c.relispartition)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    schema(columns)
}

fn schema(columns: Vec<(String, String)>) -> Schema {
    let mut schema = Schema::new();
    for (table, column) in columns {
        schema.entry(table).or_default().insert(column);
    }
    schema
}

/// The two migration sets define the same tables with the same columns (types and indexes
/// differ by design: native types on PostgreSQL, a leaner index set on SQLite).
#[tokio::test]
async fn both_backends_define_the_same_tables_and_columns() {
    let Some(url) = crate::support::postgres_url() else {
        eprintln!("-- skipped: the parity check needs PostgreSQL");
        return;
    };
    let sqlite = TestStore::sqlite().await;
    let postgres = TestStore::postgres(&url).await;
    let (lite, pg) = (
        sqlite_schema(&sqlite.url).await,
        postgres_schema(&postgres.url).await,
    );
    assert!(lite.len() > 10, "the SQLite schema was read: {lite:?}");
    let tables = |schema: &Schema| schema.keys().cloned().collect::<Vec<_>>();
    assert_eq!(tables(&lite), tables(&pg), "the same tables");
    for (table, columns) in &lite {
        assert_eq!(columns, &pg[table], "the columns of {table}");
    }
    sqlite.finish().await;
    postgres.finish().await;
}
