//! The HTTP boundary, the store and the background work of autoheal.
//!
//! The crate is organized by feature: [`fleet`], [`healing`], [`interop`], [`flags`],
//! [`delivery`], [`ops`] and [`rules`] each hold their routes (`http.rs`), their service
//! (`mod.rs`) and their SQL (`store.rs`), beside the shared plumbing: `http.rs` (the router
//! and middleware), [`error`], [`extract`], [`auth`], [`db`] (the store, transactions, the
//! group-commit writer, the audit log, the invalidation bus) and [`tasks`].
//!
//! [`app`] builds the one router that `autoheal serve` and the tests both use:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use api::db::{Store, StoreOptions};
//! use api::{app, AppState, Clock};
//!
//! let store = Store::connect("sqlite://autoheal.db", &StoreOptions::default()).await?;
//! store.migrate().await?;
//! let router = app(AppState::builder(store, Clock::system()).build());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub(crate) mod clock;
pub mod console;
pub mod db;
pub mod delivery;
pub mod error;
pub mod errors;
pub mod extract;
pub mod flags;
pub mod fleet;
pub mod healing;
pub mod histogram;
mod http;
pub mod interop;
pub mod logs;
mod openapi;
pub mod ops;
pub mod quotas;
pub mod rules;
pub mod schemas;
pub mod snapshot;
pub mod tasks;
mod values;
pub mod version;
pub mod wire;

pub use clock::Clock;
pub use http::app;

use auth::AuthCache;
use db::{InvalidationBus, Store};
use delivery::{NotificationConfig, Outbox, OutboxConfig, PendingNotices};
use flags::{Flags, FlagsConfig};
use healing::patches::PatchRegistry;
use healing::signing::Signing;
use healing::HealingConfig;
use interop::InteropConfig;
use ops::{AlertChannels, JobsConfig};
use rules::Rules;
use std::sync::Arc;
use std::time::Duration;

/// Every setting of the server, with its default. `autoheal serve` has a flag and an
/// environment variable for each (README, "Configuration"); outbound delivery's settings
/// travel with the [`Outbox`] they build.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a verified credential is trusted without asking the store.
    pub auth_cache_ttl: Duration,
    /// Credentials cached before the cache starts over.
    pub auth_cache_entries: usize,
    /// Longest an Ops script (a rule's `params`, a mapping) may run per request.
    pub script_deadline: Duration,
    /// The limits every Ops script runs under (operations, call depth, sizes, variables,
    /// functions), applied when the rules are loaded.
    pub script_limits: engine::Limits,
    pub flags: FlagsConfig,
    pub healing: HealingConfig,
    pub interop: InteropConfig,
    pub notifications: NotificationConfig,
    pub jobs: JobsConfig,
    pub alerts: AlertChannels,
    pub quotas: quotas::QuotaConfig,
    pub console: console::ConsoleConfig,
    /// The platform log's buffer, batches, debug storage and live stream.
    pub logs: logs::LogsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            auth_cache_ttl: Duration::from_secs(10),
            auth_cache_entries: 100_000,
            script_deadline: Duration::from_millis(50),
            script_limits: engine::Limits::default(),
            flags: FlagsConfig::default(),
            healing: HealingConfig::default(),
            interop: InteropConfig::default(),
            notifications: NotificationConfig::default(),
            jobs: JobsConfig::default(),
            alerts: AlertChannels::default(),
            quotas: quotas::QuotaConfig::default(),
            console: console::ConsoleConfig::default(),
            logs: logs::LogsConfig::default(),
        }
    }
}

/// What a request handler can reach: the feature services (a handler extracts the one it
/// calls, `State<Arc<healing::Service>>`), and the parts they were built from. Cheap to
/// clone.
#[derive(Clone, axum::extract::FromRef)]
pub struct AppState {
    pub store: Store,
    pub clock: Clock,
    pub config: Arc<ServerConfig>,
    /// Verified credentials, and the uses not yet written.
    pub auth: Arc<AuthCache>,
    /// The rule set in force (and reloadable).
    pub rules: Arc<Rules>,
    /// The verified patch bundles and the host that dry-runs them.
    pub patches: Arc<PatchRegistry>,
    /// The command key in force and its certificate (swapped on SIGHUP).
    pub signing: Arc<Signing>,
    /// Outbound delivery: its settings, HTTP client, mailer and breakers.
    pub outbox: Arc<Outbox>,
    pub fleet: Arc<fleet::Service>,
    pub healing: Arc<healing::Service>,
    pub interop: Arc<interop::Service>,
    pub flags: Arc<flags::Service>,
    pub delivery: Arc<delivery::Service>,
    pub ops: Arc<ops::Service>,
    pub rules_admin: Arc<rules::Service>,
    /// Each merchant's event rate (telemetry and interop events share it).
    pub event_rate: Arc<quotas::EventRate>,
    /// What features record platform log entries with (its writer runs beside the requests).
    pub platform_log: logs::PlatformLog,
    /// The platform log's query and live stream.
    pub logs: Arc<logs::Service>,
    /// The error groups: Ops' list, detail and status changes.
    pub errors: Arc<errors::Service>,
}

