//! The fleet's read model (issue 16): rollups kept with the events, statuses and counts
//! from indexed facts, keyset pages, counts that stay cheap, and the error-rate snapshot.

use crate::fleet::{event, install, register};
use crate::support::{each_app, each_store, each_store_before, TestApp};
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The rows, `X-Total-Count`, whether it is capped, and the next page's path.
async fn page(app: &TestApp, path: &str) -> (Vec<Value>, i64, bool, Option<String>) {
    let response = app.get(path, &app.viewer).await;
    let rows = response.ok().as_array().unwrap().clone();
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let total = header("x-total-count").unwrap().parse().unwrap();
    let capped = header("x-total-count-capped").as_deref() == Some("true");
    let next = header("link").map(|link| {
        let (path, rel) = link.split_once("; ").unwrap();
        assert_eq!(rel, "rel=\"next\"");
        path.trim_matches(['<', '>']).to_owned()
    });
    (rows, total, capped, next)
}

fn id_of(row: &Value) -> String {
    row["id"].as_str().unwrap().to_owned()
}

/// Follows `Link` from `path` to the last page; every row's id, in order.
async fn walk(app: &TestApp, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        let (rows, _, _, link) = page(app, &path).await;
        ids.extend(rows.iter().map(id_of));
        next = link;
    }
    ids
}

async fn block(app: &TestApp, id: Uuid, expires_at: Option<&str>) {
    app.post(
        &format!("/api/v1/plugins/{id}/toggle"),
        &app.operator,
        &json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "fraud",
                "expires_at": expires_at}),
    )
    .await
    .ok();
}

async fn overview(app: &TestApp) -> Value {
    app.get("/api/v1/plugins/stats/overview", &app.viewer)
        .await
        .ok()
        .clone()
}

/// A fleet in every status, in one cms and another: woocommerce's latest is 1.3.5.
/// Returns (active, outdated, blocked, stale, blocked-and-stale, shopify) ids.
async fn fleet(app: &TestApp) -> [Uuid; 6] {
    register(app, "woocommerce", "1.3.5", true).await;
    let stale = install(app, "woocommerce", "1.3.5", "https://stale.example").await;
    let blocked_stale = install(app, "woocommerce", "1.2.0", "https://blocked-stale.example").await;
    block(app, blocked_stale, None).await;
    app.clock.advance(Duration::hours(49));
    let active = install(app, "woocommerce", "1.3.5", "https://active.example").await;
    let outdated = install(app, "woocommerce", "1.2.0", "https://outdated.example").await;
    let blocked = install(app, "woocommerce", "1.2.0", "https://blocked.example").await;
    block(app, blocked, None).await;
    let shopify = install(app, "shopify", "2.0.0", "https://shop.example").await;
    [active, outdated, blocked, stale, blocked_stale, shopify]
}

#[tokio::test]
async fn statuses_and_their_counts_agree_with_the_list() {
    each_app(|app| async move {
        let [active, outdated, blocked, stale, blocked_stale, shopify] = fleet(&app).await;
        let expected = [
            ("active", vec![active, shopify]),
            ("outdated", vec![outdated]),
            ("blocked", vec![blocked, blocked_stale]),
            ("error", vec![stale]),
        ];
        for (status, ids) in &expected {
            let (rows, total, capped, _) =
                page(&app, &format!("/api/v1/plugins/list?status={status}")).await;
            let listed: BTreeSet<String> = rows.iter().map(id_of).collect();
            let wanted: BTreeSet<String> = ids.iter().map(Uuid::to_string).collect();
            assert_eq!(listed, wanted, "status={status}");
            assert!(rows.iter().all(|row| row["status"] == *status), "{rows:?}");
            assert_eq!(total, ids.len() as i64, "X-Total-Count of status={status}");
            assert!(!capped);
        }
        let (_, total, _, _) = page(&app, "/api/v1/plugins/list?status=outdated&cms=shopify").await;
        assert_eq!(total, 0, "counted per cms");
        let (_, total, _, _) = page(&app, "/api/v1/plugins/list?status=active&cms=shopify").await;
        assert_eq!(total, 1);

        let seen = overview(&app).await;
        assert_eq!(
            seen["active_count"], 3,
            "active and outdated: neither blocked nor stale"
        );
        assert_eq!(
            seen["outdated_count"], 1,
            "a blocked or stale old version is not outdated"
        );
        assert_eq!(seen["blocked_count"], 2);
        assert_eq!(seen["error_count"], 1, "stale and not blocked");
        assert_eq!(seen["stale_count"], 2, "stale, blocked or not");
        assert_eq!(
            seen["cms_breakdown"],
            json!([{"cms": "woocommerce", "count": 5}, {"cms": "shopify", "count": 1}])
        );

        // Expiry is compared with now at the read: a block that expires lifts itself.
        let expiring = install(&app, "shopify", "2.0.0", "https://expiring.example").await;
        let in_an_hour = (app.clock.now() + Duration::hours(1)).to_rfc3339();
        block(&app, expiring, Some(&in_an_hour)).await;
        assert_eq!(overview(&app).await["blocked_count"], 3);
        app.clock.advance(Duration::minutes(61));
        assert_eq!(
            overview(&app).await["blocked_count"],
            2,
            "the block expired"
        );
        let detail = app
            .get(&format!("/api/v1/plugins/{expiring}"), &app.viewer)
            .await;
        assert_eq!(detail.ok()["status"], "active");
        app
    })
    .await;
}

