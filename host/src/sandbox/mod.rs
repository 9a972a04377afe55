//! The WebAssembly sandbox the job's script runs in: CPython compiled into a component by
//! componentize-py, hosted by wasmtime with WASI preview 2.
//!
//! The guest sees only its script's directory (read-only), a private scratch directory as
//! TMPDIR, no network, no inherited environment and no secrets. Its stdout/stderr become job
//! output; memory is capped; a job timeout or a cancel stops it through epoch interruption and
//! through the host calls it blocks in. The component is never compiled at job time: it is
//! loaded from a precompiled artifact (`ftl2-runner compile`) or, on first use, compiled into a
//! cache keyed by its hash and the wasmtime version.

pub mod bridge;
pub mod output;

use anyhow::{Context, Result, anyhow, bail};
use bridge::Bridge;
use output::{GuestStream, OutputSink};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{DirPerms, FilePerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "runner",
    path: "../wit",
    imports: { default: trappable },
});

/// The wasmtime version artifacts are bound to (kept in step with Cargo.toml's pin).
pub const WASMTIME_VERSION: &str = "46.0.3";

/// Why a running script must stop.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicU8);

/// What stopped the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM/SIGINT.
    Canceled,
    /// job_timeout passed.
    Timeout,
    /// The scratch directory grew over its cap.
    ScratchFull,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Canceled => "the job was canceled",
            StopReason::Timeout => "the job ran out of time (job_timeout)",
            StopReason::ScratchFull => {
                "the script's scratch directory grew over its cap (FTL2_SCRATCH_LIMIT)"
            }
        })
    }
}

impl StopFlag {
    /// Ask the script to stop (the first reason wins).
    pub fn request(&self, why: StopReason) {
        let v = match why {
            StopReason::Canceled => 1,
            StopReason::Timeout => 2,
            StopReason::ScratchFull => 3,
        };
        let _ = self
            .0
            .compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The reason to stop, if one was requested.
    pub fn reason(&self) -> Option<StopReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(StopReason::Canceled),
            2 => Some(StopReason::Timeout),
            3 => Some(StopReason::ScratchFull),
            _ => None,
        }
    }
}

/// The engine configuration; artifacts only load into an engine configured the same way.
fn engine() -> Result<Engine> {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    cfg.wasm_component_model(true);
    Engine::new(&cfg).map_err(|e| anyhow!("cannot create the wasmtime engine: {e}"))
}

/// Compile a guest component (`.wasm`) into a native artifact (`.cwasm`) for this binary.
pub fn compile(wasm: &Path, out: &Path) -> Result<()> {
    let engine = engine()?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let native = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow!("cannot compile {}: {e}", wasm.display()))?;
    let tmp = out.with_extension("cwasm.tmp");
    std::fs::write(&tmp, &native).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// A loaded guest component, ready to instantiate.
pub struct Guest {
    engine: Engine,
    component: Component,
    /// Where it was loaded from (for messages).
    pub source: PathBuf,
}

/// Default places the guest is looked for, after `$FTL2_GUEST`.
fn guest_candidates() -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from("/opt/ftl2/guest.cwasm"),
        PathBuf::from("/opt/ftl2/guest.wasm"),
    ];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for rel in [
            "ftl2-guest.cwasm",
            "ftl2-guest.wasm",
            "../guest/ftl2-guest.cwasm",
            "../guest/ftl2-guest.wasm",
        ] {
            v.push(dir.join(rel));
        }
    }
    v
}

impl Guest {
    /// Find and load the guest: `$FTL2_GUEST`, `/opt/ftl2/guest.{cwasm,wasm}`, or beside the binary.
    pub fn locate() -> Result<Guest> {
        if let Some(p) = std::env::var_os("FTL2_GUEST").filter(|p| !p.is_empty()) {
            return Guest::load(Path::new(&p));
        }
        for c in guest_candidates() {
            if c.is_file() {
                return Guest::load(&c);
            }
        }
        bail!(
            "the script runtime (guest component) was not found: set FTL2_GUEST or install it at \
             /opt/ftl2/guest.cwasm (build it with guest-python/build.sh, then `ftl2-runner compile`)"
        )
    }

