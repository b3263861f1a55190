//! Replays a candidate rule set over the stored detections: for each one, what the rules
//! decided then and what the candidate decides now, and a summary of what would change.
//! Decisions only ([`SCOPE`]): nothing is written and no patch runs, and the checks the
//! server makes after the rules (the `autoheal.auto_apply` flag, the rule breakers, the
//! patch's parameters) are not made again. A detection those checks held for Ops counts as
//! what the rules said of it, so a replay of the rules in force changes nothing.
//! `autoheal rules replay` and `POST /api/v1/rules/replay` both run [`replay`].

use super::Service;
use crate::db::{AuditContext, Store, StoreError};
use crate::error::ApiError;
use crate::healing::{DetectionSource, HealingStatus, RecordedDecision};
use crate::values::closed_set;
use chrono::{DateTime, Utc};
use engine::{CheckKind, Decision, DecisionConfig, Detection, LoadOptions, Outcome, RuleSet};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a replay decides again, and what it does not: every report says it.
pub const SCOPE: &str = "decisions only: the rule match, confidence thresholds and auto_apply \
     of the rules; flags, breakers and dry runs are not replayed";

/// The window a replay reads when none is given.
pub const DEFAULT_SINCE: &str = "7d";

/// Detections read and decided at a time: a replay over a long history holds one page of
/// stored detections, never the whole window.
const PAGE: usize = 500;

/// The checks the rules make of their winner: all passed is an auto-apply (the engine's
/// `decide`).
const RULE_CHECKS: [CheckKind; 4] = [
    CheckKind::AutoApply,
    CheckKind::RuleMinConfidence,
    CheckKind::GlobalThreshold,
    CheckKind::Params,
];

/// The checks `healing::Service::detect` adds after the rules; a failed one held the rules'
/// auto-apply for Ops. A replay does not make them.
const SERVER_CHECKS: [CheckKind; 3] = [CheckKind::Flag, CheckKind::Breaker, CheckKind::PatchParams];

closed_set!(
    /// What the rules decide about a detection (the engine's `Outcome`).
    #[derive(Serialize, PartialOrd, Ord)]
    DecisionOutcome {
        AutoApply = "auto_apply",
        PendingReview = "pending_review",
        NoMatch = "no_match",
    }
);

impl From<Outcome> for DecisionOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::AutoApply => Self::AutoApply,
            Outcome::PendingReview => Self::PendingReview,
            Outcome::NoMatch => Self::NoMatch,
        }
    }
}

/// Which detections a replay reads and how it decides them.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The oldest receipt time read.
    pub since: DateTime<Utc>,
    /// The newest receipt time read (the replay's start): detections arriving while it
    /// runs are not in it.
    pub until: DateTime<Utc>,
    /// The most detections replayed, newest first.
    pub limit: usize,
    /// The confidence an auto-apply needs besides the rule's own minimum, in percent.
    pub global_threshold: f64,
    /// The longest a rule's `params` may run per detection.
    pub script_deadline: Duration,
}

/// A replay: every detection of the window (newest first, up to the limit) with both
/// decisions, and the summary.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// What was decided again and what was not.
    pub scope: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The global threshold the candidate decided with, in percent.
    pub global_threshold: f64,
    pub limit: usize,
    /// The window held more detections than `limit`: the oldest were not replayed.
    pub capped: bool,
    pub detections: Vec<ReplayedDetection>,
    pub summary: ReplaySummary,
}

/// One stored detection, decided again.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayedDetection {
    /// The healing log.
    pub log_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// The installation.
    pub plugin_id: Uuid,
    pub source: DetectionSource,
    pub detected_issue: String,
    pub then: DecidedThen,
    pub now: DecidedNow,
    /// The candidate's outcome or rule is not what the rules decided then.
    pub changed: bool,
}

/// What was decided when the detection arrived.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DecidedThen {
    /// What the rules decided: an auto-apply the server's checks held for Ops (`held_by`)
    /// is `auto_apply` here.
    pub outcome: DecisionOutcome,
    pub rule: Option<String>,
    /// The server's checks that held the rules' auto-apply for Ops (`flag`, `breaker`,
    /// `patch_params`); not replayed.
    #[schema(value_type = Vec<String>)]
    pub held_by: Vec<CheckKind>,
    /// The healing log's status now.
    pub status: HealingStatus,
}

