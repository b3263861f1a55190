//! The HTTP boundary, the store and the background work of autoheal.
//!
//! [`app`] builds the one router that `autoheal serve` and the tests both use:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use api::{app, AppState, ServerConfig, Clock};
//! use api::store::{Store, StoreOptions};
//!
//! let store = Store::connect("sqlite://autoheal.db", &StoreOptions::default()).await?;
//! store.migrate().await?;
//! let router = app(AppState::new(store, Clock::system(), ServerConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub(crate) mod clock;
pub mod error;
pub mod extract;
pub mod flags;
pub mod healing;
pub mod health;
pub mod histogram;
mod http;
pub mod installs;
pub mod interop;
pub mod invalidation;
pub mod jobs;
pub mod notifications;
pub mod outbox;
pub mod patches;
pub mod rate_limit;
pub mod redact;
pub mod rules;
pub mod store;
pub mod version;

pub use clock::Clock;
pub use http::app;

use std::sync::Arc;
use std::time::Duration;

/// Settings of the HTTP server. Every field has a CLI flag and an
/// environment variable in `autoheal serve`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a verified credential is trusted without asking the store.
    pub auth_cache_ttl_ms: u64,
    /// How often flags are rebuilt from files and the store even without a
    /// change notice (the fallback for a missed NOTIFY, and edited files).
    pub flags_refresh_ms: u64,
    /// How often the staged-rollout job looks at the active plans.
    pub rollout_tick_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            auth_cache_ttl_ms: 10_000,
            flags_refresh_ms: 5_000,
            rollout_tick_ms: 10_000,
        }
    }
}

/// Everything a request handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    pub clock: Clock,
    pub config: Arc<ServerConfig>,
    pub rules: Arc<rules::Rules>,
    /// The verified patch bundles and the host that dry-runs them.
    pub patches: Arc<patches::PatchRegistry>,
    pub healing: Arc<healing::HealingConfig>,
    pub(crate) suspended_rules: Arc<healing::SuspendedRules>,
    pub notifications: Arc<notifications::NotificationConfig>,
    pub jobs: Arc<jobs::JobsConfig>,
    pub(crate) pending_notices: Arc<notifications::PendingNotices>,
    /// Time to answer a heartbeat (for `plugin_heartbeat_latency_seconds`).
    pub(crate) heartbeat_latency: Arc<histogram::Histogram>,
    /// Time from a detection's arrival to its durable log and command (for
    /// `plugin_autoheal_detection_seconds`).
    pub(crate) detection_latency: Arc<histogram::Histogram>,
    /// Outbound delivery: its settings, HTTP client and breakers.
    pub outbox: Arc<outbox::Outbox>,
    /// Installations' owners and platforms, cached.
    pub(crate) installs: Arc<installs::InstallDirectory>,
    /// Interop mappings held in the store, compiled.
    pub(crate) interop_mappings: Arc<interop::StoreMappings>,
    /// The feature flags in force (see [`flags`]); start with [`flags::start`].
    pub flags: Arc<flags::Flags>,
    pub invalidation: invalidation::InvalidationBus,
    pub(crate) auth: Arc<auth::AuthCache>,
    pub(crate) rate_limiter: Arc<rate_limit::RateLimiter>,
}

impl AppState {
    pub fn new(store: store::Store, clock: Clock, config: ServerConfig) -> Self {
        let invalidation = invalidation::InvalidationBus::default();
        Self {
            store,
            clock,
            auth: Arc::new(auth::AuthCache::new(Duration::from_millis(
                config.auth_cache_ttl_ms,
            ))),
            rate_limiter: Arc::default(),
            rules: Arc::new(rules::Rules::empty()),
            patches: Arc::new(patches::PatchRegistry::empty()),
            healing: Arc::default(),
            interop_mappings: Arc::default(),
            installs: Arc::default(),
            notifications: Arc::default(),
            jobs: Arc::default(),
            pending_notices: Arc::default(),
            heartbeat_latency: Arc::default(),
            detection_latency: Arc::default(),
            outbox: Arc::new(outbox::Outbox::new(outbox::OutboxConfig::default())),
            flags: Arc::default(),
            suspended_rules: Arc::new(healing::SuspendedRules::new(&invalidation)),
            invalidation,
            config: Arc::new(config),
        }
    }

    /// Serves with the patch bundles of `registry`.
    pub fn with_patches(mut self, registry: patches::PatchRegistry) -> Self {
        self.patches = Arc::new(registry);
        self
    }

    pub fn with_outbox(mut self, outbox: outbox::Outbox) -> Self {
        self.outbox = Arc::new(outbox);
        self
    }

    pub fn with_notifications(mut self, config: notifications::NotificationConfig) -> Self {
        self.notifications = Arc::new(config);
        self
    }

    pub fn with_jobs(mut self, config: jobs::JobsConfig) -> Self {
        self.jobs = Arc::new(config);
        self
    }

    pub fn with_healing(mut self, config: healing::HealingConfig) -> Self {
        self.healing = Arc::new(config);
        self
    }

    /// Serves with `rules` in force (and reloadable).
    pub fn with_rules(mut self, rules: rules::Rules) -> Self {
        self.rules = Arc::new(rules);
        self
    }
}
