//! Healing rules and decisions.
//!
//! A detection (from Sira) is matched against the rule set; the winner decides
//! between `auto_apply` and `pending_review`, or nothing matches (`no_match`).
//!
//! **Winner when several rules match** (documented contract, see rules/README.md):
//! 1. higher `priority` (default 0);
//! 2. more specific: a rule naming the detection's platform beats one for `all`,
//!    then the rule whose pattern requires more literal text;
//! 3. rule `name`, in byte order.
//!
//! **Thresholds**: `auto_apply` only if the rule allows it *and* the confidence is
//! at least the rule's `min_confidence` *and* at least the global threshold
//! (85 by default). Every other match is `pending_review`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LoadError, LoadErrorKind};
use crate::sandbox::{self, Limits, Script};
use crate::source::{compile_regex, Meta, Origin};

/// Platforms a plugin runs on. `generic` is a plain PHP/JS site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Woocommerce,
    Prestashop,
    Shopify,
    Magento,
    Generic,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::Woocommerce,
        Platform::Prestashop,
        Platform::Shopify,
        Platform::Magento,
        Platform::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Woocommerce => "woocommerce",
            Platform::Prestashop => "prestashop",
            Platform::Shopify => "shopify",
            Platform::Magento => "magento",
            Platform::Generic => "generic",
        }
    }

    /// Case-insensitive parse of a platform name.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which platforms a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    All,
    Only(Vec<Platform>),
}

impl Platforms {
    pub fn matches(&self, p: Option<Platform>) -> bool {
        match self {
            Platforms::All => true,
            Platforms::Only(list) => p.is_some_and(|p| list.contains(&p)),
        }
    }
    fn is_specific(&self) -> bool {
        matches!(self, Platforms::Only(_))
    }
    fn describe(&self) -> String {
        match self {
            Platforms::All => "all".into(),
            Platforms::Only(l) => l.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
        }
    }
}

/// A detection from Sira, as the API receives it (seed field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Platform of the plugin's install (`cms` in the seed's logs).
    #[serde(alias = "cms")]
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    pub detected_issue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_patch: Option<Value>,
    /// 0–100.
    pub sira_confidence: f64,
    /// The install's reported state (config, tables, versions), when the caller has it: a
    /// rule's `params(detection, captures, install)` may complete a parameter from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Value>,
}

/// Configuration of decisions. `global_threshold` is in percent (0–100).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    pub global_threshold: f64,
    /// Wall-clock deadline for the winning rule's `params` function, if any.
    pub deadline: Option<Instant>,
}

pub const DEFAULT_GLOBAL_THRESHOLD: f64 = 85.0;

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            global_threshold: DEFAULT_GLOBAL_THRESHOLD,
            deadline: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    AutoApply,
    PendingReview,
    NoMatch,
}

impl Decision {
    /// Records a check made outside the rules (by the server: a breaker, a flag, the
    /// patch's schema). A failed one holds an auto-apply for Ops: the outcome becomes
    /// `pending_review`, so the decision says what happened.
    pub fn check(&mut self, check: CheckKind, passed: bool, detail: String) {
        self.trace.push(Check {
            rule: self.rule.clone(),
            check,
            passed,
            detail,
        });
        if !passed && self.outcome == Outcome::AutoApply {
            self.outcome = Outcome::PendingReview;
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::AutoApply => "auto_apply",
            Outcome::PendingReview => "pending_review",
            Outcome::NoMatch => "no_match",
        })
    }
}

/// One check in a decision's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Literal prefilter: rules whose required text is absent are skipped.
    Prefilter,
    Confidence,
    Platform,
    Pattern,
    Winner,
    AutoApply,
    RuleMinConfidence,
    GlobalThreshold,
    Params,
    /// The rule's auto-apply breaker (checked by the server).
    Breaker,
    /// The patch's required parameters (checked by the server against its schema).
    PatchParams,
    /// A feature flag that allows auto-apply for the install (checked by the server).
    Flag,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub check: CheckKind,
    pub passed: bool,
    pub detail: String,
}

/// The result of [`decide`]: what to do, which rule and numbers decided it, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub rule: Option<String>,
    pub patch: Option<String>,
    /// Parameters for the patch: named regex captures, `extract` captures, and
    /// whatever the rule's `params` function returned.
    pub params: Map<String, Value>,
    pub confidence: f64,
    pub rule_min_confidence: Option<f64>,
    pub global_threshold: f64,
    pub rule_auto_apply: Option<bool>,
    /// Every rule that matched, winner first.
    pub matched: Vec<String>,
    pub trace: Vec<Check>,
}

