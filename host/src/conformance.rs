//! The conformance kit every plugin SDK runs (`sdk/conformance/`): certificates, commands
//! and bundles made here with fixed keys, ids and times, each with the verdict a plugin
//! must reach. Each case is checked against the reference verifier
//! ([`crate::command::verify_command`]) as it is made, so the kit and the server's own
//! verifier can never disagree; the same inputs always give the same bytes, so the
//! committed set is checked against a fresh one.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bundle::{self, Manifest, PatchType, SigningKey, TrustedKeys, ABI_VERSION};
use crate::command::{
    self, BundleRef, CommandPayload, CommandType, Envelope, PluginJournal, RefusalReason,
    CERTIFICATE_PAYLOAD_TYPE, COMMAND_FORMAT, COMMAND_PAYLOAD_TYPE,
};
use crate::ops::{Operation, OperationKind};

/// One case: what a runner sets up, the files it reads, and the verdict it must reach.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    /// `case.json`, `command.json`, `bundle.json`, as written.
    pub files: Vec<(&'static str, Vec<u8>)>,
}

/// The verdict a case expects: accept, or refuse with this reason.
type Expected = Option<RefusalReason>;

/// Everything a case is made of before it is written.
#[derive(Clone)]
struct Draft {
    description: &'static str,
    now: DateTime<Utc>,
    roots: Vec<[u8; 32]>,
    journal: PluginJournal,
    item: Value,
    bundle: Vec<u8>,
    /// The bundle file is padded with spaces to this many bytes by the runner (so the kit
    /// needs no 8 MiB file); the command's `bundle.sha256` is of the padded bytes.
    pad_bundle_to: Option<usize>,
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a fixed time")
        .to_utc()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

const PATCH: &str = "add_missing_column";
const VERSION: &str = "1.0.3";

/// The fixed world every case starts from: a root, a command key certified by it, an
/// install, a bundle declaring `add_column`, and a command adding one column.
struct World {
    root: SigningKey,
    command_key: SigningKey,
    certificate: Envelope,
    install_id: Uuid,
    now: DateTime<Utc>,
    bundle: Vec<u8>,
    payload: CommandPayload,
}

impl World {
    fn new() -> Self {
        let root = key(1);
        let command_key = key(2);
        let now = at("2026-06-01T12:00:00Z");
        let certificate = command::certify(
            &root,
            &command_key.public_key(),
            at("2026-05-01T00:00:00Z"),
            at("2026-07-01T00:00:00Z"),
        );
        let bundle = signed_bundle(
            &root,
            VERSION,
            &[OperationKind::AddColumn],
            at("2027-06-01T00:00:00Z"),
        );
        let install_id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let payload = CommandPayload {
            command_format: COMMAND_FORMAT,
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00c1),
            install_id,
            sequence: 4,
            command_type: CommandType::ApplyPatch,
            healing_log_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00a1),
            bundle: BundleRef {
                name: PATCH.into(),
                version: VERSION.into(),
                sha256: bundle::sha256_hex(&bundle),
            },
            params: params(),
            operations: Some(vec![add_column()]),
            restore_operations: None,
            issued_at: at("2026-06-01T11:59:00Z"),
            expires_at: at("2026-06-01T12:59:00Z"),
        };
        Self {
            root,
            command_key,
            certificate,
            install_id,
            now,
            bundle,
            payload,
        }
    }

    fn journal(&self) -> PluginJournal {
        PluginJournal {
            install_id: self.install_id,
            last_sequence: 3,
            command_ids: Vec::new(),
            bundle_versions: BTreeMap::new(),
        }
    }

    /// A draft of `payload` signed by the command key, with the world's certificate.
    fn draft(&self, description: &'static str, payload: &CommandPayload) -> Draft {
        let signed = Envelope::sign(
            COMMAND_PAYLOAD_TYPE,
            &payload.canonical_bytes(),
            &[&self.command_key],
        );
        self.draft_of(description, payload, signed, self.certificate.clone())
    }

    fn draft_of(
        &self,
        description: &'static str,
        payload: &CommandPayload,
        signed: Envelope,
        certificate: Envelope,
    ) -> Draft {
        Draft {
            description,
            now: self.now,
            roots: vec![self.root.public_key().to_bytes()],
            journal: self.journal(),
            item: poll_item(payload, signed, certificate),
            bundle: self.bundle.clone(),
            pad_bundle_to: None,
        }
    }
}

