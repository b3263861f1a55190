//! Error groups through HTTP on both backends: plugins' error events (telemetry `error` and
//! `payment_failed`, interop `plugin.error`) grouped by fingerprint, with their counts, the
//! rule that matches them, samples and hourly counts; Ops' status changes (audited, a
//! resolved group reopens on recurrence, an ignored one stays ignored); and the store reads
//! the detector and retention use.

use crate::support::{each_store, repo, TestApp, TestResponse};
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};
use uuid::Uuid;

const ERRORS: &str = "/api/platform/errors";

/// The message, with numbers of its own for `n`.
fn memory(n: u64) -> String {
    format!(
        "PHP Fatal error: Allowed memory size of {} bytes exhausted (tried to allocate {} bytes)",
        134_217_728 * (n % 3 + 1),
        20_480 + 4_096 * n
    )
}

const COLUMN: &str = "WordPress database error Unknown column 'merchant_fee' in field list";

/// One plugin install: the key it posts with and where it runs.
struct Site {
    key: String,
    merchant_id: Uuid,
    cms: &'static str,
    url: String,
    id: Uuid,
}

async fn with_shipped_rules(store: crate::support::TestStore) -> TestApp {
    TestApp::with_rules(store, &repo().join("rules")).await
}

/// A site of the merchant of `key`, after its first heartbeat.
async fn site(app: &TestApp, key: &str, merchant_id: Uuid, cms: &'static str, host: &str) -> Site {
    let url = format!("https://{host}/");
    let body = json!({"cms": cms, "site_url": url, "plugin_version": "1.3.5"});
    let response = app.post("/api/v1/plugins/heartbeat", key, &body).await;
    let id = response.ok()["installation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Site {
        key: key.to_owned(),
        merchant_id,
        cms,
        url,
        id,
    }
}

/// Three installs: two of the app's merchant, one of another (on another platform).
async fn three_sites(app: &TestApp) -> [Site; 3] {
    let (other_id, other_key) = app.create_merchant("Other Shop").await;
    [
        site(
            app,
            &app.merchant_key,
            app.merchant_id,
            "woocommerce",
            "a.example",
        )
        .await,
        site(
            app,
            &app.merchant_key,
            app.merchant_id,
            "woocommerce",
            "b.example",
        )
        .await,
        site(app, &other_key, other_id, "magento", "c.example").await,
    ]
}

/// Posts an interop event of type `plugin.error`.
async fn report_interop(app: &TestApp, site: &Site, payload: Value) -> TestResponse {
    let body = json!({"plugin_id": site.id, "event_type": "plugin.error", "payload": payload});
    app.post("/api/v1/plugins/interop/event", &site.key, &body)
        .await
}

/// Posts a telemetry event; its id.
async fn report(
    app: &TestApp,
    site: &Site,
    event_type: &str,
    message: Option<&str>,
    trace: Option<&str>,
) -> Uuid {
    let body = json!({
        "merchant_id": site.merchant_id, "cms": site.cms, "site_url": site.url,
        "event_type": event_type, "message": message, "stack_trace": trace,
    });
    let response = app.post("/api/v1/plugins/event", &site.key, &body).await;
    response.ok()["event_id"].as_str().unwrap().parse().unwrap()
}

/// The groups `query` lists, as the operator reads them.
async fn groups(app: &TestApp, query: &str) -> Vec<Value> {
    let page = app.get(&format!("{ERRORS}{query}"), &app.operator).await;
    page.ok()["groups"].as_array().unwrap().clone()
}