/// A compiled healing rule.
#[derive(Debug, Clone)]
pub struct HealingRule {
    pub name: String,
    pub description: Option<String>,
    pub pattern: String,
    pub platforms: Platforms,
    pub auto_apply: bool,
    pub min_confidence: f64,
    pub priority: i64,
    pub patch: String,
    pub file: String,
    pub(crate) regex: Regex,
    extract: Vec<(String, Regex)>,
    script: Option<Script>,
    /// Whether `params` takes the install's state as its third parameter.
    params_take_install: bool,
    /// Literals every match must contain (prefilter keys); the index picks one.
    required_literals: Vec<String>,
    literal_len: usize,
}

const RULE_FIELDS: &[&str] = &[
    "name",
    "description",
    "pattern",
    "platforms",
    "auto_apply",
    "min_confidence",
    "priority",
    "patch",
    "extract",
];

impl HealingRule {
    pub(crate) fn from_meta(
        map: &Map<String, Value>,
        origin: &Origin,
        script: Option<Script>,
        limits: &Limits,
    ) -> Result<HealingRule, Vec<LoadError>> {
        let mut m = Meta::new(map, origin);
        m.check_known(RULE_FIELDS);
        let name = m.string("name", true);
        let description = m.string("description", false);
        let pattern = m.string("pattern", true);
        let platforms_raw = m.strings("platforms", true);
        let auto_apply = m.boolean("auto_apply", true);
        let min_confidence = m.number("min_confidence", true);
        let priority = m.integer("priority", false).unwrap_or(0);
        let patch = m.string("patch", true);
        let extract_raw = m.string_map("extract", false).unwrap_or_default();

        if let Some(c) = min_confidence {
            if !(0.0..=100.0).contains(&c) {
                m.error(
                    "min_confidence",
                    LoadErrorKind::ConfidenceOutOfRange {
                        field: "min_confidence".into(),
                        value: c,
                    },
                );
            }
        }
        let platforms = platforms_raw.and_then(|list| {
            if list.is_empty() {
                m.error(
                    "platforms",
                    LoadErrorKind::InvalidValue {
                        field: "platforms".into(),
                        message: "must name at least one platform or \"all\"".into(),
                    },
                );
                return None;
            }
            if list.iter().any(|p| p == "all") {
                if list.len() > 1 {
                    m.error(
                        "platforms",
                        LoadErrorKind::InvalidValue {
                            field: "platforms".into(),
                            message: "\"all\" cannot be combined with other platforms".into(),
                        },
                    );
                }
                return Some(Platforms::All);
            }
            let mut out = Vec::new();
            for p in &list {
                match Platform::parse(p).filter(|q| q.as_str() == p) {
                    Some(q) => out.push(q),
                    None => {
                        let at = origin.value_pos("platforms", p);
                        m.error_at(
                            at,
                            LoadErrorKind::UnknownPlatform {
                                platform: p.clone(),
                            },
                        );
                    }
                }
            }
            out.sort();
            out.dedup();
            Some(Platforms::Only(out))
        });
        let regex = pattern
            .as_deref()
            .and_then(|p| match compile_regex(p, "pattern", limits) {
                Ok(r) => Some(r),
                Err(kind) => {
                    m.error("pattern", kind);
                    None
                }
            });
        let mut extract = Vec::new();
        for (param, pat) in extract_raw {
            match compile_regex(&pat, &format!("extract.{param}"), limits) {
                Ok(r) if r.captures_len() >= 2 => extract.push((param, r)),
                Ok(_) => m.error(
                    &param,
                    LoadErrorKind::InvalidValue {
                        field: format!("extract.{param}"),
                        message: "regex needs a capture group `(...)` for the value".into(),
                    },
                ),
                Err(kind) => m.error(&param, kind),
            }
        }
        if let Some(s) = &script {
            for f in s.ast.iter_functions() {
                // `params(detection, captures)`, or with the install's state as a third.
                if f.name == "params" && !(2..=3).contains(&f.params.len()) {
                    let at = origin.decl;
                    m.error_at(
                        at,
                        LoadErrorKind::WrongArity {
                            function: "params".into(),
                            expected: f.params.len().clamp(2, 3),
                            found: f.params.len(),
                        },
                    );
                }
            }
        }
        let errors = m.errors;
        match (
            name,
            pattern,
            platforms,
            auto_apply,
            min_confidence,
            patch,
            regex,
        ) {
            (
                Some(name),
                Some(pattern),
                Some(platforms),
                Some(auto_apply),
                Some(min_confidence),
                Some(patch),
                Some(regex),
            ) if errors.is_empty() => {
                let required_literals = required_literals(&pattern);
                let literal_len = literal_len(&pattern);
                Ok(HealingRule {
                    name,
                    description,
                    pattern,
                    platforms,
                    auto_apply,
                    min_confidence,
                    priority,
                    patch,
                    file: origin.file.to_string(),
                    regex,
                    extract,
                    params_take_install: script.as_ref().is_some_and(|s| {
                        s.ast
                            .iter_functions()
                            .any(|f| f.name == "params" && f.params.len() == 3)
                    }),
                    script: script.filter(|s| s.has_fn("params")),
                    required_literals,
                    literal_len,
                })
            }
            _ => Err(errors),
        }
    }

