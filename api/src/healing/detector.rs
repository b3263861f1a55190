//! The built-in detector: healing without Sira. Every `interval` (a job claimed once across
//! replicas) it looks for error groups (`errors/`) whose events crossed the threshold on an
//! install (`min_events` within `window`) and whose message a healing rule in force
//! recognizes, and raises a detection of its own for each through [`Service::detect`]: the
//! same decision, thresholds, flag, breaker, dry run and command path as Sira's.
//!
//! What it never does:
//! - raise a second detection for an install and rule while one is open (waiting for Ops,
//!   approved and not yet acked, rolling back), nor count again the events from before the
//!   last one closed (after Ops reject one, or its patch ends, the install has to cross the
//!   threshold anew);
//! - raise more than `max_per_hour` fleet-wide (the rest wait for the next run);
//! - raise one where the `autoheal.detector` flag is off for the install, or at all when
//!   `enabled` is false.
//!
//! Its confidence in a rule is the rule's track record: of its patches that finished in the
//! last `track_record_window` (applied = success; failed for the patch's own reasons,
//! rolled back or failing to roll back = failure; approved by Ops or auto-applied alike),
//! with a Beta(`prior_successes`, `prior_failures`) prior, the posterior mean
//! `100 × (s + α) / (s + f + α + β)`. With the default uniform prior a rule without a
//! record gets 50, below every shipped rule's `min_confidence`: its detections wait for
//! review until Ops' approvals give it a record (`missing_database_column`, at 90, needs
//! eight successes and no failure).

use super::{BreakerScope, DetectionSource, HealingStatus, NewDetection, PatchesCounted, Service};
use crate::error::ApiError;
use crate::logs::{LogError, LogLevel, LogService, NewLogEntry};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The flag that stops the detector for an install (or, with no rule, for all): the
/// detector raises nothing where it evaluates false; undefined, it stops nothing.
pub const DETECTOR_FLAG: &str = "autoheal.detector";

/// The scheduled job's name (`scheduled_job_runs`).
const JOB: &str = "detector";

/// Most (group, install) bursts one run reads.
const BURSTS_PER_RUN: i64 = 1000;

/// How many of a burst's events the detection's reason cites.
const CITED_EVENTS: i64 = 10;

/// The longest `detected_issue` Sira may post; the detector's are held to it too.
const MAX_ISSUE_BYTES: usize = 8 * 1024;

/// Settings of the detector; each has a `serve` flag.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub enabled: bool,
    /// How often the job looks (`--detector-interval-secs`).
    pub interval: std::time::Duration,
    /// A group's events on one install are counted over this window…
    pub window: Duration,
    /// …and at least this many raise a detection.
    pub min_events: i64,
    /// Most detections raised fleet-wide in any hour.
    pub max_per_hour: i64,
    /// The rule's patches that finished within this window are its track record.
    pub track_record_window: Duration,
    /// The prior of the confidence, as pseudo-counts of successes and failures.
    pub prior_successes: f64,
    pub prior_failures: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: std::time::Duration::from_secs(60),
            window: Duration::minutes(10),
            min_events: 3,
            max_per_hour: 100,
            track_record_window: Duration::days(30),
            prior_successes: 1.0,
            prior_failures: 1.0,
        }
    }
}

/// The detector's confidence in a rule, with its inputs (kept in the detection's reason).
#[derive(Clone, Debug, Serialize)]
pub struct Confidence {
    pub value: f64,
    pub successes: i64,
    pub failures: i64,
    pub prior_successes: f64,
    pub prior_failures: f64,
    pub window_days: i64,
}

/// What one run of the detector did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DetectorRun {
    /// The healing logs of the detections it raised.
    pub raised: Vec<Uuid>,
    /// The bursts a rule recognizes that it did not raise, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub group_id: Uuid,
    pub installation_id: Uuid,
    pub rule: String,
    pub reason: &'static str,
}

impl Service {
    /// Runs the detector if it is enabled and its run is due and claimed by this replica
    /// (None otherwise).
    pub async fn run_detector_due(&self) -> Result<Option<DetectorRun>, ApiError> {
        let config = &self.config.detector;
        if !config.enabled {
            return Ok(None);
        }
        let now = self.clock.now();
        let interval = Duration::from_std(config.interval).unwrap_or(Duration::MAX);
        if !self.store.claim_job(JOB, now - interval, now).await? {
            return Ok(None);
        }
        let outcome = self.run_detector(now).await;
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.store.finish_job(JOB, error.as_deref(), now).await?;
        let entry = match &outcome {
            Ok(run) if run.raised.is_empty() && run.skipped.is_empty() => None,
            Ok(run) => Some(
                NewLogEntry::new(
                    LogLevel::Info,
                    LogService::Detector,
                    "detector.ran",
                    format!(
                        "the detector raised {} and held back {}",
                        detections(run.raised.len()),
                        run.skipped.len()
                    ),
                )
                .data(json!(run)),
            ),
            Err(error) => Some(
                NewLogEntry::new(
                    LogLevel::Error,
                    LogService::Detector,
                    "detector.failed",
                    "the detector's run failed; it runs again at its next interval",
                )
                .error(LogError {
                    name: "ApiError".to_owned(),
                    message: error.to_string(),
                    stack: None,
                }),
            ),
        };
        if let Some(entry) = entry {
            self.platform_log.record(entry);
        }
        outcome.map(Some)
    }

