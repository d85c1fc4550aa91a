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
    /// Leak memory (--leak-step every --leak-every) in the cgroup it was
    /// started in, until the kernel kills it; refuses where that cgroup
    /// has no memory limit.
    Leak,
    /// A real SIGBUS (test aid).
    #[value(hide = true)]
    Bus,
    /// A stack overflow on the main thread (test aid).
    #[value(hide = true)]
    StackOverflow,
    /// SIGSEGV two calls deep on a thread named `crasher` (test aid).
    #[value(hide = true)]
    SegvThread,
    /// An illegal instruction (SIGILL; test aid).
    #[value(hide = true)]
    Ill,
    /// Two threads (`crasher-a`, `crasher-b`) fault at the same moment
    /// (SIGSEGV; test aid).
    #[value(hide = true)]
    SegvTwoThreads,
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
    /// In a directory of rings: at create, remove this program's dead
    /// rings there beyond the newest N ("all" keeps every one; default:
    /// $BLACKBOX_KEEP with $BLACKBOX_DIR, else the recorder's, 3).
    #[arg(long, value_name = "N|all", value_parser = parse_keep)]
    pub keep_dead_rings: Option<KeepDead>,
    /// Test aid: before dying, a thread named `caught` panics and the
    /// panic is caught (the thread is joined), as a server survives a
    /// handler's panic.
    #[arg(long, hide = true)]
    pub caught_panic: bool,
    /// With --die leak: bytes leaked per step.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = units::parse_size)]
    pub leak_step: u64,
    /// With --die leak: milliseconds between steps.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub leak_every_ms: u64,
    /// Internal: the helper `--die oom` starts to remove its cgroups after
    /// the writer's death (reads the steps on stdin).
    #[arg(long, hide = true)]
    pub oom_cleanup: bool,
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

/// `demo --keep-dead-rings`: a count, or `None` for "all".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepDead(pub Option<usize>);

fn parse_keep(text: &str) -> Result<KeepDead, String> {
    match text.trim() {
        "all" => Ok(KeepDead(None)),
        t => t
            .parse()
            .map(|n| KeepDead(Some(n)))
            .map_err(|_| format!("invalid --keep-dead-rings {text:?} (a number, or all)")),
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
    if opts.oom_cleanup {
        return Ok(super::oom_cgroup::cleanup_helper());
    }
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
    if let Some(KeepDead(keep)) = opts.keep_dead_rings {
        builder = builder.keep_dead_rings(keep);
    }
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
    if opts.caught_panic {
        let survived = std::thread::Builder::new()
            .name("caught".into())
            .spawn(|| panic!("demo caught panic"))
            .map_err(|e| Failure::error(format!("cannot start a thread: {e}")))?
            .join();
        assert!(survived.is_err(), "the caught thread did not panic");
    }
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
        Die::SegvThread => {
            std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("crasher".into())
                    .spawn_scoped(scope, || {
                        // An appending thread, as in an application: its
                        // first append gives it the crash handler's stack.
                        let _ = rec.log(Level::Warn, "demo", "crasher: about to fault", &[]);
                        crash_outer()
                    })
                    .map(|_| ())
                    .map_err(|e| Failure::error(format!("cannot start a thread: {e}")))
            })?;
            unreachable!("the crasher thread faults")
        }
        Die::Ill => blackbox_recorder::crash::fault_sigill_for_test(),
        Die::SegvTwoThreads => {
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                for name in ["crasher-a", "crasher-b"] {
                    let start = &start;
                    std::thread::Builder::new()
                        .name(name.into())
                        .spawn_scoped(scope, move || {
                            let _ = rec.log(Level::Warn, "demo", "crasher: about to fault", &[]);
                            start.wait();
                            crash_outer()
                        })
                        .map_err(|e| Failure::error(format!("cannot start a thread: {e}")))?;
                }
                Ok::<(), Failure>(())
            })?;
            unreachable!("the crasher threads fault")
        }
        Die::Kill => {
            // Nothing is closed or flushed: the ring is all that remains.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            unreachable!("SIGKILL cannot be caught")
        }
        Die::Oom => oom(rec),
        Die::Leak => leak(rec, opts),
    }
}