/// What the candidate decides now.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DecidedNow {
    pub outcome: DecisionOutcome,
    pub rule: Option<String>,
    pub patch: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReplaySummary {
    pub replayed: usize,
    /// Detections whose outcome or rule changes.
    pub changed: usize,
    /// Each change of outcome and how many detections make it.
    pub outcome_changes: Vec<OutcomeChange>,
    /// Each rule that decides other detections than it did: those it decides now and did
    /// not then (`gained`), and those it decided then and does not now (`lost`).
    pub rule_changes: Vec<RuleChange>,
    /// Detections a rule decided then that no rule of the candidate matches.
    pub no_longer_matched: usize,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OutcomeChange {
    pub from: DecisionOutcome,
    pub to: DecisionOutcome,
    pub detections: usize,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RuleChange {
    pub rule: String,
    pub gained: usize,
    pub lost: usize,
}

/// `since` as a time: a duration before `now` (`30m`, `12h`, `7d`) or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    host::tools::parse_duration(text)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| {
            format!("{text:?}: expected a duration before now (30m, 12h, 7d) or an RFC 3339 time")
        })
}

/// Decides the detections received in the options' window again with `candidate`, newest
/// first, a page at a time; reads the store and writes nothing.
pub async fn replay(
    store: &Store,
    candidate: &RuleSet,
    options: &ReplayOptions,
) -> Result<ReplayReport, StoreError> {
    let mut detections = Vec::new();
    // Above every id: the first page starts at the window's end.
    let mut before = (options.until, Uuid::max());
    let capped = loop {
        let room = PAGE.min(options.limit - detections.len());
        if room == 0 {
            break !store
                .recorded_decisions(options.since, before, 1)
                .await?
                .is_empty();
        }
        let page = store
            .recorded_decisions(options.since, before, room as i64)
            .await?;
        let Some(last) = page.last() else {
            break false;
        };
        before = (last.created_at, last.id);
        let more = page.len() == room;
        detections.extend(decide_page(candidate.clone(), page, options).await);
        if !more {
            break false;
        }
    };
    Ok(ReplayReport {
        scope: SCOPE.to_owned(),
        since: options.since,
        until: options.until,
        global_threshold: options.global_threshold,
        limit: options.limit,
        capped,
        summary: summarize(&detections),
        detections,
    })
}

/// A page's decisions, on a blocking thread: the candidate's scripts run there, not on a
/// request's worker.
async fn decide_page(
    candidate: RuleSet,
    page: Vec<RecordedDecision>,
    options: &ReplayOptions,
) -> Vec<ReplayedDetection> {
    let (global_threshold, script_deadline) = (options.global_threshold, options.script_deadline);
    tokio::task::spawn_blocking(move || {
        page.into_iter()
            .map(|recorded| {
                let config = DecisionConfig {
                    global_threshold,
                    deadline: Some(Instant::now() + script_deadline),
                };
                decide_again(&candidate, recorded, &config)
            })
            .collect()
    })
    .await
    .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
}

fn decide_again(
    candidate: &RuleSet,
    recorded: RecordedDecision,
    config: &DecisionConfig,
) -> ReplayedDetection {
    let then = decided_then(&recorded);
    let RecordedDecision {
        id,
        plugin_id,
        source,
        cms,
        plugin_version,
        detected_issue,
        issue_severity,
        patch_type,
        proposed_patch,
        sira_confidence,
        install,
        created_at,
        ..
    } = recorded;
    // The engine's input as `healing::Service::detect` built it.
    let input = Detection {
        platform: cms,
        plugin_version: Some(plugin_version),
        detected_issue,
        issue_severity: Some(issue_severity),
        patch_type,
        proposed_patch: proposed_patch.map(|patch| patch.0),
        sira_confidence,
        install: install.map(|state| state.0),
    };
    let decision = candidate.decide(&input, config);
    let now = DecidedNow {
        outcome: decision.outcome.into(),
        rule: decision.rule,
        patch: decision.patch,
    };
    ReplayedDetection {
        log_id: id,
        received_at: created_at,
        plugin_id,
        source,
        changed: then.outcome != now.outcome || then.rule != now.rule,
        detected_issue: input.detected_issue,
        then,
        now,
    }
}

