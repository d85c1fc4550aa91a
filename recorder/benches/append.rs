//! Append cost on the hot path, with plain `std` timing (no criterion).
//!
//! `cargo bench -p blackbox-recorder --bench append`
//!
//! Puts a 64 MiB ring on `/dev/shm` (or the temp dir when that is missing)
//! with no heartbeat thread, and measures, as the median of several runs of
//! a few million operations each, the nanoseconds per operation of:
//!
//! - the "floor": one `AtomicU64::fetch_add` (Relaxed) on a shared counter
//!   plus one `recorder::realtime_ns()` read, the two things an append cannot
//!   avoid (the reservation and the timestamp);
//! - a raw 64-byte record (`rec.append(&[u8; 32])`: 32-byte header + 32-byte
//!   payload);
//! - a `rec.log(Info, "bench", "msg", &[Field::new("n", i)])` event (63-byte
//!   record, 64-byte stride);
//! - `rec.snapshot("slow request")`: a WARN event plus the snapshot
//!   trigger's two stores (shm-layout.md, 8.4);
//! - the raw append and the floor on two threads at once.
//!
//! Environment knobs: `BENCH_OPS` (operations per run and thread, default
//! 4 000 000), `BENCH_RUNS` (runs per case, default 9), `BENCH_ONLY`
//! (`clock`, `fetch_add`, `crc`, `floor`, `append`, `log`, `snapshot`, `floor2`,
//! `append2`: run that case alone, for profiling).
//!
//! Two-thread figures depend on how the machine schedules the threads (on a
//! small VM they vary from run to run); the table shows each case's fastest
//! and slowest run next to the median, and the scaling ratio is also given
//! from the fastest runs.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use recorder::layout::{stride, EVENT_FIXED_LEN, RECORD_HEADER_LEN};
use recorder::{realtime_ns, Field, Level, Recorder};

const CAPACITY: u64 = 64 << 20;
const RAW_PAYLOAD: [u8; 32] = [0xA5; 32];
const TARGET: &str = "bench";
const MESSAGE: &str = "msg";

/// The shared counter of the floor loops, on its own cache line like TAIL.
#[repr(align(128))]
struct Counter(AtomicU64);

static COUNTER: Counter = Counter(AtomicU64::new(0));

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn ring_path() -> PathBuf {
    let name = format!("blackbox-bench-append-{}.ring", std::process::id());
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm.join(name)
    } else {
        std::env::temp_dir().join(name)
    }
}

fn create_ring(path: &PathBuf) -> (Recorder, PathBuf) {
    let build = |p: &PathBuf| {
        Recorder::builder(p)
            .capacity(CAPACITY)
            .heartbeat(None)
            .program("append-bench")
            .create()
    };
    match build(path) {
        Ok(rec) => (rec, path.clone()),
        Err(e) => {
            let fallback = std::env::temp_dir().join(path.file_name().expect("file name"));
            eprintln!(
                "cannot use {}: {e}; falling back to {}",
                path.display(),
                fallback.display()
            );
            let rec = build(&fallback).unwrap_or_else(|e| panic!("create ring: {e}"));
            (rec, fallback)
        }
    }
}

// ---------------------------------------------------------------------------
// The measured loops. Each returns how many operations failed (Lapped), so
// the result is used and a surprise is visible.

#[inline(never)]
fn floor_loop(n: usize) -> u64 {
    let counter = black_box(&COUNTER.0);
    for _ in 0..n {
        black_box(counter.fetch_add(64, Ordering::Relaxed));
        black_box(realtime_ns());
    }
    0
}

#[inline(never)]
fn clock_loop(n: usize) -> u64 {
    for _ in 0..n {
        black_box(realtime_ns());
    }
    0
}

#[inline(never)]
fn fetch_add_loop(n: usize) -> u64 {
    let counter = black_box(&COUNTER.0);
    for _ in 0..n {
        black_box(counter.fetch_add(64, Ordering::Relaxed));
    }
    0
}

#[inline(never)]
fn crc_loop(n: usize) -> u64 {
    // What an append checksums: the 4-byte length, then the record from
    // byte 12 to its end (52 bytes for a 64-byte record).
    let buf = [0x5Au8; 64];
    let seed = black_box(0x1234_5678u32);
    let mut acc = 0u32;
    for _ in 0..n {
        let c = crc32c::crc32c_append(seed, &black_box(64u32).to_le_bytes());
        acc ^= black_box(crc32c::crc32c_append(c, black_box(&buf[12..64])));
    }
    black_box(acc);
    0
}

