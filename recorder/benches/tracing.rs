//! What a `tracing` event costs through the blackbox Layer, against what
//! Rust services use today, and what each loses to a SIGKILL. Plain `std`
//! timing (no criterion).
//!
//! `cargo bench -p blackbox-recorder --bench tracing`
//!
//! The same event everywhere: `tracing::info!(target: "bench::svc", n = i,
//! user = "alice", ok = true, "request handled")` (INFO, a target, a
//! message, three fields: `u64`, `&str`, `bool`). The subscribers:
//!
//! - `blackbox Layer`: `registry().with(BlackboxLayer::new(rec))`, a 64 MiB
//!   ring, no heartbeat;
//! - `fmt + non_blocking`: `registry().with(fmt::layer().with_writer(nb))`
//!   where `nb` is tracing-appender's `non_blocking` writer (default
//!   settings: lossy, 128 000 buffered lines) to a file;
//! - `fmt -> file`: the fmt layer writing straight to the file (one
//!   `write(2)` per event);
//! - two references: `Recorder::log` with the same content (no `tracing`),
//!   and the `tracing` registry with no layer (the macro and dispatch alone).
//!
//! Each case runs on one thread and on two at once, as the median of
//! several runs (after a warm-up run); ns/event is per thread (wall time of
//! a run over the events one thread wrote). The non-blocking writer drops
//! events when its queue is full: the drops while timing are reported.
//!
//! Then the Layer and fmt + non_blocking in alternating rounds
//! (`BENCH_ROUNDS`, default 31): per round one timed run of each (after a
//! warm-up run), on 1 thread and on 2, and the ratio of the two. The blocks
//! above run each case's runs together, seconds apart from the other
//! case's, and this VM's speed drifts by up to 1.8x between such moments;
//! a round's two runs are a fraction of a second apart. The median of the
//! rounds' ratios is the figure held to the target. Each round's
//! non_blocking writer is new, and is dropped (its queue written out and
//! its worker thread joined) before the next run, so that its worker never
//! writes while the Layer is timed.
//!
//! Then, for each subscriber, the bench re-executes itself as a child that
//! writes `BENCH_KILL_EVENTS` events (default 10 000) and SIGKILLs itself
//! right after the last one returned; the parent counts the events that
//! reached the file or the ring and reports how many of the last ones were
//! lost.
//!
//! Files and rings go to `BENCH_DIR` (default: the temp dir). Knobs:
//! `BENCH_CAPACITY_MIB` (the ring, default 64), `BENCH_OPS` (events per run
//! and thread, default 100 000), `BENCH_RUNS`
//! (runs per case, default 5), `BENCH_ONLY` (`blackbox`, `nonblocking`,
//! `fmtfile`, `raw`, `floor`, `spans`, `rounds`: that case alone).
//!
//! First, the spans (`BENCH_ONLY=spans` for them alone), through one
//! blackbox Layer in the same run: the event above outside any span; an
//! enter+exit pair of a span created beforehand (each a span record; target:
//! at most 2x the event); the event inside two entered spans with fields
//! (`req{id, user}`, `db{table}`: the fields are recorded once per span,
//! the event carries the innermost span's id); a span's whole life (new
//! with two fields, enter, exit, close).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use blackbox_recorder::layout::{
    commit_tag, stride, table_state, CHUNK_HEADER_LEN, CHUNK_OWNED, CHUNK_SEALED, COMMIT_LEN_BITS,
    C_GEN, HEADER_LEN, H_CHUNK_COUNT, H_CHUNK_SIZE, H_DATA_OFFSET, KIND_EVENT, RECORD_HEADER_LEN,
    R_KIND,
};
use blackbox_recorder::{BlackboxLayer, Field, Level, Recorder};
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

