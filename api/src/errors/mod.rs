//! Error groups (Sentry-style): the plugins' error events — telemetry `error` and
//! `payment_failed` events with a message, interop events normalized to `plugin.error` —
//! and the platform's error logs, grouped by `engine::fingerprint` (the message
//! parameterized, plus the in-app stack frames; versioned, so a new algorithm starts new
//! groups instead of regrouping old ones). [`Service`] is the Ops side (list, detail,
//! status); `http.rs` its routes; `store.rs` its SQL, including
//! `record_occurrences`, which the event writers call inside their own transaction, so a
//! group never misses an accepted event.
//!
//! A group is `unresolved`, `resolved` or `ignored`, set by Ops (audited). A resolved group
//! that recurs is `unresolved` again; an ignored one stays ignored (and the detector
//! skips it).

mod http;
mod store;

pub(crate) use http::routes;
pub(crate) use store::{record_occurrences, Occurrence};
pub use store::{
    ErrorBurst, ErrorGroup, ErrorGroupFilter, ErrorOccurrence, GroupInstall, HourCount,
    OccurrenceSource,
};

use crate::db::{AuditContext, Store};
use crate::error::ApiError;
use crate::rules::Rules;
use crate::Clock;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// Occurrences the detail shows.
pub const SAMPLE_EVENTS: i64 = 20;
/// Installs the detail shows.
pub const TOP_INSTALLS: i64 = 5;
/// Hours the detail counts by default.
pub const DEFAULT_HOURS: i64 = 48;

crate::values::closed_set!(
    /// Where a group stands, as Ops set it.
    ErrorStatus {
        Unresolved = "unresolved",
        Resolved = "resolved",
        Ignored = "ignored",
    }
);

/// Where a page of the group list starts: after the group with this last_seen and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCursor {
    pub last_seen: DateTime<Utc>,
    pub id: Uuid,
}

impl GroupCursor {
    /// Opaque to clients: the group's last_seen in nanoseconds and its id.
    pub fn encode(&self) -> String {
        let nanos = self
            .last_seen
            .timestamp_nanos_opt()
            .expect("occurrences fall between 1677 and 2262");
        format!("{nanos}-{}", self.id.simple())
    }

    pub fn decode(text: &str) -> Option<GroupCursor> {
        let (nanos, id) = text.split_once('-')?;
        Some(GroupCursor {
            last_seen: Utc.timestamp_nanos(nanos.parse().ok()?),
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// A page of groups, and the cursor of the next (None on the last page).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorGroupPage {
    pub groups: Vec<ErrorGroup>,
    pub next_cursor: Option<String>,
}

/// A group with what its page shows.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorGroupDetail {
    #[serde(flatten)]
    pub group: ErrorGroup,
    /// The newest occurrences (at most 20), newest first.
    pub sample_events: Vec<ErrorOccurrence>,
    /// Occurrences per hour, one entry for each of the last `hours` hours (the current one
    /// last), zero-filled.
    pub hourly: Vec<HourCount>,
    /// The installs with the most occurrences (at most 5), all time.
    pub top_installs: Vec<GroupInstall>,
}

/// The error groups' operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    rules: Arc<Rules>,
}

impl Service {
    pub fn new(store: Store, clock: Clock, rules: Arc<Rules>) -> Self {
        Self {
            store,
            clock,
            rules,
        }
    }

    /// A page of the groups `filter` matches, most recently seen first, each with the rule
    /// in force that matches it.
    pub async fn list(&self, filter: &ErrorGroupFilter) -> Result<ErrorGroupPage, ApiError> {
        let mut groups = self.store.list_error_groups(filter).await?;
        let next_cursor = if groups.len() as i64 > filter.limit {
            groups.truncate(filter.limit as usize);
            groups.last().map(|group| {
                GroupCursor {
                    last_seen: group.last_seen,
                    id: group.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(ErrorGroupPage {
            groups: self.with_rules(groups),
            next_cursor,
        })
    }

    /// The group, its newest occurrences, its counts per hour over the last `hours` hours
    /// and its top installs.
    pub async fn detail(&self, id: Uuid, hours: i64) -> Result<ErrorGroupDetail, ApiError> {
        let group = self
            .store
            .error_group(id)
            .await?
            .ok_or(ApiError::NotFound {
                what: "error group",
            })?;
        let current_hour = crate::fleet::read_model::rollup_hour(self.clock.now());
        let first_hour = current_hour - Duration::hours(hours - 1);
        let counted = self.store.error_group_hourly(id, first_hour).await?;
        let hourly = (0..hours)
            .map(|n| {
                let hour = first_hour + Duration::hours(n);
                let events = counted
                    .iter()
                    .find(|count| count.hour == hour)
                    .map_or(0, |count| count.events);
                HourCount { hour, events }
            })
            .collect();
        Ok(ErrorGroupDetail {
            sample_events: self.store.error_group_samples(id, SAMPLE_EVENTS).await?,
            top_installs: self
                .store
                .error_group_top_installs(id, TOP_INSTALLS)
                .await?,
            hourly,
            group: self.with_rules(vec![group]).remove(0),
        })
    }

    /// Ops set the group's status for `reason`; audited.
    pub async fn set_status(
        &self,
        id: Uuid,
        status: ErrorStatus,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<ErrorGroup, ApiError> {
        let group = self
            .store
            .set_error_group_status(id, status, reason, audit, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound {
                what: "error group",
            })?;
        Ok(self.with_rules(vec![group]).remove(0))
    }

    /// Each group with the healing rule in force that matches its title on some platform
    /// (a group spans installs of several).
    fn with_rules(&self, mut groups: Vec<ErrorGroup>) -> Vec<ErrorGroup> {
        let rules = self.rules.current();
        for group in &mut groups {
            group.rule = rules.matching_rule(None, &group.title).map(str::to_owned);
        }
        groups
    }
}