    /// One look at the error groups at `now` (see the module's documentation).
    pub async fn run_detector(&self, now: DateTime<Utc>) -> Result<DetectorRun, ApiError> {
        let config = &self.config.detector;
        let mut run = DetectorRun::default();
        if !config.enabled {
            return Ok(run);
        }
        let since = now - config.window;
        let mut budget = config.max_per_hour
            - self
                .store
                .detector_detections_since(now - Duration::hours(1))
                .await?;
        let bursts = self
            .store
            .error_bursts(since, config.min_events, BURSTS_PER_RUN)
            .await?;
        let rules = self.rules.current();
        let mut confidences: HashMap<String, Confidence> = HashMap::new();
        for burst in bursts {
            let Some(rule) = rules
                .matching_rule(Some(&burst.cms), &burst.last_message)
                .map(str::to_owned)
            else {
                continue;
            };
            let skip = |reason| Skipped {
                group_id: burst.group_id,
                installation_id: burst.installation_id,
                rule: rule.clone(),
                reason,
            };
            // Only events after the last detection it raised closed count again.
            let mut counted_since = since;
            if let Some((status, closed_at)) = self
                .store
                .last_detector_detection(burst.installation_id, &rule)
                .await?
            {
                if matches!(
                    status,
                    HealingStatus::PendingReview
                        | HealingStatus::Approved
                        | HealingStatus::RollingBack
                ) {
                    run.skipped
                        .push(skip("a detection is open for this install and rule"));
                    continue;
                }
                counted_since = counted_since.max(closed_at);
            }
            let events = self
                .store
                .error_occurrences_of(
                    burst.group_id,
                    burst.installation_id,
                    counted_since,
                    config.min_events.max(CITED_EVENTS),
                )
                .await?;
            if (events.len() as i64) < config.min_events {
                run.skipped.push(skip(
                    "its events came before the last detection for this install and rule closed",
                ));
                continue;
            }
            let Some(target) = self.store.healing_target(burst.installation_id).await? else {
                continue;
            };
            let (allowed, _, _) = self.install_flag(DETECTOR_FLAG, &target).await;
            if !allowed {
                run.skipped
                    .push(skip("the autoheal.detector flag is off for this install"));
                continue;
            }
            if budget <= 0 {
                run.skipped
                    .push(skip("the detector's hourly limit is reached"));
                continue;
            }
            let confidence = match confidences.get(&rule) {
                Some(known) => known.clone(),
                None => {
                    let computed = self.track_record(&rule, now).await?;
                    confidences.insert(rule.clone(), computed.clone());
                    computed
                }
            };
            let newest = &events[0];
            let raised_by = json!({
                "group_id": burst.group_id,
                "fingerprint": burst.fingerprint,
                "title": burst.title,
                "rule": rule,
                "window_secs": config.window.num_seconds(),
                "min_events": config.min_events,
                "events_in_window": burst.events,
                "first_at": burst.first_at,
                "last_at": burst.last_at,
                "events": events.iter().take(CITED_EVENTS as usize).map(|event| json!({
                    "id": event.id,
                    "source": event.source,
                    "source_id": event.source_id,
                    "message": event.message,
                    "received_at": event.received_at,
                })).collect::<Vec<Value>>(),
                "confidence": confidence,
            });
            let detected = self
                .detect(NewDetection {
                    plugin_id: burst.installation_id,
                    detected_issue: truncated(&newest.message, MAX_ISSUE_BYTES),
                    issue_severity: None,
                    patch_type: None,
                    proposed_patch: None,
                    sira_confidence: confidence.value,
                    // A run retried after a crash raises nothing twice for the same event.
                    idempotency_key: Some(format!(
                        "detector:{}:{}:{}",
                        burst.group_id, burst.installation_id, newest.id
                    )),
                    source: DetectionSource::Detector,
                    raised_by: Some(raised_by),
                })
                .await?;
            if !detected.replayed {
                budget -= 1;
                tracing::info!(
                    event = "detector_raised",
                    log = %detected.log.id,
                    group = %burst.group_id,
                    install = %burst.installation_id,
                    rule = %rule,
                    confidence = confidence.value,
                    status = detected.status(),
                    "the detector raised a detection"
                );
                run.raised.push(detected.log.id);
            }
        }
        Ok(run)
    }

    /// The detector's confidence in `rule` at `now` (see the module's documentation).
    async fn track_record(&self, rule: &str, now: DateTime<Utc>) -> Result<Confidence, ApiError> {
        let config = &self.config.detector;
        let outcomes = self
            .store
            .rule_outcomes(
                rule,
                BreakerScope::Fleet,
                PatchesCounted::All,
                now - config.track_record_window,
            )
            .await?;
        let successes = outcomes.finished - outcomes.bad;
        let value = 100.0 * (successes as f64 + config.prior_successes)
            / (outcomes.finished as f64 + config.prior_successes + config.prior_failures);
        Ok(Confidence {
            value: (value * 10.0).round() / 10.0,
            successes,
            failures: outcomes.bad,
            prior_successes: config.prior_successes,
            prior_failures: config.prior_failures,
            window_days: config.track_record_window.num_days(),
        })
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// "1 detection", "2 detections": the run's log message reads as a sentence.
fn detections(count: usize) -> String {
    match count {
        1 => "1 detection".to_owned(),
        n => format!("{n} detections"),
    }
}
