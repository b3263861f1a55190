//! The healing loop (seed 001). A detection — from Sira over HTTP, or from any other caller
//! of [`Service::detect`] — is decided by the rules; an auto-applied or approved patch is
//! dry-run by the host against a snapshot of the install's reported state, and only a clean
//! dry run queues a command. The plugin polls its commands, fetches the signed bundle and
//! acks; a failed ack rolls back at once, an error-rate regression after an apply rolls back
//! later, and a rule whose auto-applied patches keep failing has its auto-apply suspended.
//!
//! [`Service`] is the one path from a detection to a command; the handlers in `http.rs`
//! parse, authorize and call it. The records are in `store.rs`, the bundles in
//! [`patches`], the breaker in `breaker.rs`.

mod breaker;
mod detector;
mod http;
pub mod patches;
pub mod signing;
mod store;

pub use detector::{Confidence, DetectorConfig, DetectorRun, Skipped, DETECTOR_FLAG};
pub(crate) use http::{routes, status_filter};
pub use store::*;

use crate::db::{AuditContext, InvalidationBus, Store, StoreError};
use crate::delivery::NewOutboxMessage;
use crate::error::ApiError;
use crate::flags::Flags;
use crate::histogram::Histogram;
use crate::logs::{LogLevel, LogService, NewLogEntry, PlatformLog};
use crate::ops::{AlertChannels, NewAlert};
use crate::rules::Rules;
use crate::values::closed_set;
use crate::Clock;
use breaker::SuspendedRules;
use chrono::{DateTime, Duration, Utc};
use engine::{
    CheckKind, DecisionConfig, Detection, ErrorCode, FieldError, FlagValue, Outcome, ValueType,
};
use host::command::RefusalReason;
use host::RunErrorKind;
use patches::{DryRunError, LoadedPatch, PatchRegistry, RegistryStatus};
use serde::Serialize;
use serde_json::{json, Map, Value};
use signing::Signing;
use std::sync::Arc;
use uuid::Uuid;

/// Settings of the healing loop; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct HealingConfig {
    /// Sira's confidence must reach this (and the rule's minimum) to auto-apply, in percent.
    pub global_threshold: f64,
    /// Priority of an `apply_patch` command (rollbacks always go first).
    pub apply_priority: i32,
    /// How long a command handed to a plugin stays leased before it is handed out again
    /// (to the same install, re-signed with a new sequence).
    pub command_lease: Duration,
    /// How long a signed command stays acceptable to a plugin after its hand-out.
    pub command_ttl: Duration,
    /// Most commands one poll hands out.
    pub commands_per_poll: i64,
    /// Error rates are compared over this window after an apply and the same window before.
    pub regression_window: Duration,
    /// A rise of the error rate by more than this many percentage points rolls back.
    pub regression_margin: f64,
    /// A rule's auto-apply is suspended for a merchant's installs when, within
    /// `breaker_window`, at least `breaker_min_failures` of its auto-applied patches there
    /// failed or rolled back and they are at least `breaker_failure_rate` of those that
    /// finished there; and for the fleet when that holds of all its patches.
    pub breaker_min_failures: i64,
    pub breaker_failure_rate: f64,
    /// The fleet-wide breaker trips only when the bad patches were at this many merchants
    /// or more; below it, each merchant's own count suspends the rule for its installs.
    pub breaker_min_merchants: i64,
    pub breaker_window: Duration,
    /// How long the suspended rules are trusted without reading them again (the fallback
    /// for a missed change notice from another replica).
    pub breakers_max_age: std::time::Duration,
    /// The built-in detector (`detector.rs`).
    pub detector: DetectorConfig,
}

impl Default for HealingConfig {
    fn default() -> Self {
        Self {
            global_threshold: engine::DEFAULT_GLOBAL_THRESHOLD,
            apply_priority: 8,
            command_lease: Duration::minutes(2),
            command_ttl: Duration::hours(1),
            commands_per_poll: 20,
            regression_window: Duration::hours(1),
            regression_margin: 5.0,
            breaker_min_failures: 3,
            breaker_failure_rate: 0.5,
            breaker_min_merchants: 2,
            breaker_window: Duration::hours(24),
            breakers_max_age: std::time::Duration::from_secs(5),
            detector: DetectorConfig::default(),
        }
    }
}

closed_set!(IssueSeverity {
    Low = "low",
    Medium = "medium",
    High = "high",
    Critical = "critical",
});

closed_set!(PatchType {
    DatabasePatch = "database_patch",
    ConfigUpdate = "config_update",
    CodePatch = "code_patch",
    Notify = "notify",
});

/// A detection, checked: what Sira (or another detector) says is wrong with an install.
#[derive(Clone, Debug)]
pub struct NewDetection {
    pub plugin_id: Uuid,
    pub detected_issue: String,
    pub issue_severity: Option<IssueSeverity>,
    pub patch_type: Option<PatchType>,
    pub proposed_patch: Option<Map<String, Value>>,
    /// 0–100.
    pub sira_confidence: f64,
    /// A retry with the same key records nothing and answers with the first log.
    pub idempotency_key: Option<String>,
    pub source: DetectionSource,
    /// Why the detector raised it (None for Sira's): kept with the log for Ops.
    pub raised_by: Option<Value>,
}

/// What became of a detection.
#[derive(Clone, Debug)]
pub struct Detected {
    pub log: HealingLog,
    /// The idempotency key was used before for this very detection: `log` is what was
    /// recorded then, and nothing was recorded now.
    pub replayed: bool,
}

