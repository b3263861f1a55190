//! The patch registry keeps its promises (issue 17), on SQLite and PostgreSQL: the versions
//! it accepted outlive a restart and hold on every replica; a name and version already
//! accepted never take other bytes; an expired bundle is never served, queued or dry-run.

use crate::support::{each_store, repo, start_time, TestApp};
use api::healing::patches::{PatchRegistry, Refusal};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const PATCH: &str = "add_missing_column";

/// Signs the shipped `add_missing_column` as `version` into `dir`, valid for `valid_for`
/// from `now`. Two signings differ in their bytes (the expiry is to the second).
fn sign(dir: &Path, version: &str, valid_for: Duration, now: DateTime<Utc>) {
    host::tools::sign_patch_to_file(
        &repo().join("patches").join(PATCH),
        &repo().join("patches/dev-key/autoheal.key"),
        version,
        valid_for,
        now,
        &dir.join(format!("{PATCH}-{version}.bundle.json")),
    )
    .unwrap();
}

fn registry(dir: &Path) -> Arc<PatchRegistry> {
    let trusted =
        host::tools::load_trusted_keys(&[repo().join("patches/dev-key/autoheal.pub")]).unwrap();
    Arc::new(PatchRegistry::open(
        host::Host::new(host::HostConfig::default()).unwrap(),
        dir,
        trusted,
    ))
}

fn loaded(registry: &PatchRegistry, now: DateTime<Utc>) -> Vec<String> {
    registry
        .status(now)
        .patches
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

#[tokio::test]
async fn accepted_versions_outlive_a_restart_and_hold_on_every_replica() {
    each_store(|store| async {
        let now = start_time();
        let first = tempfile::tempdir().unwrap();
        sign(first.path(), "1.0.3", Duration::days(30), now);
        let running = registry(first.path());
        assert!(running.sync(&store.store, now).await.unwrap().is_empty());
        assert_eq!(loaded(&running, now), [format!("{PATCH} 1.0.3")]);

        // Restarted (or another replica) over a folder holding an older release and a
        // rebuild of the accepted one: both refused, though this process never saw either.
        let tampered = tempfile::tempdir().unwrap();
        sign(tampered.path(), "1.0.2", Duration::days(30), now);
        sign(tampered.path(), "1.0.3", Duration::days(29), now);
        let restarted = registry(tampered.path());
        let refused = restarted.sync(&store.store, now).await.unwrap();
        assert!(
            loaded(&restarted, now).is_empty(),
            "{:?}",
            loaded(&restarted, now)
        );
        let reason = |version: &str| {
            let file = format!("{PATCH}-{version}.bundle.json");
            &refused.iter().find(|r| r.file == file).unwrap().reason
        };
        assert!(
            matches!(
                reason("1.0.2"),
                Refusal::Verify(host::VerifyError::Downgrade { .. })
            ),
            "{:?}",
            reason("1.0.2")
        );
        assert!(
            matches!(reason("1.0.3"), Refusal::Rebuilt { .. }),
            "{:?}",
            reason("1.0.3")
        );
        assert!(reason("1.0.3").to_string().contains("other bytes"));

        // The very bytes accepted before load again after a restart, and a newer version is
        // accepted (and recorded).
        let again = registry(first.path());
        assert!(again.sync(&store.store, now).await.unwrap().is_empty());
        assert_eq!(loaded(&again, now), [format!("{PATCH} 1.0.3")]);
        sign(first.path(), "1.0.4", Duration::days(30), now);
        again.sync(&store.store, now).await.unwrap();
        assert_eq!(
            loaded(&again, now),
            [format!("{PATCH} 1.0.3"), format!("{PATCH} 1.0.4")]
        );
        let recorded = store.store.accepted_bundles().await.unwrap();
        assert_eq!(
            recorded
                .iter()
                .map(|b| b.version.as_str())
                .collect::<Vec<_>>(),
            ["1.0.3", "1.0.4"]
        );
        store
    })
    .await;
}

#[tokio::test]
async fn a_bundle_rebuilt_in_place_is_refused_and_the_first_stays() {
    let now = start_time();
    let dir = tempfile::tempdir().unwrap();
    sign(dir.path(), "1.0.3", Duration::days(30), now);
    let registry = PatchRegistry::load(
        host::Host::new(host::HostConfig::default()).unwrap(),
        dir.path(),
        host::tools::load_trusted_keys(&[repo().join("patches/dev-key/autoheal.pub")]).unwrap(),
        now,
    );
    let version = "1.0.3".parse().unwrap();
    let first = registry
        .get(PATCH, &version, now)
        .unwrap()
        .bundle_sha256
        .clone();
    sign(dir.path(), "1.0.3", Duration::days(29), now);
    let refused = registry.reload(now);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let kept = registry.get(PATCH, &version, now).unwrap();
    assert_eq!(
        kept.bundle_sha256, first,
        "the first bytes are still served"
    );
}

/// An expired bundle: not offered to new detections, not downloadable, listed as expired,
/// and refused by the watcher's next reload.
#[tokio::test]
async fn an_expired_bundle_is_never_served_or_queued() {
    each_store(|store| async {
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::healing(store, HealingConfig::default()).await;
        sign(dir.path(), "1.0.9", Duration::hours(1), app.clock.now());
        let short_lived = registry(dir.path());
        short_lived
            .sync(&app.store.store, app.clock.now())
            .await
            .unwrap();
        let app = app.rebuilt(|b| b.patches(short_lived.clone())).await;
        let id = app
            .heartbeat(json!({"cms": "woocommerce", "site_url": "https://shop.example",
                "plugin_version": "1.3.5", "state": {"tables": {"wp_molam_orders": {"id": "BIGINT"}}}}))
            .await;
        let detection = json!({
            "plugin_id": id, "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
            "issue_severity": "high", "patch_type": "database_patch",
            "proposed_patch": {"type": "database_patch", "action": "add_missing_column",
                "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"},
            "sira_confidence": 95.0
        });
        let bundle = format!("/api/v1/plugins/autoheal/bundles/{PATCH}/1.0.9");
        let answer = app.post("/api/v1/plugins/autoheal", &app.sira, &detection).await;
        assert_eq!(answer.body["status"], "applied", "{}", answer.body);
        app.get(&bundle, &app.merchant_key).await.ok();

        app.clock.advance(Duration::hours(2));
        let answer = app.post("/api/v1/plugins/autoheal", &app.sira, &detection).await;
        assert_eq!(answer.body["status"], "failed", "{}", answer.body);
        assert_eq!(answer.body["log"]["failure_kind"], "unknown_patch");
        app.get(&bundle, &app.merchant_key)
            .await
            .error(StatusCode::NOT_FOUND);
        let listing = app.get("/api/v1/plugins/autoheal/patches", &app.viewer).await;
        assert_eq!(listing.ok()["patches"][0]["status"], "expired");
        assert_eq!(listing.body["patches"][0]["current"], false);
        // The watcher's reload refuses it, with the reason.
        assert!(short_lived.has_expired(app.clock.now()));
        let refused = short_lived
            .sync(&app.store.store, app.clock.now())
            .await
            .unwrap();
        assert!(refused[0].reason.to_string().contains("expired"), "{refused:?}");
        let listing = app.get("/api/v1/plugins/autoheal/patches", &app.viewer).await;
        assert!(listing.ok()["patches"].as_array().unwrap().is_empty());
        app.store
    })
    .await;
}
