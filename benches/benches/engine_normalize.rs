//! Interop normalizations per second: the engine (`RuleSet::normalize`, the six
//! seed mappings, CloudEvents envelope with a sha256 id) against the `vrl` crate
//! running the equivalent remap program (field mapping, currency upper-cased,
//! amount to minor units by the currency's exponent; no envelope, no hash).
//!
//! Run: `cargo bench -p benches --bench engine_normalize`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{InteropEvent, RuleSet};
use serde_json::{json, Value};
use vrl::compiler::{state::RuntimeState, Context, Program, TargetValue, TimeZone};
use vrl::value::{Secrets, Value as VrlValue};

fn interop_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/interop");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                format!("interop/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// ((platform, source event), payload, the VRL object literal's fields)
fn cases() -> Vec<((&'static str, &'static str), Value, &'static str)> {
    vec![
        (
            ("woocommerce", "woocommerce_checkout_order_processed"),
            json!({"id": "123", "total": 55000, "currency": "XOF", "customer_id": "c-9", "billing": {"email": "a@b.c", "city": "Dakar"}}),
            r#""order_id": .id, "amount": .total, "currency": .currency"#,
        ),
        (
            ("woocommerce", "woocommerce_payment_complete"),
            json!({"order_id": 123, "total": "550.00", "currency": "USD", "transaction_id": "tx_1"}),
            r#""id": .order_id, "amount": .total, "currency": .currency"#,
        ),
        (
            ("shopify", "orders/create"),
            json!({"id": 820982911946154500u64, "total_price": "550.00", "currency": "USD", "email": "jon@example.com", "line_items": [{"sku": "A", "price": "275.00"}, {"sku": "B", "price": "275.00"}]}),
            r#""order_id": .id, "amount": .total_price, "currency": .currency"#,
        ),
        (
            ("shopify", "orders/paid"),
            json!({"id": 5, "total_price": "12.345", "currency": "KWD", "financial_status": "paid"}),
            r#""order_id": .id, "amount": .total_price, "currency": .currency"#,
        ),
        (
            ("prestashop", "actionValidateOrder"),
            json!({"id_order": 77, "total_paid": 1500.5, "currency": {"iso_code": "EUR"}, "id_customer": 12}),
            r#""order_id": .id_order, "amount": .total_paid, "currency": .currency.iso_code"#,
        ),
        (
            ("magento", "sales_order_place_after"),
            json!({"entity_id": "000000012", "grand_total": "3000.0000", "order_currency_code": "XOF", "customer_email": "m@x.y"}),
            r#""order_id": .entity_id, "amount": .grand_total, "currency": .order_currency_code"#,
        ),
    ]
}

/// The same work in VRL: a new object with the mapped fields, the currency
/// upper-cased, the amount scaled by the currency's exponent and made an integer.
fn vrl_program(fields: &str) -> Program {
    let src = format!(
        r#"
. = {{ {fields} }}
.currency = upcase(string!(.currency))
scale = to_float!(get!({{"XOF": 1, "USD": 100, "EUR": 100, "KWD": 1000}}, [.currency]))
.amount = to_int(round(to_float!(.amount) * scale))
"#
    );
    let fns = vrl::stdlib::all();
    match vrl::compiler::compile(&src, &fns) {
        Ok(r) => r.program,
        Err(e) => panic!("{src}\n{e:?}"),
    }
}

fn run_vrl(program: &Program, input: &VrlValue) -> VrlValue {
    let mut target = TargetValue {
        value: input.clone(),
        metadata: VrlValue::Object(BTreeMap::new()),
        secrets: Secrets::default(),
    };
    let mut state = RuntimeState::default();
    let tz = TimeZone::default();
    let mut ctx = Context::new(&mut target, &mut state, &tz);
    program.resolve(&mut ctx).expect("vrl program runs");
    target.value
}

fn benches(c: &mut Criterion) {
    let set = RuleSet::load(interop_files()).expect("shipped mappings load");
    let time = "2025-01-18T10:00:00Z".parse().unwrap();
    let events: Vec<InteropEvent> = cases()
        .into_iter()
        .map(|((p, e), payload, _)| InteropEvent {
            platform: p.into(),
            shop: "shop-42".into(),
            event_type: e.into(),
            event_id: Some("evt-1".into()),
            time,
            payload,
        })
        .collect();
    let programs: Vec<(Program, VrlValue)> = cases()
        .into_iter()
        .map(|(_, payload, mapping)| (vrl_program(mapping), VrlValue::from(payload)))
        .collect();

    // Same data out of both, or the comparison means nothing.
    for (ev, (prog, input)) in events.iter().zip(&programs) {
        let ours = set.normalize(ev).expect("normalizes");
        let theirs: Value = serde_json::to_value(run_vrl(prog, input)).unwrap();
        assert_eq!(
            Value::Object(ours.data.clone()),
            theirs,
            "{}",
            ev.event_type
        );
    }

    // Paired rounds: the machine is shared, so load changes between criterion's
    // two measurements. Alternate short rounds and take the median ratio.
    let mut ratios = Vec::new();
    let (mut ours_ns, mut vrl_ns) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for ev in &events {
                black_box(set.normalize(black_box(ev)).unwrap());
            }
        }
        let a = t.elapsed().as_nanos() as f64 / (20.0 * events.len() as f64);
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for (prog, input) in &programs {
                black_box(run_vrl(prog, black_box(input)));
            }
        }
        let b = t.elapsed().as_nanos() as f64 / (20.0 * events.len() as f64);
        ratios.push(a / b);
        ours_ns.push(a);
        vrl_ns.push(b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    println!(
        "paired normalize: engine {:.0} ns/event, vrl {:.0} ns/event, median ratio engine/vrl {:.2} (400 alternating rounds)",
        median(&mut ours_ns),
        median(&mut vrl_ns),
        median(&mut ratios)
    );

    let mut g = c.benchmark_group("normalize/6_seed_mappings");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("engine", |b| {
        b.iter(|| {
            for ev in &events {
                black_box(set.normalize(black_box(ev)).unwrap());
            }
        })
    });
    g.bench_function("vrl", |b| {
        b.iter(|| {
            for (prog, input) in &programs {
                black_box(run_vrl(prog, black_box(input)));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = benches
}
criterion_main!(group);
