//! The healing loop's records: healing logs, snapshots, the command queue and the per-rule
//! auto-apply breaker. Every state change is one transaction with a guard on the current
//! status, so a racing or illegal transition changes nothing and reports a conflict.

use super::FailureKind;
use crate::db::{
    cast, insert_audit, notify, on_pool, on_tx, text_column, AuditContext, BackendKind, Batched,
    Store, StoreError, Tx,
};
use crate::delivery::{insert_outbox, NewOutboxMessage};
use crate::ops::{insert_alert, NewAlert};
use chrono::{DateTime, Utc};
use host::command::RefusalReason;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};
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

/// A row the healing loop writes in bulk (a command, a snapshot): its table and columns,
/// and how a batch of them is pushed as `VALUES (…), …`, each value typed for PostgreSQL
/// when `typed` (see [`cast`]).
trait Row<DB: Database>: Sized {
    const TABLE: &'static str;
    /// The columns, in the order the values are pushed.
    const COLUMNS: &'static str;

    fn push_values<'a>(query: &mut QueryBuilder<'a, DB>, rows: &'a [Self], typed: bool);
}

impl<DB> Row<DB> for NewCommand
where
    DB: Database,
    for<'a> Uuid: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Json<&'a Value>: Encode<'a, DB> + Type<DB>,
    for<'a> i32: Encode<'a, DB> + Type<DB>,
    for<'a> DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    const TABLE: &'static str = "plugin_commands";
    const COLUMNS: &'static str = "id, installation_id, healing_log_id, command_type, \
         command_payload, priority, status, issued_at";

    fn push_values<'a>(query: &mut QueryBuilder<'a, DB>, commands: &'a [Self], typed: bool) {
        query.push_values(commands, |mut row, command| {
            row.push_bind(command.id)
                .push_unseparated(cast(typed, "::uuid"))
                .push_bind(command.installation_id)
                .push_unseparated(cast(typed, "::uuid"))
                .push_bind(command.healing_log_id)
                .push_unseparated(cast(typed, "::uuid"))
                .push_bind(command.command_type)
                .push_unseparated(cast(typed, "::text"))
                .push_bind(Json(&command.payload))
                .push_unseparated(cast(typed, "::jsonb"))
                .push_bind(command.priority)
                .push_unseparated(cast(typed, "::integer"))
                .push_bind("pending")
                .push_unseparated(cast(typed, "::text"))
                .push_bind(command.issued_at)
                .push_unseparated(cast(typed, "::timestamptz"));
        });
    }
}

impl<DB> Row<DB> for NewSnapshot<'_>
where
    DB: Database,
    for<'a> Uuid: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Json<&'a Value>: Encode<'a, DB> + Type<DB>,
    for<'a> DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    const TABLE: &'static str = "plugin_snapshots";
    const COLUMNS: &'static str =
        "id, installation_id, plugin_version, state, state_sha256, created_at";

    fn push_values<'a>(query: &mut QueryBuilder<'a, DB>, snapshots: &'a [Self], typed: bool) {
        query.push_values(snapshots, |mut row, snapshot| {
            row.push_bind(snapshot.id)
                .push_unseparated(cast(typed, "::uuid"))
                .push_bind(snapshot.installation_id)
                .push_unseparated(cast(typed, "::uuid"))
                .push_bind(snapshot.plugin_version())
                .push_unseparated(cast(typed, "::text"))
                .push_bind(Json(snapshot.state))
                .push_unseparated(cast(typed, "::jsonb"))
                .push_bind(snapshot.state_sha256)
                .push_unseparated(cast(typed, "::text"))
                .push_bind(snapshot.created_at)
                .push_unseparated(cast(typed, "::timestamptz"));
        });
    }
}

/// Writes `rows` on `tx`, in one statement however many there are.
async fn insert_rows<R>(tx: &mut Tx<'_>, rows: &[R]) -> Result<(), sqlx::Error>
where
    R: Row<sqlx::Sqlite> + Row<sqlx::Postgres>,
{
    if rows.is_empty() {
        return Ok(());
    }
    on_tx!(tx, c, Db => {
        let mut insert = QueryBuilder::<Db>::new(format!(
            "INSERT INTO {} ({}) ",
            <R as Row<Db>>::TABLE,
            <R as Row<Db>>::COLUMNS
        ));
        <R as Row<Db>>::push_values(&mut insert, rows, false);
        insert.build().execute(c).await.map(drop)
    })?;
    Ok(())
}

/// Inside a transaction: cancels the log's unacked apply command, queues a `rollback`
/// command (the log's restore operations + snapshot, top priority) and marks the log
/// `rolling_back` until the plugin acks it. A conflict if the log is no longer in the
/// status the caller read (the caller's transaction then rolls back).
async fn rollback_in_tx(
    tx: &mut Tx<'_>,
    log: &HealingLog,
    rollback: &Rollback<'_>,
    command_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (plugin_version, snapshot): (String, Json<Value>) = on_tx!(tx, c => sqlx::query_as(
        "SELECT plugin_version, state FROM plugin_snapshots WHERE id = $1",
    )
    .bind(log.snapshot_id)
    .fetch_one(c)
    .await)?;
    let moved = on_tx!(tx, c => execute sqlx::query(
        "UPDATE plugin_auto_healing_logs SET status = 'rolling_back', rollback_trigger = $1, \
         rollback_reason = $2, rolled_back_by = $3, rollback_requested_at = $4, rolled_back_at = NULL, \
         rollback_failure_reason = NULL, updated_at = $4 \
         WHERE id = $5 AND status = $6",
    )
    .bind(rollback.trigger)
    .bind(rollback.reason)
    .bind(rollback.actor)
    .bind(now)
    .bind(log.id)
    .bind(log.status))?;
    if moved == 0 {
        return Err(conflict(log, HealingStatus::RollingBack));
    }
    on_tx!(tx, c => execute sqlx::query(
        "UPDATE plugin_commands SET status = 'cancelled' \
         WHERE installation_id = $1 AND status = 'pending' AND healing_log_id = $2 \
           AND command_type = 'apply_patch'",
    )
    .bind(log.plugin_id)
    .bind(log.id))?;
    let command = NewCommand {
        id: command_id,
        installation_id: log.plugin_id,
        healing_log_id: log.id,
        command_type: "rollback",
        payload: json!({
            "type": "rollback",
            "healing_log_id": log.id,
            "reason": rollback.reason,
            "restore_operations": log.restore_operations,
            "snapshot": {"id": log.snapshot_id, "plugin_version": plugin_version, "state": snapshot.0},
        }),
        priority: ROLLBACK_PRIORITY,
        issued_at: now,
    };
    insert_rows(tx, std::slice::from_ref(&command)).await?;
    Ok(())
}

/// Why a log is rolled back, and by whom (None: the loop itself).
struct Rollback<'a> {
    trigger: &'a str,
    reason: &'a str,
    actor: Option<Uuid>,
}

/// A plugin's ack of a command, as the service checked it against the command.
pub struct Ack<'a> {
    pub success: bool,
    pub result: &'a Value,
    pub effect: AckEffect,
}

