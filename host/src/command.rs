//! Signed commands: the online command key, its certificate by an offline root key, the
//! DSSE envelopes both travel in, and the reference verifier of a polled command — the checks
//! a plugin makes, in the order `sdk/PROTOCOL.md` gives, each refusal a [`RefusalReason`].
//!
//! The server signs with a [`CommandSigner`]; the conformance kit is generated from, and
//! checked against, [`verify_command`]. Nothing here does IO or reads a clock.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::Verifier as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::bundle::{self, PublicKey, SigningKey, TrustedKeys, VerifiedBundle};
use crate::ops::{self, Operation, OperationKind};
use crate::VerifyError;

/// The DSSE payload type of a signed command.
pub const COMMAND_PAYLOAD_TYPE: &str = "application/vnd.autoheal.command+json";
/// The DSSE payload type of a command-key certificate.
pub const CERTIFICATE_PAYLOAD_TYPE: &str = "application/vnd.autoheal.certificate+json";
/// The only command payload format there is.
pub const COMMAND_FORMAT: u32 = 1;
/// The only certificate payload format there is.
pub const CERTIFICATE_FORMAT: u32 = 1;
/// The role a certificate gives its key: it may sign commands.
pub const COMMAND_ROLE: &str = "command";

/// A DSSE envelope (`payloadType`, base64 `payload`, `signatures`), the format of in-toto
/// and Sigstore. Its signatures are over [`pae`] of the type and the decoded payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is signed. Binding the type keeps a certificate
/// from passing as a command, and either from passing as a bundle manifest (which is signed
/// bare and does not start with `DSSEv1`).
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Standard padded base64 that re-encodes to exactly the same text: no whitespace, no
/// missing padding, no stray trailing bits. Every base64 field a plugin reads is held to it.
pub fn decode_canonical_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(text).ok()?;
    (B64.encode(&bytes) == text).then_some(bytes)
}

impl Envelope {
    /// Sign `payload` as `payload_type` with each key.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SigningKey]) -> Self {
        let message = pae(payload_type, payload);
        Self {
            payload_type: payload_type.to_owned(),
            payload: B64.encode(payload),
            signatures: keys
                .iter()
                .map(|key| EnvelopeSignature {
                    keyid: key.public_key().key_id().to_owned(),
                    sig: B64.encode(key.sign(&message)),
                })
                .collect(),
        }
    }

    /// The payload bytes, if every signature by a key of `trusted` verifies over them and
    /// at least one is by such a key. Signatures by other keys are skipped.
    fn verified_payload(
        &self,
        payload_type: &str,
        trusted: &TrustedKeys,
    ) -> Result<Vec<u8>, EnvelopeRefusal> {
        if self.payload_type != payload_type {
            return Err(EnvelopeRefusal::Malformed);
        }
        let payload = decode_canonical_base64(&self.payload).ok_or(EnvelopeRefusal::Base64)?;
        let message = pae(payload_type, &payload);
        let mut verified = false;
        for signature in &self.signatures {
            let sig = decode_canonical_base64(&signature.sig).ok_or(EnvelopeRefusal::Base64)?;
            let Some(key) = trusted.get(&signature.keyid) else {
                continue;
            };
            let sig: [u8; 64] = sig.try_into().map_err(|_| EnvelopeRefusal::Signature)?;
            ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes())
                .map_err(|_| EnvelopeRefusal::Signature)?
                .verify(&message, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| EnvelopeRefusal::Signature)?;
            verified = true;
        }
        if verified {
            Ok(payload)
        } else {
            Err(EnvelopeRefusal::UnknownKey)
        }
    }
}

enum EnvelopeRefusal {
    Malformed,
    Base64,
    UnknownKey,
    Signature,
}

/// What a certificate says: this key may sign commands in this window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub certificate_format: u32,
    pub role: String,
    pub key_id: String,
    /// Base64 of the certified 32-byte ed25519 public key.
    pub public_key: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl Certificate {
    /// The certified key, if the certificate is well formed: its format, role, and a
    /// `key_id` that is the key id of `public_key`.
    pub fn command_key(&self) -> Option<PublicKey> {
        if self.certificate_format != CERTIFICATE_FORMAT || self.role != COMMAND_ROLE {
            return None;
        }
        let bytes: [u8; 32] = decode_canonical_base64(&self.public_key)?.try_into().ok()?;
        let key = PublicKey::from_bytes(&bytes).ok()?;
        (key.key_id() == self.key_id && self.not_before < self.not_after).then_some(key)
    }
}

