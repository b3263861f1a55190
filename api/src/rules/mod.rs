//! The rule set in force, and how it is replaced. Ops' files are read here
//! (the engine does no IO) and loaded as a whole: a valid set swaps in
//! atomically (requests holding the old one finish on it), an invalid one is
//! refused, logged, and visible in [`RulesStatus`] while the previous set
//! stays in force. Reloads come from `POST /api/v1/rules/reload`, SIGHUP and
//! a watcher that polls the folder. A candidate set is never put in force to be
//! tried: [`replay`] decides the stored detections again with it.

mod http;
pub mod replay;

pub(crate) use http::routes;

use crate::db::{AuditContext, Store};
use crate::error::ApiError;
use crate::tasks::Tasks;
use crate::{Clock, ServerConfig};
use chrono::{DateTime, Utc};
use engine::{FlagDefinition, LoadOptions, RuleSet};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Every rule file under `dir` (`healing/`, `interop/`, `flags/`), as (path
/// relative to `dir`, text), in a stable order.
pub fn read_rule_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    read_tree(dir).map(|files| {
        files
            .into_iter()
            .filter(|(name, _)| engine::is_rule_file(name))
            .collect()
    })
}

/// Every file under `dir`, as (relative path, text), sorted. A symbolic link anywhere
/// below `dir` is an error naming it: what is loaded is what lies in the folder, never a
/// file elsewhere that a link points to (`dir` itself may be a link).
pub fn read_tree(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            // The entry's own type: a link is not followed.
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{relative}: a symbolic link, refused: rule files must be regular files inside the folder"),
                ));
            }
            if kind.is_dir() {
                pending.push(path);
            } else {
                paths.push((relative, path));
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|(name, path)| Ok((name, std::fs::read_to_string(&path)?)))
        .collect()
}

/// Loads the rule set under `dir` with `limits`; every error as `file:line:col: message`.
pub fn load_rule_set(dir: &Path, limits: &engine::Limits) -> Result<RuleSet, Vec<String>> {
    let files =
        read_rule_files(dir).map_err(|error| vec![format!("{}: {error}", dir.display())])?;
    let options = LoadOptions {
        limits: limits.clone(),
        deadline: None,
    };
    RuleSet::load_with(files, &options)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// Reads `dir/flags/*.json` as (file, definition) pairs (none without that folder); every
/// error names the file and the field.
pub fn read_flag_files(dir: &Path) -> Result<Vec<(String, FlagDefinition)>, Vec<String>> {
    let flags_dir = dir.join("flags");
    if !flags_dir.is_dir() {
        return Ok(vec![]);
    }
    let files = read_tree(&flags_dir)
        .map_err(|error| vec![format!("{}: {error}", flags_dir.display())])?
        .into_iter()
        .map(|(name, text)| (format!("flags/{name}"), text));
    engine::load_flag_files(files)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LoadedFile {
    pub file: String,
    pub sha256: String,
}

/// What `GET /api/v1/rules/status` shows.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RulesStatus {
    #[schema(value_type = Option<String>)]
    pub dir: Option<PathBuf>,
    pub files: Vec<LoadedFile>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Errors of the last refused load, `file:line:col: message`; empty once
    /// a later load succeeds.
    pub last_errors: Vec<String>,
    pub last_refused_at: Option<DateTime<Utc>>,
}

pub struct Rules {
    dir: Option<PathBuf>,
    limits: engine::Limits,
    current: RwLock<RuleSet>,
    status: RwLock<RulesStatus>,
}

impl Rules {
    /// No rules: every detection is `no_match`.
    pub fn empty() -> Self {
        Self {
            dir: None,
            limits: engine::Limits::default(),
            current: RwLock::new(RuleSet::empty()),
            status: RwLock::new(RulesStatus::default()),
        }
    }

    /// Loads `dir`, its scripts held to `limits`; a set with errors is refused with every
    /// error.
    pub fn load(
        dir: &Path,
        limits: &engine::Limits,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<String>> {
        let rules = Self {
            dir: Some(dir.to_path_buf()),
            limits: limits.clone(),
            current: RwLock::new(RuleSet::empty()),
            status: RwLock::new(RulesStatus {
                dir: Some(dir.to_path_buf()),
                ..RulesStatus::default()
            }),
        };
        rules.reload(now)?;
        Ok(rules)
    }

    /// The set in force; cheap (an `Arc` inside).
    pub fn current(&self) -> RuleSet {
        self.current.read().expect("rules lock").clone()
    }

    pub fn status(&self) -> RulesStatus {
        self.status.read().expect("rules lock").clone()
    }

    /// Reads and loads the folder again. On success the new set is in force;
    /// on failure nothing changes but the status' errors.
    pub fn reload(&self, now: DateTime<Utc>) -> Result<RulesStatus, Vec<String>> {
        let Some(dir) = &self.dir else {
            return Ok(self.status());
        };
        let loaded = load_rule_set(dir, &self.limits);
        let mut status = self.status.write().expect("rules lock");
        match loaded {
            Ok(set) => {
                status.files = set
                    .files()
                    .iter()
                    .map(|file| LoadedFile {
                        file: file.file.clone(),
                        sha256: file.sha256.clone(),
                    })
                    .collect();
                status.loaded_at = Some(now);
                status.last_errors.clear();
                *self.current.write().expect("rules lock") = set;
                tracing::info!(
                    event = "rules_loaded",
                    files = status.files.len(),
                    "rule set in force"
                );
                Ok(status.clone())
            }
            Err(errors) => {
                for error in &errors {
                    tracing::warn!(event = "rules_refused", error = %error, "rule set refused; the previous set stays");
                }
                status.last_errors = errors.clone();
                status.last_refused_at = Some(now);
                Err(errors)
            }
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.dir
            .as_deref()
            .map(folder_fingerprint)
            .unwrap_or_default()
    }
}

/// Paths, sizes and modification times of every file under a folder.
pub(crate) type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// A cheap fingerprint of a folder tree, for the watchers: it changes when a file is
/// added, removed, resized or touched.
pub(crate) fn folder_fingerprint(dir: &Path) -> Fingerprint {
    let mut seen = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(path),
                Ok(meta) => seen.push((path, meta.len(), meta.modified().ok())),
                Err(_) => {}
            }
        }
    }
    seen.sort();
    seen
}

