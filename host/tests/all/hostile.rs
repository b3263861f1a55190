//! The hostile corpus: modules that loop, bomb memory, recurse, trap, lie about their
//! output or import what the host does not give. Each ends in its own typed failure within
//! its limit, and good runs keep working while they fail.

use std::time::{Duration, Instant};

use host::bundle::RequestedLimits;
use host::{Host, HostConfig, RunError, VerifiedBundle};
use serde_json::json;

use crate::common::{host, shipped, snapshot, wat_bundle};

/// What a case expects of the failure.
type Expect = fn(&RunError) -> bool;

/// The ABI exports around a `run` body; `$bump` is a simple allocator.
pub(crate) fn module(body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (if (i32.gt_u (global.get $bump) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  {body}
)"#
    )
}

fn limits(fuel: u64, deadline_ms: u64, max_memory_bytes: u64) -> RequestedLimits {
    RequestedLimits {
        fuel: Some(fuel),
        deadline_ms: Some(deadline_ms),
        max_memory_bytes: Some(max_memory_bytes),
        max_output_bytes: Some(64 << 10),
        max_table_elements: Some(100),
    }
}

fn small() -> RequestedLimits {
    limits(1_000_000, 200, 1 << 20)
}

fn run_on(host: &Host, bundle: &VerifiedBundle) -> Result<host::DryRun, RunError> {
    host.dry_run(bundle, &snapshot(), &json!({}))
}

/// Run `body` and expect `expected`, within `within`.
fn check(
    body: &str,
    limits: RequestedLimits,
    within: Duration,
    expected: impl Fn(&RunError) -> bool,
) {
    let bundle = wat_bundle(&module(body), limits);
    let started = Instant::now();
    let err = run_on(host(), &bundle).expect_err("hostile module must fail");
    let took = started.elapsed();
    assert!(expected(&err), "{body}\n→ {err:?}");
    assert!(took < within, "{err:?} took {took:?}");
}

const INFINITE_LOOP: &str =
    r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;
const MEMORY_BOMB: &str = r#"(func (export "run") (param i32 i32) (result i64)
    (loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0))"#;
const RECURSION: &str = r#"(func $f (export "run") (param i32 i32) (result i64)
    (i64.add (call $f (local.get 0) (local.get 1)) (i64.const 1)))"#;
const TRAP: &str = r#"(func (export "run") (param i32 i32) (result i64) unreachable)"#;
const DIV_ZERO: &str = r#"(func (export "run") (param i32 i32) (result i64) (i64.extend_i32_u (i32.div_u (i32.const 1) (i32.const 0))))"#;
const NOT_UTF8: &str = r#"(data (i32.const 16) "{\"a\":\"\ff\fe\"}")
  (func (export "run") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 10)))"#;
const NOT_JSON: &str = r#"(data (i32.const 16) "{operations: oops")
  (func (export "run") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 17)))"#;
const GIGANTIC_CLAIM: &str =
    r#"(func (export "run") (param i32 i32) (result i64) (i64.const 0x7fffffff))"#;
const GIGANTIC_REAL: &str = r#"(func (export "run") (param i32 i32) (result i64)
    (drop (memory.grow (i32.const 8)))
    (memory.fill (i32.const 0) (i32.const 32) (i32.const 524288))
    (i64.const 524288))"#;
const OUT_OF_BOUNDS: &str = r#"(func (export "run") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 0x7fff0000) (i64.const 32)) (i64.const 10)))"#;

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    check(INFINITE_LOOP, small(), Duration::from_secs(2), |e| {
        *e == RunError::FuelExhausted { fuel: 1_000_000 }
    });
}

#[test]
fn an_infinite_loop_with_fuel_to_spare_hits_the_deadline() {
    // A host whose fuel maximum is effectively unlimited, so only the clock can stop it.
    let mut config = HostConfig::default();
    config.maxima.fuel = u64::MAX / 4;
    config.pool_slots = 4;
    let host = Host::new(config).unwrap();
    let bundle = wat_bundle(&module(INFINITE_LOOP), limits(u64::MAX / 4, 30, 1 << 20));
    let started = Instant::now();
    let err = run_on(&host, &bundle).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, RunError::DeadlineExceeded { deadline_ms: 30 });
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn a_memory_grow_bomb_hits_the_memory_limit() {
    check(MEMORY_BOMB, small(), Duration::from_secs(2), |e| {
        *e == RunError::MemoryLimit {
            max_memory_bytes: 1 << 20,
        }
    });
    // Asking for more than the host's maximum gets the maximum.
    let bundle = wat_bundle(&module(MEMORY_BOMB), limits(1_000_000, 200, 1 << 40));
    assert_eq!(
        run_on(host(), &bundle).unwrap_err(),
        RunError::MemoryLimit {
            max_memory_bytes: HostConfig::default().maxima.max_memory_bytes
        }
    );
}

