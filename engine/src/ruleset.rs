//! A loaded, validated rule set: an immutable snapshot behind an `Arc`, cheap
//! to clone, so a server can swap a new one in atomically while requests in
//! flight finish on the old one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{LoadError, LoadErrorKind, NormalizeError};
use crate::flags::FlagPolicy;
use crate::healing::{
    self, Decision, DecisionConfig, Detection, HealingIndex, HealingRule, Platform,
};
use crate::interop::{InteropEvent, Mapping, NormalizedEvent};
use crate::sandbox::{self, Limits};
use crate::source::{self, FileKind};

/// One loaded file, for a status endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub file: String,
    pub kind: FileKind,
    pub bytes: usize,
    /// Lower-case hex sha256 of the source text.
    pub sha256: String,
}

/// Options for [`RuleSet::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub limits: Limits,
    /// Wall-clock deadline for running every file's top level.
    pub deadline: Option<Instant>,
}

/// An immutable, validated rule set. `Clone` is an `Arc` clone.
#[derive(Debug, Clone)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// In winner order (see [`crate::healing`]).
    healing: Vec<HealingRule>,
    index: HealingIndex,
    mappings: Vec<Mapping>,
    /// Source event type → indexes of the mappings for it (one per platform).
    by_event: HashMap<String, Vec<usize>>,
    flags: BTreeMap<String, FlagPolicy>,
    files: Vec<FileInfo>,
    limits: Limits,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::empty()
    }
}

impl RuleSet {
    /// A set with no rules, mappings or policies (every decision is `no_match`).
    pub fn empty() -> RuleSet {
        RuleSet::build(
            Vec::new(),
            Vec::new(),
            BTreeMap::new(),
            Vec::new(),
            Limits::default(),
        )
    }

    /// Load a whole set from `(file name, source text)` pairs with default limits.
    /// File names decide the kind: `…/healing/*.rhai`, `…/interop/*.rhai`,
    /// `…/flags/*.rhai` (see [`crate::is_rule_file`]). Any error refuses the
    /// whole set; all errors found are returned, in file order.
    pub fn load<I, N, S>(files: I) -> Result<RuleSet, Vec<LoadError>>
    where
        I: IntoIterator<Item = (N, S)>,
        N: AsRef<str>,
        S: AsRef<str>,
    {
        RuleSet::load_with(files, &LoadOptions::default())
    }