#[inline(never)]
fn append_loop(rec: &Recorder, n: usize) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        match rec.append(black_box(&RAW_PAYLOAD)) {
            Ok(seq) => {
                black_box(seq);
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

#[inline(never)]
fn log_loop(rec: &Recorder, n: usize) -> u64 {
    let mut failed = 0;
    for i in 0..n {
        match rec.log(
            Level::Info,
            black_box(TARGET),
            black_box(MESSAGE),
            &[Field::new("n", i as u64)],
        ) {
            Ok(seq) => {
                black_box(seq);
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

/// `Recorder::snapshot`: an event append plus the trigger's two stores.
#[inline(never)]
fn snapshot_loop(rec: &Recorder, n: usize) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        match rec.snapshot(black_box("slow request")) {
            Ok(seq) => {
                black_box(seq);
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

// ---------------------------------------------------------------------------
// Timing.

#[derive(Clone, Copy)]
struct Figure {
    threads: usize,
    /// Median nanoseconds per operation, per thread (wall time of a run
    /// divided by the operations one thread did).
    ns_per_op: f64,
    /// Fastest and slowest run, ns per operation per thread.
    min: f64,
    max: f64,
    /// Median total throughput, million operations per second.
    mops: f64,
    failed: u64,
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

/// Runs `body(n)` on `threads` threads at once, `runs` times (after one
/// warm-up run), and returns the medians. A run's time is from the barrier
/// that releases all threads to the last thread's end.
fn measure<F>(threads: usize, n: usize, runs: usize, body: F) -> Figure
where
    F: Fn(usize) -> u64 + Sync,
{
    let mut per_op = Vec::with_capacity(runs);
    let mut mops = Vec::with_capacity(runs);
    let mut failed = 0;
    for run in 0..=runs {
        let barrier = Barrier::new(threads);
        let results: Vec<(Instant, Instant, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let start = Instant::now();
                        let f = body(n);
                        (start, Instant::now(), f)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread"))
                .collect()
        });
        let start = results.iter().map(|r| r.0).min().expect("a thread");
        let end = results.iter().map(|r| r.1).max().expect("a thread");
        let wall: Duration = end - start;
        if run == 0 {
            continue; // warm-up
        }
        failed += results.iter().map(|r| r.2).sum::<u64>();
        let ns = wall.as_nanos() as f64;
        per_op.push(ns / n as f64);
        mops.push((threads * n) as f64 / ns * 1e3);
    }
    let min = per_op.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_op.iter().copied().fold(0.0, f64::max);
    Figure {
        threads,
        min,
        max,
        ns_per_op: median(&mut per_op),
        mops: median(&mut mops),
        failed,
    }
}

/// Checks the record sizes the bench claims, from the layout and from the
/// sequence numbers the ring hands out (seq = position / 8).
fn check_sizes(rec: &Recorder) -> (usize, usize) {
    let raw_len = RECORD_HEADER_LEN + RAW_PAYLOAD.len();
    let a = rec.append(&RAW_PAYLOAD).expect("append");
    let b = rec.append(&RAW_PAYLOAD).expect("append");
    assert_eq!(raw_len, 64, "raw record length");
    assert_eq!((b - a) * 8, stride(raw_len) as u64, "raw record stride");

    // header + fixed event part + target + message + field (code, name
    // length, name, u64 value)
    let log_len = RECORD_HEADER_LEN + EVENT_FIXED_LEN + TARGET.len() + MESSAGE.len() + 2 + 1 + 8;
    let a = rec
        .log(Level::Info, TARGET, MESSAGE, &[Field::new("n", 0u64)])
        .expect("log");
    let b = rec
        .log(Level::Info, TARGET, MESSAGE, &[Field::new("n", 1u64)])
        .expect("log");
    assert_eq!((b - a) * 8, stride(log_len) as u64, "event record stride");
    assert_eq!(stride(log_len), 64, "event record stride");
    (raw_len, log_len)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let n = env_usize("BENCH_OPS", 4_000_000);
    let runs = env_usize("BENCH_RUNS", 9).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);

    let (rec, path) = create_ring(&ring_path());
    let (raw_len, log_len) = check_sizes(&rec);
    let began = Instant::now();

    println!(
        "blackbox append bench: ring {} ({} MiB, no heartbeat), {} ops per run and thread, \
         median of {} runs, {} CPUs",
        path.display(),
        CAPACITY >> 20,
        n,
        runs,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );
    println!(
        "raw record: {} B header + {} B payload = {} B (stride {}); \
         log event record: {} B (stride {})",
        RECORD_HEADER_LEN,
        RAW_PAYLOAD.len(),
        raw_len,
        stride(raw_len),
        log_len,
        stride(log_len)
    );
    println!();

    let mut rows: Vec<(&str, Figure)> = Vec::new();
    let mut get = |name: &'static str, label: &'static str, f: &dyn Fn() -> Figure| {
        if want(name) {
            rows.push((label, f()));
        }
    };
    get("clock", "clock only (realtime_ns)", &|| {
        measure(1, n, runs, clock_loop)
    });
    get("fetch_add", "fetch_add only", &|| {
        measure(1, n, runs, fetch_add_loop)
    });
    get("crc", "crc32c of 4 + 52 B", &|| {
        measure(1, n, runs, crc_loop)
    });
    get("floor", "floor (fetch_add + clock)", &|| {
        measure(1, n, runs, floor_loop)
    });
    get("append", "append raw 64 B", &|| {
        measure(1, n, runs, |n| append_loop(&rec, n))
    });
    get("log", "log event 63 B (stride 64)", &|| {
        measure(1, n, runs, |n| log_loop(&rec, n))
    });
    get("snapshot", "snapshot (event + trigger)", &|| {
        measure(1, n, runs, |n| snapshot_loop(&rec, n))
    });
    get("floor2", "floor (fetch_add + clock)", &|| {
        measure(2, n, runs, floor_loop)
    });
    get("append2", "append raw 64 B", &|| {
        measure(2, n, runs, |n| append_loop(&rec, n))
    });

    println!(
        "{:<30} {:>7} {:>12} {:>17} {:>13} {:>6}",
        "case", "threads", "ns/op/thread", "(min - max)", "M ops/s total", "failed"
    );
    println!("{}", "-".repeat(90));
    for (label, f) in &rows {
        println!(
            "{:<30} {:>7} {:>12.2} {:>17} {:>13.2} {:>6}",
            label,
            f.threads,
            f.ns_per_op,
            format!("({:.1} - {:.1})", f.min, f.max),
            f.mops,
            f.failed
        );
    }
    println!();

    let find = |label: &str, threads: usize| {
        rows.iter()
            .find(|(l, f)| l.starts_with(label) && f.threads == threads)
            .map(|(_, f)| *f)
    };
    let floor1 = find("floor", 1);
    let append1 = find("append", 1);
    let log1 = find("log", 1);
    let floor2 = find("floor", 2);
    let append2 = find("append", 2);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("{:<44} {:>7} {:>10}", "ratio", "value", "target");
    println!("{}", "-".repeat(70));
    if let (Some(a), Some(f)) = (append1, floor1) {
        let r = a.ns_per_op / f.ns_per_op;
        println!(
            "{:<44} {:>7.2} {:>10} {}",
            "append / floor (1 thread, ns/op)",
            r,
            "<= 1.5",
            verdict(r <= 1.5)
        );
    }
    if let (Some(l), Some(f)) = (log1, floor1) {
        let r = l.ns_per_op / f.ns_per_op;
        println!(
            "{:<44} {:>7.2} {:>10}",
            "log / floor (1 thread, ns/op)", r, "-"
        );
    }
    if let (Some(a2), Some(f2)) = (append2, floor2) {
        let r = a2.ns_per_op / f2.ns_per_op;
        println!(
            "{:<44} {:>7.2} {:>10}",
            "append / floor (2 threads, ns/op)", r, "-"
        );
    }
    if let (Some(a2), Some(a1)) = (append2, append1) {
        let r = a2.mops / a1.mops;
        println!(
            "{:<44} {:>7.2} {:>10} {}",
            "append 2-thread / 1-thread throughput",
            r,
            ">= 1.6",
            verdict(r >= 1.6)
        );
        let best = a1.min / a2.min * a2.threads as f64;
        println!(
            "{:<44} {:>7.2} {:>10}",
            "  same, from the fastest runs of each", best, "-"
        );
    }
    if let (Some(f2), Some(f1)) = (floor2, floor1) {
        let r = f2.mops / f1.mops;
        println!(
            "{:<44} {:>7.2} {:>10}",
            "floor 2-thread / 1-thread throughput", r, "-"
        );
    }
    println!();
    println!("measured in {:.1} s", began.elapsed().as_secs_f64());

    drop(rec);
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("cannot remove {}: {e}", path.display());
    }
}
