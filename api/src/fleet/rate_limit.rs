//! Enforcement of the `rate_limit` toggle: a token bucket per installation,
//! refilled at the toggle's requests-per-minute with a burst of the same
//! size. The limits are learnt from heartbeat answers and from toggle changes
//! made here, so another replica's change applies here from the
//! installation's next heartbeat on.

use crate::quotas::TokenBucket;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// How a plugin names its installation before the server has told it the id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstallKey {
    pub merchant_id: Uuid,
    pub cms: String,
    pub site_url: String,
}

impl InstallKey {
    pub fn of(merchant_id: Uuid, cms: &str, site_url: &str) -> Self {
        Self {
            merchant_id,
            cms: cms.to_owned(),
            site_url: site_url.to_owned(),
        }
    }
}

struct Bucket {
    per_minute: u32,
    tokens: TokenBucket,
}

#[derive(Default)]
pub struct RateLimiter {
    installations: Mutex<HashMap<InstallKey, Uuid>>,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    /// Records the installation id for a key and its current limit.
    pub fn learn(&self, key: InstallKey, installation_id: Uuid, per_minute: Option<u32>) {
        self.installations
            .lock()
            .expect("rate limiter")
            .insert(key, installation_id);
        self.set_limit(installation_id, per_minute);
    }

    pub fn set_limit(&self, installation_id: Uuid, per_minute: Option<u32>) {
        let mut buckets = self.buckets.lock().expect("rate limiter");
        match per_minute {
            None => {
                buckets.remove(&installation_id);
            }
            Some(per_minute) => {
                let bucket = buckets.entry(installation_id).or_insert_with(|| Bucket {
                    per_minute,
                    tokens: TokenBucket::full(f64::from(per_minute)),
                });
                if bucket.per_minute != per_minute {
                    bucket.per_minute = per_minute;
                    bucket.tokens.cap(f64::from(per_minute));
                }
            }
        }
    }

    /// Whether a heartbeat of the install was answered here (its id is known).
    pub fn knows(&self, key: &InstallKey) -> bool {
        self.installations
            .lock()
            .expect("rate limiter")
            .contains_key(key)
    }

    /// Takes one request from the installation's bucket. `Err(seconds)` says
    /// when the next one is allowed.
    pub fn check(&self, key: &InstallKey) -> Result<(), u64> {
        let Some(installation_id) = self
            .installations
            .lock()
            .expect("rate limiter")
            .get(key)
            .copied()
        else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().expect("rate limiter");
        let Some(bucket) = buckets.get_mut(&installation_id) else {
            return Ok(());
        };
        let capacity = f64::from(bucket.per_minute);
        bucket.tokens.take(capacity, capacity / 60.0)
    }
}