    /// Order key: smaller sorts first = wins (priority, specificity, name).
    fn rank(&self) -> (i64, bool, usize, &str) {
        (
            -self.priority,
            !self.platforms.is_specific(),
            usize::MAX - self.literal_len,
            &self.name,
        )
    }

    fn describe_platforms(&self) -> String {
        self.platforms.describe()
    }
}

/// The literals every match of `pattern` must contain, taken from the
/// top-level concatenation of the parsed regex (none for e.g. an alternation or
/// a case-insensitive pattern).
fn required_literals(pattern: &str) -> Vec<String> {
    use regex_syntax::hir::HirKind;
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return Vec::new();
    };
    let lit = |h: &regex_syntax::hir::Hir| match h.kind() {
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(str::to_string),
        _ => None,
    };
    let mut out: Vec<String> = match hir.kind() {
        HirKind::Concat(items) => items.iter().filter_map(lit).collect(),
        _ => lit(&hir).into_iter().collect(),
    };
    out.retain(|s| !s.is_empty());
    out
}

/// Total literal bytes in the pattern's top-level concatenation (specificity).
fn literal_len(pattern: &str) -> usize {
    use regex_syntax::hir::HirKind;
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return 0;
    };
    match hir.kind() {
        HirKind::Concat(items) => items
            .iter()
            .map(|h| match h.kind() {
                HirKind::Literal(l) => l.0.len(),
                _ => 0,
            })
            .sum(),
        HirKind::Literal(l) => l.0.len(),
        _ => 0,
    }
}

/// Precomputed lookup over a set of healing rules: an Aho-Corasick automaton
/// over each rule's required literal, so a decision only runs the regexes of
/// rules whose literal occurs in the issue text (plus rules with no literal).
#[derive(Debug, Clone)]
pub(crate) struct HealingIndex {
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern, the rules (indexes, in rank order) requiring it.
    by_literal: Vec<Vec<usize>>,
    /// Rules without a required literal: always checked.
    always: Vec<usize>,
}

impl HealingIndex {
    /// `rules` must already be sorted by rank.
    pub(crate) fn build(rules: &[HealingRule]) -> HealingIndex {
        // Each rule is keyed by its rarest required literal (then the longest),
        // so shared words like "Fatal error:" do not make every rule a candidate.
        let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
        for r in rules {
            let mut own: Vec<&str> = r.required_literals.iter().map(String::as_str).collect();
            own.sort_unstable();
            own.dedup();
            for l in own {
                *freq.entry(l).or_default() += 1;
            }
        }
        let mut literals: Vec<String> = Vec::new();
        let mut by_literal: Vec<Vec<usize>> = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let key = r
                .required_literals
                .iter()
                .min_by_key(|l| (freq[l.as_str()], usize::MAX - l.len(), l.as_str()));
            match key {
                Some(l) => {
                    let slot = *seen.entry(l.as_str()).or_insert_with(|| {
                        literals.push(l.clone());
                        by_literal.push(Vec::new());
                        literals.len() - 1
                    });
                    by_literal[slot].push(i);
                }
                None => always.push(i),
            }
        }
        let automaton = if literals.is_empty() {
            None
        } else {
            // A full DFA: the fastest search, and its size stays small for the
            // few thousand short literals a rule set has.
            aho_corasick::AhoCorasickBuilder::new()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&literals)
                .or_else(|_| AhoCorasick::new(&literals))
                .ok()
        };
        if automaton.is_none() {
            // Could not build (should not happen): check every rule.
            always = (0..rules.len()).collect();
            by_literal.clear();
        }
        HealingIndex {
            automaton,
            by_literal,
            always,
        }
    }

    /// Indexes of rules that may match `text`, ascending (= rank order).
    pub(crate) fn candidates(&self, text: &str) -> Vec<usize> {
        let mut out = self.always.clone();
        if let Some(ac) = &self.automaton {
            let mut slots: Vec<usize> = ac
                .find_overlapping_iter(text)
                .map(|m| m.pattern().as_usize())
                .collect();
            slots.sort_unstable();
            slots.dedup();
            for slot in slots {
                out.extend_from_slice(&self.by_literal[slot]);
            }
        }
        out.sort_unstable();
        out
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        (x as i64).to_string()
    } else {
        format!("{x}")
    }
}

