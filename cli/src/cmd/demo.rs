//! `blackbox demo`: a writer for trying the pipeline and for tests.
//!
//! Thread `t` writes `records` events (INFO, target `blackbox::demo`,
//! message `demo record`, integer fields `t` and `n`), then the process
//! writes a last WARN event `demo: about to die` (field `how`) and ends as
//! `--die` says. The crash handlers are installed, so a panic or a fatal
//! signal is recorded with its cause.
//!
//! `--via` picks the path the records take: `raw` calls `Recorder::log`;
//! `tracing` uses `tracing::info!` through [`blackbox_recorder::BlackboxLayer`]
//! (each thread runs under a scoped dispatcher, so the ring can still be
//! closed at the end); `log` uses `log::info!` with key-values through
//! [`blackbox_recorder::BlackboxLogger`] (behind a forwarding logger the demo
//! empties at the end, for the same reason). The same bytes arrive on
//! every path: `t` and `n` are `u64` fields. The epilogue event is always
//! written with `Recorder::log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use blackbox_recorder::{BlackboxLayer, BlackboxLogger, Field, Level, Recorder, Value};
use tracing_subscriber::prelude::*;

use clap::Args;

use super::units;
use crate::failure::Failure;

/// How the demo writer ends.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Die {
    /// Close the ring cleanly and exit 0.
    Exit,
    /// Panic (exit status 101).
    Panic,
    /// abort() (SIGABRT).
    Abort,
    /// A segmentation fault (SIGSEGV).
    Segv,
    /// A write through a null pointer (SIGSEGV at address 0; test aid).
    #[value(hide = true)]
    Null,
    /// SIGKILL to itself.
    Kill,
    /// Get OOM-killed inside a small memory cgroup of its own.
    Oom,
    /// A real SIGBUS (test aid).
    #[value(hide = true)]
    Bus,
    /// A stack overflow on the main thread (test aid).
    #[value(hide = true)]
    StackOverflow,
}

/// The path the demo's records take into the ring.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Recorder::log`, the recorder's own API.
    Raw,
    /// `tracing` macros through the blackbox `tracing_subscriber::Layer`.
    Tracing,
    /// `log` macros through the blackbox `log::Log`.
    Log,
}

/// `blackbox demo --clock`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoClock {
    /// The time stamp counter.
    Tsc,
    /// CLOCK_REALTIME.
    Realtime,
}