#[test]
fn an_initial_memory_over_the_limit_fails_at_instantiation() {
    let wat = module("")
        .replace(
            "(memory (export \"memory\") 1)",
            "(memory (export \"memory\") 100)",
        )
        .replace(
            "\n)",
            "\n(func (export \"run\") (param i32 i32) (result i64) (i64.const 0)))",
        );
    let bundle = wat_bundle(&wat, small());
    assert_eq!(
        run_on(host(), &bundle).unwrap_err(),
        RunError::MemoryLimit {
            max_memory_bytes: 1 << 20
        }
    );
}

#[test]
fn a_table_grow_bomb_hits_the_table_limit() {
    let body = r#"(table 1 funcref)
  (func (export "run") (param i32 i32) (result i64)
    (loop $l (drop (table.grow (ref.null func) (i32.const 10))) (br $l)) (i64.const 0))"#;
    check(body, small(), Duration::from_secs(2), |e| {
        *e == RunError::TableLimit {
            max_table_elements: 100,
        }
    });
}

#[test]
fn unbounded_recursion_is_a_stack_overflow() {
    check(
        RECURSION,
        limits(100_000_000, 1000, 1 << 20),
        Duration::from_secs(2),
        |e| *e == RunError::StackOverflow,
    );
}

#[test]
fn traps_are_typed() {
    check(
        TRAP,
        small(),
        Duration::from_secs(1),
        |e| matches!(e, RunError::Trap(m) if m.contains("unreachable")),
    );
    check(
        DIV_ZERO,
        small(),
        Duration::from_secs(1),
        |e| matches!(e, RunError::Trap(m) if m.contains("divide by zero")),
    );
}

#[test]
fn bad_output_is_typed() {
    let any = Duration::from_secs(1);
    check(NOT_UTF8, small(), any, |e| {
        *e == RunError::OutputNotUtf8 { valid_up_to: 6 }
    });
    check(NOT_JSON, small(), any, |e| {
        matches!(e, RunError::OutputNotJson(_))
    });
    check(GIGANTIC_CLAIM, small(), any, |e| {
        *e == RunError::OutputTooLarge {
            size: 0x7fffffff,
            max: 64 << 10,
        }
    });
    check(GIGANTIC_REAL, limits(1_000_000, 200, 4 << 20), any, |e| {
        *e == RunError::OutputTooLarge {
            size: 524288,
            max: 64 << 10,
        }
    });
    check(OUT_OF_BOUNDS, small(), any, |e| {
        matches!(e, RunError::AbiViolation(_))
    });
}

/// A module that returns `json` as its output.
pub(crate) fn returning(json: &str) -> String {
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(data (i32.const 16) "{escaped}")
  (func (export "run") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {})))"#,
        json.len()
    )
}

