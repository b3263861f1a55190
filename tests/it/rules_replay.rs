//! A candidate rule set replayed over the stored detections, through the binary
//! (`autoheal rules replay`) and HTTP (`POST /api/v1/rules/replay`), on both backends:
//! detections are recorded through Sira's endpoint with the shipped rules, then decided
//! again by the shipped rules (nothing changes) and by edited ones (exactly the detections
//! the edit touches change, with the summary's counts); the window, the limit, a broken
//! candidate, the permission, and a store left as it was.

use crate::support::{autoheal, each_store, json_stdout, repo, TestApp};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};
use std::path::Path;
use uuid::Uuid;

const MISSING_COLUMN: &str = "Fatal error: Unknown column 'merchant_fee' in field list";
const MEMORY: &str = "PHP Fatal error: Allowed memory size of 134217728 bytes exhausted \
                      (tried to allocate 20480 bytes)";
const API_KEY: &str = "HTTP 401 Unauthorized: the API key has expired";
const UNKNOWN: &str = "Payment gateway answered something nobody has a rule for";

/// An install's heartbeat; `tables` is its reported schema.
fn heartbeat(site_url: &str, tables: Value) -> Value {
    json!({
        "cms": "woocommerce",
        "site_url": site_url,
        "plugin_version": "1.3.5",
        "php_version": "8.1.27",
        "state": {"config": {"memory_limit": "128M", "debug": false}, "tables": tables}
    })
}

