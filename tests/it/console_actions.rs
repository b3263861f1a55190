//! The console's actions beyond blocking: healing review (approve with edited params,
//! reject, rollback refused), toggles with expiry and bad values, upgrade notices, alerts,
//! interop mappings, flags; each refusal names its field, each change is the API's.

use crate::console::{pending_detection, toggles_of, woo, Browser};
use crate::support::{each_store, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// A refused form: its path, its fields, the status and what the page must say.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, &'a str);

/// Posts each refused form and checks its answer.
async fn check_refused(browser: &mut Browser<'_>, cases: &[Refusal<'_>]) {
    for (path, fields, status, says) in cases {
        let page = browser.post(path, fields).await;
        assert_eq!(page.status, *status, "{path} {fields:?}: {}", page.html);
        assert!(
            page.html.contains(says),
            "{path} {fields:?}: {says:?} not in {}",
            page.html
        );
    }
}

#[tokio::test]
async fn the_healing_review_checks_an_edit_by_dry_run_before_it_is_accepted() {
    each_store(|store| async move {
        let app = TestApp::healing(store, api::healing::HealingConfig::default()).await;
        let install = app.heartbeat(woo("https://review.example")).await;
        let first = pending_detection(&app, install).await;
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        browser
            .get("/console/overview/figures")
            .await
            .assert_ok("Healing queue: 1 waiting for review");
        let page = browser.get(&format!("/console/healing/{first}")).await;
        page.assert_ok("Decision trace");
        assert!(page.html.contains("Approve") && page.html.contains("Reject"));
        assert!(
            !page.html.contains("Roll back"),
            "a pending patch cannot be rolled back"
        );
        browser
            .get("/console/healing?status=pending_review&issue_severity=high&cms=woocommerce")
            .await
            .assert_ok(&first);

        let approve = format!("/console/healing/{first}/approve");
        let reject = format!("/console/healing/{first}/reject");
        let rollback = format!("/console/healing/{first}/rollback");
        check_refused(
            &mut browser,
            &[
                (
                    &approve,
                    vec![("params", "{not json")],
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "<code>params</code>: is not JSON",
                ),
                (
                    &approve,
                    vec![("params", "[1]")],
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "<code>params</code>: must be a JSON object",
                ),
                (
                    &approve,
                    vec![("patch_name", "no-such-patch")],
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "<code>patch.name</code>",
                ),
                (
                    &approve,
                    vec![("params", r#"{"column_type": "DROP TABLE"}"#)],
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "<code>patch.params</code>",
                ),
                (
                    &reject,
                    vec![],
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "<code>reason</code>: is required",
                ),
                (
                    &rollback,
                    vec![("reason", "undo")],
                    StatusCode::CONFLICT,
                    "409",
                ),
            ],
        )
        .await;
        assert!(
            app.get(
                &format!("/api/v1/plugins/autoheal/commands/{install}"),
                &app.merchant_key
            )
            .await
            .ok()
            .as_array()
            .unwrap()
            .is_empty(),
            "nothing was queued by a refused edit"
        );

        let approved = browser
            .post(
                &approve,
                &[("params", r#"{"column_type": "DECIMAL(12,2)"}"#)],
            )
            .await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.html);
        browser
            .get(&format!("/console/healing/{first}"))
            .await
            .assert_ok("Patch approved: dry run clean, command queued for the plugin.");
        let log = app
            .get(&format!("/api/v1/plugins/autoheal/{first}"), &app.viewer)
            .await;
        assert_eq!(log.ok()["status"], "approved");
        assert_eq!(log.body["patch_params"]["column_type"], "DECIMAL(12,2)");
        assert_eq!(
            log.body["reviewed_by"],
            json!(
                app.state
                    .store
                    .sign_in_candidate("operator@ops.test")
                    .await
                    .unwrap()
                    .unwrap()
                    .agent_id
            )
        );
        let commands = app
            .get(
                &format!("/api/v1/plugins/autoheal/commands/{install}"),
                &app.merchant_key,
            )
            .await;
        assert_eq!(commands.ok().as_array().unwrap().len(), 1);
        // The install page and the log show the command, not yet acked.
        for page in [
            format!("/console/installs/{install}"),
            format!("/console/healing/{first}"),
        ] {
            let page = browser.get(&page).await;
            page.assert_ok("not acked");
            assert!(page.html.contains("<td>apply_patch <a"), "{}", page.html);
        }

        let second =
            pending_detection(&app, app.heartbeat(woo("https://review-2.example")).await).await;
        let rejected = browser
            .post(
                &format!("/console/healing/{second}/reject"),
                &[("reason", "not on a Friday")],
            )
            .await;
        assert_eq!(rejected.status, StatusCode::SEE_OTHER);
        assert_eq!(
            app.get(&format!("/api/v1/plugins/autoheal/{second}"), &app.viewer)
                .await
                .ok()["status"],
            "rejected"
        );
        let audit = app.get("/api/v1/audit?limit=500", &app.admin).await;
        let actions: Vec<&str> = audit
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.iter().any(|a| a.contains("approve"))
                && actions.iter().any(|a| a.contains("reject")),
            "{actions:?}"
        );

        // An approval whose dry run plans nothing (the column is already there) says so.
        let mut has_column = woo("https://review-done.example");
        has_column["state"]["tables"]["wp_molam_orders"]["merchant_fee"] = json!("DECIMAL(10,2)");
        let done = pending_detection(&app, app.heartbeat(has_column).await).await;
        let approved = browser
            .post(&format!("/console/healing/{done}/approve"), &[])
            .await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.html);
        let page = browser.get(&format!("/console/healing/{done}")).await;
        page.assert_ok("Nothing to do: the install already has what the patch would change; nothing was queued.");
        assert!(!page.html.contains("Dry run failed"), "{}", page.html);

        // A viewer reads the log but gets no form, and a forged approval is refused.
        let mut viewer = Browser::signed_in(&app, "viewer@ops.test").await;
        let page = viewer.get(&format!("/console/healing/{second}")).await;
        page.assert_ok("Decision trace");
        assert!(!page.html.contains("Reject"));
        let third =
            pending_detection(&app, app.heartbeat(woo("https://review-3.example")).await).await;
        let forged = viewer
            .post(&format!("/console/healing/{third}/approve"), &[])
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        app.store
    })
    .await;
}

#[tokio::test]
async fn toggles_notices_alerts_mappings_and_flags_from_the_console() {
    each_store(|store| async move {
        let app = TestApp::new(store).await;
        let install = app.heartbeat(woo("https://toggles.example")).await;
        let mut browser = Browser::signed_in(&app, "admin@ops.test").await;
        browser.get(&format!("/console/installs/{install}")).await.assert_ok("Set toggle");
        let toggle = format!("/console/installs/{install}/toggle");
        check_refused(&mut browser, &[
            (&toggle, vec![("toggle_key", "self_destruct"), ("reason", "x")], StatusCode::UNPROCESSABLE_ENTITY, "<code>toggle_key</code>"),
            (&toggle, vec![("toggle_key", "rate_limit"), ("toggle_value", "lots"), ("reason", "x")], StatusCode::UNPROCESSABLE_ENTITY, "<code>toggle_value</code>"),
            (&toggle, vec![("toggle_key", "rate_limit"), ("toggle_value", "0"), ("reason", "x")], StatusCode::UNPROCESSABLE_ENTITY, "<code>toggle_value</code>"),
            (&toggle, vec![("toggle_key", "enable_debug"), ("toggle_value", "true")], StatusCode::UNPROCESSABLE_ENTITY, "<code>reason</code>"),
            (&toggle, vec![("toggle_key", "enable_debug"), ("reason", "x"), ("expires_at", "tomorrow")], StatusCode::UNPROCESSABLE_ENTITY, "<code>expires_at</code>"),
            (&toggle, vec![("toggle_key", "enable_debug"), ("reason", "x"), ("expires_at", "2020-01-01T00:00")], StatusCode::UNPROCESSABLE_ENTITY, "must be in the future"),
            (&toggle, vec![("toggle_key", "enable_debug"), ("reason", "x\u{0}y")], StatusCode::UNPROCESSABLE_ENTITY, "<code>reason</code>"),
        ])
        .await;
        let expires = (app.clock.now() + chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M").to_string();
        let set = browser
            .post(&toggle, &[("toggle_key", "rate_limit"), ("toggle_value", "120"), ("reason", "noisy"), ("expires_at", &expires)])
            .await;
        assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.html);
        assert_eq!(toggles_of(&app, &woo("https://toggles.example")).await["rate_limit"], 120);
        app.clock.advance(chrono::Duration::hours(3));
        assert_eq!(toggles_of(&app, &woo("https://toggles.example")).await["rate_limit"], Value::Null, "the toggle expired");
        // Three idle hours ended the session, too.
        browser.get("/console/").await.assert_sign_in();
        let mut browser = Browser::signed_in(&app, "admin@ops.test").await;

        // No release registered: the notice is refused with the service's reason.
        let notify = browser.post(&format!("/console/installs/{install}/notify"), &[("channel", "email")]).await;
        assert_eq!(notify.status, StatusCode::CONFLICT);
        assert!(notify.html.contains("no latest version is registered for woocommerce"), "{}", notify.html);

        // Alerts: acknowledge, then resolve; twice is a conflict.
        let alert = app
            .state
            .store
            .raise_alert(
                &api::ops::NewAlert { name: "ConsoleTest".into(), severity: "warning", summary: "something".into(), labels: json!({"k": "v"}) },
                &[],
                app.clock.now(),
            )
            .await
            .unwrap()
            .unwrap();
        browser.get("/console/alerts?status=open").await.assert_ok("ConsoleTest");
        let ack = format!("/console/alerts/{}/acknowledge", alert.id);
        assert_eq!(browser.post(&ack, &[]).await.status, StatusCode::SEE_OTHER);
        assert_eq!(browser.post(&ack, &[]).await.status, StatusCode::CONFLICT);
        let resolve = format!("/console/alerts/{}/resolve", alert.id);
        assert_eq!(browser.post(&resolve, &[]).await.status, StatusCode::SEE_OTHER);
        let stored = app.get("/api/platform/alerts?status=resolved", &app.viewer).await;
        assert!(stored.ok().as_array().unwrap().iter().any(|a| a["id"] == json!(alert.id)));

        // A mapping: the engine's refusal names the field; a good one is in force.
        check_refused(&mut browser, &[
            ("/console/interop/mappings", vec![("source_platform", "magento"), ("source_event_type", "sales_order_payment_pay"),
                ("normalized_event_type", "payment.succeeded"), ("field_mappings", "{\"entity_id\": 5}")],
             StatusCode::UNPROCESSABLE_ENTITY, "field_mappings"),
            ("/console/interop/mappings", vec![("source_platform", "magento"), ("source_event_type", "x")],
             StatusCode::UNPROCESSABLE_ENTITY, "<code>normalized_event_type</code>: is required"),
        ])
        .await;
        let saved = browser
            .post("/console/interop/mappings", &[("source_platform", "magento"), ("source_event_type", "sales_order_payment_pay"),
                ("normalized_event_type", "payment.succeeded"),
                ("field_mappings", r#"{"entity_id": "order_id", "grand_total": "amount", "order_currency_code": "currency"}"#)])
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        let mappings = app.get("/api/v1/plugins/interop/mappings?source_platform=magento", &app.viewer).await;
        assert!(mappings.ok().to_string().contains("sales_order_payment_pay"), "{}", mappings.body);
        browser.get("/console/interop").await.assert_ok("sales_order_payment_pay");
        browser
            .get("/console/interop?edit_platform=magento&edit_event=sales_order_payment_pay")
            .await
            .assert_ok("Edit mapping magento sales_order_payment_pay");
        let deactivated = browser
            .post("/console/interop/mappings", &[("source_platform", "magento"), ("source_event_type", "sales_order_payment_pay"),
                ("normalized_event_type", "payment.succeeded"),
                ("field_mappings", r#"{"entity_id": "order_id", "grand_total": "amount", "order_currency_code": "currency"}"#),
                ("is_active", "false")])
            .await;
        assert_eq!(deactivated.status, StatusCode::SEE_OTHER, "{}", deactivated.html);
        let mappings = app.get("/api/v1/plugins/interop/mappings?source_platform=magento", &app.viewer).await;
        let mapping = mappings.ok().as_array().unwrap().iter().find(|m| m["source_event_type"] == "sales_order_payment_pay").cloned().unwrap();
        assert_eq!(mapping["is_active"], false, "{mapping}");

        // The audit log, filtered; a service's health history, or 404 for an unknown one.
        let audit = browser.get("/console/audit?actor_kind=ops_agent&action=alert.").await;
        audit.assert_ok("alert.acknowledge");
        assert!(!audit.html.contains("console.login<"), "filtered out: {}", audit.html);
        // `_` in a prefix is a character, not a wildcard.
        let none = browser.get("/console/audit?action=alert_").await;
        none.assert_ok("No entry matches.");
        let filtered = app.get("/api/v1/audit?target_type=ops_agent&actor_kind=ops_agent", &app.admin).await;
        let rows = filtered.ok().as_array().unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|row| row["target_type"] == "ops_agent" && row["actor_kind"] == "ops_agent"), "{rows:?}");
        browser.get("/console/health").await.assert_ok("Health");
        assert_eq!(browser.get("/console/health?service=no-such-service").await.status, StatusCode::NOT_FOUND);

        // Flags: switch off from the list, back on, a percentage out of range refused.
        app.post("/api/platform/flags", &app.operator, &json!({"key": "slow_rollout", "type": "percentage", "percentage": 5})).await.ok();
        let off = browser.post("/console/flags/slow_rollout/switch", &[("enabled", "false"), ("back", "list")]).await;
        assert_eq!(off.location(), Some("/console/flags"));
        assert_eq!(app.get("/api/platform/flags/slow_rollout", &app.viewer).await.ok()["enabled"], false);
        check_refused(&mut browser, &[
            ("/console/flags/slow_rollout/percentage", vec![("percentage", "101")], StatusCode::UNPROCESSABLE_ENTITY, "<code>percentage</code>"),
            ("/console/flags/slow_rollout/percentage", vec![("percentage", "half")], StatusCode::UNPROCESSABLE_ENTITY, "<code>percentage</code>"),
            ("/console/flags/slow_rollout/kill", vec![("reason", "x"), ("confirm", "other_flag")], StatusCode::UNPROCESSABLE_ENTITY, "<code>confirm</code>"),
            ("/console/flags/no_such_flag/switch", vec![("enabled", "true")], StatusCode::NOT_FOUND, "404"),
        ])
        .await;
        let rolled = browser.post("/console/flags/slow_rollout/percentage", &[("percentage", "25")]).await;
        assert_eq!(rolled.status, StatusCode::SEE_OTHER);
        assert_eq!(app.get("/api/platform/flags/slow_rollout", &app.viewer).await.ok()["percentage"], 25);
        browser.get("/console/flags/slow_rollout").await.assert_ok("flag.update");
        app.store
    })
    .await;
}

#[test]
fn set_password_reads_stdin_refuses_short_ones_and_stores_only_a_hash() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("console.db").display());
    let created = crate::support::autoheal(
        &url,
        &[
            "ops-agent",
            "create",
            "--email",
            "cli@ops.test",
            "--role",
            "viewer",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    let set = |password: &str, email: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_autoheal"))
            .args([
                "--database-url",
                &url,
                "ops-agent",
                "set-password",
                "--email",
                email,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let short = set("eleven char", "cli@ops.test");
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"),
        "{short:?}"
    );
    let unknown = set("twelve chars!", "nobody@ops.test");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("no enabled Ops agent has the email nobody@ops.test"));
    let done = set("twelve chars!", "cli@ops.test");
    assert!(done.status.success(), "{done:?}");
    let db = stored_password_hash(&dir.path().join("console.db"));
    assert!(db.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{db}");
    assert!(!db.contains("twelve chars!"));
}

/// The password hash the store holds for the agent.
fn stored_password_hash(path: &std::path::Path) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = api::db::Store::connect(
            &format!("sqlite://{}", path.display()),
            &api::db::StoreOptions::default(),
        )
        .await
        .unwrap();
        let hash = store
            .sign_in_candidate("cli@ops.test")
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        store.close().await;
        hash
    })
}
