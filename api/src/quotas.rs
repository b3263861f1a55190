//! Per-merchant quotas (issue 17): no tenant takes an unbounded share of the store or of the
//! ingest path. A merchant may have at most `max_installs_per_merchant` installations (a
//! first heartbeat beyond it is refused), and its keys together may post at most
//! `merchant_events_per_second` telemetry and interop events (a token bucket per merchant,
//! holding one second's worth). Both are answered 429 with `Retry-After`.
//!
//! The event rate is counted per replica, so N replicas admit up to N times the rate. The
//! install quota is counted in the store: a replica reads a merchant's count at most once a
//! second and counts the new sites it lets through meanwhile, so within one second the other
//! replicas' new sites can pass the quota, by their number.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct QuotaConfig {
    /// Installations one merchant may have.
    pub max_installs_per_merchant: i64,
    /// Telemetry and interop events one merchant's keys may post per second, per replica
    /// (0: no limit).
    pub merchant_events_per_second: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_installs_per_merchant: 10_000,
            merchant_events_per_second: 1_000,
        }
    }
}

/// How long a merchant at its install quota is told to wait: the quota does not refill, so
/// this is a polite interval for a plugin's retry, not a promise.
pub const INSTALL_QUOTA_RETRY_AFTER_SECS: u64 = 3_600;

/// A token bucket holding up to `capacity` tokens, refilled at `per_second`: what both the
/// `rate_limit` toggle and the merchants' event rate take from.
pub(crate) struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(crate) fn full(capacity: f64) -> Self {
        Self {
            tokens: capacity,
            refilled_at: Instant::now(),
        }
    }

    /// Takes one token, or says in how many seconds (rounded up) the next one is there.
    pub(crate) fn take(&mut self, capacity: f64, per_second: f64) -> Result<(), u64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_second).ceil() as u64)
        }
    }

    /// Lowers the tokens held to a new, smaller capacity.
    pub(crate) fn cap(&mut self, capacity: f64) {
        self.tokens = self.tokens.min(capacity);
    }
}

/// The event rate of each merchant, as a token bucket holding one second's worth.
pub struct EventRate {
    per_second: u32,
    buckets: Mutex<HashMap<Uuid, TokenBucket>>,
}

impl EventRate {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            buckets: Mutex::default(),
        }
    }

    /// Takes one event from the merchant's bucket, or says when the next one is allowed.
    pub fn take(&self, merchant_id: Uuid) -> Result<(), ApiError> {
        if self.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_second);
        let mut buckets = self.buckets.lock().expect("event rate");
        buckets
            .entry(merchant_id)
            .or_insert_with(|| TokenBucket::full(rate))
            .take(rate, rate)
            .map_err(|wait| ApiError::QuotaExceeded {
                message: format!(
                    "this merchant's keys may post {} events per second (--merchant-events-per-second)",
                    self.per_second
                ),
                retry_after_secs: wait.max(1),
            })
    }
}