impl DemoClock {
    fn clock(self) -> blackbox_recorder::Clock {
        match self {
            DemoClock::Tsc => blackbox_recorder::Clock::Tsc,
            DemoClock::Realtime => blackbox_recorder::Clock::Realtime,
        }
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to create the ring (an existing ring there is replaced).
    #[arg(long, value_name = "PATH", conflicts_with = "dir")]
    pub ring: Option<PathBuf>,
    /// Create the ring in DIR as PROGRAM-START_MS-PID.ring, never replacing
    /// a file (the default with neither flag: $BLACKBOX_DIR).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Test aid: thread 0 asks for a snapshot after its record N.
    #[arg(long, value_name = "N", hide = true)]
    pub snapshot_at: Option<u64>,
    /// Test aid: how many snapshot requests at once.
    #[arg(long, value_name = "B", hide = true, default_value_t = 1)]
    pub snapshot_burst: u64,
    /// Test aid: the snapshot's reason.
    #[arg(long, value_name = "TEXT", hide = true, default_value = "slow request")]
    pub snapshot_reason: String,
    /// Events at LEVEL or more severe also ask for a snapshot.
    #[arg(long, value_name = "LEVEL", hide = true, value_parser = units::parse_level)]
    pub snapshot_level: Option<blackbox_recorder::Level>,
    /// Ring capacity, a power of two with units (64KiB, 16MiB).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = units::parse_size)]
    pub capacity: u64,
    /// Chunk size, a power of two from 1KiB to 64KiB (default: the
    /// capacity / 128 within those bounds).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub chunk_size: Option<u64>,
    /// The records' clock: tsc (where the kernel trusts it) or realtime
    /// (default: the best this machine has).
    #[arg(long, value_name = "CLOCK", value_enum)]
    pub clock: Option<DemoClock>,
    /// Records per thread.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub records: u64,
    /// Writer threads.
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Records per second per thread (0: as fast as possible).
    #[arg(long, value_name = "PER_SEC", default_value_t = 0.0)]
    pub rate: f64,
    /// How to end after writing.
    #[arg(long, value_name = "HOW", value_enum, default_value_t = Die::Exit)]
    pub die: Die,
    /// The path the records take: raw (Recorder::log), tracing or log.
    #[arg(long, value_name = "PATH", value_enum, default_value_t = Via::Raw)]
    pub via: Via,
    /// Test aid: first write one DEBUG event `every field type` (target
    /// `blackbox::demo::types`) with a field of each type, through --via's
    /// path (inside spans `outer:inner` with tracing), and typed records
    /// where the binary is built with them.
    #[arg(long, hide = true)]
    pub every_type: bool,
    /// Test aid: after every K-th record of a thread, print "T N" on stdout
    /// once its append returned.
    #[arg(long, value_name = "K", hide = true)]
    pub report_every: Option<u64>,
    /// Test aid: die M milliseconds after starting, while the writer
    /// threads are still writing and allocating.
    #[arg(long, value_name = "M", hide = true)]
    pub die_after_ms: Option<u64>,
    /// Test aid: install the crash handlers twice.
    #[arg(long, hide = true)]
    pub install_twice: bool,
    /// Test aid: install another crash handler first, to check chaining.
    #[arg(long, hide = true)]
    pub foreign_handlers: bool,
    /// Also write the cause of death to this file (as to
    /// /dev/termination-log on Kubernetes).
    #[arg(long, value_name = "PATH")]
    pub termination_log: Option<PathBuf>,
    /// Test aid: thread T stops right after it claims a chunk (after its
    /// record --stall-after), until the others took the ring round
    /// --stall-laps times; prints "stalled T N TICKETS" and "resumed ...",
    /// appends three records more, prints "idle T N" and idles.
    #[arg(long, value_name = "T", hide = true)]
    pub stall_thread: Option<u64>,
    /// Test aid: see --stall-thread.
    #[arg(long, value_name = "N", hide = true, default_value_t = 0)]
    pub stall_after: u64,
    /// Test aid: see --stall-thread.
    #[arg(long, value_name = "L", hide = true, default_value_t = 3)]
    pub stall_laps: u64,
    /// Run a scenario instead of the plain writers (it ends the process
    /// itself: --records, --threads, --via and --die do not apply).
    #[arg(long, value_name = "NAME", value_enum)]
    pub scenario: Option<super::scenario::Scenario>,
}

impl DemoArgs {
    /// `--stall-thread` with its companions.
    fn stall(&self) -> Option<Stall> {
        self.stall_thread.map(|thread| Stall {
            thread,
            after: self.stall_after,
            laps: self.stall_laps,
        })
    }
}

/// Test aid (`--stall-thread`): one thread stops right after it claims a
/// chunk, until the other threads have taken the ring's cursor round
/// `laps` times, then appends three records more and idles, keeping its
/// chunk.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub thread: u64,
    pub after: u64,
    pub laps: u64,
}

/// The memory limit of the cgroup `--die oom` puts itself in.
const OOM_LIMIT: u64 = 64 << 20;

fn die_name(die: Die) -> String {
    use clap::ValueEnum;
    die.to_possible_value()
        .map_or_else(|| format!("{die:?}"), |v| v.get_name().to_string())
}