/// The first of two named frames above the fault of `--die segv-thread`.
#[inline(never)]
fn crash_outer() {
    crash_inner(std::hint::black_box(3));
    std::hint::black_box(());
}

/// The second: calls the recorder's faulting test aid.
#[inline(never)]
fn crash_inner(n: u32) {
    if std::hint::black_box(n) > 0 {
        blackbox_recorder::crash::fault_null_for_test();
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

/// Moves the process into a new memory cgroup limited to [`OOM_LIMIT`]
/// (see [`super::oom_cgroup`]) and allocates until the kernel's OOM killer
/// ends it. Refuses (exit status 2) where no such cgroup can be made,
/// saying why: it never allocates without the limit.
fn oom(rec: &Recorder) -> Result<i32, Failure> {
    let cgroup = super::oom_cgroup::enter(OOM_LIMIT).map_err(|why| Failure {
        message: format!("--die oom needs a memory cgroup of its own, and cannot make one: {why}"),
        code: crate::failure::EXIT_ERROR,
    })?;
    eprintln!(
        "blackbox demo: memory cgroup {} limit {OOM_LIMIT} bytes",
        cgroup.path.display()
    );
    let held = allocate_until(rec, 128 << 10, Duration::from_millis(1), 4 * OOM_LIMIT);
    let path = cgroup.path.display().to_string();
    let undone = cgroup.undo();
    Err(Failure::error(format!(
        "allocated {held} bytes in {path} without an OOM kill; the limit did not hold{}",
        if undone.is_empty() {
            String::new()
        } else {
            format!(" ({})", undone.join("; "))
        }
    )))
}

/// `--die leak`: leaks `--leak-step` bytes every `--leak-every` in the
/// cgroup the process was started in (a unit's `MemoryMax=`, a pod's
/// limit), writing one record per step, until the kernel kills it.
fn leak(rec: &Recorder, opts: &DemoArgs) -> Result<i32, Failure> {
    let table = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let limit = cgroup_limit(&table).ok_or_else(|| {
        Failure::error(
            "--die leak leaks until the kernel's OOM killer stops it, and the process's cgroup \
             has no memory limit: start it under one (systemd-run -p MemoryMax=64M ..., or \
             use --die oom)",
        )
    })?;
    eprintln!("blackbox demo: leaking under a cgroup memory limit of {limit} bytes");
    let step = usize::try_from(opts.leak_step.max(4096)).unwrap_or(1 << 20);
    let held = allocate_until(
        rec,
        step,
        Duration::from_millis(opts.leak_every_ms),
        4 * limit,
    );
    Err(Failure::error(format!(
        "leaked {held} bytes under a limit of {limit} without an OOM kill; the limit did not hold"
    )))
}

/// Allocates (and touches) `step` bytes every `every`, writing a record
/// each time, until more than `bound` bytes are held; returns how many.
fn allocate_until(rec: &Recorder, step: usize, every: Duration, bound: u64) -> u64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut held = 0u64;
    while held <= bound {
        // Written, not just reserved: every page is charged.
        hoard.push(vec![1u8; step]);
        held += step as u64;
        let _ = rec.log(
            Level::Warn,
            "blackbox::demo",
            "demo: allocating",
            &[Field::new("bytes", held)],
        );
        std::thread::sleep(every);
    }
    held
}

/// The memory limit that applies to the process's cgroup (its own or an
/// ancestor's, v2; the hierarchical limit, v1), if any.
fn cgroup_limit(proc_self_cgroup: &str) -> Option<u64> {
    use super::oom_cgroup::{membership, Membership};
    match membership(proc_self_cgroup)? {
        Membership::V1Memory(rel) => {
            let dir = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
            let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&l| l < 1 << 62)
        }
        Membership::V2(rel) => {
            let mut dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
            loop {
                let limit = std::fs::read_to_string(dir.join("memory.max"))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if limit.is_some() {
                    return limit;
                }
                if dir == Path::new("/sys/fs/cgroup") || !dir.pop() {
                    return None;
                }
            }
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
