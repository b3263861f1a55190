//! The staged-rollout job: each pass advances the active plans whose step has been held
//! long enough, and halts (audited, with a `platform_alerts` row) a plan whose cohort's
//! error rate passed its threshold. Time comes from the [`crate::Clock`]; a step moves once
//! even with several replicas (the update names the step it moves from).

use super::{FlagWrite, RolloutChange, RolloutPlan, RolloutStep, Service};
use crate::db::{AuditContext, Store, StoreError};
use crate::ops::NewAlert;
use chrono::{DateTime, Duration, Utc};
use engine::{FlagDefinition, Stickiness};
use serde::Serialize;
use serde_json::json;

/// What one pass of the rollout job did to one plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutMove {
    pub plan_id: uuid::Uuid,
    pub flag_key: String,
    /// `advance`, `complete`, `halt`, `cancel`.
    pub action: &'static str,
    pub percentage: Option<u32>,
    pub error_rate: Option<f64>,
}

/// The cohort's error rate during the current step: failed over all
/// payment/error outcomes of the merchants the flag is on for, in percent.
/// With tenant stickiness the cohort is the merchants whose bucket is within
/// the percentage; otherwise telemetry cannot tell who is in it, so the
/// whole fleet counts. None below `min_outcomes` outcomes.
async fn cohort_error_rate(
    store: &Store,
    plan: &RolloutPlan,
    definition: &FlagDefinition,
) -> Result<Option<f64>, StoreError> {
    let percentage = definition.percentage.unwrap_or(0);
    let group_id = definition.group_id.as_deref().unwrap_or(&definition.key);
    let by_tenant = definition.stickiness == Stickiness::TenantId;
    let (mut errors, mut outcomes) = (0i64, 0i64);
    for merchant in store.merchant_outcomes(plan.step_started_at).await? {
        let in_cohort = !by_tenant
            || engine::rollout_bucket(group_id, &merchant.merchant_id.to_string()) <= percentage;
        if in_cohort {
            errors += merchant.errors;
            outcomes += merchant.outcomes;
        }
    }
    if outcomes == 0 || outcomes < plan.min_outcomes {
        return Ok(None);
    }
    Ok(Some(errors as f64 * 100.0 / outcomes as f64))
}