const MESSAGE: &str = "request handled";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The ring's size: `BENCH_CAPACITY_MIB`, default 64 (larger than the
/// caches, so every new line of the ring is a miss, as in a service).
fn ring_capacity() -> u64 {
    env_usize("BENCH_CAPACITY_MIB", 64) as u64 * (1 << 20)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Blackbox,
    NonBlocking,
    FmtFile,
    Raw,
    Floor,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Blackbox,
        Case::NonBlocking,
        Case::FmtFile,
        Case::Raw,
        Case::Floor,
    ];

    fn key(self) -> &'static str {
        match self {
            Case::Blackbox => "blackbox",
            Case::NonBlocking => "nonblocking",
            Case::FmtFile => "fmtfile",
            Case::Raw => "raw",
            Case::Floor => "floor",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Blackbox => "blackbox Layer",
            Case::NonBlocking => "fmt + non_blocking -> file",
            Case::FmtFile => "fmt -> file",
            Case::Raw => "(Recorder::log, no tracing)",
            Case::Floor => "(registry, no layer)",
        }
    }

    fn from_key(key: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.key() == key)
    }

    /// Whether the case writes somewhere a SIGKILL test can look.
    fn keeps_records(self) -> bool {
        matches!(self, Case::Blackbox | Case::NonBlocking | Case::FmtFile)
    }

    fn file_name(self) -> String {
        let ext = if self == Case::Blackbox {
            "ring"
        } else {
            "log"
        };
        format!("bench-tracing-{}-{}.{ext}", self.key(), std::process::id())
    }
}

