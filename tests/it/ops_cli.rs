//! Ops' file tooling through the binary: `rules`, `interop`, `keys`, `patch`.

use crate::support::json_stdout;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn autoheal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run autoheal")
}

fn write(path: &Path, value: &Value) -> String {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn shipped_rules_check_and_pass_their_cases() {
    let checked = json_stdout(&autoheal(&["rules", "check", "rules"]));
    assert_eq!(checked["status"], "ok");
    assert_eq!(checked["healing_rules"], 4);
    assert_eq!(checked["interop_mappings"], 6);
    let tested = autoheal(&["rules", "test", "rules"]);
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stdout)
    );
}

/// `rules check --patches` holds each rule against its verified patch: the shipped rules fit
/// (the seed's detection without a table is reported as what Ops would be asked for), and a
/// rule that hands its patch a parameter the patch does not take is refused, named.
#[test]
fn rules_are_checked_against_their_patches() {
    let checked = json_stdout(&autoheal(&[
        "rules",
        "check",
        "rules",
        "--patches",
        "patches/bundles",
    ]));
    assert_eq!(checked["patches_checked"], 4);
    assert!(
        checked["needs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["rule"] == "missing_database_column" && n["needs"] == json!(["table"])),
        "{checked}"
    );

    let dir = tempfile::tempdir().unwrap();
    for folder in ["healing", "tests"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    std::fs::write(
        dir.path().join("healing/memory.rhai"),
        "let rule = #{ name: \"memory\", pattern: \"Allowed memory size\", platforms: [\"all\"],\n\
           auto_apply: false, min_confidence: 80, patch: \"update_memory_limit\",\n\
           extract: #{ current_bytes: \"size of ([0-9]+) bytes\" } };\n\
         fn params(detection, captures) { #{ memory_limit: \"512M\" } }\n",
    )
    .unwrap();
    write(
        &dir.path().join("tests/healing.json"),
        &json!({"cases": [{"name": "out of memory",
            "detection": {"platform": "woocommerce", "sira_confidence": 90,
                          "detected_issue": "Allowed memory size of 134217728 bytes exhausted"},
            "expect": {"rule": "memory"}}]}),
    );
    let output = autoheal(&[
        "rules",
        "check",
        dir.path().to_str().unwrap(),
        "--patches",
        "patches/bundles",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rule memory gives patch update_memory_limit parameters it does not take")
            && stderr.contains("current_bytes"),
        "{stderr}"
    );
    // Without the patches, the same rules check: their file syntax is right.
    json_stdout(&autoheal(&["rules", "check", dir.path().to_str().unwrap()]));
}

#[test]
fn a_broken_rule_file_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("healing")).unwrap();
    std::fs::write(
        dir.path().join("healing/broken.rhai"),
        "let rule = #{\n  name: \"x\",\n  pattern: \n",
    )
    .unwrap();
    let output = autoheal(&["rules", "check", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("healing/broken.rhai:"), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");
}

#[test]
fn explain_prints_the_decision_and_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let explain = |confidence: f64| {
        let detection = json!({
            "platform": "woocommerce", "plugin_version": "1.3.5",
            "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
            "issue_severity": "high", "sira_confidence": confidence
        });
        let file = write(&dir.path().join(format!("{confidence}.json")), &detection);
        json_stdout(&autoheal(&[
            "rules",
            "explain",
            "--detection",
            &file,
            "--rules",
            "rules",
        ]))
    };
    let decision = explain(92.5);
    assert_eq!(decision["outcome"], "auto_apply");
    assert_eq!(decision["rule"], "missing_database_column");
    assert_eq!(decision["params"]["column"], "merchant_fee");
    assert!(decision["trace"]
        .as_array()
        .is_some_and(|trace| !trace.is_empty()));
    assert_eq!(explain(70.0)["outcome"], "pending_review");
}

#[test]
fn interop_normalize_maps_a_shopify_order() {
    let dir = tempfile::tempdir().unwrap();
    let payload = write(
        &dir.path().join("order.json"),
        &json!({"id": 450789469, "total_price": "550.00", "currency": "USD"}),
    );
    let normalize = |event: &str| {
        autoheal(&[
            "interop",
            "normalize",
            "--platform",
            "shopify",
            "--event",
            event,
            "--payload",
            &payload,
            "--rules",
            "rules",
        ])
    };
    let event = json_stdout(&normalize("orders/create"));
    assert_eq!(event["type"], "checkout.created");
    assert_eq!(event["data"]["order_id"], 450789469);
    assert_eq!(event["data"]["amount"], 55000);
    assert!(!normalize("carts/update").status.success());
}

#[test]
fn keys_sign_verify_and_run_a_shipped_patch() {
    let dir = tempfile::tempdir().unwrap();
    let keys = json_stdout(&autoheal(&[
        "keys",
        "generate",
        "--out",
        dir.path().to_str().unwrap(),
    ]));
    let private = keys["private_key"].as_str().unwrap().to_owned();
    let public = keys["public_key"].as_str().unwrap().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is readable by its owner only"
        );
    }
    let bundle = dir
        .path()
        .join("add_missing_column.bundle.json")
        .display()
        .to_string();
    let signed = json_stdout(&autoheal(&[
        "patch",
        "sign",
        "patches/add_missing_column",
        "--key",
        &private,
        "--version",
        "2.0.0",
        "--expires-in",
        "1d",
        "--out",
        &bundle,
    ]));
    assert_eq!(signed["name"], "add_missing_column");
    let verify = |key: &str| autoheal(&["patch", "verify", &bundle, "--trusted-key", key]);
    assert_eq!(json_stdout(&verify(&public))["status"], "verified");
    let untrusted = verify("patches/dev-key/autoheal.pub");
    assert!(
        !untrusted.status.success(),
        "a bundle signed by another key is refused"
    );

    let snapshot = write(
        &dir.path().join("snapshot.json"),
        &json!({
            "config": {"memory_limit": "128M"},
            "tables": {"wp_molam_orders": {"amount": "DECIMAL(10,2)", "id": "BIGINT UNSIGNED"}},
            "php_version": "8.1.0", "platform": "woocommerce", "plugin_version": "1.3.5"
        }),
    );
    let params = write(
        &dir.path().join("params.json"),
        &json!({
            "table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"
        }),
    );
    let run_with = |params: &str| {
        autoheal(&[
            "patch",
            "run",
            &bundle,
            "--trusted-key",
            &public,
            "--snapshot",
            &snapshot,
            "--params",
            params,
        ])
    };
    let run = json_stdout(&run_with(&params));
    assert_eq!(run["operations"][0]["op"], "add_column");
    assert_eq!(
        run["state"]["tables"]["wp_molam_orders"]["merchant_fee"],
        "DECIMAL(10,2)"
    );
    let bad_params = write(
        &dir.path().join("bad.json"),
        &json!({"table": "wp_molam_orders"}),
    );
    let refused = run_with(&bad_params);
    assert!(
        !refused.status.success(),
        "params are checked against the manifest's schema"
    );
}

/// `--expires-in` is bounded: at most 5 years, refused with a clear error beyond (once a
/// panic on overflow, or a year-10240 date that JavaScript cannot read).
#[test]
fn patch_sign_bounds_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.bundle.json").display().to_string();
    let sign = |expires_in: &str| {
        autoheal(&[
            "patch",
            "sign",
            "patches/add_missing_column",
            "--key",
            "patches/dev-key/autoheal.key",
            "--version",
            "9.0.0",
            "--expires-in",
            expires_in,
            "--out",
            &out,
        ])
    };
    for too_long in ["100000000d", "3000000d", "1827d", "262w"] {
        let output = sign(too_long);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{too_long}: {stderr}");
        assert!(stderr.contains("at most 5 years"), "{too_long}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!Path::new(&out).exists(), "nothing was written");
    }
    let signed = json_stdout(&sign("1826d"));
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(signed["expires_at"].as_str().unwrap()).unwrap();
    assert!(chrono::Datelike::year(&expires_at) < 2100, "{expires_at}");
}