fn params() -> serde_json::Map<String, Value> {
    let Value::Object(params) = json!({"column": "merchant_fee", "column_type": "DECIMAL(10,2)", "table": "wp_molam_orders"})
    else {
        unreachable!()
    };
    params
}

fn add_column() -> Operation {
    Operation::AddColumn {
        table: "wp_molam_orders".into(),
        column: "merchant_fee".into(),
        column_type: "DECIMAL(10,2)".into(),
    }
}

/// A tiny valid module: verification never runs it.
fn module() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("valid WAT")
}

fn manifest(version: &str, operations: &[OperationKind], expires_at: DateTime<Utc>) -> Manifest {
    let module = module();
    Manifest {
        name: PATCH.into(),
        version: semver::Version::parse(version).expect("semver"),
        patch_type: PatchType::DatabasePatch,
        description: "conformance kit".into(),
        platforms: vec!["all".into()],
        plugin_versions: semver::VersionReq::parse(">=1.0.0").expect("semver req"),
        module_sha256: bundle::sha256_hex(&module),
        module_size_bytes: module.len() as u64,
        created_at: at("2026-05-01T00:00:00Z"),
        expires_at,
        abi_version: ABI_VERSION,
        operations: operations.to_vec(),
        limits: Default::default(),
        params_schema: Default::default(),
    }
}

fn signed_bundle(
    root: &SigningKey,
    version: &str,
    operations: &[OperationKind],
    expires_at: DateTime<Utc>,
) -> Vec<u8> {
    let manifest = manifest(version, operations, expires_at);
    bundle::sign_bundle(&bundle::manifest_bytes(&manifest), &module(), &[root]).expect("signs")
}

/// What the server's poll answers for one command: the unsigned copy and the envelopes.
fn poll_item(payload: &CommandPayload, signed: Envelope, certificate: Envelope) -> Value {
    let command_type = match payload.command_type {
        CommandType::ApplyPatch => "apply_patch",
        CommandType::Rollback => "rollback",
    };
    let command_payload = match payload.command_type {
        CommandType::ApplyPatch => json!({
            "type": "apply_patch", "healing_log_id": payload.healing_log_id,
            "snapshot_id": Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00b1),
            "patch": {"name": payload.bundle.name, "version": payload.bundle.version, "type": "database_patch",
                      "bundle_sha256": payload.bundle.sha256,
                      "bundle_url": format!("/api/v1/plugins/autoheal/bundles/{}/{}", payload.bundle.name, payload.bundle.version),
                      "params": payload.params, "operations": payload.operations}}),
        CommandType::Rollback => json!({
            "type": "rollback", "healing_log_id": payload.healing_log_id, "reason": "conformance",
            "restore_operations": payload.restore_operations,
            "snapshot": {"id": Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00b1), "plugin_version": "1.3.5",
                         "state": {"tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED"}}}}}),
    };
    json!({
        "id": payload.id, "plugin_id": payload.install_id, "healing_log_id": payload.healing_log_id,
        "command_type": command_type, "command_payload": command_payload,
        "priority": if payload.command_type == CommandType::Rollback { 10 } else { 8 },
        "status": "pending", "issued_at": command::rfc3339(payload.issued_at),
        "leased_until": command::rfc3339(payload.issued_at + Duration::minutes(2)),
        "deliveries": 1, "acked_at": null, "ack_result": null,
        "sequence": payload.sequence, "signed": signed, "certificate": certificate,
    })
}

/// Re-encode an envelope's payload after `change` (its signatures stay as they were).
fn tamper_payload(envelope: &Envelope, change: impl FnOnce(&mut Value)) -> Envelope {
    let mut value: Value =
        serde_json::from_slice(&B64.decode(&envelope.payload).expect("base64")).expect("JSON");
    change(&mut value);
    Envelope {
        payload: B64.encode(command::canonical_json(&value)),
        ..envelope.clone()
    }
}

fn signed_of(draft: &Draft) -> Envelope {
    serde_json::from_value(draft.item["signed"].clone()).expect("an envelope")
}