/// What a case writes through, and what must live as long as it does.
struct Sink {
    dispatch: Option<Dispatch>,
    rec: Option<Arc<Recorder>>,
    guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    dropped: Option<tracing_appender::non_blocking::ErrorCounter>,
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn sink(case: Case, path: &Path) -> Sink {
    let mut s = Sink {
        dispatch: None,
        rec: None,
        guard: None,
        dropped: None,
    };
    let fmt = || tracing_subscriber::fmt::layer().with_ansi(false);
    match case {
        Case::Blackbox | Case::Raw => {
            let rec = Arc::new(
                Recorder::builder(path)
                    .capacity(ring_capacity())
                    .heartbeat(None)
                    .program("tracing-bench")
                    .create()
                    .unwrap_or_else(|e| panic!("create ring: {e}")),
            );
            if case == Case::Blackbox {
                s.dispatch = Some(Dispatch::new(
                    tracing_subscriber::registry().with(BlackboxLayer::new(Arc::clone(&rec))),
                ));
            }
            s.rec = Some(rec);
        }
        Case::NonBlocking => {
            let (nb, guard) = tracing_appender::non_blocking(open_log(path));
            s.dropped = Some(nb.error_counter());
            s.dispatch = Some(Dispatch::new(
                tracing_subscriber::registry().with(fmt().with_writer(nb)),
            ));
            s.guard = Some(guard);
        }
        Case::FmtFile => {
            s.dispatch = Some(Dispatch::new(
                tracing_subscriber::registry().with(fmt().with_writer(open_log(path))),
            ));
        }
        Case::Floor => {
            s.dispatch = Some(Dispatch::new(tracing_subscriber::registry()));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// The measured loops.

#[inline(never)]
fn tracing_loop(n: usize) {
    for i in 0..n {
        tracing::info!(
            target: "bench::svc",
            n = i as u64,
            user = "alice",
            ok = true,
            "request handled"
        );
    }
}

#[inline(never)]
fn raw_loop(rec: &Recorder, n: usize) {
    for i in 0..n {
        let fields = [
            Field::new("n", i as u64),
            Field::new("user", "alice"),
            Field::new("ok", true),
        ];
        black_box(rec.log(Level::Info, black_box("bench::svc"), MESSAGE, &fields)).ok();
    }
}

fn run_case(s: &Sink, n: usize) {
    match (&s.dispatch, &s.rec) {
        (Some(d), _) => tracing::dispatcher::with_default(d, || tracing_loop(n)),
        (None, Some(rec)) => raw_loop(rec, n),
        (None, None) => unreachable!("a case writes somewhere"),
    }
}

#[derive(Clone, Copy)]
struct Figure {
    ns: f64,
    min: f64,
    max: f64,
    mops: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs the case on `threads` threads at once, `runs` times after a
/// warm-up run.
fn measure(s: &Sink, threads: usize, n: usize, runs: usize) -> Figure {
    let mut per_op = Vec::with_capacity(runs);
    let mut mops = Vec::with_capacity(runs);
    for run in 0..=runs {
        let barrier = Barrier::new(threads);
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let start = Instant::now();
                        run_case(s, n);
                        (start, Instant::now())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread"))
                .collect()
        });
        if run == 0 {
            continue;
        }
        let start = spans.iter().map(|s| s.0).min().expect("a thread");
        let end = spans.iter().map(|s| s.1).max().expect("a thread");
        let ns = (end - start).as_nanos() as f64;
        per_op.push(ns / n as f64);
        mops.push((threads * n) as f64 / ns * 1e3);
    }
    Figure {
        min: per_op.iter().copied().fold(f64::INFINITY, f64::min),
        max: per_op.iter().copied().fold(0.0, f64::max),
        ns: median(&mut per_op),
        mops: median(&mut mops),
    }
}

// ---------------------------------------------------------------------------
// The SIGKILL test.

const CHILD_CASE: &str = "BENCH_KILL_CHILD";
const CHILD_PATH: &str = "BENCH_KILL_PATH";
const CHILD_EVENTS: &str = "BENCH_KILL_EVENTS";

/// In the child: write the events, then SIGKILL ourselves at once.
fn child(case: Case, path: &Path, events: usize) -> ! {
    let s = sink(case, path);
    run_case(&s, events);
    // Nothing is flushed, dropped or closed: what is not in the file or
    // the ring now is lost.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL cannot be caught")
}

/// Events with the bench's message in a fmt log file.
fn count_lines(path: &Path) -> usize {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains(MESSAGE))
        .count()
}

/// Published `KIND_EVENT` records of a ring whose chunks were never reused,
/// walked as `shm-layout.md` frames them (chunk table, chunk header, COMMIT
/// words with the claim's tag, strides).
fn count_ring_events(path: &Path) -> usize {
    let file = std::fs::read(path).unwrap_or_default();
    if file.len() < HEADER_LEN {
        return 0;
    }
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes"));
    let chunk_size = u32_at(H_CHUNK_SIZE) as usize;
    let data = u64_at(H_DATA_OFFSET) as usize;
    let mut events = 0;
    for i in 0..u32_at(H_CHUNK_COUNT) as usize {
        let state = table_state(u64_at(HEADER_LEN + 8 * i));
        if state != CHUNK_OWNED && state != CHUNK_SEALED {
            continue;
        }
        let chunk = data + i * chunk_size;
        let tag = commit_tag(u64_at(chunk + C_GEN));
        let mut offset = CHUNK_HEADER_LEN;
        while offset + RECORD_HEADER_LEN <= chunk_size {
            let word = u64_at(chunk + offset);
            let len = (word & 0xffff) as usize;
            if word >> COMMIT_LEN_BITS != tag || len < RECORD_HEADER_LEN {
                break;
            }
            let at = chunk + offset;
            if u16::from_le_bytes([file[at + R_KIND], file[at + R_KIND + 1]]) == KIND_EVENT {
                events += 1;
            }
            offset += stride(len);
        }
    }
    events
}

/// Runs a child that writes `events` events and SIGKILLs itself; returns
/// how many of them were lost.
fn lost_to_sigkill(case: Case, dir: &Path, events: usize) -> usize {
    let path = dir.join(format!("kill-{}", case.file_name()));
    let status = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_CASE, case.key())
        .env(CHILD_PATH, &path)
        .env(CHILD_EVENTS, events.to_string())
        .status()
        .expect("run the child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the {} child did not die of SIGKILL: {status:?}",
        case.key()
    );
    // Let a kernel that is still closing the child's files settle.
    std::thread::sleep(Duration::from_millis(50));
    let arrived = if case == Case::Blackbox {
        count_ring_events(&path)
    } else {
        count_lines(&path)
    };
    let _ = std::fs::remove_file(&path);
    events.saturating_sub(arrived)
}

// ---------------------------------------------------------------------------
// The Layer against fmt + non_blocking in alternating rounds.

/// Per-round ratios of fmt + non_blocking's ns/event to the Layer's, on
/// 1 thread and on 2 (see the module documentation).
struct Rounds {
    one: Vec<f64>,
    two: Vec<f64>,
}

fn alternating_rounds(dir: &Path, n: usize, rounds: usize) -> Rounds {
    let ring = dir.join(format!("bench-tracing-rounds-{}.ring", std::process::id()));
    let log = dir.join(format!("bench-tracing-rounds-{}.log", std::process::id()));
    let layer = sink(Case::Blackbox, &ring);
    let mut ratios = Rounds {
        one: Vec::with_capacity(rounds),
        two: Vec::with_capacity(rounds),
    };
    for _ in 0..rounds {
        for threads in [1, 2] {
            let blackbox = measure(&layer, threads, n, 1).ns;
            let nb = sink(Case::NonBlocking, &log);
            let non_blocking = measure(&nb, threads, n, 1).ns;
            // Dropping the writer writes out its queue and joins its
            // worker; the file, deleted at once, has its dirty pages
            // dropped, not written back while the Layer's next run is timed.
            drop(nb);
            let _ = std::fs::remove_file(&log);
            let ratio = non_blocking / blackbox;
            if threads == 1 {
                ratios.one.push(ratio);
            } else {
                ratios.two.push(ratio);
            }
        }
    }
    drop(layer);
    let _ = std::fs::remove_file(&ring);
    ratios
}

/// The median of `v`, and its smallest and largest value.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut sorted = v.to_vec();
    let mid = median(&mut sorted);
    (mid, sorted[0], sorted[sorted.len() - 1])
}

