//! The rule set in the server: status, reload through HTTP and by the folder
//! watcher, and a refused set leaving the previous one in force.

use crate::support::{TestApp, TestStore};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// A copy of the shipped rules that the test may break.
fn copy_shipped_rules(to: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for (name, text) in api::rules::read_tree(&shipped).unwrap() {
        let target = to.join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
}

fn file_names(status: &Value) -> Vec<String> {
    status["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["file"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_refused_set_keeps_the_previous_one_in_force() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped_rules(dir.path());
    let app = TestApp::with_rules(TestStore::sqlite().await, dir.path()).await;

    let status = app.get("/api/v1/rules/status", &app.viewer).await;
    let loaded = file_names(status.ok());
    assert_eq!(
        loaded.len(),
        11,
        "4 healing rules, 6 mappings, 1 flag policy: {loaded:?}"
    );
    assert!(status.ok()["files"][0]["sha256"]
        .as_str()
        .is_some_and(|sha| sha.len() == 64));

    // A broken file and an endless loop: refused as a whole, with positions.
    std::fs::write(
        dir.path().join("healing/broken.rhai"),
        "let rule = #{ name: \"broken\",\n pattern: ",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("flags/spin.rhai"),
        "let flag = #{ name: \"spin\" };\nfn evaluate(ctx) { loop { } }\nlet x = 0; loop { x += 1; }\n",
    )
    .unwrap();
    // A regex over the compiled-size limit.
    std::fs::write(
        dir.path().join("healing/huge.rhai"),
        "let rule = #{ name: \"huge\",\n  pattern: \"\\\\w{100}\", platforms: [\"all\"], auto_apply: true, min_confidence: 90, patch: \"p\" };",
    )
    .unwrap();
    let refused = app
        .post("/api/v1/rules/reload", &app.operator, &json!({}))
        .await;
    assert_eq!(
        refused.error(StatusCode::UNPROCESSABLE_ENTITY).0,
        "rules_refused"
    );
    let errors = refused.body["error"]["errors"].as_array().unwrap().clone();
    assert!(
        errors.iter().any(|error| {
            let error = error.as_str().unwrap();
            error.starts_with("healing/huge.rhai:2:")
                && error.contains("regex compiles to more than")
        }),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.as_str().unwrap().starts_with("healing/broken.rhai:")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.as_str().unwrap().starts_with("flags/spin.rhai:")),
        "{errors:?}"
    );
    let status = app.get("/api/v1/rules/status", &app.viewer).await;
    assert_eq!(
        file_names(status.ok()),
        loaded,
        "the previous set is still in force"
    );
    assert_eq!(
        status.ok()["last_errors"].as_array().unwrap().len(),
        errors.len()
    );
    assert_eq!(app.state.rules.current().healing_rules().len(), 4);

    // Fixed: the new set (with one more rule) swaps in.
    std::fs::remove_file(dir.path().join("healing/broken.rhai")).unwrap();
    std::fs::remove_file(dir.path().join("flags/spin.rhai")).unwrap();
    std::fs::remove_file(dir.path().join("healing/huge.rhai")).unwrap();
    let extra = std::fs::read_to_string(dir.path().join("healing/api_key_expired.rhai"))
        .unwrap()
        .replace("\"api_key_expired\"", "\"api_key_revoked\"")
        .replace("401.*Unauthorized.*API key", "403.*Forbidden.*API key");
    std::fs::write(dir.path().join("healing/api_key_revoked.rhai"), extra).unwrap();
    let reloaded = app
        .post("/api/v1/rules/reload", &app.operator, &json!({}))
        .await;
    assert_eq!(file_names(reloaded.ok()).len(), 12);
    assert_eq!(reloaded.ok()["last_errors"], json!([]));
    assert_eq!(app.state.rules.current().healing_rules().len(), 5);

    app.post("/api/v1/rules/reload", &app.viewer, &json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
    let audit = app.get("/api/v1/audit", &app.admin).await;
    let outcomes: Vec<&str> = audit
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "rules.reload")
        .map(|entry| entry["details"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["loaded", "refused"]);
    app.store.finish().await;
}

#[tokio::test]
async fn the_watcher_reloads_when_the_folder_changes() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped_rules(dir.path());
    let app = TestApp::with_rules(TestStore::sqlite().await, dir.path()).await;
    let mut watcher = api::tasks::Tasks::default();
    api::rules::watch(
        &mut watcher,
        app.state.rules.clone(),
        app.clock.clone(),
        Duration::from_millis(20),
    );
    std::fs::remove_file(
        dir.path()
            .join("interop/magento_sales_order_place_after.rhai"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.state.rules.current().mappings().len() != 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.stop().await;
    app.store.finish().await;
}

/// A link in the rules folder is refused, whether it points at a file or a folder, inside
/// or outside: the set is what lies in the folder, and the target's text reaches no one.
#[tokio::test]
async fn links_in_the_rules_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped_rules(dir.path());
    let app = TestApp::with_rules(TestStore::sqlite().await, dir.path()).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.rhai");
    std::fs::write(
        &secret,
        "let rule = #{ name: \"TOP-SECRET-a1b2\", pattern: ",
    )
    .unwrap();
    for (link, target) in [
        ("healing/outside.rhai", secret.clone()),
        ("flags/elsewhere", elsewhere.path().to_owned()),
        (
            "healing/inside.rhai",
            dir.path().join("healing/api_key_expired.rhai"),
        ),
    ] {
        std::os::unix::fs::symlink(&target, dir.path().join(link)).unwrap();
        let refused = app
            .post("/api/v1/rules/reload", &app.operator, &json!({}))
            .await;
        assert_eq!(
            refused.error(StatusCode::UNPROCESSABLE_ENTITY).0,
            "rules_refused",
            "{link}"
        );
        let errors = refused.body["error"]["errors"].to_string();
        assert!(
            errors.contains(link) && errors.contains("symbolic link"),
            "{errors}"
        );
        let status = app.get("/api/v1/rules/status", &app.viewer).await;
        assert!(
            !status.ok().to_string().contains("TOP-SECRET"),
            "{}",
            status.body
        );
        assert!(!refused.body.to_string().contains("TOP-SECRET"));
        std::fs::remove_file(dir.path().join(link)).unwrap();
    }
    assert_eq!(app.state.rules.current().healing_rules().len(), 4);
}