impl AppState {
    /// A server on `store` with `clock`; the builder's defaults: [`ServerConfig::default`],
    /// no rules, no patch bundles, an outbox with [`OutboxConfig::default`].
    pub fn builder(store: Store, clock: Clock) -> AppBuilder {
        AppBuilder {
            store,
            clock,
            config: ServerConfig::default(),
            rules: Arc::new(Rules::empty()),
            patches: Arc::new(PatchRegistry::empty()),
            signer: None,
            outbox: Arc::new(Outbox::new(OutboxConfig::default())),
        }
    }

    /// A builder holding this state's parts (store, clock, settings, rules, patches,
    /// outbox): what a second replica in the same process, or this one with a part
    /// replaced, is built from. The built state has its own caches and invalidation bus.
    pub fn to_builder(&self) -> AppBuilder {
        AppBuilder {
            store: self.store.clone(),
            clock: self.clock.clone(),
            config: (*self.config).clone(),
            rules: self.rules.clone(),
            patches: self.patches.clone(),
            signer: Some(self.signing.current()),
            outbox: self.outbox.clone(),
        }
    }
}

/// The parts an [`AppState`] is built from.
pub struct AppBuilder {
    store: Store,
    clock: Clock,
    config: ServerConfig,
    rules: Arc<Rules>,
    patches: Arc<PatchRegistry>,
    /// None: the repository's development command key.
    signer: Option<Arc<host::command::CommandSigner>>,
    outbox: Arc<Outbox>,
}

impl AppBuilder {
    pub fn store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves with `rules` in force (and reloadable).
    pub fn rules(mut self, rules: impl Into<Arc<Rules>>) -> Self {
        self.rules = rules.into();
        self
    }

    /// Serves with the patch bundles of `patches`.
    pub fn patches(mut self, patches: impl Into<Arc<PatchRegistry>>) -> Self {
        self.patches = patches.into();
        self
    }

    /// Signs commands with `signer` (the default is the development command key).
    pub fn command_signer(mut self, signer: impl Into<Arc<host::command::CommandSigner>>) -> Self {
        self.signer = Some(signer.into());
        self
    }

    pub fn outbox(mut self, outbox: impl Into<Arc<Outbox>>) -> Self {
        self.outbox = outbox.into();
        self
    }

    /// Builds every feature service from the handles it uses.
    pub fn build(self) -> AppState {
        let Self {
            store,
            clock,
            config,
            rules,
            patches,
            signer,
            outbox,
        } = self;
        let signing = Arc::new(Signing::new(
            signer.unwrap_or_else(|| Arc::new(healing::signing::development_signer(clock.now()))),
            config.healing.command_ttl,
        ));
        let bus = InvalidationBus::default();
        let platform_log = logs::PlatformLog::start(store.clone(), clock.clone(), &config.logs);
        let snapshot = Arc::new(Flags::new(config.flags.policy_budget));
        let notices = Arc::new(PendingNotices::new(
            config.notifications.pending_notices_max_age,
        ));
        let fleet = Arc::new(fleet::Service::new(
            store.clone(),
            clock.clone(),
            snapshot.clone(),
            notices.clone(),
            config.jobs.metrics_refresh,
            config.quotas.max_installs_per_merchant,
            platform_log.clone(),
        ));
        let healing = Arc::new(healing::Service::new(
            store.clone(),
            clock.clone(),
            &config,
            rules.clone(),
            patches.clone(),
            signing.clone(),
            snapshot.clone(),
            &bus,
            platform_log.clone(),
        ));
        let interop = Arc::new(interop::Service::new(
            store.clone(),
            clock.clone(),
            &config.interop,
            rules.clone(),
            outbox.clone(),
            config.script_deadline,
        ));
        let flags = Arc::new(flags::Service::new(
            store.clone(),
            clock.clone(),
            config.flags.clone(),
            rules.clone(),
            bus.clone(),
            snapshot,
        ));
        let delivery = Arc::new(delivery::Service::new(
            store.clone(),
            clock.clone(),
            outbox.clone(),
            config.notifications.clone(),
            notices,
            platform_log.clone(),
        ));
        let ops = Arc::new(ops::Service::new(
            store.clone(),
            clock.clone(),
            config.jobs.clone(),
            config.alerts.clone(),
            fleet.clone(),
            healing.clone(),
            delivery.clone(),
            platform_log.clone(),
        ));
        let log_reads = Arc::new(logs::Service::new(store.clone(), platform_log.clone()));
        let errors = Arc::new(errors::Service::new(
            store.clone(),
            clock.clone(),
            rules.clone(),
        ));
        AppState {
            auth: Arc::new(AuthCache::new(
                store.clone(),
                clock.clone(),
                &bus,
                config.auth_cache_ttl,
                config.auth_cache_entries,
            )),
            rules_admin: Arc::new(rules::Service::new(
                rules.clone(),
                store.clone(),
                clock.clone(),
                &config,
            )),
            event_rate: Arc::new(quotas::EventRate::new(
                config.quotas.merchant_events_per_second,
            )),
            store,
            clock,
            config: Arc::new(config),
            rules,
            patches,
            signing,
            outbox,
            fleet,
            healing,
            interop,
            flags,
            delivery,
            ops,
            logs: log_reads,
            errors,
            platform_log,
        }
    }
}
