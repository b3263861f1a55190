//! Verification refuses every tampered, untrusted, expired or old bundle, each with its own
//! typed error, before anything is compiled.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::Duration;
use host::bundle::{manifest_bytes, BundleFile, BundleSignature};
use host::{AcceptedVersions, TrustedKeys, VerifyError};

use crate::common::{manifest, now, other_key, patches_dir, sign, test_key, trusted, verify};

fn module(name: &str) -> Vec<u8> {
    std::fs::read(patches_dir().join(name).join("patch.wasm")).unwrap()
}

fn good() -> (host::Manifest, Vec<u8>, Vec<u8>) {
    let module = module("update_memory_limit");
    let m = manifest("update_memory_limit", "1.2.0", &module, Default::default());
    let bundle = sign(&m, &module);
    (m, module, bundle)
}

/// Decode a bundle, change it, encode it again.
fn tamper(
    bundle: &[u8],
    change: impl FnOnce(&mut BundleFile, &mut Vec<u8>, &mut Vec<u8>),
) -> Vec<u8> {
    let mut file: BundleFile = serde_json::from_slice(bundle).unwrap();
    let mut manifest = B64.decode(&file.manifest).unwrap();
    let mut module = B64.decode(&file.module).unwrap();
    change(&mut file, &mut manifest, &mut module);
    file.manifest = B64.encode(&manifest);
    file.module = B64.encode(&module);
    serde_json::to_vec(&file).unwrap()
}

fn flip_signature(file: &mut BundleFile, index: usize) {
    let mut sig = B64.decode(&file.signatures[index].signature).unwrap();
    sig[10] ^= 0x01;
    file.signatures[index].signature = B64.encode(sig);
}

#[test]
fn a_good_bundle_verifies() {
    let (m, module, bundle) = good();
    let v = verify(&bundle).unwrap();
    assert_eq!(*v.manifest(), m);
    assert_eq!(v.module_bytes(), module);
    assert_eq!(
        v.signed_by(),
        [test_key().public_key().key_id().to_string()]
    );
}

#[test]
fn one_flipped_byte_in_the_module_is_a_hash_mismatch() {
    let (_, _, bundle) = good();
    let bad = tamper(&bundle, |_, _, module| module[40] ^= 0x01);
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::HashMismatch { .. })
    ));
}

#[test]
fn a_truncated_or_padded_module_is_a_size_mismatch() {
    let (_, module, bundle) = good();
    let bad = tamper(&bundle, |_, _, m| m.truncate(m.len() - 1));
    assert_eq!(
        verify(&bad).unwrap_err(),
        VerifyError::SizeMismatch {
            expected: module.len() as u64,
            actual: module.len() as u64 - 1
        }
    );
    let bad = tamper(&bundle, |_, _, m| m.push(0));
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::SizeMismatch { .. })
    ));
}

#[test]
fn a_module_swapped_under_a_valid_manifest_is_refused() {
    let (_, module, bundle) = good();
    // Another real module, different size.
    let other = self::module("api_key_refresh_notice");
    assert_ne!(other.len(), module.len());
    let bad = tamper(&bundle, |_, _, m| *m = other.clone());
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::SizeMismatch { .. })
    ));
    // A different module of exactly the same size: the hash catches it.
    let mut same_size = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    // Pad with a custom section to the same length.
    let pad = module.len() - same_size.len() - 3;
    same_size.push(0); // custom section id
    let mut payload = vec![1u8, b'x'];
    payload.resize(pad, 0);
    leb128(&mut same_size, payload.len() as u32);
    same_size.extend_from_slice(&payload);
    same_size.truncate(module.len());
    assert_eq!(same_size.len(), module.len());
    let bad = tamper(&bundle, |_, _, m| *m = same_size.clone());
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::HashMismatch { .. })
    ));
}

