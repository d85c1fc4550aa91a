//! Append cost on the hot path, with plain `std` timing (no criterion).
//!
//! `cargo bench -p blackbox-recorder --bench append`
//!
//! Puts a 64 MiB ring on `/dev/shm` (or the temp dir when that is missing)
//! with no heartbeat thread, and measures, as the median of several runs of
//! a few million operations each, the nanoseconds per operation of:
//!
//! - the "floor": one `AtomicU64::fetch_add` (Relaxed) on a shared counter
//!   plus one `blackbox_recorder::realtime_ns()` read: what a version 1 append could
//!   not avoid (the shared reservation and the timestamp), and the yardstick
//!   the version 2 append is held to;
//! - the "parallel floor": each thread reads the ring's clock and stores to
//!   a cache line of its own, what the machine gives threads that share
//!   nothing; its 2-thread scaling is S;
//! - a raw 64-byte record (`rec.append(&[u8; 40])`: 24-byte header + 40-byte
//!   payload), on 1, 2, 4 and 8 threads;
//! - a `rec.log(Info, "bench", "msg", &[Field::new("n", i)])` event (54-byte
//!   record, 56-byte stride);
//! - `rec.snapshot("slow request")`: a WARN event plus the snapshot
//!   trigger's three stores (shm-layout.md, 9.4);
//! - the raw append against the floor in alternating rounds, one ratio per
//!   round (the blocks above run seconds apart, and a noisy machine's
//!   speed drifts in between): the median ratio is the figure
//!   held to the target;
//! - the thread scaling in alternating rounds in the same way (parallel
//!   floor on 1 and 2 threads, append on 1, 2, 4 and 8, each running for
//!   200 ms and stopped together, every other round in the reverse
//!   order): per round the append's 2-thread
//!   scaling over S, and 4 and 8 threads' throughput over 2 threads'; the
//!   medians are held to the targets. (The blocks give each thread a
//!   fixed share, so with more threads than cores a run can end with one
//!   thread catching up alone while the other core idles.)
//!
//! Environment knobs: `BENCH_OPS` (operations per run and thread, default
//! 4 000 000), `BENCH_RUNS` (runs per case, default 9), `BENCH_ROUNDS`
//! (alternating rounds, default 31: one round's ratio swings by a third
//! either way on a small VM, and the median of more rounds moves less),
//! `BENCH_CAPACITY_MIB` (the ring, default 64: larger than the caches, so
//! the appends' cost includes writing memory), `BENCH_ONLY`
//! (`clock`, `ring_clock`, `fetch_add`, `crc`, `floor`, `append`, `paired`, `scaling`, `log`,
//! `snapshot`, `pfloor1`, `pfloor2`, `append2`, `append4`, `append8`,
//! `append_handlers` (appends with the crash handlers installed, and the
//! module table's cost): run
//! that case alone, for profiling).
//!
//! Multi-thread figures depend on how the machine schedules the threads (on
//! a small VM they vary from run to run); the table shows each case's
//! fastest and slowest run next to the median. A thread's first append to
//! the ring registers it (two system calls), once per run.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use blackbox_recorder::layout::{stride, EVENT_FIXED_LEN, RECORD_HEADER_LEN};
use blackbox_recorder::{realtime_ns, Clock, Field, Level, Recorder};

/// The ring's capacity, unless `BENCH_CAPACITY_MIB` says otherwise: 64 MiB,
/// more than the caches hold, so appends write to memory.
fn capacity() -> u64 {
    env_usize("BENCH_CAPACITY_MIB", 64) as u64 * (1 << 20)
}
const RAW_PAYLOAD: [u8; 40] = [0xA5; 40];
const TARGET: &str = "bench";
const MESSAGE: &str = "msg";

/// The shared counter of the floor loops, on its own cache line like a
/// shared write position.
#[repr(align(128))]
struct Counter(AtomicU64);

static COUNTER: Counter = Counter(AtomicU64::new(0));

/// A cache line per thread for the parallel floor.
#[repr(align(128))]
struct Line(AtomicU64);

static LINES: [Line; 8] = [const { Line(AtomicU64::new(0)) }; 8];

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
            .capacity(capacity())
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

/// What threads that share nothing cost: a clock read and a store to a
/// cache line of the thread's own (`slot`).
#[inline(never)]
fn parallel_floor_loop(clock: Clock, slot: usize, n: usize) -> u64 {
    let line = black_box(&LINES[slot % LINES.len()].0);
    for _ in 0..n {
        line.store(clock.now(), Ordering::Relaxed);
    }
    black_box(line.load(Ordering::Relaxed));
    0
}