/// Decide with the prefilter (fast path). `full_trace` checks every rule and
/// records each check, for `explain`.
pub(crate) fn decide_impl(
    rules: &[HealingRule],
    index: &HealingIndex,
    d: &Detection,
    cfg: &DecisionConfig,
    full_trace: bool,
) -> Decision {
    let mut trace = Vec::new();
    let platform = Platform::parse(&d.platform);
    let confidence_ok = d.sira_confidence.is_finite() && (0.0..=100.0).contains(&d.sira_confidence);
    if !confidence_ok {
        trace.push(Check {
            rule: None,
            check: CheckKind::Confidence,
            passed: false,
            detail: format!(
                "sira_confidence {} is not a number within 0..=100: never auto-applied",
                d.sira_confidence
            ),
        });
    }
    if platform.is_none() {
        trace.push(Check {
            rule: None,
            check: CheckKind::Platform,
            passed: false,
            detail: format!(
                "unknown platform `{}`: only rules for `all` can match",
                d.platform
            ),
        });
    }
    let candidates: Vec<usize> = if full_trace {
        (0..rules.len()).collect()
    } else {
        let c = index.candidates(&d.detected_issue);
        trace.push(Check {
            rule: None,
            check: CheckKind::Prefilter,
            passed: true,
            detail: format!(
                "{} of {} rules skipped: their required literal text is absent",
                rules.len() - c.len(),
                rules.len()
            ),
        });
        c
    };
    let mut matched: Vec<usize> = Vec::new();
    for i in candidates {
        let r = &rules[i];
        let on_platform = r.platforms.matches(platform);
        if full_trace || !on_platform {
            trace.push(Check {
                rule: Some(r.name.clone()),
                check: CheckKind::Platform,
                passed: on_platform,
                detail: format!("`{}` in [{}]", d.platform, r.describe_platforms()),
            });
        }
        if !on_platform {
            continue;
        }
        let hit = r.regex.is_match(&d.detected_issue);
        trace.push(Check {
            rule: Some(r.name.clone()),
            check: CheckKind::Pattern,
            passed: hit,
            detail: format!("/{}/", r.pattern),
        });
        if hit {
            matched.push(i);
        }
    }
    let mut decision = Decision {
        outcome: Outcome::NoMatch,
        rule: None,
        patch: None,
        params: Map::new(),
        confidence: d.sira_confidence,
        rule_min_confidence: None,
        global_threshold: cfg.global_threshold,
        rule_auto_apply: None,
        matched: matched.iter().map(|&i| rules[i].name.clone()).collect(),
        trace,
    };
    // Candidates are visited in rank order, so the first match wins.
    let Some(&win) = matched.first() else {
        return decision;
    };
    let r = &rules[win];
    decision.trace.push(Check {
        rule: Some(r.name.clone()),
        check: CheckKind::Winner,
        passed: true,
        detail: if matched.len() == 1 {
            "only matching rule".into()
        } else {
            format!(
                "wins over [{}] by priority ({}), then specificity (platform {}, {} literal bytes), then name",
                decision.matched[1..].join(", "),
                r.priority,
                r.describe_platforms(),
                r.literal_len
            )
        },
    });
    decision.rule = Some(r.name.clone());
    decision.patch = Some(r.patch.clone());
    decision.rule_min_confidence = Some(r.min_confidence);
    decision.rule_auto_apply = Some(r.auto_apply);

    // Parameters: named captures, then `extract`, then the `params` function.
    let mut params = Map::new();
    let named = r.regex.capture_names().flatten().next().is_some();
    if let Some(caps) = named.then(|| r.regex.captures(&d.detected_issue)).flatten() {
        for name in r.regex.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                params.insert(name.to_string(), Value::String(m.as_str().to_string()));
            }
        }
    }
    for (name, re) in &r.extract {
        if let Some(m) = re.captures(&d.detected_issue).and_then(|c| c.get(1)) {
            params.insert(name.clone(), Value::String(m.as_str().to_string()));
        }
    }
    let mut params_ok = true;
    if let Some(script) = &r.script {
        let called = if r.params_take_install {
            let install = d
                .install
                .as_ref()
                .map_or(rhai::Dynamic::UNIT, sandbox::to_dynamic);
            script.call(
                "params",
                (detection_dynamic(d), captures_dynamic(&params), install),
                cfg.deadline,
            )
        } else {
            script.call(
                "params",
                (detection_dynamic(d), captures_dynamic(&params)),
                cfg.deadline,
            )
        };
        match called {
            Ok(v) => match sandbox::from_dynamic(&v) {
                Some(Value::Object(extra)) => {
                    // Keys starting with `_` are the rule's notes for the trace, not
                    // parameters: say how a parameter was found.
                    let (notes, extra): (Vec<_>, Vec<_>) =
                        extra.into_iter().partition(|(key, _)| key.starts_with('_'));
                    params.extend(extra);
                    let mut detail = "params() returned a map".to_owned();
                    for (_, note) in notes {
                        detail.push_str("; ");
                        detail.push_str(note.as_str().map_or(&note.to_string(), |s| s));
                    }
                    decision.trace.push(Check {
                        rule: Some(r.name.clone()),
                        check: CheckKind::Params,
                        passed: true,
                        detail,
                    });
                }
                _ => {
                    params_ok = false;
                    let e = script.wrong_return("a map", &v);
                    decision.trace.push(Check {
                        rule: Some(r.name.clone()),
                        check: CheckKind::Params,
                        passed: false,
                        detail: format!("{e}: held for review"),
                    });
                }
            },
            Err(e) => {
                params_ok = false;
                decision.trace.push(Check {
                    rule: Some(r.name.clone()),
                    check: CheckKind::Params,
                    passed: false,
                    detail: format!("{e}: held for review"),
                });
            }
        }
    }
    decision.params = params;

    let c = d.sira_confidence;
    let min_ok = confidence_ok && c >= r.min_confidence;
    let global_ok = confidence_ok && c >= cfg.global_threshold;
    let cmp = |ok: bool| if ok { ">=" } else { "<" };
    decision.trace.push(Check {
        rule: Some(r.name.clone()),
        check: CheckKind::AutoApply,
        passed: r.auto_apply,
        detail: format!("rule auto_apply = {}", r.auto_apply),
    });
    decision.trace.push(Check {
        rule: Some(r.name.clone()),
        check: CheckKind::RuleMinConfidence,
        passed: min_ok,
        detail: format!(
            "confidence {} {} rule min_confidence {}",
            fmt_num(c),
            cmp(min_ok),
            fmt_num(r.min_confidence)
        ),
    });
    decision.trace.push(Check {
        rule: None,
        check: CheckKind::GlobalThreshold,
        passed: global_ok,
        detail: format!(
            "confidence {} {} global threshold {}",
            fmt_num(c),
            cmp(global_ok),
            fmt_num(cfg.global_threshold)
        ),
    });
    decision.outcome = if r.auto_apply && min_ok && global_ok && params_ok {
        Outcome::AutoApply
    } else {
        Outcome::PendingReview
    };
    decision
}

