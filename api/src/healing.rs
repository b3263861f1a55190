//! The healing loop, between the HTTP handlers and the store: a detection is decided by the
//! rules, an auto-applied or approved patch is dry-run by the host against a snapshot of the
//! install's reported state, and only a clean dry run queues a command. Rollbacks follow a
//! failed ack at once, or an error-rate regression after an apply; a rule whose auto-applied
//! patches keep failing has its auto-apply suspended.

use crate::invalidation::{Invalidation, InvalidationBus};
use crate::store::{
    AuditContext, HealingLog, HealingTarget, PatchRef, Preparation, ReadyPatch, Store, StoreError,
    RULE_BREAKERS_TOPIC,
};
use crate::AppState;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use tokio::sync::broadcast;

/// Settings of the healing loop; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct HealingConfig {
    /// Sira's confidence must reach this (and the rule's minimum) to auto-apply, in percent.
    pub global_threshold: f64,
    /// Priority of an `apply_patch` command (rollbacks always go first).
    pub apply_priority: i32,
    /// How long a command handed to a plugin stays leased before it is handed out again.
    pub command_lease: Duration,
    /// Error rates are compared over this window after an apply and the same window before.
    pub regression_window: Duration,
    /// A rise of the error rate by more than this many percentage points rolls back.
    pub regression_margin: f64,
    /// A rule's auto-apply is suspended when, within `breaker_window`, at least
    /// `breaker_min_failures` of its auto-applied patches failed or rolled back and they
    /// are at least `breaker_failure_rate` of those that finished.
    pub breaker_min_failures: i64,
    pub breaker_failure_rate: f64,
    pub breaker_window: Duration,
}

impl Default for HealingConfig {
    fn default() -> Self {
        Self {
            global_threshold: engine::DEFAULT_GLOBAL_THRESHOLD,
            apply_priority: 8,
            command_lease: Duration::minutes(10),
            regression_window: Duration::hours(1),
            regression_margin: 5.0,
            breaker_min_failures: 3,
            breaker_failure_rate: 0.5,
            breaker_window: Duration::hours(24),
        }
    }
}

/// How long the suspended rules are trusted without reading them again: the fallback for
/// a change notice from another replica that was missed.
const SUSPENDED_RULES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// The rules whose auto-apply is suspended, as last read. Every auto-applied detection asks,
/// so the answer is kept: a breaker change through this process drops it at once, one made
/// by another replica arrives as a [`RULE_BREAKERS_TOPIC`] notice on the invalidation bus
/// (PostgreSQL NOTIFY, sent by the changing transaction), and it is read again at least
/// every [`SUSPENDED_RULES_MAX_AGE`].
pub struct SuspendedRules {
    read: RwLock<Option<(std::time::Instant, HashSet<String>)>>,
    /// Bumped by every invalidation, so a read that raced a change is not kept.
    generation: AtomicU64,
    notices: Mutex<broadcast::Receiver<Invalidation>>,
}

impl SuspendedRules {
    pub fn new(bus: &InvalidationBus) -> Self {
        Self {
            read: RwLock::new(None),
            generation: AtomicU64::new(0),
            notices: Mutex::new(bus.subscribe()),
        }
    }

