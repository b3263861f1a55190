//! The wasmtime sandbox: one [`Host`] (one `Engine`) per process, modules compiled once per
//! SHA-256 and kept as `InstancePre`, a pooling allocator, and per-run fuel, epoch deadline,
//! memory, table and output limits. Every failure is a [`RunError`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use wasmtime::{
    Caller, Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolConcurrencyLimitError, PoolingAllocationConfig, ResourceLimiter, Store, Trap, ValType,
};

use crate::bundle::{Manifest, ParamFormat, ParamType, VerifiedBundle};
use crate::error::RunError;
use crate::ops::{self, Operation, State};

/// The one import a patch may have: `(import "autoheal" "log" (func (param i32 i32)))`.
pub const LOG_IMPORT: (&str, &str) = ("autoheal", "log");
/// Required exports.
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ALLOC: &str = "alloc";
pub const EXPORT_RUN: &str = "run";

/// Limits of one run. Units are in the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Deterministic budget: wasmtime fuel units (about one per instruction).
    pub fuel: u64,
    pub max_memory_bytes: u64,
    pub max_table_elements: u64,
    /// Wall-clock deadline, enforced by epoch interruption.
    pub deadline_ms: u64,
    pub max_output_bytes: u64,
}

/// The host's configuration: the maxima that cap what a manifest asks for, the defaults for
/// what it does not ask for, and the engine-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub maxima: Limits,
    pub defaults: Limits,
    /// Largest `{snapshot, params}` JSON handed to a patch.
    pub max_input_bytes: usize,
    /// Largest module the host compiles.
    pub max_module_bytes: usize,
    /// WebAssembly stack per run; deeper recursion is [`RunError::StackOverflow`].
    pub max_wasm_stack_bytes: usize,
    /// Pooled instance slots = runs that can be in flight at once; one more is
    /// [`RunError::Busy`].
    pub pool_slots: u32,
    /// Compiled modules kept in memory (by SHA-256).
    pub max_cached_modules: usize,
    /// Bytes of a pooled slot's memory (and table) reset with memset and kept resident
    /// between runs.
    pub keep_resident_bytes: usize,
    /// Epoch tick period; deadlines are rounded up to it.
    pub epoch_tick_ms: u64,
    /// Log lines kept per run and bytes per line.
    pub max_log_lines: usize,
    pub max_log_line_bytes: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            maxima: Limits {
                fuel: 100_000_000,
                max_memory_bytes: 64 << 20,
                max_table_elements: 10_000,
                deadline_ms: 1_000,
                max_output_bytes: 1 << 20,
            },
            defaults: Limits {
                fuel: 10_000_000,
                max_memory_bytes: 4 << 20,
                max_table_elements: 1_000,
                deadline_ms: 100,
                max_output_bytes: 64 << 10,
            },
            max_input_bytes: 1 << 20,
            max_module_bytes: 4 << 20,
            max_wasm_stack_bytes: 256 << 10,
            pool_slots: 64,
            max_cached_modules: 256,
            keep_resident_bytes: 128 << 10,
            epoch_tick_ms: 1,
            max_log_lines: 32,
            max_log_line_bytes: 512,
        }
    }
}

impl HostConfig {
    /// The limits for a manifest: what it asks for, capped by the maxima; the defaults for
    /// what it leaves out.
    pub fn limits_for(&self, manifest: &Manifest) -> Limits {
        let r = &manifest.limits;
        let pick = |asked: Option<u64>, default: u64, max: u64| asked.unwrap_or(default).min(max);
        Limits {
            fuel: pick(r.fuel, self.defaults.fuel, self.maxima.fuel),
            max_memory_bytes: pick(
                r.max_memory_bytes,
                self.defaults.max_memory_bytes,
                self.maxima.max_memory_bytes,
            ),
            max_table_elements: pick(
                r.max_table_elements,
                self.defaults.max_table_elements,
                self.maxima.max_table_elements,
            ),
            deadline_ms: pick(
                r.deadline_ms,
                self.defaults.deadline_ms,
                self.maxima.deadline_ms,
            ),
            max_output_bytes: pick(
                r.max_output_bytes,
                self.defaults.max_output_bytes,
                self.maxima.max_output_bytes,
            ),
        }
    }
}