// ---------------------------------------------------------------------------
// Spans: what the timeline costs, in the same run as one event.

/// The span timings, each the median of `runs` runs of `n` operations on
/// one thread (after a warm-up run), all through one blackbox Layer.
struct SpanFigures {
    /// One event outside any span.
    event: f64,
    /// One enter+exit pair of a span created beforehand.
    enter_exit: f64,
    /// The same event inside two entered spans with fields.
    event_in_two_spans: f64,
    /// A span created (with two fields), entered, exited and closed.
    span_lifetime: f64,
    /// The event inside the two spans, through a Layer without the
    /// timeline (span names only, no span records, no `span_id`): what an
    /// event in spans cost before span records.
    event_in_two_spans_names_only: f64,
}

#[inline(never)]
fn enter_exit_loop(span: &tracing::Span, n: usize) {
    for _ in 0..n {
        let entered = span.enter();
        black_box(&entered);
        drop(entered);
    }
}

#[inline(never)]
fn span_lifetime_loop(n: usize) {
    for i in 0..n {
        let span = tracing::info_span!(target: "bench::svc", "req", id = i as u64, user = "alice");
        let entered = span.enter();
        black_box(&entered);
    }
}

fn time_runs(runs: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let mut per_op = Vec::with_capacity(runs);
    for run in 0..=runs {
        let start = Instant::now();
        f();
        if run > 0 {
            per_op.push(start.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    median(&mut per_op)
}

fn measure_spans(dir: &Path, n: usize, runs: usize) -> SpanFigures {
    let path = dir.join(format!("bench-tracing-spans-{}.ring", std::process::id()));
    let s = sink(Case::Blackbox, &path);
    let d = s
        .dispatch
        .as_ref()
        .expect("the blackbox case has a dispatch");
    let figures = tracing::dispatcher::with_default(d, || {
        let event = time_runs(runs, n, || tracing_loop(n));
        let span = tracing::info_span!(target: "bench::svc", "req", id = 7u64);
        let enter_exit = time_runs(runs, n, || enter_exit_loop(&span, n));
        let outer = tracing::info_span!(target: "bench::svc", "req", id = 7u64, user = "alice");
        let inner =
            outer.in_scope(|| tracing::info_span!(target: "bench::svc", "db", table = "users"));
        let event_in_two_spans = {
            let _outer = outer.enter();
            let _inner = inner.enter();
            time_runs(runs, n, || tracing_loop(n))
        };
        let span_lifetime = time_runs(runs, n, || span_lifetime_loop(n));
        (event, enter_exit, event_in_two_spans, span_lifetime)
    });
    let rec = s.rec.as_ref().expect("the blackbox case has a ring");
    let names_only = Dispatch::new(
        tracing_subscriber::registry()
            .with(BlackboxLayer::new(Arc::clone(rec)).with_timeline(false)),
    );
    let event_in_two_spans_names_only = tracing::dispatcher::with_default(&names_only, || {
        let outer = tracing::info_span!(target: "bench::svc", "req", id = 7u64, user = "alice");
        let inner =
            outer.in_scope(|| tracing::info_span!(target: "bench::svc", "db", table = "users"));
        let _outer = outer.enter();
        let _inner = inner.enter();
        time_runs(runs, n, || tracing_loop(n))
    });
    drop(names_only);
    let (event, enter_exit, event_in_two_spans, span_lifetime) = figures;
    let figures = SpanFigures {
        event,
        enter_exit,
        event_in_two_spans,
        span_lifetime,
        event_in_two_spans_names_only,
    };
    drop(s);
    let _ = std::fs::remove_file(&path);
    figures
}

fn print_spans(f: &SpanFigures) {
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("spans, 1 thread, one ring (ns per operation)");
    println!("{}", "-".repeat(70));
    println!("{:<48} {:>8.1}", "event outside any span", f.event);
    println!("{:<48} {:>8.1}", "span enter + exit (a pair)", f.enter_exit);
    println!(
        "{:<48} {:>8.1}",
        "event inside two spans with fields", f.event_in_two_spans
    );
    println!(
        "{:<48} {:>8.1}",
        "span new + enter + exit + close", f.span_lifetime
    );
    println!(
        "{:<48} {:>8.1}",
        "event inside two spans, timeline off", f.event_in_two_spans_names_only
    );
    let r = f.enter_exit / f.event;
    println!(
        "{:<48} {:>8.2} {:>10} {}",
        "enter+exit pair / event",
        r,
        "<= 2",
        verdict(r <= 2.0)
    );
    println!(
        "{:<48} {:>8.2} {:>10}",
        "event in two spans / event outside",
        f.event_in_two_spans / f.event,
        "-"
    );
    println!();
}

fn main() {
    if let Ok(key) = std::env::var(CHILD_CASE) {
        let case = Case::from_key(&key).expect("a known case");
        let path = PathBuf::from(std::env::var_os(CHILD_PATH).expect("a path"));
        child(case, &path, env_usize(CHILD_EVENTS, 10_000));
    }
    let n = env_usize("BENCH_OPS", 100_000);
    let runs = env_usize("BENCH_RUNS", 5).max(1);
    let kill_events = env_usize(CHILD_EVENTS, 10_000);
    let only = std::env::var("BENCH_ONLY").ok();
    let dir = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let began = Instant::now();
    println!(
        "blackbox tracing bench: files and rings in {}, {} events per run and thread, \
         median of {} runs, {} CPUs; SIGKILL after {} events",
        dir.display(),
        n,
        runs,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        kill_events,
    );
    println!("event: INFO, target \"bench::svc\", message {MESSAGE:?}, fields n (u64), user (str), ok (bool)");
    println!();

    if only.as_deref().is_none_or(|o| o == "spans") {
        print_spans(&measure_spans(&dir, n, runs));
    }
    if only.as_deref() == Some("spans") {
        return;
    }

    struct Row {
        case: Case,
        one: Figure,
        two: Figure,
        dropped: Option<usize>,
        lost: Option<usize>,
    }
    let mut rows = Vec::new();
    for case in Case::ALL {
        if only.as_deref().is_some_and(|o| o != case.key()) {
            continue;
        }
        let path = dir.join(case.file_name());
        let s = sink(case, &path);
        let one = measure(&s, 1, n, runs);
        let two = measure(&s, 2, n, runs);
        let dropped = s.dropped.as_ref().map(|d| d.dropped_lines());
        drop(s); // flushes the non-blocking writer, closes the ring
        let _ = std::fs::remove_file(&path);
        let lost = case
            .keeps_records()
            .then(|| lost_to_sigkill(case, &dir, kill_events));
        rows.push(Row {
            case,
            one,
            two,
            dropped,
            lost,
        });
    }

    let rounds = only
        .as_deref()
        .is_none_or(|o| o == "rounds")
        .then(|| alternating_rounds(&dir, n, env_usize("BENCH_ROUNDS", 31).max(1)));

    println!(
        "{:<30} {:>10} {:>15} {:>10} {:>15} {:>9} {:>12}",
        "subscriber",
        "1 thread",
        "(min - max)",
        "2 threads",
        "(min - max)",
        "dropped",
        "lost on kill"
    );
    println!(
        "{:<30} {:>10} {:>15} {:>10} {:>15}",
        "", "ns/event", "", "ns/event", ""
    );
    println!("{}", "-".repeat(107));
    for r in &rows {
        let range = |f: &Figure| format!("({:.0} - {:.0})", f.min, f.max);
        println!(
            "{:<30} {:>10.1} {:>15} {:>10.1} {:>15} {:>9} {:>12}",
            r.case.label(),
            r.one.ns,
            range(&r.one),
            r.two.ns,
            range(&r.two),
            r.dropped.map_or("-".to_string(), |d| d.to_string()),
            r.lost
                .map_or("-".to_string(), |l| format!("{l} of {kill_events}")),
        );
    }
    println!();

    let find = |c: Case| rows.iter().find(|r| r.case == c);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    if let Some(r) = &rounds {
        println!(
            "{:<48} {:>8} {:>15}",
            "non_blocking / Layer, alternating rounds", "median", "(min - max)"
        );
        println!("{}", "-".repeat(75));
        for (label, v) in [("1 thread", &r.one), ("2 threads", &r.two)] {
            let (mid, lo, hi) = spread(v);
            println!(
                "{:<48} {:>8.1} {:>15}",
                format!("{label} ({} rounds)", v.len()),
                mid,
                format!("({lo:.1} - {hi:.1})")
            );
        }
        println!();
    }
    println!("{:<48} {:>8} {:>10}", "target", "value", "");
    println!("{}", "-".repeat(70));
    if let Some(b) = find(Case::Blackbox) {
        // Absolute figures travel badly between machines: the targets are
        // ratios to what was measured in this run.
        println!(
            "{:<48} {:>8.1} {:>10}",
            "blackbox Layer, ns/event, 1 thread", b.one.ns, "-"
        );
        if let Some(raw) = find(Case::Raw) {
            println!(
                "{:<48} {:>8.2} {:>10}",
                "blackbox Layer / Recorder::log, 1 thread",
                b.one.ns / raw.one.ns,
                "-"
            );
        }
        println!(
            "{:<48} {:>8.1} {:>10}",
            "blackbox Layer, M events/s, 2 threads", b.two.mops, "-"
        );
        if let Some(nb) = find(Case::NonBlocking) {
            println!(
                "{:<48} {:>8.1} {:>10}",
                "non_blocking / blackbox Layer, blocks, 1 thread",
                nb.one.ns / b.one.ns,
                "-"
            );
            println!(
                "{:<48} {:>8.1} {:>10}",
                "non_blocking / blackbox Layer, blocks, 2 threads",
                nb.two.ns / b.two.ns,
                "-"
            );
        }
        if let Some(r) = &rounds {
            for (label, v) in [("1 thread", &r.one), ("2 threads", &r.two)] {
                let (mid, ..) = spread(v);
                println!(
                    "{:<48} {:>8.1} {:>10} {}",
                    format!("non_blocking / blackbox Layer, rounds, {label}"),
                    mid,
                    ">= 10",
                    verdict(mid >= 10.0)
                );
            }
        }
        if let Some(lost) = b.lost {
            println!(
                "{:<48} {:>8} {:>10} {}",
                "blackbox Layer, events lost to SIGKILL",
                lost,
                "0",
                verdict(lost == 0)
            );
        }
    }
    println!();
    println!("measured in {:.1} s", began.elapsed().as_secs_f64());
}