/// What an ack means for the command's log.
pub enum AckEffect {
    /// An apply's ack: how many of its operations are in effect, in order, and what
    /// undoes exactly those (empty when nothing needs undoing).
    Apply {
        applied_operations: i32,
        restore_operations: Value,
    },
    /// A rollback's ack; a failed one's critical alert and the messages that dispatch it.
    Rollback {
        alert: Option<(NewAlert, Vec<NewOutboxMessage>)>,
    },
    /// The plugin refused the command: it did not verify, nothing was applied. An apply's
    /// log ends `refused` (not a patch failure) with a warning for Ops; a rollback's ends
    /// `rollback_failed` with its critical alert (the patch is still in effect).
    Refused {
        reason: RefusalReason,
        alert: Option<(NewAlert, Vec<NewOutboxMessage>)>,
    },
}

/// Moves an `approved` log on its apply's ack (see [`Store::ack_command`]).
async fn record_apply_ack(
    tx: &mut Tx<'_>,
    log: HealingLog,
    ack: &Ack<'_>,
    applied_operations: i32,
    restore_operations: &Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if ack.success {
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_auto_healing_logs SET status = 'applied', applied_at = $1, \
             applied_operations = $2, updated_at = $1, \
             reported_error_rate_at_apply = (SELECT reported_error_rate FROM plugin_installations i \
                                             WHERE i.id = plugin_auto_healing_logs.installation_id) \
             WHERE id = $3",
        )
        .bind(now)
        .bind(applied_operations)
        .bind(log.id))?;
        return Ok(());
    }
    let reason = ack_failure_reason(ack.result);
    // Failed with nothing in effect to undo: the log ends `failed`. Rolling back anyway
    // would undo what the patch never did (drop a column it did not add).
    let undo = restore_operations
        .as_array()
        .is_some_and(|ops| !ops.is_empty());
    let status = if undo {
        HealingStatus::Approved
    } else {
        HealingStatus::Failed
    };
    on_tx!(tx, c => execute sqlx::query(
        "UPDATE plugin_auto_healing_logs SET status = $1, failure_kind = 'plugin_failed', \
         failure_reason = $2, applied_operations = $3, restore_operations = $4, updated_at = $5 \
         WHERE id = $6",
    )
    .bind(status)
    .bind(&reason)
    .bind(applied_operations)
    .bind(Json(restore_operations))
    .bind(now)
    .bind(log.id))?;
    if undo {
        let partial = HealingLog {
            restore_operations: Some(Json(restore_operations.clone())),
            ..log
        };
        let rollback = Rollback {
            trigger: "failed_ack",
            reason: &reason,
            actor: None,
        };
        rollback_in_tx(tx, &partial, &rollback, Uuid::now_v7(), now).await?;
    }
    Ok(())
}

/// Moves a `rolling_back` log on its rollback's ack; a failure opens its alert.
async fn record_rollback_ack(
    tx: &mut Tx<'_>,
    log: &HealingLog,
    ack: &Ack<'_>,
    alert: Option<&(NewAlert, Vec<NewOutboxMessage>)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if ack.success {
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_auto_healing_logs SET status = 'rolled_back', rolled_back_at = $1, \
             updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(log.id))?;
        return Ok(());
    }
    on_tx!(tx, c => execute sqlx::query(
        "UPDATE plugin_auto_healing_logs SET status = 'rollback_failed', \
         rollback_failure_reason = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(ack_failure_reason(ack.result))
    .bind(now)
    .bind(log.id))?;
    open_alert(tx, alert, now).await
}

/// Moves a log whose command the plugin refused to `next`: `refused` for an apply (nothing
/// was applied), `rollback_failed` for a rollback (the patch is still in effect); and
/// opens the alert that tells Ops.
async fn record_refusal(
    tx: &mut Tx<'_>,
    log: &HealingLog,
    next: HealingStatus,
    reason: RefusalReason,
    ack: &Ack<'_>,
    alert: Option<&(NewAlert, Vec<NewOutboxMessage>)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let text = refusal_text(reason, ack.result);
    let column = match next {
        HealingStatus::Refused => "failure_reason",
        _ => "rollback_failure_reason",
    };
    on_tx!(tx, c => execute sqlx::query(&format!(
        "UPDATE plugin_auto_healing_logs SET status = $1, {column} = $2, updated_at = $3 \
         WHERE id = $4"
    ))
    .bind(next)
    .bind(&text)
    .bind(now)
    .bind(log.id))?;
    open_alert(tx, alert, now).await
}

/// Opens `alert` and queues the messages that dispatch it, in the ack's transaction.
async fn open_alert(
    tx: &mut Tx<'_>,
    alert: Option<&(NewAlert, Vec<NewOutboxMessage>)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some((alert, messages)) = alert {
        insert_alert(tx, Uuid::now_v7(), alert, now).await?;
        for message in messages {
            insert_outbox(tx, message, Uuid::now_v7(), now).await?;
        }
    }
    Ok(())
}

/// What a refusal is recorded as: `refused (signature_invalid): what the plugin said`.
pub(crate) fn refusal_text(reason: RefusalReason, result: &Value) -> String {
    let said = result
        .get("error")
        .or_else(|| result.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the command did not verify");
    format!("refused ({reason}): {said}")
        .chars()
        .take(500)
        .collect()
}

/// Rollbacks go before anything else a plugin has queued.
pub const ROLLBACK_PRIORITY: i32 = 10;

crate::values::closed_set!(
    /// Who raised a detection: Sira (posted to `/api/v1/autoheal/detect`) or the built-in
    /// detector, from an error group (`healing/detector.rs`).
    #[derive(serde::Serialize)]
    DetectionSource {
        Sira = "sira",
        Detector = "detector",
    }
);

text_column!(DetectionSource);

/// The statuses of a healing log, and the only moves between them (the README's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealingStatus {
    PendingReview,
    /// Auto-applied or approved by Ops: dry run clean, command queued, awaiting the ack.
    Approved,
    Applied,
    /// The patch did not apply: its dry run refused it, or the plugin failed to apply it
    /// and reports nothing of it in effect.
    Failed,
    /// The dry run planned no operation (the install already has what the patch gives):
    /// nothing was queued.
    NotNeeded,
    /// A rollback command is queued; the plugin has not acked it yet.
    RollingBack,
    /// The plugin acked the rollback: what the patch changed is undone.
    RolledBack,
    /// The plugin failed to roll back: the install may be half-patched (a critical alert
    /// is open). Ops may ask for the rollback again.
    RollbackFailed,
    Rejected,
    /// The plugin refused the apply: the command did not verify (tampered, an unknown
    /// root, a clock off, an expired certificate), so nothing was applied. Not a patch
    /// failure: the breaker and the success rate do not count it.
    Refused,
}

text_column!(HealingStatus);

impl HealingStatus {
    pub const ALL: [Self; 10] = [
        Self::PendingReview,
        Self::Approved,
        Self::Applied,
        Self::Failed,
        Self::NotNeeded,
        Self::RollingBack,
        Self::RolledBack,
        Self::RollbackFailed,
        Self::Rejected,
        Self::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingReview => "pending_review",
            Self::Approved => "approved",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::NotNeeded => "not_needed",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
            Self::Rejected => "rejected",
            Self::Refused => "refused",
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
            (PendingReview, Approved | Rejected | Failed | NotNeeded)
                | (Approved, Applied | Failed | Refused)
                // The plugin failed part way: what it applied is rolled back.
                | (Approved, RollingBack)
                | (Applied, RollingBack)
                | (RollingBack, RolledBack | RollbackFailed)
                // Ops ask again for a rollback that failed.
                | (RollbackFailed, RollingBack)
        )
    }
}

