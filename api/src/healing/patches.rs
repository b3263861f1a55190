//! The patch registry: the signed bundles `serve` found under `--patches`, each verified by
//! the host against the trusted public keys, with the host that dry-runs them and per-patch
//! run figures. A bad bundle is refused and reported while the others stay in force; a
//! reload never lowers a patch's version (an older bundle appearing later is a downgrade).

use chrono::{DateTime, Utc};
use host::{
    AcceptedVersions, DryRun, Host, RunError, RunErrorKind, State, TrustedKeys, VerifiedBundle,
    VerifyError,
};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::store::AcceptedBundle;
use crate::db::{Store, StoreError};
use crate::rules::folder_fingerprint;
use crate::tasks::Tasks;
use crate::Clock;

const BUNDLE_SUFFIX: &str = ".bundle.json";

/// One verified bundle: the exact bytes plugins download, and what the host verified.
pub struct LoadedPatch {
    pub file: String,
    pub bytes: Arc<[u8]>,
    /// SHA-256 of `bytes` (the bundle file), the ETag and what commands name.
    pub bundle_sha256: String,
    pub verified: Arc<VerifiedBundle>,
}

impl LoadedPatch {
    pub fn name(&self) -> &str {
        &self.verified.manifest().name
    }
    pub fn version(&self) -> &semver::Version {
        &self.verified.manifest().version
    }
    /// Whether the bundle is still valid at `now` (before its `expires_at`).
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.verified.manifest().expires_at
    }
}

/// A bundle file that was not loaded, and why.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RefusedBundle {
    pub file: String,
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub reason: Refusal,
}

/// Why a bundle file was refused.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Refusal {
    #[error("cannot read the patches folder: {0}")]
    UnreadableFolder(String),
    #[error("cannot read: {0}")]
    Unreadable(String),
    /// The host's verification: signature, key, hash, size, expiry, or a version below (or
    /// equal to) one already accepted.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{name} {version} is already loaded from {file} with other bytes")]
    Duplicate {
        name: String,
        version: semver::Version,
        file: String,
    },
    #[error("{name} {version} was accepted before with other bytes (SHA-256 {accepted_sha256}); a release is never rebuilt under its version: sign a new one")]
    Rebuilt {
        name: String,
        version: semver::Version,
        accepted_sha256: String,
    },
    #[error("module refused by the host: {0}")]
    Module(RunError),
}

fn as_text<S: Serializer>(refusal: &Refusal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(refusal)
}

/// Run figures of one patch since the server started.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct PatchRunStats {
    pub runs: u64,
    pub failures: u64,
    pub failures_by_kind: BTreeMap<&'static str, u64>,
    pub total_micros: u64,
    pub max_micros: u64,
}

/// What `GET /api/v1/plugins/autoheal/patches` lists per bundle.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PatchListing {
    pub name: String,
    pub version: String,
    pub patch_type: Value,
    pub file: String,
    pub key_ids: Vec<String>,
    pub module_sha256: String,
    pub bundle_sha256: String,
    pub expires_at: DateTime<Utc>,
    /// The version new detections use; older loaded versions stay downloadable for
    /// commands already queued.
    pub current: bool,
    pub status: &'static str,
    pub runs: PatchRunStats,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegistryStatus {
    pub dir: Option<String>,
    pub trusted_key_ids: Vec<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub patches: Vec<PatchListing>,
    pub refused: Vec<RefusedBundle>,
}

#[derive(Default)]
struct Catalog {
    /// (name, version) → bundle; the last per name is the current one.
    bundles: BTreeMap<(String, semver::Version), Arc<LoadedPatch>>,
    refused: Vec<RefusedBundle>,
    loaded_at: Option<DateTime<Utc>>,
}

impl Catalog {
    fn current(&self, name: &str, now: DateTime<Utc>) -> Option<&Arc<LoadedPatch>> {
        self.bundles
            .range((name.to_owned(), semver::Version::new(0, 0, 0))..)
            .take_while(|((n, _), _)| n == name)
            .filter(|(_, patch)| patch.valid_at(now))
            .last()
            .map(|(_, patch)| patch)
    }
}