/// Certify `command_key` with the offline `root` key for `[not_before, not_after)`: the
/// envelope `autoheal keys certify` writes.
pub fn certify(
    root: &SigningKey,
    command_key: &PublicKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Envelope {
    let certificate = Certificate {
        certificate_format: CERTIFICATE_FORMAT,
        role: COMMAND_ROLE.into(),
        key_id: command_key.key_id().to_owned(),
        public_key: command_key.to_base64(),
        not_before: seconds(not_before),
        not_after: seconds(not_after),
    };
    let payload = canonical_json(&serde_json::to_value(&certificate).expect("serializes"));
    Envelope::sign(CERTIFICATE_PAYLOAD_TYPE, &payload, &[root])
}

fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("in range")
}

/// Why a command-key certificate cannot be used, at the server's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is not a DSSE envelope of {CERTIFICATE_PAYLOAD_TYPE}")]
    Malformed,
    #[error("the certificate is signed by no trusted root key (--trusted-key)")]
    UnknownRoot,
    #[error("the certificate's signature by a trusted root does not verify")]
    SignatureInvalid,
    #[error("the certificate's payload is not a command-key certificate")]
    Invalid,
    #[error("the certificate is for key {certified}, not for the command key {key}")]
    OtherKey { certified: String, key: String },
    #[error("the certificate is valid from {not_before} to {not_after}, not now ({now})")]
    OutsideWindow {
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

/// Check a certificate envelope against the trusted roots: its certificate, if it verifies
/// and is well formed (whatever its window).
pub fn verify_certificate(
    envelope: &Envelope,
    roots: &TrustedKeys,
) -> Result<(Certificate, PublicKey), CertificateError> {
    let payload = envelope
        .verified_payload(CERTIFICATE_PAYLOAD_TYPE, roots)
        .map_err(|refusal| match refusal {
            EnvelopeRefusal::Malformed | EnvelopeRefusal::Base64 => CertificateError::Malformed,
            EnvelopeRefusal::UnknownKey => CertificateError::UnknownRoot,
            EnvelopeRefusal::Signature => CertificateError::SignatureInvalid,
        })?;
    let certificate: Certificate =
        serde_json::from_slice(&payload).map_err(|_| CertificateError::Invalid)?;
    let key = certificate.command_key().ok_or(CertificateError::Invalid)?;
    Ok((certificate, key))
}

/// The server's half: the online command key and the certificate that vouches for it.
pub struct CommandSigner {
    key: SigningKey,
    certificate: Envelope,
    not_after: DateTime<Utc>,
}

impl std::fmt::Debug for CommandSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CommandSigner({}, until {})",
            self.key.public_key().key_id(),
            self.not_after
        )
    }
}

impl CommandSigner {
    /// A signer, if `certificate` chains to one of `roots`, certifies `key` and is valid at
    /// `now`: a server that would hand out commands every plugin refuses does not start.
    pub fn new(
        key: SigningKey,
        certificate: Envelope,
        roots: &TrustedKeys,
        now: DateTime<Utc>,
    ) -> Result<Self, CertificateError> {
        let (parsed, certified) = verify_certificate(&certificate, roots)?;
        let public = key.public_key();
        if certified != public {
            return Err(CertificateError::OtherKey {
                certified: parsed.key_id,
                key: public.key_id().to_owned(),
            });
        }
        if now < parsed.not_before || now >= parsed.not_after {
            return Err(CertificateError::OutsideWindow {
                not_before: parsed.not_before,
                not_after: parsed.not_after,
                now,
            });
        }
        Ok(Self {
            key,
            certificate,
            not_after: parsed.not_after,
        })
    }

    pub fn key_id(&self) -> String {
        self.key.public_key().key_id().to_owned()
    }
    /// The certificate every command travels with.
    pub fn certificate(&self) -> &Envelope {
        &self.certificate
    }
    /// When the certificate expires: from then on every plugin refuses what this signs.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }
    /// The signed envelope of `command`.
    pub fn sign(&self, command: &CommandPayload) -> Envelope {
        Envelope::sign(
            COMMAND_PAYLOAD_TYPE,
            &command.canonical_bytes(),
            &[&self.key],
        )
    }
}

/// Which patch a command is about: a bundle file, by name, version and the SHA-256 of its
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// `apply_patch` or `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandType {
    ApplyPatch,
    Rollback,
}

