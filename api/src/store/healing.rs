//! The healing loop's records: healing logs, snapshots, the command queue and the per-rule
//! auto-apply breaker. Every state change is one transaction with a guard on the current
//! status, so a racing or illegal transition changes nothing and reports a conflict.

use super::{
    insert_audit, on_pool, on_write_pool, AuditContext, Backend, BackendKind, Store, StoreError,
    INVALIDATION_CHANNEL,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use std::collections::HashSet;
use uuid::Uuid;

/// The invalidation topic of a change to a rule's auto-apply breaker (key: the rule).
pub const RULE_BREAKERS_TOPIC: &str = "rule_breakers";

/// A command to queue for a plugin.
#[derive(Clone, Debug)]
pub(crate) struct NewCommand {
    pub id: Uuid,
    pub installation_id: Uuid,
    pub healing_log_id: Uuid,
    pub command_type: &'static str,
    pub payload: Value,
    pub priority: i32,
    pub issued_at: DateTime<Utc>,
}

/// The install state a patch was dry-run against, stored with the command it led to.
#[derive(Clone, Debug)]
pub(crate) struct NewSnapshot<'a> {
    pub id: Uuid,
    pub installation_id: Uuid,
    pub state: &'a Value,
    pub state_sha256: &'a str,
    pub created_at: DateTime<Utc>,
}

