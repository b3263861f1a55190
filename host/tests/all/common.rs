//! Fixtures shared by the test modules.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use host::bundle::{manifest_bytes, sha256_hex, RequestedLimits};
use host::ops::OperationKind;
use host::{
    AcceptedVersions, Host, HostConfig, Manifest, PatchType, SigningKey, State, TrustedKeys,
    VerifiedBundle,
};
use serde_json::json;

/// The fixed "now" the signing tests use.
pub fn now() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

pub fn test_key() -> SigningKey {
    SigningKey::from_seed(&[7u8; 32])
}

pub fn other_key() -> SigningKey {
    SigningKey::from_seed(&[9u8; 32])
}

pub fn trusted() -> TrustedKeys {
    [test_key().public_key()].into_iter().collect()
}

pub fn patches_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches")
}

/// One host for the whole test binary, as in the server: one engine per process.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new(HostConfig::default()).expect("host"))
}

pub fn manifest(name: &str, version: &str, module: &[u8], limits: RequestedLimits) -> Manifest {
    Manifest {
        name: name.into(),
        version: version.parse().unwrap(),
        patch_type: PatchType::ConfigUpdate,
        description: String::new(),
        platforms: vec!["all".into()],
        plugin_versions: "*".parse().unwrap(),
        module_sha256: sha256_hex(module),
        module_size_bytes: module.len() as u64,
        created_at: now(),
        expires_at: now() + Duration::days(30),
        abi_version: host::ABI_VERSION,
        operations: ALL_APPLY_KINDS.to_vec(),
        limits,
        params_schema: Default::default(),
    }
}

/// Every kind a patch may return: what the test manifests declare, so a test module's
/// operations are refused only where a test says so.
pub const ALL_APPLY_KINDS: [OperationKind; 4] = [
    OperationKind::AddColumn,
    OperationKind::SetConfig,
    OperationKind::UnsetConfig,
    OperationKind::NotifyMerchant,
];

pub fn sign(manifest: &Manifest, module: &[u8]) -> Vec<u8> {
    host::sign_bundle(&manifest_bytes(manifest), module, &[&test_key()]).unwrap()
}

pub fn verify(bundle: &[u8]) -> Result<VerifiedBundle, host::VerifyError> {
    host::verify_bundle(bundle, &trusted(), &AcceptedVersions::new(), now())
}

/// A signed, verified bundle around a module written in WebAssembly text.
pub fn wat_bundle(wat: &str, limits: RequestedLimits) -> VerifiedBundle {
    let module = wat::parse_str(wat).expect("test module assembles");
    verify(&sign(
        &manifest("test_patch", "1.0.0", &module, limits),
        &module,
    ))
    .unwrap()
}

/// A shipped patch directory, signed with the test key and verified.
pub fn shipped(name: &str) -> VerifiedBundle {
    let key_file = test_key_file();
    let bytes = host::tools::sign_patch(
        &patches_dir().join(name),
        &key_file,
        "1.0.0",
        Duration::days(30),
        now(),
    )
    .unwrap();
    verify(&bytes).unwrap()
}

/// The test key written to a file once per process.
pub fn test_key_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = temp_dir("test-key");
        host::tools::write_keys(&dir, &test_key(), host::tools::KeyRole::Root).unwrap();
        dir.join(host::tools::PRIVATE_KEY_FILE)
    })
    .clone()
}

/// A fresh empty directory under the target's temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "autoheal-host-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        label
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A WooCommerce site's snapshot, as the server would store it.
pub fn snapshot() -> State {
    serde_json::from_value(json!({
        "platform": "woocommerce",
        "plugin_version": "1.3.5",
        "php_version": "7.4.33",
        "config": { "memory_limit": "128M", "debug": false, "payment.timeout_ms": 30000 },
        "tables": {
            "wp_molam_orders": { "id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)", "currency": "CHAR(3)" },
            "wp_molam_refunds": { "id": "BIGINT UNSIGNED" }
        }
    }))
    .unwrap()
}
