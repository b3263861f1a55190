//! Patch host (issue 4): dry runs of a shipped patch through the host (verified once,
//! compiled once, pre-instantiated, pooled) against a naive embedding that compiles and
//! instantiates the module on every call — same module, same input, same run. In the same
//! run, Extism 1.30 on an equivalent guest written with extism-pdk
//! (`benches/guests/add_missing_column_extism/`, committed as .wasm): a new `extism::Plugin`
//! from a compiled plugin per call (Extism's "new instance and call"), one plugin called
//! repeatedly, and `extism::Plugin::new` (compile, no cache) per call.
//!
//! `cargo bench -p benches --bench host_dry_run` prints a latency table (p50/p99 over many
//! single runs, runs/s) and then the criterion figures.

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{black_box, Criterion};
use host::{AcceptedVersions, Host, HostConfig, State, TrustedKeys, VerifiedBundle};
use serde_json::{json, Value};

fn patches() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches")
}

/// The committed, dev-signed bundle of `add_missing_column`, verified once.
fn bundle() -> VerifiedBundle {
    let key = host::tools::read_public_key(&patches().join("dev-key/autoheal.pub")).unwrap();
    let trusted: TrustedKeys = [key].into_iter().collect();
    let dir = patches().join("bundles");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("add_missing_column-")
        })
        .expect("committed bundle");
    host::verify_bundle(
        &std::fs::read(path).unwrap(),
        &trusted,
        &AcceptedVersions::new(),
        Utc::now(),
    )
    .unwrap()
}

/// A snapshot of about 1 KB of JSON, like a real WooCommerce site's.
fn snapshot() -> State {
    serde_json::from_value(json!({
        "platform": "woocommerce", "plugin_version": "1.3.5", "php_version": "8.1.27",
        "wordpress_version": "6.5.2", "woocommerce_version": "8.8.3",
        "config": {
            "memory_limit": "128M", "max_execution_time": 30, "debug": false,
            "payment.timeout_ms": 30000, "payment.retries": 3, "webhook.secret_set": true,
            "currency": "XOF", "locale": "fr_SN"
        },
        "tables": {
            "wp_molam_orders": {
                "id": "BIGINT UNSIGNED", "order_id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)",
                "currency": "CHAR(3)", "status": "VARCHAR(32)", "created_at": "DATETIME",
                "updated_at": "DATETIME", "provider_ref": "VARCHAR(191)"
            },
            "wp_molam_refunds": {
                "id": "BIGINT UNSIGNED", "order_id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)",
                "reason": "TEXT", "created_at": "DATETIME"
            },
            "wp_molam_webhooks": {
                "id": "BIGINT UNSIGNED", "event": "VARCHAR(64)", "payload": "LONGTEXT",
                "received_at": "DATETIME", "processed": "BOOLEAN"
            }
        }
    }))
    .unwrap()
}

fn params() -> Value {
    json!({"table": "wp_molam_orders", "column": "merchant_fee", "column_type": "DECIMAL(10,2)"})
}

/// The naive embedding: a fresh compile, linker, store and instance for every call, same
/// fuel setting, same JSON in and out (parsed, not validated against the snapshot).
struct Naive {
    engine: wasmtime::Engine,
    module_bytes: Vec<u8>,
}

impl Naive {
    fn new(module_bytes: &[u8]) -> Self {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        Self {
            engine: wasmtime::Engine::new(&config).unwrap(),
            module_bytes: module_bytes.to_vec(),
        }
    }

    fn run(&self, snapshot: &State, params: &Value) -> Value {
        use wasmtime::{Caller, Linker, Module, Store};
        let module = Module::from_binary(&self.engine, &self.module_bytes).unwrap();
        let mut linker: Linker<()> = Linker::new(&self.engine);
        linker
            .func_wrap("autoheal", "log", |_: Caller<'_, ()>, _: i32, _: i32| {})
            .unwrap();
        let mut store = Store::new(&self.engine, ());
        store.set_fuel(10_000_000).unwrap();
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "alloc")
            .unwrap();
        let run = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, "run")
            .unwrap();
        let input = host::abi_input(snapshot, params);
        let ptr = alloc.call(&mut store, input.len() as i32).unwrap();
        memory.write(&mut store, ptr as usize, &input).unwrap();
        let packed = run.call(&mut store, (ptr, input.len() as i32)).unwrap() as u64;
        let (p, n) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        serde_json::from_slice(&memory.data(&store)[p..p + n]).unwrap()
    }
}

/// Extism 1.30 on `benches/guests/add_missing_column_extism/add_missing_column.wasm`: the same
/// patch logic written in Rust with extism-pdk (one export, `run`: the ABI's input JSON in, the
/// patch's output JSON out). No WASI, no compilation cache, and the naive embedding's fuel.
/// Like `Naive`, each call builds the input with `host::abi_input` and parses the output.
struct Extism {
    wasm: Vec<u8>,
    compiled: extism::CompiledPlugin,
}