/// The one group listed whose title contains `text`.
async fn group(app: &TestApp, text: &str) -> Value {
    let found = groups(app, &format!("?q={}", text.replace(' ', "+"))).await;
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn one_message_from_three_installs_is_one_group_with_its_rule() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, b, c] = three_sites(&app).await;
        let mut n = 0;
        for (site, times) in [(&a, 3), (&b, 2), (&c, 1)] {
            for _ in 0..times {
                n += 1;
                report(&app, site, "error", Some(&memory(n)), None).await;
            }
        }
        let listed = groups(&app, "").await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let memory_group = &listed[0];
        assert_eq!(memory_group["events"], 6);
        assert_eq!(memory_group["installs"], 3);
        assert_eq!(memory_group["merchants"], 2);
        assert_eq!(memory_group["rule"], "memory_limit_exceeded");
        assert_eq!(memory_group["status"], "unresolved");
        assert_eq!(
            memory_group["title"],
            memory(1),
            "the first event's message"
        );
        assert_eq!(memory_group["fingerprint_version"], 1);
        assert_eq!(memory_group["fingerprint"].as_str().unwrap().len(), 64);
        let pattern = memory_group["pattern"].as_str().unwrap();
        assert!(
            !pattern.contains("134217728") && pattern.contains("Allowed memory size"),
            "{pattern}"
        );
        assert_eq!(memory_group["frames"], json!([]));
        assert_eq!(memory_group["first_seen"], memory_group["last_seen"]);

        // Another message is another group, with its own rule; the newest seen comes first.
        app.clock.advance(Duration::minutes(1));
        report(&app, &a, "error", Some(COLUMN), None).await;
        let listed = groups(&app, "").await;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["title"], COLUMN);
        assert_eq!(listed[0]["rule"], "missing_database_column");
        assert_eq!(
            (listed[0]["events"].clone(), listed[0]["installs"].clone()),
            (json!(1), json!(1))
        );

        // Failed payments group as well, by their parameterized message; no rule knows them.
        app.clock.advance(Duration::minutes(1));
        report(
            &app,
            &b,
            "payment_failed",
            Some("Order #1231 failed: card declined"),
            None,
        )
        .await;
        report(
            &app,
            &c,
            "payment_failed",
            Some("Order #998 failed: card declined"),
            None,
        )
        .await;
        // An event without a message, or of another type, is not an error to group.
        report(&app, &c, "payment_failed", None, None).await;
        report(&app, &c, "payment_success", Some("Order #998 paid"), None).await;
        let declined = group(&app, "card declined").await;
        assert_eq!(declined["events"], 2);
        assert_eq!(declined["installs"], 2);
        assert_eq!(declined["merchants"], 2);
        assert_eq!(declined["rule"], Value::Null);
        assert_eq!(groups(&app, "").await.len(), 3);

        // An event before the install's first heartbeat: its merchant counts, no install.
        let (late_id, late_key) = app.create_merchant("Late Shop").await;
        let unseen = Site {
            key: late_key,
            merchant_id: late_id,
            cms: "prestashop",
            url: "https://d.example/".into(),
            id: Uuid::nil(),
        };
        report(&app, &unseen, "error", Some(&memory(99)), None).await;
        let memory_group = group(&app, "allowed memory").await;
        assert_eq!(
            (
                memory_group["events"].clone(),
                memory_group["installs"].clone(),
                memory_group["merchants"].clone()
            ),
            (json!(7), json!(3), json!(3))
        );

        // The list's filters and pages.
        assert_eq!(
            group(&app, "ALLOWED MEMORY").await["id"],
            memory_group["id"],
            "any case"
        );
        assert!(
            groups(&app, "?q=100%25").await.is_empty(),
            "a % is text, not a wildcard"
        );
        let since = (app.clock.now() - Duration::seconds(30))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let recent = groups(&app, &format!("?since={since}")).await;
        assert_eq!(recent.len(), 2, "{recent:?}");
        let mut seen = Vec::new();
        let mut query = "?limit=2".to_owned();
        loop {
            let page = app.get(&format!("{ERRORS}{query}"), &app.operator).await;
            let page = page.ok().clone();
            seen.extend(
                page["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g["id"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        let all: Vec<Value> = groups(&app, "")
            .await
            .iter()
            .map(|g| g["id"].clone())
            .collect();
        assert_eq!(
            seen, all,
            "the pages hold every group once, in the list's order"
        );
        assert!(groups(&app, "?status=resolved").await.is_empty());
        let (_, field) = app
            .get(&format!("{ERRORS}?status=fixed"), &app.operator)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("status"));
        let (_, field) = app
            .get(&format!("{ERRORS}?cursor=nope"), &app.operator)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("cursor"));
        let (_, field) = app
            .get(&format!("{ERRORS}?limit=0"), &app.operator)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("limit"));
        app.store
    })
    .await;
}

