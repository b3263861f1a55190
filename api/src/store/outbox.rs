//! The outbox: outbound messages written with what caused them, leased by the delivery
//! worker, and their fate (delivered, retried later, or dead for Ops to retry).

use super::{insert_audit, on_pool, on_write_pool, AuditContext, Backend, Store, StoreError};
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

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub channel: String,
    pub destination: String,
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

/// Inserts one outbox row with id `$id` inside an open transaction (`&mut *tx`), due at `$now`.
macro_rules! insert_outbox {
    ($tx:expr, $message:expr, $id:expr, $now:expr) => {{
        let message: &$crate::store::NewOutboxMessage = $message;
        sqlx::query(
            "INSERT INTO outbox_messages (id, channel, destination, payload, source_type, source_id, \
               status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
        )
        .bind($id)
        .bind(message.channel)
        .bind(&message.destination)
        .bind(sqlx::types::Json(&message.payload))
        .bind(message.source_type)
        .bind(message.source_id.as_deref())
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use insert_outbox;

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

#[derive(Clone, Debug, Default, Serialize)]
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
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for message in messages {
                insert_outbox!(tx, message, Uuid::now_v7(), now);
            }
            tx.commit().await?;
        });
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
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (id, outcome) in outcomes {
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
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
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
        let retried = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE outbox_messages SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                 dead_at = NULL, leased_until = NULL WHERE id = $2 AND status = 'dead'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                false
            } else {
                insert_audit!(tx, audit, "outbox.retry", "outbox_message", Some(id.to_string()), json!({}), now);
                tx.commit().await?;
                true
            }
        });
        if !retried {
            return Ok(None);
        }
        self.outbox_message(id).await
    }
}