impl NewSnapshot<'_> {
    pub(crate) fn plugin_version(&self) -> &str {
        self.state
            .get("plugin_version")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// The columns a new command is inserted with, in the order its values are pushed.
pub(crate) const COMMAND_COLUMNS_INSERTED: &str =
    "id, installation_id, healing_log_id, command_type, command_payload, priority, status, issued_at";

/// The columns a snapshot is inserted with, in the order its values are pushed.
pub(crate) const SNAPSHOT_COLUMNS: &str =
    "id, installation_id, plugin_version, state, state_sha256, created_at";

/// The suffix that types a value for PostgreSQL when `typed` (a VALUES list outside an
/// INSERT has no columns to infer its types from), else nothing.
pub(crate) fn cast(typed: bool, postgres_type: &'static str) -> &'static str {
    if typed {
        postgres_type
    } else {
        ""
    }
}

/// Pushes `VALUES (…), …` of commands (`&[NewCommand]`) onto a query builder, each value
/// typed when `$typed` (see [`cast`]).
macro_rules! push_command_values {
    ($query:expr, $commands:expr, $typed:expr) => {{
        let commands: &[$crate::store::healing::NewCommand] = $commands;
        let typed: bool = $typed;
        let cast = |postgres_type| $crate::store::healing::cast(typed, postgres_type);
        $query.push_values(commands, |mut row, command| {
            row.push_bind(command.id)
                .push_unseparated(cast("::uuid"))
                .push_bind(command.installation_id)
                .push_unseparated(cast("::uuid"))
                .push_bind(command.healing_log_id)
                .push_unseparated(cast("::uuid"))
                .push_bind(command.command_type)
                .push_unseparated(cast("::text"))
                .push_bind(sqlx::types::Json(&command.payload))
                .push_unseparated(cast("::jsonb"))
                .push_bind(command.priority)
                .push_unseparated(cast("::integer"))
                .push_bind("pending")
                .push_unseparated(cast("::text"))
                .push_bind(command.issued_at)
                .push_unseparated(cast("::timestamptz"));
        });
    }};
}
pub(crate) use push_command_values;

/// Pushes `VALUES (…), …` of snapshots (`&[NewSnapshot]`), typed when `$typed`.
macro_rules! push_snapshot_values {
    ($query:expr, $snapshots:expr, $typed:expr) => {{
        let snapshots: &[$crate::store::healing::NewSnapshot] = $snapshots;
        let typed: bool = $typed;
        let cast = |postgres_type| $crate::store::healing::cast(typed, postgres_type);
        $query.push_values(snapshots, |mut row, snapshot| {
            row.push_bind(snapshot.id)
                .push_unseparated(cast("::uuid"))
                .push_bind(snapshot.installation_id)
                .push_unseparated(cast("::uuid"))
                .push_bind(snapshot.plugin_version())
                .push_unseparated(cast("::text"))
                .push_bind(sqlx::types::Json(snapshot.state))
                .push_unseparated(cast("::jsonb"))
                .push_bind(snapshot.state_sha256)
                .push_unseparated(cast("::text"))
                .push_bind(snapshot.created_at)
                .push_unseparated(cast("::timestamptz"));
        });
    }};
}
pub(crate) use push_snapshot_values;

/// Queues pending commands (`&[NewCommand]`) inside an open transaction (`&mut *tx`), in
/// one statement however many there are.
macro_rules! insert_commands {
    ($tx:expr, $commands:expr) => {{
        let commands: &[$crate::store::healing::NewCommand] = $commands;
        if !commands.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(format!(
                "INSERT INTO plugin_commands ({}) ",
                $crate::store::healing::COMMAND_COLUMNS_INSERTED
            ));
            $crate::store::healing::push_command_values!(insert, commands, false);
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}

/// Stores snapshots (`&[NewSnapshot]`) inside an open transaction, in one statement.
macro_rules! insert_snapshots {
    ($tx:expr, $snapshots:expr) => {{
        let snapshots: &[$crate::store::healing::NewSnapshot] = $snapshots;
        if !snapshots.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(format!(
                "INSERT INTO plugin_snapshots ({}) ",
                $crate::store::healing::SNAPSHOT_COLUMNS
            ));
            $crate::store::healing::push_snapshot_values!(insert, snapshots, false);
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}

/// Inside an open transaction: cancels the log's unacked apply command, queues a
/// `rollback` command (restore operations + snapshot, top priority) and marks the log
/// `rolled_back`. Returns a conflict from the enclosing function if the log moved meanwhile.
macro_rules! rollback_in_tx {
    ($tx:expr, $log:expr, $trigger:expr, $reason:expr, $actor:expr, $command_id:expr, $now:expr) => {{
        let log: &HealingLog = $log;
        let (plugin_version, snapshot): (String, Json<Value>) = sqlx::query_as(
            "SELECT plugin_version, state FROM plugin_snapshots WHERE id = $1",
        )
        .bind(log.snapshot_id)
        .fetch_one(&mut *$tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE plugin_auto_healing_logs SET status = 'rolled_back', rollback_trigger = $1, \
             rollback_reason = $2, rolled_back_by = $3, rolled_back_at = $4, updated_at = $4 \
             WHERE id = $5 AND status IN ('applied', 'failed')",
        )
        .bind($trigger)
        .bind($reason)
        .bind($actor)
        .bind($now)
        .bind(log.id)
        .execute(&mut *$tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Err(conflict(log, HealingStatus::RolledBack));
        }
        sqlx::query(
            "UPDATE plugin_commands SET status = 'cancelled' \
             WHERE installation_id = $1 AND status = 'pending' AND healing_log_id = $2 \
               AND command_type = 'apply_patch'",
        )
        .bind(log.plugin_id)
        .bind(log.id)
        .execute(&mut *$tx)
        .await?;
        let rollback = NewCommand {
            id: $command_id,
            installation_id: log.plugin_id,
            healing_log_id: log.id,
            command_type: "rollback",
            payload: json!({
                "type": "rollback",
                "healing_log_id": log.id,
                "reason": $reason,
                "restore_operations": log.restore_operations,
                "snapshot": {"id": log.snapshot_id, "plugin_version": plugin_version, "state": snapshot.0},
            }),
            priority: ROLLBACK_PRIORITY,
            issued_at: $now,
        };
        insert_commands!($tx, std::slice::from_ref(&rollback));
    }};
}

/// Rollbacks go before anything else a plugin has queued.
pub const ROLLBACK_PRIORITY: i32 = 10;

/// Pushes the insert of new healing logs (`&[HealingLog]`) onto a query builder: one
/// statement that skips a log whose idempotency key was used before and returns the `id`
/// and `snapshot_id` of each log inserted.
macro_rules! push_new_logs_insert {
    ($query:expr, $logs:expr) => {{
        let logs: &[$crate::store::HealingLog] = $logs;
        $query.push(
            "INSERT INTO plugin_auto_healing_logs \
             (id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity, \
              patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status, \
              auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params, \
              snapshot_id, operations, restore_operations, failure_kind, failure_reason, created_at, updated_at) ",
        );
        $query.push_values(logs, |mut row, log| {
            row.push_bind(log.id)
                .push_bind(log.plugin_id)
                .push_bind(log.merchant_id)
                .push_bind(&log.cms)
                .push_bind(&log.plugin_version)
                .push_bind(&log.detected_issue)
                .push_bind(&log.issue_severity)
                .push_bind(&log.patch_type)
                .push_bind(&log.proposed_patch)
                .push_bind(log.sira_confidence)
                .push_bind(&log.idempotency_key)
                .push_bind(&log.request_sha256)
                .push_bind(&log.status)
                .push_bind(log.auto_applied)
                .push_bind(&log.rule_name)
                .push_bind(&log.decision)
                .push_bind(&log.patch_name)
                .push_bind(&log.patch_version)
                .push_bind(&log.bundle_sha256)
                .push_bind(&log.patch_params)
                .push_bind(log.snapshot_id)
                .push_bind(&log.operations)
                .push_bind(&log.restore_operations)
                .push_bind(&log.failure_kind)
                .push_bind(&log.failure_reason)
                .push_bind(log.created_at)
                .push_bind(log.updated_at);
        });
        $query.push(
            " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id, snapshot_id",
        );
    }};
}
pub(crate) use push_new_logs_insert;

/// The statuses of a healing log, and the only moves between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealingStatus {
    PendingReview,
    /// Auto-applied or approved by Ops: dry run clean, command queued, awaiting the ack.
    Approved,
    Applied,
    Failed,
    RolledBack,
    Rejected,
}

impl HealingStatus {
    pub const ALL: [Self; 6] = [
        Self::PendingReview,
        Self::Approved,
        Self::Applied,
        Self::Failed,
        Self::RolledBack,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingReview => "pending_review",
            Self::Approved => "approved",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state machine: every legal move. Anything else is a 409 that changes nothing.
    pub fn can_move_to(self, next: Self) -> bool {
        use HealingStatus::*;
        matches!(
            (self, next),
            (PendingReview, Approved)
                | (PendingReview, Rejected)
                | (PendingReview, Failed)
                | (Approved, Applied)
                | (Approved, Failed)
                | (Applied, RolledBack)
                | (Failed, RolledBack)
        )
    }
}

/// A healing log as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct HealingLog {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub merchant_id: Uuid,
    pub cms: String,
    pub plugin_version: String,
    pub detected_issue: String,
    pub issue_severity: String,
    pub patch_type: Option<String>,
    pub proposed_patch: Option<Json<Value>>,
    pub sira_confidence: f64,
    pub status: String,
    pub auto_applied: bool,
    pub rule_name: Option<String>,
    pub decision: Json<Value>,
    pub patch_name: Option<String>,
    pub patch_version: Option<String>,
    pub bundle_sha256: Option<String>,
    pub patch_params: Option<Json<Value>>,
    pub snapshot_id: Option<Uuid>,
    pub operations: Option<Json<Value>>,
    pub restore_operations: Option<Json<Value>>,
    pub failure_kind: Option<String>,
    pub failure_reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub rollback_trigger: Option<String>,
    pub rollback_reason: Option<String>,
    pub rolled_back_by: Option<Uuid>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    pub request_sha256: String,
}

/// What a clean dry run stores beside its log: the snapshot it ran against and the
/// `apply_patch` command naming the bundle.
pub(crate) type PreparedWork<'a> = (NewSnapshot<'a>, NewCommand);

impl HealingLog {
    pub fn status(&self) -> HealingStatus {
        HealingStatus::parse(&self.status).expect("status column is checked")
    }

    /// Detection `new`, recorded as log `id` with the engine's outcome: the row as it is
    /// first stored (so it is answered without reading it back), and for a clean dry run
    /// the snapshot and command stored with it.
    pub(crate) fn detected<'a>(
        id: Uuid,
        new: &NewHealingLog,
        outcome: &'a DetectionOutcome,
        now: DateTime<Utc>,
    ) -> (HealingLog, Option<PreparedWork<'a>>) {
        let mut log = HealingLog {
            id,
            plugin_id: new.target.id,
            merchant_id: new.target.merchant_id,
            cms: new.target.cms.clone(),
            plugin_version: new.target.plugin_version.clone(),
            detected_issue: new.detected_issue.clone(),
            issue_severity: new.issue_severity.clone(),
            patch_type: new.patch_type.clone(),
            proposed_patch: new.proposed_patch.clone().map(Json),
            sira_confidence: new.sira_confidence,
            status: HealingStatus::PendingReview.as_str().to_owned(),
            auto_applied: matches!(outcome, DetectionOutcome::AutoApplied(_)),
            rule_name: new.rule_name.clone(),
            decision: Json(new.decision.clone()),
            patch_name: None,
            patch_version: None,
            bundle_sha256: None,
            patch_params: None,
            snapshot_id: None,
            operations: None,
            restore_operations: None,
            failure_kind: None,
            failure_reason: None,
            reviewed_by: None,
            reviewed_at: None,
            applied_at: None,
            rollback_trigger: None,
            rollback_reason: None,
            rolled_back_by: None,
            rolled_back_at: None,
            created_at: now,
            updated_at: now,
            idempotency_key: new.idempotency_key.clone(),
            request_sha256: new.request_sha256.clone(),
        };
        let work = match outcome {
            DetectionOutcome::PendingReview => None,
            DetectionOutcome::Rejected => {
                log.status = HealingStatus::Rejected.as_str().to_owned();
                None
            }
            DetectionOutcome::AutoApplied(preparation) => log.record_preparation(preparation, now),
        };
        (log, work)
    }

    /// Records a dry run's outcome on the log: for a clean run the patch, snapshot and
    /// operations (status `approved`, returning the snapshot and command to store with it),
    /// for a failed one the typed reason (status `failed`, nothing to queue).
    pub(crate) fn record_preparation<'a>(
        &mut self,
        preparation: &'a Preparation,
        now: DateTime<Utc>,
    ) -> Option<PreparedWork<'a>> {
        self.updated_at = now;
        let patch = match preparation {
            Preparation::Ready(ready) => Some(&ready.patch),
            Preparation::Failed { patch, .. } => patch.as_ref(),
        };
        self.patch_name = patch.map(|p| p.name.clone());
        self.patch_version = patch.map(|p| p.version.clone());
        self.bundle_sha256 = patch.map(|p| p.bundle_sha256.clone());
        self.patch_params = patch.map(|p| Json(p.params.clone()));
        match preparation {
            Preparation::Failed { kind, reason, .. } => {
                self.status = HealingStatus::Failed.as_str().to_owned();
                self.failure_kind = Some(kind.clone());
                self.failure_reason = Some(reason.clone());
                None
            }
            Preparation::Ready(ready) => {
                let snapshot = NewSnapshot {
                    id: Uuid::now_v7(),
                    installation_id: self.plugin_id,
                    state: &ready.snapshot,
                    state_sha256: &ready.snapshot_sha256,
                    created_at: now,
                };
                self.status = HealingStatus::Approved.as_str().to_owned();
                self.snapshot_id = Some(snapshot.id);
                self.operations = Some(Json(ready.operations.clone()));
                self.restore_operations = Some(Json(ready.restore_operations.clone()));
                let command = NewCommand {
                    id: Uuid::now_v7(),
                    installation_id: self.plugin_id,
                    healing_log_id: self.id,
                    command_type: "apply_patch",
                    payload: json!({
                        "type": "apply_patch",
                        "healing_log_id": self.id,
                        "snapshot_id": snapshot.id,
                        "patch": {
                            "name": ready.patch.name,
                            "version": ready.patch.version,
                            "type": ready.patch.patch_type,
                            "bundle_sha256": ready.patch.bundle_sha256,
                            "bundle_url": format!("/api/v1/plugins/autoheal/bundles/{}/{}", ready.patch.name, ready.patch.version),
                            "params": ready.patch.params,
                            "operations": ready.operations,
                        },
                    }),
                    priority: ready.priority,
                    issued_at: now,
                };
                Some((snapshot, command))
            }
        }
    }
}

const LOG_COLUMNS: &str = "id, installation_id AS plugin_id, merchant_id, cms, plugin_version, \
     detected_issue, issue_severity, patch_type, proposed_patch, sira_confidence, status, \
     auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params, \
     snapshot_id, operations, restore_operations, failure_kind, failure_reason, reviewed_by, \
     reviewed_at, applied_at, rollback_trigger, rollback_reason, rolled_back_by, rolled_back_at, \
     created_at, updated_at, idempotency_key, request_sha256";

/// The install a detection is about, as the healing loop needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct HealingTarget {
    pub id: Uuid,
    pub merchant_id: Uuid,
    pub cms: String,
    pub plugin_version: String,
    pub php_version: Option<String>,
    pub wordpress_version: Option<String>,
    pub reported_state: Option<Json<Value>>,
}

