//! The invalidation bus: "something under (topic, key) changed, drop what you
//! cached". In-process subscribers get a broadcast; on PostgreSQL the store
//! sends `NOTIFY autoheal_invalidation, 'topic:key'` inside the changing
//! transaction (so it is delivered only if it commits), and every replica's
//! listener forwards it to its subscribers. Flags and the rule breakers use it; the auth
//! cache can subscribe to its own topic the same way.

use super::{on_tx, Store, StoreError, Tx};
use crate::tasks::Tasks;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::broadcast;

/// The PostgreSQL channel of the bus.
pub const INVALIDATION_CHANNEL: &str = "autoheal_invalidation";

/// Inside the transaction of a change: on PostgreSQL, the NOTIFY that tells every replica's
/// listener of it once the transaction commits (never if it rolls back). On SQLite every
/// writer is this process, which publishes locally itself.
pub(crate) async fn notify(tx: &mut Tx<'_>, topic: &str, key: &str) -> Result<(), sqlx::Error> {
    if let Tx::Postgres(_) = tx {
        let payload = format!("{topic}:{key}");
        on_tx!(tx, connection => execute sqlx::query("SELECT pg_notify($1, $2)")
            .bind(INVALIDATION_CHANNEL)
            .bind(&payload))?;
    }
    Ok(())
}

/// One change notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    pub topic: String,
    pub key: String,
}

impl Invalidation {
    /// Parses a NOTIFY payload, `topic:key` (the key may contain ':').
    pub fn parse(payload: &str) -> Option<Invalidation> {
        let (topic, key) = payload.split_once(':')?;
        Some(Invalidation {
            topic: topic.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// Cheap to clone; all clones share subscribers.
#[derive(Clone)]
pub struct InvalidationBus {
    sender: broadcast::Sender<Invalidation>,
}

impl Default for InvalidationBus {
    fn default() -> Self {
        // A subscriber that falls this far behind sees `Lagged` and must
        // treat it as "everything changed".
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }
}

impl InvalidationBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.sender.subscribe()
    }

    /// Takes every notice waiting in `notices` without blocking: true when one was on
    /// `topic`, or when some were lost (a subscriber that fell behind must assume anything
    /// changed).
    pub fn drain(notices: &mut broadcast::Receiver<Invalidation>, topic: &str) -> bool {
        let mut changed = false;
        loop {
            match notices.try_recv() {
                Ok(notice) => changed |= notice.topic == topic,
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed = true,
                Err(_) => return changed,
            }
        }
    }

    /// Tells this process' subscribers. (Other replicas learn of a change
    /// from the store's NOTIFY.)
    pub fn publish_local(&self, topic: &str, key: &str) {
        // No subscriber is fine: nothing is cached yet.
        let _ = self.sender.send(Invalidation {
            topic: topic.to_owned(),
            key: key.to_owned(),
        });
    }

    /// On PostgreSQL, LISTENs (returning once the LISTEN is registered, so no later NOTIFY
    /// is missed) and forwards every notice to this bus from a task in `tasks`. Nothing on
    /// SQLite, where every writer is in this process.
    pub async fn listen(&self, store: &Store, tasks: &mut Tasks) -> Result<(), StoreError> {
        let Some(pool) = store.postgres_pool() else {
            return Ok(());
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        let bus = self.clone();
        tasks.spawn("invalidation_listener", move |mut stopping| async move {
            loop {
                let received = tokio::select! {
                    () = stopping.requested() => return,
                    received = listener.recv() => received,
                };
                match received {
                    Ok(notification) => match Invalidation::parse(notification.payload()) {
                        Some(notice) => {
                            let _ = bus.sender.send(notice);
                        }
                        None => tracing::warn!(
                            event = "invalidation_malformed",
                            payload = notification.payload(),
                            "ignored a notice without topic:key"
                        ),
                    },
                    // The store was closed: the process is shutting down.
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(error) => {
                        // PgListener reconnects on the next recv; what was
                        // sent meanwhile is caught by the periodic refresh.
                        tracing::warn!(event = "invalidation_listener_error", error = %error, "LISTEN connection failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}