/// A healing log as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HealingLog {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub merchant_id: Uuid,
    pub cms: String,
    pub plugin_version: String,
    pub detected_issue: String,
    pub issue_severity: String,
    pub patch_type: Option<String>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub proposed_patch: Option<Json<Value>>,
    pub sira_confidence: f64,
    pub status: HealingStatus,
    pub auto_applied: bool,
    pub rule_name: Option<String>,
    #[schema(value_type = serde_json::Value)]
    pub decision: Json<Value>,
    pub patch_name: Option<String>,
    pub patch_version: Option<String>,
    pub bundle_sha256: Option<String>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub patch_params: Option<Json<Value>>,
    pub snapshot_id: Option<Uuid>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub operations: Option<Json<Value>>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub restore_operations: Option<Json<Value>>,
    /// Why the patch did not apply: the server's reason (`no_snapshot`, `unknown_patch`,
    /// `not_applicable`, `bad_snapshot`, `internal`, `plugin_failed`) or the sandbox's.
    #[schema(value_type = Option<String>)]
    pub failure_kind: Option<FailureKind>,
    pub failure_reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub rollback_trigger: Option<String>,
    pub rollback_reason: Option<String>,
    pub rolled_back_by: Option<Uuid>,
    /// When the plugin acked the rollback.
    pub rolled_back_at: Option<DateTime<Utc>>,
    /// How many of `operations`, in order, the plugin reports in effect: all once applied,
    /// what it says when it failed part way. A rollback undoes only those.
    pub applied_operations: Option<i32>,
    pub rollback_requested_at: Option<DateTime<Utc>>,
    /// What the plugin said when its rollback failed.
    pub rollback_failure_reason: Option<String>,
    /// The error rate the install's last heartbeat reported when the apply was acked
    /// (`errors_last_hour`): the regression analysis's "before" without outcome events.
    pub reported_error_rate_at_apply: Option<f64>,
    /// Who raised the detection: Sira, or the built-in detector.
    pub source: DetectionSource,
    /// The detector's reason, for its detections: the error group, the events it counted
    /// and the inputs of its confidence (`healing/detector.rs`).
    #[schema(value_type = Option<serde_json::Value>)]
    pub raised_by: Option<Json<Value>>,
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
    /// What Ops' approval of this log came to, for the API's answer (`status`, `message`)
    /// and the console's notice.
    pub(crate) fn approval_outcome(&self) -> (&'static str, String) {
        match self.status {
            HealingStatus::Approved => (
                "ok",
                "Patch approved: dry run clean, command queued for the plugin".to_owned(),
            ),
            HealingStatus::NotNeeded => (
                "not_needed",
                "Nothing to do: the install already has what the patch would change; \
                 nothing was queued"
                    .to_owned(),
            ),
            _ => (
                "failed",
                format!(
                    "Dry run failed ({}); nothing was queued",
                    self.failure_kind.map_or("unknown", |kind| kind.as_str())
                ),
            ),
        }
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
            status: HealingStatus::PendingReview,
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
            applied_operations: None,
            rollback_requested_at: None,
            rollback_failure_reason: None,
            reported_error_rate_at_apply: None,
            source: new.source,
            raised_by: new.raised_by.clone().map(Json),
            created_at: now,
            updated_at: now,
            idempotency_key: new.idempotency_key.clone(),
            request_sha256: new.request_sha256.clone(),
        };
        let work = match outcome {
            DetectionOutcome::PendingReview => None,
            DetectionOutcome::Rejected => {
                log.status = HealingStatus::Rejected;
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
        self.status = preparation.status();
        match preparation {
            Preparation::Failed { kind, reason, .. } => {
                self.failure_kind = Some(*kind);
                self.failure_reason = Some(reason.clone());
                None
            }
            // Nothing to change: no command, so no snapshot to roll back to.
            Preparation::Ready(ready) if self.status == HealingStatus::NotNeeded => {
                self.operations = Some(Json(ready.operations.clone()));
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
                            "bundle_url": ready.bundle_url,
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
     applied_operations, rollback_requested_at, rollback_failure_reason, \
     reported_error_rate_at_apply, source, raised_by, created_at, updated_at, idempotency_key, \
     request_sha256";

/// The install a detection is about, as the healing loop needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct HealingTarget {
    pub id: Uuid,
    pub merchant_id: Uuid,
    pub cms: String,
    pub site_url: String,
    pub environment: String,
    pub plugin_version: String,
    pub php_version: Option<String>,
    pub wordpress_version: Option<String>,
    pub reported_state: Option<Json<Value>>,
    /// What Ops set on the install (the `autoheal.auto_apply` flag reads it).
    pub properties: Json<Map<String, Value>>,
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
    pub source: DetectionSource,
    pub raised_by: Option<Value>,
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
    /// Dry run clean: snapshot stored, command queued, log `approved` (or, when it
    /// planned no operation, nothing queued and the log `not_needed`).
    Ready(ReadyPatch),
    /// Dry run (or its preconditions) failed: nothing queued, log `failed`.
    Failed {
        patch: Option<PatchRef>,
        kind: FailureKind,
        reason: String,
    },
}

impl Preparation {
    /// The status the log takes: `approved` for a plan to queue, `not_needed` for an
    /// empty one, `failed` when the dry run failed.
    pub fn status(&self) -> HealingStatus {
        match self {
            Self::Ready(ready) if ready.operations.as_array().is_some_and(Vec::is_empty) => {
                HealingStatus::NotNeeded
            }
            Self::Ready(_) => HealingStatus::Approved,
            Self::Failed { .. } => HealingStatus::Failed,
        }
    }
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
    /// Where the plugin downloads the signed bundle.
    pub bundle_url: String,
    pub snapshot: Value,
    pub snapshot_sha256: String,
    pub operations: Value,
    pub restore_operations: Value,
    pub priority: i32,
}

/// A command as the plugin receives it (seed 001's shape).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Command {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub healing_log_id: Uuid,
    pub command_type: String,
    #[schema(value_type = serde_json::Value)]
    pub command_payload: Json<Value>,
    pub priority: i32,
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub leased_until: Option<DateTime<Utc>>,
    pub deliveries: i32,
    pub acked_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub ack_result: Option<Json<Value>>,
    /// The sequence signed into the command at its last hand-out (`sdk/PROTOCOL.md`).
    pub sequence: Option<i64>,
    /// The signed command (a DSSE envelope): what a plugin verifies and applies. Only in a
    /// poll that leased the command.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub signed: Option<host::command::Envelope>,
    /// The root key's certificate of the key that signed `signed`.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub certificate: Option<host::command::Envelope>,
    #[serde(skip)]
    pub merchant_id: Uuid,
    /// The patch of the command's log: what a signed command names.
    #[serde(skip)]
    pub patch_name: Option<String>,
    #[serde(skip)]
    pub patch_version: Option<String>,
    #[serde(skip)]
    pub bundle_sha256: Option<String>,
    #[serde(skip)]
    pub patch_params: Option<Json<Value>>,
}

const COMMAND_COLUMNS: &str = "c.id, c.installation_id AS plugin_id, c.healing_log_id, \
     c.command_type, c.command_payload, c.priority, c.status, c.issued_at, c.leased_until, \
     c.deliveries, c.acked_at, c.ack_result, c.sequence, i.merchant_id, l.patch_name, \
     l.patch_version, l.bundle_sha256, l.patch_params";
/// The joins [`COMMAND_COLUMNS`] reads from.
const COMMAND_JOINS: &str = "JOIN plugin_installations i ON i.id = c.installation_id \
     JOIN plugin_auto_healing_logs l ON l.id = c.healing_log_id";

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
    pub status: Option<HealingStatus>,
    pub source: Option<DetectionSource>,
    pub issue_severity: Option<String>,
    pub cms: Option<String>,
    pub plugin_id: Option<Uuid>,
    pub rule_name: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// Seed 001's stats, its fields and the states it did not know. Each patch counts once,
/// by what became of it: `applied` (in force), `failed` (it did not apply: its dry run
/// refused it or the plugin failed to apply it, whatever became of the partial rollback),
/// `rolled_back` (applied, then undone), `rolling_back` and `rollback_failed` (applied,
/// and its undoing is pending or failed); `not_needed` planned nothing and is not a patch.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HealingStats {
    pub total_patches: i64,
    pub applied: i64,
    pub rolled_back: i64,
    pub failed: i64,
    pub rolling_back: i64,
    pub rollback_failed: i64,
    pub not_needed: i64,
    /// Commands the plugin refused because they did not verify: nothing was applied, and
    /// they count neither as patches nor as failures.
    pub refused: i64,
    pub avg_confidence: f64,
    /// `applied` ÷ the patches that finished (applied, failed, rolled back, rollback
    /// failed), in percent.
    pub success_rate: f64,
}

impl HealingStats {
    /// The patches whose fate is known: in force, failed, undone, or failed to undo.
    pub fn finished(&self) -> i64 {
        self.applied + self.bad()
    }

    /// The finished patches that went wrong.
    pub fn bad(&self) -> i64 {
        self.failed + self.rolled_back + self.rollback_failed
    }
}

/// Which of a rule's patches [`Store::rule_outcomes`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchesCounted {
    /// The auto-applied ones: what the breaker judges.
    AutoApplied,
    /// Every one, approved by Ops or auto-applied: the detector's track record of the rule.
    All,
}