impl Service {
    /// One pass over the active plans at the clock's `now`. Public so tests
    /// drive it with a manual clock; `start` runs it every `rollout_tick`.
    pub async fn run_rollouts(&self) -> Result<Vec<RolloutMove>, StoreError> {
        let now = self.clock.now();
        let actor = AuditContext::system();
        let mut moves = Vec::new();
        for plan in self.store.active_rollouts().await? {
            let loaded = self.flags.current();
            let base = loaded.base(&plan.flag_key);
            let step = usize::try_from(plan.current_step).unwrap_or(usize::MAX);
            let steps = &plan.steps.0;
            let mut outcome = RolloutMove {
                plan_id: plan.id,
                flag_key: plan.flag_key.clone(),
                action: "advance",
                percentage: None,
                error_rate: None,
            };
            let change = match base {
                Some((definition, _)) if !definition.enabled || definition.archived => {
                    outcome.action = "cancel";
                    RolloutChange::cancel(
                        &plan,
                        "the flag was turned off (kill switch) or archived".into(),
                    )
                }
                None => {
                    outcome.action = "cancel";
                    RolloutChange::cancel(&plan, "the flag no longer exists".into())
                }
                Some((definition, version)) => {
                    let error_rate = cohort_error_rate(&self.store, &plan, &definition).await?;
                    outcome.error_rate = error_rate;
                    if let Some(rate) = error_rate.filter(|rate| *rate > plan.error_rate_threshold)
                    {
                        outcome.action = "halt";
                        outcome.percentage = definition.percentage;
                        let summary = format!(
                        "Rollout of flag {} halted at {} %: the cohort's error rate is {rate:.2} %, above the plan's {:.2} %. \
                         The flag stays at its current percentage; POST /api/platform/flags/{}/kill turns it off.",
                        plan.flag_key,
                        definition.percentage.unwrap_or(0),
                        plan.error_rate_threshold,
                        plan.flag_key
                    );
                        RolloutChange {
                            action: "rollout.halt",
                            next_step: plan.current_step,
                            status: "halted",
                            reason: Some(format!(
                                "error rate {rate:.2} % above threshold {:.2} %",
                                plan.error_rate_threshold
                            )),
                            flag: None,
                            alert: Some(NewAlert {
                                name: "flag_rollout_halted".into(),
                                severity: "critical",
                                summary,
                                labels: json!({
                                    "flag_key": plan.flag_key,
                                    "rollout_id": plan.id,
                                    "percentage": definition.percentage,
                                    "error_rate": rate,
                                    "threshold": plan.error_rate_threshold,
                                }),
                            }),
                        }
                    } else {
                        let hold = steps
                            .get(step)
                            .map_or(0, |current| i64::from(current.hold_minutes));
                        if now - plan.step_started_at < Duration::minutes(hold) {
                            continue;
                        }
                        match steps.get(step + 1) {
                            Some(next) => {
                                outcome.percentage = Some(next.percentage);
                                let after = FlagDefinition {
                                    percentage: Some(next.percentage),
                                    ..definition.clone()
                                };
                                RolloutChange {
                                    action: "rollout.advance",
                                    next_step: plan.current_step + 1,
                                    status: "active",
                                    reason: None,
                                    flag: Some(FlagWrite {
                                        action: "flag.update",
                                        before: Some(definition),
                                        after,
                                        expected_version: version,
                                    }),
                                    alert: None,
                                }
                            }
                            None => {
                                outcome.action = "complete";
                                outcome.percentage = definition.percentage;
                                RolloutChange {
                                    action: "rollout.complete",
                                    next_step: plan.current_step,
                                    status: "completed",
                                    reason: None,
                                    flag: None,
                                    alert: None,
                                }
                            }
                        }
                    }
                }
            };
            let changes_flag = change.flag.is_some();
            if self.store.move_rollout(&plan, &change, &actor, now).await? {
                if changes_flag {
                    self.changed(&plan.flag_key).await?;
                }
                tracing::info!(event = "rollout_moved", flag_key = %plan.flag_key, action = outcome.action, "rollout plan moved");
                moves.push(outcome);
            }
        }
        Ok(moves)
    }
}

/// Validates a plan's steps: 1–20 steps, percentages strictly increasing
/// within 0..=100, hold times up to 30 days. The error names the field.
pub fn check_steps(steps: &[RolloutStep]) -> Result<(), engine::FieldError> {
    if steps.is_empty() || steps.len() > 20 {
        return Err(engine::FieldError::new("steps", "1 to 20 steps"));
    }
    let mut last: Option<u32> = None;
    for (i, step) in steps.iter().enumerate() {
        if step.percentage > 100 {
            return Err(engine::FieldError::new(
                format!("steps[{i}].percentage"),
                "must be within 0..=100",
            ));
        }
        if last.is_some_and(|last| step.percentage <= last) {
            return Err(engine::FieldError::new(
                format!("steps[{i}].percentage"),
                "must be above the previous step's",
            ));
        }
        if step.hold_minutes > 30 * 24 * 60 {
            return Err(engine::FieldError::new(
                format!("steps[{i}].hold_minutes"),
                "at most 43200 (30 days)",
            ));
        }
        last = Some(step.percentage);
    }
    Ok(())
}

/// The time a rollout plan's current step ends, for display.
pub fn step_ends_at(plan: &RolloutPlan) -> Option<DateTime<Utc>> {
    let step = usize::try_from(plan.current_step).ok()?;
    let hold = plan.steps.0.get(step)?.hold_minutes;
    Some(plan.step_started_at + Duration::minutes(i64::from(hold)))
}