#[tokio::test]
async fn version_counts_follow_upgrades_and_new_releases() {
    each_app(|app| async move {
        register(&app, "woocommerce", "1.3.5", true).await;
        for site in [
            "https://a.example",
            "https://b.example",
            "https://c.example",
        ] {
            install(&app, "woocommerce", "1.2.0", site).await;
        }
        assert_eq!(overview(&app).await["outdated_count"], 3);
        install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        install(&app, "woocommerce", "1.4.0", "https://b.example").await;
        assert_eq!(overview(&app).await["outdated_count"], 1, "two upgraded");
        // A downgrade counts again.
        install(&app, "woocommerce", "1.1.0", "https://b.example").await;
        assert_eq!(overview(&app).await["outdated_count"], 2);
        register(&app, "woocommerce", "1.5.0", true).await;
        let seen = overview(&app).await;
        assert_eq!(
            seen["outdated_count"], 3,
            "a new latest makes every older one outdated"
        );
        assert_eq!(
            seen["cms_breakdown"],
            json!([{"cms": "woocommerce", "count": 3}])
        );
        let counters = app
            .store
            .count("SELECT COUNT(*) FROM fleet_version_counts WHERE installs < 0")
            .await;
        assert_eq!(counters, 0);
        app
    })
    .await;
}

#[tokio::test]
async fn keyset_pages_walk_the_list_once_in_order() {
    each_app(|app| async move {
        for n in 0..7 {
            install(&app, "woocommerce", "1.3.5", &format!("https://{n}.example")).await;
            // Two installs share each heartbeat time: the id breaks the tie.
            if n % 2 == 1 {
                app.clock.advance(Duration::seconds(1));
            }
        }
        let (all, total, _, last) = page(&app, "/api/v1/plugins/list?limit=100").await;
        assert_eq!(total, 7);
        assert!(last.is_none(), "one page holds them all");
        let by_offset: Vec<String> = all.iter().map(id_of).collect();
        let walked = walk(&app, "/api/v1/plugins/list?limit=3").await;
        assert_eq!(walked, by_offset, "the pages, in list order, each install once");
        let (first, _, _, next) = page(&app, "/api/v1/plugins/list?limit=3&cms=woocommerce").await;
        assert_eq!(first.len(), 3);
        let next = next.unwrap();
        assert!(next.contains("cms=woocommerce") && next.contains("limit=3"), "{next}");

        // A page after a cursor sees an install that beat since at the top, not twice.
        let (_, _, _, second) = page(&app, "/api/v1/plugins/list?limit=3").await;
        app.clock.advance(Duration::seconds(5));
        install(&app, "woocommerce", "1.3.5", "https://new.example").await;
        let rest = walk(&app, &second.unwrap()).await;
        assert_eq!(rest, by_offset[3..].to_vec());

        for (query, field) in [("after=nonsense", "after"), ("after=12-zz", "after")] {
            let bad = app
                .get(&format!("/api/v1/plugins/list?{query}"), &app.viewer)
                .await;
            assert_eq!(bad.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some(field));
        }
        let mixed = app
            .get(
                "/api/v1/plugins/list?after=1737194400000000000-0192f0c0000070008000000000000001&offset=3",
                &app.viewer,
            )
            .await;
        assert_eq!(mixed.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(), Some("offset"));
        app
    })
    .await;
}