impl Detected {
    /// What the detection's first answer said, in the seed's words: the decision as it was
    /// made, whatever became of the log since (a replay answers with it).
    pub fn status(&self) -> &'static str {
        let log = &self.log;
        match (log.auto_applied, log.snapshot_id.is_some(), &log.rule_name) {
            // Auto-applied: a clean dry run stored its snapshot (an empty plan or a failed
            // run none), and that outcome stays recorded whatever happens next.
            (true, true, _) => "applied",
            (true, false, _) if log.failure_kind.is_some() => "failed",
            (true, false, _) => "not_needed",
            (false, _, None) => "rejected",
            (false, _, Some(_)) => "pending_review",
        }
    }

    /// The log's status now, in the same words: an auto-applied log awaiting its ack is
    /// "applied", as its first answer said; anything else by its name.
    pub fn current_status(&self) -> &'static str {
        match self.log.status {
            HealingStatus::Approved if self.log.auto_applied => "applied",
            status => status.as_str(),
        }
    }
}

/// Why a patch was not applied: the server's own reasons, or the sandbox's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The install has not reported its state yet: there is nothing to run a patch against.
    NoSnapshot,
    /// No verified bundle of that name is loaded.
    UnknownPatch,
    /// The patch is for another platform or plugin version.
    NotApplicable,
    /// The install's reported state is not a plugin state.
    BadSnapshot,
    /// The dry run could not complete: a fault of the server, not of the patch.
    Internal,
    /// The plugin acked the command as failed.
    PluginFailed,
    /// The sandbox refused or stopped the run.
    Run(RunErrorKind),
}

impl FailureKind {
    const OWN: [Self; 6] = [
        Self::NoSnapshot,
        Self::UnknownPatch,
        Self::NotApplicable,
        Self::BadSnapshot,
        Self::Internal,
        Self::PluginFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSnapshot => "no_snapshot",
            Self::UnknownPatch => "unknown_patch",
            Self::NotApplicable => "not_applicable",
            Self::BadSnapshot => "bad_snapshot",
            Self::Internal => "internal",
            Self::PluginFailed => "plugin_failed",
            Self::Run(kind) => kind.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::OWN
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .or_else(|| RunErrorKind::parse(text).map(Self::Run))
    }

    /// Whether the failure says anything of the patch: its code ran in the sandbox and
    /// failed, or the plugin failed to apply it. Only these count toward the rule's breaker.
    pub fn counts_against_the_patch(self) -> bool {
        match self {
            Self::PluginFailed => true,
            Self::Run(kind) => kind.ran(),
            Self::NoSnapshot
            | Self::UnknownPatch
            | Self::NotApplicable
            | Self::BadSnapshot
            | Self::Internal => false,
        }
    }

    /// Every kind that does not count against the patch (see
    /// [`FailureKind::counts_against_the_patch`]).
    pub fn not_the_patchs() -> impl Iterator<Item = Self> {
        Self::OWN
            .into_iter()
            .chain(RunErrorKind::ALL.into_iter().map(Self::Run))
            .filter(|kind| !kind.counts_against_the_patch())
    }
}

impl Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

crate::db::text_column!(FailureKind);

impl From<&DryRunError> for FailureKind {
    fn from(error: &DryRunError) -> Self {
        match error {
            DryRunError::BadSnapshot(_) => Self::BadSnapshot,
            DryRunError::Run(error) => Self::Run(error.kind()),
        }
    }
}

/// The healing loop's operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    config: HealingConfig,
    rules: Arc<Rules>,
    patches: Arc<PatchRegistry>,
    signing: Arc<Signing>,
    breakers: SuspendedRules,
    /// Longest a rule's `params` function may run per detection.
    script_deadline: std::time::Duration,
    /// Time from a detection's arrival to its durable log and command (for
    /// `plugin_autoheal_detection_seconds`).
    detection_latency: Histogram,
    /// Where a failed rollback's critical alert is dispatched.
    alerts: AlertChannels,
    /// The flags in force, for [`AUTO_APPLY_FLAG`].
    flags: Arc<Flags>,
    /// Where each decision is logged (`logs/`).
    platform_log: PlatformLog,
}

/// The flag that may hold an install's patches for Ops whatever the rule says (the
/// shipped policy: off before plugin 1.2 and for installs Ops marked `sensitive`).
pub const AUTO_APPLY_FLAG: &str = "autoheal.auto_apply";