#[tokio::test]
async fn the_detail_shows_samples_hourly_counts_and_top_installs() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, b, _] = three_sites(&app).await;
        let mut sent = Vec::new();
        for n in 0..2 {
            app.clock.advance(Duration::seconds(1));
            sent.push(report(&app, &a, "error", Some(&memory(n)), None).await);
        }
        app.clock.advance(Duration::hours(2) + Duration::minutes(5));
        for n in 2..5 {
            app.clock.advance(Duration::seconds(1));
            sent.push(report(&app, &b, "error", Some(&memory(n)), None).await);
        }
        let id = group(&app, "allowed memory").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let detail = app.get(&format!("{ERRORS}/{id}"), &app.operator).await;
        let detail = detail.ok();
        assert_eq!(detail["events"], 5);
        assert_eq!(detail["rule"], "memory_limit_exceeded");

        // The newest first, each pointing at its telemetry event, with its real message.
        let samples = detail["sample_events"].as_array().unwrap();
        let ids: Vec<Value> = samples.iter().map(|s| s["source_id"].clone()).collect();
        let newest_first: Vec<Value> = sent.iter().rev().map(|id| json!(id)).collect();
        assert_eq!(ids, newest_first);
        assert_eq!(samples[0]["source"], "telemetry");
        assert_eq!(samples[0]["message"], memory(4));
        assert_eq!(samples[0]["installation_id"], json!(b.id));
        assert_eq!(samples[0]["merchant_id"], json!(b.merchant_id));
        assert_eq!(samples[0]["cms"], "woocommerce");

        // 48 hours, zero-filled, the current one last: 2 events two hours ago, 3 in this one.
        let hourly = detail["hourly"].as_array().unwrap();
        assert_eq!(hourly.len(), 48);
        let counts: Vec<i64> = hourly
            .iter()
            .map(|h| h["events"].as_i64().unwrap())
            .collect();
        assert_eq!(&counts[45..], &[2, 0, 3]);
        assert_eq!(counts.iter().sum::<i64>(), 5);
        assert_eq!(hourly[47]["hour"], "2025-01-18T12:00:00Z");
        let three = app
            .get(&format!("{ERRORS}/{id}?hours=3"), &app.operator)
            .await;
        assert_eq!(three.ok()["hourly"].as_array().unwrap().len(), 3);
        for hours in ["0", "721", "x"] {
            let (_, field) = app
                .get(&format!("{ERRORS}/{id}?hours={hours}"), &app.operator)
                .await
                .error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(field.as_deref(), Some("hours"));
        }

        let top = detail["top_installs"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0]["installation_id"].clone(), top[0]["events"].clone()),
            (json!(b.id), json!(3))
        );
        assert_eq!(
            (top[1]["installation_id"].clone(), top[1]["events"].clone()),
            (json!(a.id), json!(2))
        );

        let unknown = app
            .get(&format!("{ERRORS}/{}", Uuid::now_v7()), &app.operator)
            .await;
        assert_eq!(unknown.error(StatusCode::NOT_FOUND).0, "not_found");
        let (_, field) = app
            .get(&format!("{ERRORS}/not-a-uuid"), &app.operator)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("id"));
        app.store
    })
    .await;
}

