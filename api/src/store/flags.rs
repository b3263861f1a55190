//! Feature flags in the store: the store's copies of flags, their overrides,
//! their audit trail (before and after, as JSON), rollout plans and the
//! platform alerts a halted rollout raises. Every change writes its
//! `feature_flag_audit` row and its Ops `audit_log` row in the same
//! transaction, and on PostgreSQL a NOTIFY that other replicas receive once
//! it commits.

use super::{insert_audit, on_pool, on_write_pool, AuditContext, BackendKind, Store, StoreError};
use chrono::{DateTime, Utc};
use engine::{FlagDefinition, FlagOverride, OverrideScope};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// The PostgreSQL channel of the invalidation bus (`crate::invalidation`).
pub const INVALIDATION_CHANNEL: &str = "autoheal_invalidation";

/// Topic of flag changes on the invalidation bus.
pub const FLAGS_TOPIC: &str = "flags";

/// Writes `feature_flag_audit` and `audit_log` rows and, on PostgreSQL, the
/// NOTIFY of the change, inside an open transaction.
macro_rules! flag_changed {
    ($store:expr, $tx:expr, $audit:expr, $key:expr, $action:expr, $before:expr, $after:expr, $now:expr) => {{
        let before: Option<Value> = $before;
        let after: Option<Value> = $after;
        sqlx::query(
            "INSERT INTO feature_flag_audit (id, flag_key, action, actor_kind, actor_id, request_id, before, after, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7())
        .bind($key)
        .bind($action)
        .bind($audit.actor_kind)
        .bind($audit.actor_id)
        .bind($audit.request_id.as_deref())
        .bind(before.as_ref().map(Json))
        .bind(after.as_ref().map(Json))
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        insert_audit!(
            $tx,
            $audit,
            $action,
            "feature_flag",
            Some($key.to_owned()),
            json!({"before": before, "after": after}),
            $now
        );
        if $store.kind() == BackendKind::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(INVALIDATION_CHANNEL)
                .bind(format!("{FLAGS_TOPIC}:{}", $key))
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Inserts or updates a flag's definition (see [`FlagWrite`]) inside an open
/// transaction, audited; evaluates to the stored row.
macro_rules! apply_flag_write {
    ($store:expr, $tx:expr, $write:expr, $audit:expr, $now:expr) => {{
            let key = $write.after.key.as_str();
            let row = match $write.expected_version {
                None => sqlx::query_as::<_, FlagRow>(
                    "INSERT INTO feature_flags \
                     (key, flag_type, enabled, archived, definition, version, created_at, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) ON CONFLICT (key) DO NOTHING \
                     RETURNING definition, version, updated_at, updated_by",
                )
                .bind(key)
                .bind($write.after.flag_type.as_str())
                .bind($write.after.enabled)
                .bind($write.after.archived)
                .bind(Json(&$write.after))
                .bind($now)
                .bind($audit.actor_id)
                .fetch_optional(&mut *$tx)
                .await?,
                Some(version) => sqlx::query_as::<_, FlagRow>(
                    "UPDATE feature_flags SET flag_type = $2, enabled = $3, archived = $4, definition = $5, \
                     version = version + 1, updated_at = $6, updated_by = $7 \
                     WHERE key = $1 AND version = $8 \
                     RETURNING definition, version, updated_at, updated_by",
                )
                .bind(key)
                .bind($write.after.flag_type.as_str())
                .bind($write.after.enabled)
                .bind($write.after.archived)
                .bind(Json(&$write.after))
                .bind($now)
                .bind($audit.actor_id)
                .bind(version)
                .fetch_optional(&mut *$tx)
                .await?,
            };
            let Some(row) = row else {
                return Err(StoreError::Conflict(format!(
                    "flag {key} was changed by another request; read it again and retry"
                )));
            };
            flag_changed!($store, $tx, $audit, key, $write.action, to_json(&$write.before), to_json(&Some($write.after.clone())), $now);
            row
        }};
}

/// A flag as the store holds it.
#[derive(Clone, Debug, Serialize)]
pub struct StoredFlag {
    pub definition: FlagDefinition,
    /// Increases on every write; a write naming an older version is refused.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct FlagRow {
    definition: Json<FlagDefinition>,
    version: i64,
    updated_at: DateTime<Utc>,
    updated_by: Option<Uuid>,
}

impl From<FlagRow> for StoredFlag {
    fn from(row: FlagRow) -> Self {
        Self {
            definition: row.definition.0,
            version: row.version,
            updated_at: row.updated_at,
            updated_by: row.updated_by,
        }
    }
}

/// A change to one flag's definition.
#[derive(Clone, Debug)]
pub struct FlagWrite {
    /// `flag.create`, `flag.update`, `flag.kill`, `rollout.advance` …
    pub action: &'static str,
    /// The flag as it was in force (the file's copy when the store had none).
    pub before: Option<FlagDefinition>,
    pub after: FlagDefinition,
    /// The store version the change was based on; None when the store has no
    /// copy yet (a create, or the first change of a file flag).
    pub expected_version: Option<i64>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct StoredOverride {
    pub id: Uuid,
    pub flag_key: String,
    pub scope: String,
    pub target: String,
    pub value: Json<Value>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct FlagAuditEntry {
    pub id: Uuid,
    pub flag_key: String,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub before: Option<Json<Value>>,
    pub after: Option<Json<Value>>,
    pub at: DateTime<Utc>,
}

/// One step of a rollout plan: raise the flag to `percentage`, then hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStep {
    pub percentage: u32,
    pub hold_minutes: u32,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RolloutPlan {
    pub id: Uuid,
    pub flag_key: String,
    pub steps: Json<Vec<RolloutStep>>,
    /// Index of the step in force.
    pub current_step: i64,
    /// `active`, `completed`, `halted`, `cancelled`.
    pub status: String,
    /// Percent of failed outcomes (payment_failed, error) in the cohort above
    /// which the plan halts.
    pub error_rate_threshold: f64,
    /// Fewer outcomes than this in the cohort are too few to judge.
    pub min_outcomes: i64,
    pub step_started_at: DateTime<Utc>,
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

const PLAN_COLUMNS: &str = "id, flag_key, steps, current_step, status, error_rate_threshold, \
     min_outcomes, step_started_at, status_reason, created_at, created_by, updated_at";

/// A plan to create.
#[derive(Clone, Debug)]
pub struct NewRollout {
    pub flag_key: String,
    pub steps: Vec<RolloutStep>,
    pub error_rate_threshold: f64,
    pub min_outcomes: i64,
}

/// Outcomes one merchant's installations reported in a window.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MerchantOutcomes {
    pub merchant_id: Uuid,
    pub errors: i64,
    pub outcomes: i64,
}

/// An alert for Ops (seed 002/000 shape).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PlatformAlert {
    pub id: Uuid,
    pub name: String,
    /// `critical`, `warning`, `info`.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    pub summary: String,
    pub labels: Json<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub resolved_by: Option<Uuid>,
}

fn to_json(definition: &Option<FlagDefinition>) -> Option<Value> {
    definition
        .as_ref()
        .map(|d| serde_json::to_value(d).expect("a flag serializes"))
}

impl Store {
    /// The PostgreSQL pool, for LISTEN; None on SQLite.
    pub(crate) fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            super::Backend::Postgres(pool) => Some(pool),
            super::Backend::Sqlite { .. } => None,
        }
    }

    /// Every stored flag and every override, to build a snapshot from.
    pub async fn flag_state(&self) -> Result<(Vec<StoredFlag>, Vec<FlagOverride>), StoreError> {
        let (flags, overrides) = on_pool!(self, pool => {
            let flags = sqlx::query_as::<_, FlagRow>(
                "SELECT definition, version, updated_at, updated_by FROM feature_flags ORDER BY key",
            )
            .fetch_all(pool)
            .await?;
            let overrides = sqlx::query_as::<_, StoredOverride>(
                "SELECT id, flag_key, scope, target, value, reason, created_at, created_by \
                 FROM feature_flag_overrides ORDER BY flag_key, scope, target",
            )
            .fetch_all(pool)
            .await?;
            (flags, overrides)
        });
        let overrides = overrides
            .into_iter()
            .map(|row| FlagOverride {
                flag_key: row.flag_key,
                scope: if row.scope == "user" {
                    OverrideScope::User
                } else {
                    OverrideScope::Tenant
                },
                target: row.target,
                value: row.value.0,
            })
            .collect();
        Ok((flags.into_iter().map(StoredFlag::from).collect(), overrides))
    }

    /// Writes a flag's definition; audited. A conflict when the store's copy
    /// is not at `expected_version` (another replica or request changed it).
    pub async fn write_flag(
        &self,
        write: &FlagWrite,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<StoredFlag, StoreError> {
        let stored = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = apply_flag_write!(self, tx, write, audit, now);
            tx.commit().await?;
            row
        });
        Ok(stored.into())
    }

    /// Removes the store's copy of a flag and its overrides; audited. None
    /// when the store has no copy.
    pub async fn delete_flag(
        &self,
        key: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<FlagDefinition>, StoreError> {
        let deleted = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let deleted: Option<Json<FlagDefinition>> =
                sqlx::query_scalar("DELETE FROM feature_flags WHERE key = $1 RETURNING definition")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(before) = &deleted {
                sqlx::query("DELETE FROM feature_flag_overrides WHERE flag_key = $1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE feature_flag_rollouts SET status = 'cancelled', status_reason = $2, updated_at = $3 \
                     WHERE flag_key = $1 AND status = 'active'",
                )
                .bind(key)
                .bind("the flag was deleted")
                .bind(now)
                .execute(&mut *tx)
                .await?;
                flag_changed!(self, tx, audit, key, "flag.delete", to_json(&Some(before.0.clone())), None, now);
                tx.commit().await?;
            }
            deleted
        });
        Ok(deleted.map(|definition| definition.0))
    }

    pub async fn flag_overrides(&self, key: &str) -> Result<Vec<StoredOverride>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, StoredOverride>(
            "SELECT id, flag_key, scope, target, value, reason, created_at, created_by \
             FROM feature_flag_overrides WHERE flag_key = $1 ORDER BY scope, target",
        )
        .bind(key)
        .fetch_all(pool)
        .await?))
    }

    /// Sets the override of `target` (replacing one it had); audited.
    pub async fn set_flag_override(
        &self,
        entry: &FlagOverride,
        reason: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<StoredOverride, StoreError> {
        let key = entry.flag_key.as_str();
        let stored = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let before = sqlx::query_as::<_, StoredOverride>(
                "SELECT id, flag_key, scope, target, value, reason, created_at, created_by \
                 FROM feature_flag_overrides WHERE flag_key = $1 AND scope = $2 AND target = $3",
            )
            .bind(key)
            .bind(entry.scope.as_str())
            .bind(&entry.target)
            .fetch_optional(&mut *tx)
            .await?;
            let stored = sqlx::query_as::<_, StoredOverride>(
                "INSERT INTO feature_flag_overrides (id, flag_key, scope, target, value, reason, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (flag_key, scope, target) DO UPDATE SET value = excluded.value, \
                   reason = excluded.reason, created_at = excluded.created_at, created_by = excluded.created_by \
                 RETURNING id, flag_key, scope, target, value, reason, created_at, created_by",
            )
            .bind(Uuid::now_v7())
            .bind(key)
            .bind(entry.scope.as_str())
            .bind(&entry.target)
            .bind(Json(&entry.value))
            .bind(reason)
            .bind(now)
            .bind(audit.actor_id)
            .fetch_one(&mut *tx)
            .await?;
            let before = before.map(|b| json!({"override": {"scope": b.scope, "target": b.target, "value": b.value.0, "reason": b.reason}}));
            let after = json!({"override": {"scope": stored.scope, "target": stored.target, "value": stored.value.0, "reason": stored.reason}});
            flag_changed!(self, tx, audit, key, "flag.override.set", before, Some(after), now);
            tx.commit().await?;
            stored
        });
        Ok(stored)
    }

    /// Removes one override; audited. None when there is none.
    pub async fn delete_flag_override(
        &self,
        key: &str,
        scope: OverrideScope,
        target: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredOverride>, StoreError> {
        let deleted = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query_as::<_, StoredOverride>(
                "DELETE FROM feature_flag_overrides WHERE flag_key = $1 AND scope = $2 AND target = $3 \
                 RETURNING id, flag_key, scope, target, value, reason, created_at, created_by",
            )
            .bind(key)
            .bind(scope.as_str())
            .bind(target)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(gone) = &deleted {
                let before = json!({"override": {"scope": gone.scope, "target": gone.target, "value": gone.value.0, "reason": gone.reason}});
                flag_changed!(self, tx, audit, key, "flag.override.delete", Some(before), None, now);
                tx.commit().await?;
            }
            deleted
        });
        Ok(deleted)
    }

    /// The audit trail of one flag, newest first.
    pub async fn flag_audit(
        &self,
        key: &str,
        limit: i64,
    ) -> Result<Vec<FlagAuditEntry>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, FlagAuditEntry>(
            "SELECT id, flag_key, action, actor_kind, actor_id, request_id, before, after, at \
             FROM feature_flag_audit WHERE flag_key = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(key)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Starts a plan whose first step is already applied to `write.after`;
    /// audited. A conflict when the flag has an active plan.
    pub async fn create_rollout(
        &self,
        plan: &NewRollout,
        write: &FlagWrite,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<RolloutPlan, StoreError> {
        let key = plan.flag_key.as_str();
        let created = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let created = sqlx::query_as::<_, RolloutPlan>(&format!(
                "INSERT INTO feature_flag_rollouts \
                 (id, flag_key, steps, current_step, status, error_rate_threshold, min_outcomes, \
                  step_started_at, status_reason, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, 0, 'active', $4, $5, $6, NULL, $6, $7, $6) \
                 ON CONFLICT DO NOTHING RETURNING {PLAN_COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(key)
            .bind(Json(&plan.steps))
            .bind(plan.error_rate_threshold)
            .bind(plan.min_outcomes)
            .bind(now)
            .bind(audit.actor_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(created) = created else {
                return Err(StoreError::Conflict(format!("flag {key} already has an active rollout plan")));
            };
            apply_flag_write!(self, tx, write, audit, now);
            let after = json!({"rollout": {"id": created.id, "steps": plan.steps,
                "error_rate_threshold": plan.error_rate_threshold, "min_outcomes": plan.min_outcomes}});
            flag_changed!(self, tx, audit, key, "rollout.create", None, Some(after), now);
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    pub async fn rollouts(&self, key: &str) -> Result<Vec<RolloutPlan>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, RolloutPlan>(&format!(
            "SELECT {PLAN_COLUMNS} FROM feature_flag_rollouts WHERE flag_key = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(key)
        .fetch_all(pool)
        .await?),
        )
    }

    pub async fn active_rollouts(&self) -> Result<Vec<RolloutPlan>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, RolloutPlan>(&format!(
            "SELECT {PLAN_COLUMNS} FROM feature_flag_rollouts WHERE status = 'active' ORDER BY created_at, id"
        ))
        .fetch_all(pool)
        .await?),
        )
    }

    /// Moves an active plan from `plan.current_step` to `status`/`next_step`
    /// and, when given, writes the flag's new percentage with it; audited,
    /// and for a halt an alert. Returns false when another replica moved the
    /// plan first (the step is applied once).
    pub async fn move_rollout(
        &self,
        plan: &RolloutPlan,
        change: &RolloutChange,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = plan.flag_key.as_str();
        let moved = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE feature_flag_rollouts SET current_step = $3, status = $4, status_reason = $5, \
                 step_started_at = $6, updated_at = $6 \
                 WHERE id = $1 AND current_step = $2 AND status = 'active'",
            )
            .bind(plan.id)
            .bind(plan.current_step)
            .bind(change.next_step)
            .bind(change.status)
            .bind(change.reason.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(false);
            }
            if let Some(write) = &change.flag {
                apply_flag_write!(self, tx, write, audit, now);
            }
            let before = json!({"rollout": {"id": plan.id, "status": plan.status, "current_step": plan.current_step}});
            let after = json!({"rollout": {"id": plan.id, "status": change.status,
                "current_step": change.next_step, "reason": change.reason}});
            flag_changed!(self, tx, audit, key, change.action, Some(before), Some(after), now);
            if let Some(alert) = &change.alert {
                super::monitoring::insert_alert!(
                    tx,
                    Uuid::now_v7(),
                    &alert.name,
                    alert.severity,
                    &alert.summary,
                    &alert.labels,
                    now
                );
            }
            tx.commit().await?;
            true
        });
        Ok(moved)
    }

    /// Failed and total payment/error outcomes per merchant since `since`
    /// (the events the fleet's error rate is computed from).
    pub async fn merchant_outcomes(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<MerchantOutcomes>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, MerchantOutcomes>(
            "SELECT merchant_id, \
                    SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END) AS errors, \
                    COUNT(*) AS outcomes \
             FROM plugin_telemetry_events \
             WHERE received_at >= $1 AND event_type IN ('payment_success', 'payment_failed', 'error') \
             GROUP BY merchant_id",
        )
        .bind(since)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Alerts, newest first; `status` filters.
    pub async fn platform_alerts(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<PlatformAlert>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, PlatformAlert>(
            "SELECT id, name, severity, status, summary, labels, created_at, updated_at, acknowledged_at, resolved_at, \
                    acknowledged_by, resolved_by \
             FROM platform_alerts WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id DESC LIMIT 500",
        )
        .bind(status)
        .fetch_all(pool)
        .await?))
    }
}

/// A rollout plan's move: advance, complete, halt or cancel.
#[derive(Clone, Debug)]
pub struct RolloutChange {
    /// `rollout.advance`, `rollout.complete`, `rollout.halt`, `rollout.cancel`.
    pub action: &'static str,
    pub next_step: i64,
    pub status: &'static str,
    pub reason: Option<String>,
    /// The flag at the new step's percentage.
    pub flag: Option<FlagWrite>,
    pub alert: Option<NewAlert>,
}

#[derive(Clone, Debug)]
pub struct NewAlert {
    pub name: String,
    pub severity: &'static str,
    pub summary: String,
    pub labels: Value,
}