/// A new detection and what the engine decided.
#[derive(Clone, Debug)]
pub struct NewHealingLog {
    pub target: HealingTarget,
    pub detected_issue: String,
    pub issue_severity: String,
    pub patch_type: Option<String>,
    pub proposed_patch: Option<Value>,
    pub sira_confidence: f64,
    pub idempotency_key: Option<String>,
    pub request_sha256: String,
    pub rule_name: Option<String>,
    pub decision: Value,
}

/// What the engine's decision leads to when a detection is recorded.
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per detection, moved, never held in bulk"
)]
pub enum DetectionOutcome {
    PendingReview,
    /// No rule matched, or the matching rule's patch cannot run here.
    Rejected,
    /// Auto-applied: the dry run's outcome.
    AutoApplied(Preparation),
}

/// The patch a log names and the outcome of its dry run.
#[derive(Clone, Debug)]
pub enum Preparation {
    /// Dry run clean: snapshot stored, command queued, log `approved`.
    Ready(ReadyPatch),
    /// Dry run (or its preconditions) failed: nothing queued, log `failed`.
    Failed {
        patch: Option<PatchRef>,
        kind: String,
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub struct PatchRef {
    pub name: String,
    pub version: String,
    pub bundle_sha256: String,
    pub patch_type: String,
    pub params: Value,
}

#[derive(Clone, Debug)]
pub struct ReadyPatch {
    pub patch: PatchRef,
    pub snapshot: Value,
    pub snapshot_sha256: String,
    pub operations: Value,
    pub restore_operations: Value,
    pub priority: i32,
}

/// A command as the plugin receives it (seed 001's shape).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Command {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub healing_log_id: Uuid,
    pub command_type: String,
    pub command_payload: Json<Value>,
    pub priority: i32,
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub leased_until: Option<DateTime<Utc>>,
    pub deliveries: i32,
    pub acked_at: Option<DateTime<Utc>>,
    pub ack_result: Option<Json<Value>>,
    #[serde(skip)]
    pub merchant_id: Uuid,
}

const COMMAND_COLUMNS: &str = "c.id, c.installation_id AS plugin_id, c.healing_log_id, \
     c.command_type, c.command_payload, c.priority, c.status, c.issued_at, c.leased_until, \
     c.deliveries, c.acked_at, c.ack_result, i.merchant_id";

/// What an ack did.
#[derive(Clone, Debug)]
pub enum AckOutcome {
    /// First ack: recorded, and the log moved.
    Recorded(Command),
    /// The same ack again: nothing changed.
    Repeated(Command),
}

/// Filters of `GET /api/v1/plugins/autoheal/logs`.
#[derive(Clone, Debug, Default)]
pub struct HealingLogFilter {
    pub status: Option<String>,
    pub issue_severity: Option<String>,
    pub cms: Option<String>,
    pub plugin_id: Option<Uuid>,
    pub rule_name: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// Seed 001's stats, exactly its fields.
#[derive(Clone, Debug, Serialize)]
pub struct HealingStats {
    pub total_patches: i64,
    pub applied: i64,
    pub rolled_back: i64,
    pub failed: i64,
    pub avg_confidence: f64,
    pub success_rate: f64,
}

/// How a rule's auto-applied patches fared in a window (for its breaker).
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct RuleOutcomes {
    pub finished: i64,
    pub bad: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RuleBreaker {
    pub rule_name: String,
    pub suspended: bool,
    pub reason: String,
    pub changed_by: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

fn conflict(log: &HealingLog, next: HealingStatus) -> StoreError {
    StoreError::Conflict(format!(
        "healing log {} is {}; it cannot become {}",
        log.id,
        log.status,
        next.as_str()
    ))
}

impl Store {
    /// The install a detection names, if it exists.
    pub async fn healing_target(
        &self,
        plugin_id: Uuid,
    ) -> Result<Option<HealingTarget>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, HealingTarget>(
            "SELECT id, merchant_id, cms, plugin_version, php_version, wordpress_version, reported_state \
             FROM plugin_installations WHERE id = $1",
        )
        .bind(plugin_id)
        .fetch_optional(pool)
        .await?))
    }

