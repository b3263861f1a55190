//! The four shipped patches: each a real module, run through the whole path (sign, verify,
//! compile, pooled instance, JSON in and out, output checked against the snapshot).

use host::{Operation, RunError, Severity, State};
use serde_json::{json, Value};

use crate::common::{host, patches_dir, shipped, snapshot};

/// The shipped patches, by name.
const SHIPPED: [&str; 4] = [
    "add_missing_column",
    "api_key_refresh_notice",
    "php_upgrade_notice",
    "update_memory_limit",
];

fn try_run(patch: &str, snapshot: &State, params: Value) -> Result<host::DryRun, RunError> {
    host().dry_run(&shipped(patch), snapshot, &params)
}

/// Run `patch` and expect exactly `expected` operations; also checks the state and the
/// restore plan, and that the snapshot was not touched.
fn check(patch: &str, snap: &State, params: Value, expected: Vec<Operation>) -> host::DryRun {
    let before = snap.clone();
    let run = try_run(patch, snap, params).unwrap_or_else(|e| panic!("{patch}: {e}"));
    assert_eq!(run.operations, expected, "{patch}");
    assert_eq!(*snap, before, "snapshot must not change");
    assert_eq!(run.state, host::ops::apply(snap, &run.operations).unwrap());
    assert_eq!(host::ops::apply(&run.state, &run.restore).unwrap(), *snap);
    run
}

fn add_column(table: &str, column: &str, ty: &str) -> Operation {
    Operation::AddColumn {
        table: table.into(),
        column: column.into(),
        column_type: ty.into(),
    }
}

#[test]
fn add_missing_column_adds_the_column_from_params() {
    let params = json!({"table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"});
    let run = check(
        "add_missing_column",
        &snapshot(),
        params,
        vec![add_column(
            "wp_molam_orders",
            "merchant_fee",
            "DECIMAL(10,2)",
        )],
    );
    assert_eq!(
        run.state.tables["wp_molam_orders"]["merchant_fee"],
        "DECIMAL(10,2)"
    );
    assert_eq!(
        run.restore,
        vec![Operation::DropColumn {
            table: "wp_molam_orders".into(),
            column: "merchant_fee".into()
        }]
    );
    assert_eq!(run.logs, vec!["adding the missing column".to_string()]);
    assert!(run.fuel_consumed > 0 && run.fuel_consumed < run.limits.fuel);
}

#[test]
fn add_missing_column_into_an_empty_table_and_an_existing_column() {
    let params = json!({"table": "wp_molam_refunds", "column": "reason", "column_type": "VARCHAR(191) NOT NULL"});
    check(
        "add_missing_column",
        &snapshot(),
        params,
        vec![add_column(
            "wp_molam_refunds",
            "reason",
            "VARCHAR(191) NOT NULL",
        )],
    );
    let mut empty = snapshot();
    empty.tables.insert("wp_new".into(), Default::default());
    let params = json!({"table": "wp_new", "column": "id", "column_type": "BIGINT"});
    check(
        "add_missing_column",
        &empty,
        params,
        vec![add_column("wp_new", "id", "BIGINT")],
    );

    let params =
        json!({"table": "wp_molam_orders", "column": "amount", "column_type": "DECIMAL(10,2)"});
    let run = check("add_missing_column", &snapshot(), params, vec![]);
    assert_eq!(run.state, snapshot());
}

#[test]
fn add_missing_column_refuses_a_missing_table_and_bad_params() {
    let params = json!({"table": "wp_nope", "column": "x", "column_type": "INT"});
    assert_eq!(
        try_run("add_missing_column", &snapshot(), params).unwrap_err(),
        RunError::PatchRefused("table does not exist in the snapshot".into())
    );
    for (params, param) in [
        (
            json!({"table": "wp_molam_orders", "column": "x; DROP TABLE y", "column_type": "INT"}),
            "column",
        ),
        (
            json!({"table": "wp_molam_orders", "column": "x", "column_type": "BLOB"}),
            "column_type",
        ),
        (
            json!({"table": "wp_molam_orders", "column": "x"}),
            "column_type",
        ),
        (
            json!({"table": "wp_molam_orders", "column": "x", "column_type": "INT", "extra": 1}),
            "extra",
        ),
        (
            json!({"table": 5, "column": "x", "column_type": "INT"}),
            "table",
        ),
    ] {
        match try_run("add_missing_column", &snapshot(), params) {
            Err(RunError::InvalidParams { param: p, .. }) => assert_eq!(p, param),
            other => panic!("{param}: {other:?}"),
        }
    }
}