pub fn run(opts: DemoArgs) -> Result<i32, Failure> {
    if !(opts.rate >= 0.0 && opts.rate.is_finite()) {
        return Err(Failure::error(format!(
            "--rate {} is not a number of records per second (use 0 for no limit)",
            opts.rate
        )));
    }
    // --die oom samples memory often, so the last sample before the kill
    // is close to the limit.
    let heartbeat = if opts.die == Die::Oom {
        Duration::from_millis(20)
    } else {
        blackbox_recorder::DEFAULT_HEARTBEAT
    };
    let builder = match (&opts.ring, &opts.dir) {
        (Some(path), _) => Recorder::builder(path),
        (None, Some(dir)) => Recorder::builder_in_dir(dir),
        (None, None)
            if std::env::var_os(blackbox_recorder::ENV_DIR).is_some_and(|d| !d.is_empty()) =>
        {
            Recorder::builder_from_env("")
        }
        (None, None) => {
            return Err(Failure::error(format!(
                "demo needs --ring PATH or --dir DIR (or {} in the environment)",
                blackbox_recorder::ENV_DIR
            )))
        }
    };
    let mut builder = builder
        .capacity(opts.capacity)
        .snapshot_level(opts.snapshot_level)
        .program("blackbox-demo")
        .app_version(env!("CARGO_PKG_VERSION"))
        .heartbeat(Some(heartbeat));
    if let Some(path) = &opts.termination_log {
        builder = builder.termination_log(path);
    }
    if let Some(size) = opts.chunk_size {
        builder = builder.chunk_size(u32::try_from(size).unwrap_or(u32::MAX));
    }
    if let Some(clock) = opts.clock.map(DemoClock::clock) {
        builder = builder.clock(clock);
    }
    let rec = builder
        .create()
        .map_err(|e| Failure::error(e.to_string()))?;
    if opts.ring.is_none() {
        // The name was chosen here: say it, for scripts and tests.
        eprintln!("blackbox demo: recording to {}", rec.path().display());
    }
    if opts.foreign_handlers {
        blackbox_recorder::crash::install_foreign_handlers_for_test();
    }
    rec.install_crash_handlers();
    if opts.install_twice {
        rec.install_crash_handlers();
    }
    if let Some(scenario) = opts.scenario {
        return super::scenario::run(scenario, &Arc::new(rec));
    }
    let interval = (opts.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / opts.rate));
    // The writer threads are detached, as an application's are: when the
    // process dies (or main panics), they die with it, mid-append.
    let rec = Arc::new(rec);
    let dispatch = (opts.via == Via::Tracing).then(|| {
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(BlackboxLayer::new(Arc::clone(&rec))),
        )
    });
    if opts.via == Via::Log {
        install_demo_logger(BlackboxLogger::new(Arc::clone(&rec)))?;
    }
    if opts.every_type {
        under(dispatch.as_ref(), || every_type(&rec, opts.via));
    }
    let opts = Arc::new(opts);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..opts.threads)
        .map(|t| {
            let (rec, opts, stop) = (Arc::clone(&rec), Arc::clone(&opts), Arc::clone(&stop));
            let dispatch = dispatch.clone();
            std::thread::Builder::new()
                .name(format!("demo-{t}"))
                .spawn(move || {
                    under(dispatch.as_ref(), || {
                        write_thread(&rec, &opts, &stop, t, interval);
                    });
                })
                .expect("spawn demo thread")
        })
        .collect();
    let result = match opts.die_after_ms.map(Duration::from_millis) {
        // --die-after-ms: die while the writer threads are still busy.
        Some(after) => {
            std::thread::sleep(after);
            let result = die(&rec, &opts);
            // Only `exit` gets here: stop the writers and close.
            stop.store(true, Ordering::Relaxed);
            for w in writers {
                let _ = w.join();
            }
            result
        }
        None => {
            for w in writers {
                let _ = w.join();
            }
            die(&rec, &opts)
        }
    };
    // Take the ring back from the layer and the logger, to close it.
    drop(dispatch);
    if let Ok(mut logger) = DEMO_LOGGER.0.write() {
        logger.take();
    }
    let rec =
        Arc::try_unwrap(rec).map_err(|_| Failure::error("demo writers still hold the ring"))?;
    let code = result?;
    let path = rec.path().display().to_string();
    rec.close();
    eprintln!("blackbox demo: wrote records to {path} and closed it");
    Ok(code)
}