/// How a rule's patches fared in a window (for its breaker, or the detector's confidence).
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct RuleOutcomes {
    pub finished: i64,
    pub bad: i64,
    /// The merchants whose installs had the bad ones.
    pub merchants: i64,
}

/// A patch bundle a registry accepted once: its name, version and the SHA-256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AcceptedBundle {
    pub name: String,
    pub version: String,
    pub bundle_sha256: String,
}

/// Whose auto-apply a rule breaker suspends: every install's, or one merchant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerScope {
    Fleet,
    Merchant(Uuid),
}

impl BreakerScope {
    /// The scope's `merchant_id` column: the nil UUID stands for the fleet (migration 0015).
    fn column(self) -> Uuid {
        self.merchant_id().unwrap_or_else(Uuid::nil)
    }

    fn of_column(merchant_id: Uuid) -> Self {
        if merchant_id.is_nil() {
            Self::Fleet
        } else {
            Self::Merchant(merchant_id)
        }
    }

    pub fn merchant_id(self) -> Option<Uuid> {
        match self {
            Self::Fleet => None,
            Self::Merchant(id) => Some(id),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fleet => "fleet",
            Self::Merchant(_) => "merchant",
        }
    }
}

/// A rule breaker as Ops see it: `scope` is `fleet` (with `merchant_id` null) or
/// `merchant`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RuleBreaker {
    pub rule_name: String,
    pub scope: &'static str,
    pub merchant_id: Option<Uuid>,
    pub suspended: bool,
    pub reason: String,
    pub changed_by: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RuleBreakerRow {
    rule_name: String,
    merchant_id: Uuid,
    suspended: bool,
    reason: String,
    changed_by: Option<Uuid>,
    changed_at: DateTime<Utc>,
}

impl From<RuleBreakerRow> for RuleBreaker {
    fn from(row: RuleBreakerRow) -> Self {
        let scope = BreakerScope::of_column(row.merchant_id);
        Self {
            rule_name: row.rule_name,
            scope: scope.as_str(),
            merchant_id: scope.merchant_id(),
            suspended: row.suspended,
            reason: row.reason,
            changed_by: row.changed_by,
            changed_at: row.changed_at,
        }
    }
}