#[test]
fn output_outside_the_closed_operation_set_is_refused() {
    let any = Duration::from_secs(1);
    let snap = serde_json::to_string(&snapshot()).unwrap();
    let cases: Vec<(String, Expect)> = vec![
        (
            r#"{"operations":[{"op":"drop_database"}],"state":{}}"#.into(),
            |e| matches!(e, RunError::InvalidOutput(_)),
        ),
        (
            r#"{"operations":[],"state":{},"shell":"rm -rf /"}"#.into(),
            |e| matches!(e, RunError::InvalidOutput(_)),
        ),
        (r#"{"operations":[]}"#.into(), |e| {
            matches!(e, RunError::InvalidOutput(_))
        }),
        (r#"[1,2,3]"#.into(), |e| {
            matches!(e, RunError::InvalidOutput(_))
        }),
        (
            format!(
                r#"{{"operations":[{{"op":"add_column","table":"wp_molam_orders","column":"x","column_type":"BLOB"}}],"state":{snap}}}"#
            ),
            |e| {
                matches!(
                    e,
                    RunError::InvalidOperation(host::ops::OpError::Invalid {
                        field: "column_type",
                        ..
                    })
                )
            },
        ),
        (
            format!(
                r#"{{"operations":[{{"op":"add_column","table":"nope","column":"x","column_type":"INT"}}],"state":{snap}}}"#
            ),
            |e| {
                matches!(
                    e,
                    RunError::InvalidOperation(host::ops::OpError::TableMissing { .. })
                )
            },
        ),
        // Drops a merchant's column: restore operations may, a patch may not.
        (
            format!(
                r#"{{"operations":[{{"op":"drop_column","table":"wp_molam_orders","column":"currency"}}],"state":{snap}}}"#
            ),
            |e| {
                matches!(
                    e,
                    RunError::InvalidOperation(host::ops::OpError::RestoreOnly { index: 0 })
                )
            },
        ),
        // Claims a change it does not make: the state does not match.
        (
            format!(
                r#"{{"operations":[{{"op":"set_config","key":"debug","value":true}}],"state":{snap}}}"#
            ),
            |e| *e == RunError::StateMismatch,
        ),
        (r#"{"error":"I refuse"}"#.into(), |e| {
            *e == RunError::PatchRefused("I refuse".into())
        }),
        (
            r#"{"operations":[],"state":[1,2]}"#.into(),
            |e| matches!(e, RunError::InvalidOutput(m) if m.starts_with("state:")),
        ),
    ];
    for (json, expected) in cases {
        check(&returning(&json), small(), any, expected);
    }
    // The same output with an honest state passes.
    let mut after = snapshot();
    after.config.insert("debug".into(), json!(true));
    let honest = format!(
        r#"{{"operations":[{{"op":"set_config","key":"debug","value":true}}],"state":{}}}"#,
        serde_json::to_string(&after).unwrap()
    );
    let run = run_on(host(), &wat_bundle(&module(&returning(&honest)), small())).unwrap();
    assert_eq!(run.state, after);
    // An honest state in another spelling (keys reordered, spaces) is compared as a value.
    let mut reordered = serde_json::to_value(&after).unwrap();
    let tables = reordered.as_object_mut().unwrap().remove("tables").unwrap();
    reordered
        .as_object_mut()
        .unwrap()
        .insert("tables".into(), tables);
    let spelled = format!(
        r#"{{"operations":[{{"op":"set_config","key":"debug","value":true}}], "state": {reordered}}}"#
    );
    assert_ne!(
        reordered.to_string(),
        serde_json::to_string(&after).unwrap()
    );
    let run = run_on(host(), &wat_bundle(&module(&returning(&spelled)), small())).unwrap();
    assert_eq!(run.state, after);
}

#[test]
fn imports_the_host_does_not_offer_are_refused_at_load() {
    let wasi = module(INFINITE_LOOP).replacen(
        "(module",
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        1,
    );
    let bundle = wat_bundle(&wasi, small());
    let expected = RunError::ForbiddenImport {
        module: "wasi_snapshot_preview1".into(),
        name: "fd_write".into(),
    };
    assert_eq!(host().prepare(&bundle).unwrap_err(), expected);
    assert_eq!(run_on(host(), &bundle).unwrap_err(), expected);

    for import in [
        r#"(import "autoheal" "log" (func (param i32) (result i32)))"#,
        r#"(import "autoheal" "clock" (func (result i64)))"#,
        r#"(import "env" "table" (table 1 funcref))"#,
        r#"(import "env" "seed" (global i64))"#,
    ] {
        let wat = module(TRAP).replacen("(module", &format!("(module {import}"), 1);
        assert!(
            matches!(
                host().prepare(&wat_bundle(&wat, small())),
                Err(RunError::ForbiddenImport { .. })
            ),
            "{import}"
        );
    }
}

#[test]
fn missing_or_mistyped_exports_are_refused_at_load() {
    let no_run = module("");
    assert_eq!(
        host().prepare(&wat_bundle(&no_run, small())).unwrap_err(),
        RunError::MissingExport { name: "run".into() }
    );
    let bad_run = module(r#"(func (export "run") (param i32 i32) (result i32) (i32.const 0))"#);
    assert!(matches!(
        host().prepare(&wat_bundle(&bad_run, small())),
        Err(RunError::ExportType { .. })
    ));
    let garbage = host::verify_bundle(
        &crate::common::sign(
            &crate::common::manifest("junk", "1.0.0", b"\0asm\x01\0\0\0\xff", Default::default()),
            b"\0asm\x01\0\0\0\xff",
        ),
        &crate::common::trusted(),
        &Default::default(),
        crate::common::now(),
    )
    .unwrap();
    assert!(matches!(
        host().prepare(&garbage),
        Err(RunError::Compile(_))
    ));
}

#[test]
fn a_module_is_compiled_once_per_hash() {
    let bundle = wat_bundle(&module(TRAP), small());
    host().prepare(&bundle).unwrap();
    let before = host().cached_modules();
    for _ in 0..3 {
        host().prepare(&bundle).unwrap();
    }
    assert_eq!(host().cached_modules(), before);
}

#[test]
fn a_full_pool_is_busy_not_blocked() {
    let mut config = HostConfig {
        pool_slots: 1,
        ..Default::default()
    };
    config.maxima.fuel = u64::MAX / 4;
    let host = std::sync::Arc::new(Host::new(config).unwrap());
    let slow = wat_bundle(&module(INFINITE_LOOP), limits(u64::MAX, 400, 1 << 20));
    let quick = shipped("api_key_refresh_notice");
    let h = host.clone();
    let s = slow.clone();
    let holder = std::thread::spawn(move || run_on(&h, &s));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        run_on(&host, &quick).unwrap_err(),
        RunError::Busy { slots: 1 }
    );
    assert!(matches!(
        holder.join().unwrap(),
        Err(RunError::FuelExhausted { .. } | RunError::DeadlineExceeded { .. })
    ));
    // The slot is free again.
    run_on(&host, &quick).unwrap();
}

