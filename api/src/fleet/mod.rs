//! The fleet: what plugins report (hourly heartbeats, real-time telemetry events) and what
//! Ops do with it (the install list and detail, toggles, the version registry, the
//! overview). The `rate_limit` toggle is enforced here, and secrets are redacted out of
//! telemetry before it is stored.
//!
//! [`Service`] is the feature's one entry: the HTTP handlers in `http.rs` parse and
//! authorize, then call it; its SQL is in `store.rs` (writes, one install) and
//! `read_model.rs` (the list and the overview, which stay cheap on a large fleet).

mod http;
pub mod installs;
pub mod properties;
pub mod rate_limit;
pub mod read_model;
pub mod redact;
pub mod state;
mod store;

pub(crate) use http::{routes, search_text, toggle_value, Environment};
pub use read_model::{
    Cursor, FleetDay, FleetRates, InstallDay, InstallStatus, InstallationFilter, InstallationPage,
    StatusCounts, Total, COUNT_CAP, ERROR_RATE_WINDOW_HOURS,
};
pub use store::*;

use crate::db::{AuditContext, Store, StoreError};
use crate::delivery::{Notification, PendingNotices};
use crate::error::ApiError;
use crate::flags::Flags;
use crate::histogram::Histogram;
use crate::logs::{LogLevel, LogService, NewLogEntry, PlatformLog};
use crate::snapshot::Snapshot;
use crate::Clock;
use rate_limit::{InstallKey, RateLimiter};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

/// What a heartbeat is answered with.
pub struct HeartbeatAnswer {
    pub installation_id: Uuid,
    /// Every toggle key, with its default where none is set.
    pub toggles: Map<String, Value>,
    /// In-app upgrade notices not acknowledged yet (each stays until it is).
    pub notices: Vec<Notification>,
    /// The value of every flag for plugins (`audience: plugins`) for this install.
    pub flags: Map<String, Value>,
}

/// The fleet's operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    rate_limiter: RateLimiter,
    flags: Arc<Flags>,
    notices: Arc<PendingNotices>,
    /// Time to answer a heartbeat (for `plugin_heartbeat_latency_seconds`).
    heartbeat_latency: Histogram,
    /// The fleet's error-rate figures, refreshed off the request path.
    rates: Snapshot<FleetRates>,
    /// Installations one merchant may have (see [`crate::quotas`]).
    max_installs_per_merchant: i64,
    /// Each merchant's installation count as last read, with the new sites let through
    /// since: a merchant adding sites costs one count per second, not one per site.
    install_counts: std::sync::Mutex<std::collections::HashMap<Uuid, InstallCount>>,
    /// Where each heartbeat is logged at `debug` (when debug entries are stored).
    platform_log: PlatformLog,
}

/// A merchant's installation count as this replica knows it.
struct InstallCount {
    read: i64,
    read_at: std::time::Instant,
    /// New sites let through since the read.
    added_since: i64,
}

/// What the count as last read says of a new site.
enum NewSite {
    Admitted,
    /// At the quota: `installs` as last read, plus (when `estimated`) the first heartbeats
    /// answered since, each counted as a new site.
    AtQuota {
        installs: i64,
        estimated: bool,
    },
    CountTooOld,
}

/// How long a merchant's installation count is trusted (with the sites this replica added
/// since) before it is read again.
const INSTALL_COUNT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

impl Service {
    pub fn new(
        store: Store,
        clock: Clock,
        flags: Arc<Flags>,
        notices: Arc<PendingNotices>,
        rates_refresh: std::time::Duration,
        max_installs_per_merchant: i64,
        platform_log: PlatformLog,
    ) -> Self {
        Self {
            store,
            clock,
            rate_limiter: RateLimiter::default(),
            flags,
            notices,
            heartbeat_latency: Histogram::default(),
            rates: Snapshot::new(rates_refresh),
            max_installs_per_merchant,
            install_counts: std::sync::Mutex::default(),
            platform_log,
        }
    }

    pub fn heartbeat_latency(&self) -> &Histogram {
        &self.heartbeat_latency
    }

    /// Records a heartbeat (once its batch is durable) and answers it with the install's
    /// toggles, waiting notices and flag values. 429 when the install's `rate_limit` is
    /// spent.
    pub async fn heartbeat(&self, record: HeartbeatRecord) -> Result<HeartbeatAnswer, ApiError> {
        let started = std::time::Instant::now();
        let answer = self.record_heartbeat(record).await;
        self.heartbeat_latency.observe(started.elapsed());
        answer
    }