fn conflict(log: &HealingLog, next: HealingStatus) -> StoreError {
    StoreError::Conflict(format!(
        "healing log {} is {}; it cannot become {}",
        log.id,
        log.status.as_str(),
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
            "SELECT id, merchant_id, cms, site_url, environment, plugin_version, php_version, \
                    wordpress_version, reported_state, properties \
             FROM plugin_installations WHERE id = $1",
        )
        .bind(plugin_id)
        .fetch_optional(pool)
        .await?))
    }

    /// The install state snapshot `id` holds.
    pub async fn snapshot_state(&self, id: Uuid) -> Result<Option<Value>, StoreError> {
        let state: Option<Json<Value>> = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT state FROM plugin_snapshots WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?);
        Ok(state.map(|state| state.0))
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
        let write = DetectionWrite {
            id: Uuid::now_v7(),
            log,
            outcome,
        };
        match self.write(write, now).await? {
            Some(recorded) => Ok((*recorded, true)),
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
        let next = preparation.status();
        if !log.status.can_move_to(next) {
            return Err(conflict(log, next));
        }
        let mut approved = log.clone();
        approved.reviewed_by = audit.actor_id;
        approved.reviewed_at = Some(now);
        let work = approved.record_preparation(preparation, now);
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        if let Some((snapshot, _)) = &work {
            insert_rows(tx, std::slice::from_ref(snapshot)).await?;
        }
        let moved = on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_auto_healing_logs SET status = $1, reviewed_by = $2, reviewed_at = $3, \
             patch_name = $4, patch_version = $5, bundle_sha256 = $6, patch_params = $7, snapshot_id = $8, \
             operations = $9, restore_operations = $10, failure_kind = $11, failure_reason = $12, updated_at = $13 \
             WHERE id = $14 AND status = 'pending_review'",
        )
        .bind(approved.status)
        .bind(approved.reviewed_by)
        .bind(approved.reviewed_at)
        .bind(&approved.patch_name)
        .bind(&approved.patch_version)
        .bind(&approved.bundle_sha256)
        .bind(&approved.patch_params)
        .bind(approved.snapshot_id)
        .bind(&approved.operations)
        .bind(&approved.restore_operations)
        .bind(approved.failure_kind)
        .bind(&approved.failure_reason)
        .bind(approved.updated_at)
        .bind(log.id))?;
        if moved == 0 {
            return Err(conflict(log, next));
        }
        if let Some((_, command)) = &work {
            insert_rows(tx, std::slice::from_ref(command)).await?;
        }
        insert_audit(
            tx,
            audit,
            "autoheal.approve",
            "healing_log",
            Some(log.id.to_string()),
            json!({"status": next.as_str(), "patch": preparation_summary(preparation)}),
            now,
        )
        .await?;
        transaction.commit().await?;
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
        if !log.status.can_move_to(HealingStatus::Rejected) {
            return Err(conflict(log, HealingStatus::Rejected));
        }
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let moved = on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_auto_healing_logs SET status = 'rejected', reviewed_by = $1, reviewed_at = $2, \
             failure_reason = $3, updated_at = $2 WHERE id = $4 AND status = 'pending_review'",
        )
        .bind(audit.actor_id)
        .bind(now)
        .bind(reason)
        .bind(log.id))?;
        if moved == 0 {
            return Err(conflict(log, HealingStatus::Rejected));
        }
        insert_audit(
            tx,
            audit,
            "autoheal.reject",
            "healing_log",
            Some(log.id.to_string()),
            json!({"reason": reason}),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(self.healing_log(log.id).await?.expect("exists"))
    }

    /// Rolls a log back: queues a `rollback` command carrying the restore operations and
    /// the snapshot, and marks the log `rolling_back` until the plugin acks it. `audit` is
    /// None for the automatic trigger (a regression). Conflict unless the log is `applied`,
    /// or `rollback_failed` (asked again).
    pub async fn rollback_healing(
        &self,
        log: &HealingLog,
        trigger: &str,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<(HealingLog, Command), StoreError> {
        let next = HealingStatus::RollingBack;
        let asked_for = matches!(
            log.status,
            HealingStatus::Applied | HealingStatus::RollbackFailed
        );
        if !asked_for || log.snapshot_id.is_none() {
            return Err(conflict(log, next));
        }
        let command_id = Uuid::now_v7();
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let rollback = Rollback {
            trigger,
            reason,
            actor: audit.and_then(|a| a.actor_id),
        };
        rollback_in_tx(tx, log, &rollback, command_id, now).await?;
        if let Some(audit) = audit {
            insert_audit(
                tx,
                audit,
                "autoheal.rollback",
                "healing_log",
                Some(log.id.to_string()),
                json!({"reason": reason, "trigger": trigger}),
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        let log = self.healing_log(log.id).await?.expect("exists");
        let command = self.command(command_id).await?.expect("just queued");
        Ok((log, command))
    }

    pub async fn command(&self, id: Uuid) -> Result<Option<Command>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Command>(&format!(
            "SELECT {COMMAND_COLUMNS} FROM plugin_commands c {COMMAND_JOINS} WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?),
        )
    }

    /// The install's commands of every status, newest first, or those of one healing log:
    /// what the console shows beside the healing history.
    pub async fn commands_of(
        &self,
        plugin_id: Uuid,
        healing_log_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Command>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Command>(&format!(
            "SELECT {COMMAND_COLUMNS} FROM plugin_commands c {COMMAND_JOINS} \
             WHERE c.installation_id = $1 AND ($2 IS NULL OR c.healing_log_id = $2) \
             ORDER BY c.issued_at DESC, c.id DESC LIMIT $3"
        ))
        .bind(plugin_id)
        .bind(healing_log_id)
        .bind(limit)
        .fetch_all(pool)
        .await?),
        )
    }

    /// The install's pending commands, highest priority first, without leasing them: what a
    /// person looks at (`?lease=false`).
    pub async fn pending_commands(
        &self,
        plugin_id: Uuid,
        limit: i64,
    ) -> Result<Vec<Command>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Command>(&format!(
            "SELECT {COMMAND_COLUMNS} FROM plugin_commands c {COMMAND_JOINS} \
             WHERE c.installation_id = $1 AND c.status = 'pending' \
             ORDER BY c.priority DESC, c.issued_at, c.id LIMIT $2"
        ))
        .bind(plugin_id)
        .bind(limit)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Hands out up to `limit` pending commands of an install, highest priority first, and
    /// leases them until `now + lease`: a command not acked by then is handed out again.
    /// Each hand-out takes the install's next sequence numbers, in the order handed out, so
    /// a plugin can refuse anything not above what it accepted last.
    pub async fn lease_commands(
        &self,
        plugin_id: Uuid,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> Result<Vec<Command>, StoreError> {
        let leasable = "SELECT id FROM plugin_commands \
             WHERE installation_id = $1 AND status = 'pending' \
               AND (leased_until IS NULL OR leased_until <= $2) \
             ORDER BY priority DESC, issued_at, id LIMIT $3";
        // Most polls find nothing: they read, and write nothing.
        let any: Vec<Uuid> = on_pool!(self, pool => sqlx::query_scalar(leasable)
            .bind(plugin_id)
            .bind(now)
            .bind(1_i64)
            .fetch_all(pool)
            .await?);
        if any.is_empty() {
            return Ok(Vec::new());
        }
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        // The install's sequence row, locked (PostgreSQL) or under the write lock (SQLite)
        // until the commit: two polls of one install lease one after the other, so they
        // never lease the same command nor take the same numbers.
        let last: i64 = on_tx!(tx, c => sqlx::query_scalar(
            "INSERT INTO install_command_sequences (installation_id, last_sequence) VALUES ($1, 0) \
             ON CONFLICT (installation_id) DO UPDATE SET last_sequence = install_command_sequences.last_sequence \
             RETURNING last_sequence",
        )
        .bind(plugin_id)
        .fetch_one(c)
        .await)?;
        // One statement leases them all and numbers them in hand-out order.
        let leased: Vec<(Uuid, i64)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE plugin_commands SET leased_until = $1, deliveries = plugin_commands.deliveries + 1, \
                    sequence = $2 + handed.rank \
             FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY priority DESC, issued_at, id) AS rank \
                   FROM plugin_commands \
                   WHERE installation_id = $3 AND status = 'pending' \
                     AND (leased_until IS NULL OR leased_until <= $4) \
                   ORDER BY priority DESC, issued_at, id LIMIT $5) AS handed \
             WHERE plugin_commands.id = handed.id \
             RETURNING plugin_commands.id, plugin_commands.sequence",
        )
        .bind(now + lease)
        .bind(last)
        .bind(plugin_id)
        .bind(now)
        .bind(limit)
        .fetch_all(c)
        .await)?;
        // Numbers are never reused: one acked meanwhile leaves a gap, which a plugin accepts.
        let handed_out = leased.len() as i64;
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE install_command_sequences SET last_sequence = $1 WHERE installation_id = $2",
        )
        .bind(last + handed_out)
        .bind(plugin_id))?;
        transaction.commit().await?;
        if handed_out == 0 {
            return Ok(Vec::new());
        }
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Command>(&format!(
            "SELECT {COMMAND_COLUMNS} FROM plugin_commands c {COMMAND_JOINS} \
             WHERE c.installation_id = $1 AND c.status = 'pending' \
               AND c.sequence > $2 AND c.sequence <= $3 \
             ORDER BY c.sequence"
        ))
        .bind(plugin_id)
        .bind(last)
        .bind(last + handed_out)
        .fetch_all(pool)
        .await?),
        )
    }

    /// Records a plugin's ack, checked by the service (see [`Ack`]). The first ack moves
    /// the log: an apply to `applied`, or when it failed to `failed` (nothing in effect) or
    /// `rolling_back` (a rollback of what is in effect queued at once); a rollback to
    /// `rolled_back`, or `rollback_failed` with its critical alert. The same ack again
    /// changes nothing; an ack that contradicts the recorded one is a conflict.
    pub async fn ack_command(
        &self,
        command: &Command,
        ack: &Ack<'_>,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let status = match (ack.success, &ack.effect) {
            (true, _) => "succeeded",
            (false, AckEffect::Refused { .. }) => "refused",
            (false, _) => "failed",
        };
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
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let moved = on_tx!(tx, c => execute sqlx::query(
            "UPDATE plugin_commands SET status = $1, acked_at = $2, ack_result = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(now)
        .bind(Json(ack.result))
        .bind(command.id))?;
        let acked = moved > 0;
        if acked {
            let select =
                format!("SELECT {LOG_COLUMNS} FROM plugin_auto_healing_logs WHERE id = $1");
            let log = on_tx!(tx, c => sqlx::query_as::<_, HealingLog>(&select)
                .bind(command.healing_log_id)
                .fetch_one(c)
                .await)?;
            match (&ack.effect, log.status) {
                (
                    AckEffect::Apply {
                        applied_operations,
                        restore_operations,
                    },
                    HealingStatus::Approved,
                ) => {
                    record_apply_ack(tx, log, ack, *applied_operations, restore_operations, now)
                        .await?
                }
                (AckEffect::Rollback { alert }, HealingStatus::RollingBack) => {
                    record_rollback_ack(tx, &log, ack, alert.as_ref(), now).await?
                }
                (AckEffect::Refused { reason, alert }, status) => {
                    // An apply refused ends `refused`; a rollback refused leaves the patch in
                    // effect. A log that moved on meanwhile keeps its state.
                    let next = match (command.command_type.as_str(), status) {
                        ("apply_patch", HealingStatus::Approved) => Some(HealingStatus::Refused),
                        ("rollback", HealingStatus::RollingBack) => {
                            Some(HealingStatus::RollbackFailed)
                        }
                        _ => None,
                    };
                    if let Some(next) = next {
                        record_refusal(tx, &log, next, *reason, ack, alert.as_ref(), now).await?
                    }
                }
                // The log moved on meanwhile (an apply cancelled by a rollback acked late):
                // the ack is recorded on its command only.
                _ => {}
            }
        }
        transaction.commit().await?;
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
               AND ($9 IS NULL OR source = $9) \
             ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8"
        ))
        .bind(filter.status)
        .bind(&filter.issue_severity)
        .bind(&filter.cms)
        .bind(filter.plugin_id)
        .bind(&filter.rule_name)
        .bind(filter.since)
        .bind(filter.limit)
        .bind(filter.offset)
        .bind(filter.source)
        .fetch_all(pool)
        .await?),
        )
    }

    /// How many logs are `status`, counted up to `cap` (the status index, no rows read).
    pub async fn count_healing_logs(
        &self,
        status: HealingStatus,
        cap: i64,
    ) -> Result<i64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM \
             (SELECT 1 AS one FROM plugin_auto_healing_logs WHERE status = $1 LIMIT $2) capped",
        )
        .bind(status)
        .bind(cap)
        .fetch_one(pool)
        .await)?)
    }

    /// Seed 001's stats over the logs created since `since` (see [`HealingStats`]);
    /// `total_patches` counts the logs that got a patch to queue, whatever became of it.
    pub async fn healing_stats(&self, since: DateTime<Utc>) -> Result<HealingStats, StoreError> {
        type Counts = (i64, i64, i64, i64, i64, i64, i64, i64, Option<f64>);
        // A plugin-side failure that applied part of the patch ends rolled back (or not):
        // it is still a failed patch, counted once, as failed.
        let (
            total,
            applied,
            rolled_back,
            failed,
            rolling_back,
            rollback_failed,
            not_needed,
            refused,
            avg,
        ): Counts = on_pool!(self, pool => sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN status IN ('approved', 'applied', 'failed', 'rolling_back', \
                                                          'rolled_back', 'rollback_failed') THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'applied' THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'rolled_back' AND failure_kind IS NULL THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN failure_kind IS NOT NULL THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'rolling_back' AND failure_kind IS NULL THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'rollback_failed' AND failure_kind IS NULL THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'not_needed' THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END), 0), \
                        AVG(sira_confidence) \
                 FROM plugin_auto_healing_logs WHERE created_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?);
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        let mut stats = HealingStats {
            total_patches: total,
            applied,
            rolled_back,
            failed,
            rolling_back,
            rollback_failed,
            not_needed,
            refused,
            avg_confidence: round1(avg.unwrap_or(0.0)),
            success_rate: 0.0,
        };
        if stats.finished() > 0 {
            stats.success_rate = round1(applied as f64 * 100.0 / stats.finished() as f64);
        }
        Ok(stats)
    }

    /// How the rule's patches (`counted`) ended since `since`, at the scope's installs:
    /// finished (applied, failed, or being, been or failing to be rolled back), bad (all
    /// but applied) and the merchants of the bad ones. The filter is spelled as the partial
    /// indexes `plugin_auto_healing_logs_rule_outcomes` (migration 0009, auto-applied ones)
    /// and `plugin_auto_healing_logs_rule_track_record` (0022, all) are, so both backends
    /// read only those rows.
    pub async fn rule_outcomes(
        &self,
        rule_name: &str,
        scope: BreakerScope,
        counted: PatchesCounted,
        since: DateTime<Utc>,
    ) -> Result<RuleOutcomes, StoreError> {
        // A failure that says nothing of the patch (no snapshot, parameters it refused
        // before running …) is not an outcome of it.
        let not_the_patchs: Vec<String> = FailureKind::not_the_patchs()
            .map(|kind| format!("'{}'", kind.as_str()))
            .collect();
        let merchant = match scope {
            BreakerScope::Fleet => "",
            BreakerScope::Merchant(_) => " AND merchant_id = $3",
        };
        let sql = format!(
            "SELECT COUNT(*) AS finished, \
                    COALESCE(SUM(CASE WHEN status <> 'applied' THEN 1 ELSE 0 END), 0) AS bad, \
                    COUNT(DISTINCT CASE WHEN status <> 'applied' THEN merchant_id END) AS merchants \
             FROM plugin_auto_healing_logs \
             WHERE rule_name = $1 AND updated_at >= $2 \
               {auto_applied}\
               AND status IN ('applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed') \
               AND (failure_kind IS NULL OR failure_kind NOT IN ({})){merchant}",
            not_the_patchs.join(", "),
            auto_applied = match counted {
                PatchesCounted::AutoApplied => "AND auto_applied = TRUE ",
                PatchesCounted::All => "",
            },
        );
        Ok(on_pool!(self, pool => {
            let query = sqlx::query_as::<_, RuleOutcomes>(&sql).bind(rule_name).bind(since);
            match scope {
                BreakerScope::Fleet => query,
                BreakerScope::Merchant(id) => query.bind(id),
            }
            .fetch_one(pool)
            .await?
        }))
    }

    /// The last detection the detector raised for the install and rule (the detector's
    /// partial index): its status and when that status was reached (the review, the ack, the
    /// rollback).
    pub async fn last_detector_detection(
        &self,
        installation_id: Uuid,
        rule_name: &str,
    ) -> Result<Option<(HealingStatus, DateTime<Utc>)>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as(
            "SELECT status, updated_at FROM plugin_auto_healing_logs \
             WHERE installation_id = $1 AND rule_name = $2 AND source = 'detector' \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(installation_id)
        .bind(rule_name)
        .fetch_optional(pool)
        .await?))
    }

    /// How many detections the detector raised since `since`, fleet-wide (its rate limit).
    pub async fn detector_detections_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM plugin_auto_healing_logs WHERE source = 'detector' AND created_at >= $1",
        )
        .bind(since)
        .fetch_one(pool)
        .await?))
    }

    pub async fn rule_breakers(&self) -> Result<Vec<RuleBreaker>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, RuleBreakerRow>(
            "SELECT rule_name, merchant_id, suspended, reason, changed_by, changed_at \
             FROM healing_rule_breakers ORDER BY rule_name, merchant_id",
        )
        .fetch_all(pool)
        .await?);
        Ok(rows.into_iter().map(RuleBreaker::from).collect())
    }

    /// Whether a breaker of the rule was ever stored (in either scope).
    pub async fn rule_breaker_exists(&self, rule_name: &str) -> Result<bool, StoreError> {
        let found: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM healing_rule_breakers WHERE rule_name = $1",
        )
        .bind(rule_name)
        .fetch_one(pool)
        .await?);
        Ok(found > 0)
    }

    /// The rules whose auto-apply is suspended now, with the scope of each suspension.
    pub async fn suspended_rules(&self) -> Result<HashSet<(String, BreakerScope)>, StoreError> {
        let rules: Vec<(String, Uuid)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT rule_name, merchant_id FROM healing_rule_breakers WHERE suspended",
        )
        .fetch_all(pool)
        .await?);
        Ok(rules
            .into_iter()
            .map(|(rule, merchant_id)| (rule, BreakerScope::of_column(merchant_id)))
            .collect())
    }

    /// Opens or closes a rule's breaker in a scope. `audit` is None when the loop trips it
    /// itself. Returns false when it was already in that state; closing one that was never
    /// opened stores nothing.
    pub async fn set_rule_breaker(
        &self,
        rule_name: &str,
        scope: BreakerScope,
        suspended: bool,
        reason: &str,
        audit: Option<&AuditContext>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let sql = if suspended {
            "INSERT INTO healing_rule_breakers (rule_name, merchant_id, suspended, reason, changed_by, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (rule_name, merchant_id) DO UPDATE SET suspended = $3, reason = $4, changed_by = $5, changed_at = $6 \
             WHERE healing_rule_breakers.suspended <> $3"
        } else {
            "UPDATE healing_rule_breakers SET suspended = $3, reason = $4, changed_by = $5, changed_at = $6 \
             WHERE rule_name = $1 AND merchant_id = $2 AND suspended <> $3"
        };
        let done = on_tx!(tx, c => execute sqlx::query(sql)
        .bind(rule_name)
        .bind(scope.column())
        .bind(suspended)
        .bind(reason)
        .bind(audit.and_then(|a| a.actor_id))
        .bind(now))?;
        let changed = done > 0;
        if changed {
            // Other replicas drop their cached breakers, if this commits.
            notify(tx, RULE_BREAKERS_TOPIC, rule_name).await?;
        }
        if let Some(audit) = audit {
            let action = if suspended {
                "autoheal.rule_suspend"
            } else {
                "autoheal.rule_resume"
            };
            insert_audit(
                tx,
                audit,
                action,
                "healing_rule",
                Some(rule_name.to_owned()),
                json!({"reason": reason, "changed": changed, "scope": scope.as_str(),
                       "merchant_id": scope.merchant_id()}),
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(changed)
    }

    /// Every patch bundle a registry accepted (migration 0016).
    pub async fn accepted_bundles(&self) -> Result<Vec<AcceptedBundle>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AcceptedBundle>(
            "SELECT name, version, bundle_sha256 FROM patch_bundles_accepted ORDER BY name, version",
        )
        .fetch_all(pool)
        .await?))
    }

    /// Records bundles as accepted. A name and version already recorded (by this replica or
    /// another) keeps the bytes recorded first.
    pub async fn record_accepted_bundles(
        &self,
        bundles: &[AcceptedBundle],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if bundles.is_empty() {
            return Ok(());
        }
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for bundle in bundles {
            on_tx!(tx, c => execute sqlx::query(
                "INSERT INTO patch_bundles_accepted (name, version, bundle_sha256, accepted_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name, version) DO NOTHING",
            )
            .bind(&bundle.name)
            .bind(&bundle.version)
            .bind(&bundle.bundle_sha256)
            .bind(now))?;
        }
        transaction.commit().await?;
        Ok(())
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
}

