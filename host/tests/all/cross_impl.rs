//! Other implementations agree with the host: PHP's libsodium verifies what `sign_patch`
//! produced (and refuses a tampered copy), and Node's WebAssembly engine runs a shipped
//! module to the byte-identical output. Needs `php` (with sodium) and `node`: missing,
//! these fail when `CI` is set and are skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Duration;
use host::bundle::BundleFile;
use host::tools;
use serde_json::json;

use crate::common::{host, now, patches_dir, shipped, snapshot, temp_dir, test_key_file};

fn script(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// Is `program` runnable? If not: panic under CI, print a skip otherwise.
fn available(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("`{program}` is required in CI (install it: see patches/README.md)");
        }
        eprintln!(
            "SKIPPED: `{program}` not found or not usable; cross-implementation check not run"
        );
    }
    ok
}

fn php(bundle: &Path, key: &Path, now_unix: i64) -> (bool, String) {
    let out = Command::new("php")
        .arg(script("php/verify_bundle.php"))
        .arg(bundle)
        .arg(key)
        .arg(now_unix.to_string())
        .output()
        .expect("php runs");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{out:?}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn php_libsodium_verifies_a_signed_bundle_and_refuses_tampered_ones() {
    if !available(
        "php",
        &[
            "-r",
            "exit(function_exists('sodium_crypto_sign_verify_detached') ? 0 : 1);",
        ],
    ) {
        return;
    }
    let dir = temp_dir("php");
    let bundle = dir.join("add_missing_column.bundle.json");
    tools::sign_patch_to_file(
        &patches_dir().join("add_missing_column"),
        &test_key_file(),
        "2.0.1",
        Duration::days(30),
        now(),
        &bundle,
    )
    .unwrap();
    let key = test_key_file().with_file_name(tools::PUBLIC_KEY_FILE);
    let t = now().timestamp();
    assert_eq!(
        php(&bundle, &key, t),
        (true, "OK add_missing_column 2.0.1".into())
    );

    let bytes = std::fs::read(&bundle).unwrap();
    type Change<'a> = &'a dyn Fn(&mut BundleFile, &mut Vec<u8>, &mut Vec<u8>);
    let tamper = |label: &str, change: Change| {
        let mut file: BundleFile = serde_json::from_slice(&bytes).unwrap();
        let mut manifest = B64.decode(&file.manifest).unwrap();
        let mut module = B64.decode(&file.module).unwrap();
        change(&mut file, &mut manifest, &mut module);
        file.manifest = B64.encode(&manifest);
        file.module = B64.encode(&module);
        let path = dir.join(format!("{label}.bundle.json"));
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        php(&path, &key, t)
    };
    assert_eq!(
        tamper("manifest", &|_, m, _| m[30] ^= 1),
        (false, "REFUSED: bad signature".into())
    );
    assert_eq!(
        tamper("signature", &|f, _, _| {
            let mut s = B64.decode(&f.signatures[0].signature).unwrap();
            s[0] ^= 1;
            f.signatures[0].signature = B64.encode(s);
        }),
        (false, "REFUSED: bad signature".into())
    );
    assert_eq!(
        tamper("module", &|_, _, m| m[50] ^= 1),
        (false, "REFUSED: hash mismatch".into())
    );
    assert_eq!(
        tamper("truncated", &|_, _, m| m.truncate(10)),
        (false, "REFUSED: size mismatch".into())
    );
    let other = tools::generate_keys(&temp_dir("php-other"), tools::KeyRole::Root).unwrap();
    assert_eq!(
        php(&bundle, &other.public_key, t),
        (false, "REFUSED: unknown key".into())
    );
    let expired = (now() + Duration::days(31)).timestamp();
    assert_eq!(
        php(&bundle, &key, expired),
        (false, "REFUSED: expired".into())
    );

    // The committed bundles verify in PHP with the committed development key, today.
    let dev_key = patches_dir().join("dev-key").join(tools::PUBLIC_KEY_FILE);
    for entry in std::fs::read_dir(patches_dir().join("bundles")).unwrap() {
        let path = entry.unwrap().path();
        let (ok, out) = php(&path, &dev_key, chrono::Utc::now().timestamp());
        assert!(ok, "{}: {out}", path.display());
    }
}

#[test]
fn node_runs_a_shipped_module_to_the_same_bytes() {
    if !available("node", &["--version"]) {
        return;
    }
    let dir = temp_dir("node");
    let cases = [
        (
            "add_missing_column",
            json!({"table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}),
        ),
        (
            "add_missing_column",
            json!({"table": "wp_nope", "column": "x", "column_type": "INT"}),
        ),
        ("update_memory_limit", json!({"memory_limit": "256M"})),
        ("php_upgrade_notice", json!({"required_php": "8.1"})),
        ("api_key_refresh_notice", json!({})),
    ];
    for (i, (patch, params)) in cases.into_iter().enumerate() {
        let bundle = shipped(patch);
        let input = host::abi_input(&snapshot(), &params);
        let expected = match host().dry_run(&bundle, &snapshot(), &params) {
            Ok(run) => run.output,
            Err(host::RunError::PatchRefused(message)) => {
                serde_json::to_vec(&json!({"error": message})).unwrap()
            }
            Err(e) => panic!("{patch}: {e}"),
        };
        let module = dir.join(format!("{i}.wasm"));
        let input_file = dir.join(format!("{i}.json"));
        let output_file = dir.join(format!("{i}.out"));
        std::fs::write(&module, bundle.module_bytes()).unwrap();
        std::fs::write(&input_file, &input).unwrap();
        let out = Command::new("node")
            .arg(script("node/run_patch.mjs"))
            .arg(&module)
            .arg(&input_file)
            .arg(&output_file)
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{patch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(&output_file).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{patch}: Node and the host disagree"
        );
        assert_eq!(got, expected);
    }
}