    /// Load a precompiled `.cwasm` (memory-mapped), or a `.wasm` through the compile cache.
    pub fn load(path: &Path) -> Result<Guest> {
        let engine = engine()?;
        let cwasm = if is_precompiled(path)? {
            path.to_path_buf()
        } else {
            cached_artifact(&engine, path)?
        };
        // SAFETY: the artifact was produced by `Engine::precompile_component` of this very binary
        // (our `compile` subcommand or our cache); wasmtime checks version and configuration and
        // refuses anything else.
        let component = unsafe { Component::deserialize_file(&engine, &cwasm) }
            .map_err(|e| anyhow!("cannot load the precompiled guest {}: {e}", cwasm.display()))?;
        Ok(Guest {
            engine,
            component,
            source: path.to_path_buf(),
        })
    }
}

fn is_precompiled(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .with_context(|| format!("cannot open the guest {}", path.display()))?
        .read_exact(&mut head)
        .with_context(|| format!("cannot read the guest {}", path.display()))?;
    Ok(head == *b"\x7fELF")
}

/// `<cache>/<sha256 of the wasm>-wasmtime<version>.cwasm`, compiled on first use.
fn cached_artifact(engine: &Engine, wasm: &Path) -> Result<PathBuf> {
    let bytes =
        std::fs::read(wasm).with_context(|| format!("cannot read the guest {}", wasm.display()))?;
    let hash = Sha256::digest(&bytes);
    let key: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let dir = std::env::var_os("FTL2_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ftl2-runner"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ftl2-runner")))
        .unwrap_or_else(|| std::env::temp_dir().join("ftl2-runner-cache"));
    let path = dir.join(format!(
        "{key}-wasmtime{WASMTIME_VERSION}-{}.cwasm",
        env!("CARGO_PKG_VERSION")
    ));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the cache {}", dir.display()))?;
    crate::logln!(
        "compiling the guest {} into {} (first use)",
        wasm.display(),
        path.display()
    );
    let native = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow!("cannot compile the guest {}: {e}", wasm.display()))?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &native).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Watches the size of the script's scratch directory (checked at most twice a second).
struct ScratchGuard {
    path: PathBuf,
    limit: u64,
    last: Instant,
    over: bool,
}

impl ScratchGuard {
    fn new(path: PathBuf, limit: u64) -> ScratchGuard {
        ScratchGuard {
            path,
            limit,
            last: Instant::now(),
            over: false,
        }
    }

    fn over(&mut self) -> bool {
        if self.over || self.last.elapsed() < Duration::from_millis(500) {
            return self.over;
        }
        self.last = Instant::now();
        self.over = dir_size(&self.path, 0) > self.limit;
        self.over
    }
}

fn dir_size(dir: &Path, depth: usize) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth < 64 => dir_size(&e.path(), depth + 1),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Limits of one script run.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Linear memory cap in bytes (`FTL2_MEMORY_LIMIT`, default 1 GiB).
    pub memory_bytes: usize,
    /// Scratch directory cap in bytes (`FTL2_SCRATCH_LIMIT`, default 1 GiB).
    pub scratch_bytes: u64,
    /// Wall-clock budget (job_timeout); None = unlimited.
    pub time_budget: Option<Duration>,
}

impl SandboxLimits {
    /// Defaults with `FTL2_MEMORY_LIMIT` (bytes, or with a K/M/G suffix) applied.
    pub fn from_env(time_budget: Option<Duration>) -> Result<SandboxLimits> {
        let mut memory_bytes = 1usize << 30;
        if let Ok(v) = std::env::var("FTL2_MEMORY_LIMIT") {
            memory_bytes =
                parse_size(&v).ok_or_else(|| anyhow!("FTL2_MEMORY_LIMIT={v:?} is not a size"))?;
        }
        let scratch_bytes = match std::env::var("FTL2_SCRATCH_LIMIT") {
            Ok(v) => parse_size(&v)
                .ok_or_else(|| anyhow!("FTL2_SCRATCH_LIMIT={v:?} is not a size"))?
                as u64,
            Err(_) => 1 << 30,
        };
        Ok(SandboxLimits {
            memory_bytes,
            scratch_bytes,
            time_budget,
        })
    }
}

fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1usize << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .map(|n| n.saturating_mul(mult))
}

/// What the guest may see of the host's filesystem.
#[derive(Debug, Clone)]
pub struct Mounts {
    /// Read-only directories, visible at the same path (the script's directory, project/).
    pub read_only: Vec<PathBuf>,
    /// The private writable scratch directory (TMPDIR), visible at the same path.
    pub scratch: PathBuf,
}

/// How the script run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptEnd {
    /// `run()` returned this exit code (tracebacks, if any, are already in the job output).
    Exited(i32),
    /// Stopped from outside.
    Stopped(StopReason),
    /// The memory cap was hit and the guest could not recover.
    OutOfMemory,
    /// The sandbox itself failed (a trap, a bad component).
    Crashed(String),
}

/// Timings of one run, for the benchmark and the log.
#[derive(Debug, Clone, Default)]
pub struct RunTimings {
    /// Building the store and instantiating the component.
    pub instantiate: Duration,
    /// Running the script.
    pub run: Duration,
}

struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    bridge: Bridge,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn trap(msg: String) -> wasmtime::Error {
    wasmtime::Error::msg(msg)
}

impl ftl2::runner::executor::Host for State {
    fn submit(
        &mut self,
        calls: Vec<ftl2::runner::executor::ModuleCall>,
    ) -> wasmtime::Result<Vec<u64>> {
        if let Some(why) = self.bridge.stop.reason() {
            return Err(trap(why.to_string()));
        }
        Ok(calls
            .into_iter()
            .map(|c| {
                self.bridge
                    .submit(c.target, c.module, &c.args_json, &c.options_json)
            })
            .collect())
    }

    fn wait(
        &mut self,
        timeout_ms: u64,
    ) -> wasmtime::Result<Vec<ftl2::runner::executor::Completion>> {
        let done = self.bridge.wait(timeout_ms).map_err(trap)?;
        Ok(done
            .into_iter()
            .map(|(id, results_json)| ftl2::runner::executor::Completion { id, results_json })
            .collect())
    }

    fn list_hosts(&mut self, pattern: String) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .bridge
            .executor
            .list_hosts(&pattern)
            .unwrap_or_default())
    }

    fn groups_json(&mut self) -> wasmtime::Result<String> {
        Ok(serde_json::Value::Object(self.bridge.executor.groups()).to_string())
    }

    fn host_vars_json(&mut self, host: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .bridge
            .executor
            .host_vars(&host)
            .map(|m| serde_json::Value::Object(m).to_string()))
    }

    fn add_host(
        &mut self,
        name: String,
        groups: Vec<String>,
        vars_json: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let vars = match serde_json::from_str::<serde_json::Value>(&vars_json) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Ok(Err("host vars must be a JSON object".into())),
        };
        Ok(self
            .bridge
            .executor
            .add_host(&name, &groups, vars)
            .map_err(|e| format!("{e:#}")))
    }

    fn remove_host(&mut self, name: String) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .bridge
            .executor
            .remove_host(&name)
            .map_err(|e| format!("{e:#}")))
    }
}

impl ftl2::runner::events::Host for State {
    fn emit(&mut self, event_json: String) -> wasmtime::Result<()> {
        self.bridge.custom_event(&event_json);
        Ok(())
    }

    fn play_start(&mut self, name: String) -> wasmtime::Result<()> {
        let name = if name.is_empty() {
            self.bridge.play_name.clone()
        } else {
            name
        };
        self.bridge
            .tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .play_start(&name, "all");
        Ok(())
    }
}

impl ftl2::runner::job::Host for State {
    fn info_json(&mut self) -> wasmtime::Result<String> {
        Ok(self.bridge.job_info.to_string())
    }
}

/// One script to run: what, with which inputs, seeing what, within which limits.
pub struct ScriptRun {
    /// The script file (its `run()` is called).
    pub script: PathBuf,
    /// Passed to `run()` as `inventory_path`.
    pub inventory_path: String,
    /// Passed to `run()` as `extravars` (a JSON object).
    pub extravars_json: String,
    /// What the guest may see of the filesystem.
    pub mounts: Mounts,
    /// Memory and time.
    pub limits: SandboxLimits,
}