/// What a new bundle is held to: every bundle accepted before, by this registry (its last
/// catalog) and by any replica in any run (the store's record).
struct Ledger {
    /// (name, version) → the SHA-256 of the bytes accepted under it.
    bytes: HashMap<(String, semver::Version), String>,
    newest: AcceptedVersions,
}

impl Ledger {
    fn new(previous: &Catalog, before: &[AcceptedBundle]) -> Self {
        let mut ledger = Self {
            bytes: HashMap::new(),
            newest: AcceptedVersions::new(),
        };
        // The store's record first: where it and this process disagree, it was first.
        let recorded = before.iter().filter_map(|bundle| {
            let version = bundle.version.parse().ok()?;
            Some((bundle.name.clone(), version, bundle.bundle_sha256.clone()))
        });
        let loaded = previous.bundles.values().map(|patch| {
            (
                patch.name().to_owned(),
                patch.version().clone(),
                patch.bundle_sha256.clone(),
            )
        });
        for (name, version, sha256) in recorded.chain(loaded) {
            ledger.newest.record_version(&name, &version);
            ledger.bytes.entry((name, version)).or_insert(sha256);
        }
        ledger
    }

    /// The very bytes accepted before under their name and version, or a version above
    /// every one accepted for the name.
    fn admits(&self, manifest: &host::Manifest, sha256: &str) -> Result<(), Refusal> {
        match self
            .bytes
            .get(&(manifest.name.clone(), manifest.version.clone()))
        {
            Some(accepted) if accepted == sha256 => Ok(()),
            Some(accepted) => Err(Refusal::Rebuilt {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                accepted_sha256: accepted.clone(),
            }),
            None => Ok(self.newest.check(manifest)?),
        }
    }
}