fn leb128(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn one_flipped_byte_in_the_manifest_or_the_signature_is_signature_invalid() {
    let (_, _, bundle) = good();
    let key_id = test_key().public_key().key_id().to_string();
    let bad = tamper(&bundle, |_, manifest, _| manifest[20] ^= 0x01);
    assert_eq!(
        verify(&bad).unwrap_err(),
        VerifyError::SignatureInvalid {
            key_id: key_id.clone()
        }
    );
    let bad = tamper(&bundle, |file, _, _| flip_signature(file, 0));
    assert_eq!(
        verify(&bad).unwrap_err(),
        VerifyError::SignatureInvalid { key_id }
    );
    // A manifest edited to point at another module's hash: still the signature.
    let bad = tamper(&bundle, |_, manifest, _| {
        let text = String::from_utf8(manifest.clone())
            .unwrap()
            .replace("\"1.2.0\"", "\"9.9.9\"");
        *manifest = text.into_bytes();
    });
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::SignatureInvalid { .. })
    ));
}

#[test]
fn an_unknown_key_is_refused() {
    let (m, module, _) = good();
    let bundle = host::sign_bundle(&manifest_bytes(&m), &module, &[&other_key()]).unwrap();
    assert_eq!(
        verify(&bundle).unwrap_err(),
        VerifyError::UnknownKey {
            key_ids: vec![other_key().public_key().key_id().to_string()]
        }
    );
    // Claiming a trusted key id with a signature by another key does not help.
    let bad = tamper(&bundle, |file, _, _| {
        file.signatures[0].key_id = test_key().public_key().key_id().into()
    });
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::SignatureInvalid { .. })
    ));
}

