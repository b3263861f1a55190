//! Feature flags in the store: the store's copies of flags, their overrides, their audit
//! trail (before and after, as JSON) and rollout plans. Every change writes its
//! `feature_flag_audit` row and its Ops `audit_log` row in the same transaction, and on
//! PostgreSQL a NOTIFY that other replicas receive once it commits.

use crate::db::{insert_audit, notify, on_pool, on_tx, AuditContext, Store, StoreError, Tx};
use crate::ops::{insert_alert, NewAlert};
use chrono::{DateTime, Utc};
use engine::{FlagDefinition, FlagOverride, OverrideScope};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

/// Topic of flag changes on the invalidation bus.
pub const FLAGS_TOPIC: &str = "flags";

/// Records a change of flag `key` on `tx`: its `feature_flag_audit` row, its `audit_log`
/// row and, on PostgreSQL, the NOTIFY of the change.
async fn flag_changed(
    tx: &mut Tx<'_>,
    audit: &AuditContext,
    key: &str,
    action: &str,
    before: Option<Value>,
    after: Option<Value>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => execute sqlx::query(
        "INSERT INTO feature_flag_audit (id, flag_key, action, actor_kind, actor_id, request_id, before, after, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(key)
    .bind(action)
    .bind(audit.actor_kind)
    .bind(audit.actor_id)
    .bind(audit.request_id.as_deref())
    .bind(before.as_ref().map(Json))
    .bind(after.as_ref().map(Json))
    .bind(now))?;
    insert_audit(
        tx,
        audit,
        action,
        "feature_flag",
        Some(key.to_owned()),
        json!({"before": before, "after": after}),
        now,
    )
    .await?;
    notify(tx, FLAGS_TOPIC, key).await
}