    pub async fn healing_log(&self, id: Uuid) -> Result<Option<HealingLog>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, HealingLog>(&format!(
            "SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    pub async fn healing_log_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<HealingLog>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, HealingLog>(&format!(
            "SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// Records a detection with its decision and, when it was auto-applied, the outcome of
    /// the dry run (snapshot and command, or the failure), all in one transaction, group
    /// committed with the telemetry writes (concurrent detections share a commit). With an
    /// idempotency key already used, returns the log recorded then and writes nothing; the
    /// flag says whether this call created the log.
    pub async fn record_detection(
        &self,
        log: NewHealingLog,
        outcome: DetectionOutcome,
        now: DateTime<Utc>,
    ) -> Result<(HealingLog, bool), StoreError> {
        let key = log.idempotency_key.clone();
        match self.writer.detection(log, outcome, now).await? {
            Some(recorded) => Ok((recorded, true)),
            None => {
                let existing = self
                    .healing_log_by_idempotency_key(key.as_deref().unwrap_or_default())
                    .await?
                    .ok_or_else(|| StoreError::Conflict("idempotency key in use".into()))?;
                Ok((existing, false))
            }
        }
    }

    /// Ops approve a pending log: records the review and the dry run's outcome (command
    /// queued, or failed), audited. Conflict unless the log is `pending_review`.
    pub async fn approve_healing(
        &self,
        log: &HealingLog,
        preparation: &Preparation,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<HealingLog, StoreError> {
        let next = match preparation {
            Preparation::Ready(_) => HealingStatus::Approved,
            Preparation::Failed { .. } => HealingStatus::Failed,
        };
        if !log.status().can_move_to(next) {
            return Err(conflict(log, next));
        }
        let mut approved = log.clone();
        approved.reviewed_by = audit.actor_id;
        approved.reviewed_at = Some(now);
        let work = approved.record_preparation(preparation, now);
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some((snapshot, _)) = &work {
                insert_snapshots!(tx, std::slice::from_ref(snapshot));
            }
            let moved = sqlx::query(
                "UPDATE plugin_auto_healing_logs SET status = $1, reviewed_by = $2, reviewed_at = $3, \
                 patch_name = $4, patch_version = $5, bundle_sha256 = $6, patch_params = $7, snapshot_id = $8, \
                 operations = $9, restore_operations = $10, failure_kind = $11, failure_reason = $12, updated_at = $13 \
                 WHERE id = $14 AND status = 'pending_review'",
            )
            .bind(&approved.status)
            .bind(approved.reviewed_by)
            .bind(approved.reviewed_at)
            .bind(&approved.patch_name)
            .bind(&approved.patch_version)
            .bind(&approved.bundle_sha256)
            .bind(&approved.patch_params)
            .bind(approved.snapshot_id)
            .bind(&approved.operations)
            .bind(&approved.restore_operations)
            .bind(&approved.failure_kind)
            .bind(&approved.failure_reason)
            .bind(approved.updated_at)
            .bind(log.id)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Err(conflict(log, next));
            }
            if let Some((_, command)) = &work {
                insert_commands!(tx, std::slice::from_ref(command));
            }
            insert_audit!(tx, audit, "autoheal.approve", "healing_log", Some(log.id.to_string()),
                json!({"status": next.as_str(), "patch": preparation_summary(preparation)}), now);
            tx.commit().await?;
        });
        Ok(approved)
    }