#[test]
fn several_signatures_and_key_rotation() {
    let (m, module, _) = good();
    let both =
        host::sign_bundle(&manifest_bytes(&m), &module, &[&other_key(), &test_key()]).unwrap();
    // Only the test key is trusted: the other signature is ignored.
    assert!(verify(&both).is_ok());
    // Both trusted (rotation): both verify.
    let mut keys = trusted();
    keys.add(other_key().public_key());
    let v = host::verify_bundle(&both, &keys, &AcceptedVersions::new(), now()).unwrap();
    assert_eq!(v.signed_by().len(), 2);
    // But a trusted signature that does not verify is never skipped.
    let bad = tamper(&both, |file, _, _| flip_signature(file, 0));
    assert!(matches!(
        host::verify_bundle(&bad, &keys, &AcceptedVersions::new(), now()),
        Err(VerifyError::SignatureInvalid { .. })
    ));
    // No signatures at all.
    let bad = tamper(&both, |file, _, _| file.signatures.clear());
    assert_eq!(verify(&bad).unwrap_err(), VerifyError::NoSignature);
    assert!(matches!(
        host::verify_bundle(&both, &TrustedKeys::new(), &AcceptedVersions::new(), now()),
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn an_expired_bundle_is_refused() {
    let (m, _, bundle) = good();
    let at = |t| host::verify_bundle(&bundle, &trusted(), &AcceptedVersions::new(), t);
    assert!(at(m.expires_at - Duration::seconds(1)).is_ok());
    assert_eq!(
        at(m.expires_at).unwrap_err(),
        VerifyError::Expired {
            expires_at: m.expires_at,
            now: m.expires_at
        }
    );
    assert!(matches!(
        at(m.expires_at + Duration::days(400)),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn versions_only_go_up_per_patch_name() {
    let module = module("update_memory_limit");
    let bundle = |v: &str| {
        sign(
            &manifest("update_memory_limit", v, &module, Default::default()),
            &module,
        )
    };
    let mut accepted = AcceptedVersions::new();
    let check = |accepted: &AcceptedVersions, v: &str| {
        host::verify_bundle(&bundle(v), &trusted(), accepted, now())
    };
    let v1 = check(&accepted, "1.2.0").unwrap();
    accepted.record(v1.manifest());
    assert_eq!(
        check(&accepted, "1.2.0").unwrap_err(),
        VerifyError::Replay {
            name: "update_memory_limit".into(),
            version: "1.2.0".parse().unwrap()
        }
    );
    assert_eq!(
        check(&accepted, "1.1.9").unwrap_err(),
        VerifyError::Downgrade {
            name: "update_memory_limit".into(),
            offered: "1.1.9".parse().unwrap(),
            accepted: "1.2.0".parse().unwrap()
        }
    );
    assert!(matches!(
        check(&accepted, "1.2.0-rc.1"),
        Err(VerifyError::Downgrade { .. })
    ));
    let v2 = check(&accepted, "1.2.1").unwrap();
    accepted.record(v2.manifest());
    assert!(matches!(
        check(&accepted, "1.2.0"),
        Err(VerifyError::Downgrade { .. })
    ));
    // Another name is independent.
    let other = sign(
        &manifest("add_missing_column", "0.1.0", &module, Default::default()),
        &module,
    );
    assert!(host::verify_bundle(&other, &trusted(), &accepted, now()).is_ok());
    // The state is plain data the server can persist.
    let json = serde_json::to_string(&accepted).unwrap();
    assert_eq!(
        serde_json::from_str::<AcceptedVersions>(&json).unwrap(),
        accepted
    );
}

#[test]
fn malformed_bundles_and_manifests_are_refused() {
    assert!(matches!(
        verify(b"not json"),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify(&vec![b' '; 9 << 20]),
        Err(VerifyError::BundleTooLarge { .. })
    ));
    let (m, module, bundle) = good();
    let bad = tamper(&bundle, |file, _, _| file.bundle_format = 2);
    assert!(matches!(verify(&bad), Err(VerifyError::Malformed(_))));

    // Signed, but not a manifest: refused after the signature check, never trusted.
    let key = test_key();
    let raw = br#"{"name":"x"}"#.to_vec();
    let file = BundleFile {
        bundle_format: 1,
        manifest: B64.encode(&raw),
        signatures: vec![BundleSignature {
            key_id: key.public_key().key_id().into(),
            algorithm: "ed25519".into(),
            signature: B64.encode(key.sign(&raw)),
        }],
        module: B64.encode(&module),
    };
    assert!(matches!(
        verify(&serde_json::to_vec(&file).unwrap()),
        Err(VerifyError::ManifestInvalid(_))
    ));

    let mut future = m.clone();
    future.abi_version = 2;
    assert_eq!(
        verify(&sign(&future, &module)).unwrap_err(),
        VerifyError::UnsupportedAbi {
            found: 2,
            supported: 1
        }
    );
}

#[test]
fn key_ids_are_derived_from_the_public_key() {
    let pk = test_key().public_key();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(pk.to_bytes());
    assert_eq!(pk.key_id(), hex::encode(&digest[..8]));
    assert_eq!(pk.key_id().len(), 16);
    assert_ne!(pk.key_id(), other_key().public_key().key_id());
}

#[test]
fn manifest_names_must_be_identifiers_and_targets_match() {
    let module = module("update_memory_limit");
    let mut m = manifest("update memory", "1.0.0", &module, Default::default());
    assert!(matches!(
        verify(&sign(&m, &module)),
        Err(VerifyError::ManifestInvalid(_))
    ));
    m.name = "update_memory_limit".into();
    m.platforms = vec!["woocommerce".into(), "prestashop".into()];
    m.plugin_versions = ">=1.2.0, <2.0.0".parse().unwrap();
    let v = verify(&sign(&m, &module)).unwrap();
    let ver = |s: &str| s.parse::<semver::Version>().unwrap();
    assert!(v.manifest().applies_to("woocommerce", &ver("1.3.5")));
    assert!(!v.manifest().applies_to("shopify", &ver("1.3.5")));
    assert!(!v.manifest().applies_to("woocommerce", &ver("2.0.0")));
}