impl Service {
    /// The service with the server's settings: the loop's own, the scripts' deadline and
    /// the alert channels. (One argument per handle the loop reads: `AppBuilder::build` is
    /// its only caller, and a struct of them would only rename the list.)
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        clock: Clock,
        server: &crate::ServerConfig,
        rules: Arc<Rules>,
        patches: Arc<PatchRegistry>,
        signing: Arc<Signing>,
        flags: Arc<Flags>,
        bus: &InvalidationBus,
        platform_log: PlatformLog,
    ) -> Self {
        let config = server.healing.clone();
        Self {
            breakers: SuspendedRules::new(store.clone(), bus, config.breakers_max_age),
            store,
            clock,
            config,
            rules,
            patches,
            signing,
            script_deadline: server.script_deadline,
            detection_latency: Histogram::default(),
            alerts: server.alerts.clone(),
            flags,
            platform_log,
        }
    }

    pub fn detection_latency(&self) -> &Histogram {
        &self.detection_latency
    }

    /// Decides a detection by the rules and records it, with the decision and every number
    /// that made it. An auto-applied patch is dry-run against the install's snapshot, and
    /// a clean run queues its command, in the same commit as the log. A retry with the same
    /// idempotency key records nothing and answers with the first log (a conflict when the
    /// key was used for a different detection).
    pub async fn detect(&self, detection: NewDetection) -> Result<Detected, ApiError> {
        let started = std::time::Instant::now();
        let request_sha256 = engine::sha256_hex(
            json!([
                detection.plugin_id,
                detection.detected_issue,
                detection.issue_severity.map(IssueSeverity::as_str),
                detection.patch_type.map(PatchType::as_str),
                detection.proposed_patch,
                detection.sira_confidence
            ])
            .to_string()
            .as_bytes(),
        );
        if let Some(key) = &detection.idempotency_key {
            if let Some(existing) = self.store.healing_log_by_idempotency_key(key).await? {
                return replay(existing, &request_sha256);
            }
        }
        let target = self
            .store
            .healing_target(detection.plugin_id)
            .await?
            .ok_or_else(|| ApiError::invalid("plugin_id", "no such installation"))?;
        let input = Detection {
            platform: target.cms.clone(),
            plugin_version: Some(target.plugin_version.clone()),
            detected_issue: detection.detected_issue.clone(),
            issue_severity: detection.issue_severity.map(|s| s.as_str().to_owned()),
            patch_type: detection.patch_type.map(|p| p.as_str().to_owned()),
            proposed_patch: detection.proposed_patch.clone().map(Value::Object),
            sira_confidence: detection.sira_confidence,
            install: Self::snapshot_of(&target),
        };
        let config = DecisionConfig {
            global_threshold: self.config.global_threshold,
            deadline: Some(std::time::Instant::now() + self.script_deadline),
        };
        let mut decision = self.rules.current().decide(&input, &config);
        let auto_apply_flag = if decision.rule.is_some() {
            let (allowed, value, detail) = self.install_flag(AUTO_APPLY_FLAG, &target).await;
            decision.check(CheckKind::Flag, allowed, detail);
            Some(value)
        } else {
            None
        };
        let suspended = match (&decision.outcome, &decision.rule) {
            (Outcome::AutoApply, Some(rule)) => {
                self.breakers.contains(rule, target.merchant_id).await?
            }
            _ => false,
        };
        if suspended {
            decision.check(
                CheckKind::Breaker,
                false,
                "the rule's auto-apply is suspended: its patches kept failing".into(),
            );
        }
        let needs = self.missing_params(&decision);
        if !needs.is_empty() {
            decision.check(
                CheckKind::PatchParams,
                false,
                format!(
                    "the patch needs {}: held for Ops to give on approval",
                    needs.join(", ")
                ),
            );
        }
        let mut decision_json = serde_json::to_value(&decision).unwrap_or_default();
        if suspended {
            decision_json["auto_apply_suspended"] = json!(true);
        }
        if !needs.is_empty() {
            decision_json["needs"] = json!(needs);
        }
        if let Some(value) = auto_apply_flag {
            decision_json["auto_apply_flag"] = value;
        }
        let now = self.clock.now();
        let outcome = match decision.outcome {
            Outcome::NoMatch => DetectionOutcome::Rejected,
            Outcome::PendingReview => DetectionOutcome::PendingReview,
            Outcome::AutoApply => DetectionOutcome::AutoApplied(
                self.prepare(
                    &target,
                    decision.patch.as_deref().unwrap_or_default(),
                    Value::Object(decision.params.clone()),
                )
                .await,
            ),
        };
        let record = NewHealingLog {
            target,
            detected_issue: detection.detected_issue,
            issue_severity: detection
                .issue_severity
                .unwrap_or(IssueSeverity::Medium)
                .as_str()
                .to_owned(),
            patch_type: detection.patch_type.map(|p| p.as_str().to_owned()),
            proposed_patch: detection.proposed_patch.map(Value::Object),
            sira_confidence: detection.sira_confidence,
            idempotency_key: detection.idempotency_key,
            request_sha256: request_sha256.clone(),
            rule_name: decision.rule.clone(),
            decision: decision_json,
            source: detection.source,
            raised_by: detection.raised_by,
        };
        let (log, created) = self.store.record_detection(record, outcome, now).await?;
        if !created {
            return replay(log, &request_sha256);
        }
        self.detection_latency.observe(started.elapsed());
        self.log_decision(&log);
        if log.status == HealingStatus::Failed {
            if let Some(rule) = &log.rule_name {
                self.breakers
                    .check(&self.config, rule, log.merchant_id, now)
                    .await?;
            }
        }
        Ok(Detected {
            log,
            replayed: false,
        })
    }

    /// The platform log's entry of a decision: `warn` when the patch failed, else `info`.
    fn log_decision(&self, log: &HealingLog) {
        let level = if log.status == HealingStatus::Failed {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        let rule = log.rule_name.as_deref().unwrap_or("no rule");
        let message = format!(
            "detection from {} on install {}: {} ({rule})",
            log.source.as_str(),
            log.plugin_id,
            log.status.as_str(),
        );
        self.platform_log.record(
            NewLogEntry::new(level, LogService::Healing, "healing.decided", message)
                .merchant(log.merchant_id)
                .data(json!({
                    "log_id": log.id,
                    "installation_id": log.plugin_id,
                    "source": log.source,
                    "rule": log.rule_name,
                    "status": log.status,
                    "auto_applied": log.auto_applied,
                    "confidence": log.sira_confidence,
                    "patch": log.patch_name,
                    "failure_kind": log.failure_kind.map(FailureKind::as_str),
                })),
        );
    }

    /// Boolean flag `key` ([`AUTO_APPLY_FLAG`], [`DETECTOR_FLAG`]) for the install, in the
    /// context its heartbeat's flags have (the merchant, what the plugin reports, the
    /// properties Ops set): whether it allows what it guards, its evaluation as the log
    /// keeps it, and the trace's words. A flag that is not defined holds nothing; one that
    /// cannot be evaluated holds.
    async fn install_flag(
        &self,
        key: &'static str,
        target: &HealingTarget,
    ) -> (bool, Value, String) {
        let mut context = crate::flags::install_context(
            target.merchant_id,
            &target.cms,
            &target.site_url,
            &target.plugin_version,
            &target.environment,
        );
        context.properties.extend(target.properties.0.clone());
        let loaded = self.flags.current();
        let now = self.clock.now();
        let runs_policy = loaded.snapshot.runs_policy(key);
        self.flags
            .within_policy_budget(runs_policy, move |deadline| {
                let evaluation = loaded
                    .snapshot
                    .evaluate_within(key, &context, now, deadline)
                    .expecting(ValueType::Boolean);
                Self::flag_verdict(key, evaluation)
            })
            .await
    }

    /// What the evaluation of boolean flag `key` means: whether it allows what it guards
    /// (an auto-apply, a detection), the evaluation as the log keeps it, and the trace's
    /// words.
    fn flag_verdict(key: &str, evaluation: engine::Evaluation<'_>) -> (bool, Value, String) {
        let recorded = json!({
            "key": key,
            "value": evaluation.value.map(FlagValue::to_json),
            "reason": evaluation.reason,
            "error_code": evaluation.error_code,
        });
        let reason = recorded["reason"].as_str().unwrap_or_default();
        let (allowed, detail) = match (evaluation.value, evaluation.error_code) {
            (Some(FlagValue::Bool(on)), _) => (
                on,
                if on {
                    format!("{key} is on for this install ({reason})")
                } else {
                    format!("{key} is off for this install ({reason}): held for Ops")
                },
            ),
            (_, Some(ErrorCode::FlagNotFound)) => {
                (true, format!("{key} is not defined: it holds nothing"))
            }
            (_, code) => (
                false,
                format!(
                    "{key} could not be evaluated ({}): held for Ops",
                    json!(code)
                ),
            ),
        };
        (allowed, recorded, detail)
    }

    /// The required parameters of the decision's patch (its current bundle's schema) that
    /// the rule did not give: what a detection waits for Ops to give.
    fn missing_params(&self, decision: &engine::Decision) -> Vec<String> {
        let Some(patch) = decision
            .patch
            .as_deref()
            .and_then(|name| self.patches.current(name, self.clock.now()))
        else {
            return Vec::new();
        };
        patch
            .verified
            .manifest()
            .params_schema
            .iter()
            .filter(|(name, spec)| spec.required && !decision.params.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The state a patch runs against: the install's last reported `state` (config,
    /// tables) with the facts the server knows (platform, versions). None when the plugin
    /// never reported one — and without a snapshot there is no command.
    fn snapshot_of(target: &HealingTarget) -> Option<Value> {
        let mut state: Map<String, Value> = target.reported_state.as_ref()?.0.as_object()?.clone();
        state.insert("platform".into(), Value::String(target.cms.clone()));
        state.insert(
            "plugin_version".into(),
            Value::String(target.plugin_version.clone()),
        );
        for (key, value) in [
            ("php_version", &target.php_version),
            ("wordpress_version", &target.wordpress_version),
        ] {
            if let Some(value) = value {
                state.insert(key.into(), Value::String(value.clone()));
            }
        }
        Some(Value::Object(state))
    }

    /// Dry-runs patch `name` with `params` against the install's snapshot. The outcome is
    /// what the log records: a ready command, or the typed reason nothing was queued.
    async fn prepare(&self, target: &HealingTarget, name: &str, params: Value) -> Preparation {
        let Some(snapshot) = Self::snapshot_of(target) else {
            return Preparation::Failed {
                patch: None,
                kind: FailureKind::NoSnapshot,
                reason: "the install has not reported its state in a heartbeat yet".into(),
            };
        };
        let Some(patch) = self.patches.current(name, self.clock.now()) else {
            return Preparation::Failed {
                patch: None,
                kind: FailureKind::UnknownPatch,
                reason: format!("no verified bundle named {name:?} is loaded"),
            };
        };
        let patch_ref = PatchRef {
            name: patch.name().to_owned(),
            version: patch.version().to_string(),
            bundle_sha256: patch.bundle_sha256.clone(),
            patch_type: serde_json::to_value(patch.verified.manifest().patch_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            params: params.clone(),
        };
        // A patch for another platform or plugin version is not even run.
        let plugin_version = crate::version::parse_or_lowest(&target.plugin_version);
        if !patch
            .verified
            .manifest()
            .applies_to(&target.cms, &plugin_version)
        {
            return Preparation::Failed {
                reason: format!(
                    "{} {} does not apply to {} {}",
                    patch.name(),
                    patch.version(),
                    target.cms,
                    target.plugin_version
                ),
                patch: Some(patch_ref),
                kind: FailureKind::NotApplicable,
            };
        }
        let registry = self.patches.clone();
        let run_snapshot = snapshot.clone();
        let outcome =
            tokio::task::spawn_blocking(move || registry.dry_run(&patch, &run_snapshot, &params))
                .await;
        match outcome {
            Ok(Ok(run)) => {
                let snapshot_sha256 = engine::sha256_hex(snapshot.to_string().as_bytes());
                Preparation::Ready(ReadyPatch {
                    bundle_url: http::bundle_url(&patch_ref.name, &patch_ref.version),
                    patch: patch_ref,
                    snapshot,
                    snapshot_sha256,
                    operations: serde_json::to_value(&run.operations).unwrap_or_default(),
                    restore_operations: serde_json::to_value(&run.restore).unwrap_or_default(),
                    priority: self.config.apply_priority,
                })
            }
            Ok(Err(error)) => Preparation::Failed {
                patch: Some(patch_ref),
                kind: FailureKind::from(&error),
                reason: error.to_string(),
            },
            Err(join) => {
                tracing::error!(event = "dry_run_panicked", error = %join, "dry run task failed");
                Preparation::Failed {
                    patch: Some(patch_ref),
                    kind: FailureKind::Internal,
                    reason: "the dry run could not complete".into(),
                }
            }
        }
    }

    pub async fn log(&self, id: Uuid) -> Result<HealingLog, ApiError> {
        self.store.healing_log(id).await?.ok_or(ApiError::NotFound {
            what: "healing log",
        })
    }

    /// Ops approve a pending patch, optionally edited (the edit is re-validated against the
    /// patch's parameter schema by a new dry run); audited. The log is `approved` with its
    /// command queued, or `failed` with the typed reason of its dry run. An edit the patch
    /// does not accept (unknown patch, parameters off its schema) changes nothing.
    pub async fn approve(
        &self,
        id: Uuid,
        edit: Option<&Map<String, Value>>,
        audit: &AuditContext,
    ) -> Result<HealingLog, ApiError> {
        let log = self.log(id).await?;
        if !log.status.can_move_to(HealingStatus::Approved) {
            return Err(ApiError::Conflict {
                message: format!(
                    "healing log {} is {}; only pending_review can be approved",
                    log.id,
                    log.status.as_str()
                ),
            });
        }
        let rule_patch = log
            .decision
            .0
            .get("patch")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (name, params) = match edit {
            Some(patch) => {
                let (name, mut params) = edited_patch(patch).map_err(|error| {
                    ApiError::invalid(format!("patch.{}", error.field), error.message)
                })?;
                // An edit of the rule's own patch adds to (or overrides) the parameters
                // the rule gave: Ops give what a detection was waiting for.
                if name.is_none() || name == rule_patch {
                    if let (Some(Value::Object(rule_params)), Value::Object(edited)) =
                        (log.decision.0.get("params"), &mut params)
                    {
                        for (key, value) in rule_params {
                            edited.entry(key.clone()).or_insert_with(|| value.clone());
                        }
                    }
                }
                (name.or(rule_patch), params)
            }
            None => (
                rule_patch,
                log.decision.0.get("params").cloned().unwrap_or(json!({})),
            ),
        };
        let Some(name) = name else {
            return Err(ApiError::invalid(
                "patch.name",
                "no rule matched this detection: name the patch to apply",
            ));
        };
        let target = self
            .store
            .healing_target(log.plugin_id)
            .await?
            .ok_or(ApiError::NotFound {
                what: "installation",
            })?;
        let preparation = self.prepare(&target, &name, params).await;
        if let Preparation::Failed { kind, reason, .. } = &preparation {
            match kind {
                FailureKind::UnknownPatch => {
                    return Err(ApiError::invalid("patch.name", reason.clone()))
                }
                FailureKind::Run(RunErrorKind::InvalidParams) => {
                    return Err(ApiError::invalid("patch.params", reason.clone()))
                }
                _ => {}
            }
        }
        let now = self.clock.now();
        Ok(self
            .store
            .approve_healing(&log, &preparation, audit, now)
            .await?)
    }

    /// Ops reject a pending patch; audited.
    pub async fn reject(
        &self,
        id: Uuid,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<HealingLog, ApiError> {
        let log = self.log(id).await?;
        Ok(self
            .store
            .reject_healing(&log, reason, audit, self.clock.now())
            .await?)
    }

    /// Ops roll a patch back: a `rollback` command with the restore operations and the
    /// snapshot is queued for the plugin, and the log is `rolling_back` until it acks;
    /// audited. Only an applied patch (or one whose rollback failed) can be rolled back.
    pub async fn rollback(
        &self,
        id: Uuid,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<(HealingLog, Command), ApiError> {
        let log = self.log(id).await?;
        let refusal = match log.status {
            HealingStatus::Applied | HealingStatus::RollbackFailed => None,
            HealingStatus::Failed | HealingStatus::NotNeeded | HealingStatus::Refused => {
                Some("nothing of it is in effect, so there is nothing to roll back")
            }
            HealingStatus::RollingBack => Some("its rollback is already queued"),
            HealingStatus::RolledBack => Some("it is already rolled back"),
            HealingStatus::Approved => Some("its apply is not acked yet"),
            HealingStatus::PendingReview | HealingStatus::Rejected => Some("it was never applied"),
        };
        if let Some(refusal) = refusal {
            return Err(ApiError::Conflict {
                message: format!(
                    "healing log {} is {}: {refusal}",
                    log.id,
                    log.status.as_str()
                ),
            });
        }
        let now = self.clock.now();
        let (log, command) = self
            .store
            .rollback_healing(&log, "ops", reason, Some(audit), now)
            .await?;
        self.after_bad_outcome(&log, now).await?;
        Ok((log, command))
    }

    /// Trips the log's rule's breaker if its patches went bad past the configured rate.
    async fn after_bad_outcome(
        &self,
        log: &HealingLog,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &log.rule_name {
            Some(rule) => {
                self.breakers
                    .check(&self.config, rule, log.merchant_id, now)
                    .await
            }
            None => Ok(()),
        }
    }

    /// A plugin's poll: the pending commands of its install, highest priority first, leased
    /// to this poll and signed, each with the install's next sequence. With `lease` false,
    /// a look that takes nothing: the commands unsigned, without sequence, not leased.
    /// Another merchant's install answers exactly like a missing one.
    pub async fn poll(
        &self,
        merchant_id: Uuid,
        plugin_id: Uuid,
        lease: bool,
    ) -> Result<Vec<Command>, ApiError> {
        let target = self.store.healing_target(plugin_id).await?;
        if target.is_none_or(|t| t.merchant_id != merchant_id) {
            return Err(ApiError::NotFound {
                what: "installation",
            });
        }
        if !lease {
            let mut commands = self
                .store
                .pending_commands(plugin_id, self.config.commands_per_poll)
                .await?;
            for command in &mut commands {
                command.sequence = None;
            }
            return Ok(commands);
        }
        let now = self.clock.now();
        let signer = self.signing.current();
        // Every plugin would refuse what an expired certificate vouches for: hand out
        // nothing (the commands stay queued) until Ops renew it.
        if now >= signer.not_after() {
            tracing::error!(event = "command_certificate_expired", key_id = %signer.key_id(),
                not_after = %signer.not_after(), "the command key's certificate has expired: no command is handed out until it is renewed (autoheal keys certify, then SIGHUP)");
            return Err(ApiError::Unavailable {
                message: "commands cannot be signed now; they stay queued, poll again later".into(),
            });
        }
        let mut commands = self
            .store
            .lease_commands(
                plugin_id,
                now,
                self.config.command_lease,
                self.config.commands_per_poll,
            )
            .await?;
        self.signing.sign_all(&signer, &mut commands, now)?;
        Ok(commands)
    }

    /// A plugin's ack of one of its merchant's commands; idempotent. An apply's ack says
    /// how many of its operations are in effect (`result.applied_operations`, all on
    /// success): a failed apply with some in effect queues the rollback of exactly those
    /// at once, one with none ends `failed`. A failed rollback opens a critical alert.
    /// Returns the command and whether the ack repeated one already recorded.
    pub async fn ack(
        &self,
        merchant_id: Uuid,
        command_id: Uuid,
        success: bool,
        refused: Option<RefusalReason>,
        result: &Value,
    ) -> Result<(Command, bool), ApiError> {
        let command = self
            .store
            .command(command_id)
            .await?
            .filter(|c| c.merchant_id == merchant_id)
            .ok_or(ApiError::NotFound { what: "command" })?;
        let first = command.status == "pending";
        let effect = match (refused, command.command_type.as_str()) {
            (Some(reason), _) => AckEffect::Refused {
                reason,
                alert: match first {
                    true => self.refusal_alert(&command, reason, result).await?,
                    false => None,
                },
            },
            (None, "apply_patch") => self.apply_effect(&command, success, result).await?,
            (None, _) => AckEffect::Rollback {
                alert: match success || !first {
                    true => None,
                    false => self.rollback_failed_alert(&command, result).await?,
                },
            },
        };
        let ack = Ack {
            success,
            result,
            effect,
        };
        let now = self.clock.now();
        let (command, repeated) = match self.store.ack_command(&command, &ack, now).await? {
            AckOutcome::Recorded(command) => (command, false),
            AckOutcome::Repeated(command) => (command, true),
        };
        // A refusal is not the patch's failure: the breaker does not hear of it.
        if !repeated && !success && refused.is_none() {
            if let Some(log) = self.store.healing_log(command.healing_log_id).await? {
                self.after_bad_outcome(&log, now).await?;
            }
        }
        Ok((command, repeated))
    }

    /// The alert of a command the plugin refused: a warning when an apply did not verify
    /// (nothing changed on the site), the critical rollback-failed alert when a rollback
    /// did not (the patch is still in effect).
    async fn refusal_alert(
        &self,
        command: &Command,
        reason: RefusalReason,
        result: &Value,
    ) -> Result<Option<(NewAlert, Vec<NewOutboxMessage>)>, ApiError> {
        let refusal = store::refusal_text(reason, result);
        if command.command_type == "rollback" {
            let said = json!({"error": refusal});
            return self.rollback_failed_alert(command, &said).await;
        }
        let name = "AutoHealCommandRefused";
        let summary = format!(
            "The plugin on install {} refused command {} (apply of {}): {refusal}. Nothing was applied. \
             A refusal means the command was changed on its way, the install trusts another root key, \
             its clock is off, or the command key's certificate has expired.",
            command.plugin_id,
            command.id,
            command.patch_name.as_deref().unwrap_or("a patch"),
        );
        let messages = self.alerts.messages(name, "warning", &summary);
        let alert = NewAlert {
            name: name.into(),
            severity: "warning",
            summary,
            labels: json!({"healing_log_id": command.healing_log_id, "plugin_id": command.plugin_id,
                           "command_id": command.id, "reason": reason.as_str()}),
        };
        Ok(Some((alert, messages)))
    }

    /// What an apply's ack leaves in effect: `result.applied_operations`, checked against
    /// the command's plan, and the restore operations that undo exactly those.
    async fn apply_effect(
        &self,
        command: &Command,
        success: bool,
        result: &Value,
    ) -> Result<AckEffect, ApiError> {
        let payload = &command.command_payload.0;
        let operations: Vec<host::Operation> =
            serde_json::from_value(payload["patch"]["operations"].clone()).unwrap_or_default();
        let planned = operations.len();
        let plan = match planned {
            1 => "its 1 operation".to_owned(),
            n => format!("its {n} operations"),
        };
        let field = "result.applied_operations";
        let reported = match result.get("applied_operations") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|n| *n <= planned as u64)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            field,
                            format!("must be how many of {plan} are in effect: an integer from 0 to {planned}"),
                        )
                    })? as usize,
            ),
        };
        // A repeated ack is answered as the first was, whatever it carries now.
        if command.status != "pending" {
            return Ok(AckEffect::Apply {
                applied_operations: reported.unwrap_or(planned) as i32,
                restore_operations: json!([]),
            });
        }
        let in_effect = match (success, reported) {
            (true, None) => planned,
            (true, Some(n)) if n == planned => planned,
            (true, Some(_)) => {
                return Err(ApiError::invalid(
                    field,
                    format!("a successful apply has {plan} in effect, all of them"),
                ))
            }
            (false, Some(n)) => n,
            (false, None) => {
                return Err(ApiError::invalid(
                    field,
                    format!("a failed apply must say how many of {plan} are in effect (0 when none): only those are rolled back"),
                ))
            }
        };
        let restore_operations = if success || in_effect == 0 {
            json!([])
        } else {
            let snapshot_id = payload["snapshot_id"]
                .as_str()
                .and_then(|id| id.parse().ok());
            let snapshot = match snapshot_id {
                Some(id) => self.store.snapshot_state(id).await?,
                None => None,
            };
            let restore = snapshot
                .and_then(|state| serde_json::from_value::<host::State>(state).ok())
                .and_then(|state| {
                    host::ops::restore_operations(&state, &operations[..in_effect]).ok()
                })
                .ok_or_else(|| {
                    StoreError::Inconsistent(format!(
                        "command {}: its snapshot does not replay its plan",
                        command.id
                    ))
                })?;
            serde_json::to_value(restore).unwrap_or_default()
        };
        Ok(AckEffect::Apply {
            applied_operations: in_effect as i32,
            restore_operations,
        })
    }

    /// The critical alert of a rollback the plugin failed: the install may be half-patched.
    async fn rollback_failed_alert(
        &self,
        command: &Command,
        result: &Value,
    ) -> Result<Option<(NewAlert, Vec<NewOutboxMessage>)>, ApiError> {
        let Some(log) = self.store.healing_log(command.healing_log_id).await? else {
            return Ok(None);
        };
        let name = "AutoHealRollbackFailed";
        let summary = format!(
            "The rollback of {} on install {} failed on the plugin: {}. What the patch changed may still be in effect. \
             POST /api/v1/plugins/autoheal/{}/rollback asks again.",
            log.patch_name.as_deref().unwrap_or("a patch"),
            log.plugin_id,
            ack_failure_reason(result),
            log.id
        );
        let messages = self.alerts.messages(name, "critical", &summary);
        let alert = NewAlert {
            name: name.into(),
            severity: "critical",
            summary,
            labels: json!({"healing_log_id": log.id, "plugin_id": log.plugin_id, "patch": log.patch_name}),
        };
        Ok(Some((alert, messages)))
    }

    /// How many logs wait for Ops' review, counted up to `cap`.
    pub async fn queue_length(&self, cap: i64) -> Result<i64, ApiError> {
        Ok(self
            .store
            .count_healing_logs(HealingStatus::PendingReview, cap)
            .await?)
    }

    /// An install's commands, newest first (those of one log, when given), each with the
    /// plugin's ack.
    pub async fn commands_of(
        &self,
        plugin_id: Uuid,
        healing_log_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Command>, ApiError> {
        Ok(self
            .store
            .commands_of(plugin_id, healing_log_id, limit)
            .await?)
    }

    pub async fn logs(&self, filter: &HealingLogFilter) -> Result<Vec<HealingLog>, ApiError> {
        Ok(self.store.list_healing_logs(filter).await?)
    }

    pub async fn stats(&self, since: DateTime<Utc>) -> Result<HealingStats, ApiError> {
        Ok(self.store.healing_stats(since).await?)
    }

    /// A loaded bundle by name and exact version: what a plugin downloads.
    pub fn bundle(&self, name: &str, version: &semver::Version) -> Option<Arc<LoadedPatch>> {
        self.patches.get(name, version, self.clock.now())
    }

    /// When the certificate of the command key in force expires.
    pub fn command_certificate_expiry(&self) -> DateTime<Utc> {
        self.signing.current().not_after()
    }

    /// The patch registry: loaded and refused bundles, with their run figures.
    pub fn registry(&self) -> RegistryStatus {
        self.patches.status(self.clock.now())
    }

    pub async fn breakers(&self) -> Result<Vec<RuleBreaker>, ApiError> {
        Ok(self.store.rule_breakers().await?)
    }

    /// Ops re-enable a suspended rule's auto-apply in a scope; audited. False when it was
    /// not suspended there; not found when the rule is neither loaded nor was ever
    /// suspended (a rule removed from the folder can still have its breaker closed).
    pub async fn resume_rule(
        &self,
        rule: &str,
        scope: BreakerScope,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<bool, ApiError> {
        let loaded = self
            .rules
            .current()
            .healing_rules()
            .iter()
            .any(|loaded| loaded.name == rule);
        if !loaded && !self.store.rule_breaker_exists(rule).await? {
            return Err(ApiError::NotFound { what: "rule" });
        }
        Ok(self
            .breakers
            .set(rule, scope, false, reason, Some(audit), self.clock.now())
            .await?)
    }

    /// The analysis after an apply (like Argo Rollouts' analysis, per install): for each
    /// patch applied at least one window ago and at most two, compares the install's error
    /// rate in the window after the apply with the window before; a rise past the margin
    /// queues a rollback. Returns the logs now rolling back.
    ///
    /// Each window's rate is its outcome events', when it has any. An install that sends
    /// only heartbeats is judged by the rate they report (`errors_last_hour`): before, the
    /// one its last heartbeat reported when the apply was acked; after, the one a heartbeat
    /// reports once its hour lies wholly after the apply. Without an after figure the patch
    /// is not judged.
    pub async fn analyze_regressions(&self) -> Result<Vec<HealingLog>, StoreError> {
        let now = self.clock.now();
        let window = self.config.regression_window;
        let candidates = self
            .store
            .applied_logs_between(now - window - window, now - window)
            .await?;
        let mut rolling_back = Vec::new();
        for log in candidates {
            let Some(applied_at) = log.applied_at else {
                continue;
            };
            let before = match self
                .store
                .error_rate_between(log.plugin_id, applied_at - window, applied_at)
                .await?
            {
                Some(rate) => rate,
                None => crate::fleet::reported_error_rate(
                    log.reported_error_rate_at_apply.unwrap_or(0.0),
                ),
            };
            let after = match self
                .store
                .error_rate_between(log.plugin_id, applied_at, applied_at + window)
                .await?
            {
                Some(rate) => Some(rate),
                None => {
                    self.store
                        .reported_error_rate_since(log.plugin_id, applied_at + Duration::hours(1))
                        .await?
                }
            };
            let Some(after) = after else {
                continue;
            };
            if after - before > self.config.regression_margin {
                let reason = format!(
                    "error rate rose from {before:.1} % to {after:.1} % in the {} min after the patch (margin {:.1} points)",
                    window.num_minutes(),
                    self.config.regression_margin
                );
                match self
                    .store
                    .rollback_healing(&log, "regression", &reason, None, now)
                    .await
                {
                    Ok((log, _)) => {
                        tracing::warn!(event = "regression_rollback", healing_log = %log.id, reason = %reason, "rollback queued after an error-rate regression");
                        self.after_bad_outcome(&log, now).await?;
                        rolling_back.push(log);
                    }
                    // Ops rolled it back meanwhile.
                    Err(StoreError::Conflict(_)) => {}
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(rolling_back)
    }
}

/// A retried detection: the log recorded the first time, unless the key was reused for
/// a different detection.
fn replay(existing: HealingLog, request_sha256: &str) -> Result<Detected, ApiError> {
    if existing.request_sha256 != request_sha256 {
        return Err(ApiError::Conflict {
            message: "this idempotency key was used for a different detection".into(),
        });
    }
    Ok(Detected {
        log: existing,
        replayed: true,
    })
}

/// An Ops edit of the patch to apply, in either spelling the dashboard sends:
/// `{"name": "update_memory_limit", "params": {"memory_limit": "256M"}}`, or seed 001's
/// `{"type": "config_update", "target": "memory_limit", "value": "256M"}` /
/// `{"type": "database_patch", "action": "add_missing_column", "column": …}`.
/// Returns the patch name (None: the log's own) and its parameters; an error names the
/// field of the edit.
pub fn edited_patch(patch: &Map<String, Value>) -> Result<(Option<String>, Value), FieldError> {
    let name = match (patch.get("name"), patch.get("action")) {
        (Some(Value::String(name)), _) | (None, Some(Value::String(name))) => Some(name.clone()),
        (None, None) => None,
        (Some(_), _) => return Err(FieldError::new("name", "must be a string")),
        (None, Some(_)) => return Err(FieldError::new("action", "must be a string")),
    };
    if let Some(params) = patch.get("params") {
        return match params {
            Value::Object(_) => Ok((name, params.clone())),
            _ => Err(FieldError::new("params", "must be an object")),
        };
    }
    if let Some(target) = patch.get("target") {
        let Value::String(target) = target else {
            return Err(FieldError::new("target", "must be a string"));
        };
        let value = patch
            .get("value")
            .cloned()
            .ok_or_else(|| FieldError::new("value", "required with target"))?;
        let mut params = Map::new();
        params.insert(target.clone(), value);
        return Ok((name, Value::Object(params)));
    }
    let params: Map<String, Value> = patch
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "action" | "type"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((name, Value::Object(params)))
}