#[tokio::test]
async fn status_changes_are_audited_and_a_resolved_group_reopens_when_it_recurs() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, _, _] = three_sites(&app).await;
        report(&app, &a, "error", Some(&memory(1)), None).await;
        report(&app, &a, "error", Some(COLUMN), None).await;
        let id = group(&app, "allowed memory").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let status = format!("{ERRORS}/{id}/status");

        app.clock.advance(Duration::minutes(1));
        let resolved = app
            .post(
                &status,
                &app.admin,
                &json!({"status": "resolved", "reason": "memory_limit raised to 256M"}),
            )
            .await;
        let resolved = resolved.ok();
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["status_changed_by"], json!(app.admin_id));
        assert_eq!(resolved["status_changed_at"], "2025-01-18T10:01:00Z");
        assert_eq!(resolved["rule"], "memory_limit_exceeded");
        assert_eq!(
            groups(&app, "").await.len(),
            1,
            "the default list is the unresolved groups"
        );
        assert_eq!(groups(&app, "?status=resolved").await[0]["id"], json!(id));

        let audit = app
            .get("/api/v1/audit?action=error_group.", &app.admin)
            .await;
        let audit = audit.ok().as_array().unwrap().clone();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0]["action"], "error_group.status");
        assert_eq!(audit[0]["target_type"], "error_group");
        assert_eq!(audit[0]["target_id"], json!(id));
        assert_eq!(audit[0]["actor_id"], json!(app.admin_id));
        assert_eq!(audit[0]["details"]["from"], "unresolved");
        assert_eq!(audit[0]["details"]["to"], "resolved");
        assert_eq!(audit[0]["details"]["reason"], "memory_limit raised to 256M");

        // It happens again: the group is open again, reopened by the server.
        app.clock.advance(Duration::minutes(1));
        report(&app, &a, "error", Some(&memory(2)), None).await;
        let reopened = group(&app, "allowed memory").await;
        assert_eq!(reopened["status"], "unresolved");
        assert_eq!(reopened["status_changed_by"], Value::Null);
        assert_eq!(reopened["status_changed_at"], "2025-01-18T10:02:00Z");
        assert_eq!(reopened["events"], 2);

        // An ignored group stays ignored, and keeps counting.
        let ignored = app
            .post(
                &status,
                &app.operator,
                &json!({"status": "ignored", "reason": "a test site"}),
            )
            .await;
        assert_eq!(ignored.ok()["status"], "ignored");
        report(&app, &a, "error", Some(&memory(3)), None).await;
        let ignored = groups(&app, "?status=ignored").await;
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0]["events"], 3);
        let reopen = app
            .post(
                &status,
                &app.operator,
                &json!({"status": "unresolved", "reason": "worth a look after all"}),
            )
            .await;
        assert_eq!(reopen.ok()["status"], "unresolved");
        let audit = app
            .get("/api/v1/audit?action=error_group.", &app.admin)
            .await;
        assert_eq!(audit.ok().as_array().unwrap().len(), 3);

        // Refusals: a status that is none, no reason, no such group, and who may not.
        let (_, field) = app
            .post(
                &status,
                &app.operator,
                &json!({"status": "fixed", "reason": "x"}),
            )
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("status"));
        let (_, field) = app
            .post(
                &status,
                &app.operator,
                &json!({"status": "resolved", "reason": " "}),
            )
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.as_deref(), Some("reason"));
        let unknown = format!("{ERRORS}/{}/status", Uuid::now_v7());
        let missing = app
            .post(
                &unknown,
                &app.operator,
                &json!({"status": "resolved", "reason": "x"}),
            )
            .await;
        assert_eq!(missing.error(StatusCode::NOT_FOUND).0, "not_found");
        for token in [&app.viewer, &app.merchant_key] {
            app.get(ERRORS, token).await.error(StatusCode::FORBIDDEN);
            app.get(&format!("{ERRORS}/{id}"), token)
                .await
                .error(StatusCode::FORBIDDEN);
            app.post(
                &status,
                token,
                &json!({"status": "resolved", "reason": "x"}),
            )
            .await
            .error(StatusCode::FORBIDDEN);
        }
        app.get(ERRORS, &app.sira)
            .await
            .error(StatusCode::FORBIDDEN);
        let audit = app
            .get("/api/v1/audit?action=error_group.", &app.admin)
            .await;
        assert_eq!(
            audit.ok().as_array().unwrap().len(),
            3,
            "nothing refused was audited"
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn plugin_error_interop_events_are_grouped_once_per_event() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, b, _] = three_sites(&app).await;
        // `plugin.error` is in the normalized vocabulary: it passes through as it is.
        let first = report_interop(&app, &a, json!({"message": memory(1), "order_id": "1"})).await;
        let first_id = first.ok()["event_id"].clone();
        app.clock.advance(Duration::seconds(1));
        let again = report_interop(&app, &a, json!({"message": memory(1), "order_id": "1"})).await;
        assert_eq!(again.ok()["duplicate"], true);
        report_interop(&app, &b, json!({"message": memory(2), "order_id": "2"}))
            .await
            .ok();
        // Without a message there is nothing to group.
        report_interop(&app, &b, json!({"order_id": "3"}))
            .await
            .ok();
        // The same error from telemetry joins the same group.
        app.clock.advance(Duration::seconds(1));
        report(&app, &a, "error", Some(&memory(3)), None).await;

        let memory_group = group(&app, "allowed memory").await;
        assert_eq!(
            memory_group["events"], 3,
            "a redelivery is not another occurrence"
        );
        assert_eq!(memory_group["installs"], 2);
        assert_eq!(groups(&app, "").await.len(), 1);
        let detail = app
            .get(
                &format!("{ERRORS}/{}", memory_group["id"].as_str().unwrap()),
                &app.operator,
            )
            .await;
        let samples = detail.ok()["sample_events"].as_array().unwrap().clone();
        let sources: Vec<&str> = samples
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        assert_eq!(sources, ["telemetry", "interop", "interop"]);
        assert_eq!(samples[2]["source_id"], first_id);
        assert_eq!(samples[2]["cms"], "woocommerce");
        app.store
    })
    .await;
}