/// What the server signs for one hand-out of a command (`sdk/PROTOCOL.md`, "A command, as
/// polled"). Serialized as canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandPayload {
    pub command_format: u32,
    pub id: Uuid,
    pub install_id: Uuid,
    pub sequence: u64,
    pub command_type: CommandType,
    pub healing_log_id: Uuid,
    pub bundle: BundleRef,
    pub params: serde_json::Map<String, Value>,
    /// `apply_patch` only: the operations to apply, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Operation>>,
    /// `rollback` only: what undoes the apply's operations in effect, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_operations: Option<Vec<Operation>>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl CommandPayload {
    /// The bytes that are signed: keys sorted, no whitespace, times to the second.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.issued_at = seconds(copy.issued_at);
        copy.expires_at = seconds(copy.expires_at);
        canonical_json(&serde_json::to_value(&copy).expect("a command serializes"))
    }
    /// The operations to apply: `operations` of an apply, `restore_operations` of a rollback.
    pub fn operations_to_apply(&self) -> Option<&[Operation]> {
        match self.command_type {
            CommandType::ApplyPatch if self.restore_operations.is_none() => {
                self.operations.as_deref()
            }
            CommandType::Rollback if self.operations.is_none() => {
                self.restore_operations.as_deref()
            }
            _ => None,
        }
    }
}

/// JSON with every object's keys sorted and no whitespace, whatever order the value holds
/// them in (this workspace's `serde_json` preserves insertion order).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(value)).expect("JSON serializes")
}

/// A command as it travels in the poll answer: the fields a plugin verifies.
#[derive(Debug, Clone, Deserialize)]
struct PolledCommand {
    signed: Envelope,
    certificate: Envelope,
}

/// Why a plugin refuses a command: the closed set of `result.reason` in a refused ack and of
/// the conformance kit's verdicts, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    Malformed,
    NonCanonicalBase64,
    CertificateUnknownKey,
    CertificateSignatureInvalid,
    CertificateInvalid,
    CertificateExpired,
    CertificateNotYetValid,
    UnknownKey,
    SignatureInvalid,
    WrongInstall,
    CommandExpired,
    Replayed,
    OutOfOrder,
    BundleTooLarge,
    BundleHashMismatch,
    BundleUnknownKey,
    BundleSignatureInvalid,
    BundleInvalid,
    BundleModuleMismatch,
    BundleMismatch,
    BundleExpired,
    Downgrade,
    InvalidOperation,
    UndeclaredOperation,
}

impl RefusalReason {
    pub const ALL: [Self; 24] = [
        Self::Malformed,
        Self::NonCanonicalBase64,
        Self::CertificateUnknownKey,
        Self::CertificateSignatureInvalid,
        Self::CertificateInvalid,
        Self::CertificateExpired,
        Self::CertificateNotYetValid,
        Self::UnknownKey,
        Self::SignatureInvalid,
        Self::WrongInstall,
        Self::CommandExpired,
        Self::Replayed,
        Self::OutOfOrder,
        Self::BundleTooLarge,
        Self::BundleHashMismatch,
        Self::BundleUnknownKey,
        Self::BundleSignatureInvalid,
        Self::BundleInvalid,
        Self::BundleModuleMismatch,
        Self::BundleMismatch,
        Self::BundleExpired,
        Self::Downgrade,
        Self::InvalidOperation,
        Self::UndeclaredOperation,
    ];

    /// The reason's wire name (`signature_invalid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NonCanonicalBase64 => "non_canonical_base64",
            Self::CertificateUnknownKey => "certificate_unknown_key",
            Self::CertificateSignatureInvalid => "certificate_signature_invalid",
            Self::CertificateInvalid => "certificate_invalid",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
            Self::UnknownKey => "unknown_key",
            Self::SignatureInvalid => "signature_invalid",
            Self::WrongInstall => "wrong_install",
            Self::CommandExpired => "command_expired",
            Self::Replayed => "replayed",
            Self::OutOfOrder => "out_of_order",
            Self::BundleTooLarge => "bundle_too_large",
            Self::BundleHashMismatch => "bundle_hash_mismatch",
            Self::BundleUnknownKey => "bundle_unknown_key",
            Self::BundleSignatureInvalid => "bundle_signature_invalid",
            Self::BundleInvalid => "bundle_invalid",
            Self::BundleModuleMismatch => "bundle_module_mismatch",
            Self::BundleMismatch => "bundle_mismatch",
            Self::BundleExpired => "bundle_expired",
            Self::Downgrade => "downgrade",
            Self::InvalidOperation => "invalid_operation",
            Self::UndeclaredOperation => "undeclared_operation",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its reason, and what a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

fn refuse<T>(reason: RefusalReason, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        reason,
        message: message.into(),
    })
}