impl Extism {
    fn new() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("guests/add_missing_column_extism/add_missing_column.wasm");
        let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let compiled = Self::builder(&wasm).compile().unwrap();
        Self { wasm, compiled }
    }

    fn builder(wasm: &[u8]) -> extism::PluginBuilder<'_> {
        extism::PluginBuilder::new(wasm)
            .with_wasi(false)
            .with_cache_disabled()
            .with_fuel_limit(10_000_000)
    }

    /// A new plugin (store + instance) from the compiled one.
    fn instance(&self) -> extism::Plugin {
        extism::Plugin::new_from_compiled(&self.compiled).unwrap()
    }

    /// A new plugin compiled from the bytes (guest and Extism's kernel), as `Plugin::new` does.
    fn compile_and_instantiate(&self) -> extism::Plugin {
        Self::builder(&self.wasm).build().unwrap()
    }

    fn call(plugin: &mut extism::Plugin, snapshot: &State, params: &Value) -> Value {
        let input = host::abi_input(snapshot, params);
        let out: &[u8] = plugin.call("run", input.as_slice()).unwrap();
        serde_json::from_slice(out).unwrap()
    }
}

struct Figures {
    runs_per_s: f64,
    p50: Duration,
    p99: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Figures {
    for _ in 0..iterations / 10 + 1 {
        f();
    }
    let mut samples = Vec::with_capacity(iterations);
    let started = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    samples.sort();
    Figures {
        runs_per_s: iterations as f64 / total.as_secs_f64(),
        p50: samples[iterations / 2],
        p99: samples[iterations * 99 / 100],
    }
}

fn latency_report(host: &Host, bundle: &VerifiedBundle, naive: &Naive, extism: &Extism) {
    let snapshot = snapshot();
    let params = params();
    let input_bytes = host::abi_input(&snapshot, &params).len();
    let output_bytes = host
        .dry_run(bundle, &snapshot, &params)
        .unwrap()
        .output
        .len();
    let pooled = measure(20_000, || {
        black_box(host.dry_run(bundle, &snapshot, &params).unwrap());
    });
    let naive_f = measure(300, || {
        black_box(naive.run(&snapshot, &params));
    });
    let extism_instance = measure(5_000, || {
        black_box(Extism::call(&mut extism.instance(), &snapshot, &params));
    });
    let mut reused = extism.instance();
    let extism_reused = measure(20_000, || {
        black_box(Extism::call(&mut reused, &snapshot, &params));
    });
    let extism_compile = measure(100, || {
        black_box(Extism::call(
            &mut extism.compile_and_instantiate(),
            &snapshot,
            &params,
        ));
    });
    let fuel = host
        .dry_run(bundle, &snapshot, &params)
        .unwrap()
        .fuel_consumed;
    let extism_fuel = reused.fuel_consumed().unwrap_or(0);
    let extism_output_bytes = {
        let input = host::abi_input(&snapshot, &params);
        reused
            .call::<_, &[u8]>("run", input.as_slice())
            .unwrap()
            .len()
    };
    println!("\n== host_dry_run: add_missing_column, {input_bytes} B JSON in, {output_bytes} B out, {fuel} fuel ==");
    println!("{:<46} {:>12} {:>10} {:>10}", "", "runs/s", "p50", "p99");
    for (name, f) in [
        ("host (cached, pre-instantiated, pooled)", &pooled),
        ("naive (compile + instantiate each call)", &naive_f),
        (
            "extism 1.30 (new instance from compiled, call)",
            &extism_instance,
        ),
        (
            "extism 1.30 (one instance, called repeatedly)",
            &extism_reused,
        ),
        ("extism 1.30 (Plugin::new, no cache, call)", &extism_compile),
    ] {
        println!(
            "{name:<46} {:>12.0} {:>10.1?} {:>10.1?}",
            f.runs_per_s, f.p50, f.p99
        );
    }
    println!(
        "ratio host/naive: {:.1}x runs/s, p50 {:.1}x lower, p99 {:.1}x lower",
        pooled.runs_per_s / naive_f.runs_per_s,
        naive_f.p50.as_secs_f64() / pooled.p50.as_secs_f64(),
        naive_f.p99.as_secs_f64() / pooled.p99.as_secs_f64(),
    );
    for (name, f) in [
        ("extism new instance", &extism_instance),
        ("extism one instance", &extism_reused),
    ] {
        println!(
            "ratio host/{name}: {:.1}x runs/s, p50 {:.1}x lower, p99 {:.1}x lower",
            pooled.runs_per_s / f.runs_per_s,
            f.p50.as_secs_f64() / pooled.p50.as_secs_f64(),
            f.p99.as_secs_f64() / pooled.p99.as_secs_f64(),
        );
    }
    println!(
        "extism guest (Rust, extism-pdk, serde_json): {} B module, {extism_output_bytes} B out, {extism_fuel} fuel\n",
        extism.wasm.len()
    );
}

/// Where a pooled run's time goes: the same host, a module that does nothing but return a
/// constant (instantiate + call + copy out), and the host-side JSON work alone.
fn breakdown(host: &Host) {
    let wat = r#"(module (memory (export "memory") 1)
      (data (i32.const 16) "{\"operations\":[],\"state\":{}}")
      (func (export "alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "run") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 28))))"#;
    let module = wat::parse_str(wat).unwrap();
    let key = host::SigningKey::from_seed(&[1; 32]);
    let now = Utc::now();
    let manifest = host::Manifest {
        name: "empty".into(),
        version: "1.0.0".parse().unwrap(),
        patch_type: host::PatchType::Notify,
        description: String::new(),
        platforms: vec!["all".into()],
        plugin_versions: "*".parse().unwrap(),
        module_sha256: host::bundle::sha256_hex(&module),
        module_size_bytes: module.len() as u64,
        created_at: now,
        expires_at: now + chrono::Duration::days(1),
        abi_version: 1,
        operations: vec![host::ops::OperationKind::NotifyMerchant],
        limits: Default::default(),
        params_schema: Default::default(),
    };
    let signed =
        host::sign_bundle(&host::bundle::manifest_bytes(&manifest), &module, &[&key]).unwrap();
    let trusted: TrustedKeys = [key.public_key()].into_iter().collect();
    let empty = host::verify_bundle(&signed, &trusted, &AcceptedVersions::new(), now).unwrap();
    let empty_state = State::default();
    let nothing = json!({});
    let bare = measure(20_000, || {
        black_box(host.dry_run(&empty, &empty_state, &nothing).unwrap());
    });
    let snapshot = snapshot();
    let params = params();
    let run = host.dry_run(&bundle(), &snapshot, &params).unwrap();
    #[derive(serde::Deserialize)]
    struct Output {
        operations: Vec<host::Operation>,
        state: State,
    }
    let json_only = measure(20_000, || {
        let input = host::abi_input(&snapshot, &params);
        let out: Output = serde_json::from_slice(&run.output).unwrap();
        let (expected, restore) =
            host::ops::apply_with_restore(&snapshot, &out.operations).unwrap();
        black_box((input, expected == out.state, restore));
    });
    println!("breakdown (same run):");
    for (name, f) in [
        ("empty module, empty state", &bare),
        ("host side only: JSON in/out, apply, restore", &json_only),
    ] {
        println!(
            "  {name:<40} {:>10.0}/s p50 {:>9.1?} p99 {:>9.1?}",
            f.runs_per_s, f.p50, f.p99
        );
    }
    println!();
}

fn main() {
    let host = Host::new(HostConfig::default()).unwrap();
    let bundle = bundle();
    host.prepare(&bundle).unwrap();
    let naive = Naive::new(bundle.module_bytes());
    let extism = Extism::new();
    // All give the same answer.
    let snapshot = snapshot();
    let params = params();
    let ours = host.dry_run(&bundle, &snapshot, &params).unwrap();
    let theirs = naive.run(&snapshot, &params);
    assert_eq!(
        serde_json::from_slice::<Value>(&ours.output).unwrap(),
        theirs
    );
    let extism_out = Extism::call(&mut extism.instance(), &snapshot, &params);
    assert_eq!(
        serde_json::from_slice::<Value>(&ours.output).unwrap(),
        extism_out
    );
    #[derive(serde::Deserialize)]
    struct Output {
        operations: Vec<host::Operation>,
        state: State,
    }
    let (host_out, extism_typed): (Output, Output) = (
        serde_json::from_slice(&ours.output).unwrap(),
        serde_json::from_value(extism_out).unwrap(),
    );
    assert_eq!(host_out.operations, extism_typed.operations);
    assert_eq!(host_out.state, extism_typed.state);
    assert_eq!(host_out.operations.len(), 1);
    for mut plugin in [extism.compile_and_instantiate(), extism.instance()] {
        for _ in 0..3 {
            assert_eq!(theirs, Extism::call(&mut plugin, &snapshot, &params));
        }
    }

    latency_report(&host, &bundle, &naive, &extism);
    breakdown(&host);

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("host_dry_run");
    group.bench_function("host_pooled", |b| {
        b.iter(|| host.dry_run(&bundle, &snapshot, &params).unwrap())
    });
    group.bench_function("extism_new_instance_and_call", |b| {
        b.iter(|| Extism::call(&mut extism.instance(), &snapshot, &params))
    });
    let mut reused = extism.instance();
    group.bench_function("extism_reused_instance_call", |b| {
        b.iter(|| Extism::call(&mut reused, &snapshot, &params))
    });
    group.sample_size(20);
    group.bench_function("naive_compile_each_call", |b| {
        b.iter(|| naive.run(&snapshot, &params))
    });
    group.bench_function("extism_plugin_new_no_cache_and_call", |b| {
        b.iter(|| Extism::call(&mut extism.compile_and_instantiate(), &snapshot, &params))
    });
    group.finish();
    c.final_summary();
}