#[test]
fn hostile_runs_fail_while_good_runs_keep_working() {
    let hostile: Vec<(VerifiedBundle, Expect)> = vec![
        (wat_bundle(&module(INFINITE_LOOP), small()), |e| {
            matches!(e, RunError::FuelExhausted { .. })
        }),
        (wat_bundle(&module(MEMORY_BOMB), small()), |e| {
            matches!(e, RunError::MemoryLimit { .. })
        }),
        (wat_bundle(&module(RECURSION), small()), |e| {
            matches!(e, RunError::StackOverflow)
        }),
        (wat_bundle(&module(TRAP), small()), |e| {
            matches!(e, RunError::Trap(_))
        }),
        (wat_bundle(&module(NOT_JSON), small()), |e| {
            matches!(e, RunError::OutputNotJson(_))
        }),
        (wat_bundle(&module(GIGANTIC_CLAIM), small()), |e| {
            matches!(e, RunError::OutputTooLarge { .. })
        }),
    ];
    let good = shipped("add_missing_column");
    let params = json!({"table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"});
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (bundle, expected) in &hostile {
            for _ in 0..3 {
                scope.spawn(move || {
                    for _ in 0..5 {
                        let err = run_on(host(), bundle).unwrap_err();
                        assert!(expected(&err), "{err:?}");
                    }
                });
            }
        }
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let run = host().dry_run(&good, &snapshot(), &params).unwrap();
                    assert_eq!(run.operations.len(), 1);
                }
            });
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_host_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Host>();
    assert_send_sync::<VerifiedBundle>();
    assert_send_sync::<host::DryRun>();
    assert_send_sync::<RunError>();
}

#[test]
fn a_log_flood_is_capped_and_the_run_still_completes() {
    let body = r#"(import "autoheal" "log" (func $log (param i32 i32)))
  (data (i32.const 16) "spam spam spam")
  (data (i32.const 64) "{\"error\":\"done\"}")
  (func (export "run") (param i32 i32) (result i64)
    (local $i i32)
    (loop $l
      (call $log (i32.const 16) (i32.const 14))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 16)))"#;
    // Imports must come first in a module: move it before the memory.
    let wat = module(body);
    let (import, rest) = body.split_once('\n').unwrap();
    let wat = wat
        .replacen(body, rest, 1)
        .replacen("(module", &format!("(module {import}"), 1);
    let bundle = wat_bundle(&wat, small());
    assert_eq!(
        run_on(host(), &bundle).unwrap_err(),
        RunError::PatchRefused("done".into())
    );
    // A log call pointing outside memory is a trap, not a host crash.
    let bad = wat.replace(
        "(call $log (i32.const 16) (i32.const 14))",
        "(call $log (i32.const -16) (i32.const 14))",
    );
    assert!(
        matches!(run_on(host(), &wat_bundle(&bad, small())), Err(RunError::Trap(m)) if m.contains("log"))
    );
}

#[test]
fn oversized_inputs_and_modules_are_refused_before_running() {
    let small_host = Host::new(HostConfig {
        max_input_bytes: 512,
        max_module_bytes: 1024,
        pool_slots: 2,
        ..Default::default()
    })
    .unwrap();
    let mut big = snapshot();
    big.facts.insert("blob".into(), json!("x".repeat(1000)));
    let bundle = shipped("api_key_refresh_notice");
    assert!(matches!(
        small_host.dry_run(&bundle, &big, &json!({})),
        Err(RunError::ModuleTooLarge { max: 1024, .. })
    ));
    let tiny = wat_bundle(&module(TRAP), small());
    assert!(matches!(
        small_host.dry_run(&tiny, &big, &json!({})),
        Err(RunError::InputTooLarge { max: 512, .. })
    ));
}