    pub fn load_with<I, N, S>(files: I, opts: &LoadOptions) -> Result<RuleSet, Vec<LoadError>>
    where
        I: IntoIterator<Item = (N, S)>,
        N: AsRef<str>,
        S: AsRef<str>,
    {
        let limits = Arc::new(opts.limits.clone());
        let engine = Arc::new(sandbox::build_engine(&limits));
        let mut files: Vec<(String, String)> = files
            .into_iter()
            .map(|(n, s)| (n.as_ref().to_string(), s.as_ref().to_string()))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));

        let mut errors = Vec::new();
        let mut infos = Vec::new();
        let mut healing = Vec::new();
        let mut mappings = Vec::new();
        let mut flags: BTreeMap<String, FlagPolicy> = BTreeMap::new();
        let mut rule_files: HashMap<String, String> = HashMap::new();
        let mut event_files: HashMap<(String, String), String> = HashMap::new();
        let mut mapping_names: HashMap<String, String> = HashMap::new();

        for (file, src) in &files {
            let Some(kind) = FileKind::of_path(file) else {
                errors.push(LoadError {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    kind: LoadErrorKind::UnknownFileKind,
                });
                continue;
            };
            infos.push(FileInfo {
                file: file.clone(),
                kind,
                bytes: src.len(),
                sha256: sha256_hex(src.as_bytes()),
            });
            let ev = match source::evaluate_file(&engine, &limits, file, src, kind, opts.deadline) {
                Ok(ev) => ev,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let dup = |what: &str, name: &str, first: &str, key: &str| LoadError {
                file: file.clone(),
                line: ev.origin.key_pos(key).0,
                column: ev.origin.key_pos(key).1,
                kind: LoadErrorKind::Duplicate {
                    what: what.into(),
                    name: name.into(),
                    first_file: first.into(),
                },
            };
            match kind {
                FileKind::Healing => {
                    match HealingRule::from_meta(
                        &ev.meta,
                        &ev.origin,
                        Some(ev.script.clone()),
                        &limits,
                    ) {
                        Ok(rule) => {
                            if let Some(first) = rule_files.get(&rule.name) {
                                errors.push(dup("healing rule", &rule.name, first, "name"));
                            } else {
                                rule_files.insert(rule.name.clone(), file.clone());
                                healing.push(rule);
                            }
                        }
                        Err(e) => errors.extend(e),
                    }
                }
                FileKind::Interop => {
                    match Mapping::from_meta(&ev.meta, &ev.origin, Some(ev.script.clone())) {
                        Ok(m) => {
                            let key = (m.source_platform.to_string(), m.source_event_type.clone());
                            if let Some(first) = event_files.get(&key) {
                                let name = format!("{}:{}", key.0, key.1);
                                errors.push(dup("mapping for", &name, first, "source_event_type"));
                            } else if let Some(first) = mapping_names.get(&m.name) {
                                errors.push(dup("mapping", &m.name, first, "name"));
                            } else {
                                event_files.insert(key, file.clone());
                                mapping_names.insert(m.name.clone(), file.clone());
                                mappings.push(m);
                            }
                        }
                        Err(e) => errors.extend(e),
                    }
                }
                FileKind::Flags => {
                    match FlagPolicy::from_meta(&ev.meta, &ev.origin, ev.script.clone()) {
                        Ok(p) => {
                            if let Some(first) = flags.get(&p.name) {
                                errors.push(dup("flag policy", &p.name, &first.file, "name"));
                            } else {
                                flags.insert(p.name.clone(), p);
                            }
                        }
                        Err(e) => errors.extend(e),
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleSet::build(
            healing,
            mappings,
            flags,
            infos,
            opts.limits.clone(),
        ))
    }

    fn build(
        healing: Vec<HealingRule>,
        mappings: Vec<Mapping>,
        flags: BTreeMap<String, FlagPolicy>,
        files: Vec<FileInfo>,
        limits: Limits,
    ) -> RuleSet {
        let (healing, index) = healing::prepare(healing);
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in mappings.iter().enumerate() {
            by_event
                .entry(m.source_event_type.clone())
                .or_default()
                .push(i);
        }
        RuleSet {
            inner: Arc::new(Inner {
                healing,
                index,
                mappings,
                by_event,
                flags,
                files,
                limits,
            }),
        }
    }

    /// A new set with extra mappings (e.g. Ops-created ones from the database)
    /// added. Refused if one duplicates a platform + event already mapped.
    pub fn with_mappings(&self, extra: Vec<Mapping>) -> Result<RuleSet, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut mappings = self.inner.mappings.clone();
        for m in extra {
            let key = (m.source_platform.to_string(), m.source_event_type.clone());
            if let Some(first) = mappings
                .iter()
                .find(|o| (o.source_platform.to_string(), o.source_event_type.clone()) == key)
            {
                errors.push(LoadError {
                    file: m.file.clone(),
                    line: 0,
                    column: 0,
                    kind: LoadErrorKind::Duplicate {
                        what: "mapping for".into(),
                        name: format!("{}:{}", key.0, key.1),
                        first_file: first.file.clone(),
                    },
                });
            } else {
                mappings.push(m);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleSet::build(
            self.inner.healing.clone(),
            mappings,
            self.inner.flags.clone(),
            self.inner.files.clone(),
            self.inner.limits.clone(),
        ))
    }

    /// Healing rules, in winner order.
    pub fn healing_rules(&self) -> &[HealingRule] {
        &self.inner.healing
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.inner.mappings
    }

    pub fn mapping_for(&self, platform: &str, source_event_type: &str) -> Option<&Mapping> {
        self.inner
            .by_event
            .get(source_event_type)?
            .iter()
            .map(|&i| &self.inner.mappings[i])
            .find(|m| m.source_platform.as_str() == platform)
    }

    pub fn flag_policy(&self, flag: &str) -> Option<&FlagPolicy> {
        self.inner.flags.get(flag)
    }

    pub fn flag_policies(&self) -> impl Iterator<Item = &FlagPolicy> {
        self.inner.flags.values()
    }

    /// Loaded files with their sha256, sorted by name.
    pub fn files(&self) -> &[FileInfo] {
        &self.inner.files
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Decide what to do about a detection. See [`decide`].
    pub fn decide(&self, detection: &Detection, config: &DecisionConfig) -> Decision {
        healing::decide_impl(
            &self.inner.healing,
            &self.inner.index,
            detection,
            config,
            false,
        )
    }

    /// Same outcome as [`RuleSet::decide`], with every rule's platform and
    /// pattern check in the trace (no prefilter). For `rules explain`.
    pub fn explain(&self, detection: &Detection, config: &DecisionConfig) -> Decision {
        healing::decide_impl(
            &self.inner.healing,
            &self.inner.index,
            detection,
            config,
            true,
        )
    }

    /// The name of the rule that wins for `text` by the order [`RuleSet::decide`] follows
    /// (prefilter, platform, pattern, rank), without running its `params` script: which
    /// rule an error message belongs to ([`RuleSet::healing_rules`] has the rest of it).
    /// `platform` is an install's, as in [`Detection::platform`] (one no rule names matches
    /// only the rules for `all`); None matches the rules of every platform, for what spans
    /// installs of several (an error group).
    pub fn matching_rule(&self, platform: Option<&str>, text: &str) -> Option<&str> {
        let platform = platform.map(Platform::parse);
        self.inner
            .index
            .candidates(text)
            .into_iter()
            .map(|i| &self.inner.healing[i])
            .find(|rule| {
                platform.is_none_or(|platform| rule.platforms.matches(platform))
                    && rule.regex.is_match(text)
            })
            .map(|rule| rule.name.as_str())
    }

    /// Normalize an interop event with the mapping for its platform and event type.
    pub fn normalize(&self, event: &InteropEvent) -> Result<NormalizedEvent, NormalizeError> {
        self.normalize_with_deadline(event, None)
    }

    pub fn normalize_with_deadline(
        &self,
        event: &InteropEvent,
        deadline: Option<Instant>,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let mapping = self
            .mapping_for(&event.platform, &event.event_type)
            .ok_or_else(|| NormalizeError::NoMapping {
                platform: event.platform.clone(),
                event_type: event.event_type.clone(),
            })?;
        mapping.normalize_with_deadline(event, deadline)
    }
}

/// Decide what to do about a detection: `auto_apply`, `pending_review` or
/// `no_match`, with the rule, patch, params and the trace of checks.
pub fn decide(set: &RuleSet, detection: &Detection, config: &DecisionConfig) -> Decision {
    set.decide(detection, config)
}

/// Normalize an interop event against a rule set's mappings.
pub fn normalize(set: &RuleSet, event: &InteropEvent) -> Result<NormalizedEvent, NormalizeError> {
    set.normalize(event)
}