    /// Ops reject a pending log; audited.
    pub async fn reject_healing(
        &self,
        log: &HealingLog,
        reason: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<HealingLog, StoreError> {
        if !log.status().can_move_to(HealingStatus::Rejected) {
            return Err(conflict(log, HealingStatus::Rejected));
        }
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE plugin_auto_healing_logs SET status = 'rejected', reviewed_by = $1, reviewed_at = $2, \
                 failure_reason = $3, updated_at = $2 WHERE id = $4 AND status = 'pending_review'",
            )
            .bind(audit.actor_id)
            .bind(now)
            .bind(reason)
            .bind(log.id)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Err(conflict(log, HealingStatus::Rejected));
            }
            insert_audit!(tx, audit, "autoheal.reject", "healing_log", Some(log.id.to_string()),
                json!({"reason": reason}), now);
            tx.commit().await?;
        });
        Ok(self.healing_log(log.id).await?.expect("exists"))
    }

    /// Rolls a log back: queues a `rollback` command carrying the restore operations and
    /// the snapshot, cancels its unacked apply command, and marks the log `rolled_back`.
    /// `audit` is None for the automatic triggers (failed ack, regression). Conflict unless
    /// the log is `applied` or `failed` with a snapshot.
    pub async fn rollback_healing(
        &self,
        log: &HealingLog,
        trigger: &str,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<(HealingLog, Command), StoreError> {
        let next = HealingStatus::RolledBack;
        if !log.status().can_move_to(next) || log.snapshot_id.is_none() {
            return Err(conflict(log, next));
        }
        let command_id = Uuid::now_v7();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            rollback_in_tx!(tx, log, trigger, reason, audit.and_then(|a| a.actor_id), command_id, now);
            if let Some(audit) = audit {
                insert_audit!(tx, audit, "autoheal.rollback", "healing_log", Some(log.id.to_string()),
                    json!({"reason": reason, "trigger": trigger}), now);
            }
            tx.commit().await?;
        });
        let log = self.healing_log(log.id).await?.expect("exists");
        let command = self.command(command_id).await?.expect("just queued");
        Ok((log, command))
    }

    pub async fn command(&self, id: Uuid) -> Result<Option<Command>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Command>(&format!(
            "SELECT {COMMAND_COLUMNS} FROM plugin_commands c \
             JOIN plugin_installations i ON i.id = c.installation_id WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// Hands out up to `limit` pending commands of an install, highest priority first, and
    /// leases them until `now + lease`: a command not acked by then is handed out again.
    pub async fn lease_commands(
        &self,
        plugin_id: Uuid,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> Result<Vec<Command>, StoreError> {
        // One statement, so two polls never lease the same command: SQLite runs it under
        // its write lock, PostgreSQL skips rows another poll has locked.
        let lock = match self.backend {
            Backend::Sqlite { .. } => "",
            Backend::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE plugin_commands SET leased_until = $1, deliveries = deliveries + 1 \
             WHERE id IN (SELECT id FROM plugin_commands \
                          WHERE installation_id = $2 AND status = 'pending' \
                            AND (leased_until IS NULL OR leased_until <= $3) \
                          ORDER BY priority DESC, issued_at, id LIMIT $4 {lock}) \
             RETURNING id"
        );
        let ids: Vec<Uuid> = on_write_pool!(self, pool => sqlx::query_scalar(&sql)
            .bind(now + lease)
            .bind(plugin_id)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        let mut commands = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(command) = self.command(id).await? {
                commands.push(command);
            }
        }
        commands.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.issued_at.cmp(&b.issued_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(commands)
    }

    /// Records a plugin's ack. The first ack moves the log (apply ok → `applied`; apply
    /// failed → `failed`, and the rollback is queued at once); the same ack again changes
    /// nothing; an ack that contradicts the recorded one is a conflict.
    pub async fn ack_command(
        &self,
        command: &Command,
        success: bool,
        result: &Value,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let status = if success { "succeeded" } else { "failed" };
        match command.status.as_str() {
            "pending" => {}
            recorded if recorded == status => return Ok(AckOutcome::Repeated(command.clone())),
            recorded => {
                return Err(StoreError::Conflict(format!(
                    "command {} was already acked as {recorded}",
                    command.id
                )))
            }
        }
        let rollback_id = Uuid::now_v7();
        let acked = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(
                "UPDATE plugin_commands SET status = $1, acked_at = $2, ack_result = $3 \
                 WHERE id = $4 AND status = 'pending'",
            )
            .bind(status)
            .bind(now)
            .bind(Json(result))
            .bind(command.id)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                false
            } else {
                if command.command_type == "apply_patch" {
                    let log = sqlx::query_as::<_, HealingLog>(&format!(
                        "SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs WHERE id = $1"
                    ))
                    .bind(command.healing_log_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if log.status() == HealingStatus::Approved {
                        if success {
                            sqlx::query(
                                "UPDATE plugin_auto_healing_logs SET status = 'applied', applied_at = $1, \
                                 updated_at = $1 WHERE id = $2",
                            )
                            .bind(now)
                            .bind(log.id)
                            .execute(&mut *tx)
                            .await?;
                        } else {
                            let reason = ack_failure_reason(result);
                            sqlx::query(
                                "UPDATE plugin_auto_healing_logs SET status = 'failed', failure_kind = 'plugin_failed', \
                                 failure_reason = $1, updated_at = $2 WHERE id = $3",
                            )
                            .bind(&reason)
                            .bind(now)
                            .bind(log.id)
                            .execute(&mut *tx)
                            .await?;
                            let failed = HealingLog { status: "failed".into(), ..log };
                            rollback_in_tx!(tx, &failed, "failed_ack", &reason, None::<Uuid>, rollback_id, now);
                        }
                    }
                }
                tx.commit().await?;
                true
            }
        });
        let stored = self.command(command.id).await?.expect("exists");
        if acked {
            Ok(AckOutcome::Recorded(stored))
        } else if stored.status == status {
            Ok(AckOutcome::Repeated(stored))
        } else {
            Err(StoreError::Conflict(format!(
                "command {} was already acked as {}",
                stored.id, stored.status
            )))
        }
    }

    pub async fn list_healing_logs(
        &self,
        filter: &HealingLogFilter,
    ) -> Result<Vec<HealingLog>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, HealingLog>(&format!(
            "SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR issue_severity = $2) \
               AND ($3 IS NULL OR cms = $3) AND ($4 IS NULL OR installation_id = $4) \
               AND ($5 IS NULL OR rule_name = $5) AND ($6 IS NULL OR created_at >= $6) \
             ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8"
        ))
        .bind(&filter.status)
        .bind(&filter.issue_severity)
        .bind(&filter.cms)
        .bind(filter.plugin_id)
        .bind(&filter.rule_name)
        .bind(filter.since)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Seed 001's stats over the logs created since `since`. `total_patches` counts the
    /// logs that got a patch (approved or auto-applied, whatever became of it);
    /// `success_rate` is applied ÷ (applied + failed + rolled back), in percent.
    pub async fn healing_stats(&self, since: DateTime<Utc>) -> Result<HealingStats, StoreError> {
        let (total, applied, rolled_back, failed, avg): (i64, i64, i64, i64, Option<f64>) = on_pool!(self, pool => sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN status IN ('approved', 'applied', 'failed', 'rolled_back') THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'applied' THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'rolled_back' THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0), \
                        AVG(sira_confidence) \
                 FROM plugin_auto_healing_logs WHERE created_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?);
        let finished = applied + rolled_back + failed;
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        Ok(HealingStats {
            total_patches: total,
            applied,
            rolled_back,
            failed,
            avg_confidence: round1(avg.unwrap_or(0.0)),
            success_rate: if finished == 0 {
                0.0
            } else {
                round1(applied as f64 * 100.0 / finished as f64)
            },
        })
    }

    /// How the rule's auto-applied patches ended since `since`: finished (applied, failed
    /// or rolled back) and bad (failed or rolled back). The filter is spelled as the partial
    /// index `plugin_auto_healing_logs_rule_outcomes` is (migration 0008), so both backends
    /// read only those rows.
    pub async fn rule_outcomes(
        &self,
        rule_name: &str,
        since: DateTime<Utc>,
    ) -> Result<RuleOutcomes, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RuleOutcomes>(
            "SELECT COUNT(*) AS finished, \
                    COALESCE(SUM(CASE WHEN status IN ('failed', 'rolled_back') THEN 1 ELSE 0 END), 0) AS bad \
             FROM plugin_auto_healing_logs \
             WHERE rule_name = $1 AND updated_at >= $2 \
               AND auto_applied = TRUE AND status IN ('applied', 'failed', 'rolled_back')",
        )
        .bind(rule_name)
        .bind(since)
        .fetch_one(pool)
        .await?))
    }

    pub async fn rule_breakers(&self) -> Result<Vec<RuleBreaker>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, RuleBreaker>(
            "SELECT rule_name, suspended, reason, changed_by, changed_at FROM healing_rule_breakers ORDER BY rule_name",
        )
        .fetch_all(pool)
        .await?))
    }

    /// The rules whose auto-apply is suspended now.
    pub async fn suspended_rules(&self) -> Result<HashSet<String>, StoreError> {
        let rules: Vec<String> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT rule_name FROM healing_rule_breakers WHERE suspended",
        )
        .fetch_all(pool)
        .await?);
        Ok(rules.into_iter().collect())
    }

    /// Opens or closes a rule's breaker. `audit` is None when the loop trips it itself.
    /// Returns false when it was already in that state.
    pub async fn set_rule_breaker(
        &self,
        rule_name: &str,
        suspended: bool,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "INSERT INTO healing_rule_breakers (rule_name, suspended, reason, changed_by, changed_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (rule_name) DO UPDATE SET suspended = $2, reason = $3, changed_by = $4, changed_at = $5 \
                 WHERE healing_rule_breakers.suspended <> $2",
            )
            .bind(rule_name)
            .bind(suspended)
            .bind(reason)
            .bind(audit.and_then(|a| a.actor_id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 && self.kind() == BackendKind::Postgres {
                // Other replicas drop their cached breakers, if this commits.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(INVALIDATION_CHANNEL)
                    .bind(format!("{RULE_BREAKERS_TOPIC}:{rule_name}"))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(audit) = audit {
                let action = if suspended { "autoheal.rule_suspend" } else { "autoheal.rule_resume" };
                insert_audit!(tx, audit, action, "healing_rule", Some(rule_name.to_owned()),
                    json!({"reason": reason, "changed": done.rows_affected() > 0}), now);
            }
            tx.commit().await?;
            done.rows_affected() > 0
        });
        Ok(changed)
    }

    /// Installs whose patch was applied between `applied_from` and `applied_to` and is still
    /// in force: the candidates for the post-apply error-rate analysis.
    pub async fn applied_logs_between(
        &self,
        applied_from: DateTime<Utc>,
        applied_to: DateTime<Utc>,
    ) -> Result<Vec<HealingLog>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, HealingLog>(&format!(
            "SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs \
             WHERE status = 'applied' AND applied_at >= $1 AND applied_at <= $2 ORDER BY applied_at"
        ))
        .bind(applied_from)
        .bind(applied_to)
        .fetch_all(pool)
        .await?),
        )
    }

    /// An install's error rate (percent of payment outcomes and errors that are errors)
    /// from its telemetry events received in `[from, to)`; None without any event.
    pub async fn error_rate_between(
        &self,
        plugin_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<f64>, StoreError> {
        let (errors, outcomes): (i64, i64) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN event_type IN ('payment_failed', 'error') THEN 1 ELSE 0 END), 0), \
                    COUNT(*) \
             FROM plugin_telemetry_events \
             WHERE installation_id = $1 AND received_at >= $2 AND received_at < $3 \
               AND event_type IN ('payment_success', 'payment_failed', 'error')",
        )
        .bind(plugin_id)
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?);
        Ok((outcomes > 0).then(|| errors as f64 * 100.0 / outcomes as f64))
    }
}

/// What the plugin said went wrong, kept short; never echoed to other tenants.
fn ack_failure_reason(result: &Value) -> String {
    let text = result
        .get("error")
        .or_else(|| result.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the plugin reported failure");
    text.chars().take(500).collect()
}

fn preparation_summary(preparation: &Preparation) -> Value {
    match preparation {
        Preparation::Ready(ready) => json!({
            "name": ready.patch.name, "version": ready.patch.version, "params": ready.patch.params,
        }),
        Preparation::Failed {
            patch,
            kind,
            reason,
        } => json!({
            "name": patch.as_ref().map(|p| &p.name), "failure_kind": kind, "failure_reason": reason,
        }),
    }
}
