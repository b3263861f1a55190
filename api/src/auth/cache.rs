//! The per-process cache of verified credentials, and what keeps it honest: a revocation
//! or rotation drops it (at once through this process; from another replica by the
//! invalidation bus's notice; from anywhere, including a CLI process on SQLite, within
//! [`CREDENTIAL_CHANGES_POLL`] by reading the store's last change), an entry is never
//! trusted past its credential's expiry, and the uses it sees are written as
//! `last_used_at` at most once per [`LAST_USED_FLUSH`].

use super::store::{Authenticated, CREDENTIALS_TOPIC};
use crate::clock::Clock;
use crate::db::{Invalidation, InvalidationBus, Store, StoreError};
use crate::error::ApiError;
use crate::tasks::Tasks;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use uuid::Uuid;

/// How often each replica reads when any credential last changed: the bound on how long
/// a revocation the bus did not carry takes to be in force.
pub const CREDENTIAL_CHANGES_POLL: Duration = Duration::from_secs(1);

/// How often the uses seen are written: each credential's `last_used_at` costs at most one
/// write per replica in this time, whatever its traffic.
pub const LAST_USED_FLUSH: Duration = Duration::from_secs(60);

/// Recently verified secrets (by hash) and who they belong to. Unknown secrets are not
/// cached, so a newly created credential works at once.
pub struct AuthCache {
    store: Store,
    clock: Clock,
    ttl: Duration,
    /// Entries kept before the cache starts over.
    max_entries: usize,
    entries: Mutex<HashMap<String, (Authenticated, Instant)>>,
    /// Bumped by every invalidation, so a lookup that raced a revocation is not kept.
    generation: AtomicU64,
    notices: Mutex<broadcast::Receiver<Invalidation>>,
    /// The last change to any credential as last read; None before the first read.
    changed_at: Mutex<Option<Option<DateTime<Utc>>>>,
    /// Uses not yet written: each credential's latest.
    uses: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl AuthCache {
    pub fn new(
        store: Store,
        clock: Clock,
        bus: &InvalidationBus,
        ttl: Duration,
        max_entries: usize,
    ) -> Self {
        Self {
            store,
            clock,
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            notices: Mutex::new(bus.subscribe()),
            changed_at: Mutex::new(None),
            uses: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn principal(&self, secret: &str) -> Result<Authenticated, ApiError> {
        let changed = InvalidationBus::drain(
            &mut self.notices.lock().expect("auth notices"),
            CREDENTIALS_TOPIC,
        );
        if changed {
            self.forget_all();
        }
        let now = self.clock.now();
        let hash = super::hash_secret(secret);
        let cached = self
            .entries
            .lock()
            .expect("auth cache")
            .get(&hash)
            .filter(|(found, seen)| {
                seen.elapsed() < self.ttl && found.expires_at.is_none_or(|at| at > now)
            })
            .map(|(found, _)| found.clone());
        let found = match cached {
            Some(found) => found,
            None => {
                let generation = self.generation.load(Ordering::Acquire);
                let found = self
                    .store
                    .authenticate(secret, now)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                let mut entries = self.entries.lock().expect("auth cache");
                if self.generation.load(Ordering::Acquire) == generation {
                    if entries.len() > self.max_entries {
                        entries.clear();
                    }
                    entries.insert(hash, (found.clone(), Instant::now()));
                }
                found
            }
        };
        self.uses
            .lock()
            .expect("credential uses")
            .insert(found.credential_id, now);
        Ok(found)
    }

    /// Forgets every verified credential: the next request of each asks the store. (A
    /// change made through this process calls it at once; other replicas hear of it.)
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().expect("auth cache").clear();
    }

    /// Reads when any credential last changed, and forgets what was verified if that moved
    /// since the last read (or was never read).
    pub async fn check_changes(&self) -> Result<(), StoreError> {
        let latest = self.store.credentials_changed_at().await?;
        let previous = self
            .changed_at
            .lock()
            .expect("credential changes")
            .replace(latest);
        if previous != Some(latest) {
            self.forget_all();
        }
        Ok(())
    }

    /// Writes the uses seen since the last flush as each credential's `last_used_at`.
    pub async fn flush_uses(&self) -> Result<(), StoreError> {
        let uses: Vec<_> = std::mem::take(&mut *self.uses.lock().expect("credential uses"))
            .into_iter()
            .collect();
        let written = self.store.record_credential_use(&uses).await;
        if written.is_err() {
            // Kept for the next flush, unless a later use replaced it meanwhile.
            let mut pending = self.uses.lock().expect("credential uses");
            for (id, at) in uses {
                pending.entry(id).or_insert(at);
            }
        }
        written
    }

    /// Starts the poll of credential changes and the writer of uses (which writes once
    /// more when stopped, so a shutdown loses none).
    pub fn start(self: &std::sync::Arc<Self>, watchers: &mut Tasks) {
        let changes = self.clone();
        watchers.spawn_every("credential_changes", CREDENTIAL_CHANGES_POLL, move || {
            let changes = changes.clone();
            async move { changes.check_changes().await }
        });
        let uses = self.clone();
        watchers.spawn("credential_uses", move |mut stopping| async move {
            loop {
                let stop = tokio::select! {
                    () = stopping.requested() => true,
                    () = tokio::time::sleep(LAST_USED_FLUSH) => false,
                };
                if let Err(error) = uses.flush_uses().await {
                    tracing::warn!(event = "credential_uses_failed", error = %error,
                        "could not record when credentials were last used; trying again later");
                }
                if stop {
                    return;
                }
            }
        });
    }
}