/// The detection as a Rhai map (built directly: this is on the hot path).
fn detection_dynamic(d: &Detection) -> rhai::Dynamic {
    let mut m = rhai::Map::new();
    let opt = |v: &Option<String>| v.clone().map_or(rhai::Dynamic::UNIT, rhai::Dynamic::from);
    m.insert("platform".into(), d.platform.clone().into());
    m.insert("plugin_version".into(), opt(&d.plugin_version));
    m.insert("detected_issue".into(), d.detected_issue.clone().into());
    m.insert("issue_severity".into(), opt(&d.issue_severity));
    m.insert("patch_type".into(), opt(&d.patch_type));
    m.insert(
        "proposed_patch".into(),
        d.proposed_patch
            .as_ref()
            .map_or(rhai::Dynamic::UNIT, sandbox::to_dynamic),
    );
    m.insert("sira_confidence".into(), d.sira_confidence.into());
    m.into()
}

fn captures_dynamic(params: &Map<String, Value>) -> rhai::Dynamic {
    let mut m = rhai::Map::new();
    for (k, v) in params {
        if let Value::String(s) = v {
            m.insert(k.as_str().into(), s.clone().into());
        }
    }
    m.into()
}

/// Sort rules into rank order (the winner order) and build the index.
pub(crate) fn prepare(mut rules: Vec<HealingRule>) -> (Vec<HealingRule>, HealingIndex) {
    rules.sort_by(|a, b| a.rank().cmp(&b.rank()));
    let index = HealingIndex::build(&rules);
    (rules, index)
}
