//! Upgrade notifications: one row per notice and channel, written in one transaction with
//! the outbox message that delivers it (in-app notices have none: the heartbeat carries them
//! until they are acknowledged).

use super::{
    insert_audit, insert_outbox, on_pool, on_write_pool, AuditContext, NewOutboxMessage, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

/// The install a notice is about, with what the channels need to reach its merchant.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NotificationTarget {
    pub installation_id: Uuid,
    pub merchant_id: Uuid,
    pub merchant_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub webhook_url: Option<String>,
    pub cms: String,
    pub plugin_version: String,
}

#[derive(Clone, Debug)]
pub struct NewNotification {
    pub channel: &'static str,
    pub priority: &'static str,
    pub current_version: String,
    pub target_version: String,
    pub security: bool,
    pub subject: String,
    pub body: String,
    pub automatic: bool,
    /// How it is delivered; None for in-app notices.
    pub delivery: Option<NewOutboxMessage>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub merchant_id: Uuid,
    pub channel: String,
    pub priority: String,
    pub current_version: String,
    pub target_version: String,
    pub security: bool,
    pub subject: String,
    pub body: String,
    pub outbox_id: Option<Uuid>,
    pub automatic: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

const NOTIFICATION_COLUMNS: &str =
    "id, installation_id AS plugin_id, merchant_id, channel, priority, \
     current_version, target_version, security, subject, body, outbox_id, automatic, created_by, \
     created_at, acknowledged_at";

impl Store {
    pub async fn notification_target(
        &self,
        plugin_id: Uuid,
    ) -> Result<Option<NotificationTarget>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, NotificationTarget>(
            "SELECT i.id AS installation_id, i.merchant_id, m.name AS merchant_name, m.email, m.phone, \
                    m.webhook_url, i.cms, i.plugin_version \
             FROM plugin_installations i JOIN merchants m ON m.id = i.merchant_id WHERE i.id = $1",
        )
        .bind(plugin_id)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// The last notice of `target_version` on `channel` to this install since `since`: the
    /// quiet period.
    pub async fn recent_notification(
        &self,
        plugin_id: Uuid,
        target_version: &str,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Notification>(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM plugin_upgrade_notifications \
             WHERE installation_id = $1 AND target_version = $2 AND channel = $3 AND created_at >= $4 \
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(plugin_id)
        .bind(target_version)
        .bind(channel)
        .bind(since)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// Records notices for one install, each with its outbox message, in one transaction;
    /// audited when an Ops agent sent them.
    pub async fn record_notifications(
        &self,
        target: &NotificationTarget,
        notices: &[NewNotification],
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut ids = Vec::with_capacity(notices.len());
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for notice in notices {
                let outbox_id = match &notice.delivery {
                    Some(message) => {
                        let id = Uuid::now_v7();
                        insert_outbox!(tx, message, id, now);
                        Some(id)
                    }
                    None => None,
                };
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO plugin_upgrade_notifications (id, installation_id, merchant_id, channel, priority, \
                       current_version, target_version, security, subject, body, outbox_id, automatic, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(id)
                .bind(target.installation_id)
                .bind(target.merchant_id)
                .bind(notice.channel)
                .bind(notice.priority)
                .bind(&notice.current_version)
                .bind(&notice.target_version)
                .bind(notice.security)
                .bind(&notice.subject)
                .bind(&notice.body)
                .bind(outbox_id)
                .bind(notice.automatic)
                .bind(audit.and_then(|a| a.actor_id))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if let Some(audit) = audit {
                    insert_audit!(tx, audit, "notification.send", "installation", Some(target.installation_id.to_string()),
                        json!({"notification_id": id, "channel": notice.channel, "priority": notice.priority,
                               "target_version": notice.target_version}), now);
                }
                ids.push(id);
            }
            tx.commit().await?;
        });
        let mut stored = Vec::with_capacity(ids.len());
        for id in ids {
            stored.extend(self.notification(id).await?);
        }
        Ok(stored)
    }

    pub async fn notification(&self, id: Uuid) -> Result<Option<Notification>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Notification>(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM plugin_upgrade_notifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// In-app notices of an install not acknowledged yet, newest first.
    pub async fn pending_in_app(&self, plugin_id: Uuid) -> Result<Vec<Notification>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Notification>(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM plugin_upgrade_notifications \
             WHERE installation_id = $1 AND channel = 'in-app' AND acknowledged_at IS NULL \
             ORDER BY created_at DESC LIMIT 10"
        ))
        .bind(plugin_id)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Records the acknowledgement (the first one counts; later ones change nothing).
    pub async fn acknowledge_notification(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError> {
        on_write_pool!(self, pool => sqlx::query(
            "UPDATE plugin_upgrade_notifications SET acknowledged_at = $1 WHERE id = $2 AND acknowledged_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())?);
        self.notification(id).await
    }
}

impl Store {
    /// Sets how the notification channels reach a merchant (phone for SMS, webhook URL).
    pub async fn set_merchant_contacts(
        &self,
        merchant_id: Uuid,
        phone: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = on_write_pool!(self, pool => sqlx::query(
            "UPDATE merchants SET phone = COALESCE($1, phone), webhook_url = COALESCE($2, webhook_url) WHERE id = $3",
        )
        .bind(phone)
        .bind(webhook_url)
        .bind(merchant_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done > 0)
    }
}

impl Store {
    /// Installations with in-app notices not acknowledged yet.
    pub async fn installs_with_pending_in_app(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT DISTINCT installation_id FROM plugin_upgrade_notifications \
             WHERE channel = 'in-app' AND acknowledged_at IS NULL",
        )
        .fetch_all(pool)
        .await?))
    }
}
