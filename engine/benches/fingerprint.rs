//! The grouping cost per error event: `fingerprint()` (one pass of the combined regex) against
//! a naive peer that runs one `Regex::replace_all` per parameter, in sequence, with the same
//! patterns, then hashes the same way. The events are the test table's messages
//! (`tests/fingerprint/messages.txt`), once each with and without a PHP stack trace.
//!
//! Run: `cargo bench -p engine --bench fingerprint` (criterion reports the time for the
//! whole mix; divide by the event count it prints, or read its elements/s).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::fingerprint::{parameters, Parameter};
use regex::Regex;
use sha2::{Digest, Sha256};

const MESSAGES: &str = include_str!("../tests/fingerprint/messages.txt");

const TRACE: &str = "\
#0 /var/www/html/wp-content/plugins/molam-pay/includes/class-gateway.php(214): Molam_Gateway->charge(Array)
#1 [internal function]: Molam_Gateway->process_payment(1231)
#2 /var/www/html/wp-includes/class-wp-hook.php(324): call_user_func_array(Array, Array)
#3 /var/www/html/wp-content/plugins/woocommerce/includes/class-wc-checkout.php(1288): WC_Checkout->process_order_payment(1231, 'molam')
#4 {main}";

fn messages() -> Vec<&'static str> {
    MESSAGES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("=> "))
        .collect()
}

/// The naive peer: each parameter's regex on its own, applied one after the other. It skips
/// the few checks on matched text `parameterize` makes (less work, not more).
struct Naive(Vec<(Regex, &'static Parameter)>);

impl Naive {
    fn new() -> Self {
        Naive(parameters().iter().map(|p| (p.regex(), p)).collect())
    }

    fn parameterize(&self, message: &str) -> String {
        let mut text = message.trim().to_owned();
        for (regex, p) in &self.0 {
            text = regex
                .replace_all(&text, |caps: &regex::Captures| {
                    let whole = caps.get(0).unwrap();
                    let value = caps.name(p.name).unwrap();
                    let before = &whole.as_str()[..value.start() - whole.start()];
                    let after = &whole.as_str()[value.end() - whole.start()..];
                    format!("{before}{}{after}", p.placeholder)
                })
                .into_owned();
        }
        text
    }

    fn hash(&self, message: &str) -> String {
        let pattern = self.parameterize(message);
        let digest = Sha256::digest(format!("autoheal-fingerprint\n1\n{pattern}\n"));
        let mut hash = String::with_capacity(64);
        for byte in digest {
            hash.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            hash.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        hash
    }
}

fn bench(c: &mut Criterion) {
    let messages = messages();
    let naive = Naive::new();
    let same = messages
        .iter()
        .filter(|m| naive.parameterize(m) == engine::parameterize(m))
        .count();
    println!(
        "{} events; the naive peer gives the same pattern for {same} of them",
        messages.len()
    );

    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("fingerprint (combined regex, one pass)", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(engine::fingerprint(black_box(m), None));
            }
        })
    });
    group.bench_function("naive (one replace_all per pattern)", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(naive.hash(black_box(m)));
            }
        })
    });
    group.bench_function("fingerprint with a 5-frame PHP trace", |b| {
        b.iter(|| {
            for m in &messages {
                black_box(engine::fingerprint(black_box(m), Some(TRACE)));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
