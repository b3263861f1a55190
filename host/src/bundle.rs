//! Signed patch bundles: the manifest, keys and key ids, signing, and the verification that
//! must pass before any module is compiled or run. The format is documented in
//! `patches/README.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::VerifyError;

/// The only bundle envelope format this host reads.
pub const BUNDLE_FORMAT: u32 = 1;
/// The only patch ABI this host runs (see `patches/README.md`, "Patch ABI").
pub const ABI_VERSION: u32 = 1;
/// A bundle file larger than this is refused before it is parsed.
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;

/// The kind of change a patch makes (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchType {
    DatabasePatch,
    ConfigUpdate,
    CodePatch,
    Notify,
}

/// Limits a patch asks for. Each is optional; the host caps it by its own maxima
/// ([`crate::HostLimits`]) and fills the missing ones with its defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_table_elements: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// Type of one patch parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

/// Extra shape checks for string parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamFormat {
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
    Identifier,
    /// An allowed SQL column type such as `DECIMAL(10,2)`.
    SqlColumnType,
    /// A PHP size such as `256M`, `1G`, `524288K`, `-1`.
    PhpSize,
    /// `major.minor` or `major.minor.patch`, digits only.
    Version,
}

/// One parameter in a manifest's schema. Parameters are a flat object of scalars; a key
/// not in the schema is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ParamFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a bundle says about its module. Signed: the signature covers the exact bytes of
/// this JSON as they travel in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub patch_type: PatchType,
    #[serde(default)]
    pub description: String,
    /// `woocommerce`, `prestashop`, `shopify`, `magento`, `generic`, or `all`.
    pub platforms: Vec<String>,
    /// Plugin versions this patch applies to, as a semver requirement (`>=1.0.0, <3.0.0`).
    pub plugin_versions: semver::VersionReq,
    /// Lower-case hex SHA-256 of the module bytes.
    pub module_sha256: String,
    pub module_size_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub abi_version: u32,
    /// The kinds of operation the patch may return (`["add_column"]`): the host refuses a
    /// run that returns another, and a plugin a command that carries one. Never
    /// `drop_column`, which only a rollback uses.
    pub operations: Vec<crate::ops::OperationKind>,
    #[serde(default)]
    pub limits: RequestedLimits,
    #[serde(default)]
    pub params_schema: BTreeMap<String, ParamSpec>,
}

impl Manifest {
    /// Does this patch apply to a plugin on `platform` at `plugin_version`?
    pub fn applies_to(&self, platform: &str, plugin_version: &semver::Version) -> bool {
        (self.platforms.iter().any(|p| p == "all" || p == platform))
            && self.plugin_versions.matches(plugin_version)
    }
}

/// One signature in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    /// [`key_id`] of the signing public key.
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 (standard, padded) of the 64-byte detached signature over the manifest bytes.
    pub signature: String,
}

/// The bundle file: a JSON envelope. `manifest` and `module` are base64 so the signed
/// manifest bytes travel unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub bundle_format: u32,
    /// Base64 of the exact manifest bytes that were signed.
    pub manifest: String,
    pub signatures: Vec<BundleSignature>,
    /// Base64 of the WebAssembly module.
    pub module: String,
}

/// A bundle whose signature, key, hash, size, expiry and version have been checked.
/// Only [`verify_bundle`] makes one, so holding one proves the checks passed.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    manifest: Arc<Manifest>,
    module: Arc<[u8]>,
    sha256: [u8; 32],
    signed_by: Vec<String>,
}

impl VerifiedBundle {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn module_bytes(&self) -> &[u8] {
        &self.module
    }
    pub fn module_sha256(&self) -> [u8; 32] {
        self.sha256
    }
    /// Key ids of the trusted keys whose signatures verified.
    pub fn signed_by(&self) -> &[String] {
        &self.signed_by
    }
}

/// The key id of an ed25519 public key: the first 8 bytes of SHA-256 of the 32 raw key
/// bytes, as 16 lower-case hex characters. PHP: `substr(hash('sha256', $pk), 0, 16)`.
pub fn key_id(public_key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// An ed25519 public key the host trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    id: String,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, VerifyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|e| VerifyError::Malformed(format!("public key: {e}")))?;
        Ok(Self {
            key,
            id: key_id(bytes),
        })
    }
    /// Parse a public key file: base64 of the 32 raw key bytes, surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<Self, VerifyError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| VerifyError::Malformed(format!("public key base64: {e}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VerifyError::Malformed("public key must be 32 bytes".into()))?;
        Self::from_bytes(&bytes)
    }
    pub fn key_id(&self) -> &str {
        &self.id
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }
}