/// Runs `f` with `dispatch` as the thread's tracing dispatcher, if any.
fn under(dispatch: Option<&tracing::Dispatch>, f: impl FnOnce()) {
    match dispatch {
        Some(d) => tracing::dispatcher::with_default(d, f),
        None => f(),
    }
}

/// The process's `log` logger under `--via log`: forwards to the blackbox
/// logger until [`run`] takes it out to close the ring.
struct DemoLogger(RwLock<Option<BlackboxLogger>>);

static DEMO_LOGGER: DemoLogger = DemoLogger(RwLock::new(None));

impl log::Log for DemoLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0
            .read()
            .map(|l| l.as_ref().is_some_and(|l| l.enabled(metadata)))
            .unwrap_or(false)
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(l) = self.0.read() {
            if let Some(l) = l.as_ref() {
                log::Log::log(l, record);
            }
        }
    }

    fn flush(&self) {}
}

fn install_demo_logger(logger: BlackboxLogger) -> Result<(), Failure> {
    if let Ok(mut slot) = DEMO_LOGGER.0.write() {
        *slot = Some(logger);
    }
    log::set_logger(&DEMO_LOGGER)
        .map_err(|e| Failure::error(format!("cannot install the demo's logger: {e}")))?;
    log::set_max_level(log::LevelFilter::Trace);
    Ok(())
}

/// `--every-type`: one DEBUG event with a field of every type through the
/// `--via` path, then (if built with typed records) a typed [`Sample`] and
/// a typed value of a type the CLI does not know.
fn every_type(rec: &Recorder, via: Via) {
    const TARGET: &str = "blackbox::demo::types";
    const MESSAGE: &str = "every field type";
    let list = vec![1, 2];
    match via {
        Via::Raw => {
            let rendered = format!("{list:?}");
            let _ = rec.log(
                Level::Debug,
                TARGET,
                MESSAGE,
                &[
                    Field::new("i", -5i64),
                    Field::new("u", 7u64),
                    Field::new("f", 2.5f64),
                    Field::new("b", true),
                    Field::new("s", "text"),
                    Field {
                        name: "d",
                        value: Value::Debug(&rendered),
                    },
                ],
            );
        }
        Via::Tracing => {
            let outer = tracing::info_span!("outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::debug!(
                target: TARGET,
                i = -5i64,
                u = 7u64,
                f = 2.5f64,
                b = true,
                s = "text",
                d = ?list,
                "{MESSAGE}"
            );
        }
        Via::Log => {
            log::debug!(
                target: TARGET,
                i = -5i64,
                u = 7u64,
                f = 2.5f64,
                b = true,
                s = "text",
                d:? = list;
                "{MESSAGE}"
            );
        }
    }
    #[cfg(feature = "typed")]
    {
        let _ = rec.record_as(SAMPLE_TYPE, &Sample::demo());
        let _ = rec.record(&(7u32, String::from("unknown to the CLI")));
    }
}

/// Ends the process as `--die` says; only `exit` returns.
fn die(rec: &Recorder, opts: &DemoArgs) -> Result<i32, Failure> {
    let how = die_name(opts.die);
    let _ = rec.log(
        Level::Warn,
        "blackbox::demo",
        "demo: about to die",
        &[Field::new("how", how.as_str())],
    );
    match opts.die {
        Die::Exit => Ok(0),
        Die::Panic => panic!("demo panic"),
        Die::Abort => std::process::abort(),
        Die::Segv => blackbox_recorder::crash::fault_segv_for_test(),
        Die::Null => blackbox_recorder::crash::fault_null_for_test(),
        Die::Bus => blackbox_recorder::crash::fault_sigbus_for_test(
            &rec.path().with_extension("sigbus-scratch"),
        ),
        Die::StackOverflow => {
            let depth = recurse(std::hint::black_box(1));
            unreachable!("recursion of depth {depth} ended")
        }
        Die::Kill => {
            // Nothing is closed or flushed: the ring is all that remains.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            unreachable!("SIGKILL cannot be caught")
        }
        Die::Oom => oom(rec),
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 32];
    std::hint::black_box(&frame);
    recurse(depth + 1) + frame[7]
}

