//! The one place the server reads the time. Handlers and jobs ask the
//! [`Clock`] and pass `now` down, so the core and the store never read a clock
//! and tests can move time (staleness after 48 h, toggle expiry) for real.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// Now, truncated to whole microseconds: both stores keep microseconds,
    /// so a value read back equals the value written.
    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.manual {
            Some(time) => *time.lock().expect("clock lock"),
            None => Utc::now(),
        };
        truncate_to_micros(now)
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        let time = self.manual.as_ref().expect("only a manual clock advances");
        *time.lock().expect("clock lock") += by;
    }
}

pub fn truncate_to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = time.timestamp_subsec_nanos();
    time - Duration::nanoseconds(i64::from(nanos % 1_000))
}
