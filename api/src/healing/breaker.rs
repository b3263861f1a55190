//! The per-rule auto-apply breaker: a rule whose auto-applied patches keep failing or
//! rolling back has its auto-apply suspended (its detections then wait for Ops) until Ops
//! resume it. A merchant's failures suspend the rule for that merchant's installs; only
//! failures at `breaker_min_merchants` merchants or more suspend it for the fleet, so that
//! no one tenant can switch healing off for the others. Every auto-applied detection asks
//! whether its rule is suspended, so the answer is cached per process and dropped on every
//! change.

use super::store::{BreakerScope, PatchesCounted, RuleOutcomes, RULE_BREAKERS_TOPIC};
use super::HealingConfig;
use crate::db::{AuditContext, Invalidation, InvalidationBus, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use uuid::Uuid;

type Suspensions = HashSet<(String, BreakerScope)>;

/// The rules whose auto-apply is suspended, as last read. A breaker change through this
/// process drops it at once, one made by another replica arrives as a
/// [`RULE_BREAKERS_TOPIC`] notice on the invalidation bus (PostgreSQL NOTIFY, sent by the
/// changing transaction), and it is read again at least every `max_age`: the fallback for
/// a notice that was missed.
pub(crate) struct SuspendedRules {
    store: Store,
    max_age: Duration,
    read: RwLock<Option<(Instant, Suspensions)>>,
    /// Bumped by every invalidation, so a read that raced a change is not kept.
    generation: AtomicU64,
    notices: Mutex<broadcast::Receiver<Invalidation>>,
}

impl SuspendedRules {
    pub(crate) fn new(store: Store, bus: &InvalidationBus, max_age: Duration) -> Self {
        Self {
            store,
            max_age,
            read: RwLock::new(None),
            generation: AtomicU64::new(0),
            notices: Mutex::new(bus.subscribe()),
        }
    }

    /// Whether the rule's auto-apply is suspended for the merchant's installs: fleet-wide
    /// or for that merchant.
    pub(crate) async fn contains(&self, rule: &str, merchant_id: Uuid) -> Result<bool, StoreError> {
        let changed = InvalidationBus::drain(
            &mut self.notices.lock().expect("breaker notices"),
            RULE_BREAKERS_TOPIC,
        );
        if changed {
            self.invalidate();
        }
        let applies = |suspensions: &Suspensions| {
            [BreakerScope::Fleet, BreakerScope::Merchant(merchant_id)]
                .into_iter()
                .any(|scope| suspensions.contains(&(rule.to_owned(), scope)))
        };
        if let Some((read_at, suspensions)) = &*self.read.read().expect("suspended rules") {
            if read_at.elapsed() < self.max_age {
                return Ok(applies(suspensions));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let suspensions = self.store.suspended_rules().await?;
        let suspended = applies(&suspensions);
        let mut read = self.read.write().expect("suspended rules");
        if self.generation.load(Ordering::Acquire) == generation {
            *read = Some((Instant::now(), suspensions));
        }
        Ok(suspended)
    }

    /// Forgets what was read: the next question reads the store.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.read.write().expect("suspended rules") = None;
    }

    /// Opens or closes a rule's breaker in a scope (see [`Store::set_rule_breaker`]) and
    /// drops what this process cached. False when it was already in that state.
    pub(crate) async fn set(
        &self,
        rule: &str,
        scope: BreakerScope,
        suspended: bool,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self
            .store
            .set_rule_breaker(rule, scope, suspended, reason, audit, now)
            .await?;
        self.invalidate();
        Ok(changed)
    }

    /// After a log of `rule` at one of the merchant's installs ended badly: trips the
    /// rule's breaker for that merchant when its patches there failed or rolled back past
    /// the configured rate, and for the fleet when the rule's patches did so everywhere
    /// and the bad ones were at `breaker_min_merchants` merchants or more.
    pub(crate) async fn check(
        &self,
        config: &HealingConfig,
        rule: &str,
        merchant_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let since = now - config.breaker_window;
        let hours = config.breaker_window.num_hours();
        let trips = |outcomes: &RuleOutcomes| {
            outcomes.bad >= config.breaker_min_failures
                && outcomes.finished > 0
                && outcomes.bad as f64 >= config.breaker_failure_rate * outcomes.finished as f64
        };
        let merchant = BreakerScope::Merchant(merchant_id);
        let outcomes = self
            .store
            .rule_outcomes(rule, merchant, PatchesCounted::AutoApplied, since)
            .await?;
        if trips(&outcomes) {
            let reason = format!(
                "{} of {} auto-applied patches at this merchant's installs failed or rolled back within {hours} h",
                outcomes.bad, outcomes.finished
            );
            self.trip(rule, merchant, &reason, now).await?;
        }
        let outcomes = self
            .store
            .rule_outcomes(
                rule,
                BreakerScope::Fleet,
                PatchesCounted::AutoApplied,
                since,
            )
            .await?;
        if trips(&outcomes) && outcomes.merchants >= config.breaker_min_merchants {
            let reason = format!(
                "{} of {} auto-applied patches failed or rolled back within {hours} h, at {} merchants",
                outcomes.bad, outcomes.finished, outcomes.merchants
            );
            self.trip(rule, BreakerScope::Fleet, &reason, now).await?;
        }
        Ok(())
    }

    async fn trip(
        &self,
        rule: &str,
        scope: BreakerScope,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.set(rule, scope, true, reason, None, now).await? {
            tracing::warn!(event = "rule_auto_apply_suspended", alert = "AutoHealRuleSuspended", rule,
                scope = scope.as_str(), merchant_id = ?scope.merchant_id(), reason = %reason,
                "auto-apply suspended for a rule: its detections now wait for Ops");
        }
        Ok(())
    }
}
