//! Healing decisions per second: the engine (`RuleSet::decide`, literal
//! prefilter + rank order) against a naive loop that tries each rule's regex in
//! turn (same rank order, first match wins), with the shipped rules and with
//! 1,000 generated rules. Also prints p50/p99 latency of single decisions.
//!
//! Run: `cargo bench -p benches --bench engine_decide`

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use engine::{DecisionConfig, Detection, Outcome, Platforms, RuleSet};
use regex::Regex;

const PLATFORMS: [&str; 5] = ["woocommerce", "prestashop", "shopify", "magento", "generic"];
const VERBS: [&str; 8] = [
    "failed",
    "timed out",
    "was refused",
    "crashed",
    "returned null",
    "is missing",
    "overflowed",
    "is locked",
];
const NOUNS: [&str; 10] = [
    "module", "hook", "table", "webhook", "gateway", "cron", "session", "cache", "invoice", "token",
];

fn shipped_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut out = Vec::new();
    for kind in ["healing", "interop", "flags"] {
        for e in std::fs::read_dir(root.join(kind)).unwrap() {
            let p = e.unwrap().path();
            let name = format!("{kind}/{}", p.file_name().unwrap().to_string_lossy());
            if engine::is_rule_file(&name) {
                out.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// Rule `i` of the generated set: a distinct literal, some regex around it,
/// one or two platforms or `all`, and a mix of priorities.
fn generated_rule(i: usize) -> (String, String) {
    let noun = NOUNS[i % NOUNS.len()];
    let verb = VERBS[(i / NOUNS.len()) % VERBS.len()];
    let pattern = match i % 4 {
        0 => format!("Fatal error: {noun}_{i:04} {verb}.*line \\\\d+"),
        1 => format!("{noun} molam_{i:04} {verb}: (?P<detail>\\\\w+)"),
        2 => format!("E{i:04}.*{noun}.*{verb}"),
        _ => format!("(?:Warning|Notice): {noun}-{i:04} {verb}"),
    };
    let platforms = match i % 3 {
        0 => "[\"all\"]".to_string(),
        1 => format!("[\"{}\"]", PLATFORMS[i % 5]),
        _ => format!("[\"{}\", \"{}\"]", PLATFORMS[i % 5], PLATFORMS[(i + 2) % 5]),
    };
    let src = format!(
        "let rule = #{{ name: \"gen_{i:04}\", pattern: \"{pattern}\", platforms: {platforms}, auto_apply: {}, min_confidence: {}, patch: \"patch_{i}\", priority: {} }};",
        i.is_multiple_of(2),
        80 + i % 20,
        i % 3
    );
    (format!("healing/gen_{i:04}.rhai"), src)
}

/// An issue text that rule `i` matches.
fn issue_for(i: usize) -> String {
    let noun = NOUNS[i % NOUNS.len()];
    let verb = VERBS[(i / NOUNS.len()) % VERBS.len()];
    match i % 4 {
        0 => format!("PHP Fatal error: {noun}_{i:04} {verb} in /var/www/wp-content/plugins/molam/includes/class-{noun}.php on line 213"),
        1 => format!("[2025-01-18 10:00:00] {noun} molam_{i:04} {verb}: upstream_{i}"),
        2 => format!("E{i:04} while calling {noun} for order 55001: {verb}"),
        _ => format!("Warning: {noun}-{i:04} {verb} after 3 retries"),
    }
}

fn detection(platform: &str, issue: String) -> Detection {
    Detection {
        platform: platform.into(),
        plugin_version: Some("1.3.5".into()),
        detected_issue: issue,
        issue_severity: Some("high".into()),
        patch_type: None,
        proposed_patch: None,
        sira_confidence: 91.0,
        install: None,
    }
}

/// The naive peer: every rule's regex compiled on its own, tried in the same
/// (priority, specificity, name) order until one matches.
struct Naive {
    rules: Vec<(Platforms, Regex, String)>,
}

impl Naive {
    fn new(set: &RuleSet) -> Naive {
        Naive {
            rules: set
                .healing_rules()
                .iter()
                .map(|r| {
                    (
                        r.platforms.clone(),
                        Regex::new(&r.pattern).unwrap(),
                        r.name.clone(),
                    )
                })
                .collect(),
        }
    }
    fn decide(&self, d: &Detection) -> Option<&str> {
        let p = engine::Platform::parse(&d.platform);
        self.rules
            .iter()
            .find(|(ps, re, _)| ps.matches(p) && re.is_match(&d.detected_issue))
            .map(|(_, _, n)| n.as_str())
    }
}

/// A mixed stream: 3 of 4 detections match some rule, 1 of 4 matches none.
fn workload(rule_count: usize, shipped: bool) -> Vec<Detection> {
    let mut out = Vec::new();
    for k in 0..256usize {
        // Generated rule i is for `all` or names PLATFORMS[i % 5]: send it there.
        let platform = if shipped {
            PLATFORMS[k % 5]
        } else {
            PLATFORMS[((k * 7919) % rule_count) % 5]
        };
        let issue = if k % 4 == 3 {
            format!("Notice: Undefined index: field_{k} in /var/www/html/index.php on line {k}")
        } else if shipped {
            [
                "Fatal error: Unknown column 'merchant_fee' in field list".to_string(),
                "PHP Fatal error: Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)".to_string(),
                "Fatal error: molam-form requires PHP version >= 8.1".to_string(),
                "HTTP 401 Unauthorized: API key expired".to_string(),
            ][k % 4]
                .clone()
        } else {
            issue_for((k * 7919) % rule_count)
        };
        out.push(detection(platform, issue));
    }
    out
}

fn percentiles(set: &RuleSet, naive: &Naive, work: &[Detection], label: &str) {
    let cfg = DecisionConfig::default();
    let mut engine_ns = Vec::new();
    let mut naive_ns = Vec::new();
    // Separate passes: interleaving would let the naive loop (which touches
    // every rule) evict the engine's working set from the CPU caches.
    for _round in 0..200 {
        for d in work {
            let t = Instant::now();
            black_box(set.decide(black_box(d), &cfg));
            engine_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    for _round in 0..200 {
        for d in work {
            let t = Instant::now();
            black_box(naive.decide(black_box(d)));
            naive_ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    let pct = |v: &mut Vec<u64>, q: f64| {
        v.sort_unstable();
        v[((v.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0
    };
    println!(
        "latency {label}: engine p50 {:.2} us p99 {:.2} us | naive p50 {:.2} us p99 {:.2} us ({} decisions each)",
        pct(&mut engine_ns, 0.5),
        pct(&mut engine_ns, 0.99),
        pct(&mut naive_ns, 0.5),
        pct(&mut naive_ns, 0.99),
        engine_ns.len()
    );
}

fn bench_set(c: &mut Criterion, label: &str, set: &RuleSet, work: &[Detection]) {
    let naive = Naive::new(set);
    // Same winner from both, or the comparison means nothing.
    let cfg = DecisionConfig::default();
    let mut matched = 0;
    for d in work {
        let e = set.decide(d, &cfg);
        assert_eq!(e.rule.as_deref(), naive.decide(d), "{}", d.detected_issue);
        matched += usize::from(e.outcome != Outcome::NoMatch);
    }
    assert!(matched > work.len() / 2, "workload must mostly match");
    if std::env::var_os("ENGINE_BENCH_TRACE").is_some() {
        for d in &work[..4] {
            println!("{:#?}", set.decide(d, &cfg));
        }
    }
    percentiles(set, &naive, work, label);

    // Paired rounds (see engine_normalize): alternate engine and naive passes
    // over the workload and take the median ratio, robust to a shared machine.
    let mut ratios = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        for d in work {
            black_box(set.decide(black_box(d), &cfg));
        }
        let a = t.elapsed().as_nanos() as f64;
        let t = Instant::now();
        for d in work {
            black_box(naive.decide(black_box(d)));
        }
        ratios.push(t.elapsed().as_nanos() as f64 / a);
    }
    ratios.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "paired {label}: median speed-up engine vs naive {:.1}x (p10 {:.1}x, p90 {:.1}x, 200 alternating passes of {} decisions)",
        ratios[100],
        ratios[20],
        ratios[180],
        work.len()
    );

    let mut g = c.benchmark_group(format!("decide/{label}"));
    g.throughput(Throughput::Elements(work.len() as u64));
    g.bench_function("engine", |b| {
        b.iter(|| {
            for d in work {
                black_box(set.decide(black_box(d), &cfg));
            }
        })
    });
    g.bench_function("naive_regex_loop", |b| {
        b.iter(|| {
            for d in work {
                black_box(naive.decide(black_box(d)));
            }
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let shipped = RuleSet::load(shipped_files()).expect("shipped rules load");
    bench_set(c, "shipped_4_rules", &shipped, &workload(4, true));

    let mut files: Vec<(String, String)> = (0..1000).map(generated_rule).collect();
    let t = Instant::now();
    let big =
        RuleSet::load(files.drain(..)).unwrap_or_else(|e| panic!("{:#?}", &e[..3.min(e.len())]));
    println!(
        "load 1000 generated rules: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    bench_set(c, "1000_rules", &big, &workload(1000, false));
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}

criterion::criterion_main!(group);
