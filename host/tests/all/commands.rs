//! Signed commands: DSSE's encoding, strict base64, certificates and the command signer, the
//! manifest's declared operations, and the conformance kit as committed.

use chrono::Duration;
use host::command::{
    self, decode_canonical_base64, pae, CertificateError, CommandSigner, Envelope,
};
use host::ops::OperationKind;
use host::tools::{self, KeyRole};
use host::{RunError, SigningKey, ToolError, TrustedKeys, VerifyError};

use crate::common::{manifest, now, sign, temp_dir, verify, wat_bundle};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn roots(keys: &[&SigningKey]) -> TrustedKeys {
    keys.iter().map(|k| k.public_key()).collect()
}

#[test]
fn pae_is_dsse_v1() {
    // The DSSE specification's own example.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn only_canonical_base64_decodes() {
    let cases: [(&str, Option<&[u8]>); 9] = [
        ("aGVsbG8=", Some(b"hello")),
        ("", Some(b"")),
        ("aGVsbG8", None),    // padding missing
        ("aGVsbG8==", None),  // padding extra
        ("aGVsbG9=", None),   // non-zero unused bits
        ("aGVs\nbG8=", None), // a line break
        (" aGVsbG8=", None),  // a space
        ("aGVsbG8-", None),   // the URL-safe alphabet
        ("aGVsbG8=\n", None), // a trailing newline
    ];
    for (text, expected) in cases {
        assert_eq!(
            decode_canonical_base64(text).as_deref(),
            expected,
            "{text:?}"
        );
    }
}

#[test]
fn a_signer_starts_only_with_a_certificate_that_chains_to_a_trusted_root_for_its_key_now() {
    let (root, command_key, other) = (key(1), key(2), key(3));
    let t = now();
    let certificate = command::certify(&root, &command_key.public_key(), t, t + Duration::days(30));
    let signer = CommandSigner::new(key(2), certificate.clone(), &roots(&[&root]), t).unwrap();
    assert_eq!(signer.key_id(), command_key.public_key().key_id());
    assert_eq!(signer.not_after(), t + Duration::days(30));

    type Check = (
        &'static str,
        Result<CommandSigner, CertificateError>,
        fn(&CertificateError) -> bool,
    );
    let checks: [Check; 5] = [
        (
            "another root",
            CommandSigner::new(key(2), certificate.clone(), &roots(&[&other]), t),
            |e| matches!(e, CertificateError::UnknownRoot),
        ),
        (
            "another key",
            CommandSigner::new(key(3), certificate.clone(), &roots(&[&root]), t),
            |e| matches!(e, CertificateError::OtherKey { .. }),
        ),
        (
            "before the window",
            CommandSigner::new(
                key(2),
                certificate.clone(),
                &roots(&[&root]),
                t - Duration::seconds(1),
            ),
            |e| matches!(e, CertificateError::OutsideWindow { .. }),
        ),
        (
            "at its end",
            CommandSigner::new(
                key(2),
                certificate.clone(),
                &roots(&[&root]),
                t + Duration::days(30),
            ),
            |e| matches!(e, CertificateError::OutsideWindow { .. }),
        ),
        (
            "a command envelope",
            CommandSigner::new(
                key(2),
                Envelope::sign(command::COMMAND_PAYLOAD_TYPE, b"{}", &[&root]),
                &roots(&[&root]),
                t,
            ),
            |e| matches!(e, CertificateError::Malformed),
        ),
    ];
    for (what, result, expected) in checks {
        let error = result.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(expected(&error), "{what}: {error}");
    }
    // A changed byte of the certificate breaks the root's signature.
    let mut tampered = certificate;
    tampered.payload = tampered.payload.replace('A', "B");
    assert!(matches!(
        CommandSigner::new(key(2), tampered, &roots(&[&root]), t),
        Err(CertificateError::SignatureInvalid | CertificateError::Malformed)
    ));
}

