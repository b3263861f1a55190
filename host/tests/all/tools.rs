//! The CLI's library functions: keys generate, patch build, sign, verify, run.

use chrono::Duration;
use host::tools::{self, BUNDLE_SUFFIX};
use host::{ToolError, VerifyError};

use crate::common::{host, now, patches_dir, temp_dir, test_key_file};

#[test]
fn keys_generate_writes_a_private_key_only_its_owner_can_read() {
    let dir = temp_dir("keys");
    let keys = tools::generate_keys(&dir, tools::KeyRole::Root).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let private = tools::read_signing_key(&keys.private_key).unwrap();
    let public = tools::read_public_key(&keys.public_key).unwrap();
    assert_eq!(private.public_key(), public);
    assert_eq!(public.key_id(), keys.key_id);
    // Never overwrites a key.
    assert!(matches!(
        tools::generate_keys(&dir, tools::KeyRole::Root),
        Err(ToolError::Io { .. })
    ));
    // Two generated keys differ.
    let other = tools::generate_keys(&temp_dir("keys2"), tools::KeyRole::Root).unwrap();
    assert_ne!(other.key_id, keys.key_id);
}

fn copy_patch(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    for file in [tools::SOURCE_FILE, tools::MODULE_FILE, tools::TEMPLATE_FILE] {
        std::fs::copy(patches_dir().join(name).join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn build_sign_verify_run() {
    let dir = copy_patch("update_memory_limit");
    std::fs::remove_file(dir.join(tools::MODULE_FILE)).unwrap();
    let built = tools::build_patch(&dir).unwrap();
    assert_eq!(
        std::fs::read(&built.path).unwrap(),
        std::fs::read(patches_dir().join("update_memory_limit/patch.wasm")).unwrap()
    );

    let out = dir.join(format!("update_memory_limit-1.0.0{BUNDLE_SUFFIX}"));
    let manifest = tools::sign_patch_to_file(
        &dir,
        &test_key_file(),
        "1.0.0",
        tools::parse_duration("30d").unwrap(),
        now(),
        &out,
    )
    .unwrap();
    assert_eq!(manifest.module_sha256, built.sha256);
    assert_eq!(
        manifest.expires_at - manifest.created_at,
        Duration::days(30)
    );

    let public = test_key_file().with_file_name(tools::PUBLIC_KEY_FILE);
    let verified = tools::verify_bundle_file(&out, &[&public], now()).unwrap();
    assert_eq!(verified.manifest().name, "update_memory_limit");

    let snapshot = dir.join("snapshot.json");
    std::fs::write(
        &snapshot,
        serde_json::to_vec(&crate::common::snapshot()).unwrap(),
    )
    .unwrap();
    let params = dir.join("params.json");
    std::fs::write(&params, r#"{"memory_limit":"512M"}"#).unwrap();
    let run =
        tools::run_bundle_file(host(), &out, &[&public], &snapshot, Some(&params), now()).unwrap();
    assert_eq!(run.state.config["memory_limit"], "512M");
    let printed = serde_json::to_value(&run).unwrap();
    assert_eq!(printed["operations"][0]["op"], "set_config");
    assert_eq!(printed["restore"][0]["value"], "128M");

    // Expired by the time it runs: typed, with the file named.
    let later = now() + Duration::days(31);
    match tools::run_bundle_file(host(), &out, &[&public], &snapshot, Some(&params), later) {
        Err(ToolError::Verify {
            path,
            source: VerifyError::Expired { .. },
        }) => assert_eq!(path, out),
        other => panic!("{other:?}"),
    }
    // Another trusted key only: unknown key.
    let other = tools::generate_keys(&temp_dir("other"), tools::KeyRole::Root).unwrap();
    assert!(matches!(
        tools::verify_bundle_file(&out, &[&other.public_key], now()),
        Err(ToolError::Verify {
            source: VerifyError::UnknownKey { .. },
            ..
        })
    ));
    // Rotation: old and new key both trusted.
    assert!(tools::verify_bundle_file(&out, &[&other.public_key, &public], now()).is_ok());
    assert!(matches!(
        tools::verify_bundle_file::<&str>(&out, &[], now()),
        Err(ToolError::Usage(_))
    ));
}

#[test]
fn signing_refuses_a_stale_module_and_bad_arguments() {
    let dir = copy_patch("php_upgrade_notice");
    let source = std::fs::read_to_string(dir.join(tools::SOURCE_FILE)).unwrap();
    std::fs::write(
        dir.join(tools::SOURCE_FILE),
        source.replace("upgrade PHP.", "upgrade PHP!"),
    )
    .unwrap();
    assert!(matches!(
        tools::sign_patch(&dir, &test_key_file(), "1.0.0", Duration::days(1), now()),
        Err(ToolError::Invalid { reason, .. }) if reason.contains("stale")
    ));
    tools::build_patch(&dir).unwrap();
    assert!(tools::sign_patch(&dir, &test_key_file(), "1.0.0", Duration::days(1), now()).is_ok());
    assert!(matches!(
        tools::sign_patch(&dir, &test_key_file(), "one", Duration::days(1), now()),
        Err(ToolError::Usage(_))
    ));
    std::fs::write(
        dir.join(tools::SOURCE_FILE),
        "(module (func $f (unknown_instr)))",
    )
    .unwrap();
    assert!(matches!(
        tools::build_patch(&dir),
        Err(ToolError::Invalid { .. })
    ));
}

#[test]
fn durations() {
    assert_eq!(tools::parse_duration("30d").unwrap(), Duration::days(30));
    assert_eq!(tools::parse_duration("12h").unwrap(), Duration::hours(12));
    assert_eq!(tools::parse_duration("90m").unwrap(), Duration::minutes(90));
    assert_eq!(tools::parse_duration("3600s").unwrap(), Duration::hours(1));
    assert_eq!(tools::parse_duration("2w").unwrap(), Duration::days(14));
    for bad in ["", "30", "d", "0d", "-1d", "1y", "1.5d"] {
        assert!(tools::parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_bundle_directory_loads_newest_per_name_or_names_the_bad_file() {
    let dir = temp_dir("bundles");
    let src = copy_patch("api_key_refresh_notice");
    for v in ["1.0.0", "1.1.0", "1.0.5"] {
        let out = dir.join(format!("api_key_refresh_notice-{v}{BUNDLE_SUFFIX}"));
        tools::sign_patch_to_file(&src, &test_key_file(), v, Duration::days(5), now(), &out)
            .unwrap();
    }
    std::fs::write(dir.join("README.txt"), "ignored").unwrap();
    let keys = tools::load_trusted_keys(&[test_key_file().with_file_name(tools::PUBLIC_KEY_FILE)])
        .unwrap();
    let loaded = tools::load_bundle_dir(&dir, &keys, now()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].manifest().version.to_string(), "1.1.0");

    let bad = dir.join(format!("broken{BUNDLE_SUFFIX}"));
    std::fs::write(&bad, "{}").unwrap();
    match tools::load_bundle_dir(&dir, &keys, now()) {
        Err(ToolError::Verify {
            path,
            source: VerifyError::Malformed(_),
        }) => assert_eq!(path, bad),
        other => panic!("{other:?}"),
    }
}