/// The result of a clean dry run. The snapshot it ran against is untouched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRun {
    /// What the patch would do, validated and checked against the snapshot.
    pub operations: Vec<Operation>,
    /// The snapshot with `operations` applied (the patch's claim, checked by the host).
    pub state: State,
    /// Operations that take `state` back to the snapshot (the rollback plan).
    pub restore: Vec<Operation>,
    /// Lines the patch logged through `autoheal.log`.
    pub logs: Vec<String>,
    pub fuel_consumed: u64,
    /// The limits the run had.
    pub limits: Limits,
    /// The module's raw output bytes (for cross-implementation checks).
    #[serde(skip)]
    pub output: Vec<u8>,
}

/// The JSON a patch receives: `{"params":…,"snapshot":…}`, compact, keys in this order,
/// maps sorted. The same inputs always give the same bytes.
pub fn abi_input(snapshot: &State, params: &Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct AbiInput<'a> {
        params: &'a Value,
        snapshot: &'a State,
    }
    serde_json::to_vec(&AbiInput { params, snapshot }).expect("input serializes")
}

/// The patch's output. `state` stays raw: the host checks it against the state it computes
/// itself from the operations, and a byte-for-byte match with that state's canonical JSON
/// (what the shipped patches emit) spares parsing it into maps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbiOutput<'a> {
    #[serde(default)]
    operations: Option<Vec<Operation>>,
    #[serde(default, borrow)]
    state: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<String>,
}

/// Per-run store data: the limiter and what the log import collected.
struct RunState {
    max_memory_bytes: usize,
    max_table_elements: usize,
    memory_limit_hit: bool,
    table_limit_hit: bool,
    logs: Vec<String>,
    max_log_lines: usize,
    max_log_line_bytes: usize,
}