/// What the plugin said went wrong, kept short; never echoed to other tenants.
pub(crate) fn ack_failure_reason(result: &Value) -> String {
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
            "name": patch.as_ref().map(|p| &p.name), "failure_kind": kind.as_str(), "failure_reason": reason,
        }),
    }
}

/// A detection to record, with the id its log gets (see [`Store::record_detection`]).
pub(crate) struct DetectionWrite {
    id: Uuid,
    log: NewHealingLog,
    outcome: DetectionOutcome,
}

/// Detections are group committed with the telemetry: a batch's logs, snapshots and
/// commands are written in one statement each (on PostgreSQL, one for them all). A batch of
/// only detections commits itself: one statement on PostgreSQL, one script with its own
/// BEGIN and COMMIT on SQLite, so one round trip to the connection.
impl Batched for DetectionWrite {
    /// The log as stored; None when its idempotency key was used before (nothing written).
    type Outcome = Option<Box<HealingLog>>;
    const ORDER: u8 = 1;

    fn commits_itself(_backend: BackendKind) -> bool {
        true
    }

    /// Records the batch's detections: their logs, snapshots and commands (on
    /// PostgreSQL in one statement, else one statement each). A log whose
    /// idempotency key was used before is not written (None), nor is anything
    /// that came with it.
    async fn write_all(
        tx: &mut Tx<'_>,
        detections: &[(&Self, DateTime<Utc>)],
        commits_itself: bool,
    ) -> Result<Vec<Option<Box<HealingLog>>>, sqlx::Error> {
        if detections.is_empty() {
            return Ok(Vec::new());
        }
        let (logs, works): (Vec<HealingLog>, Vec<_>) = detections
            .iter()
            .map(|(write, now)| HealingLog::detected(write.id, &write.log, &write.outcome, *now))
            .unzip();
        let snapshots: Vec<_> = works
            .iter()
            .flatten()
            .map(|(snapshot, _)| snapshot.clone())
            .collect();
        let commands: Vec<_> = works
            .into_iter()
            .flatten()
            .map(|(_, command)| command)
            .collect();
        // PostgreSQL: the logs, snapshots and commands in one statement (foreign keys are
        // checked at its end); SQLite: one script.
        let one_statement = tx.kind() == BackendKind::Postgres;
        let inserted: HashSet<Uuid> = on_tx!(tx, connection, Db => {
                /// The insert of new healing logs: one statement that skips a log whose
                /// idempotency key was used before and returns the `id` and `snapshot_id` of
                /// each log inserted.
                fn push_new_logs_insert<'a>(query: &mut QueryBuilder<'a, Db>, logs: &'a [HealingLog]) {
                    query.push(
                        "INSERT INTO plugin_auto_healing_logs \
                         (id, installation_id, merchant_id, cms, plugin_version, detected_issue, issue_severity, \
                          patch_type, proposed_patch, sira_confidence, idempotency_key, request_sha256, status, \
                          auto_applied, rule_name, decision, patch_name, patch_version, bundle_sha256, patch_params, \
                          snapshot_id, operations, restore_operations, failure_kind, failure_reason, source, raised_by, \
                          created_at, updated_at) ",
                    );
                    query.push_values(logs, |mut row, log| {
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
                            .push_bind(log.status)
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
                            .push_bind(log.failure_kind)
                            .push_bind(&log.failure_reason)
                            .push_bind(log.source)
                            .push_bind(&log.raised_by)
                            .push_bind(log.created_at)
                            .push_bind(log.updated_at);
                    });
                    query.push(
                        " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
                         RETURNING id, snapshot_id",
                    );
                }
                let snapshot_columns = <NewSnapshot as Row<Db>>::COLUMNS;
                let command_columns = <NewCommand as Row<Db>>::COLUMNS;
                if one_statement {
                    // The snapshots and commands of the logs inserted, in the same
                    // statement: foreign keys are checked at its end.
                    let mut query = QueryBuilder::<Db>::new("WITH logs AS (");
                    push_new_logs_insert(&mut query, &logs);
                    query.push(")");
                    if !snapshots.is_empty() {
                        query.push(format!(
                            ", snapshots AS (INSERT INTO plugin_snapshots ({snapshot_columns}) SELECT * FROM ("
                        ));
                        <NewSnapshot as Row<Db>>::push_values(&mut query, &snapshots, true);
                        query.push(format!(
                            ") AS v ({snapshot_columns}) WHERE v.id IN (SELECT snapshot_id FROM logs))"
                        ));
                    }
                    if !commands.is_empty() {
                        query.push(format!(
                            ", commands AS (INSERT INTO plugin_commands ({command_columns}) SELECT * FROM ("
                        ));
                        <NewCommand as Row<Db>>::push_values(&mut query, &commands, true);
                        query.push(format!(
                            ") AS v ({command_columns}) WHERE v.healing_log_id IN (SELECT id FROM logs))"
                        ));
                    }
                    query.push(" SELECT id FROM logs");
                    query.build_query_scalar().fetch_all(&mut *connection).await?.into_iter().collect()
                } else {
                    // One script, one round trip to the connection's worker thread: the
                    // snapshots (before their logs: SQLite checks foreign keys at once),
                    // the logs, then what came with a log not inserted is dropped again,
                    // and only the inserted logs' commands are queued.
                    let mut script = QueryBuilder::<Db>::new(if commits_itself { "BEGIN IMMEDIATE; " } else { "" });
                    if !snapshots.is_empty() {
                        script.push(format!("INSERT INTO plugin_snapshots ({snapshot_columns}) "));
                        <NewSnapshot as Row<Db>>::push_values(&mut script, &snapshots, false);
                        script.push("; ");
                    }
                    push_new_logs_insert(&mut script, &logs);
                    if !snapshots.is_empty() {
                        script.push("; WITH v (log_id, snapshot_id) AS (");
                        script.push_values(&logs, |mut row, log| {
                            row.push_bind(log.id).push_bind(log.snapshot_id);
                        });
                        script.push(
                            ") DELETE FROM plugin_snapshots WHERE id IN (SELECT snapshot_id FROM v \
                             WHERE NOT EXISTS (SELECT 1 FROM plugin_auto_healing_logs WHERE id = v.log_id))",
                        );
                    }
                    if !commands.is_empty() {
                        script.push(format!("; WITH v ({command_columns}) AS ("));
                        <NewCommand as Row<Db>>::push_values(&mut script, &commands, false);
                        script.push(format!(
                            ") INSERT INTO plugin_commands ({command_columns}) SELECT * FROM v \
                             WHERE EXISTS (SELECT 1 FROM plugin_auto_healing_logs WHERE id = v.healing_log_id)"
                        ));
                    }
                    if commits_itself {
                        script.push("; COMMIT");
                    }
                    let inserted: Vec<(Uuid, Option<Uuid>)> = script.build_query_as().fetch_all(&mut *connection).await?;
                    inserted.into_iter().map(|(id, _)| id).collect()
                }
        });
        Ok(logs
            .into_iter()
            .map(|log| inserted.contains(&log.id).then(|| Box::new(log)))
            .collect())
    }
}

