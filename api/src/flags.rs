//! Feature flags in the server: the snapshot every evaluation reads, how it
//! is rebuilt, and the staged-rollout job.
//!
//! **Where flags come from.** Files (`rules/flags/*.json` under the rules
//! folder) and the store. A flag in the store wins over the file's copy of
//! the same key: the first API change of a file flag (PATCH, kill, override,
//! rollout) copies it into the store, and from then on the file's copy of
//! that key is ignored until the store's is deleted.
//!
//! **Cache.** Evaluations read an `Arc<Loaded>` (a compiled
//! [`FlagSnapshot`]) behind a lock held only to clone the `Arc`; no request
//! waits on the store. A rebuild (files + store + the rule set's policies)
//! swaps in a new snapshot: after every change made through this replica
//! (before the reply), on every invalidation notice (PostgreSQL NOTIFY from
//! any replica), and every `flags_refresh_ms` as a fallback for missed
//! notices and edited files.
//!
//! **Rollouts.** [`run_rollouts`] advances active plans whose step has been
//! held long enough, and halts (audited, with a `platform_alerts` row) a plan
//! whose cohort's error rate passed its threshold. Time comes from the
//! [`crate::Clock`]; a step moves once even with several replicas (the
//! update names the step it moves from).

use crate::store::{
    AuditContext, FlagWrite, NewAlert, RolloutChange, RolloutPlan, Store, StoreError, FLAGS_TOPIC,
};
use crate::AppState;
use chrono::{DateTime, Duration, Utc};
use engine::{FlagDefinition, FlagSnapshot, Stickiness};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Where the flag in force under a key comes from.
#[derive(Clone, Debug, Serialize)]
pub struct FlagOrigin {
    /// `file` or `store`.
    pub source: &'static str,
    /// The file defining the key, even when the store's copy wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The store's version, when the store holds the flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// When and by which Ops agent (none: the server) the store's copy last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<uuid::Uuid>,
}

/// One compiled state of every flag.
pub struct Loaded {
    pub snapshot: FlagSnapshot,
    pub origins: HashMap<String, FlagOrigin>,
    /// File definitions as last read successfully (with their file names).
    files: Vec<(String, FlagDefinition)>,
}

impl Loaded {
    /// The definition a change to `key` starts from, and the store version
    /// the change must be based on (None: the store has no copy).
    pub fn base(&self, key: &str) -> Option<(FlagDefinition, Option<i64>)> {
        let definition = self.snapshot.definition(key)?.clone();
        let version = self.origins.get(key).and_then(|origin| origin.version);
        Some((definition, version))
    }

    /// The file defining `key`, if any.
    pub fn file_of(&self, key: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(_, definition)| definition.key == key)
            .map(|(file, _)| file.as_str())
    }
}

/// The flags in force, shared by every request of one replica.
pub struct Flags {
    current: RwLock<Arc<Loaded>>,
    /// Serializes rebuilds so an older rebuild cannot swap in over a newer one.
    rebuild: tokio::sync::Mutex<()>,
}