    async fn record_heartbeat(&self, record: HeartbeatRecord) -> Result<HeartbeatAnswer, ApiError> {
        let key = InstallKey::of(record.merchant_id, &record.cms, &record.site_url);
        self.rate_limited(&key)?;
        if !self.rate_limiter.knows(&key) {
            self.within_install_quota(&key).await?;
        }
        let mut flag_context = crate::flags::install_context(
            record.merchant_id,
            &record.cms,
            &record.site_url,
            &record.plugin_version,
            &record.environment,
        );
        let merchant_id = record.merchant_id;
        let outcome = self.store.write(record, self.clock.now()).await?;
        if self.platform_log.stores_debug() {
            self.platform_log.record(
                NewLogEntry::new(
                    LogLevel::Debug,
                    LogService::Fleet,
                    "fleet.heartbeat",
                    format!("heartbeat of install {}", outcome.installation_id),
                )
                .merchant(merchant_id)
                .data(json!({"installation_id": outcome.installation_id})),
            );
        }
        flag_context.properties.extend(outcome.properties);
        let mut toggles: Map<String, Value> = ToggleKey::ALL
            .iter()
            .map(|key| (key.as_str().to_owned(), key.default_value()))
            .collect();
        toggles.extend(outcome.toggles);
        let per_minute = toggles
            .get(ToggleKey::RateLimit.as_str())
            .and_then(Value::as_u64)
            .and_then(|limit| u32::try_from(limit).ok());
        self.rate_limiter
            .learn(key, outcome.installation_id, per_minute);
        let notices = if self
            .notices
            .may_have(&self.store, outcome.installation_id)
            .await?
        {
            self.store.pending_in_app(outcome.installation_id).await?
        } else {
            Vec::new()
        };
        Ok(HeartbeatAnswer {
            installation_id: outcome.installation_id,
            toggles,
            notices,
            flags: self.flags.values_for(flag_context, self.clock.now()).await,
        })
    }

    /// Records a telemetry event (redacted by the caller), once its batch is durable.
    pub async fn event(&self, record: EventRecord) -> Result<EventOutcome, ApiError> {
        self.rate_limited(&InstallKey::of(
            record.merchant_id,
            &record.cms,
            &record.site_url,
        ))?;
        Ok(self.store.write(record, self.clock.now()).await?)
    }

    /// A heartbeat from an install this replica has not seen: refused when it would be a
    /// new install beyond the merchant's quota. The merchant's count is read at most once
    /// a second, and every first heartbeat this replica answers since is counted on top, as
    /// if it were a new site. Only when that estimate reaches the quota is the store asked
    /// whether the site already exists (it may report), and, if the estimate counted sites
    /// since the read, for the exact count: a merchant far from its quota, or onboarding
    /// thousands of sites, costs no query per site; one at its quota costs one lookup per
    /// refused site.
    async fn within_install_quota(&self, key: &InstallKey) -> Result<(), ApiError> {
        let merchant_id = key.merchant_id;
        let verdict = match self.admit_new_site(merchant_id) {
            NewSite::CountTooOld => self.recount(merchant_id).await?,
            verdict => verdict,
        };
        let NewSite::AtQuota {
            installs,
            estimated,
        } = verdict
        else {
            return Ok(());
        };
        if self.store.installation_exists(key).await? {
            return Ok(());
        }
        let installs = match estimated {
            false => installs,
            true => match self.recount(merchant_id).await? {
                NewSite::AtQuota { installs, .. } => installs,
                _ => return Ok(()),
            },
        };
        Err(ApiError::QuotaExceeded {
            message: format!(
                "this merchant has {installs} installations, its quota (--max-installs-per-merchant {}); a new site is refused",
                self.max_installs_per_merchant
            ),
            retry_after_secs: crate::quotas::INSTALL_QUOTA_RETRY_AFTER_SECS,
        })
    }

    /// Reads the merchant's installation count afresh, then asks [`Self::admit_new_site`].
    async fn recount(&self, merchant_id: Uuid) -> Result<NewSite, ApiError> {
        let read = self.store.merchant_installations(merchant_id).await?;
        self.install_counts.lock().expect("install counts").insert(
            merchant_id,
            InstallCount {
                read,
                read_at: std::time::Instant::now(),
                added_since: 0,
            },
        );
        Ok(self.admit_new_site(merchant_id))
    }

    /// Counts a site as new against the merchant's count as last read, if that count is at
    /// most a second old and the quota has room.
    fn admit_new_site(&self, merchant_id: Uuid) -> NewSite {
        let mut counts = self.install_counts.lock().expect("install counts");
        let Some(count) = counts
            .get_mut(&merchant_id)
            .filter(|count| count.read_at.elapsed() < INSTALL_COUNT_MAX_AGE)
        else {
            return NewSite::CountTooOld;
        };
        let installs = count.read + count.added_since;
        if installs >= self.max_installs_per_merchant {
            return NewSite::AtQuota {
                installs,
                estimated: count.added_since > 0,
            };
        }
        count.added_since += 1;
        NewSite::Admitted
    }