impl ResourceLimiter for RunState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.table_limit_hit = true;
            return Err(wasmtime::Error::msg("table limit reached"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
}

struct Loaded {
    pre: InstancePre<RunState>,
}

/// The patch host. Create one per process and share it (`Arc<Host>`): it is `Send + Sync`,
/// and its run functions are synchronous, for `tokio::task::spawn_blocking`.
pub struct Host {
    engine: Engine,
    linker: Linker<RunState>,
    config: HostConfig,
    cache: Mutex<HashMap<[u8; 32], Arc<Loaded>>>,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn engine_config(config: &HostConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.pool_slots)
        .total_memories(config.pool_slots)
        .total_tables(config.pool_slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(config.maxima.max_memory_bytes as usize)
        .table_elements(config.maxima.max_table_elements as usize)
        // Reset a returned slot's first pages with memset rather than madvise + page
        // faults on next use: patches touch a few pages, so this is the cheaper reset.
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes);

    let mut c = Config::new();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Limits.
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack_bytes)
        // Determinism: the same input gives the same output on every machine.
        // (Threads are not even compiled in: wasmtime's `threads` feature is off.)
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false);
    // Compilation happens in the calling thread (the `parallel-compilation` feature is off),
    // so no background pool competes with the server.
    c
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Self, RunError> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| RunError::Instantiate(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                LOG_IMPORT.0,
                LOG_IMPORT.1,
                |mut caller: Caller<'_, RunState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
                    let Some(memory) = caller
                        .get_export(EXPORT_MEMORY)
                        .and_then(|e| e.into_memory())
                    else {
                        return Err(wasmtime::Error::msg("log: no memory export"));
                    };
                    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
                    let (data, state) = memory.data_and_store_mut(&mut caller);
                    let Some(bytes) = data.get(ptr..ptr.saturating_add(len)) else {
                        return Err(wasmtime::Error::msg("log: out of bounds"));
                    };
                    if state.logs.len() < state.max_log_lines {
                        let cut = &bytes[..bytes.len().min(state.max_log_line_bytes)];
                        state.logs.push(String::from_utf8_lossy(cut).into_owned());
                    }
                    Ok(())
                },
            )
            .map_err(|e| RunError::Instantiate(format!("linker: {e}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let tick = Duration::from_millis(config.epoch_tick_ms.max(1));
            std::thread::Builder::new()
                .name("autoheal-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RunError::Instantiate(format!("epoch thread: {e}")))?;
        }
        Ok(Self {
            engine,
            linker,
            config,
            cache: Mutex::new(HashMap::new()),
            stop_ticker,
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Number of compiled modules in the cache.
    pub fn cached_modules(&self) -> usize {
        self.cache.lock().expect("cache lock").len()
    }

    /// Compile (once per SHA-256) and check a verified bundle's module: imports limited to
    /// `autoheal.log`, exports `memory`, `alloc`, `run` with their ABI types.
    pub fn prepare(&self, bundle: &VerifiedBundle) -> Result<(), RunError> {
        self.loaded(bundle).map(|_| ())
    }

    fn loaded(&self, bundle: &VerifiedBundle) -> Result<Arc<Loaded>, RunError> {
        let key = bundle.module_sha256();
        if let Some(hit) = self.cache.lock().expect("cache lock").get(&key) {
            return Ok(hit.clone());
        }
        // Compile outside the lock: other runs keep going meanwhile.
        let loaded = Arc::new(self.compile(bundle.module_bytes())?);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= self.config.max_cached_modules {
            cache.clear();
        }
        Ok(cache.entry(key).or_insert(loaded).clone())
    }

    fn compile(&self, bytes: &[u8]) -> Result<Loaded, RunError> {
        if bytes.len() > self.config.max_module_bytes {
            return Err(RunError::ModuleTooLarge {
                size: bytes.len(),
                max: self.config.max_module_bytes,
            });
        }
        // Always from the wasm binary, through this engine's compiler: never deserialize.
        let module = Module::from_binary(&self.engine, bytes)
            .map_err(|e| RunError::Compile(format!("{e:#}")))?;
        check_module_shape(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| RunError::Instantiate(format!("{e:#}")))?;
        Ok(Loaded { pre })
    }

    /// Dry-run a verified patch against `snapshot` with `params`. Never mutates `snapshot`.
    pub fn dry_run(
        &self,
        bundle: &VerifiedBundle,
        snapshot: &State,
        params: &Value,
    ) -> Result<DryRun, RunError> {
        let manifest = bundle.manifest();
        validate_params(manifest, params)?;
        let loaded = self.loaded(bundle)?;
        let limits = self.config.limits_for(manifest);
        let input = abi_input(snapshot, params);
        if input.len() > self.config.max_input_bytes {
            return Err(RunError::InputTooLarge {
                size: input.len(),
                max: self.config.max_input_bytes,
            });
        }
        let (output, logs, fuel_consumed) = self.execute(&loaded, &input, limits)?;
        let (operations, claimed_state) = parse_output(&output)?;
        ops::check_declared(&operations, &manifest.operations)?;
        let (state, restore) = ops::apply_with_restore(snapshot, &operations)?;
        check_claimed_state(claimed_state, &state)?;
        Ok(DryRun {
            operations,
            state,
            restore,
            logs,
            fuel_consumed,
            limits,
            output,
        })
    }

    /// Instantiate from the pool, pass `input`, call `run`, copy the output out.
    fn execute(
        &self,
        loaded: &Loaded,
        input: &[u8],
        limits: Limits,
    ) -> Result<(Vec<u8>, Vec<String>, u64), RunError> {
        let mut store = Store::new(
            &self.engine,
            RunState {
                max_memory_bytes: limits.max_memory_bytes as usize,
                max_table_elements: limits.max_table_elements as usize,
                memory_limit_hit: false,
                table_limit_hit: false,
                logs: Vec::new(),
                max_log_lines: self.config.max_log_lines,
                max_log_line_bytes: self.config.max_log_line_bytes,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| RunError::Instantiate(e.to_string()))?;
        let tick = self.config.epoch_tick_ms.max(1);
        store.set_epoch_deadline(limits.deadline_ms.div_ceil(tick) + 1);
        store.epoch_deadline_trap();

        let classify = |store: &Store<RunState>, e: wasmtime::Error| -> RunError {
            classify_error(store, e, limits, self.config.pool_slots, false)
        };

        let instance = match loaded.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                return Err(classify_error(
                    &store,
                    e,
                    limits,
                    self.config.pool_slots,
                    true,
                ))
            }
        };
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or_else(|| RunError::MissingExport {
                name: EXPORT_MEMORY.into(),
            })?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, EXPORT_ALLOC)
            .map_err(|_| export_type(EXPORT_ALLOC))?;
        let run = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, EXPORT_RUN)
            .map_err(|_| export_type(EXPORT_RUN))?;

        let len = i32::try_from(input.len()).map_err(|_| RunError::InputTooLarge {
            size: input.len(),
            max: self.config.max_input_bytes,
        })?;
        let ptr = match alloc.call(&mut store, len) {
            Ok(p) => p as u32 as usize,
            Err(e) => return Err(classify(&store, e)),
        };
        memory
            .write(&mut store, ptr, input)
            .map_err(|_| RunError::AbiViolation("alloc returned memory out of bounds".into()))?;
        let packed = match run.call(&mut store, (ptr as i32, len)) {
            Ok(v) => v as u64,
            Err(e) => return Err(classify(&store, e)),
        };
        let (out_ptr, out_len) = ((packed >> 32) as usize, packed & 0xffff_ffff);
        if out_len > limits.max_output_bytes {
            return Err(RunError::OutputTooLarge {
                size: out_len,
                max: limits.max_output_bytes,
            });
        }
        let output = memory
            .data(&store)
            .get(out_ptr..out_ptr + out_len as usize)
            .ok_or_else(|| RunError::AbiViolation("output range is out of memory bounds".into()))?
            .to_vec();
        let fuel_consumed = limits.fuel - store.get_fuel().unwrap_or(0);
        let logs = std::mem::take(&mut store.data_mut().logs);
        Ok((output, logs, fuel_consumed))
    }
}

fn export_type(name: &str) -> RunError {
    RunError::ExportType {
        name: name.into(),
        expected: match name {
            EXPORT_ALLOC => "(func (param i32) (result i32))".into(),
            _ => "(func (param i32 i32) (result i64))".into(),
        },
    }
}

fn classify_error(
    store: &Store<RunState>,
    e: wasmtime::Error,
    limits: Limits,
    slots: u32,
    instantiating: bool,
) -> RunError {
    let data = store.data();
    if data.memory_limit_hit {
        return RunError::MemoryLimit {
            max_memory_bytes: limits.max_memory_bytes,
        };
    }
    if data.table_limit_hit {
        return RunError::TableLimit {
            max_table_elements: limits.max_table_elements,
        };
    }
    if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return RunError::Busy { slots };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RunError::FuelExhausted { fuel: limits.fuel },
        Some(Trap::Interrupt) => RunError::DeadlineExceeded {
            deadline_ms: limits.deadline_ms,
        },
        Some(Trap::StackOverflow) => RunError::StackOverflow,
        Some(trap) => RunError::Trap(trap.to_string()),
        // Not a trap: an error from the instance allocator or a host function.
        None if instantiating => RunError::Instantiate(format!("{e:#}")),
        None => RunError::Trap(format!("{e:#}")),
    }
}

