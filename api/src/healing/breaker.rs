//! The per-rule auto-apply breaker: a rule whose auto-applied patches keep failing or
//! rolling back has its auto-apply suspended (its detections then wait for Ops) until Ops
//! resume it. Every auto-applied detection asks whether its rule is suspended, so the
//! answer is cached per process and dropped on every change.

use super::store::RULE_BREAKERS_TOPIC;
use super::HealingConfig;
use crate::db::{AuditContext, Invalidation, InvalidationBus, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The rules whose auto-apply is suspended, as last read. A breaker change through this
/// process drops it at once, one made by another replica arrives as a
/// [`RULE_BREAKERS_TOPIC`] notice on the invalidation bus (PostgreSQL NOTIFY, sent by the
/// changing transaction), and it is read again at least every `max_age`: the fallback for
/// a notice that was missed.
pub(crate) struct SuspendedRules {
    max_age: Duration,
    read: RwLock<Option<(Instant, HashSet<String>)>>,
    /// Bumped by every invalidation, so a read that raced a change is not kept.
    generation: AtomicU64,
    notices: Mutex<broadcast::Receiver<Invalidation>>,
}

impl SuspendedRules {
    pub(crate) fn new(bus: &InvalidationBus, max_age: Duration) -> Self {
        Self {
            max_age,
            read: RwLock::new(None),
            generation: AtomicU64::new(0),
            notices: Mutex::new(bus.subscribe()),
        }
    }

    pub(crate) async fn contains(&self, store: &Store, rule: &str) -> Result<bool, StoreError> {
        let changed = InvalidationBus::drain(
            &mut self.notices.lock().expect("breaker notices"),
            RULE_BREAKERS_TOPIC,
        );
        if changed {
            self.invalidate();
        }
        if let Some((read_at, rules)) = &*self.read.read().expect("suspended rules") {
            if read_at.elapsed() < self.max_age {
                return Ok(rules.contains(rule));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let rules = store.suspended_rules().await?;
        let suspended = rules.contains(rule);
        let mut read = self.read.write().expect("suspended rules");
        if self.generation.load(Ordering::Acquire) == generation {
            *read = Some((Instant::now(), rules));
        }
        Ok(suspended)
    }

    /// Forgets what was read: the next question reads the store.
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.read.write().expect("suspended rules") = None;
    }

    /// Opens or closes a rule's breaker (see [`Store::set_rule_breaker`]) and drops what
    /// this process cached. False when it was already in that state.
    pub(crate) async fn set(
        &self,
        store: &Store,
        rule: &str,
        suspended: bool,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = store
            .set_rule_breaker(rule, suspended, reason, audit, now)
            .await?;
        self.invalidate();
        Ok(changed)
    }

    /// After a log of `rule` ended badly: trips the rule's breaker when its auto-applied
    /// patches failed or rolled back past the configured rate.
    pub(crate) async fn check(
        &self,
        store: &Store,
        config: &HealingConfig,
        rule: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let outcomes = store
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
            if self.set(store, rule, true, &reason, None, now).await? {
                tracing::warn!(event = "rule_auto_apply_suspended", alert = "AutoHealRuleSuspended", rule, reason = %reason,
                    "auto-apply suspended for a rule: its detections now wait for Ops");
            }
        }
        Ok(())
    }
}
