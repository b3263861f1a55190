//! The platform log (issue 20, seed 002): entries written by real actions (an Ops toggle, a
//! failed webhook delivery, job runs) and through the handle, queried with each filter and
//! full text, paged newest first by cursor, streamed as Server-Sent Events; debug storage,
//! the full buffer, the permission, and retention by level (and by month on PostgreSQL).

use crate::support::{each_app, each_store, start_time, Receiver, TestApp};
use api::delivery::{NewOutboxMessage, OutboxConfig};
use api::logs::{LogLevel, LogService, LogsConfig, NewLogEntry};
use api::ops::retention::RetentionConfig;
use api::ServerConfig;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The entries `query` (the query string after `?`) finds, as the admin reads them.
async fn entries(app: &TestApp, query: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/api/platform/logs?{query}"), &app.admin)
        .await;
    page.ok()["entries"].as_array().unwrap().clone()
}

/// The entries `query` finds once there are `n` of them (the writer commits within its
/// linger); fails after five seconds.
async fn entries_once(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    for _ in 0..250 {
        let found = entries(app, query).await;
        if found.len() >= n {
            assert_eq!(found.len(), n, "{query}: {found:#?}");
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "{query}: not {n} entries after 5 s: {:#?}",
        entries(app, query).await
    );
}

fn actions(found: &[Value]) -> Vec<&str> {
    found
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect()
}

fn record(app: &TestApp, level: LogLevel, message: &str) {
    app.state.platform_log.record(NewLogEntry::new(
        level,
        LogService::Healing,
        "healing.decided",
        message,
    ));
}

fn with_logs(logs: LogsConfig) -> ServerConfig {
    ServerConfig {
        logs,
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn real_actions_are_logged_and_found_by_each_filter() {
    let receiver = Receiver::start().await;
    let receiver = &receiver;
    each_store(|store| async move {
        let app = TestApp::new(store)
            .await
            .with_outbox(OutboxConfig {
                webhook_secret: Some("whsec_never_logged".into()),
                ..OutboxConfig::default()
            })
            .await;
        // An Ops action, with the request id the client chose.
        let install = app.heartbeat(json!({"cms": "woocommerce", "plugin_version": "1.3.5"})).await;
        let toggle = Request::post(format!("/api/v1/plugins/{install}/toggle"))
            .header("authorization", format!("Bearer {}", app.admin))
            .header("content-type", "application/json")
            .header("x-request-id", "req-toggle-1")
            .body(Body::from(
                json!({"toggle_key": "block_plugin", "toggle_value": true, "reason": "Manually blocked by Ops"})
                    .to_string(),
            ))
            .unwrap();
        app.send(toggle).await.ok();
        // A refused one is logged too (warn), a read is not.
        let refused = app
            .post(&format!("/api/v1/plugins/{install}/toggle"), &app.operator, &json!({"toggle_key": "nope"}))
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        app.get("/api/v1/plugins/list", &app.admin).await.ok();
        // Two webhook deliveries that fail: one retried (500), one dead at once (401).
        receiver.answer(&[(500, None), (401, None)]);
        let message = |n: u32| NewOutboxMessage {
            channel: "webhook",
            destination: format!("{}/hook/{n}?token=secret-in-url", receiver.base),
            payload: json!({"n": n}),
            source_type: "test",
            source_id: None,
        };
        app.state.store.enqueue(&[message(1)], app.clock.now()).await.unwrap();
        app.state.delivery.deliver_due().await.unwrap();
        app.state.store.enqueue(&[message(2)], app.clock.now()).await.unwrap();
        app.state.delivery.deliver_due().await.unwrap();
        // The scheduled jobs, and an entry about a merchant through the handle.
        let ran = app.state.ops.run_due().await.unwrap();
        app.state.platform_log.record(
            NewLogEntry::new(LogLevel::Info, LogService::Healing, "healing.decided", "detection held for review")
                .merchant(app.merchant_id)
                .data(json!({"rule": "missing_database_column"})),
        );
        let total = 2 + 2 + ran.jobs.len() + 1;
        let all = entries_once(&app, "", total).await;
        let text = serde_json::to_string(&all).unwrap();
        for secret in ["whsec_never_logged", "secret-in-url", &app.admin, &app.operator, "Manually blocked"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }

        let by_request = entries(&app, "request_id=req-toggle-1").await;
        assert_eq!(by_request.len(), 1, "{by_request:#?}");
        let toggled = &by_request[0];
        assert_eq!(
            (&toggled["level"], &toggled["service"], &toggled["action"], &toggled["userId"]),
            (&json!("info"), &json!("fleet"), &json!("ops.request"), &json!(app.admin_id))
        );
        assert_eq!(toggled["data"]["route"], "/api/v1/plugins/{id}/toggle");
        assert_eq!(toggled["data"]["status"], 200);
        // The install's merchant is the entry's tenant.
        assert_eq!(
            (&toggled["tenantId"], &toggled["tenantSlug"]),
            (&json!(app.merchant_id), &json!("my-shop"))
        );
        for field in ["id", "timestamp", "tenantSlug", "message", "error"] {
            assert!(toggled.get(field).is_some(), "{field} in {toggled}");
        }

        let warned = entries(&app, "level=warn").await;
        assert_eq!(actions(&warned), ["outbox.delivery_failed", "ops.request"]);
        assert_eq!(warned[1]["data"]["status"], 422);
        let failed = &warned[0];
        assert_eq!(failed["service"], "delivery");
        assert_eq!(failed["error"]["name"], "TRANSIENT");
        assert_eq!(failed["error"]["message"], "HTTP 500");
        assert!(failed["data"]["destination"].as_str().unwrap().starts_with("127.0.0.1:"));
        let dead = entries(&app, "level=error").await;
        assert_eq!(actions(&dead), ["outbox.dead_lettered"]);
        assert_eq!(dead[0]["error"]["name"], "AUTH");
        assert_eq!(entries(&app, "level=error,warn").await.len(), 3);

        let jobs = entries(&app, "action=job.ran").await;
        assert_eq!(jobs.len(), ran.jobs.len());
        assert!(jobs.iter().all(|job| job["service"] == "ops" && job["data"]["duration_ms"].is_u64()));
        assert_eq!(entries(&app, "service=delivery").await.len(), 2);

        let tenant = entries(&app, &format!("tenant={}", app.merchant_id)).await;
        assert_eq!(actions(&tenant), ["healing.decided", "ops.request", "ops.request"]);
        assert_eq!((&tenant[0]["tenantSlug"], &tenant[0]["data"]), (&json!("my-shop"), &json!({"rule": "missing_database_column"})));

        let now = app.clock.now().to_rfc3339();
        assert_eq!(entries(&app, &format!("since={}", urlencode(&now))).await.len(), total);
        assert_eq!(entries(&app, &format!("until={}", urlencode(&now))).await.len(), 0);
        app.clock.advance(Duration::minutes(5));
        record(&app, LogLevel::Info, "five minutes on");
        entries_once(&app, "q=minutes", 1).await;
        let later = (start_time() + Duration::minutes(1)).to_rfc3339();
        assert_eq!(actions(&entries(&app, &format!("since={}", urlencode(&later))).await), ["healing.decided"]);
        assert_eq!(entries(&app, &format!("until={}", urlencode(&later))).await.len(), total);
        app.store
    })
    .await;
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn full_text_matches_whole_words_and_user_input_is_never_syntax() {
    each_app(|app| async move {
        record(
            &app,
            LogLevel::Error,
            "order #1231 failed: payment declined",
        );
        record(&app, LogLevel::Info, "Order #998 shipped");
        record(&app, LogLevel::Warn, "cache warmed in 30 ms");
        entries_once(&app, "", 3).await;
        let messages = |found: Vec<Value>| -> Vec<String> {
            found
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            messages(entries(&app, "q=failed").await),
            ["order #1231 failed: payment declined"]
        );
        assert_eq!(
            messages(entries(&app, "q=ORDER").await).len(),
            2,
            "any case"
        );
        assert_eq!(
            messages(entries(&app, "q=order+declined").await).len(),
            1,
            "every word"
        );
        assert_eq!(messages(entries(&app, "q=order+unknown").await).len(), 0);
        assert_eq!(
            messages(entries(&app, "q=fail").await).len(),
            0,
            "whole words"
        );
        assert_eq!(
            messages(entries(&app, "q=998&level=info").await),
            ["Order #998 shipped"]
        );
        for syntax in [
            "\"",
            "order\"",
            "*",
            "order*",
            "NEAR(order failed)",
            "order OR shipped",
            "-order",
            "order AND NOT failed",
            "^order",
            "message:order",
            "(",
            "a & b | !c",
            "':*",
            "{}[]",
        ] {
            let found = app
                .get(
                    &format!("/api/platform/logs?q={}", urlencode(syntax)),
                    &app.admin,
                )
                .await;
            assert_eq!(found.status, StatusCode::OK, "{syntax}: {}", found.body);
        }
        // Punctuation only: no word, so the filter is every entry's.
        assert_eq!(
            entries(&app, &format!("q={}", urlencode("\"*")))
                .await
                .len(),
            3
        );
        assert_eq!(
            messages(entries(&app, &format!("q={}", urlencode("order\" OR \"x"))).await).len(),
            0,
            "OR is a word here, not an operator"
        );
        app
    })
    .await;
}

#[tokio::test]
async fn pages_go_newest_first_without_duplicates_or_gaps() {
    each_app(|app| async move {
        for n in 0..23 {
            // Several entries share a timestamp: the id breaks the tie.
            if n % 3 == 0 {
                app.clock.advance(Duration::seconds(1));
            }
            record(&app, LogLevel::Info, &format!("entry {n}"));
        }
        let all = entries_once(&app, "limit=500", 23).await;
        let times: Vec<&str> = all
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted, "newest first");
        assert_eq!(every_page(&app, "level=info", 5).await, all);
        let default = entries(&app, "").await;
        assert_eq!(default.len(), 23, "50 by default");
        app
    })
    .await;
}

/// Every entry `query` finds, page after page of `limit`, newest first.
async fn every_page(app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/api/platform/logs?{query}&limit={limit}{cursor}"),
                &app.admin,
            )
            .await;
        let page = page.ok().clone();
        let entries = page["entries"].as_array().unwrap();
        assert!(
            entries.len() <= limit,
            "{query}: a page of {}",
            entries.len()
        );
        found.extend(entries.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return found,
        }
    }
}

#[tokio::test]
async fn full_text_pages_are_exact_for_common_words_written_out_of_time_order() {
    // On SQLite a word in more entries than a step of the walk (1,024) is found by walking
    // the newest rows, a growing step at a time: pages must come out exactly as the
    // filter's own order says, even where the rows were written out of time order.
    each_app(|app| async move {
        let start = app.clock.now();
        let at = |second: i64| {
            let now = app.clock.now();
            app.clock.advance(start + Duration::seconds(second) - now);
        };
        for n in 0..1_100 {
            at(n);
            record(&app, LogLevel::Warn, &format!("alpha gamma dense {n}"));
        }
        for n in 0..3_000_i64 {
            // Written in an order unrelated to their time: second 2999 is the newest info
            // entry, and 1976 the 1,024th, the last row of the walk's first step.
            let second = (n * 7_919) % 3_000;
            at(second);
            let message = if second % 300 == 7 {
                format!("alpha sparse {n}")
            } else if second % 3 == 2 {
                format!("beta gamma filler {n}")
            } else {
                format!("beta filler {n}")
            };
            record(&app, LogLevel::Info, &message);
        }
        let infos = loop {
            let infos = every_page(&app, "level=info", 500).await;
            if infos.len() == 3_000 {
                break infos;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        // The message and the id, so a failure shows which entries differ.
        let messages = |entries: &[Value]| -> Vec<String> {
            entries
                .iter()
                .map(|entry| format!("{} {}", entry["message"], entry["id"]))
                .collect()
        };
        let with = |entries: &[Value], word: &str| -> Vec<Value> {
            entries
                .iter()
                .filter(|entry| {
                    entry["message"]
                        .as_str()
                        .unwrap()
                        .split(' ')
                        .any(|w| w == word)
                })
                .cloned()
                .collect()
        };
        let sparse = with(&infos, "alpha");
        assert_eq!(sparse.len(), 10);
        assert_eq!(
            messages(&every_page(&app, "level=info&q=alpha", 3).await),
            messages(&sparse)
        );
        assert_eq!(
            messages(&every_page(&app, "level=info&q=alpha", 50).await),
            messages(&sparse)
        );
        // A third of the info entries, so a page of 500 takes a second step, which starts
        // below a match (the first step's last row).
        let gamma = with(&infos, "gamma");
        assert_eq!(gamma.len(), 1_000);
        assert_eq!(
            messages(&every_page(&app, "level=info&q=gamma", 500).await),
            messages(&gamma)
        );
        let beta = with(&infos, "beta");
        assert_eq!(
            messages(&every_page(&app, "q=beta", 500).await),
            messages(&beta)
        );
        assert_eq!(
            messages(&every_page(&app, "q=beta+filler", 7).await)[..70],
            messages(&beta)[..70]
        );
        let warns = every_page(&app, "level=warn", 500).await;
        let mut alpha = [warns, infos].concat();
        alpha.retain(|entry| entry["message"].as_str().unwrap().starts_with("alpha "));
        alpha.sort_by(|a, b| {
            (b["timestamp"].as_str(), b["id"].as_str())
                .cmp(&(a["timestamp"].as_str(), a["id"].as_str()))
        });
        assert_eq!(
            messages(&every_page(&app, "q=alpha", 100).await),
            messages(&alpha)
        );
        app
    })
    .await;
}

#[tokio::test]
async fn bad_filters_are_422_naming_the_field() {
    each_app(|app| async move {
        for (query, field) in [
            ("level=fatal", "level"),
            ("level=error,", "level"),
            ("tenant=shop", "tenant"),
            ("service=billing", "service"),
            ("since=yesterday", "since"),
            ("until=2025-01-18", "until"),
            (
                "since=2025-01-18T10:00:00Z&until=2025-01-18T09:00:00Z",
                "until",
            ),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("cursor=abc", "cursor"),
            ("colour=red", "colour"),
        ] {
            let answer = app
                .get(&format!("/api/platform/logs?{query}"), &app.admin)
                .await;
            let (code, named) = answer.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(
                (code.as_str(), named.as_deref()),
                ("invalid_field", Some(field)),
                "{query}"
            );
        }
        let answer = app
            .get("/api/platform/logs/stream?cursor=x", &app.admin)
            .await;
        assert_eq!(
            answer.error(StatusCode::UNPROCESSABLE_ENTITY).1.as_deref(),
            Some("cursor")
        );
        app
    })
    .await;
}

#[tokio::test]
async fn reading_the_logs_needs_logs_read() {
    each_app(|app| async move {
        for path in ["/api/platform/logs", "/api/platform/logs/stream"] {
            assert_eq!(
                app.get(path, &app.viewer)
                    .await
                    .error(StatusCode::FORBIDDEN)
                    .0,
                "forbidden"
            );
            assert_eq!(
                app.get(path, &app.merchant_key)
                    .await
                    .error(StatusCode::FORBIDDEN)
                    .0,
                "forbidden"
            );
            assert_eq!(
                app.call(axum::http::Method::GET, path, None, None)
                    .await
                    .status,
                StatusCode::UNAUTHORIZED
            );
        }
        app.get("/api/platform/logs", &app.operator).await.ok();
        app
    })
    .await;
}

/// A live stream: the events of a real request's SSE body, read as they come.
struct Stream {
    body: Body,
    text: String,
}

impl Stream {
    async fn open(app: &TestApp, query: &str) -> Self {
        let request = Request::get(format!("/api/platform/logs/stream?{query}"))
            .header("authorization", format!("Bearer {}", app.admin))
            .body(Body::empty())
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// The next event, (name, data), within `within`; comments (keep-alives) skipped.
    async fn next(&mut self, within: std::time::Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let event: String = self.text.drain(..end + 2).collect();
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|line| line.strip_prefix(name).map(str::to_owned))
                };
                let (Some(name), Some(data)) = (field("event: "), field("data: ")) else {
                    continue;
                };
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(data) = frame.unwrap().into_data() {
                self.text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn the_stream_delivers_new_entries_within_a_second_filtered() {
    each_app(|app| async move {
        let mut errors = Stream::open(&app, "level=error&q=checkout").await;
        let started = std::time::Instant::now();
        record(&app, LogLevel::Info, "checkout page slow");
        record(&app, LogLevel::Error, "inventory sync failed");
        record(&app, LogLevel::Error, "checkout failed for order 7");
        let (name, entry) = errors
            .next(std::time::Duration::from_secs(1))
            .await
            .expect("an entry within 1 s");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(name, "log");
        assert_eq!(
            (&entry["message"], &entry["level"]),
            (&json!("checkout failed for order 7"), &json!("error"))
        );
        let stored = entries_once(&app, "level=error&q=checkout", 1).await;
        assert_eq!(stored[0], entry, "the stream's entry is the stored one");
        assert!(
            errors
                .next(std::time::Duration::from_millis(200))
                .await
                .is_none(),
            "nothing else matches"
        );
        app
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_how_many_it_missed() {
    each_store(|store| async {
        let app = TestApp::with_config(
            store,
            with_logs(LogsConfig {
                stream_entries: 2,
                ..LogsConfig::default()
            }),
        )
        .await;
        let mut stream = Stream::open(&app, "").await;
        for n in 0..10 {
            record(&app, LogLevel::Info, &format!("entry {n}"));
        }
        entries_once(&app, "", 10).await;
        // The writer publishes right after its commit.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let second = std::time::Duration::from_secs(1);
        assert_eq!(
            stream.next(second).await,
            Some(("lagged".to_owned(), json!({"missed": 8})))
        );
        let (_, eight) = stream.next(second).await.unwrap();
        let (_, nine) = stream.next(second).await.unwrap();
        assert_eq!(
            (&eight["message"], &nine["message"]),
            (&json!("entry 8"), &json!("entry 9"))
        );
        // And it goes on.
        record(&app, LogLevel::Info, "entry 10");
        assert_eq!(stream.next(second).await.unwrap().1["message"], "entry 10");
        app.store
    })
    .await;
}

#[tokio::test]
async fn debug_entries_are_stored_only_when_enabled() {
    each_store(|store| async {
        let app = TestApp::new(store).await;
        record(&app, LogLevel::Debug, "not kept");
        record(&app, LogLevel::Info, "kept");
        entries_once(&app, "", 1).await;
        let app = app
            .rebuilt(|parts| {
                parts.config(with_logs(LogsConfig {
                    store_debug: true,
                    ..LogsConfig::default()
                }))
            })
            .await;
        record(&app, LogLevel::Debug, "kept too");
        let found = entries_once(&app, "level=debug", 1).await;
        assert_eq!(found[0]["message"], "kept too");
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_full_buffer_drops_and_counts_instead_of_blocking() {
    each_store(|store| async {
        let app = TestApp::with_config(
            store,
            with_logs(LogsConfig {
                buffer_entries: 4,
                ..LogsConfig::default()
            }),
        )
        .await;
        // No await between the records: the writer cannot take any, so four fit.
        let started = std::time::Instant::now();
        for n in 0..50 {
            record(&app, LogLevel::Info, &format!("entry {n}"));
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(100),
            "never waits"
        );
        entries_once(&app, "", 4).await;
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("platform_logs_dropped_total{reason=\"buffer_full\"} 46"),
            "{metrics}"
        );
        assert!(
            metrics.contains("platform_logs_written_total 4"),
            "{metrics}"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn retention_keeps_each_level_its_days_and_drops_old_months() {
    each_store(|store| async {
        let app = TestApp::with_config(
            store,
            with_logs(LogsConfig {
                store_debug: true,
                ..LogsConfig::default()
            }),
        )
        .await;
        let prune = || async {
            app.state
                .store
                .prune(&RetentionConfig::default(), app.clock.now())
                .await
                .unwrap()
        };
        // The job prepares the months ahead first (on PostgreSQL).
        prune().await;
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
        ] {
            record(&app, level, "old");
        }
        entries_once(&app, "", 4).await;
        let levels = |found: Vec<Value>| -> Vec<String> {
            found
                .iter()
                .map(|e| e["level"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut elapsed = 0;
        for (days, kept) in [
            (0, vec!["debug", "info", "warn", "error"]),
            (2, vec!["info", "warn", "error"]),
            (8, vec!["warn", "error"]),
            (15, vec!["error"]),
            (31, vec![]),
        ] {
            app.clock
                .advance(Duration::days(days - elapsed) + Duration::minutes(1));
            elapsed = days;
            // A fresh entry stays whatever the old ones' fate (even a debug one, for a day).
            let fresh = format!("fresh{days}");
            record(&app, LogLevel::Debug, &fresh);
            entries_once(&app, &format!("q={fresh}"), 1).await;
            prune().await;
            assert_eq!(
                levels(entries(&app, "q=old").await),
                kept,
                "after {days} days (newest first)"
            );
            assert_eq!(
                entries(&app, &format!("q={fresh}")).await.len(),
                1,
                "after {days} days"
            );
        }
        if !app.store.url.starts_with("sqlite:") {
            app.clock.advance(Duration::days(75 - elapsed));
            let pruned = prune().await;
            assert!(
                pruned
                    .partitions_dropped
                    .contains(&"platform_logs_y2025m01".to_owned()),
                "{pruned:?}"
            );
            assert_eq!(
                app.store
                    .count("SELECT COUNT(*) FROM platform_logs_default")
                    .await,
                0,
                "every entry in its month"
            );
            let month = app.clock.now().format("platform_logs_y%Ym%m").to_string();
            let exists = format!(
                "SELECT COUNT(*) FROM (SELECT to_regclass('{month}') AS t) m WHERE t IS NOT NULL"
            );
            assert_eq!(app.store.count(&exists).await, 1, "{month} kept");
        }
        app.store
    })
    .await;
}

#[tokio::test]
async fn error_entries_are_grouped_with_the_plugins_errors() {
    each_app(|app| async move {
        for waited in [5000, 12000] {
            app.state.platform_log.record(
                NewLogEntry::new(
                    LogLevel::Error,
                    LogService::Ops,
                    "job.failed",
                    format!("store unavailable after {waited} ms while job daily_health ran"),
                )
                .merchant(app.merchant_id),
            );
        }
        record(
            &app,
            LogLevel::Warn,
            "store unavailable after 5000 ms (a warning is not grouped)",
        );
        entries_once(&app, "level=error,warn", 3).await;
        let groups = app.get("/api/platform/errors", &app.operator).await;
        let groups = groups.ok()["groups"].as_array().unwrap().clone();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0]["events"], 2);
        assert_eq!(groups[0]["installs"], 0);
        assert_eq!(groups[0]["merchants"], 1);
        let detail = app
            .get(
                &format!("/api/platform/errors/{}", groups[0]["id"].as_str().unwrap()),
                &app.operator,
            )
            .await;
        let samples = detail.ok()["sample_events"].as_array().unwrap().clone();
        assert_eq!(samples.len(), 2);
        assert!(
            samples.iter().all(|sample| sample["source"] == "log"),
            "{samples:#?}"
        );
        app
    })
    .await;
}