#[test]
fn update_memory_limit_raises_never_lowers() {
    let set = |v: &str| Operation::SetConfig {
        key: "memory_limit".into(),
        value: json!(v),
    };
    let check_limit = |snap: &State, to: &str, expected| {
        let params = json!({"memory_limit": to});
        check("update_memory_limit", snap, params, expected)
    };
    let run = check_limit(&snapshot(), "256M", vec![set("256M")]);
    assert_eq!(run.state.config["memory_limit"], json!("256M"));
    assert_eq!(run.restore, vec![set("128M")]);
    check_limit(&snapshot(), "1G", vec![set("1G")]);
    check_limit(&snapshot(), "-1", vec![set("-1")]);
    check_limit(&snapshot(), "64M", vec![]);
    check_limit(&snapshot(), "131072K", vec![]);

    let mut unset = snapshot();
    unset.config.remove("memory_limit");
    let run = check_limit(&unset, "256M", vec![set("256M")]);
    assert_eq!(
        run.restore,
        vec![Operation::UnsetConfig {
            key: "memory_limit".into()
        }]
    );
    let mut empty = snapshot();
    empty.config.clear();
    check_limit(&empty, "256M", vec![set("256M")]);
    let mut unlimited = snapshot();
    unlimited.config.insert("memory_limit".into(), json!("-1"));
    check_limit(&unlimited, "512M", vec![]);

    assert!(matches!(
        try_run(
            "update_memory_limit",
            &snapshot(),
            json!({"memory_limit": "lots"})
        ),
        Err(RunError::InvalidParams { .. })
    ));
}

#[test]
fn php_upgrade_notice_only_when_php_is_older() {
    let notice = |required: &str, expected| {
        let params = json!({"required_php": required});
        check("php_upgrade_notice", &snapshot(), params, expected)
    };
    let run = notice(
        "8.1",
        vec![Operation::NotifyMerchant {
            template: "php_upgrade".into(),
            severity: Severity::Warning,
            message: "This site runs PHP 7.4.33 but the payment plugin needs PHP 8.1 or newer. Ask your hosting provider to upgrade PHP.".into(),
            data: Some(
                [("current_php".to_string(), json!("7.4.33")), ("required_php".to_string(), json!("8.1"))]
                    .into_iter()
                    .collect(),
            ),
        }],
    );
    assert_eq!(run.state, snapshot());
    assert!(run.restore.is_empty(), "a notice has nothing to roll back");
    notice("7.4", vec![]);
    notice("7.4.33", vec![]);
}

#[test]
fn php_upgrade_notice_compares_numerically() {
    let mut snap = snapshot();
    snap.facts.insert("php_version".into(), json!("7.4.33"));
    let r = run_ok("php_upgrade_notice", &snap, json!({"required_php": "7.10"}));
    assert_eq!(r.operations.len(), 1, "7.4.33 is older than 7.10");
    snap.facts.insert("php_version".into(), json!("8.2.1"));
    let r = run_ok("php_upgrade_notice", &snap, json!({"required_php": "8.1"}));
    assert!(r.operations.is_empty());
    snap.facts.insert("php_version".into(), json!("10.0"));
    assert!(
        run_ok("php_upgrade_notice", &snap, json!({"required_php": "9.9"}))
            .operations
            .is_empty()
    );
    snap.facts.remove("php_version");
    assert_eq!(
        try_run("php_upgrade_notice", &snap, json!({"required_php": "8.1"})).unwrap_err(),
        RunError::PatchRefused("snapshot has no php_version".into())
    );
}

fn run_ok(patch: &str, snap: &State, params: Value) -> host::DryRun {
    try_run(patch, snap, params).unwrap()
}