#[tokio::test]
async fn stack_traces_group_by_their_frames_not_their_line_numbers() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, b, c] = three_sites(&app).await;
        let trace = |line: u32, method: &str| {
            format!(
                "#0 /home/shop{line}/public_html/wp-content/plugins/molam-pay/includes/class-gateway.php({line}): Molam_Gateway->{method}(Array)\n\
                 #1 /var/www/wp-content/plugins/woocommerce/includes/class-wc-checkout.php({}): WC_Checkout->process_order_payment(1231, 'molam')\n\
                 #2 {{main}}",
                line + 700
            )
        };
        let message = "Uncaught TypeError: Argument 1 passed must be of the type array, null given";
        report(&app, &a, "error", Some(message), Some(&trace(214, "process_payment"))).await;
        report(&app, &b, "error", Some(message), Some(&trace(230, "process_payment"))).await;
        // The same message from elsewhere in the code is another error.
        report(&app, &c, "error", Some(message), Some(&trace(214, "refund"))).await;

        let listed = groups(&app, "").await;
        assert_eq!(listed.len(), 2, "{listed:#?}");
        let by_events = |events: i64| listed.iter().find(|g| g["events"] == events).unwrap().clone();
        let payment = by_events(2);
        assert_eq!(payment["installs"], 2);
        let frames = payment["frames"].as_array().unwrap();
        assert!(!frames.is_empty());
        assert!(frames.iter().all(|frame| !frame.as_str().unwrap().contains("214")), "{frames:?}");
        assert_ne!(by_events(1)["fingerprint"], payment["fingerprint"]);
        app.store
    })
    .await;
}

#[tokio::test]
async fn bursts_are_counted_per_install_and_retention_keeps_the_groups() {
    each_store(|store| async {
        let app = with_shipped_rules(store).await;
        let [a, b, _] = three_sites(&app).await;
        let store = &app.store.store;
        let start = app.clock.now();
        // An old one, outside the window, then four in the window on `a`, one on `b`.
        report(&app, &a, "error", Some(&memory(0)), None).await;
        app.clock.advance(Duration::minutes(30));
        let window = app.clock.now();
        let mut on_a = Vec::new();
        for n in 1..=4 {
            app.clock.advance(Duration::minutes(2));
            on_a.push(report(&app, &a, "error", Some(&memory(n)), None).await);
        }
        report(&app, &b, "error", Some(&memory(5)), None).await;
        report(&app, &a, "error", Some(COLUMN), None).await;

        let bursts = store.error_bursts(window, 3, 10).await.unwrap();
        assert_eq!(bursts.len(), 1, "{bursts:?}");
        let burst = &bursts[0];
        let memory_group = group(&app, "allowed memory").await;
        assert_eq!(json!(burst.group_id), memory_group["id"]);
        assert_eq!(json!(burst.fingerprint), memory_group["fingerprint"]);
        assert_eq!(json!(burst.title), memory_group["title"]);
        assert_eq!(
            (burst.installation_id, burst.merchant_id, burst.cms.as_str()),
            (a.id, a.merchant_id, "woocommerce")
        );
        assert_eq!(burst.events, 4);
        assert_eq!(
            (burst.first_at, burst.last_at),
            (window + Duration::minutes(2), window + Duration::minutes(8))
        );
        assert_eq!(burst.last_message, memory(4));
        // A lower threshold sees more; an ignored group is no burst.
        assert_eq!(store.error_bursts(window, 1, 10).await.unwrap().len(), 3);
        assert_eq!(
            store.error_bursts(window, 1, 1).await.unwrap()[0].events,
            4,
            "most first"
        );

        let cited = store
            .error_occurrences_of(burst.group_id, a.id, window, 10)
            .await
            .unwrap();
        let cited: Vec<Uuid> = cited.iter().map(|o| o.source_id).collect();
        assert_eq!(
            cited,
            on_a.iter().rev().copied().collect::<Vec<_>>(),
            "newest first"
        );
        assert_eq!(
            store
                .error_occurrences_of(burst.group_id, a.id, start, 2)
                .await
                .unwrap()
                .len(),
            2
        );

        let status = format!("{ERRORS}/{}/status", burst.group_id);
        app.post(
            &status,
            &app.operator,
            &json!({"status": "ignored", "reason": "known"}),
        )
        .await
        .ok();
        assert!(store.error_bursts(window, 3, 10).await.unwrap().is_empty());

        // Retention removes the occurrences past their days; the groups and their counters stay.
        app.clock.advance(Duration::days(31));
        let pruned = store
            .prune(
                &api::ops::retention::RetentionConfig::default(),
                app.clock.now(),
            )
            .await
            .unwrap();
        assert_eq!(pruned.rows.get("error_occurrences"), Some(&7), "{pruned:?}");
        let kept = app
            .get(&format!("{ERRORS}/{}", burst.group_id), &app.operator)
            .await;
        let kept = kept.ok();
        assert_eq!(
            (kept["events"].clone(), kept["installs"].clone()),
            (json!(6), json!(2))
        );
        assert_eq!(kept["sample_events"], json!([]));
        assert_eq!(
            app.store
                .count("SELECT COUNT(*) FROM error_occurrences")
                .await,
            0
        );
        assert_eq!(
            app.store.count("SELECT COUNT(*) FROM error_groups").await,
            2
        );
        app.store
    })
    .await;
}
