//! Feature flags in the server: the snapshot every evaluation reads, how it is rebuilt, the
//! Ops changes to flags, overrides and rollout plans, and the staged-rollout job.
//!
//! **Where flags come from.** Files (`rules/flags/*.json` under the rules folder) and the
//! store. A flag in the store wins over the file's copy of the same key: the first API
//! change of a file flag (PATCH, kill, override, rollout) copies it into the store, and from
//! then on the file's copy of that key is ignored until the store's is deleted.
//!
//! **Cache.** Evaluations read an `Arc<Loaded>` (a compiled [`FlagSnapshot`]) behind a lock
//! held only to clone the `Arc`; no request waits on the store. A rebuild (files + store +
//! the rule set's policies) swaps in a new snapshot: after every change made through this
//! replica (before the reply), on every invalidation notice (PostgreSQL NOTIFY from any
//! replica), and every `refresh` as a fallback for missed notices and edited files.
//!
//! **Rollouts.** [`Service::run_rollouts`] advances active plans whose step has been held
//! long enough, and halts (audited, with a `platform_alerts` row) a plan whose cohort's
//! error rate passed its threshold (see `rollouts.rs`).

mod http;
mod rollouts;
mod store;

pub(crate) use http::{flag_key, routes};
pub use rollouts::{check_steps, step_ends_at, RolloutMove};
pub use store::*;

use crate::db::{AuditContext, InvalidationBus, Store, StoreError};
use crate::error::ApiError;
use crate::rules::{read_flag_files, Rules};
use crate::tasks::Tasks;
use crate::Clock;
use chrono::{DateTime, Utc};
use engine::{Audience, FlagDefinition, FlagOverride, FlagSnapshot, OverrideScope};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Settings of the flags; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct FlagsConfig {
    /// How often flags are rebuilt from files and the store even without a change notice
    /// (the fallback for a missed NOTIFY, and edited files).
    pub refresh: Duration,
    /// How often the staged-rollout job looks at the active plans.
    pub rollout_tick: Duration,
    /// How long the flag policies of one request (an evaluation, a batch of up to 1,000
    /// keys, a heartbeat's flags) may run together; a flag whose policy runs past it
    /// answers its default with reason `ERROR`.
    pub policy_budget: Duration,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            rollout_tick: Duration::from_secs(10),
            policy_budget: Duration::from_millis(10),
        }
    }
}

/// Where the flag in force under a key comes from.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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

/// A flag with where it comes from.
#[derive(Serialize)]
pub struct FlagView {
    #[serde(flatten)]
    pub definition: FlagDefinition,
    #[serde(flatten)]
    pub origin: FlagOrigin,
}

/// The definition's fields and the origin's. (Derived, the definition's schema would keep
/// `additionalProperties: false`, which is right for a definition sent and wrong beside the
/// origin's fields.)
impl utoipa::PartialSchema for FlagView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, Schema};
        use utoipa::openapi::RefOr;
        let mut definition = FlagDefinition::schema();
        if let RefOr::T(Schema::Object(object)) = &mut definition {
            object.additional_properties = None;
        }
        AllOfBuilder::new()
            .item(definition)
            .item(FlagOrigin::schema())
            .into()
    }
}

impl utoipa::ToSchema for FlagView {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <FlagDefinition as utoipa::ToSchema>::schemas(schemas);
    }
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

    /// The flag in force under `key`, with where it comes from.
    pub fn view(&self, key: &str) -> Option<FlagView> {
        Some(FlagView {
            definition: self.snapshot.definition(key)?.clone(),
            origin: self.origins.get(key)?.clone(),
        })
    }
}

/// How long a request's flag policies may run on an async worker before they are moved to
/// a blocking thread (see [`Flags::within_policy_budget`]): about what tokio allows between
/// two awaits.
pub const INLINE_POLICY_SLICE: Duration = Duration::from_micros(100);

/// The flags in force, shared by every request of one replica: what evaluations read.
pub struct Flags {
    current: RwLock<Arc<Loaded>>,
    /// How long the flag policies one request runs may take together (see
    /// [`FlagsConfig::policy_budget`]).
    policy_budget: Duration,
}

impl Default for Flags {
    fn default() -> Self {
        Self::new(FlagsConfig::default().policy_budget)
    }
}

impl Flags {
    /// No flags yet, each request's policies bounded by `policy_budget`.
    pub fn new(policy_budget: Duration) -> Self {
        let (snapshot, _) = FlagSnapshot::build(vec![], vec![], |_| None);
        Self {
            current: RwLock::new(Arc::new(Loaded {
                snapshot,
                origins: HashMap::new(),
                files: vec![],
            })),
            policy_budget,
        }
    }

