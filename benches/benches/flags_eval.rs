//! In-process flag evaluation: autoheal's `FlagSnapshot::evaluate` against
//! `unleash-yggdrasil` (Unleash's reference engine) on the equivalent Unleash
//! flags, in the same run: a gradual rollout (50 %, user stickiness) and a
//! three-way variant split. Both engines see the same 1,024 users; the setup
//! asserts they agree on every one before timing.
//!
//! yggdrasil is timed through `is_enabled` / `get_variant`, the calls an
//! Unleash SDK makes per evaluation (they include its usage counters).

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::{EvalContext, FlagDefinition, FlagSnapshot};
use serde_json::json;
use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

const USERS: usize = 1_024;

fn ours() -> FlagSnapshot {
    let definitions: Vec<FlagDefinition> = [
        json!({"key": "rollout", "type": "percentage", "percentage": 50, "stickiness": "user_id"}),
        json!({"key": "ab", "type": "variant", "default_value": "off", "variant_stickiness": "user_id",
               "variants": [{"name": "a", "weight": 33}, {"name": "b", "weight": 33}, {"name": "c", "weight": 34}]}),
    ]
    .into_iter()
    .map(|value| serde_json::from_value(value).unwrap())
    .collect();
    let (snapshot, errors) = FlagSnapshot::build(definitions, vec![], |_| None);
    assert!(errors.is_empty());
    snapshot
}

fn theirs() -> EngineState {
    let state: UpdateMessage = serde_json::from_value(json!({"version": 2, "features": [
        {"name": "rollout", "enabled": true, "strategies": [{"name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "rollout"}}]},
        {"name": "ab", "enabled": true, "strategies": [], "variants": [
            {"name": "a", "weight": 33, "stickiness": "userId"},
            {"name": "b", "weight": 33, "stickiness": "userId"},
            {"name": "c", "weight": 34, "stickiness": "userId"}]},
    ]}))
    .unwrap();
    let engine = EngineState::default();
    assert!(engine.take_state(state).is_none());
    engine
}

fn flags(c: &mut Criterion) {
    let snapshot = ours();
    let yggdrasil = theirs();
    let now = Utc.with_ymd_and_hms(2025, 1, 18, 10, 0, 0).unwrap();
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:05}")).collect();
    let our_contexts: Vec<EvalContext> = users
        .iter()
        .map(|user| EvalContext {
            user_id: Some(user.clone()),
            ..EvalContext::default()
        })
        .collect();
    let their_contexts: Vec<Context> = users
        .iter()
        .map(|user| Context {
            user_id: Some(user.clone()),
            ..Context::default()
        })
        .collect();
    for (mine, theirs) in our_contexts.iter().zip(&their_contexts) {
        assert_eq!(
            snapshot.evaluate("rollout", mine, now).is_on(),
            yggdrasil.is_enabled("rollout", theirs, &None)
        );
        assert_eq!(
            snapshot.evaluate("ab", mine, now).variant,
            Some(yggdrasil.get_variant("ab", theirs, &None).name.as_str())
        );
    }

    let mut group = c.benchmark_group("flags_gradual_rollout");
    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("autoheal", |b| {
        b.iter(|| {
            for context in &our_contexts {
                black_box(
                    snapshot
                        .evaluate(black_box("rollout"), context, now)
                        .is_on(),
                );
            }
        })
    });
    group.bench_function("yggdrasil", |b| {
        b.iter(|| {
            for context in &their_contexts {
                black_box(yggdrasil.is_enabled(black_box("rollout"), context, &None));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("flags_variant");
    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("autoheal", |b| {
        b.iter(|| {
            for context in &our_contexts {
                black_box(snapshot.evaluate(black_box("ab"), context, now).variant);
            }
        })
    });
    group.bench_function("yggdrasil", |b| {
        b.iter(|| {
            for context in &their_contexts {
                black_box(yggdrasil.get_variant(black_box("ab"), context, &None));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, flags);
criterion_main!(benches);