/// The rules' decision when the detection arrived: the stored decision without what the
/// server's checks made of it.
fn decided_then(recorded: &RecordedDecision) -> DecidedThen {
    let (outcome, held_by) = match Decision::deserialize(&recorded.decision.0) {
        Ok(decision) => {
            let held_by: Vec<CheckKind> = decision
                .trace
                .iter()
                .filter(|check| !check.passed && SERVER_CHECKS.contains(&check.check))
                .map(|check| check.check)
                .collect();
            // A held decision reads `pending_review`; the rules' own checks say whether
            // they had auto-applied it.
            let by_rules = if held_by.is_empty() {
                decision.outcome
            } else if decision
                .trace
                .iter()
                .filter(|check| RULE_CHECKS.contains(&check.check))
                .all(|check| check.passed)
            {
                Outcome::AutoApply
            } else {
                Outcome::PendingReview
            };
            (by_rules.into(), held_by)
        }
        // A decision this server cannot read: what the log's own columns say.
        Err(_) => (
            match (&recorded.rule_name, recorded.auto_applied) {
                (None, _) => DecisionOutcome::NoMatch,
                (Some(_), true) => DecisionOutcome::AutoApply,
                (Some(_), false) => DecisionOutcome::PendingReview,
            },
            Vec::new(),
        ),
    };
    DecidedThen {
        outcome,
        rule: recorded.rule_name.clone(),
        held_by,
        status: recorded.status,
    }
}

fn summarize(detections: &[ReplayedDetection]) -> ReplaySummary {
    let mut outcome_changes: BTreeMap<(DecisionOutcome, DecisionOutcome), usize> = BTreeMap::new();
    let mut rule_changes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut summary = ReplaySummary {
        replayed: detections.len(),
        ..ReplaySummary::default()
    };
    for detection in detections.iter().filter(|detection| detection.changed) {
        let (then, now) = (&detection.then, &detection.now);
        summary.changed += 1;
        if then.outcome != now.outcome {
            *outcome_changes
                .entry((then.outcome, now.outcome))
                .or_default() += 1;
        }
        if then.rule != now.rule {
            if let Some(rule) = &now.rule {
                rule_changes.entry(rule).or_default().0 += 1;
            }
            if let Some(rule) = &then.rule {
                rule_changes.entry(rule).or_default().1 += 1;
                if now.rule.is_none() {
                    summary.no_longer_matched += 1;
                }
            }
        }
    }
    summary.outcome_changes = outcome_changes
        .into_iter()
        .map(|((from, to), detections)| OutcomeChange {
            from,
            to,
            detections,
        })
        .collect();
    summary.rule_changes = rule_changes
        .into_iter()
        .map(|(rule, (gained, lost))| RuleChange {
            rule: rule.to_owned(),
            gained,
            lost,
        })
        .collect();
    summary
}

impl Service {
    /// Replays a candidate rule set, given as its files' (name, text), over the detections
    /// received from `since` on ([`parse_since`]; up to `limit`, newest first), as the
    /// server would decide them now: its script limits and global threshold. A candidate
    /// with errors is refused with every one; a replay is audited with its counts.
    pub async fn replay(
        &self,
        files: Vec<(String, String)>,
        since: &str,
        limit: usize,
        audit: &AuditContext,
    ) -> Result<ReplayReport, ApiError> {
        let now = self.clock.now();
        let since =
            parse_since(since, now).map_err(|message| ApiError::invalid("since", message))?;
        let options = LoadOptions {
            limits: self.rules.limits.clone(),
            deadline: None,
        };
        let candidate =
            RuleSet::load_with(files, &options).map_err(|errors| ApiError::RulesRefused {
                errors: errors.iter().map(ToString::to_string).collect(),
            })?;
        let options = ReplayOptions {
            since,
            until: now,
            limit,
            global_threshold: self.global_threshold,
            script_deadline: self.script_deadline,
        };
        let report = replay(&self.store, &candidate, &options).await?;
        let details = json!({
            "files": candidate.files().len(),
            "since": since,
            "replayed": report.summary.replayed,
            "changed": report.summary.changed,
            "capped": report.capped,
        });
        self.store
            .record_audit(audit, "rules.replayed", "rules", details, now)
            .await?;
        Ok(report)
    }
}