    pub async fn contains(&self, store: &Store, rule: &str) -> Result<bool, StoreError> {
        self.take_notices();
        if let Some((read_at, rules)) = &*self.read.read().expect("suspended rules") {
            if read_at.elapsed() < SUSPENDED_RULES_MAX_AGE {
                return Ok(rules.contains(rule));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let rules = store.suspended_rules().await?;
        let suspended = rules.contains(rule);
        let mut read = self.read.write().expect("suspended rules");
        if self.generation.load(Ordering::Acquire) == generation {
            *read = Some((std::time::Instant::now(), rules));
        }
        Ok(suspended)
    }

    /// Forgets what was read: the next question reads the store.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.read.write().expect("suspended rules") = None;
    }

    /// Drops the cache if the bus carried a breaker change (or lost notices).
    fn take_notices(&self) {
        let mut notices = self.notices.lock().expect("breaker notices");
        let mut changed = false;
        loop {
            match notices.try_recv() {
                Ok(notice) => changed |= notice.topic == RULE_BREAKERS_TOPIC,
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed = true,
                Err(_) => break,
            }
        }
        if changed {
            self.invalidate();
        }
    }
}

/// Opens or closes a rule's breaker (see [`Store::set_rule_breaker`]) and drops what this
/// process cached of the breakers.
pub async fn set_rule_breaker(
    state: &AppState,
    rule: &str,
    suspended: bool,
    reason: &str,
    audit: Option<&AuditContext>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = state
        .store
        .set_rule_breaker(rule, suspended, reason, audit, now)
        .await?;
    state.suspended_rules.invalidate();
    Ok(changed)
}

/// The state a patch runs against: the install's last reported `state` (config, tables)
/// with the facts the server knows (platform, versions). None when the plugin never
/// reported one — and without a snapshot there is no command.
pub fn snapshot_of(target: &HealingTarget) -> Option<Value> {
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

/// Dry-runs patch `name` with `params` against the install's snapshot. The outcome is what
/// the log records: a ready command, or the typed reason nothing was queued.
pub async fn prepare(
    state: &AppState,
    target: &HealingTarget,
    name: &str,
    params: Value,
) -> Preparation {
    let Some(snapshot) = snapshot_of(target) else {
        return Preparation::Failed {
            patch: None,
            kind: "no_snapshot".into(),
            reason: "the install has not reported its state in a heartbeat yet".into(),
        };
    };
    let Some(patch) = state.patches.current(name) else {
        return Preparation::Failed {
            patch: None,
            kind: "unknown_patch".into(),
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
            kind: "not_applicable".into(),
        };
    }
    let registry = state.patches.clone();
    let run_snapshot = snapshot.clone();
    let outcome =
        tokio::task::spawn_blocking(move || registry.dry_run(&patch, &run_snapshot, &params)).await;
    match outcome {
        Ok(Ok(run)) => {
            let snapshot_sha256 = engine::sha256_hex(snapshot.to_string().as_bytes());
            Preparation::Ready(ReadyPatch {
                patch: patch_ref,
                snapshot,
                snapshot_sha256,
                operations: serde_json::to_value(&run.operations).unwrap_or_default(),
                restore_operations: serde_json::to_value(&run.restore).unwrap_or_default(),
                priority: state.healing.apply_priority,
            })
        }
        Ok(Err(error)) => Preparation::Failed {
            patch: Some(patch_ref),
            kind: error.kind().to_owned(),
            reason: error.to_string(),
        },
        Err(join) => {
            tracing::error!(event = "dry_run_panicked", error = %join, "dry run task failed");
            Preparation::Failed {
                patch: Some(patch_ref),
                kind: "internal".into(),
                reason: "the dry run could not complete".into(),
            }
        }
    }
}

/// An Ops edit of the patch to apply, in either spelling the dashboard sends:
/// `{"name": "update_memory_limit", "params": {"memory_limit": "256M"}}`, or seed 001's
/// `{"type": "config_update", "target": "memory_limit", "value": "256M"}` /
/// `{"type": "database_patch", "action": "add_missing_column", "column": …}`.
/// Returns the patch name (None: the log's own) and its parameters.
pub fn edited_patch(patch: &Map<String, Value>) -> Result<(Option<String>, Value), String> {
    let name = match (patch.get("name"), patch.get("action")) {
        (Some(Value::String(name)), _) | (None, Some(Value::String(name))) => Some(name.clone()),
        (None, None) => None,
        (Some(_), _) => return Err("name: must be a string".into()),
        (None, Some(_)) => return Err("action: must be a string".into()),
    };
    if let Some(params) = patch.get("params") {
        return match params {
            Value::Object(_) => Ok((name, params.clone())),
            _ => Err("params: must be an object".into()),
        };
    }
    if let Some(target) = patch.get("target") {
        let Value::String(target) = target else {
            return Err("target: must be a string".into());
        };
        let value = patch
            .get("value")
            .cloned()
            .ok_or("value: required with target")?;
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

/// After a log of `rule` ended badly: trips the rule's breaker when its auto-applied
/// patches failed or rolled back past the configured rate.
pub async fn check_rule_breaker(
    state: &AppState,
    rule: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let config = &state.healing;
    let outcomes = state
        .store
        .rule_outcomes(rule, now - config.breaker_window)
        .await?;
    let trips = outcomes.bad >= config.breaker_min_failures
        && outcomes.finished > 0
        && outcomes.bad as f64 >= config.breaker_failure_rate * outcomes.finished as f64;
    if trips {
        let reason = format!(
            "{} of {} auto-applied patches failed or rolled back within {} h",
            outcomes.bad,
            outcomes.finished,
            config.breaker_window.num_hours()
        );
        if set_rule_breaker(state, rule, true, &reason, None, now).await? {
            tracing::warn!(event = "rule_auto_apply_suspended", alert = "AutoHealRuleSuspended", rule, reason = %reason,
                "auto-apply suspended for a rule: its detections now wait for Ops");
        }
    }
    Ok(())
}

/// The analysis after an apply (like Argo Rollouts' analysis, per install): for each patch
/// applied at least one window ago and at most two, compares the install's error rate in
/// the window after the apply with the window before; a rise past the margin rolls back.
/// Returns the logs it rolled back.
pub async fn analyze_regressions(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<Vec<HealingLog>, StoreError> {
    let config = &state.healing;
    let window = config.regression_window;
    let candidates = state
        .store
        .applied_logs_between(now - window - window, now - window)
        .await?;
    let mut rolled_back = Vec::new();
    for log in candidates {
        let Some(applied_at) = log.applied_at else {
            continue;
        };
        let before = state
            .store
            .error_rate_between(log.plugin_id, applied_at - window, applied_at)
            .await?
            .unwrap_or(0.0);
        let Some(after) = state
            .store
            .error_rate_between(log.plugin_id, applied_at, applied_at + window)
            .await?
        else {
            continue;
        };
        if after - before > config.regression_margin {
            let reason = format!(
                "error rate rose from {before:.1} % to {after:.1} % in the {} min after the patch (margin {:.1} points)",
                window.num_minutes(),
                config.regression_margin
            );
            match state
                .store
                .rollback_healing(&log, "regression", &reason, None, now)
                .await
            {
                Ok((log, _)) => {
                    tracing::warn!(event = "regression_rollback", healing_log = %log.id, reason = %reason, "patch rolled back after an error-rate regression");
                    if let Some(rule) = &log.rule_name {
                        check_rule_breaker(state, rule, now).await?;
                    }
                    rolled_back.push(log);
                }
                // Ops rolled it back meanwhile.
                Err(StoreError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
    }
    Ok(rolled_back)
}

/// Runs the regression analysis every `interval`.
pub fn spawn_regression_analysis(
    state: AppState,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if let Err(error) = analyze_regressions(&state, state.clock.now()).await {
                tracing::warn!(event = "regression_analysis_failed", error = %error, "regression analysis failed; retrying next tick");
            }
        }
    })
}