/// An ed25519 signing key. Lives with whoever signs patches (offline); the server never
/// needs one.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key().key_id())
    }
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(Self::from_seed(&seed))
    }
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }
    /// Parse a private key file: base64 of the 32-byte seed.
    pub fn from_base64(text: &str) -> Result<Self, VerifyError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| VerifyError::Malformed(format!("private key base64: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VerifyError::Malformed("private key must be a 32-byte seed".into()))?;
        Ok(Self::from_seed(&seed))
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }
    pub fn public_key(&self) -> PublicKey {
        let bytes = self.key.verifying_key().to_bytes();
        PublicKey::from_bytes(&bytes).expect("a signing key's public key is valid")
    }
    /// A detached ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The public keys the host accepts, by key id. Several at once allow key rotation.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, key: PublicKey) -> &mut Self {
        self.keys.insert(key.id.clone(), key);
        self
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = Self::new();
        for k in iter {
            keys.add(k);
        }
        keys
    }
}

/// The newest version accepted so far for each patch name. The caller keeps this (in memory
/// or in its store) and passes it to [`verify_bundle`]; a bundle whose version is not
/// strictly newer is refused, so an old bundle cannot be replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedVersions {
    newest: BTreeMap<String, semver::Version>,
}

impl AcceptedVersions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, name: &str) -> Option<&semver::Version> {
        self.newest.get(name)
    }
    /// Record that `manifest` was accepted. Keeps the newest if called out of order.
    pub fn record(&mut self, manifest: &Manifest) {
        self.record_version(&manifest.name, &manifest.version);
    }
    /// Record that version `version` of the patch `name` was accepted (kept elsewhere, say
    /// in a store, as name and version).
    pub fn record_version(&mut self, name: &str, version: &semver::Version) {
        let entry = self
            .newest
            .entry(name.to_owned())
            .or_insert_with(|| version.clone());
        if *version > *entry {
            *entry = version.clone();
        }
    }
    /// Whether `manifest` may be accepted: strictly above the newest accepted for its name
    /// (the same version is a replay, a lower one a downgrade).
    pub fn check(&self, manifest: &Manifest) -> Result<(), VerifyError> {
        match self.get(&manifest.name) {
            Some(newest) if manifest.version == *newest => Err(VerifyError::Replay {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            }),
            Some(newest) if manifest.version < *newest => Err(VerifyError::Downgrade {
                name: manifest.name.clone(),
                offered: manifest.version.clone(),
                accepted: newest.clone(),
            }),
            _ => Ok(()),
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &semver::Version)> {
        self.newest.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sign `manifest_bytes` (exactly as they will travel) with each key and wrap them with the
/// module into a bundle file. The manifest's `module_sha256` and `module_size_bytes` must
/// describe `module`; that is checked here so a signer cannot produce a bundle that every
/// verifier would refuse.
pub fn sign_bundle(
    manifest_bytes: &[u8],
    module: &[u8],
    keys: &[&SigningKey],
) -> Result<Vec<u8>, VerifyError> {
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| VerifyError::ManifestInvalid(e.to_string()))?;
    check_declared_operations(&manifest)?;
    check_module(&manifest, module)?;
    if keys.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let signatures = keys
        .iter()
        .map(|k| BundleSignature {
            key_id: k.public_key().key_id().to_string(),
            algorithm: "ed25519".into(),
            signature: B64.encode(k.sign(manifest_bytes)),
        })
        .collect();
    let file = BundleFile {
        bundle_format: BUNDLE_FORMAT,
        manifest: B64.encode(manifest_bytes),
        signatures,
        module: B64.encode(module),
    };
    let mut out = serde_json::to_vec_pretty(&file).expect("bundle serializes");
    out.push(b'\n');
    Ok(out)
}

/// Serialize a manifest the way the signing tool does (pretty JSON, fields in declaration
/// order). Any bytes work as long as they are signed as they travel.
pub fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec_pretty(manifest).expect("manifest serializes")
}