impl Default for Flags {
    fn default() -> Self {
        let (snapshot, _) = FlagSnapshot::build(vec![], vec![], |_| None);
        Self {
            current: RwLock::new(Arc::new(Loaded {
                snapshot,
                origins: HashMap::new(),
                files: vec![],
            })),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }
}

/// Reads `dir/flags/*.json` as (file, definition) pairs; every error names
/// the file and the field.
fn read_flag_files(dir: &Path) -> Result<Vec<(String, FlagDefinition)>, Vec<String>> {
    let flags_dir = dir.join("flags");
    if !flags_dir.is_dir() {
        return Ok(vec![]);
    }
    let files = crate::rules::read_tree(&flags_dir)
        .map_err(|error| vec![format!("{}: {error}", flags_dir.display())])?
        .into_iter()
        .map(|(name, text)| (format!("flags/{name}"), text));
    engine::load_flag_files(files)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

impl Flags {
    /// The flags in force: a lock held only to clone an `Arc`.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("flags lock").clone()
    }

    /// Rebuilds from the files, the store and the rule set in force. A flag
    /// file with errors leaves the previous file definitions in force.
    pub async fn reload(&self, state: &AppState) -> Result<(), StoreError> {
        let _guard = self.rebuild.lock().await;
        let previous = self.current();
        let files = match state.rules.status().dir {
            Some(dir) => match read_flag_files(&dir) {
                Ok(files) => files,
                Err(errors) => {
                    for error in &errors {
                        tracing::warn!(event = "flag_files_refused", error = %error, "flag files refused; the previous ones stay");
                    }
                    previous.files.clone()
                }
            },
            None => vec![],
        };
        let (stored, overrides) = state.store.flag_state().await?;
        let mut origins: HashMap<String, FlagOrigin> = HashMap::new();
        let mut definitions: HashMap<String, FlagDefinition> = HashMap::new();
        for (file, definition) in &files {
            origins.insert(
                definition.key.clone(),
                FlagOrigin {
                    source: "file",
                    file: Some(file.clone()),
                    version: None,
                    updated_at: None,
                    updated_by: None,
                },
            );
            definitions.insert(definition.key.clone(), definition.clone());
        }
        for flag in stored {
            let key = flag.definition.key.clone();
            let file = origins.remove(&key).and_then(|origin| origin.file);
            origins.insert(
                key.clone(),
                FlagOrigin {
                    source: "store",
                    file,
                    version: Some(flag.version),
                    updated_at: Some(flag.updated_at),
                    updated_by: flag.updated_by,
                },
            );
            definitions.insert(key, flag.definition);
        }
        let rules = state.rules.current();
        let (snapshot, errors) =
            FlagSnapshot::build(definitions.into_values(), overrides, |name| {
                rules.flag_policy(name)
            });
        for error in &errors {
            tracing::warn!(event = "flag_refused", error = %error, "a stored flag or override does not compile; left out");
        }
        *self.current.write().expect("flags lock") = Arc::new(Loaded {
            snapshot,
            origins,
            files,
        });
        Ok(())
    }

    /// The value of every flag (not archived) for `context`, by key: what a
    /// heartbeat reply carries. A flag that fails to evaluate is left out.
    pub fn values_for(
        &self,
        context: &engine::EvalContext,
        now: DateTime<Utc>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let loaded = self.current();
        loaded
            .snapshot
            .definitions()
            .filter(|definition| !definition.archived)
            .filter_map(|definition| {
                let value = loaded
                    .snapshot
                    .evaluate(&definition.key, context, now)
                    .value?;
                Some((definition.key.clone(), value.to_json()))
            })
            .collect()
    }

    /// After a change made through this replica: rebuild before replying
    /// (so the caller reads its own write) and tell local subscribers.
    /// Other replicas hear of it from the store's NOTIFY.
    pub async fn changed(&self, state: &AppState, key: &str) -> Result<(), StoreError> {
        self.reload(state).await?;
        state.invalidation.publish_local(FLAGS_TOPIC, key);
        Ok(())
    }
}

/// The context a heartbeat's flags are evaluated in: the merchant is the
/// tenant; cms, site, plugin version and environment are properties (for
/// policies and custom stickiness).
pub fn install_context(
    merchant_id: uuid::Uuid,
    record: &crate::store::HeartbeatRecord,
) -> engine::EvalContext {
    let properties = json!({
        "cms": record.cms,
        "site_url": record.site_url,
        "plugin_version": record.plugin_version,
        "environment": record.environment,
    });
    engine::EvalContext {
        tenant_id: Some(merchant_id.to_string()),
        properties: properties.as_object().cloned().unwrap_or_default(),
        ..engine::EvalContext::default()
    }
}

/// Why the flags could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every error of the flag files, `file: field: message`.
    #[error("{} error(s) in the flag files: {}", .0.len(), .0.join("; "))]
    Files(Vec<String>),
}