#[inline(never)]
fn ring_clock_loop(clock: Clock, n: usize) -> u64 {
    for _ in 0..n {
        black_box(clock.now());
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
    // What an append checksums: the length and seq (12 bytes), the 40-byte
    // payload, then KIND, FLAGS and TS (12 bytes).
    let buf = [0x5Au8; 40];
    let seed = black_box(0x1234_5678u32);
    let mut acc = 0u32;
    for i in 0..n {
        acc ^= black_box(blackbox_recorder::checksum::record_crc(
            seed,
            64,
            i as u64,
            black_box(&buf),
            2,
            i as u64,
        ));
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
    F: Fn(usize, usize) -> u64 + Sync,
{
    let mut per_op = Vec::with_capacity(runs);
    let mut mops = Vec::with_capacity(runs);
    let mut failed = 0;
    for run in 0..=runs {
        let barrier = Barrier::new(threads);
        let results: Vec<(Instant, Instant, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, body) = (&barrier, &body);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let f = body(t, n);
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

/// The append against the floor in alternating rounds (floor, append,
/// floor, append, ...), one thread, after a warm-up round: each round's
/// ratio compares two loops a few milliseconds apart, so a drift of the
/// machine's speed between the floor's block of runs and the append's
/// (another process, the host) does not enter it. Returns the ratios.
fn paired_ratios(rec: &Recorder, n: usize, runs: usize) -> Vec<f64> {
    let time = |f: &dyn Fn() -> u64| {
        let t = Instant::now();
        black_box(f());
        t.elapsed().as_nanos() as f64
    };
    (0..=runs)
        .map(|_| {
            let floor = time(&|| floor_loop(n));
            let append = time(&|| append_loop(rec, n));
            append / floor
        })
        .skip(1)
        .collect()
}

/// Throughput in M ops/s of `threads` threads that run `body(t, BATCH)`
/// over and over for `duration`: the threads stop together, so the
/// figure has no tail of one thread finishing its share alone (with more
/// threads than cores, a fixed share per thread can leave a core idle at
/// the end of a run while the last thread catches up). A run's time ends
/// when the last thread's last batch does.
fn timed_throughput<F>(threads: usize, duration: Duration, body: F) -> f64
where
    F: Fn(usize, usize) -> u64 + Sync,
{
    const BATCH: usize = 4096;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let (start, results): (Instant, Vec<(usize, Instant)>) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, body, stop) = (&barrier, &body, &stop);
                s.spawn(move || {
                    barrier.wait();
                    let mut ops = 0;
                    // Relaxed: the flag only ends the loop; nothing is
                    // published with it.
                    while !stop.load(Ordering::Relaxed) {
                        black_box(body(t, BATCH));
                        ops += BATCH;
                    }
                    (ops, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let results = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect();
        (start, results)
    });
    let ops: usize = results.iter().map(|r| r.0).sum();
    let end = results.iter().map(|r| r.1).max().expect("a thread");
    ops as f64 / (end - start).as_nanos() as f64 * 1e3
}

/// The thread scaling in alternating rounds: each round runs the parallel
/// floor on 1 and 2 threads and the append on 1, 2, 4 and 8 threads, one
/// after the other (every other round in the reverse order), each for a
/// fixed time ([`timed_throughput`]), and
/// gives (append's 2-thread scaling / the floor's, 4-thread / 2-thread
/// throughput, 8-thread / 2-thread throughput), each from loops less than
/// two seconds apart. The blocks above run seconds apart, and a small
/// VM's speed drifts between them.
fn scaling_rounds(rec: &Recorder, clock: Clock, runs: usize) -> Vec<[f64; 3]> {
    let duration = Duration::from_millis(200);
    let floor =
        |threads| timed_throughput(threads, duration, |t, n| parallel_floor_loop(clock, t, n));
    let append = |threads| timed_throughput(threads, duration, |_, n| append_loop(rec, n));
    (0..=runs)
        .map(|round| {
            // Every other round in the reverse order, so that no case always
            // runs right after another (a drift within a round, the ring's
            // state or the machine's, would otherwise favour one of them).
            if round % 2 == 0 {
                let s = floor(2) / floor(1);
                let (a1, a2, a4, a8) = (append(1), append(2), append(4), append(8));
                [a2 / a1 / s, a4 / a2, a8 / a2]
            } else {
                let (a8, a4, a2, a1) = (append(8), append(4), append(2), append(1));
                let (f2, f1) = (floor(2), floor(1));
                [a2 / a1 / (f2 / f1), a4 / a2, a8 / a2]
            }
        })
        .skip(1)
        .collect()
}

/// The record sizes the bench claims, from the layout; and a first append
/// of each kind.
fn check_sizes(rec: &Recorder) -> (usize, usize) {
    let raw_len = RECORD_HEADER_LEN + RAW_PAYLOAD.len();
    assert_eq!(raw_len, 64, "raw record length");
    rec.append(&RAW_PAYLOAD).expect("append");
    // header + fixed event part + target + message + field (code, name
    // length, name, u64 value)
    let log_len = RECORD_HEADER_LEN + EVENT_FIXED_LEN + TARGET.len() + MESSAGE.len() + 2 + 1 + 8;
    rec.log(Level::Info, TARGET, MESSAGE, &[Field::new("n", 0u64)])
        .expect("log");
    (raw_len, log_len)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let n = env_usize("BENCH_OPS", 4_000_000);
    let runs = env_usize("BENCH_RUNS", 9).max(1);
    let round_count = env_usize("BENCH_ROUNDS", 31).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);

    let (rec, path) = create_ring(&ring_path());
    let (raw_len, log_len) = check_sizes(&rec);
    let began = Instant::now();

    println!(
        "blackbox append bench: ring {} ({} MiB, no heartbeat), {} ops per run and thread, \
         median of {} runs, {} alternating rounds, {} CPUs",
        path.display(),
        capacity() >> 20,
        n,
        runs,
        round_count,
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

    let clock = rec.clock();
    println!("ring clock: {clock:?}; chunk size {} B", rec.chunk_size());
    println!();

    let mut rows: Vec<(&str, Figure)> = Vec::new();
    let mut get = |name: &'static str, label: &'static str, f: &dyn Fn() -> Figure| {
        if want(name) {
            rows.push((label, f()));
        }
    };
    get("clock", "clock only (realtime_ns)", &|| {
        measure(1, n, runs, |_, n| clock_loop(n))
    });
    get("ring_clock", "clock only (the ring's)", &|| {
        measure(1, n, runs, |_, n| ring_clock_loop(clock, n))
    });
    get("fetch_add", "fetch_add only", &|| {
        measure(1, n, runs, |_, n| fetch_add_loop(n))
    });
    get("crc", "crc32c of 12 + 40 + 12 B", &|| {
        measure(1, n, runs, |_, n| crc_loop(n))
    });
    get("floor", "floor (fetch_add + clock)", &|| {
        measure(1, n, runs, |_, n| floor_loop(n))
    });
    get("append", "append raw 64 B", &|| {
        measure(1, n, runs, |_, n| append_loop(&rec, n))
    });
    let paired = want("paired").then(|| paired_ratios(&rec, n, round_count));
    let rounds = want("scaling").then(|| scaling_rounds(&rec, clock, round_count));
    get("log", "log event 54 B (stride 56)", &|| {
        measure(1, n, runs, |_, n| log_loop(&rec, n))
    });
    get("snapshot", "snapshot (event + trigger)", &|| {
        measure(1, n, runs, |_, n| snapshot_loop(&rec, n))
    });
    get("pfloor1", "parallel floor (clock + store)", &|| {
        measure(1, n, runs, |t, n| parallel_floor_loop(clock, t, n))
    });
    get("pfloor2", "parallel floor (clock + store)", &|| {
        measure(2, n, runs, |t, n| parallel_floor_loop(clock, t, n))
    });
    get("append2", "append raw 64 B", &|| {
        measure(2, n, runs, |_, n| append_loop(&rec, n))
    });
    get("append4", "append raw 64 B", &|| {
        measure(4, n / 2, runs, |_, n| append_loop(&rec, n))
    });
    get("append8", "append raw 64 B", &|| {
        measure(8, n / 4, runs, |_, n| append_loop(&rec, n))
    });

    // The same appends to a ring whose crash handlers are installed (the
    // postmortem dump's module table written, handlers pointed at it):
    // the hot path must not change. Last, as installing is for the whole
    // process. Also the module table's cost, per write.
    let mut module_table_us = None;
    if want("append_handlers") {
        // The same ring, right before and right after installing, so both
        // figures share the ring's state and the machine's moment.
        rows.push((
            "append raw 64 B, before install",
            measure(1, n, runs, |_, n| append_loop(&rec, n)),
        ));
        let began = Instant::now();
        rec.install_crash_handlers();
        let install = began.elapsed();
        rows.push((
            "append raw 64 B, crash handlers",
            measure(1, n, runs, |_, n| append_loop(&rec, n)),
        ));
        let mut each: Vec<f64> = (0..51)
            .map(|_| {
                let t = Instant::now();
                rec.refresh_modules();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        each.sort_by(f64::total_cmp);
        module_table_us = Some((install.as_secs_f64() * 1e6, each[each.len() / 2]));
    }

    println!(
        "{:<32} {:>7} {:>12} {:>17} {:>13} {:>7}",
        "case", "threads", "ns/op/thread", "(min - max)", "M ops/s total", "dropped"
    );
    println!("{}", "-".repeat(93));
    for (label, f) in &rows {
        println!(
            "{:<32} {:>7} {:>12.2} {:>17} {:>13.2} {:>7}",
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
    let append = |t| find("append", t);
    let log1 = find("log", 1);
    let pfloor1 = find("parallel floor", 1);
    let pfloor2 = find("parallel floor", 2);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "{:<50} {:>7} {:>10}",
        "ratio (all from this run)", "value", "target"
    );
    println!("{}", "-".repeat(76));
    if let (Some(a), Some(f)) = (append(1), floor1) {
        let r = a.ns_per_op / f.ns_per_op;
        println!(
            "{:<50} {:>7.2} {:>10} {}",
            "append / floor (1 thread, ns/op)",
            r,
            "<= 1.0",
            verdict(r <= 1.0)
        );
    }
    if let Some(mut ratios) = paired.clone() {
        let r = median(&mut ratios);
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "{:<50} {:>7.2} {:>10} {} (rounds {lo:.2} - {hi:.2})",
            "append / floor, alternating rounds (median)",
            r,
            "<= 1.0",
            verdict(r <= 1.0)
        );
    }
    if let (Some(h), Some(a)) = (
        find("append raw 64 B, crash handlers", 1),
        find("append raw 64 B, before install", 1),
    ) {
        let r = h.ns_per_op / a.ns_per_op;
        println!(
            "{:<50} {:>7.2} {:>10}",
            "append with crash handlers / before (1 thread)", r, "~1.0"
        );
    }
    if let Some((install, refresh)) = module_table_us {
        println!(
            "install_crash_handlers (module table included): {install:.0} µs; \
             module table rewrite (refresh_modules), median: {refresh:.0} µs"
        );
    }
    if let (Some(l), Some(f)) = (log1, floor1) {
        let r = l.ns_per_op / f.ns_per_op;
        println!(
            "{:<50} {:>7.2} {:>10}",
            "log / floor (1 thread, ns/op)", r, "-"
        );
    }
    let scaling = |two: Figure, one: Figure| two.mops / one.mops;
    if let (Some(p2), Some(p1)) = (pfloor2, pfloor1) {
        let s = scaling(p2, p1);
        println!(
            "{:<50} {:>7.2} {:>10}",
            "S = parallel floor 2-thread / 1-thread throughput", s, "-"
        );
        if let (Some(a2), Some(a1)) = (append(2), append(1)) {
            let r = scaling(a2, a1);
            println!(
                "{:<50} {:>7.2} {:>10} {}",
                "append 2-thread / 1-thread throughput",
                r,
                format!(">= {:.2}", 0.9 * s),
                verdict(r >= 0.9 * s)
            );
        }
    }
    if let Some(a2) = append(2) {
        for t in [4, 8] {
            if let Some(at) = append(t) {
                let r = at.mops / a2.mops;
                println!(
                    "{:<50} {:>7.2} {:>10} {}",
                    format!("append {t}-thread / 2-thread throughput"),
                    r,
                    ">= 1.0",
                    verdict(r >= 1.0)
                );
            }
        }
    }
    if let Some(rounds) = rounds {
        let targets = [
            ("append 2-thread scaling / S, alternating rounds", 0.9),
            ("append 4-thread / 2-thread, alternating rounds", 1.0),
            ("append 8-thread / 2-thread, alternating rounds", 1.0),
        ];
        for (i, (label, target)) in targets.into_iter().enumerate() {
            let mut values: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
            let m = median(&mut values);
            let (lo, hi) = (values[0], values[values.len() - 1]);
            println!(
                "{:<50} {:>7.2} {:>10} {} (rounds {lo:.2} - {hi:.2})",
                label,
                m,
                format!(">= {target:.1}"),
                verdict(m >= target)
            );
        }
    }
    println!();
    println!("measured in {:.1} s", began.elapsed().as_secs_f64());

    drop(rec);
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("cannot remove {}: {e}", path.display());
    }
}
