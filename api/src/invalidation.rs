//! The invalidation bus: "something under (topic, key) changed, drop what you
//! cached". In-process subscribers get a broadcast; on PostgreSQL the store
//! sends `NOTIFY autoheal_invalidation, 'topic:key'` inside the changing
//! transaction (so it is delivered only if it commits), and every replica's
//! listener forwards it to its subscribers. Flags use it now; the auth cache
//! can subscribe to its own topic the same way.

use crate::store::{Store, StoreError, INVALIDATION_CHANNEL};
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::broadcast;

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

    /// Tells this process' subscribers. (Other replicas learn of a change
    /// from the store's NOTIFY.)
    pub fn publish_local(&self, topic: &str, key: &str) {
        // No subscriber is fine: nothing is cached yet.
        let _ = self.sender.send(Invalidation {
            topic: topic.to_owned(),
            key: key.to_owned(),
        });
    }

    /// On PostgreSQL, LISTENs (returning once the LISTEN is registered, so
    /// no later NOTIFY is missed) and forwards every notice to this bus.
    /// None on SQLite, where every writer is in this process.
    pub async fn listen(
        &self,
        store: &Store,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        let Some(pool) = store.postgres_pool() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(INVALIDATION_CHANNEL).await?;
        let bus = self.clone();
        Ok(Some(tokio::spawn(async move {
            loop {
                match listener.recv().await {
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
        })))
    }
}