/// Healing logs by status and Sira's mean confidence, over all time (for the Prometheus
/// exposition).
#[derive(Clone, Debug, Default)]
pub struct HealingCounts {
    pub by_status: Vec<(String, i64)>,
    pub avg_confidence: f64,
}

impl Store {
    pub async fn healing_counts(&self) -> Result<HealingCounts, StoreError> {
        let counts = on_pool!(self, pool => HealingCounts {
            by_status: sqlx::query_as(
                "SELECT status, COUNT(*) FROM plugin_auto_healing_logs GROUP BY status ORDER BY status",
            )
            .fetch_all(pool)
            .await?,
            avg_confidence: sqlx::query_scalar::<_, Option<f64>>(
                "SELECT AVG(sira_confidence) FROM plugin_auto_healing_logs",
            )
            .fetch_one(pool)
            .await?
            .unwrap_or(0.0),
        });
        Ok(counts)
    }
}

/// A stored detection as a replay of its decision reads it (`rules::replay`): the engine's
/// inputs as `Service::detect` built them, and what was decided then.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RecordedDecision {
    pub id: Uuid,
    pub plugin_id: Uuid,
    pub source: DetectionSource,
    pub cms: String,
    pub plugin_version: String,
    pub detected_issue: String,
    pub issue_severity: String,
    pub patch_type: Option<String>,
    pub proposed_patch: Option<Json<Value>>,
    pub sira_confidence: f64,
    pub status: HealingStatus,
    pub auto_applied: bool,
    pub rule_name: Option<String>,
    pub decision: Json<Value>,
    /// The install's state the patch was dry-run against, when it was: the `install` the
    /// rule's `params` saw (only a clean dry run stores it).
    pub install: Option<Json<Value>>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Up to `limit` detections received from `since` on and before `before` (the last
    /// row of the page before, by receipt time then id), newest first. The first page
    /// passes the end of its window with [`Uuid::max`], above every id.
    pub async fn recorded_decisions(
        &self,
        since: DateTime<Utc>,
        before: (DateTime<Utc>, Uuid),
        limit: i64,
    ) -> Result<Vec<RecordedDecision>, StoreError> {
        let (before_at, before_id) = before;
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, RecordedDecision>(
            "SELECT l.id, l.installation_id AS plugin_id, l.source, l.cms, l.plugin_version, \
                    l.detected_issue, l.issue_severity, l.patch_type, l.proposed_patch, \
                    l.sira_confidence, l.status, l.auto_applied, l.rule_name, l.decision, \
                    s.state AS install, l.created_at \
             FROM plugin_auto_healing_logs l \
             LEFT JOIN plugin_snapshots s ON s.id = l.snapshot_id \
             WHERE l.created_at >= $1 AND l.created_at <= $2 \
               AND (l.created_at < $2 OR l.id < $3) \
             ORDER BY l.created_at DESC, l.id DESC LIMIT $4",
        )
        .bind(since)
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .fetch_all(pool)
        .await?),
        )
    }
}
