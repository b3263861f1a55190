//! What leaves the server: the outbox and its delivery (seed 003's runbook: error classes,
//! retries with backoff, per-destination circuit breakers, signed webhooks, SMTP), and the
//! upgrade notifications (seed 000) that travel through it. A message is written to the
//! outbox in the transaction of what caused it, so it is sent if and only if that commits.
//!
//! [`Service`] is the feature's entry; `http.rs` its routes; `store.rs` the outbox rows and
//! the notices; [`outbox`] the delivery, [`notifications`] seed 000's priorities, template
//! and channel messages.

mod http;
pub mod notifications;
pub mod outbox;
mod store;

pub(crate) use http::routes;
pub use notifications::{NotificationConfig, PendingNotices};
pub use outbox::{Outbox, OutboxConfig, RoundReport};
pub(crate) use store::insert_outbox;
pub use store::*;

use crate::db::{AuditContext, Store};
use crate::error::ApiError;
use crate::Clock;
use notifications::{priority, Notice};
use std::sync::Arc;
use uuid::Uuid;

/// Delivery's and the notifications' operations, built from the handles they use.
pub struct Service {
    store: Store,
    clock: Clock,
    outbox: Arc<Outbox>,
    config: NotificationConfig,
    notices: Arc<PendingNotices>,
    /// Each failed delivery attempt is recorded there.
    logs: crate::logs::PlatformLog,
}

impl Service {
    pub fn new(
        store: Store,
        clock: Clock,
        outbox: Arc<Outbox>,
        config: NotificationConfig,
        notices: Arc<PendingNotices>,
        logs: crate::logs::PlatformLog,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            config,
            notices,
            logs,
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// One delivery round at the clock's now: leases the due messages and sends them.
    pub async fn deliver_due(&self) -> Result<RoundReport, ApiError> {
        Ok(self
            .outbox
            .deliver_due(&self.store, &self.logs, self.clock.now())
            .await?)
    }

    /// Delivery rounds until one leases less than a full batch: what the background task
    /// runs every poll interval.
    pub async fn deliver_all_due(&self) -> Result<(), ApiError> {
        loop {
            let report = self.deliver_due().await?;
            if !self.outbox.was_full(&report) {
                return Ok(());
            }
        }
    }

    /// Counts by status and every destination's breaker.
    pub async fn overview(&self) -> Result<(OutboxCounts, Vec<outbox::Breaker>), ApiError> {
        Ok((self.store.outbox_counts().await?, self.outbox.breakers()))
    }

    pub async fn messages(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<OutboxMessage>, ApiError> {
        Ok(self.store.list_outbox(status, limit, offset).await?)
    }

    /// Ops send a dead letter again; audited.
    pub async fn retry(&self, id: Uuid, audit: &AuditContext) -> Result<OutboxMessage, ApiError> {
        self.store
            .retry_dead_letter(id, audit, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound {
                what: "dead letter",
            })
    }

    /// A notice of the cms's latest version on `channel` to one install, with the priority
    /// of seed 000's table; audited. A conflict when the same version went to this install
    /// on this channel within the quiet period, or the install is not behind.
    pub async fn notify_upgrade(
        &self,
        id: Uuid,
        channel: &'static str,
        audit: &AuditContext,
    ) -> Result<Notification, ApiError> {
        let target = self
            .store
            .notification_target(id)
            .await?
            .ok_or(ApiError::NotFound {
                what: "installation",
            })?;
        let latest = self
            .store
            .list_versions(Some(&target.cms))
            .await?
            .into_iter()
            .find(|v| v.is_latest)
            .ok_or_else(|| ApiError::Conflict {
                message: format!("no latest version is registered for {}", target.cms),
            })?;
        let current = crate::version::parse_or_lowest(&target.plugin_version);
        let newest = crate::version::parse_or_lowest(&latest.version);
        if newest <= current {
            return Err(ApiError::Conflict {
                message: format!(
                    "the install already runs {} (latest {})",
                    target.plugin_version, latest.version
                ),
            });
        }
        let now = self.clock.now();
        let config = &self.config;
        if let Some(previous) = self
            .store
            .recent_notification(id, &latest.version, channel, now - config.quiet_period)
            .await?
        {
            return Err(ApiError::Conflict {
                message: format!(
                    "{} {} was sent to this install on {channel} at {} (quiet period {} h)",
                    target.cms,
                    latest.version,
                    previous.created_at.to_rfc3339(),
                    config.quiet_period.num_hours()
                ),
            });
        }
        let (priority, _) = priority(&current, &newest, latest.security);
        let notice = Notice {
            target: &target,
            latest_version: &latest.version,
            release_notes: &latest.release_notes,
            priority,
            security: latest.security,
            upgrade_url: config.upgrade_url(target.installation_id),
        };
        let new = notice
            .on(channel, config, false)
            .map_err(|reason| ApiError::invalid("channel", reason))?;
        let stored = self
            .store
            .record_notifications(&target, &[new], Some(audit), now)
            .await?;
        if channel == "in-app" {
            self.notices.add(target.installation_id);
        }
        stored.into_iter().next().ok_or(ApiError::NotFound {
            what: "notification",
        })
    }

    /// A merchant acknowledges one of its notices (idempotent); an in-app notice then
    /// leaves the heartbeat response.
    pub async fn acknowledge(&self, merchant_id: Uuid, id: Uuid) -> Result<Notification, ApiError> {
        let owned = self
            .store
            .notification(id)
            .await?
            .filter(|n| n.merchant_id == merchant_id)
            .ok_or(ApiError::NotFound {
                what: "notification",
            })?;
        self.store
            .acknowledge_notification(owned.id, self.clock.now())
            .await?
            .ok_or(ApiError::NotFound {
                what: "notification",
            })
    }

    /// Security releases: every install below its cms's latest version, when that version
    /// is a security release, gets its notices (email and SMS where the merchant can be
    /// reached, each channel within its quiet period).
    pub async fn notify_security_releases(&self) -> Result<(), crate::db::StoreError> {
        let now = self.clock.now();
        let config = &self.config;
        for version in self.store.list_versions(None).await? {
            if !(version.is_latest && version.security) {
                continue;
            }
            let target = crate::version::parse_or_lowest(&version.version);
            for install in self
                .store
                .installs_below(&version.cms, &crate::version::sort_key(&target))
                .await?
            {
                let Some(reach) = self.store.notification_target(install).await? else {
                    continue;
                };
                let current = crate::version::parse_or_lowest(&reach.plugin_version);
                let (level, channels) = priority(&current, &target, true);
                let notice = Notice {
                    target: &reach,
                    latest_version: &version.version,
                    release_notes: &version.release_notes,
                    priority: level,
                    security: true,
                    upgrade_url: config.upgrade_url(install),
                };
                let mut notices = Vec::new();
                for channel in channels {
                    let quiet = self
                        .store
                        .recent_notification(
                            install,
                            &version.version,
                            channel,
                            now - config.quiet_period,
                        )
                        .await?;
                    if quiet.is_none() {
                        // A channel that cannot reach this merchant (no phone) is skipped.
                        notices.extend(notice.on(channel, config, true).ok());
                    }
                }
                if !notices.is_empty() {
                    self.store
                        .record_notifications(&reach, &notices, None, now)
                        .await?;
                }
            }
        }
        Ok(())
    }
}