#[tokio::test]
async fn rollups_keep_the_error_rate_and_outlive_the_raw_events() {
    each_app(|app| async move {
        let id = install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        for event_type in ["payment_success", "payment_success", "payment_failed", "error", "warning"] {
            event(&app, "https://a.example", event_type).await;
        }
        let rollups = app
            .store
            .count("SELECT COUNT(*) FROM plugin_event_rollups WHERE events = 5 AND outcomes = 4 AND errors = 2")
            .await;
        assert_eq!(rollups, 1, "one row for the install's hour");
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["error_rate"], 50.0);
        assert_eq!(detail.ok()["errors_24h"], 2);
        assert_eq!(detail.ok()["error_rate_source"], "events");
        let before = overview(&app).await;

        // Retention deletes raw events; the figures read the rollups.
        app.store.execute("DELETE FROM plugin_telemetry_events").await;
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["error_rate"], 50.0);
        assert_eq!(detail.ok()["errors_24h"], 2);
        assert_eq!(overview(&app).await, before);

        // A bucket leaves the window whole, once its hour began more than 24 h ago.
        app.clock.advance(Duration::hours(24) + Duration::minutes(1));
        let detail = app.get(&format!("/api/v1/plugins/{id}"), &app.viewer).await;
        assert_eq!(detail.ok()["errors_24h"], 0);
        assert_eq!(detail.ok()["error_rate_source"], "none");
        app
    })
    .await;
}

#[tokio::test]
async fn a_filter_the_counters_do_not_serve_is_counted_up_to_a_cap() {
    each_app(|app| async move {
        install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        let (other, other_key) = app.create_merchant("Other").await;
        app.post(
            "/api/v1/plugins/heartbeat",
            &other_key,
            &json!({"cms": "woocommerce", "plugin_version": "1.3.5", "site_url": "https://o.example"}),
        )
        .await
        .ok();
        let (rows, total, capped, _) =
            page(&app, &format!("/api/v1/plugins/list?merchant_id={other}")).await;
        assert_eq!((rows.len(), total, capped), (1, 1, false));

        // More than the cap: written straight into the store, as a bulk loader would.
        let count = api::fleet::COUNT_CAP + 5;
        let sqlite = app.store.url.starts_with("sqlite:");
        let (ids, series) = if sqlite {
            (
                "randomblob(16)",
                format!("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {count}) SELECT x FROM n"),
            )
        } else {
            ("gen_random_uuid()", format!("SELECT generate_series(1, {count}) AS x"))
        };
        let merchant = if sqlite {
            format!("X'{}'", other.simple())
        } else {
            format!("'{other}'")
        };
        let at = (app.clock.now() - Duration::minutes(1)).to_rfc3339();
        let key = api::version::sort_key(&semver::Version::new(1, 0, 0));
        app.store
            .execute(&format!(
                "INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, version_key, \
                   environment, first_seen_at, last_heartbeat) \
                 SELECT {ids}, {merchant}, 'shopify', 'https://bulk.example/' || x, '1.0.0', '{key}', \
                   'staging', '{at}', '{at}' FROM ({series}) s"
            ))
            .await;
        let (rows, total, capped, next) =
            page(&app, &format!("/api/v1/plugins/list?merchant_id={other}&limit=2")).await;
        assert_eq!((rows.len(), total, capped), (2, api::fleet::COUNT_CAP, true));
        assert!(next.is_some());
        let (_, total, capped, _) = page(&app, "/api/v1/plugins/list?cms=shopify").await;
        assert_eq!((total, capped), (count, false), "cms is counted exactly");
        assert_eq!(overview(&app).await["active_count"], count + 2);
        app
    })
    .await;
}