/// Refuse any import but `autoheal.log (i32 i32)`, and check the three exports.
fn check_module_shape(module: &Module) -> Result<(), RunError> {
    for import in module.imports() {
        let allowed = (import.module(), import.name()) == LOG_IMPORT
            && matches!(import.ty(), ExternType::Func(f)
                if matches!(f.params().collect::<Vec<_>>().as_slice(), [ValType::I32, ValType::I32])
                    && f.results().len() == 0);
        if !allowed {
            return Err(RunError::ForbiddenImport {
                module: import.module().into(),
                name: import.name().into(),
            });
        }
    }
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(_)) => {}
        Some(_) => {
            return Err(RunError::ExportType {
                name: EXPORT_MEMORY.into(),
                expected: "memory".into(),
            })
        }
        None => {
            return Err(RunError::MissingExport {
                name: EXPORT_MEMORY.into(),
            })
        }
    }
    let func = |name: &str, params: usize, result_i64: bool| -> Result<(), RunError> {
        match module.get_export(name) {
            None => Err(RunError::MissingExport { name: name.into() }),
            Some(ExternType::Func(f)) => {
                let p: Vec<ValType> = f.params().collect();
                let r: Vec<ValType> = f.results().collect();
                let params_ok = p.len() == params && p.iter().all(|t| matches!(t, ValType::I32));
                let result_ok = match r.as_slice() {
                    [ValType::I64] => result_i64,
                    [ValType::I32] => !result_i64,
                    _ => false,
                };
                if params_ok && result_ok {
                    Ok(())
                } else {
                    Err(export_type(name))
                }
            }
            Some(_) => Err(export_type(name)),
        }
    };
    func(EXPORT_ALLOC, 1, false)?;
    func(EXPORT_RUN, 2, true)?;
    Ok(())
}

