//! The patch registry: the signed bundles `serve` found under `--patches`, each verified by
//! the host against the trusted public keys, with the host that dry-runs them and per-patch
//! run figures. A bad bundle is refused and reported while the others stay in force; a
//! reload never lowers a patch's version (an older bundle appearing later is a downgrade).

use chrono::{DateTime, Utc};
use host::{DryRun, Host, RunError, State, TrustedKeys, VerifiedBundle};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
}

/// A bundle file that was not loaded, and why.
#[derive(Clone, Debug, Serialize)]
pub struct RefusedBundle {
    pub file: String,
    pub reason: String,
}

/// Run figures of one patch since the server started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PatchRunStats {
    pub runs: u64,
    pub failures: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    pub total_micros: u64,
    pub max_micros: u64,
}

/// What `GET /api/v1/plugins/autoheal/patches` lists per bundle.
#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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
    fn current(&self, name: &str) -> Option<&Arc<LoadedPatch>> {
        self.bundles
            .range((name.to_owned(), semver::Version::new(0, 0, 0))..)
            .take_while(|((n, _), _)| n == name)
            .last()
            .map(|(_, patch)| patch)
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

impl DryRunError {
    /// The typed reason recorded on a failed healing log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadSnapshot(_) => "bad_snapshot",
            Self::Run(e) => e.kind(),
        }
    }
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

    /// Loads every `*.bundle.json` under `dir`; bundles that fail verification are refused
    /// and listed, the others load.
    pub fn load(host: Host, dir: &Path, trusted: TrustedKeys, now: DateTime<Utc>) -> Self {
        let registry = Self {
            host: Some(host),
            dir: Some(dir.to_owned()),
            trusted,
            catalog: RwLock::default(),
            stats: Mutex::default(),
        };
        registry.reload(now);
        registry
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Re-reads the folder. Returns the refused files.
    pub fn reload(&self, now: DateTime<Utc>) -> Vec<RefusedBundle> {
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
                    reason: format!("cannot read the patches folder: {e}"),
                });
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match self.load_file(&path, &file, &previous, now) {
                Ok(patch) => {
                    let key = (patch.name().to_owned(), patch.version().clone());
                    if let Some(other) = next.bundles.get(&key) {
                        if other.bundle_sha256 != patch.bundle_sha256 {
                            next.refused.push(RefusedBundle {
                                file,
                                reason: format!(
                                    "{} {} is already loaded from {} with other bytes",
                                    key.0, key.1, other.file
                                ),
                            });
                        }
                        continue;
                    }
                    next.bundles.insert(key, Arc::new(patch));
                }
                Err(reason) => next.refused.push(RefusedBundle { file, reason }),
            }
        }
        for refused in &next.refused {
            tracing::warn!(event = "bundle_refused", file = %refused.file, reason = %refused.reason, "patch bundle refused");
        }
        let refused = next.refused.clone();
        *self.catalog.write().expect("catalog lock") = Arc::new(next);
        refused
    }

    fn load_file(
        &self,
        path: &Path,
        file: &str,
        previous: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<LoadedPatch, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let verified =
            host::verify_bundle(&bytes, &self.trusted, &host::AcceptedVersions::new(), now)
                .map_err(|e| e.to_string())?;
        let name = &verified.manifest().name;
        let version = &verified.manifest().version;
        let bundle_sha256 = host::bundle::sha256_hex(&bytes);
        // Versions only go up: a version below the newest ever loaded for this name is a
        // downgrade unless that very bundle was loaded before.
        if let Some(newest) = previous.current(name) {
            let known = previous
                .bundles
                .get(&(name.clone(), version.clone()))
                .is_some_and(|p| p.bundle_sha256 == bundle_sha256);
            if version < newest.version() && !known {
                return Err(format!(
                    "{name} {version} is older than the loaded {} (downgrade)",
                    newest.version()
                ));
            }
        }
        self.host
            .as_ref()
            .ok_or("no patch host")?
            .prepare(&verified)
            .map_err(|e| format!("module refused by the host: {e}"))?;
        Ok(LoadedPatch {
            file: file.to_owned(),
            bytes: bytes.into(),
            bundle_sha256,
            verified: Arc::new(verified),
        })
    }

    /// The version new detections use.
    pub fn current(&self, name: &str) -> Option<Arc<LoadedPatch>> {
        self.catalog().current(name).cloned()
    }

    /// A loaded bundle by name and exact version (what a plugin downloads).
    pub fn get(&self, name: &str, version: &semver::Version) -> Option<Arc<LoadedPatch>> {
        self.catalog()
            .bundles
            .get(&(name.to_owned(), version.clone()))
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
        self.record(patch.name(), started.elapsed(), result.as_ref().err());
        Ok(result?)
    }

    fn record(&self, name: &str, took: Duration, failure: Option<&RunError>) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let mut stats = self.stats.lock().expect("patch stats");
        let entry = stats.entry(name.to_owned()).or_default();
        entry.runs += 1;
        entry.total_micros += micros;
        entry.max_micros = entry.max_micros.max(micros);
        if let Some(error) = failure {
            entry.failures += 1;
            *entry
                .failures_by_kind
                .entry(error.kind().to_owned())
                .or_default() += 1;
        }
    }

    pub fn status(&self) -> RegistryStatus {
        let catalog = self.catalog();
        let stats = self.stats.lock().expect("patch stats").clone();
        let patches = catalog
            .bundles
            .values()
            .map(|patch| {
                let manifest = patch.verified.manifest();
                let current = catalog
                    .current(&manifest.name)
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
                    status: "loaded",
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

/// Polls the patches folder every `interval` and reloads when it changed.
pub fn spawn_watcher(state: crate::AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    let dir = state.patches.dir().map(Path::to_owned);
    let mut last = dir
        .as_deref()
        .map(crate::rules::folder_fingerprint)
        .unwrap_or_default();
    tokio::spawn(async move {
        let Some(dir) = dir else { return };
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let now = crate::rules::folder_fingerprint(&dir);
            if now != last {
                last = now;
                let registry = state.patches.clone();
                let at = state.clock.now();
                let _ = tokio::task::spawn_blocking(move || registry.reload(at)).await;
            }
        }
    })
}
