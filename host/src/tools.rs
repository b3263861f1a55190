//! Plain functions behind the `autoheal keys …` and `autoheal patch …` commands. They take
//! paths and values and return typed results, so the CLI only parses arguments and prints.
//!
//! A patch source directory holds `patch.wat` (the source), `patch.wasm` (built from it and
//! committed beside it) and `patch.json` (the manifest template: everything but the
//! fields the signing step fills in — version, module hash and size, dates, ABI version).

// `ToolError` carries the path with the typed refusal; these run once per CLI call, so its
// size does not matter.
#![allow(clippy::result_large_err)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::{
    self, AcceptedVersions, Manifest, ParamSpec, PatchType, PublicKey, RequestedLimits, SigningKey,
    TrustedKeys, VerifiedBundle, ABI_VERSION,
};
use crate::error::ToolError;
use crate::ops::State;
use crate::sandbox::{DryRun, Host};

pub const SOURCE_FILE: &str = "patch.wat";
pub const MODULE_FILE: &str = "patch.wasm";
pub const TEMPLATE_FILE: &str = "patch.json";
pub const PRIVATE_KEY_FILE: &str = "autoheal.key";
pub const PUBLIC_KEY_FILE: &str = "autoheal.pub";
pub const COMMAND_PRIVATE_KEY_FILE: &str = "command.key";
pub const COMMAND_PUBLIC_KEY_FILE: &str = "command.pub";
/// The longest a command key is certified for: the key is online, so its certificate is
/// short-lived and renewed (30 days is what the docs advise).
pub const MAX_CERTIFICATE_LIFETIME: Duration = Duration::days(366);

/// Which key a pair is: the offline root (bundles, certificates) or the server's online
/// command key. They differ in file names only, so one can never be taken for the other
/// by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyRole {
    #[default]
    Root,
    Command,
}

impl KeyRole {
    fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Root => (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE),
            Self::Command => (COMMAND_PRIVATE_KEY_FILE, COMMAND_PUBLIC_KEY_FILE),
        }
    }
}
/// Bundle files end with this.
pub const BUNDLE_SUFFIX: &str = ".bundle.json";