    /// Runs one request's evaluations, given the deadline its flag policies share. When
    /// they may run a policy (`runs_policy`), first inline for at most
    /// [`INLINE_POLICY_SLICE`] — what nearly every policy needs, at no cost of a thread
    /// switch — and, if that slice ran out, again from the start on a blocking thread until
    /// the request's budget ends: a policy that loops to its limit holds an async worker
    /// for no more than the slice, so other requests (`/healthz`) go on. (Policies are pure,
    /// so running one again changes nothing.) Evaluations without a policy run inline.
    pub async fn within_policy_budget<T: Send + 'static>(
        &self,
        runs_policy: bool,
        evaluate: impl Fn(Option<Instant>) -> T + Send + 'static,
    ) -> T {
        if !runs_policy {
            return evaluate(None);
        }
        let started = Instant::now();
        let budget_ends = started + self.policy_budget;
        let slice_ends = (started + INLINE_POLICY_SLICE).min(budget_ends);
        let inline = evaluate(Some(slice_ends));
        if Instant::now() < slice_ends {
            return inline;
        }
        tokio::task::spawn_blocking(move || evaluate(Some(budget_ends)))
            .await
            .expect("a flag evaluation panicked")
    }

    /// The flags in force: a lock held only to clone an `Arc`.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("flags lock").clone()
    }

    /// The value of every flag for plugins (`audience: plugins`, not archived) for
    /// `context`, by key: what a heartbeat reply carries. A flag that fails to evaluate is
    /// left out.
    pub async fn values_for(
        &self,
        context: engine::EvalContext,
        now: DateTime<Utc>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let loaded = self.current();
        let for_plugins = |definition: &&FlagDefinition| {
            !definition.archived && definition.audience == Audience::Plugins
        };
        let runs_policy = loaded
            .snapshot
            .definitions()
            .filter(for_plugins)
            .any(|definition| loaded.snapshot.runs_policy(&definition.key));
        self.within_policy_budget(runs_policy, move |deadline| {
            loaded
                .snapshot
                .definitions()
                .filter(for_plugins)
                .filter_map(|definition| {
                    let value = loaded
                        .snapshot
                        .evaluate_within(&definition.key, &context, now, deadline)
                        .value?;
                    Some((definition.key.clone(), value.to_json()))
                })
                .collect()
        })
        .await
    }
}

/// The context an install's flags are evaluated in (its heartbeat's flags, the healing
/// decision's `autoheal.auto_apply`): the merchant is the tenant; cms, site, plugin version
/// and environment are properties (for policies and custom stickiness), to which the caller
/// adds the properties Ops set on the install.
pub fn install_context(
    merchant_id: uuid::Uuid,
    cms: &str,
    site_url: &str,
    plugin_version: &str,
    environment: &str,
) -> engine::EvalContext {
    let properties = json!({
        "cms": cms,
        "site_url": site_url,
        "plugin_version": plugin_version,
        "environment": environment,
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

fn not_found() -> ApiError {
    ApiError::NotFound { what: "flag" }
}

/// A store conflict (a concurrent change, an active plan) is the client's to resolve: 409
/// with the store's message.
fn conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(message) => ApiError::Conflict { message },
        other => ApiError::Store(other),
    }
}

fn invalid(error: engine::FieldError) -> ApiError {
    ApiError::invalid(error.field, error.message)
}

/// The flags' operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    config: FlagsConfig,
    rules: Arc<Rules>,
    bus: InvalidationBus,
    flags: Arc<Flags>,
    /// Serializes rebuilds so an older rebuild cannot swap in over a newer one.
    rebuild: tokio::sync::Mutex<()>,
}