/// Loads the flags once, then keeps them fresh: the invalidation listener
/// (PostgreSQL), a rebuild on every flags notice, the periodic refresh and
/// the rollout job. Called by `autoheal serve` and by tests. Broken flag
/// files refuse the start (later, they only leave the previous files in
/// force), as broken rules do.
pub async fn start(state: &AppState) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
    if let Some(dir) = state.rules.status().dir {
        read_flag_files(&dir).map_err(StartError::Files)?;
    }
    state.flags.reload(state).await?;
    let mut tasks = Vec::new();
    if let Some(listener) = state.invalidation.listen(&state.store).await? {
        tasks.push(listener);
    }
    let mut notices = state.invalidation.subscribe();
    let on_notice = state.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let mut relevant = match notices.recv().await {
                Ok(notice) => notice.topic == FLAGS_TOPIC,
                // Missed notices: anything may have changed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            // A burst of changes costs one rebuild: it reads them all.
            loop {
                match notices.try_recv() {
                    Ok(notice) => relevant |= notice.topic == FLAGS_TOPIC,
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => relevant = true,
                    Err(_) => break,
                }
            }
            if relevant {
                if let Err(error) = on_notice.flags.reload(&on_notice).await {
                    tracing::warn!(event = "flags_reload_failed", error = %error, "flag rebuild failed; the previous snapshot stays");
                }
            }
        }
    }));
    let periodic = state.clone();
    let refresh = std::time::Duration::from_millis(state.config.flags_refresh_ms.max(1));
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(refresh);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(error) = periodic.flags.reload(&periodic).await {
                tracing::warn!(event = "flags_reload_failed", error = %error, "flag rebuild failed; the previous snapshot stays");
            }
        }
    }));
    let rollouts = state.clone();
    let tick = std::time::Duration::from_millis(state.config.rollout_tick_ms.max(1));
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        loop {
            ticker.tick().await;
            if let Err(error) = run_rollouts(&rollouts).await {
                tracing::warn!(event = "rollout_tick_failed", error = %error, "rollout job failed; retried next tick");
            }
        }
    }));
    Ok(tasks)
}

/// The actor of changes the server makes on its own.
pub fn system_actor() -> AuditContext {
    AuditContext {
        actor_kind: "system",
        actor_id: None,
        request_id: None,
    }
}

/// What one pass of the rollout job did to one plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutMove {
    pub plan_id: uuid::Uuid,
    pub flag_key: String,
    /// `advance`, `complete`, `halt`, `cancel`.
    pub action: &'static str,
    pub percentage: Option<u32>,
    pub error_rate: Option<f64>,
}

/// The cohort's error rate during the current step: failed over all
/// payment/error outcomes of the merchants the flag is on for, in percent.
/// With tenant stickiness the cohort is the merchants whose bucket is within
/// the percentage; otherwise telemetry cannot tell who is in it, so the
/// whole fleet counts. None below `min_outcomes` outcomes.
async fn cohort_error_rate(
    store: &Store,
    plan: &RolloutPlan,
    definition: &FlagDefinition,
) -> Result<Option<f64>, StoreError> {
    let percentage = definition.percentage.unwrap_or(0);
    let group_id = definition.group_id.as_deref().unwrap_or(&definition.key);
    let by_tenant = definition.stickiness == Stickiness::TenantId;
    let (mut errors, mut outcomes) = (0i64, 0i64);
    for merchant in store.merchant_outcomes(plan.step_started_at).await? {
        let in_cohort = !by_tenant
            || engine::rollout_bucket(group_id, &merchant.merchant_id.to_string()) <= percentage;
        if in_cohort {
            errors += merchant.errors;
            outcomes += merchant.outcomes;
        }
    }
    if outcomes == 0 || outcomes < plan.min_outcomes {
        return Ok(None);
    }
    Ok(Some(errors as f64 * 100.0 / outcomes as f64))
}