/// What a plugin knows when it verifies: who it is and what its journal holds.
#[derive(Debug, Clone, Default)]
pub struct PluginJournal {
    pub install_id: Uuid,
    /// The highest sequence accepted so far (0: none).
    pub last_sequence: u64,
    /// Commands already accepted: a redelivery of one of these passes the sequence check
    /// (it is acked from the journal, never applied twice).
    pub command_ids: Vec<Uuid>,
    /// The newest bundle version accepted per patch name.
    pub bundle_versions: BTreeMap<String, semver::Version>,
}

/// A command that passed every check: its signed payload and its verified bundle.
#[derive(Debug, Clone)]
pub struct VerifiedCommand {
    pub command: CommandPayload,
    pub bundle: VerifiedBundle,
}

/// The reference verifier: every check of `sdk/PROTOCOL.md`, in its order, on one item of
/// the poll answer (`command`) and the bundle file it names (`bundle`, the bytes served).
pub fn verify_command(
    command: &[u8],
    bundle: &[u8],
    roots: &TrustedKeys,
    journal: &PluginJournal,
    now: DateTime<Utc>,
) -> Result<VerifiedCommand, Refusal> {
    use RefusalReason as R;
    let Ok(polled) = serde_json::from_slice::<PolledCommand>(command) else {
        return refuse(R::Malformed, "no `signed` and `certificate` envelopes");
    };
    if polled.certificate.payload_type != CERTIFICATE_PAYLOAD_TYPE
        || polled.signed.payload_type != COMMAND_PAYLOAD_TYPE
    {
        return refuse(R::Malformed, "an envelope has the wrong payloadType");
    }
    let all_base64 = [&polled.certificate, &polled.signed].into_iter().all(|e| {
        decode_canonical_base64(&e.payload).is_some()
            && e.signatures
                .iter()
                .all(|s| decode_canonical_base64(&s.sig).is_some())
    });
    if !all_base64 {
        return refuse(
            R::NonCanonicalBase64,
            "an envelope's base64 is not canonical",
        );
    }

    let certificate = match verify_certificate(&polled.certificate, roots) {
        Ok((certificate, key)) => (certificate, key),
        Err(CertificateError::UnknownRoot) => {
            return refuse(
                R::CertificateUnknownKey,
                "no certificate signature is by a trusted root",
            )
        }
        Err(CertificateError::SignatureInvalid) => {
            return refuse(
                R::CertificateSignatureInvalid,
                "the root's signature does not verify",
            )
        }
        Err(_) => return refuse(R::CertificateInvalid, "the certificate payload is invalid"),
    };
    let (certificate, command_key) = certificate;
    if now < certificate.not_before {
        return refuse(
            R::CertificateNotYetValid,
            format!("valid from {}", certificate.not_before),
        );
    }
    if now >= certificate.not_after {
        return refuse(
            R::CertificateExpired,
            format!("expired at {}", certificate.not_after),
        );
    }

    let command_keys: TrustedKeys = [command_key].into_iter().collect();
    let payload = match polled
        .signed
        .verified_payload(COMMAND_PAYLOAD_TYPE, &command_keys)
    {
        Ok(payload) => payload,
        Err(EnvelopeRefusal::UnknownKey) => {
            return refuse(
                R::UnknownKey,
                "no command signature is by the certified key",
            )
        }
        Err(EnvelopeRefusal::Signature) => {
            return refuse(
                R::SignatureInvalid,
                "the command's signature does not verify",
            )
        }
        Err(EnvelopeRefusal::Malformed | EnvelopeRefusal::Base64) => {
            return refuse(R::Malformed, "the command envelope is malformed")
        }
    };
    // Operations are parsed as values first, so a malformed one is `invalid_operation`,
    // not a malformed command.
    let Ok(mut raw) = serde_json::from_slice::<serde_json::Map<String, Value>>(&payload) else {
        return refuse(R::Malformed, "the signed payload is not a JSON object");
    };
    let raw_operations = ["operations", "restore_operations"].map(|k| raw.remove(k));
    let Ok(mut signed) = serde_json::from_value::<CommandPayload>(Value::Object(raw)) else {
        return refuse(
            R::Malformed,
            "the signed payload lacks a field or has a wrong type",
        );
    };
    if signed.command_format != COMMAND_FORMAT {
        return refuse(
            R::Malformed,
            format!("command_format {}", signed.command_format),
        );
    }
    let [operations, restore_operations] = raw_operations;
    let parse_ops = |v: Option<Value>| match v {
        None => Ok(None),
        Some(v) => serde_json::from_value::<Vec<Operation>>(v)
            .map(Some)
            .map_err(|e| Refusal {
                reason: R::InvalidOperation,
                message: e.to_string(),
            }),
    };
    let (operations, restore_operations) = (parse_ops(operations), parse_ops(restore_operations));
    if signed.install_id != journal.install_id {
        return refuse(
            R::WrongInstall,
            format!("for install {}", signed.install_id),
        );
    }
    if now >= signed.expires_at {
        return refuse(
            R::CommandExpired,
            format!("expired at {}", signed.expires_at),
        );
    }
    let redelivery = journal.command_ids.contains(&signed.id);
    if !redelivery && signed.sequence <= journal.last_sequence {
        let reason = if signed.sequence == journal.last_sequence {
            R::Replayed
        } else {
            R::OutOfOrder
        };
        return refuse(
            reason,
            format!(
                "sequence {} is not above {}",
                signed.sequence, journal.last_sequence
            ),
        );
    }

    if bundle.len() > bundle::MAX_BUNDLE_BYTES {
        return refuse(R::BundleTooLarge, format!("{} bytes", bundle.len()));
    }
    if !bundle::sha256_hex(bundle).eq(&signed.bundle.sha256) {
        return refuse(
            R::BundleHashMismatch,
            "the bundle is not the one the command names",
        );
    }
    let verified = bundle::verify_bundle(bundle, roots, &bundle::AcceptedVersions::new(), now)
        .map_err(|error| Refusal {
            reason: match error {
                VerifyError::UnknownKey { .. } | VerifyError::NoSignature => R::BundleUnknownKey,
                VerifyError::SignatureInvalid { .. } => R::BundleSignatureInvalid,
                VerifyError::SizeMismatch { .. } | VerifyError::HashMismatch { .. } => {
                    R::BundleModuleMismatch
                }
                VerifyError::Expired { .. } => R::BundleExpired,
                VerifyError::BundleTooLarge { .. } => R::BundleTooLarge,
                _ => R::BundleInvalid,
            },
            message: error.to_string(),
        })?;
    let manifest = verified.manifest();
    if manifest.name != signed.bundle.name || manifest.version.to_string() != signed.bundle.version
    {
        return refuse(
            R::BundleMismatch,
            format!("the bundle is {} {}", manifest.name, manifest.version),
        );
    }
    if let Some(newest) = journal.bundle_versions.get(&manifest.name) {
        if manifest.version < *newest {
            return refuse(
                R::Downgrade,
                format!(
                    "{} {} is older than the accepted {newest}",
                    manifest.name, manifest.version
                ),
            );
        }
    }

    signed.operations = operations?;
    signed.restore_operations = restore_operations?;
    let Some(to_apply) = signed.operations_to_apply() else {
        return refuse(
            R::Malformed,
            "an apply carries `operations`, a rollback `restore_operations`, and nothing else",
        );
    };
    let check = match signed.command_type {
        CommandType::ApplyPatch => ops::validate_plan(to_apply),
        CommandType::Rollback => ops::validate(to_apply),
    };
    check.map_err(|error| Refusal {
        reason: R::InvalidOperation,
        message: error.to_string(),
    })?;
    let allowed: Vec<OperationKind> = match signed.command_type {
        CommandType::ApplyPatch => manifest.operations.clone(),
        CommandType::Rollback => manifest
            .operations
            .iter()
            .flat_map(|kind| kind.inverse_kinds().iter().copied())
            .collect(),
    };
    ops::check_declared(to_apply, &allowed).map_err(|error| Refusal {
        reason: R::UndeclaredOperation,
        message: error.to_string(),
    })?;
    Ok(VerifiedCommand {
        command: signed,
        bundle: verified,
    })
}

/// RFC 3339 to the second, `Z`: how every time in a signed payload is written.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