fn write_thread(
    rec: &Recorder,
    opts: &DemoArgs,
    stop: &AtomicBool,
    t: u64,
    every: Option<Duration>,
) {
    let start = Instant::now();
    // While dying under load, the writers also allocate, so the crash may
    // land while the allocator is mid-update.
    let churn = opts.die_after_ms.is_some();
    let mut idle_at = None;
    for n in 0..opts.records {
        // Relaxed: a request to stop soon; nothing is published through it.
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(every) = every {
            let due = start + every.mul_f64(n as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if churn {
            let garbage = vec![n as u8; 64 + (n % 1024) as usize];
            std::hint::black_box(&garbage);
        }
        // How many of this thread's appends were dropped so far (no free
        // chunk): a gap of k in `n` must come with a rise of k here.
        let dropped = rec.dropped_on_this_thread();
        let chunk_before = rec.chunk_of_this_thread();
        let appended = match opts.via {
            Via::Raw => {
                let fields = [
                    Field::new("t", t),
                    Field::new("n", n),
                    Field::new("dropped", dropped),
                ];
                rec.log(Level::Info, "blackbox::demo", "demo record", &fields)
                    .map(drop)
            }
            // The layer and the logger return nothing: their append has
            // returned when the macro has.
            Via::Tracing => {
                tracing::info!(target: "blackbox::demo", t, n, dropped, "demo record");
                Ok(())
            }
            Via::Log => {
                log::info!(target: "blackbox::demo", t = t, n = n, dropped = dropped; "demo record");
                Ok(())
            }
        };
        if let Some(stall) = opts.stall().filter(|s| s.thread == t && n >= s.after) {
            let claimed = appended.is_ok() && rec.chunk_of_this_thread() != chunk_before;
            if claimed && idle_at.is_none() {
                stall_here(rec, t, n, stall.laps);
                idle_at = Some(n + 3);
            }
            if idle_at == Some(n) {
                // Three records after the stall: stop appending and keep the
                // chunk, as a thread that waits for work does.
                let _ = std::io::stdout()
                    .lock()
                    .write_all(format!("idle {t} {n}\n").as_bytes());
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
        }
        if t == 0 && opts.snapshot_at == Some(n) {
            for _ in 0..opts.snapshot_burst {
                let _ = rec.snapshot(&opts.snapshot_reason);
            }
        }
        if let (Some(k), Ok(_)) = (opts.report_every, appended) {
            if k > 0 && n % k == 0 {
                // One write(2) per report, after the append returned: what
                // the test reads here must be in the ring.
                let _ = std::io::stdout()
                    .lock()
                    .write_all(format!("{t} {n}\n").as_bytes());
            }
        }
    }
}

/// Stops this thread, which has just claimed a chunk with its record `n`,
/// until the ring's cursor has gone round `laps` times more (the other
/// threads' claims), saying so on stdout before and after.
fn stall_here(rec: &Recorder, t: u64, n: u64, laps: u64) {
    let chunks = rec.capacity() / u64::from(rec.chunk_size());
    let from = rec.tickets();
    let say = |line: String| {
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    };
    say(format!("stalled {t} {n} {from}\n"));
    while rec.tickets() < from + laps * chunks {
        std::thread::sleep(Duration::from_millis(1));
    }
    say(format!("resumed {t} {n} {}\n", rec.tickets()));
}

/// Moves the process into a new memory cgroup limited to [`OOM_LIMIT`] and
/// allocates until the kernel's OOM killer ends it. Refuses (exit status 2)
/// where no such cgroup can be made: it never allocates without the limit.
fn oom(rec: &Recorder) -> Result<i32, Failure> {
    let cgroup = enter_memory_cgroup(OOM_LIMIT).map_err(|why| Failure {
        message: format!(
            "--die oom needs a memory cgroup it can create and enter, and cannot: {why} (run as root on a host with a memory cgroup)"
        ),
        code: crate::failure::EXIT_ERROR,
    })?;
    eprintln!(
        "blackbox demo: memory cgroup {} limit {OOM_LIMIT} bytes",
        cgroup.display()
    );
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let chunk = 128 << 10;
    loop {
        // Written, not just reserved: every page is charged.
        hoard.push(vec![1u8; chunk]);
        let held = (hoard.len() * chunk) as u64;
        if hoard.len() % 64 == 0 {
            let _ = rec.log(
                Level::Warn,
                "blackbox::demo",
                "demo: allocating",
                &[Field::new("bytes", held)],
            );
        }
        std::thread::sleep(Duration::from_millis(1));
        if held > 4 * OOM_LIMIT {
            return Err(Failure::error(format!(
                "allocated {held} bytes in {} without an OOM kill; the limit did not hold",
                cgroup.display()
            )));
        }
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates a child of the process's memory cgroup (v1, or v2 with the
/// memory controller), limits it to `limit` bytes without swap, and moves
/// the whole process into it.
fn enter_memory_cgroup(limit: u64) -> Result<PathBuf, String> {
    let table = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let name = format!("blackbox-demo-oom-{}", std::process::id());
    let v1 = table.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    });
    let (dir, v2) = match v1 {
        Some(rel) => (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel.trim_start_matches('/'))
                .join(&name),
            false,
        ),
        None => {
            let rel = table
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or("no memory cgroup in /proc/self/cgroup")?;
            let parent = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
            let controllers =
                std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return Err("the cgroup v2 hierarchy has no memory controller here".into());
            }
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
            (parent.join(&name), true)
        }
    };
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let setup = || -> Result<(), String> {
        if v2 {
            write_file(&dir.join("memory.max"), &limit.to_string())?;
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            let set: u64 = std::fs::read_to_string(dir.join("memory.max"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or("memory.max did not take the limit")?;
            if set > limit {
                return Err(format!("memory.max reads {set}, above {limit}"));
            }
        } else {
            write_file(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_file(&memsw, &limit.to_string())?;
            }
            let set: u64 = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or("memory.limit_in_bytes did not take the limit")?;
            if set > limit {
                return Err(format!("memory.limit_in_bytes reads {set}, above {limit}"));
            }
        }
        write_file(&dir.join("cgroup.procs"), &std::process::id().to_string())
    };
    match setup() {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            Err(e)
        }
    }
}

/// The name `blackbox demo --every-type` stores its typed record under.
#[cfg(feature = "typed")]
pub const SAMPLE_TYPE: &str = "blackbox::demo::Sample";

/// The typed record `blackbox demo --every-type` writes (when built with
/// typed records).
#[cfg(feature = "typed")]
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Sample {
    /// A signed integer.
    pub i: i64,
    /// A string.
    pub label: String,
    /// A float.
    pub ratio: f64,
    /// A list.
    pub tags: Vec<String>,
    /// An optional flag.
    pub flag: Option<bool>,
}

#[cfg(feature = "typed")]
impl Sample {
    /// The sample `--every-type` writes.
    #[cfg_attr(not(feature = "typed"), allow(dead_code))]
    pub fn demo() -> Sample {
        Sample {
            i: -5,
            label: "typed".into(),
            ratio: 0.25,
            tags: vec!["a".into(), "b".into()],
            flag: Some(true),
        }
    }
}