#[test]
fn api_key_refresh_notice_names_platform_and_version() {
    let run = run_ok("api_key_refresh_notice", &snapshot(), json!({}));
    match run.operations.as_slice() {
        [Operation::NotifyMerchant {
            template,
            severity,
            message,
            data: Some(data),
        }] => {
            assert_eq!(template, "api_key_refresh");
            assert_eq!(*severity, Severity::Critical);
            assert!(message.contains("401 Unauthorized"));
            assert_eq!(data["platform"], json!("woocommerce"));
            assert_eq!(data["plugin_version"], json!("1.3.5"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(run.state, snapshot());
    let mut bare = State::default();
    bare.facts.insert("platform".into(), json!("shopify"));
    let run = run_ok("api_key_refresh_notice", &bare, Value::Null);
    let Operation::NotifyMerchant {
        data: Some(data), ..
    } = &run.operations[0]
    else {
        panic!()
    };
    assert_eq!(data["plugin_version"], Value::Null);
}

#[test]
fn committed_modules_are_built_from_their_sources() {
    for name in SHIPPED {
        let dir = patches_dir().join(name);
        let (template, _module) =
            host::tools::read_patch_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(template.name, name);
    }
}

#[test]
fn committed_bundles_verify_with_the_dev_key_today() {
    let key = patches_dir()
        .join("dev-key")
        .join(host::tools::PUBLIC_KEY_FILE);
    let trusted = host::tools::load_trusted_keys(&[key]).unwrap();
    let bundles =
        host::tools::load_bundle_dir(&patches_dir().join("bundles"), &trusted, chrono::Utc::now())
            .unwrap();
    let mut names: Vec<&str> = bundles.iter().map(|b| b.manifest().name.as_str()).collect();
    names.sort();
    assert_eq!(names, SHIPPED);
    for bundle in &bundles {
        // The committed bundle carries exactly the committed module.
        let dir = patches_dir().join(&bundle.manifest().name);
        assert_eq!(
            bundle.module_bytes(),
            std::fs::read(dir.join("patch.wasm")).unwrap()
        );
        assert!(bundle.manifest().expires_at > chrono::Utc::now() + chrono::Duration::days(180));
    }
}

/// Re-sign the shipped bundles with the development key:
/// `AUTOHEAL_PATCH_VERSION=1.0.1 cargo test -p host --test all -- --ignored resign_shipped_bundles`
#[test]
#[ignore]
fn resign_shipped_bundles() {
    let version = std::env::var("AUTOHEAL_PATCH_VERSION").unwrap_or_else(|_| "1.0.0".into());
    let key = patches_dir()
        .join("dev-key")
        .join(host::tools::PRIVATE_KEY_FILE);
    let out_dir = patches_dir().join("bundles");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in SHIPPED {
        let dir = patches_dir().join(name);
        host::tools::build_patch(&dir).unwrap();
        let out = out_dir.join(format!("{name}-{version}{}", host::tools::BUNDLE_SUFFIX));
        host::tools::sign_patch_to_file(
            &dir,
            &key,
            &version,
            chrono::Duration::days(1825),
            chrono::Utc::now(),
            &out,
        )
        .unwrap();
        eprintln!("signed {}", out.display());
    }
}

/// Writes `patches/dev-key/command.cert.json`: the committed DEVELOPMENT root certifies the
/// committed development command key from 2025 (the test suite's clock) for five years from
/// now. Run after changing either key:
/// `cargo test -p host --test all -- --ignored recertify_development_command_key`.
#[test]
#[ignore]
fn recertify_development_command_key() {
    let dev = patches_dir().join("dev-key");
    let root = host::tools::read_signing_key(&dev.join(host::tools::PRIVATE_KEY_FILE)).unwrap();
    let command =
        host::tools::read_public_key(&dev.join(host::tools::COMMAND_PUBLIC_KEY_FILE)).unwrap();
    let not_before = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let not_after = chrono::Utc::now() + chrono::Duration::days(1825);
    let envelope = host::command::certify(&root, &command, not_before, not_after);
    let out = dev.join(DEV_CERTIFICATE_FILE);
    std::fs::write(&out, host::tools::certificate_file_bytes(&envelope)).unwrap();
    eprintln!("certified {} until {not_after}", command.key_id());
}

const DEV_CERTIFICATE_FILE: &str = "command.cert.json";