#[test]
fn keys_certify_reads_only_the_command_keys_public_half_and_keeps_certificates_short() {
    let dir = temp_dir("certify");
    let root = tools::generate_keys(&dir.join("offline"), KeyRole::Root).unwrap();
    let command_key = tools::generate_keys(&dir.join("server"), KeyRole::Command).unwrap();
    assert!(command_key.private_key.ends_with("command.key"));
    assert!(command_key.public_key.ends_with("command.pub"));
    let out = dir.join("command.cert.json");
    let certified = tools::certify_command_key(
        &root.private_key,
        &command_key.public_key,
        Duration::days(30),
        now(),
        &out,
    )
    .unwrap();
    assert_eq!(certified.key_id, command_key.key_id);
    assert_eq!(certified.root_key_id, root.key_id);
    let trusted = tools::load_trusted_keys(&[&root.public_key]).unwrap();
    let signer =
        tools::load_command_signer(&command_key.private_key, &out, &trusted, now()).unwrap();
    assert_eq!(signer.key_id(), command_key.key_id);

    for (expires_in, what) in [
        (Duration::days(367), "longer than 366 days"),
        (Duration::zero(), "zero"),
    ] {
        let refused = tools::certify_command_key(
            &root.private_key,
            &command_key.public_key,
            expires_in,
            now(),
            &out,
        );
        assert!(matches!(refused, Err(ToolError::Usage(_))), "{what}");
    }
    let itself = tools::certify_command_key(
        &root.private_key,
        &root.public_key,
        Duration::days(30),
        now(),
        &out,
    );
    assert!(
        matches!(itself, Err(ToolError::Usage(_))),
        "the root certifying itself"
    );
}

#[test]
fn a_manifest_declares_its_operations_and_a_run_that_returns_another_is_refused() {
    let module = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    for (operations, refused) in [
        (vec![], true),
        (vec![OperationKind::DropColumn], true),
        (
            vec![OperationKind::SetConfig, OperationKind::SetConfig],
            true,
        ),
        (vec![OperationKind::SetConfig], false),
    ] {
        let mut m = manifest("declared", "1.0.0", &module, Default::default());
        m.operations = operations.clone();
        let result = host::sign_bundle(
            &host::bundle::manifest_bytes(&m),
            &module,
            &[&crate::common::test_key()],
        );
        assert_eq!(
            matches!(result, Err(VerifyError::ManifestInvalid(_))),
            refused,
            "{operations:?}"
        );
    }

    // A module that returns set_config, under a manifest that declares only notify_merchant.
    let wat = crate::hostile::module(&crate::hostile::returning(
        r#"{"operations":[{"op":"set_config","key":"a","value":1}],"state":{"config":{"a":1},"tables":{}}}"#,
    ));
    let module = wat::parse_str(&wat).unwrap();
    let mut m = manifest("undeclared", "1.0.0", &module, Default::default());
    m.operations = vec![OperationKind::NotifyMerchant];
    let bundle = verify(&sign(&m, &module)).unwrap();
    let empty = host::State::default();
    let refused = crate::common::host().dry_run(&bundle, &empty, &serde_json::json!({}));
    assert!(
        matches!(
            refused,
            Err(RunError::InvalidOperation(host::ops::OpError::Undeclared {
                index: 0,
                kind: "set_config"
            }))
        ),
        "{refused:?}"
    );
    // Declared, the same module runs.
    let declared = wat_bundle(&wat, Default::default());
    assert!(crate::common::host()
        .dry_run(&declared, &empty, &serde_json::json!({}))
        .is_ok());
}

/// The kit under `sdk/conformance/cases/` is exactly what `autoheal conformance generate`
/// makes now: the cases cannot drift from the reference verifier they were checked against.
#[test]
fn the_committed_conformance_kit_is_what_the_generator_makes() {
    let dir = crate::common::patches_dir().join("../sdk/conformance/cases");
    let cases = host::conformance::cases();
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    committed.sort();
    let mut made: Vec<String> = cases.iter().map(|c| c.name.to_owned()).collect();
    made.sort();
    assert_eq!(
        committed, made,
        "regenerate: autoheal conformance generate --out sdk/conformance"
    );
    for case in &cases {
        for (file, bytes) in &case.files {
            let path = dir.join(case.name).join(file);
            let on_disk = std::fs::read(&path).unwrap();
            assert!(
                on_disk == *bytes,
                "{} differs from the generator's",
                path.display()
            );
        }
    }
    // Every refusal reason but certificate_invalid's twins is exercised by some case.
    let reasons: std::collections::BTreeSet<String> = cases
        .iter()
        .map(|c| {
            let case: serde_json::Value = serde_json::from_slice(&c.files[0].1).unwrap();
            case["expected"]["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    for reason in host::command::RefusalReason::ALL {
        assert!(
            reasons.contains(reason.as_str()),
            "no case refuses with {reason}"
        );
    }
}