/// One pass over the active plans at the clock's `now`. Public so tests
/// drive it with a manual clock; `start` runs it every `rollout_tick_ms`.
pub async fn run_rollouts(state: &AppState) -> Result<Vec<RolloutMove>, StoreError> {
    let now = state.clock.now();
    let actor = system_actor();
    let mut moves = Vec::new();
    for plan in state.store.active_rollouts().await? {
        let loaded = state.flags.current();
        let base = loaded.base(&plan.flag_key);
        let step = usize::try_from(plan.current_step).unwrap_or(usize::MAX);
        let steps = &plan.steps.0;
        let mut outcome = RolloutMove {
            plan_id: plan.id,
            flag_key: plan.flag_key.clone(),
            action: "advance",
            percentage: None,
            error_rate: None,
        };
        let change = match base {
            Some((definition, _)) if !definition.enabled || definition.archived => {
                outcome.action = "cancel";
                RolloutChange {
                    action: "rollout.cancel",
                    next_step: plan.current_step,
                    status: "cancelled",
                    reason: Some("the flag was turned off (kill switch) or archived".into()),
                    flag: None,
                    alert: None,
                }
            }
            None => {
                outcome.action = "cancel";
                RolloutChange {
                    action: "rollout.cancel",
                    next_step: plan.current_step,
                    status: "cancelled",
                    reason: Some("the flag no longer exists".into()),
                    flag: None,
                    alert: None,
                }
            }
            Some((definition, version)) => {
                let error_rate = cohort_error_rate(&state.store, &plan, &definition).await?;
                outcome.error_rate = error_rate;
                if let Some(rate) = error_rate.filter(|rate| *rate > plan.error_rate_threshold) {
                    outcome.action = "halt";
                    outcome.percentage = definition.percentage;
                    let summary = format!(
                        "Rollout of flag {} halted at {} %: the cohort's error rate is {rate:.2} %, above the plan's {:.2} %. \
                         The flag stays at its current percentage; POST /api/platform/flags/{}/kill turns it off.",
                        plan.flag_key,
                        definition.percentage.unwrap_or(0),
                        plan.error_rate_threshold,
                        plan.flag_key
                    );
                    RolloutChange {
                        action: "rollout.halt",
                        next_step: plan.current_step,
                        status: "halted",
                        reason: Some(format!(
                            "error rate {rate:.2} % above threshold {:.2} %",
                            plan.error_rate_threshold
                        )),
                        flag: None,
                        alert: Some(NewAlert {
                            name: "flag_rollout_halted".into(),
                            severity: "critical",
                            summary,
                            labels: json!({
                                "flag_key": plan.flag_key,
                                "rollout_id": plan.id,
                                "percentage": definition.percentage,
                                "error_rate": rate,
                                "threshold": plan.error_rate_threshold,
                            }),
                        }),
                    }
                } else {
                    let hold = steps
                        .get(step)
                        .map_or(0, |current| i64::from(current.hold_minutes));
                    if now - plan.step_started_at < Duration::minutes(hold) {
                        continue;
                    }
                    match steps.get(step + 1) {
                        Some(next) => {
                            outcome.percentage = Some(next.percentage);
                            let after = FlagDefinition {
                                percentage: Some(next.percentage),
                                ..definition.clone()
                            };
                            RolloutChange {
                                action: "rollout.advance",
                                next_step: plan.current_step + 1,
                                status: "active",
                                reason: None,
                                flag: Some(FlagWrite {
                                    action: "flag.update",
                                    before: Some(definition),
                                    after,
                                    expected_version: version,
                                }),
                                alert: None,
                            }
                        }
                        None => {
                            outcome.action = "complete";
                            outcome.percentage = definition.percentage;
                            RolloutChange {
                                action: "rollout.complete",
                                next_step: plan.current_step,
                                status: "completed",
                                reason: None,
                                flag: None,
                                alert: None,
                            }
                        }
                    }
                }
            }
        };
        let changes_flag = change.flag.is_some();
        if state
            .store
            .move_rollout(&plan, &change, &actor, now)
            .await?
        {
            if changes_flag {
                state.flags.changed(state, &plan.flag_key).await?;
            }
            tracing::info!(event = "rollout_moved", flag_key = %plan.flag_key, action = outcome.action, "rollout plan moved");
            moves.push(outcome);
        }
    }
    Ok(moves)
}

/// Validates a plan's steps: 1–20 steps, percentages strictly increasing
/// within 0..=100, hold times up to 30 days. The error names the field.
pub fn check_steps(steps: &[crate::store::RolloutStep]) -> Result<(), engine::FieldError> {
    if steps.is_empty() || steps.len() > 20 {
        return Err(engine::FieldError::new("steps", "1 to 20 steps"));
    }
    let mut last: Option<u32> = None;
    for (i, step) in steps.iter().enumerate() {
        if step.percentage > 100 {
            return Err(engine::FieldError::new(
                format!("steps[{i}].percentage"),
                "must be within 0..=100",
            ));
        }
        if last.is_some_and(|last| step.percentage <= last) {
            return Err(engine::FieldError::new(
                format!("steps[{i}].percentage"),
                "must be above the previous step's",
            ));
        }
        if step.hold_minutes > 30 * 24 * 60 {
            return Err(engine::FieldError::new(
                format!("steps[{i}].hold_minutes"),
                "at most 43200 (30 days)",
            ));
        }
        last = Some(step.percentage);
    }
    Ok(())
}

/// The time a rollout plan's current step ends, for display.
pub fn step_ends_at(plan: &RolloutPlan) -> Option<DateTime<Utc>> {
    let step = usize::try_from(plan.current_step).ok()?;
    let hold = plan.steps.0.get(step)?.hold_minutes;
    Some(plan.step_started_at + Duration::minutes(i64::from(hold)))
}