/// Sira's detection of `issue` on `plugin_id`, proposing `proposed_patch`: its log.
async fn detect(
    app: &TestApp,
    plugin_id: Uuid,
    issue: &str,
    confidence: f64,
    proposed_patch: Value,
) -> Value {
    let body = json!({
        "plugin_id": plugin_id,
        "detected_issue": issue,
        "issue_severity": "high",
        "proposed_patch": proposed_patch,
        "sira_confidence": confidence
    });
    let response = app.post("/api/v1/plugins/autoheal", &app.sira, &body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body["log"].clone()
}

/// The detections every case replays, as the shipped rules decided them, oldest first:
/// (log id, what the first answer said).
async fn record_detections(app: &TestApp) -> Vec<(String, Value)> {
    let shop = app
        .heartbeat(heartbeat(
            "https://shop.example",
            json!({"wp_molam_orders": {"id": "BIGINT", "amount": "DECIMAL(10,2)"}}),
        ))
        .await;
    // Two tables lack the column: the rule cannot tell which, so the server holds its
    // auto-apply for Ops (`patch_params`), which a replay does not check.
    let other = app
        .heartbeat(heartbeat(
            "https://other.example",
            json!({"wp_orders": {"id": "BIGINT"}, "wp_refunds": {"id": "BIGINT"}}),
        ))
        .await;
    let column = json!({"table": "wp_molam_orders", "column_type": "DECIMAL(10,2)"});
    let no_table = json!({"column_type": "DECIMAL(10,2)"});
    let mut logs = Vec::new();
    for (plugin_id, issue, confidence, proposed) in [
        (shop, MISSING_COLUMN, 92.5, &column),
        (shop, MISSING_COLUMN, 70.0, &column),
        (other, MISSING_COLUMN, 95.0, &no_table),
        (shop, MEMORY, 90.0, &Value::Null),
        (shop, API_KEY, 99.0, &Value::Null),
        (shop, UNKNOWN, 99.0, &Value::Null),
    ] {
        let log = detect(app, plugin_id, issue, confidence, proposed.clone()).await;
        logs.push((log["id"].as_str().unwrap().to_owned(), log));
    }
    let statuses: Vec<&Value> = logs.iter().map(|(_, log)| &log["status"]).collect();
    assert_eq!(
        statuses,
        [
            "approved",
            "pending_review",
            "pending_review",
            "pending_review",
            "pending_review",
            "rejected"
        ],
        "as the shipped rules decide them"
    );
    logs
}

/// A copy of the shipped rules with `edit` applied to it.
fn candidate(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in api::rules::read_tree(&repo().join("rules")).unwrap() {
        let target = dir.path().join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    edit(dir.path());
    dir
}

/// `rule`'s file in `dir` with `from` replaced by `to`.
fn edit_rule(dir: &Path, rule: &str, from: &str, to: &str) {
    let path = dir.join(format!("healing/{rule}.rhai"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rule}: {from}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// The edited set: `missing_database_column` wants 93 (its 92.5 detection now waits for
/// review), `memory_limit_exceeded` is gone, `api_key_expired` also matches the unknown
/// message.
fn edited_rules() -> tempfile::TempDir {
    candidate(|dir| {
        edit_rule(
            dir,
            "missing_database_column",
            "min_confidence: 90",
            "min_confidence: 93",
        );
        std::fs::remove_file(dir.join("healing/memory_limit_exceeded.rhai")).unwrap();
        edit_rule(
            dir,
            "api_key_expired",
            r#""401.*Unauthorized.*API key""#,
            r#""401.*Unauthorized.*API key|nobody has a rule""#,
        );
    })
}

/// The rule files of `dir` as the endpoint takes them.
fn files_body(dir: &Path) -> Value {
    let files: Vec<Value> = api::rules::read_rule_files(dir)
        .unwrap()
        .into_iter()
        .map(|(name, source)| json!({"name": name, "source": source}))
        .collect();
    Value::Array(files)
}

/// `autoheal rules replay --json` over `dir` on the app's database.
fn replay_cli(app: &TestApp, dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "rules",
        "replay",
        "--rules",
        dir.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    json_stdout(&autoheal(&app.store.url, &args))
}

async fn replay_http(app: &TestApp, body: &Value) -> Value {
    app.post("/api/v1/rules/replay", &app.operator, body)
        .await
        .ok()
        .clone()
}

/// The replayed detections as (log id, changed), oldest first.
fn changes(report: &Value) -> Vec<(String, bool)> {
    let mut rows: Vec<(String, bool)> = report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["log_id"].as_str().unwrap().to_owned(),
                d["changed"].as_bool().unwrap(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

/// What the store holds that a replay must leave alone.
async fn footprint(app: &TestApp) -> [i64; 3] {
    [
        app.store
            .count("SELECT COUNT(*) FROM plugin_auto_healing_logs")
            .await,
        app.store
            .count("SELECT COUNT(*) FROM plugin_commands")
            .await,
        app.store
            .count("SELECT COUNT(*) FROM plugin_auto_healing_logs WHERE status = 'pending_review'")
            .await,
    ]
}

/// The whole history, for the binary: its clock is the wall clock, the app's is the seed's.
const SINCE_START: &str = "2025-01-01T00:00:00Z";

#[tokio::test]
async fn the_shipped_rules_replay_without_a_change() {
    each_store(|store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let logs = record_detections(&app).await;
        let shipped = repo().join("rules");

        let by_cli = replay_cli(&app, &shipped, &["--since", SINCE_START]);
        let by_http =
            replay_http(&app, &json!({"files": files_body(&shipped), "since": "1d"})).await;
        for report in [&by_cli, &by_http] {
            assert_eq!(
                report["scope"],
                "decisions only: the rule match, confidence thresholds and auto_apply of the \
                 rules; flags, breakers and dry runs are not replayed"
            );
            assert_eq!(
                report["summary"],
                json!({"replayed": 6, "changed": 0, "outcome_changes": [], "rule_changes": [],
                       "no_longer_matched": 0}),
                "{report}"
            );
            assert_eq!(report["capped"], false);
            let ids: Vec<String> = changes(report).into_iter().map(|(id, _)| id).collect();
            let recorded: Vec<String> = logs.iter().map(|(id, _)| id.clone()).collect();
            assert_eq!(ids, recorded, "every detection, newest first");
        }
        // What was decided then, as the rules said it and as the log stands now.
        let detections = by_http["detections"].as_array().unwrap();
        let oldest = &detections[5];
        assert_eq!(
            (&oldest["then"], &oldest["now"]),
            (
                &json!({"outcome": "auto_apply", "rule": "missing_database_column",
                        "held_by": [], "status": "approved"}),
                &json!({"outcome": "auto_apply", "rule": "missing_database_column",
                        "patch": "add_missing_column"})
            )
        );
        assert_eq!(oldest["source"], "sira");
        assert_eq!(oldest["detected_issue"], MISSING_COLUMN);
        let held = &detections[3];
        assert_eq!(
            held["then"],
            json!({"outcome": "auto_apply", "rule": "missing_database_column",
                   "held_by": ["patch_params"], "status": "pending_review"}),
            "the rules auto-applied it; the server held it for its table"
        );
        assert_eq!(held["now"]["outcome"], "auto_apply");
        let unmatched = &detections[0];
        assert_eq!(
            (&unmatched["then"]["outcome"], &unmatched["then"]["status"]),
            (&json!("no_match"), &json!("rejected"))
        );
        app.store
    })
    .await;
}

#[tokio::test]
async fn an_edited_rule_set_changes_exactly_the_detections_it_touches() {
    each_store(|store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let logs = record_detections(&app).await;
        let before = footprint(&app).await;
        let edited = edited_rules();

        let by_cli = replay_cli(&app, edited.path(), &["--since", SINCE_START]);
        let by_http = replay_http(&app, &json!({"files": files_body(edited.path())})).await;
        for report in [&by_cli, &by_http] {
            // 92.5 < 93; the memory rule is gone; the unknown message now matches.
            let changed: Vec<bool> = changes(report).into_iter().map(|(_, c)| c).collect();
            assert_eq!(changed, [true, false, false, true, false, true], "{report}");
            assert_eq!(
                report["summary"],
                json!({
                    "replayed": 6,
                    "changed": 3,
                    "outcome_changes": [
                        {"from": "auto_apply", "to": "pending_review", "detections": 1},
                        {"from": "pending_review", "to": "no_match", "detections": 1},
                        {"from": "no_match", "to": "pending_review", "detections": 1},
                    ],
                    "rule_changes": [
                        {"rule": "api_key_expired", "gained": 1, "lost": 0},
                        {"rule": "memory_limit_exceeded", "gained": 0, "lost": 1},
                    ],
                    "no_longer_matched": 1,
                }),
                "{report}"
            );
        }
        let detections = by_http["detections"].as_array().unwrap();
        assert_eq!(
            detections[2]["now"],
            json!({"outcome": "no_match", "rule": null, "patch": null})
        );
        assert_eq!(detections[0]["now"]["rule"], "api_key_expired");

        // For a terminal: the header says what is not replayed, the changed ones are marked.
        let text = autoheal(
            &app.store.url,
            &[
                "rules",
                "replay",
                "--rules",
                edited.path().to_str().unwrap(),
                "--since",
                SINCE_START,
            ],
        );
        assert!(text.status.success(), "{text:?}");
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(
            text.contains("flags, breakers and dry runs are not replayed"),
            "{text}"
        );
        let memory_line = text.lines().find(|line| line.contains(&logs[3].0)).unwrap();
        assert!(memory_line.starts_with('*'), "{memory_line}");
        assert!(
            memory_line.contains("pending_review memory_limit_exceeded (pending_review)"),
            "{memory_line}"
        );
        assert!(memory_line.ends_with("no_match -"), "{memory_line}");
        assert!(
            text.contains("6 replayed, 3 change outcome or rule"),
            "{text}"
        );
        assert!(
            text.contains("rule memory_limit_exceeded: gains 0, loses 1"),
            "{text}"
        );

        // Nothing was written but the audit row of the HTTP replay.
        assert_eq!(footprint(&app).await, before);
        let audit = app
            .get("/api/v1/audit?action=rules.replayed", &app.admin)
            .await;
        let entries = audit.ok().as_array().unwrap();
        assert_eq!(entries.len(), 1, "{}", audit.body);
        assert_eq!(entries[0]["details"]["changed"], 3);
        app.store
    })
    .await;
}

#[tokio::test]
async fn the_window_and_the_limit_bound_a_replay() {
    each_store(|store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let logs = record_detections(&app).await;
        app.clock.advance(Duration::days(8));
        let install = logs[0].1["plugin_id"].as_str().unwrap().parse().unwrap();
        let recent = detect(&app, install, MEMORY, 90.0, Value::Null).await;
        let recent_id = recent["id"].as_str().unwrap();
        let edited = edited_rules();
        let files = files_body(edited.path());

        // The default window is the last 7 days of the server's clock.
        let report = replay_http(&app, &json!({"files": files})).await;
        assert_eq!(changes(&report), [(recent_id.to_owned(), true)]);
        let since = report["since"].as_str().unwrap();
        assert!(since.starts_with("2025-01-19T10:00:00"), "{since}");
        let report = replay_http(&app, &json!({"files": files, "since": "9d"})).await;
        assert_eq!(report["summary"]["replayed"], 7);

        // The binary: an RFC 3339 time between the two.
        let by_cli = replay_cli(&app, edited.path(), &["--since", "2025-01-20T00:00:00Z"]);
        assert_eq!(changes(&by_cli), [(recent_id.to_owned(), true)]);

        // The limit keeps the newest and says the oldest were left out.
        let capped = replay_http(&app, &json!({"files": files, "since": "9d", "limit": 2})).await;
        assert_eq!(capped["capped"], true);
        assert_eq!(capped["summary"]["replayed"], 2);
        assert_eq!(capped["detections"][0]["log_id"], recent_id);
        assert_eq!(capped["detections"][1]["log_id"], logs[5].0.as_str());
        let by_cli = replay_cli(
            &app,
            edited.path(),
            &["--since", SINCE_START, "--limit", "7"],
        );
        assert_eq!(
            (&by_cli["capped"], &by_cli["summary"]["replayed"]),
            (&json!(false), &json!(7))
        );

        for (body, field) in [
            (json!({"files": files, "since": "yesterday"}), "since"),
            (json!({"files": files, "limit": 0}), "limit"),
            (json!({"files": files, "limit": 10_001}), "limit"),
            (
                json!({"files": [{"name": "healing/a.rhai", "source": ""},
                                 {"name": "healing/a.rhai", "source": ""}]}),
                "files[1].name",
            ),
        ] {
            let response = app.post("/api/v1/rules/replay", &app.operator, &body).await;
            let (code, named) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(
                (code.as_str(), named.as_deref()),
                ("invalid_field", Some(field))
            );
        }
        let bad_since = autoheal(
            &app.store.url,
            &[
                "rules",
                "replay",
                "--rules",
                edited.path().to_str().unwrap(),
                "--since",
                "yesterday",
            ],
        );
        assert!(!bad_since.status.success());
        assert!(String::from_utf8_lossy(&bad_since.stderr).contains("--since"));
        app.store
    })
    .await;
}

#[tokio::test]
async fn a_broken_candidate_is_refused_and_a_viewer_may_not_replay() {
    each_store(|store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        record_detections(&app).await;
        let before = footprint(&app).await;
        let broken = candidate(|dir| {
            std::fs::write(
                dir.join("healing/broken.rhai"),
                "let rule = #{ name: \"broken\",\n pattern: ",
            )
            .unwrap();
        });

        let refused = autoheal(
            &app.store.url,
            &[
                "rules",
                "replay",
                "--rules",
                broken.path().to_str().unwrap(),
                "--since",
                SINCE_START,
            ],
        );
        assert!(!refused.status.success());
        assert!(refused.stdout.is_empty(), "no report");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("healing/broken.rhai:"), "{stderr}");
        let checked = autoheal(
            &app.store.url,
            &["rules", "check", broken.path().to_str().unwrap()],
        );
        let check_errors = String::from_utf8_lossy(&checked.stderr);
        let first = check_errors.lines().next().unwrap();
        assert!(
            stderr.contains(first),
            "the errors `rules check` prints: {first}"
        );

        let body = json!({"files": files_body(broken.path())});
        let response = app.post("/api/v1/rules/replay", &app.operator, &body).await;
        let (code, _) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code, "rules_refused");
        let errors = response.body["error"]["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e.as_str().unwrap().starts_with("healing/broken.rhai:")),
            "{errors:?}"
        );
        // A file outside the rule folders is named too.
        let body = json!({"files": [{"name": "x.rhai", "source": "let x = 1;"}]});
        let response = app.post("/api/v1/rules/replay", &app.operator, &body).await;
        response.error(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.body["error"]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("x.rhai"));

        let shipped = json!({"files": files_body(&repo().join("rules"))});
        let response = app
            .post("/api/v1/rules/replay", &app.viewer, &shipped)
            .await;
        response.error(StatusCode::FORBIDDEN);
        assert_eq!(footprint(&app).await, before);
        app.store
    })
    .await;
}