fn set_signed(draft: &mut Draft, envelope: &Envelope) {
    draft.item["signed"] = serde_json::to_value(envelope).expect("serializes");
}

/// Every case of the kit, in a stable order.
pub fn cases() -> Vec<Case> {
    drafts()
        .into_iter()
        .map(|(name, draft, expected)| finish(name, draft, expected))
        .collect()
}

fn drafts() -> Vec<(&'static str, Draft, Expected)> {
    use RefusalReason as R;
    let w = World::new();
    let base = w.draft(
        "A valid apply: add one column the manifest declares.",
        &w.payload,
    );
    let mut out: Vec<(&'static str, Draft, Expected)> = vec![("accept_apply", base.clone(), None)];

    let rollback = CommandPayload {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00c2),
        command_type: CommandType::Rollback,
        operations: None,
        restore_operations: Some(vec![Operation::DropColumn {
            table: "wp_molam_orders".into(),
            column: "merchant_fee".into(),
        }]),
        sequence: 5,
        ..w.payload.clone()
    };
    let mut rolled = w.draft("A valid rollback: drop_column undoes the declared add_column; the same bundle version as the apply is fine.", &rollback);
    rolled
        .journal
        .bundle_versions
        .insert(PATCH.into(), semver::Version::parse(VERSION).unwrap());
    out.push(("accept_rollback", rolled, None));

    let mut recovered = w.draft("A command the plugin accepted before it crashed, verified again from its inbox: its id is in the journal, so its sequence equal to the last accepted is no replay (it is acked from the journal, never applied twice).", &w.payload);
    recovered.journal.last_sequence = w.payload.sequence;
    recovered.journal.command_ids.push(w.payload.id);
    out.push(("accept_recovered_from_inbox", recovered, None));

    let new_root = key(3);
    let mut rotated = w.draft_of(
        "Root rotation: the plugin trusts the old and the new root; the certificate is by the new one.",
        &w.payload,
        Envelope::sign(COMMAND_PAYLOAD_TYPE, &w.payload.canonical_bytes(), &[&w.command_key]),
        command::certify(&new_root, &w.command_key.public_key(), at("2026-05-01T00:00:00Z"), at("2026-07-01T00:00:00Z")),
    );
    rotated.roots.push(new_root.public_key().to_bytes());
    rotated.bundle = signed_bundle(
        &new_root,
        VERSION,
        &[OperationKind::AddColumn],
        at("2027-06-01T00:00:00Z"),
    );
    let rotated_payload = CommandPayload {
        bundle: BundleRef {
            sha256: bundle::sha256_hex(&rotated.bundle),
            ..w.payload.bundle.clone()
        },
        ..w.payload.clone()
    };
    rotated.item = poll_item(
        &rotated_payload,
        Envelope::sign(
            COMMAND_PAYLOAD_TYPE,
            &rotated_payload.canonical_bytes(),
            &[&w.command_key],
        ),
        serde_json::from_value(rotated.item["certificate"].clone()).unwrap(),
    );
    out.push(("accept_rotated_root", rotated, None));

    let mut cosigned = base.clone();
    let mut certificate = w.certificate.clone();
    let stranger = key(9);
    let cert_payload = B64.decode(&certificate.payload).unwrap();
    let mut other = Envelope::sign(CERTIFICATE_PAYLOAD_TYPE, &cert_payload, &[&stranger]);
    other.signatures.append(&mut certificate.signatures);
    cosigned.item["certificate"] = serde_json::to_value(&other).unwrap();
    cosigned.description =
        "A certificate also signed by a key the plugin does not know: that signature is skipped.";
    out.push(("accept_unknown_extra_signature", cosigned, None));

    let mut missing = base.clone();
    missing.item.as_object_mut().unwrap().remove("signed");
    missing.description = "A command without its signed envelope (an unsigned command, as servers before signing sent).";
    out.push(("refuse_unsigned", missing, Some(R::Malformed)));

    let mut swapped = base.clone();
    swapped.item["signed"] = swapped.item["certificate"].clone();
    swapped.description =
        "The certificate passed off as the command: its payloadType is not a command's.";
    out.push(("refuse_certificate_as_command", swapped, Some(R::Malformed)));

    let mut unpadded = base.clone();
    let mut envelope = signed_of(&unpadded);
    envelope.payload = format!("{}\n", envelope.payload);
    set_signed(&mut unpadded, &envelope);
    unpadded.description =
        "The signed payload's base64 carries a line break (lenient decoders accept it).";
    out.push((
        "refuse_base64_whitespace",
        unpadded,
        Some(R::NonCanonicalBase64),
    ));

    let mut trailing = base.clone();
    let mut envelope = signed_of(&trailing);
    envelope.signatures[0].sig = with_trailing_bits(&envelope.signatures[0].sig);
    set_signed(&mut trailing, &envelope);
    trailing.description = "The signature's base64 has non-zero unused bits in its last character: it decodes to the same bytes, but is not canonical.";
    out.push((
        "refuse_base64_trailing_bits",
        trailing,
        Some(R::NonCanonicalBase64),
    ));

    let rogue_root = key(7);
    let mut rogue = w.draft_of(
        "The command key is certified by a root the plugin does not trust.",
        &w.payload,
        Envelope::sign(
            COMMAND_PAYLOAD_TYPE,
            &w.payload.canonical_bytes(),
            &[&w.command_key],
        ),
        command::certify(
            &rogue_root,
            &w.command_key.public_key(),
            at("2026-05-01T00:00:00Z"),
            at("2026-07-01T00:00:00Z"),
        ),
    );
    rogue.journal = w.journal();
    out.push((
        "refuse_certificate_unknown_root",
        rogue,
        Some(R::CertificateUnknownKey),
    ));

    let mut stretched = base.clone();
    let certificate = tamper_payload(&w.certificate, |c| {
        c["not_after"] = json!("2036-07-01T00:00:00Z")
    });
    stretched.item["certificate"] = serde_json::to_value(&certificate).unwrap();
    stretched.description =
        "The certificate's not_after was moved ten years on after the root signed it.";
    out.push((
        "refuse_certificate_tampered",
        stretched,
        Some(R::CertificateSignatureInvalid),
    ));

    let mut role = base.clone();
    let payload = tamper_payload(&w.certificate, |c| c["role"] = json!("bundle"));
    let reissued = Envelope::sign(
        CERTIFICATE_PAYLOAD_TYPE,
        &B64.decode(&payload.payload).unwrap(),
        &[&w.root],
    );
    role.item["certificate"] = serde_json::to_value(&reissued).unwrap();
    role.description = "A certificate the root did sign, but for another role than command.";
    out.push((
        "refuse_certificate_wrong_role",
        role,
        Some(R::CertificateInvalid),
    ));

    let mut expired_cert = base.clone();
    expired_cert.now = at("2026-07-01T00:00:00Z");
    expired_cert.description = "Now is the certificate's not_after: it has expired (the command and bundle would still be valid).";
    let late = CommandPayload {
        expires_at: at("2026-07-01T01:00:00Z"),
        ..w.payload.clone()
    };
    expired_cert.item = w.draft("", &late).item;
    out.push((
        "refuse_certificate_expired",
        expired_cert,
        Some(R::CertificateExpired),
    ));

    let mut early = base.clone();
    early.now = at("2026-04-30T23:59:59Z");
    early.description = "Now is before the certificate's not_before.";
    out.push((
        "refuse_certificate_not_yet_valid",
        early,
        Some(R::CertificateNotYetValid),
    ));

    let uncertified = key(8);
    let mut unknown = w.draft_of(
        "The command is signed by a key the certificate does not certify.",
        &w.payload,
        Envelope::sign(
            COMMAND_PAYLOAD_TYPE,
            &w.payload.canonical_bytes(),
            &[&uncertified],
        ),
        w.certificate.clone(),
    );
    unknown.journal = w.journal();
    out.push((
        "refuse_uncertified_command_key",
        unknown,
        Some(R::UnknownKey),
    ));

    for (name, description, change) in [
        (
            "refuse_tampered_operation",
            "One operation's column_type was changed after signing (in the signed payload).",
            Box::new(|p: &mut Value| p["operations"][0]["column_type"] = json!("TEXT"))
                as Box<dyn Fn(&mut Value)>,
        ),
        (
            "refuse_tampered_params",
            "A parameter was changed after signing.",
            Box::new(|p: &mut Value| p["params"]["table"] = json!("wp_users")),
        ),
        (
            "refuse_tampered_operation_swapped",
            "The add_column was swapped for a drop_column after signing.",
            Box::new(|p: &mut Value| {
                p["operations"][0] =
                    json!({"op": "drop_column", "table": "wp_users", "column": "user_pass"})
            }),
        ),
    ] {
        let mut draft = base.clone();
        let envelope = tamper_payload(&signed_of(&draft), change);
        set_signed(&mut draft, &envelope);
        draft.description = description;
        out.push((name, draft, Some(R::SignatureInvalid)));
    }

    let mut flipped = base.clone();
    let mut envelope = signed_of(&flipped);
    let mut sig = B64.decode(&envelope.signatures[0].sig).unwrap();
    sig[10] ^= 0x01;
    envelope.signatures[0].sig = B64.encode(sig);
    set_signed(&mut flipped, &envelope);
    flipped.description = "One bit of the command's signature was flipped.";
    out.push((
        "refuse_tampered_signature",
        flipped,
        Some(R::SignatureInvalid),
    ));

    let elsewhere = CommandPayload {
        install_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
        ..w.payload.clone()
    };
    out.push((
        "refuse_other_install",
        w.draft("A validly signed command for another install.", &elsewhere),
        Some(R::WrongInstall),
    ));

    let mut stale = base.clone();
    stale.now = w.payload.expires_at;
    stale.description = "Now is the command's expires_at.";
    out.push(("refuse_command_expired", stale, Some(R::CommandExpired)));

    let mut replayed = base.clone();
    replayed.journal.last_sequence = w.payload.sequence;
    replayed.description = "The plugin already accepted this sequence (the same bytes again, or another command signed with it).";
    out.push(("refuse_replayed_sequence", replayed, Some(R::Replayed)));

    let mut behind = base.clone();
    behind.journal.last_sequence = w.payload.sequence + 3;
    behind.description =
        "The sequence is below the last the plugin accepted: an older hand-out delivered late.";
    out.push(("refuse_out_of_order_sequence", behind, Some(R::OutOfOrder)));

    let mut padded = base.clone();
    let size = bundle::MAX_BUNDLE_BYTES + 1;
    padded.pad_bundle_to = Some(size);
    let mut padded_bytes = padded.bundle.clone();
    padded_bytes.resize(size, b' ');
    let big = CommandPayload {
        bundle: BundleRef {
            sha256: bundle::sha256_hex(&padded_bytes),
            ..w.payload.bundle.clone()
        },
        ..w.payload.clone()
    };
    padded.item = w.draft("", &big).item;
    padded.description = "The bundle file is one byte over 8 MiB (the runner pads bundle.json with spaces to pad_bundle_to bytes; the command's sha256 is of the padded file).";
    out.push(("refuse_oversized_bundle", padded, Some(R::BundleTooLarge)));

    let mut other_bundle = base.clone();
    other_bundle.bundle = signed_bundle(
        &w.root,
        VERSION,
        &[OperationKind::AddColumn],
        at("2027-07-01T00:00:00Z"),
    );
    other_bundle.description = "A bundle validly signed by the root, but not the one the command names (its SHA-256 differs).";
    out.push((
        "refuse_bundle_not_named",
        other_bundle,
        Some(R::BundleHashMismatch),
    ));

    for (name, description, tamper, reason) in [
        ("refuse_tampered_manifest", "The manifest's operations were widened after the root signed it (the command names the tampered file, as a compromised server would).",
         Box::new(|b: &mut bundle::BundleFile| {
             let mut m: Value = serde_json::from_slice(&B64.decode(&b.manifest).unwrap()).unwrap();
             m["operations"] = json!(["add_column", "set_config"]);
             b.manifest = B64.encode(serde_json::to_vec_pretty(&m).unwrap());
         }) as Box<dyn Fn(&mut bundle::BundleFile)>, R::BundleSignatureInvalid),
        ("refuse_tampered_module", "The module was replaced after signing (the command names the tampered file).",
         Box::new(|b: &mut bundle::BundleFile| b.module = B64.encode(wat::parse_str("(module)").unwrap())), R::BundleModuleMismatch),
        ("refuse_bundle_unknown_key", "The bundle is signed by a key the plugin does not trust.",
         Box::new(|b: &mut bundle::BundleFile| {
             let m = B64.decode(&b.manifest).unwrap();
             b.signatures = vec![bundle::BundleSignature { key_id: key(7).public_key().key_id().into(), algorithm: "ed25519".into(), signature: B64.encode(key(7).sign(&m)) }];
         }), R::BundleUnknownKey),
    ] {
        let mut file: bundle::BundleFile = serde_json::from_slice(&w.bundle).unwrap();
        tamper(&mut file);
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap();
        bytes.push(b'\n');
        let named = CommandPayload { bundle: BundleRef { sha256: bundle::sha256_hex(&bytes), ..w.payload.bundle.clone() }, ..w.payload.clone() };
        let mut draft = w.draft(description, &named);
        draft.bundle = bytes;
        out.push((name, draft, Some(reason)));
    }

    // A bundle signed before manifests declared their operations: authentic, but a plugin
    // cannot tell what it may do.
    let mut old = serde_json::to_value(manifest(
        VERSION,
        &[OperationKind::AddColumn],
        at("2027-06-01T00:00:00Z"),
    ))
    .unwrap();
    old.as_object_mut().unwrap().remove("operations");
    let old_manifest = serde_json::to_vec_pretty(&old).unwrap();
    let file = bundle::BundleFile {
        bundle_format: bundle::BUNDLE_FORMAT,
        manifest: B64.encode(&old_manifest),
        signatures: vec![bundle::BundleSignature {
            key_id: w.root.public_key().key_id().into(),
            algorithm: "ed25519".into(),
            signature: B64.encode(w.root.sign(&old_manifest)),
        }],
        module: B64.encode(module()),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).unwrap();
    bytes.push(b'\n');
    let named = CommandPayload {
        bundle: BundleRef {
            sha256: bundle::sha256_hex(&bytes),
            ..w.payload.bundle.clone()
        },
        ..w.payload.clone()
    };
    let mut draft = w.draft("The bundle's manifest, signed by the root, declares no operations (signed before manifests did): the plugin cannot check what it may do.", &named);
    draft.bundle = bytes;
    out.push((
        "refuse_bundle_without_declared_operations",
        draft,
        Some(R::BundleInvalid),
    ));

    let expiring = signed_bundle(
        &w.root,
        VERSION,
        &[OperationKind::AddColumn],
        at("2026-06-01T12:00:00Z"),
    );
    let named = CommandPayload {
        bundle: BundleRef {
            sha256: bundle::sha256_hex(&expiring),
            ..w.payload.bundle.clone()
        },
        ..w.payload.clone()
    };
    let mut draft = w.draft("Now is the bundle manifest's expires_at.", &named);
    draft.bundle = expiring;
    out.push(("refuse_bundle_expired", draft, Some(R::BundleExpired)));

    // Both an expired bundle and another version: the order of checks 16 and 17 decides.
    let claims = CommandPayload {
        bundle: BundleRef {
            version: "1.0.4".into(),
            ..named.bundle.clone()
        },
        ..named.clone()
    };
    let mut draft = w.draft("The bundle has expired and is not the version the command names: expiry (check 16) is checked first.", &claims);
    draft.bundle = signed_bundle(
        &w.root,
        VERSION,
        &[OperationKind::AddColumn],
        at("2026-06-01T12:00:00Z"),
    );
    out.push((
        "refuse_bundle_expired_before_mismatch",
        draft,
        Some(R::BundleExpired),
    ));

    let claims = CommandPayload {
        bundle: BundleRef {
            version: "1.0.4".into(),
            ..w.payload.bundle.clone()
        },
        ..w.payload.clone()
    };
    out.push((
        "refuse_bundle_version_mismatch",
        w.draft(
            "The command names version 1.0.4; the file (whose hash it names) is 1.0.3.",
            &claims,
        ),
        Some(R::BundleMismatch),
    ));

    let mut downgrade = base.clone();
    downgrade
        .journal
        .bundle_versions
        .insert(PATCH.into(), semver::Version::parse("1.0.5").unwrap());
    downgrade.description = "The plugin accepted 1.0.5 of this patch; the command brings 1.0.3.";
    out.push(("refuse_downgrade", downgrade, Some(R::Downgrade)));

    let config = CommandPayload {
        operations: Some(vec![Operation::SetConfig {
            key: "payment.debug".into(),
            value: json!(true),
        }]),
        ..w.payload.clone()
    };
    out.push((
        "refuse_undeclared_operation",
        w.draft(
            "A validly signed set_config, but the manifest declares only add_column.",
            &config,
        ),
        Some(R::UndeclaredOperation),
    ));

    let restore = CommandPayload {
        restore_operations: Some(vec![Operation::UnsetConfig {
            key: "payment.debug".into(),
        }]),
        ..rollback.clone()
    };
    let mut draft = w.draft(
        "A rollback whose restore operation (unset_config) undoes no kind the manifest declares.",
        &restore,
    );
    draft.journal.last_sequence = 4;
    out.push((
        "refuse_undeclared_restore_operation",
        draft,
        Some(R::UndeclaredOperation),
    ));

    let drop = CommandPayload {
        operations: Some(vec![Operation::DropColumn {
            table: "wp_molam_orders".into(),
            column: "amount".into(),
        }]),
        ..w.payload.clone()
    };
    out.push((
        "refuse_drop_in_apply",
        w.draft(
            "An apply that drops a column: drop_column is a restore operation only.",
            &drop,
        ),
        Some(R::InvalidOperation),
    ));

    let injected = CommandPayload {
        operations: Some(vec![Operation::AddColumn {
            table: "wp_molam_orders`; DROP TABLE wp_users; --".into(),
            column: "x".into(),
            column_type: "INT".into(),
        }]),
        ..w.payload.clone()
    };
    out.push(("refuse_invalid_identifier", w.draft("An add_column whose table is not an identifier (SQL injection through a signed field).", &injected), Some(R::InvalidOperation)));

    out
}