    fn rate_limited(&self, key: &InstallKey) -> Result<(), ApiError> {
        self.rate_limiter
            .check(key)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
    }

    /// One page of installations, the number matching the filter and the next page's
    /// cursor.
    pub async fn list(&self, filter: &InstallationFilter) -> Result<InstallationPage, ApiError> {
        Ok(self
            .store
            .list_installations(filter, self.clock.now())
            .await?)
    }

    pub async fn detail(&self, id: Uuid) -> Result<InstallationDetail, ApiError> {
        self.store
            .installation(id, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound {
                what: "installation",
            })
    }

    /// Sets a toggle (audited); a `rate_limit` is enforced here at once, on other replicas
    /// from the install's next heartbeat.
    pub async fn set_toggle(
        &self,
        change: &ToggleChange,
        rate_limit: Option<u32>,
        audit: &AuditContext,
    ) -> Result<Toggle, ApiError> {
        let now = self.clock.now();
        if change
            .expires_at
            .is_some_and(|expires_at| expires_at <= now)
        {
            return Err(ApiError::invalid("expires_at", "must be in the future"));
        }
        let toggle =
            self.store
                .set_toggle(change, audit, now)
                .await?
                .ok_or(ApiError::NotFound {
                    what: "installation",
                })?;
        if change.key == ToggleKey::RateLimit {
            self.rate_limiter
                .set_limit(change.installation_id, rate_limit);
        }
        Ok(toggle)
    }

    /// Sets and removes properties of an install (audited): what its flags are evaluated
    /// with, from its next heartbeat and in the next healing decision. The request is
    /// checked by [`properties::check_changes`].
    pub async fn change_properties(
        &self,
        installation_id: Uuid,
        changes: &Map<String, Value>,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<Map<String, Value>, ApiError> {
        self.store
            .change_properties(
                installation_id,
                changes,
                reason,
                properties::MAX_PROPERTIES,
                audit,
                self.clock.now(),
            )
            .await?
            .ok_or(ApiError::NotFound {
                what: "installation",
            })?
            .map_err(|count| {
                ApiError::invalid(
                    "properties",
                    format!(
                        "an install holds at most {} properties; this would make {count}",
                        properties::MAX_PROPERTIES
                    ),
                )
            })
    }

    /// Lifts the active toggle `key` (audited).
    pub async fn lift_toggle(
        &self,
        installation_id: Uuid,
        key: ToggleKey,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<Toggle, ApiError> {
        let lifted = self
            .store
            .lift_toggle(installation_id, key, reason, audit, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound {
                what: "active toggle",
            })?;
        if key == ToggleKey::RateLimit {
            self.rate_limiter.set_limit(installation_id, None);
        }
        Ok(lifted)
    }

    /// Registers a release or updates it (audited); true when it was created.
    pub async fn register_version(
        &self,
        version: &NewVersion,
        audit: &AuditContext,
    ) -> Result<(VersionEntry, bool), ApiError> {
        Ok(self
            .store
            .register_version(version, audit, self.clock.now())
            .await?)
    }

    pub async fn versions(&self, cms: Option<&str>) -> Result<Vec<VersionEntry>, ApiError> {
        Ok(self.store.list_versions(cms).await?)
    }

    /// The overview: statuses exact now, error-rate figures from the last snapshot.
    pub async fn overview(&self) -> Result<Overview, ApiError> {
        let rates = *self.rates().await?;
        Ok(self.store.overview(rates, self.clock.now()).await?)
    }

    /// The fleet's daily figures from `since` on.
    pub async fn trends(&self, since: chrono::NaiveDate) -> Result<Vec<FleetDay>, ApiError> {
        Ok(self.store.fleet_days(since).await?)
    }

    /// An install's daily figures from `since` on; 404 for an unknown install.
    pub async fn install_metrics(
        &self,
        id: Uuid,
        since: chrono::NaiveDate,
    ) -> Result<Vec<InstallDay>, ApiError> {
        if self
            .store
            .installation_summary(id, self.clock.now())
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound {
                what: "installation",
            });
        }
        Ok(self.store.install_days(id, since).await?)
    }

    /// The fleet's error-rate figures as last computed.
    pub async fn rates(&self) -> Result<Arc<FleetRates>, StoreError> {
        self.rates
            .get(|| self.store.fleet_rates(self.clock.now()))
            .await
    }

    /// Computes the fleet's error-rate figures anew (the snapshot refresher's step).
    pub async fn refresh_rates(&self) -> Result<Arc<FleetRates>, StoreError> {
        self.rates
            .refresh(|| self.store.fleet_rates(self.clock.now()))
            .await
    }
}