/// Why a dry run did not give a clean result.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("the snapshot is not a plugin state: {0}")]
    BadSnapshot(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

pub struct PatchRegistry {
    /// None for the empty registry, which has nothing to run.
    host: Option<Host>,
    dir: Option<PathBuf>,
    trusted: TrustedKeys,
    catalog: RwLock<Arc<Catalog>>,
    stats: Mutex<HashMap<String, PatchRunStats>>,
}

impl PatchRegistry {
    /// A registry with no bundles (every detection that needs a patch fails its dry run).
    pub fn empty() -> Self {
        Self {
            host: None,
            dir: None,
            trusted: TrustedKeys::new(),
            catalog: RwLock::default(),
            stats: Mutex::default(),
        }
    }

    /// A registry of the bundles under `dir`, none loaded yet: [`Self::sync`] loads them
    /// against the store's record of what was accepted before.
    pub fn open(host: Host, dir: &Path, trusted: TrustedKeys) -> Self {
        Self {
            host: Some(host),
            dir: Some(dir.to_owned()),
            trusted,
            catalog: RwLock::default(),
            stats: Mutex::default(),
        }
    }

    /// Loads every `*.bundle.json` under `dir`, held to nothing accepted before (a registry
    /// without a store, as the CLI's and the tests'); bundles that fail verification are
    /// refused and listed, the others load.
    pub fn load(host: Host, dir: &Path, trusted: TrustedKeys, now: DateTime<Utc>) -> Self {
        let registry = Self::open(host, dir, trusted);
        registry.reload(now);
        registry
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Re-reads the folder, holding new bundles to what this registry accepted before.
    /// Returns the refused files.
    pub fn reload(&self, now: DateTime<Utc>) -> Vec<RefusedBundle> {
        self.reload_against(now, &[])
    }

    /// Re-reads the folder, holding each new bundle to what this registry accepted before
    /// and to `before` (the store's record of what every replica ever accepted): a bundle
    /// is loaded if it is the very bytes accepted before under its name and version, or if
    /// its version is above every version accepted for its name. Other bytes under a name
    /// and version already accepted are refused, and the bundle loaded before stays. A
    /// bundle that has expired is refused. Returns the refused files.
    pub fn reload_against(
        &self,
        now: DateTime<Utc>,
        before: &[AcceptedBundle],
    ) -> Vec<RefusedBundle> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let previous = self.catalog();
        let mut next = Catalog {
            loaded_at: Some(now),
            ..Catalog::default()
        };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(BUNDLE_SUFFIX))
                })
                .collect(),
            Err(e) => {
                next.refused.push(RefusedBundle {
                    file: dir.display().to_string(),
                    reason: Refusal::UnreadableFolder(e.to_string()),
                });
                Vec::new()
            }
        };
        files.sort();
        let ledger = Ledger::new(&previous, before);
        for path in files {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match self.load_file(&path, &file, &ledger, now) {
                Ok(patch) => {
                    let key = (patch.name().to_owned(), patch.version().clone());
                    if let Some(other) = next.bundles.get(&key) {
                        if other.bundle_sha256 != patch.bundle_sha256 {
                            next.refused.push(RefusedBundle {
                                file,
                                reason: Refusal::Duplicate {
                                    name: key.0,
                                    version: key.1,
                                    file: other.file.clone(),
                                },
                            });
                        }
                        continue;
                    }
                    next.bundles.insert(key, Arc::new(patch));
                }
                Err(reason) => next.refused.push(RefusedBundle { file, reason }),
            }
        }
        // A bundle replaced in place by other bytes under its version: the first stays,
        // unless the store recorded other bytes first (another replica won that race).
        for refused in &next.refused {
            let Refusal::Rebuilt {
                name,
                version,
                accepted_sha256,
            } = &refused.reason
            else {
                continue;
            };
            let key = (name.clone(), version.clone());
            if let Some(first) = previous.bundles.get(&key) {
                if first.bundle_sha256 == *accepted_sha256 && first.valid_at(now) {
                    next.bundles.entry(key).or_insert_with(|| first.clone());
                }
            }
        }
        for refused in &next.refused {
            tracing::warn!(event = "bundle_refused", file = %refused.file, reason = %refused.reason, "patch bundle refused");
        }
        let refused = next.refused.clone();
        *self.catalog.write().expect("catalog lock") = Arc::new(next);
        refused
    }

    /// Verifies one bundle file and holds it to the ledger.
    fn load_file(
        &self,
        path: &Path,
        file: &str,
        ledger: &Ledger,
        now: DateTime<Utc>,
    ) -> Result<LoadedPatch, Refusal> {
        let bytes = std::fs::read(path).map_err(|e| Refusal::Unreadable(e.to_string()))?;
        let bundle_sha256 = host::bundle::sha256_hex(&bytes);
        // Signature, keys, hashes, limits and expiry; the version rule is the ledger's.
        let verified = host::verify_bundle(&bytes, &self.trusted, &AcceptedVersions::new(), now)?;
        ledger.admits(verified.manifest(), &bundle_sha256)?;
        if let Some(host) = &self.host {
            host.prepare(&verified).map_err(Refusal::Module)?;
        }
        Ok(LoadedPatch {
            file: file.to_owned(),
            bytes: bytes.into(),
            bundle_sha256,
            verified: Arc::new(verified),
        })
    }

    /// What this registry has loaded, as the store records accepted bundles.
    pub fn accepted(&self) -> Vec<AcceptedBundle> {
        self.catalog()
            .bundles
            .values()
            .map(|patch| AcceptedBundle {
                name: patch.name().to_owned(),
                version: patch.version().to_string(),
                bundle_sha256: patch.bundle_sha256.clone(),
            })
            .collect()
    }

    /// Whether a loaded bundle has expired by `now` (a reload then refuses it).
    pub fn has_expired(&self, now: DateTime<Utc>) -> bool {
        self.catalog()
            .bundles
            .values()
            .any(|patch| !patch.valid_at(now))
    }

    /// Reloads against the store's record of accepted bundles, then records what is loaded:
    /// every replica and every restart keeps to the versions any of them accepted.
    pub async fn sync(
        self: &Arc<Self>,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<RefusedBundle>, StoreError> {
        let before = store.accepted_bundles().await?;
        let registry = self.clone();
        let refused = tokio::task::spawn_blocking(move || registry.reload_against(now, &before))
            .await
            .expect("the registry's reload does not panic");
        store.record_accepted_bundles(&self.accepted(), now).await?;
        Ok(refused)
    }

    /// The version new detections use: the newest loaded that has not expired by `now`.
    /// Expiry is checked here as well as by the watcher's reload, so an expired bundle is
    /// never queued, however late the watcher runs.
    pub fn current(&self, name: &str, now: DateTime<Utc>) -> Option<Arc<LoadedPatch>> {
        self.catalog().current(name, now).cloned()
    }

    /// A loaded bundle by name and exact version (what a plugin downloads), unless it has
    /// expired by `now`.
    pub fn get(
        &self,
        name: &str,
        version: &semver::Version,
        now: DateTime<Utc>,
    ) -> Option<Arc<LoadedPatch>> {
        self.catalog()
            .bundles
            .get(&(name.to_owned(), version.clone()))
            .filter(|patch| patch.valid_at(now))
            .cloned()
    }

    /// Dry-runs `patch` (a bundle of this registry) against `snapshot`. Synchronous and
    /// CPU-bound: call it from a blocking task.
    pub fn dry_run(
        &self,
        patch: &LoadedPatch,
        snapshot: &Value,
        params: &Value,
    ) -> Result<DryRun, DryRunError> {
        let state: State = serde_json::from_value(snapshot.clone())
            .map_err(|e| DryRunError::BadSnapshot(e.to_string()))?;
        let host = self
            .host
            .as_ref()
            .expect("a registry with bundles has a host");
        let started = Instant::now();
        let result = host.dry_run(&patch.verified, &state, params);
        self.record(
            patch.name(),
            started.elapsed(),
            result.as_ref().err().map(RunError::kind),
        );
        Ok(result?)
    }

    fn record(&self, name: &str, took: Duration, failure: Option<RunErrorKind>) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let mut stats = self.stats.lock().expect("patch stats");
        let entry = stats.entry(name.to_owned()).or_default();
        entry.runs += 1;
        entry.total_micros += micros;
        entry.max_micros = entry.max_micros.max(micros);
        if let Some(kind) = failure {
            entry.failures += 1;
            *entry.failures_by_kind.entry(kind.as_str()).or_default() += 1;
        }
    }

    pub fn status(&self, now: DateTime<Utc>) -> RegistryStatus {
        let catalog = self.catalog();
        let stats = self.stats.lock().expect("patch stats").clone();
        let patches = catalog
            .bundles
            .values()
            .map(|patch| {
                let manifest = patch.verified.manifest();
                let current = catalog
                    .current(&manifest.name, now)
                    .is_some_and(|c| Arc::ptr_eq(c, patch));
                PatchListing {
                    name: manifest.name.clone(),
                    version: manifest.version.to_string(),
                    patch_type: serde_json::to_value(manifest.patch_type).unwrap_or(Value::Null),
                    file: patch.file.clone(),
                    key_ids: patch.verified.signed_by().to_vec(),
                    module_sha256: hex::encode(patch.verified.module_sha256()),
                    bundle_sha256: patch.bundle_sha256.clone(),
                    expires_at: manifest.expires_at,
                    current,
                    status: if patch.valid_at(now) {
                        "loaded"
                    } else {
                        "expired"
                    },
                    runs: if current {
                        stats.get(&manifest.name).cloned().unwrap_or_default()
                    } else {
                        PatchRunStats::default()
                    },
                }
            })
            .collect();
        RegistryStatus {
            dir: self.dir.as_ref().map(|d| d.display().to_string()),
            trusted_key_ids: self.trusted.key_ids().map(str::to_owned).collect(),
            loaded_at: catalog.loaded_at,
            patches,
            refused: catalog.refused.clone(),
        }
    }

    /// The folder this registry reads, for the watcher.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// Polls the patches folder every `interval` and syncs the registry (see
/// [`PatchRegistry::sync`]) when the folder changed or a loaded bundle has expired.
pub fn watch(
    tasks: &mut Tasks,
    registry: Arc<PatchRegistry>,
    store: Store,
    clock: Clock,
    interval: Duration,
) {
    let Some(dir) = registry.dir().map(Path::to_owned) else {
        return;
    };
    let mut last = folder_fingerprint(&dir);
    tasks.spawn_every("patches_watcher", interval, move || {
        let now = folder_fingerprint(&dir);
        let changed = now != last;
        last = now;
        let (registry, store, at) = (registry.clone(), store.clone(), clock.now());
        async move {
            if changed || registry.has_expired(at) {
                registry.sync(&store, at).await?;
            }
            Ok::<(), StoreError>(())
        }
    });
}
