//! The outbox: outbound messages written with what caused them, leased by the delivery
//! worker, and their fate (delivered, retried later, or dead for Ops to retry). And upgrade
//! notifications: one row per notice and channel, written in one transaction with the
//! outbox message that delivers it (in-app notices have none: the heartbeat carries them
//! until they are acknowledged).

use crate::db::{
    insert_audit, on_pool, on_tx, on_write_pool, AuditContext, Backend, Store, StoreError, Tx,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// A message to send, before it is stored.
#[derive(Clone, Debug)]
pub struct NewOutboxMessage {
    /// `webhook`, `cloudevents`, `slack`, `sms` or `email`.
    pub channel: &'static str,
    /// Where it goes (a URL, an address); also the circuit breaker's key.
    pub destination: String,
    pub payload: Value,
    /// What caused it (`interop_event`, `upgrade_notification`, …) and its id.
    pub source_type: &'static str,
    pub source_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub channel: String,
    pub destination: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: Json<Value>,
    pub source_type: String,
    pub source_id: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error_class: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
}

const OUTBOX_COLUMNS: &str = "id, channel, destination, payload, source_type, source_id, status, \
     attempts, next_attempt_at, last_error_class, last_error, created_at, delivered_at, dead_at";

/// Writes one outbox message with `id` on `tx`, due at `now`: in the transaction of what
/// caused it, so it is sent if and only if that commits.
pub(crate) async fn insert_outbox(
    tx: &mut Tx<'_>,
    message: &NewOutboxMessage,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => execute sqlx::query(
        "INSERT INTO outbox_messages (id, channel, destination, payload, source_type, source_id, \
           status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
    )
    .bind(id)
    .bind(message.channel)
    .bind(&message.destination)
    .bind(Json(&message.payload))
    .bind(message.source_type)
    .bind(message.source_id.as_deref())
    .bind(now))?;
    Ok(())
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at `retry_at`; None: no more tries, the message is dead.
    Failed {
        class: &'static str,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
    /// Not attempted (the destination's breaker is open): due again at `until`, the
    /// attempt not counted.
    Deferred {
        until: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct OutboxCounts {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

impl Store {
    /// Stores messages to send, in a transaction of their own.
    pub async fn enqueue(
        &self,
        messages: &[NewOutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for message in messages {
            insert_outbox(tx, message, Uuid::now_v7(), now).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Leases up to `limit` due messages until `now + lease`, oldest due first.
    pub async fn lease_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE outbox_messages SET leased_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox_messages \
                          WHERE status = 'pending' AND next_attempt_at <= $2 \
                            AND (leased_until IS NULL OR leased_until <= $2) \
                          ORDER BY next_attempt_at, id LIMIT $3 {lock}) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let mut leased: Vec<OutboxMessage> = on_write_pool!(self, pool => sqlx::query_as(&sql)
            .bind(now + lease)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        leased.sort_by(|a, b| {
            a.next_attempt_at
                .cmp(&b.next_attempt_at)
                .then(a.id.cmp(&b.id))
        });
        Ok(leased)
    }

    /// Records how the attempts of a round ended, in one transaction (one commit per round,
    /// not per message).
    pub async fn record_attempts(
        &self,
        outcomes: &[(Uuid, AttemptOutcome)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for (id, outcome) in outcomes {
            on_tx!(tx, c => {
                let query = match outcome {
                    AttemptOutcome::Delivered => sqlx::query(
                        "UPDATE outbox_messages SET status = 'delivered', delivered_at = $1, leased_until = NULL \
                         WHERE id = $2 AND status = 'pending'",
                    )
                    .bind(now)
                    .bind(*id),
                    AttemptOutcome::Failed { class, error, retry_at: Some(at) } => sqlx::query(
                        "UPDATE outbox_messages SET next_attempt_at = $1, last_error_class = $2, last_error = $3, \
                         leased_until = NULL WHERE id = $4 AND status = 'pending'",
                    )
                    .bind(*at)
                    .bind(*class)
                    .bind(error)
                    .bind(*id),
                    AttemptOutcome::Failed { class, error, retry_at: None } => sqlx::query(
                        "UPDATE outbox_messages SET status = 'dead', dead_at = $1, last_error_class = $2, \
                         last_error = $3, leased_until = NULL WHERE id = $4 AND status = 'pending'",
                    )
                    .bind(now)
                    .bind(*class)
                    .bind(error)
                    .bind(*id),
                    AttemptOutcome::Deferred { until } => sqlx::query(
                        "UPDATE outbox_messages SET next_attempt_at = $1, attempts = attempts - 1, leased_until = NULL \
                         WHERE id = $2 AND status = 'pending'",
                    )
                    .bind(*until)
                    .bind(*id),
                };
                query.execute(c).await.map(|_| ())
            })?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub async fn outbox_message(&self, id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, OutboxMessage>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox_messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    pub async fn list_outbox(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, OutboxMessage>(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox_messages WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?),
        )
    }

    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbox_messages GROUP BY status",
        )
        .fetch_all(pool)
        .await?);
        let mut counts = OutboxCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                _ => counts.dead = n,
            }
        }
        Ok(counts)
    }

    /// Ops send a dead letter again: due now, attempts reset; audited. None when there is
    /// no dead message with that id.
    pub async fn retry_dead_letter(
        &self,
        id: Uuid,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let moved = on_tx!(tx, c => execute sqlx::query(
            "UPDATE outbox_messages SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             dead_at = NULL, leased_until = NULL WHERE id = $2 AND status = 'dead'",
        )
        .bind(now)
        .bind(id))?;
        let retried = moved > 0;
        if retried {
            insert_audit(
                tx,
                audit,
                "outbox.retry",
                "outbox_message",
                Some(id.to_string()),
                json!({}),
                now,
            )
            .await?;
            transaction.commit().await?;
        }
        if !retried {
            return Ok(None);
        }
        self.outbox_message(id).await
    }
}
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

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for notice in notices {
            let outbox_id = match &notice.delivery {
                Some(message) => {
                    let id = Uuid::now_v7();
                    insert_outbox(tx, message, id, now).await?;
                    Some(id)
                }
                None => None,
            };
            let id = Uuid::now_v7();
            on_tx!(tx, c => execute sqlx::query(
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
            .bind(now))?;
            if let Some(audit) = audit {
                insert_audit(
                    tx,
                    audit,
                    "notification.send",
                    "installation",
                    Some(target.installation_id.to_string()),
                    json!({"notification_id": id, "channel": notice.channel, "priority": notice.priority,
                           "target_version": notice.target_version}),
                    now,
                )
                .await?;
            }
            ids.push(id);
        }
        transaction.commit().await?;
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