fn parse_output(output: &[u8]) -> Result<(Vec<Operation>, &RawValue), RunError> {
    let text = std::str::from_utf8(output).map_err(|e| RunError::OutputNotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let out: AbiOutput = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => RunError::InvalidOutput(e.to_string()),
        _ => RunError::OutputNotJson(e.to_string()),
    })?;
    match out {
        AbiOutput {
            error: Some(message),
            operations: None,
            state: None,
        } => Err(RunError::PatchRefused(message)),
        AbiOutput {
            error: None,
            operations: Some(operations),
            state: Some(state),
        } => {
            ops::validate_plan(&operations)?;
            Ok((operations, state))
        }
        _ => Err(RunError::InvalidOutput(
            "expected {\"operations\":[…],\"state\":{…}} or {\"error\":\"…\"}".into(),
        )),
    }
}

/// The patch's claimed state must be the snapshot with its operations applied. The common
/// case, a patch that writes the state canonically (as the host wrote the snapshot), is one
/// serialization and a byte comparison; any other spelling is parsed and compared as a value.
fn check_claimed_state(claimed: &RawValue, computed: &State) -> Result<(), RunError> {
    let canonical = serde_json::to_string(computed).expect("state serializes");
    if canonical == claimed.get() {
        return Ok(());
    }
    let claimed: State = serde_json::from_str(claimed.get())
        .map_err(|e| RunError::InvalidOutput(format!("state: {e}")))?;
    if claimed == *computed {
        Ok(())
    } else {
        Err(RunError::StateMismatch)
    }
}

/// Check `params` against the manifest's schema: a flat object, no unknown keys, required
/// keys present, types and formats right.
pub fn validate_params(manifest: &Manifest, params: &Value) -> Result<(), RunError> {
    let bad = |param: &str, reason: &str| RunError::InvalidParams {
        param: param.into(),
        reason: reason.into(),
    };
    let empty = serde_json::Map::new();
    let object = match params {
        Value::Object(o) => o,
        Value::Null => &empty,
        _ => return Err(bad("", "params must be a JSON object")),
    };
    for key in object.keys() {
        if !manifest.params_schema.contains_key(key) {
            return Err(bad(key, "not in the patch's parameter schema"));
        }
    }
    for (name, spec) in &manifest.params_schema {
        let Some(value) = object.get(name) else {
            if spec.required {
                return Err(bad(name, "required"));
            }
            continue;
        };
        match (spec.ty, value) {
            (ParamType::String, Value::String(s)) => {
                if s.chars().count() > spec.max_length.unwrap_or(256) {
                    return Err(bad(name, "too long"));
                }
                let ok = match spec.format {
                    None => true,
                    Some(ParamFormat::Identifier) => ops::is_identifier(s),
                    Some(ParamFormat::SqlColumnType) => ops::is_sql_column_type(s),
                    Some(ParamFormat::PhpSize) => is_php_size(s),
                    Some(ParamFormat::Version) => is_version(s),
                };
                if !ok {
                    return Err(bad(name, "wrong format"));
                }
            }
            (ParamType::Integer, Value::Number(n)) if n.is_i64() => {}
            (ParamType::Boolean, Value::Bool(_)) => {}
            _ => return Err(bad(name, "wrong type")),
        }
    }
    Ok(())
}

/// `-1`, or digits with an optional `K`, `M` or `G` suffix.
pub fn is_php_size(s: &str) -> bool {
    if s == "-1" {
        return true;
    }
    let digits = s.strip_suffix(['K', 'M', 'G', 'k', 'm', 'g']).unwrap_or(s);
    !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `major.minor` or `major.minor.patch`.
pub fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}