/// Inserts or updates a flag's definition (see [`FlagWrite`]) on `tx`, audited; the stored
/// row. A conflict when the store's copy is not at the version the write expects.
async fn apply_flag_write(
    tx: &mut Tx<'_>,
    write: &FlagWrite,
    audit: &AuditContext,
    now: DateTime<Utc>,
) -> Result<FlagRow, StoreError> {
    let key = write.after.key.as_str();
    let row = match write.expected_version {
        None => on_tx!(tx, c => sqlx::query_as::<_, FlagRow>(
            "INSERT INTO feature_flags \
             (key, flag_type, enabled, archived, definition, version, created_at, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) ON CONFLICT (key) DO NOTHING \
             RETURNING definition, version, updated_at, updated_by",
        )
        .bind(key)
        .bind(write.after.flag_type.as_str())
        .bind(write.after.enabled)
        .bind(write.after.archived)
        .bind(Json(&write.after))
        .bind(now)
        .bind(audit.actor_id)
        .fetch_optional(c)
        .await)?,
        Some(version) => on_tx!(tx, c => sqlx::query_as::<_, FlagRow>(
            "UPDATE feature_flags SET flag_type = $2, enabled = $3, archived = $4, definition = $5, \
             version = version + 1, updated_at = $6, updated_by = $7 \
             WHERE key = $1 AND version = $8 \
             RETURNING definition, version, updated_at, updated_by",
        )
        .bind(key)
        .bind(write.after.flag_type.as_str())
        .bind(write.after.enabled)
        .bind(write.after.archived)
        .bind(Json(&write.after))
        .bind(now)
        .bind(audit.actor_id)
        .bind(version)
        .fetch_optional(c)
        .await)?,
    };
    let Some(row) = row else {
        return Err(StoreError::Conflict(format!(
            "flag {key} was changed by another request; read it again and retry"
        )));
    };
    flag_changed(
        tx,
        audit,
        key,
        write.action,
        to_json(&write.before),
        to_json(&Some(write.after.clone())),
        now,
    )
    .await?;
    Ok(row)
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

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoredOverride {
    pub id: Uuid,
    pub flag_key: String,
    pub scope: String,
    pub target: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Json<Value>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FlagAuditEntry {
    pub id: Uuid,
    pub flag_key: String,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub before: Option<Json<Value>>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub after: Option<Json<Value>>,
    pub at: DateTime<Utc>,
}

/// One step of a rollout plan: raise the flag to `percentage`, then hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStep {
    pub percentage: u32,
    pub hold_minutes: u32,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RolloutPlan {
    pub id: Uuid,
    pub flag_key: String,
    #[schema(value_type = Vec<RolloutStep>)]
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

fn to_json(definition: &Option<FlagDefinition>) -> Option<Value> {
    definition
        .as_ref()
        .map(|d| serde_json::to_value(d).expect("a flag serializes"))
}

impl Store {
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
        let mut transaction = self.begin().await?;
        let row = apply_flag_write(&mut transaction.tx(), write, audit, now).await?;
        transaction.commit().await?;
        Ok(row.into())
    }

    /// Removes the store's copy of a flag and its overrides; audited. None
    /// when the store has no copy.
    pub async fn delete_flag(
        &self,
        key: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<FlagDefinition>, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let deleted: Option<Json<FlagDefinition>> = on_tx!(tx, c => sqlx::query_scalar(
            "DELETE FROM feature_flags WHERE key = $1 RETURNING definition",
        )
        .bind(key)
        .fetch_optional(c)
        .await)?;
        let Some(Json(before)) = deleted else {
            return Ok(None);
        };
        on_tx!(tx, c => execute sqlx::query("DELETE FROM feature_flag_overrides WHERE flag_key = $1")
            .bind(key))?;
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE feature_flag_rollouts SET status = 'cancelled', status_reason = $2, updated_at = $3 \
             WHERE flag_key = $1 AND status = 'active'",
        )
        .bind(key)
        .bind("the flag was deleted")
        .bind(now))?;
        flag_changed(
            tx,
            audit,
            key,
            "flag.delete",
            to_json(&Some(before.clone())),
            None,
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(before))
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let before = on_tx!(tx, c => sqlx::query_as::<_, StoredOverride>(
            "SELECT id, flag_key, scope, target, value, reason, created_at, created_by \
             FROM feature_flag_overrides WHERE flag_key = $1 AND scope = $2 AND target = $3",
        )
        .bind(key)
        .bind(entry.scope.as_str())
        .bind(&entry.target)
        .fetch_optional(c)
        .await)?;
        let stored = on_tx!(tx, c => sqlx::query_as::<_, StoredOverride>(
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
        .fetch_one(c)
        .await)?;
        let after = override_json(&stored);
        flag_changed(
            tx,
            audit,
            key,
            "flag.override.set",
            before.as_ref().map(override_json),
            Some(after),
            now,
        )
        .await?;
        transaction.commit().await?;
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let deleted = on_tx!(tx, c => sqlx::query_as::<_, StoredOverride>(
            "DELETE FROM feature_flag_overrides WHERE flag_key = $1 AND scope = $2 AND target = $3 \
             RETURNING id, flag_key, scope, target, value, reason, created_at, created_by",
        )
        .bind(key)
        .bind(scope.as_str())
        .bind(target)
        .fetch_optional(c)
        .await)?;
        if let Some(gone) = &deleted {
            flag_changed(
                tx,
                audit,
                key,
                "flag.override.delete",
                Some(override_json(gone)),
                None,
                now,
            )
            .await?;
            transaction.commit().await?;
        }
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let insert = format!(
            "INSERT INTO feature_flag_rollouts \
             (id, flag_key, steps, current_step, status, error_rate_threshold, min_outcomes, \
              step_started_at, status_reason, created_at, created_by, updated_at) \
             VALUES ($1, $2, $3, 0, 'active', $4, $5, $6, NULL, $6, $7, $6) \
             ON CONFLICT DO NOTHING RETURNING {PLAN_COLUMNS}"
        );
        let created = on_tx!(tx, c => sqlx::query_as::<_, RolloutPlan>(&insert)
            .bind(Uuid::now_v7())
            .bind(key)
            .bind(Json(&plan.steps))
            .bind(plan.error_rate_threshold)
            .bind(plan.min_outcomes)
            .bind(now)
            .bind(audit.actor_id)
            .fetch_optional(c)
            .await)?;
        let Some(created) = created else {
            return Err(StoreError::Conflict(format!(
                "flag {key} already has an active rollout plan"
            )));
        };
        apply_flag_write(tx, write, audit, now).await?;
        let after = json!({"rollout": {"id": created.id, "steps": plan.steps,
            "error_rate_threshold": plan.error_rate_threshold, "min_outcomes": plan.min_outcomes}});
        flag_changed(tx, audit, key, "rollout.create", None, Some(after), now).await?;
        transaction.commit().await?;
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let moved = on_tx!(tx, c => execute sqlx::query(
            "UPDATE feature_flag_rollouts SET current_step = $3, status = $4, status_reason = $5, \
             step_started_at = $6, updated_at = $6 \
             WHERE id = $1 AND current_step = $2 AND status = 'active'",
        )
        .bind(plan.id)
        .bind(plan.current_step)
        .bind(change.next_step)
        .bind(change.status)
        .bind(change.reason.as_deref())
        .bind(now))?;
        if moved == 0 {
            return Ok(false);
        }
        if let Some(write) = &change.flag {
            apply_flag_write(tx, write, audit, now).await?;
        }
        let before = json!({"rollout": {"id": plan.id, "status": plan.status, "current_step": plan.current_step}});
        let after = json!({"rollout": {"id": plan.id, "status": change.status,
            "current_step": change.next_step, "reason": change.reason}});
        flag_changed(
            tx,
            audit,
            key,
            change.action,
            Some(before),
            Some(after),
            now,
        )
        .await?;
        if let Some(alert) = &change.alert {
            insert_alert(tx, Uuid::now_v7(), alert, now).await?;
        }
        transaction.commit().await?;
        Ok(true)
    }
}

/// An override as its audit rows show it.
fn override_json(entry: &StoredOverride) -> Value {
    json!({"override": {"scope": entry.scope, "target": entry.target, "value": entry.value.0, "reason": entry.reason}})
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

impl RolloutChange {
    /// The plan is cancelled where it stands, for `reason`.
    pub fn cancel(plan: &RolloutPlan, reason: String) -> Self {
        Self {
            action: "rollout.cancel",
            next_step: plan.current_step,
            status: "cancelled",
            reason: Some(reason),
            flag: None,
            alert: None,
        }
    }
}
