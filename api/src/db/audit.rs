//! The audit log: who did what to which target, from which request. An Ops action writes
//! its row with [`insert_audit`] inside the transaction of the change it records, so a
//! change and its audit row commit together or not at all.

use super::{on_pool, on_tx, Store, StoreError, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// Who performs an audited action, and from which request.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub actor_kind: &'static str,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
}

impl AuditContext {
    /// The actor of changes the server makes on its own (a rollout step, a tripped breaker).
    pub fn system() -> Self {
        Self {
            actor_kind: "system",
            actor_id: None,
            request_id: None,
        }
    }

    /// The actor of a change made with the `autoheal` CLI (a credential revoked from a shell).
    pub fn cli() -> Self {
        Self {
            actor_kind: "cli",
            actor_id: None,
            request_id: None,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    #[schema(value_type = serde_json::Value)]
    pub details: Json<Value>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// Writes an audit row on `tx`, inside the transaction of the change it records.
pub(crate) async fn insert_audit(
    tx: &mut Tx<'_>,
    audit: &AuditContext,
    action: &str,
    target_type: &str,
    target_id: Option<String>,
    details: Value,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let details = Json(details);
    on_tx!(tx, connection => execute sqlx::query(
        "INSERT INTO audit_log (id, actor_kind, actor_id, action, target_type, target_id, details, request_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(audit.actor_kind)
    .bind(audit.actor_id)
    .bind(action)
    .bind(target_type)
    .bind(target_id.as_deref())
    .bind(&details)
    .bind(audit.request_id.as_deref())
    .bind(now))?;
    Ok(())
}

impl Store {
    /// Records an Ops action that changes nothing in the store (a rules reload, say).
    pub async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &str,
        target_type: &str,
        details: Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        insert_audit(
            &mut transaction.tx(),
            audit,
            action,
            target_type,
            None,
            details,
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64, offset: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_log_matching(&AuditFilter::default(), limit, offset)
            .await
    }

    /// A page of the entries `filter` matches, newest first.
    pub async fn audit_log_matching(
        &self,
        filter: &AuditFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // `action` is a prefix: the pattern's own wildcards are escaped.
        let action = filter.action_prefix.as_ref().map(|prefix| {
            let escaped = prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        });
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditEntry>(
            "SELECT id, actor_kind, actor_id, action, target_type, target_id, details, request_id, at \
             FROM audit_log \
             WHERE ($1 IS NULL OR actor_kind = $1) AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\') \
               AND ($3 IS NULL OR target_type = $3) \
             ORDER BY at DESC, id DESC LIMIT $4 OFFSET $5",
        )
        .bind(filter.actor_kind.as_deref())
        .bind(action.as_deref())
        .bind(filter.target_type.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }
}

/// Which audit entries to read: each given field must match.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor_kind: Option<String>,
    /// The action starts with this (`flag.` is every flag change).
    pub action_prefix: Option<String>,
    pub target_type: Option<String>,
}