fn read(path: &Path) -> Result<Vec<u8>, ToolError> {
    fs::read(path).map_err(|source| ToolError::Io {
        path: path.into(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ToolError> {
    fs::write(path, bytes).map_err(|source| ToolError::Io {
        path: path.into(),
        source,
    })
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> ToolError {
    ToolError::Invalid {
        path: path.into(),
        reason: reason.to_string(),
    }
}

/// Paths and key id of a generated key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratedKeys {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub key_id: String,
}

/// `autoheal keys generate [--role root|command] --out DIR`: write `autoheal.key` (base64
/// seed, mode 0600, refused if it exists) and `autoheal.pub` (base64 public key), or
/// `command.key` and `command.pub`.
pub fn generate_keys(out_dir: &Path, role: KeyRole) -> Result<GeneratedKeys, ToolError> {
    let key = SigningKey::generate().map_err(|e| ToolError::Random(e.to_string()))?;
    write_keys(out_dir, &key, role)
}

/// Write a given key pair (tests use a fixed seed).
pub fn write_keys(
    out_dir: &Path,
    key: &SigningKey,
    role: KeyRole,
) -> Result<GeneratedKeys, ToolError> {
    fs::create_dir_all(out_dir).map_err(|source| ToolError::Io {
        path: out_dir.into(),
        source,
    })?;
    let (private_name, public_name) = role.file_names();
    let private_key = out_dir.join(private_name);
    let public_key = out_dir.join(public_name);
    {
        use std::io::Write;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&private_key).map_err(|source| ToolError::Io {
            path: private_key.clone(),
            source,
        })?;
        file.write_all(format!("{}\n", key.to_base64()).as_bytes())
            .map_err(|source| ToolError::Io {
                path: private_key.clone(),
                source,
            })?;
    }
    let public = key.public_key();
    write(&public_key, format!("{}\n", public.to_base64()).as_bytes())?;
    Ok(GeneratedKeys {
        private_key,
        public_key,
        key_id: public.key_id().to_string(),
    })
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, ToolError> {
    let text = String::from_utf8(read(path)?).map_err(|e| invalid(path, e))?;
    SigningKey::from_base64(&text).map_err(|e| invalid(path, e))
}

pub fn read_public_key(path: &Path) -> Result<PublicKey, ToolError> {
    let text = String::from_utf8(read(path)?).map_err(|e| invalid(path, e))?;
    PublicKey::from_base64(&text).map_err(|e| invalid(path, e))
}

/// What `autoheal keys certify` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertifiedKey {
    pub certificate: PathBuf,
    pub key_id: String,
    pub root_key_id: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// `autoheal keys certify --root ROOT.key --command COMMAND.pub --expires-in D --out CERT`:
/// the root key vouches for the command key from `now` for `expires_in`. Only the command
/// key's public half is read, so neither private key leaves its machine.
pub fn certify_command_key(
    root_key_file: &Path,
    command_public_file: &Path,
    expires_in: Duration,
    now: DateTime<Utc>,
    out: &Path,
) -> Result<CertifiedKey, ToolError> {
    if expires_in <= Duration::zero() || expires_in > MAX_CERTIFICATE_LIFETIME {
        return Err(ToolError::Usage(format!(
            "--expires-in must be positive and at most {}d: the command key is online, so its \
             certificate is short-lived and renewed",
            MAX_CERTIFICATE_LIFETIME.num_days()
        )));
    }
    let root = read_signing_key(root_key_file)?;
    let command = read_public_key(command_public_file)?;
    if command == root.public_key() {
        return Err(ToolError::Usage(
            "the command key must not be the root key: the root stays offline".into(),
        ));
    }
    let now = now.with_nanosecond_zero();
    let envelope = crate::command::certify(&root, &command, now, now + expires_in);
    write(out, &certificate_file_bytes(&envelope))?;
    Ok(CertifiedKey {
        certificate: out.into(),
        key_id: command.key_id().to_owned(),
        root_key_id: root.public_key().key_id().to_owned(),
        not_before: now,
        not_after: now + expires_in,
    })
}

/// A certificate file's bytes: the envelope, pretty, with a final newline.
pub fn certificate_file_bytes(envelope: &crate::command::Envelope) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(envelope).expect("an envelope serializes");
    bytes.push(b'\n');
    bytes
}

/// The server's command signer from `--command-key` and `--command-cert`, checked against
/// the roots it trusts at `now`.
pub fn load_command_signer(
    key_file: &Path,
    certificate_file: &Path,
    roots: &TrustedKeys,
    now: DateTime<Utc>,
) -> Result<crate::command::CommandSigner, ToolError> {
    let key = read_signing_key(key_file)?;
    let envelope: crate::command::Envelope = serde_json::from_slice(&read(certificate_file)?)
        .map_err(|e| invalid(certificate_file, e))?;
    crate::command::CommandSigner::new(key, envelope, roots, now)
        .map_err(|e| invalid(certificate_file, e))
}

/// `--trusted-key FILE` (repeatable) → the trusted key set.
pub fn load_trusted_keys<P: AsRef<Path>>(paths: &[P]) -> Result<TrustedKeys, ToolError> {
    if paths.is_empty() {
        return Err(ToolError::Usage(
            "at least one --trusted-key is needed".into(),
        ));
    }
    paths.iter().map(|p| read_public_key(p.as_ref())).collect()
}

/// Assemble WebAssembly text into a binary module.
pub fn assemble(source: &str, path: &Path) -> Result<Vec<u8>, ToolError> {
    wat::parse_str(source).map_err(|e| {
        let mut e = e;
        e.set_path(path);
        invalid(path, e)
    })
}

/// Result of `patch build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltModule {
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
}

/// `autoheal patch build DIR`: `DIR/patch.wat` → `DIR/patch.wasm`.
pub fn build_patch(dir: &Path) -> Result<BuiltModule, ToolError> {
    let source_path = dir.join(SOURCE_FILE);
    let source = String::from_utf8(read(&source_path)?).map_err(|e| invalid(&source_path, e))?;
    let module = assemble(&source, &source_path)?;
    let path = dir.join(MODULE_FILE);
    write(&path, &module)?;
    Ok(BuiltModule {
        path,
        sha256: bundle::sha256_hex(&module),
        size_bytes: module.len() as u64,
    })
}

/// The manifest template in `patch.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestTemplate {
    pub name: String,
    pub patch_type: PatchType,
    #[serde(default)]
    pub description: String,
    pub platforms: Vec<String>,
    pub plugin_versions: semver::VersionReq,
    /// The operation kinds the patch may return (the manifest's `operations`).
    pub operations: Vec<crate::ops::OperationKind>,
    #[serde(default)]
    pub limits: RequestedLimits,
    #[serde(default)]
    pub params_schema: std::collections::BTreeMap<String, ParamSpec>,
}

/// Read a patch directory: its template and its built module. If `patch.wat` is there, the
/// committed `patch.wasm` must be exactly what it assembles to (so a stale module is never
/// signed).
pub fn read_patch_dir(dir: &Path) -> Result<(ManifestTemplate, Vec<u8>), ToolError> {
    let template_path = dir.join(TEMPLATE_FILE);
    let template: ManifestTemplate =
        serde_json::from_slice(&read(&template_path)?).map_err(|e| invalid(&template_path, e))?;
    if !crate::ops::is_identifier(&template.name) {
        return Err(invalid(&template_path, "name must be an identifier"));
    }
    let module_path = dir.join(MODULE_FILE);
    let module = read(&module_path)?;
    let source_path = dir.join(SOURCE_FILE);
    if source_path.exists() {
        let source =
            String::from_utf8(read(&source_path)?).map_err(|e| invalid(&source_path, e))?;
        if assemble(&source, &source_path)? != module {
            return Err(invalid(
                &module_path,
                "stale: not what patch.wat assembles to (run `autoheal patch build`)",
            ));
        }
    }
    Ok((template, module))
}

/// The longest a bundle may be signed for. A leaked or broken bundle stays valid until it
/// expires; and far-off dates do not round-trip everywhere (year 10240 is beyond what
/// JavaScript's `Date.parse` reads).
pub const MAX_BUNDLE_LIFETIME: Duration = Duration::days(5 * 365 + 1);

/// `autoheal patch sign DIR --key FILE --version V [--expires-in D]`: the bundle bytes.
pub fn sign_patch(
    dir: &Path,
    key_file: &Path,
    version: &str,
    expires_in: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, ToolError> {
    let (template, module) = read_patch_dir(dir)?;
    let key = read_signing_key(key_file)?;
    let version = semver::Version::parse(version)
        .map_err(|e| ToolError::Usage(format!("--version {version}: {e}")))?;
    if expires_in <= Duration::zero() {
        return Err(ToolError::Usage("--expires-in must be positive".into()));
    }
    if expires_in > MAX_BUNDLE_LIFETIME {
        return Err(ToolError::Usage(format!(
            "--expires-in must be at most 5 years ({}d): a bundle is re-signed, not kept forever",
            MAX_BUNDLE_LIFETIME.num_days()
        )));
    }
    let now = now.with_nanosecond_zero();
    let manifest = Manifest {
        name: template.name,
        version,
        patch_type: template.patch_type,
        description: template.description,
        platforms: template.platforms,
        plugin_versions: template.plugin_versions,
        module_sha256: bundle::sha256_hex(&module),
        module_size_bytes: module.len() as u64,
        created_at: now,
        expires_at: now + expires_in,
        abi_version: ABI_VERSION,
        operations: template.operations,
        limits: template.limits,
        params_schema: template.params_schema,
    };
    bundle::sign_bundle(&bundle::manifest_bytes(&manifest), &module, &[&key]).map_err(|source| {
        ToolError::Verify {
            path: dir.into(),
            source,
        }
    })
}

trait NanosZero {
    fn with_nanosecond_zero(self) -> Self;
}
impl NanosZero for DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

/// `sign_patch` and write the bundle to `out`; returns the manifest that was signed.
pub fn sign_patch_to_file(
    dir: &Path,
    key_file: &Path,
    version: &str,
    expires_in: Duration,
    now: DateTime<Utc>,
    out: &Path,
) -> Result<Manifest, ToolError> {
    let bytes = sign_patch(dir, key_file, version, expires_in, now)?;
    let public = read_signing_key(key_file)?.public_key();
    let trusted: TrustedKeys = [public].into_iter().collect();
    let verified = bundle::verify_bundle(&bytes, &trusted, &AcceptedVersions::new(), now).map_err(
        |source| ToolError::Verify {
            path: out.into(),
            source,
        },
    )?;
    write(out, &bytes)?;
    Ok(verified.manifest().clone())
}

/// `autoheal patch verify BUNDLE --trusted-key FILE…`.
pub fn verify_bundle_file<P: AsRef<Path>>(
    bundle_path: &Path,
    trusted_key_files: &[P],
    now: DateTime<Utc>,
) -> Result<VerifiedBundle, ToolError> {
    let trusted = load_trusted_keys(trusted_key_files)?;
    let bytes = read(bundle_path)?;
    bundle::verify_bundle(&bytes, &trusted, &AcceptedVersions::new(), now).map_err(|source| {
        ToolError::Verify {
            path: bundle_path.into(),
            source,
        }
    })
}

/// `autoheal patch run BUNDLE --trusted-key FILE --snapshot FILE --params FILE`: verify, then
/// dry-run. `params_file` may be `None` for `{}`.
pub fn run_bundle_file<P: AsRef<Path>>(
    host: &Host,
    bundle_path: &Path,
    trusted_key_files: &[P],
    snapshot_file: &Path,
    params_file: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<DryRun, ToolError> {
    let verified = verify_bundle_file(bundle_path, trusted_key_files, now)?;
    let snapshot: State =
        serde_json::from_slice(&read(snapshot_file)?).map_err(|e| invalid(snapshot_file, e))?;
    let params: Value = match params_file {
        Some(p) => serde_json::from_slice(&read(p)?).map_err(|e| invalid(p, e))?,
        None => Value::Object(Default::default()),
    };
    Ok(host.dry_run(&verified, &snapshot, &params)?)
}

/// Load every `*.bundle.json` in `dir` (not recursive), verify each, and keep the newest
/// version per patch name. Any file that fails is an error naming it, so a bad directory
/// never half-replaces a good set.
pub fn load_bundle_dir(
    dir: &Path,
    trusted: &TrustedKeys,
    now: DateTime<Utc>,
) -> Result<Vec<VerifiedBundle>, ToolError> {
    let entries = fs::read_dir(dir).map_err(|source| ToolError::Io {
        path: dir.into(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(BUNDLE_SUFFIX))
        })
        .collect();
    paths.sort();
    let mut newest: std::collections::BTreeMap<String, VerifiedBundle> = Default::default();
    for path in paths {
        let bytes = read(&path)?;
        let verified = bundle::verify_bundle(&bytes, trusted, &AcceptedVersions::new(), now)
            .map_err(|source| ToolError::Verify {
                path: path.clone(),
                source,
            })?;
        let name = verified.manifest().name.clone();
        match newest.get(&name) {
            Some(old) if old.manifest().version >= verified.manifest().version => {}
            _ => {
                newest.insert(name, verified);
            }
        }
    }
    Ok(newest.into_values().collect())
}

/// Parse `30d`, `12h`, `90m`, `3600s`, `2w` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration, ToolError> {
    let bad = || {
        ToolError::Usage(format!(
            "duration `{text}`: expected e.g. 30d, 12h, 90m, 3600s"
        ))
    };
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = text[..unit_at].parse().map_err(|_| bad())?;
    let d = match &text[unit_at..] {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    };
    d.filter(|d| *d > Duration::zero()).ok_or_else(bad)
}