impl Service {
    pub fn new(
        store: Store,
        clock: Clock,
        config: FlagsConfig,
        rules: Arc<Rules>,
        bus: InvalidationBus,
        flags: Arc<Flags>,
    ) -> Self {
        Self {
            store,
            clock,
            config,
            rules,
            bus,
            flags,
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    /// The flags in force.
    pub fn current(&self) -> Arc<Loaded> {
        self.flags.current()
    }

    /// The flags in force as evaluations read them (with their policy budget).
    pub fn in_force(&self) -> &Flags {
        &self.flags
    }

    /// Rebuilds from the files, the store and the rule set in force. A flag
    /// file with errors leaves the previous file definitions in force.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.rebuild.lock().await;
        let previous = self.flags.current();
        let files = match self.rules.status().dir {
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
        let (stored, overrides) = self.store.flag_state().await?;
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
        let rules = self.rules.current();
        let (snapshot, errors) =
            FlagSnapshot::build(definitions.into_values(), overrides, |name| {
                rules.flag_policy(name)
            });
        for error in &errors {
            tracing::warn!(event = "flag_refused", error = %error, "a stored flag or override does not compile; left out");
        }
        *self.flags.current.write().expect("flags lock") = Arc::new(Loaded {
            snapshot,
            origins,
            files,
        });
        Ok(())
    }

    /// After a change made through this replica: rebuild before replying
    /// (so the caller reads its own write) and tell local subscribers.
    /// Other replicas hear of it from the store's NOTIFY.
    async fn changed(&self, key: &str) -> Result<(), StoreError> {
        self.reload().await?;
        self.bus.publish_local(FLAGS_TOPIC, key);
        Ok(())
    }

    /// Loads the flags once, then keeps them fresh in `watchers`: the invalidation listener
    /// (PostgreSQL), a rebuild on every flags notice and the periodic refresh; the rollout
    /// job goes to `jobs`. Broken flag files refuse the start (later, they only leave the
    /// previous files in force), as broken rules do.
    pub async fn start(
        self: &Arc<Self>,
        jobs: &mut Tasks,
        watchers: &mut Tasks,
    ) -> Result<(), StartError> {
        if let Some(dir) = self.rules.status().dir {
            read_flag_files(&dir).map_err(StartError::Files)?;
        }
        self.reload().await?;
        self.bus.listen(&self.store, watchers).await?;
        let mut notices = self.bus.subscribe();
        let on_notice = self.clone();
        watchers.spawn("flags_notices", move |mut stopping| async move {
            loop {
                let mut relevant = tokio::select! {
                    () = stopping.requested() => return,
                    notice = notices.recv() => match notice {
                        Ok(notice) => notice.topic == FLAGS_TOPIC,
                        // Missed notices: anything may have changed.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                };
                // A burst of changes costs one rebuild: it reads them all.
                relevant |= InvalidationBus::drain(&mut notices, FLAGS_TOPIC);
                if relevant {
                    if let Err(error) = on_notice.reload().await {
                        tracing::warn!(event = "flags_reload_failed", error = %error, "flag rebuild failed; the previous snapshot stays");
                    }
                }
            }
        });
        let periodic = self.clone();
        watchers.spawn_every("flags_refresh", self.config.refresh, move || {
            let flags = periodic.clone();
            async move { flags.reload().await }
        });
        let rollouts = self.clone();
        jobs.spawn_every("flag_rollouts", self.config.rollout_tick, move || {
            let flags = rollouts.clone();
            async move { flags.run_rollouts().await.map(drop) }
        });
        Ok(())
    }

    /// Every flag in force, with where it comes from.
    pub fn list(&self) -> Vec<FlagView> {
        let loaded = self.flags.current();
        loaded
            .snapshot
            .definitions()
            .filter_map(|definition| loaded.view(&definition.key))
            .collect()
    }

    pub fn show(&self, key: &str) -> Result<FlagView, ApiError> {
        self.flags.current().view(key).ok_or_else(not_found)
    }

    /// Creates a flag in the store; audited. A conflict when the key exists (in a file or
    /// the store).
    pub async fn create(
        &self,
        definition: FlagDefinition,
        audit: &AuditContext,
    ) -> Result<FlagView, ApiError> {
        definition.validate().map_err(invalid)?;
        let loaded = self.flags.current();
        if let Some(file) = loaded.file_of(&definition.key) {
            return Err(ApiError::Conflict {
                message: format!(
                    "flag {} is defined in {file}; PATCH it to change it",
                    definition.key
                ),
            });
        }
        if loaded.snapshot.definition(&definition.key).is_some() {
            return Err(ApiError::Conflict {
                message: format!("flag {} already exists", definition.key),
            });
        }
        let key = definition.key.clone();
        let write = FlagWrite {
            action: "flag.create",
            before: None,
            after: definition,
            expected_version: None,
        };
        self.store
            .write_flag(&write, audit, self.clock.now())
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => ApiError::Conflict {
                    message: format!("flag {key} already exists"),
                },
                other => ApiError::Store(other),
            })?;
        self.changed(&key).await?;
        self.show(&key)
    }

    /// Applies `change` to the flag in force and writes it, audited as `action`: the
    /// store's copy, or a new one copied from the file.
    pub async fn change(
        &self,
        key: &str,
        action: &'static str,
        audit: &AuditContext,
        change: impl FnOnce(FlagDefinition) -> Result<FlagDefinition, ApiError>,
    ) -> Result<FlagView, ApiError> {
        let (before, version) = self.flags.current().base(key).ok_or_else(not_found)?;
        let after = change(before.clone())?;
        after.validate().map_err(invalid)?;
        let write = FlagWrite {
            action,
            before: Some(before),
            after,
            expected_version: version,
        };
        self.store
            .write_flag(&write, audit, self.clock.now())
            .await
            .map_err(conflict)?;
        self.changed(key).await?;
        self.show(key)
    }

    /// Removes the store's copy (and its overrides); audited. A flag defined only in a file
    /// is removed from the file, or archived. Returns the deleted definition and the file
    /// whose copy is in force again, if any.
    pub async fn remove(
        &self,
        key: &str,
        audit: &AuditContext,
    ) -> Result<(FlagDefinition, Option<String>), ApiError> {
        let deleted = self.store.delete_flag(key, audit, self.clock.now()).await?;
        let loaded = self.flags.current();
        match deleted {
            Some(definition) => {
                self.changed(key).await?;
                Ok((definition, loaded.file_of(key).map(str::to_owned)))
            }
            None => match loaded.file_of(key) {
                Some(file) => Err(ApiError::Conflict {
                    message: format!(
                        "flag {key} is defined in {file}; remove it there, or archive it with PATCH"
                    ),
                }),
                None => Err(not_found()),
            },
        }
    }

    pub async fn overrides(&self, key: &str) -> Result<Vec<StoredOverride>, ApiError> {
        if self.flags.current().snapshot.definition(key).is_none() {
            return Err(not_found());
        }
        Ok(self.store.flag_overrides(key).await?)
    }

    /// Sets the override of a tenant or user (its value checked against the flag's type);
    /// audited.
    pub async fn set_override(
        &self,
        entry: FlagOverride,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<StoredOverride, ApiError> {
        let definition = self
            .flags
            .current()
            .snapshot
            .definition(&entry.flag_key)
            .cloned()
            .ok_or_else(not_found)?;
        definition
            .check_override_value("value", &entry.value)
            .map_err(invalid)?;
        let stored = self
            .store
            .set_flag_override(&entry, reason, audit, self.clock.now())
            .await?;
        self.changed(&entry.flag_key).await?;
        Ok(stored)
    }

    pub async fn delete_override(
        &self,
        key: &str,
        scope: OverrideScope,
        target: &str,
        audit: &AuditContext,
    ) -> Result<StoredOverride, ApiError> {
        let deleted = self
            .store
            .delete_flag_override(key, scope, target, audit, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound { what: "override" })?;
        self.changed(key).await?;
        Ok(deleted)
    }

    /// The audit trail of one flag, newest first.
    pub async fn audit(&self, key: &str, limit: i64) -> Result<Vec<FlagAuditEntry>, ApiError> {
        Ok(self.store.flag_audit(key, limit).await?)
    }

    pub async fn rollouts(&self, key: &str) -> Result<Vec<RolloutPlan>, ApiError> {
        Ok(self.store.rollouts(key).await?)
    }

    /// Starts a plan: the flag goes to the first step's percentage now; the rollout job
    /// moves it on after each hold. Audited.
    pub async fn create_rollout(
        &self,
        plan: NewRollout,
        audit: &AuditContext,
    ) -> Result<RolloutPlan, ApiError> {
        let key = plan.flag_key.clone();
        let (before, version) = self.flags.current().base(&key).ok_or_else(not_found)?;
        if before.percentage.is_none() {
            return Err(ApiError::invalid(
                "steps",
                format!("flag {key} has no percentage to roll out"),
            ));
        }
        if !before.enabled || before.archived {
            return Err(ApiError::Conflict {
                message: format!("flag {key} is off or archived; turn it on before rolling it out"),
            });
        }
        let after = FlagDefinition {
            percentage: Some(plan.steps[0].percentage),
            ..before.clone()
        };
        let write = FlagWrite {
            action: "flag.update",
            before: Some(before),
            after,
            expected_version: version,
        };
        let created = self
            .store
            .create_rollout(&plan, &write, audit, self.clock.now())
            .await
            .map_err(conflict)?;
        self.changed(&key).await?;
        Ok(created)
    }

    /// Cancels the flag's active plan `id`; audited.
    pub async fn cancel_rollout(
        &self,
        key: &str,
        id: uuid::Uuid,
        reason: String,
        audit: &AuditContext,
    ) -> Result<RolloutCancelled, ApiError> {
        let plan = self
            .store
            .rollouts(key)
            .await?
            .into_iter()
            .find(|plan| plan.id == id && plan.status == "active")
            .ok_or(ApiError::NotFound {
                what: "active rollout plan",
            })?;
        let change = RolloutChange::cancel(&plan, reason);
        if !self
            .store
            .move_rollout(&plan, &change, audit, self.clock.now())
            .await?
        {
            return Err(ApiError::Conflict {
                message: "the plan moved meanwhile; read it again".to_owned(),
            });
        }
        Ok(RolloutCancelled {
            id,
            status: "cancelled",
        })
    }
}

/// A plan cancelled by Ops.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutCancelled {
    pub id: uuid::Uuid,
    /// `cancelled`.
    pub status: &'static str,
}