/// A manifest declares at least one operation kind, each once, and never `drop_column`.
fn check_declared_operations(manifest: &Manifest) -> Result<(), VerifyError> {
    use crate::ops::OperationKind;
    let declared = &manifest.operations;
    if declared.is_empty() {
        return Err(VerifyError::ManifestInvalid(
            "operations must declare at least one operation kind".into(),
        ));
    }
    if declared.contains(&OperationKind::DropColumn) {
        return Err(VerifyError::ManifestInvalid(
            "operations may not declare drop_column: only a rollback drops a column".into(),
        ));
    }
    let distinct: std::collections::BTreeSet<_> = declared.iter().collect();
    if distinct.len() != declared.len() {
        return Err(VerifyError::ManifestInvalid(
            "operations lists a kind twice".into(),
        ));
    }
    Ok(())
}

fn check_module(manifest: &Manifest, module: &[u8]) -> Result<[u8; 32], VerifyError> {
    if module.len() as u64 != manifest.module_size_bytes {
        return Err(VerifyError::SizeMismatch {
            expected: manifest.module_size_bytes,
            actual: module.len() as u64,
        });
    }
    let digest: [u8; 32] = Sha256::digest(module).into();
    let actual = hex::encode(digest);
    if actual != manifest.module_sha256 {
        return Err(VerifyError::HashMismatch {
            expected: manifest.module_sha256.clone(),
            actual,
        });
    }
    Ok(digest)
}

/// Verify a bundle file. In order: envelope, signatures (every signature by a trusted key
/// must verify, and at least one must be by a trusted key), then — only on signed bytes —
/// the manifest: ABI version, module size, module SHA-256, expiry against `now`, and the
/// version against `accepted` (strictly newer than the newest accepted for that name).
///
/// The caller records the result with [`AcceptedVersions::record`] once it keeps it.
pub fn verify_bundle(
    bundle: &[u8],
    trusted: &TrustedKeys,
    accepted: &AcceptedVersions,
    now: DateTime<Utc>,
) -> Result<VerifiedBundle, VerifyError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::BundleTooLarge {
            size: bundle.len(),
            max: MAX_BUNDLE_BYTES,
        });
    }
    let file: BundleFile =
        serde_json::from_slice(bundle).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if file.bundle_format != BUNDLE_FORMAT {
        return Err(VerifyError::Malformed(format!(
            "bundle_format {} (this host reads {BUNDLE_FORMAT})",
            file.bundle_format
        )));
    }
    let manifest_raw = B64
        .decode(&file.manifest)
        .map_err(|e| VerifyError::Malformed(format!("manifest base64: {e}")))?;
    if file.signatures.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let mut signed_by = Vec::new();
    for sig in &file.signatures {
        let Some(key) = trusted.get(&sig.key_id) else {
            continue;
        };
        if sig.algorithm != "ed25519" {
            return Err(VerifyError::SignatureInvalid {
                key_id: sig.key_id.clone(),
            });
        }
        let bytes: [u8; 64] = B64
            .decode(&sig.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| VerifyError::SignatureInvalid {
                key_id: sig.key_id.clone(),
            })?;
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        key.key
            .verify(&manifest_raw, &signature)
            .map_err(|_| VerifyError::SignatureInvalid {
                key_id: sig.key_id.clone(),
            })?;
        signed_by.push(sig.key_id.clone());
    }
    if signed_by.is_empty() {
        return Err(VerifyError::UnknownKey {
            key_ids: file.signatures.iter().map(|s| s.key_id.clone()).collect(),
        });
    }

    // From here on the manifest bytes are authentic.
    let manifest: Manifest = serde_json::from_slice(&manifest_raw)
        .map_err(|e| VerifyError::ManifestInvalid(e.to_string()))?;
    if !crate::ops::is_identifier(&manifest.name) {
        return Err(VerifyError::ManifestInvalid(format!(
            "name `{}` is not an identifier",
            manifest.name
        )));
    }
    check_declared_operations(&manifest)?;
    if manifest.abi_version != ABI_VERSION {
        return Err(VerifyError::UnsupportedAbi {
            found: manifest.abi_version,
            supported: ABI_VERSION,
        });
    }
    let module = B64
        .decode(&file.module)
        .map_err(|e| VerifyError::Malformed(format!("module base64: {e}")))?;
    let sha256 = check_module(&manifest, &module)?;
    if now >= manifest.expires_at {
        return Err(VerifyError::Expired {
            expires_at: manifest.expires_at,
            now,
        });
    }
    accepted.check(&manifest)?;
    Ok(VerifiedBundle {
        manifest: Arc::new(manifest),
        module: module.into(),
        sha256,
        signed_by,
    })
}
