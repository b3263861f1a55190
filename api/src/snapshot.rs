//! Figures that cost a pass over the fleet, computed off the request path: a refresher
//! (a background task every `--metrics-refresh-ms`) replaces the value, and reads take the
//! last one. A zero interval computes on every read instead (the library's default, which
//! the tests use, and a small fleet's choice).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct Snapshot<T> {
    refresh: Duration,
    current: RwLock<Option<Arc<T>>>,
}

impl<T> Snapshot<T> {
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            current: RwLock::new(None),
        }
    }

    /// How often the refresher replaces the value; zero when reads compute it.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    /// The last value; computed here only when none exists yet (the first read after a
    /// start, before the refresher's first run) or when the interval is zero.
    pub async fn get<E, F>(&self, compute: impl FnOnce() -> F) -> Result<Arc<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if !self.refresh.is_zero() {
            if let Some(current) = self.current.read().expect("snapshot lock").clone() {
                return Ok(current);
            }
        }
        Ok(self.replace(compute().await?))
    }

    /// Computes a new value and keeps it (the refresher's step).
    pub async fn refresh<E, F>(&self, compute: impl FnOnce() -> F) -> Result<Arc<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        Ok(self.replace(compute().await?))
    }

    fn replace(&self, value: T) -> Arc<T> {
        let value = Arc::new(value);
        *self.current.write().expect("snapshot lock") = Some(value.clone());
        value
    }
}