/// Polls the rules folder every `interval` and reloads when it changed.
pub fn watch(tasks: &mut Tasks, rules: Arc<Rules>, clock: Clock, interval: Duration) {
    // Taken now, not in the task, so a change made before the task first runs is still
    // seen as a change.
    let mut last = rules.fingerprint();
    tasks.spawn_every("rules_watcher", interval, move || {
        let now = rules.fingerprint();
        if now != last {
            last = now;
            // A refused set is logged and shown in the status; the previous one stays.
            let _ = rules.reload(clock.now());
        }
        std::future::ready(Ok::<(), std::convert::Infallible>(()))
    });
}

/// Ops' view of the rule set in force, the reload action, and the replay of a candidate
/// set over past detections (`replay.rs`).
pub struct Service {
    rules: Arc<Rules>,
    store: Store,
    clock: Clock,
    /// What a replay decides with, as the healing loop does.
    global_threshold: f64,
    script_deadline: Duration,
}

impl Service {
    pub fn new(rules: Arc<Rules>, store: Store, clock: Clock, config: &ServerConfig) -> Self {
        Self {
            rules,
            store,
            clock,
            global_threshold: config.healing.global_threshold,
            script_deadline: config.script_deadline,
        }
    }

    pub fn status(&self) -> RulesStatus {
        self.rules.status()
    }

    /// Reloads the folder, audited either way: the new status, or every error while the
    /// previous set stays in force.
    pub async fn reload(&self, audit: &AuditContext) -> Result<RulesStatus, ApiError> {
        let now = self.clock.now();
        let outcome = self.rules.reload(now);
        let details = match &outcome {
            Ok(status) => json!({"outcome": "loaded", "files": status.files.len()}),
            Err(errors) => json!({"outcome": "refused", "errors": errors}),
        };
        self.store
            .record_audit(audit, "rules.reload", "rules", details, now)
            .await?;
        outcome.map_err(|errors| ApiError::RulesRefused { errors })
    }
}