#[tokio::test]
async fn fleet_error_rates_come_from_the_snapshot_the_refresher_replaces() {
    each_store(|store| async {
        let config = api::ServerConfig {
            jobs: api::ops::JobsConfig {
                metrics_refresh: std::time::Duration::from_secs(3600),
                ..api::ops::JobsConfig::default()
            },
            ..api::ServerConfig::default()
        };
        let app = TestApp::with_config(store, config).await;
        install(&app, "woocommerce", "1.3.5", "https://a.example").await;
        let first = app.get("/api/v1/plugins/stats/overview", &app.viewer).await;
        assert_eq!(first.ok()["high_error_rate_count"], 0);
        let as_of = first.headers["x-error-rates-as-of"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(as_of, app.clock.now().to_rfc3339());
        let high_rate = |text: String| {
            text.lines()
                .find(|line| line.starts_with("plugin_high_error_rate_installs "))
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            high_rate(app.metrics().await),
            "plugin_high_error_rate_installs 0"
        );

        event(&app, "https://a.example", "payment_failed").await;
        app.clock.advance(Duration::seconds(30));
        let seen = overview(&app).await;
        assert_eq!(
            seen["high_error_rate_count"], 0,
            "not recomputed on the request"
        );
        assert_eq!(seen["active_count"], 1, "statuses are exact at the request");
        assert_eq!(
            high_rate(app.metrics().await),
            "plugin_high_error_rate_installs 0",
            "a scrape reads the snapshot"
        );

        app.state.ops.refresh_figures().await.unwrap();
        let refreshed = app.get("/api/v1/plugins/stats/overview", &app.viewer).await;
        assert_eq!(refreshed.ok()["high_error_rate_count"], 1);
        assert_eq!(refreshed.ok()["avg_error_rate"], 100.0);
        assert_eq!(
            refreshed.headers["x-error-rates-as-of"].to_str().unwrap(),
            app.clock.now().to_rfc3339()
        );
        assert_eq!(
            high_rate(app.metrics().await),
            "plugin_high_error_rate_installs 1"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn migration_0011_rolls_up_the_events_and_counts_the_installs_already_stored() {
    each_store_before(10, |store| async {
        let app = TestApp::new(store).await;
        let sqlite = app.store.url.starts_with("sqlite:");
        let id = |id: Uuid| {
            if sqlite {
                format!("X'{}'", id.simple())
            } else {
                format!("'{id}'")
            }
        };
        let (install, merchant) = (id(Uuid::from_u128(1)), id(app.merchant_id));
        let at = app.clock.now().to_rfc3339();
        let key = api::version::sort_key(&semver::Version::new(1, 2, 0));
        app.store
            .execute(&format!(
                "INSERT INTO plugin_installations (id, merchant_id, cms, site_url, plugin_version, version_key, \
                   environment, first_seen_at, last_heartbeat) \
                 VALUES ({install}, {merchant}, 'woocommerce', 'https://a.example', '1.2.0', '{key}', 'production', \
                   '{at}', '{at}')"
            ))
            .await;
        for (n, event_type) in ["payment_success", "payment_failed", "payment_failed", "info"]
            .into_iter()
            .enumerate()
        {
            let event = id(Uuid::from_u128(100 + n as u128));
            let received = (app.clock.now() + Duration::minutes(n as i64)).to_rfc3339();
            app.store
                .execute(&format!(
                    "INSERT INTO plugin_telemetry_events (id, installation_id, merchant_id, cms, site_url, \
                       event_type, severity, event_data, received_at) \
                     VALUES ({event}, {install}, {merchant}, 'woocommerce', 'https://a.example', \
                       '{event_type}', 'info', '{{}}', '{received}')"
                ))
                .await;
        }
        app.state.store.migrate().await.expect("0011 migrates");
        register(&app, "woocommerce", "1.3.5", true).await;
        let detail = app.get(&format!("/api/v1/plugins/{}", Uuid::from_u128(1)), &app.viewer).await;
        let detail = detail.ok();
        assert_eq!(detail["errors_24h"], 2);
        assert!((detail["error_rate"].as_f64().unwrap() - 66.67).abs() < 1e-9, "{detail}");
        let seen = overview(&app).await;
        assert_eq!(seen["outdated_count"], 1);
        assert_eq!(seen["cms_breakdown"], json!([{"cms": "woocommerce", "count": 1}]));
        app.store
    })
    .await;
}

#[tokio::test]
async fn the_daily_job_records_the_fleet_s_day_and_each_install_s() {
    each_app(|app| async move {
        register(&app, "woocommerce", "1.3.5", true).await;
        let old = install(&app, "woocommerce", "1.2.0", "https://a.example").await;
        install(&app, "woocommerce", "1.3.5", "https://b.example").await;
        for event_type in ["payment_success", "payment_failed", "warning"] {
            event(&app, "https://a.example", event_type).await;
        }
        let day = app.clock.now().date_naive().to_string();
        app.clock.advance(Duration::days(1));
        app.state.ops.run_due().await.unwrap();

        let trends = app
            .get("/api/v1/plugins/stats/trends?days=30", &app.viewer)
            .await;
        assert_eq!(
            trends.ok(),
            &json!([{
                "day": day, "installs": 2, "active": 2, "outdated": 1, "blocked": 0, "error": 0,
                "events": 3, "errors": 1, "error_rate": 50.0, "interop_events": 0,
                "patches_applied": 0, "patches_failed": 0
            }])
        );
        let metrics = app
            .get(
                &format!("/api/v1/plugins/{old}/metrics?days=7"),
                &app.viewer,
            )
            .await;
        let days = metrics.ok().as_array().unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(
            (
                &days[0]["day"],
                &days[0]["events"],
                &days[0]["errors"],
                &days[0]["error_rate"]
            ),
            (&json!(day), &json!(3), &json!(1), &json!(50.0))
        );
        let unknown = app
            .get(
                &format!("/api/v1/plugins/{}/metrics", Uuid::from_u128(7)),
                &app.viewer,
            )
            .await;
        unknown.error(StatusCode::NOT_FOUND);
        let bad = app
            .get("/api/v1/plugins/stats/trends?days=0", &app.viewer)
            .await;
        assert_eq!(
            bad.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(),
            Some("days")
        );
        app
    })
    .await;
}