/// Run the script in a fresh instance of `guest`. Blocks the calling thread until it ends.
pub fn run_script(
    guest: &Guest,
    run: ScriptRun,
    bridge: Bridge,
    output: Arc<OutputSink>,
) -> (ScriptEnd, RunTimings) {
    let ScriptRun {
        script,
        inventory_path,
        extravars_json,
        mounts,
        limits,
    } = run;
    let mut timings = RunTimings::default();
    let started = Instant::now();
    let stop = Arc::clone(&bridge.stop);
    let result = (|| -> Result<(i32, bool)> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestStream::stdout(&output))
            .stderr(GuestStream::stderr(&output))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .env("TMPDIR", mounts.scratch.to_string_lossy())
            .env("HOME", mounts.scratch.to_string_lossy())
            .env("FTL2_RUNNER", "1")
            .args(&["ftl2-runner-guest"]);
        for dir in &mounts.read_only {
            wasi.preopened_dir(dir, dir.to_string_lossy(), DirPerms::READ, FilePerms::READ)
                .map_err(|e| anyhow!("cannot expose {} to the script: {e}", dir.display()))?;
        }
        wasi.preopened_dir(
            &mounts.scratch,
            mounts.scratch.to_string_lossy(),
            DirPerms::all(),
            FilePerms::all(),
        )
        .map_err(|e| {
            anyhow!(
                "cannot expose the scratch dir {}: {e}",
                mounts.scratch.display()
            )
        })?;
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryCap {
                limit: limits.memory_bytes,
                hit: false,
            },
            bridge,
        };
        let mut store = Store::new(&guest.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = limits.time_budget.map(|b| started + b);
        let stop_cb = Arc::clone(&stop);
        store.set_epoch_deadline(1);
        let mut scratch_guard = ScratchGuard::new(mounts.scratch.clone(), limits.scratch_bytes);
        store.epoch_deadline_callback(move |_| {
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                stop_cb.request(StopReason::Timeout);
            }
            if scratch_guard.over() {
                stop_cb.request(StopReason::ScratchFull);
            }
            match stop_cb.reason() {
                Some(_) => Ok(UpdateDeadline::Interrupt),
                None => Ok(UpdateDeadline::Continue(1)),
            }
        });
        if let Some(d) = deadline {
            let stop_t = Arc::clone(&stop);
            std::thread::spawn(move || {
                let now = Instant::now();
                if d > now {
                    std::thread::sleep(d - now);
                }
                stop_t.request(StopReason::Timeout);
            });
        }
        let ticker = EpochTicker::start(guest.engine.clone());
        let mut linker: Linker<State> = Linker::new(&guest.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow!("linking WASI: {e}"))?;
        Runner::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("linking ftl2: {e}"))?;
        let instance = Runner::instantiate(&mut store, &guest.component, &linker)
            .map_err(|e| anyhow!("cannot instantiate the guest: {e}"))?;
        timings.instantiate = started.elapsed();
        let run_started = Instant::now();
        let rc = instance.call_run(
            &mut store,
            &script.to_string_lossy(),
            &inventory_path,
            &extravars_json,
        );
        timings.run = run_started.elapsed();
        drop(ticker);
        let hit = store.data().limiter.hit;
        match rc {
            Ok(rc) => Ok((rc, hit)),
            Err(e) => Err(anyhow!("{e:?}")).map_err(|e| {
                if hit {
                    anyhow!("out of memory: {e}")
                } else {
                    e
                }
            }),
        }
    })();
    output.finish();
    let end = match result {
        Ok((rc, _)) => ScriptEnd::Exited(rc),
        Err(e) => match stop.reason() {
            Some(r) => ScriptEnd::Stopped(r),
            None if format!("{e}").starts_with("out of memory") => ScriptEnd::OutOfMemory,
            None => ScriptEnd::Crashed(format!("{e:#}")),
        },
    };
    (end, timings)
}

/// Increments the engine's epoch every 20 ms while a script runs, so the deadline callback can
/// check for cancel/timeout even in a tight loop.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                engine.increment_epoch();
            }
        });
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