/// The same base64 text with a non-zero unused bit in its last data character.
fn with_trailing_bits(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let trimmed = text.trim_end_matches('=');
    let mut bytes = trimmed.as_bytes().to_vec();
    let last = bytes.last_mut().expect("not empty");
    let index = ALPHABET.iter().position(|c| c == last).expect("base64");
    *last = ALPHABET[index | 1];
    let mut out = String::from_utf8(bytes).expect("ASCII");
    out.push_str(&text[trimmed.len()..]);
    out
}

fn finish(name: &'static str, draft: Draft, expected: Expected) -> Case {
    let command = pretty(&draft.item);
    let mut bundle_bytes = draft.bundle.clone();
    if let Some(size) = draft.pad_bundle_to {
        bundle_bytes.resize(size, b' ');
    }
    let roots: TrustedKeys = draft
        .roots
        .iter()
        .map(|r| bundle::PublicKey::from_bytes(r).expect("a key"))
        .collect();
    let verdict =
        command::verify_command(&command, &bundle_bytes, &roots, &draft.journal, draft.now)
            .err()
            .map(|refusal| refusal.reason);
    assert_eq!(
        verdict, expected,
        "conformance case {name}: the reference verifier disagrees"
    );
    let expected = match expected {
        None => json!({"verdict": "accept", "reason": "ok"}),
        Some(reason) => json!({"verdict": "refuse", "reason": reason.as_str()}),
    };
    let journal = &draft.journal;
    let mut case = json!({
        "name": name,
        "description": draft.description,
        "now": command::rfc3339(draft.now),
        "trusted_roots": draft.roots.iter().map(|r| B64.encode(r)).collect::<Vec<_>>(),
        "install_id": journal.install_id,
        "journal": {
            "last_sequence": journal.last_sequence,
            "bundle_versions": journal.bundle_versions.iter().map(|(k, v)| (k.clone(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>(),
            "command_ids": journal.command_ids,
        },
        "expected": expected,
    });
    if let Some(size) = draft.pad_bundle_to {
        case["pad_bundle_to"] = json!(size);
    }
    Case {
        name,
        files: vec![
            ("case.json", pretty(&case)),
            ("command.json", command),
            ("bundle.json", draft.bundle),
        ],
    }
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializes");
    bytes.push(b'\n');
    bytes
}
