//! The panic hook's cost per panic, with plain `std` timing.
//!
//! `cargo bench -p blackbox-recorder --bench panic_hook`
//!
//! Measures, as the median of several runs, the microseconds per caught
//! panic of:
//!
//! - a panic caught by `catch_unwind` with a silent hook: the reference,
//!   what any panic costs;
//! - the same with blackbox's hook installed (`install_crash_handlers`,
//!   chained to the silent hook): it appends the panic event with the raw
//!   return addresses;
//! - what the hook did before it captured raw addresses:
//!   `std::backtrace::Backtrace::force_capture().to_string()`, which
//!   symbolizes in-process.
//!
//! Knobs: `BENCH_PANICS` (panics per run, default 200), `BENCH_RUNS`
//! (default 7).

use std::time::Instant;

use blackbox_recorder::Recorder;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Microseconds per call of `f`, median of `runs` runs of `n` calls.
fn measure(n: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .collect(),
    )
}

#[inline(never)]
fn caught_panic() {
    let r = std::panic::catch_unwind(|| {
        std::hint::black_box(0);
        panic!("bench panic")
    });
    assert!(r.is_err());
}

fn main() {
    let n = env_usize("BENCH_PANICS", 200);
    let runs = env_usize("BENCH_RUNS", 7).max(1);
    std::panic::set_hook(Box::new(|_| {}));
    let reference = measure(n, runs, caught_panic);

    let dir = std::env::temp_dir().join(format!("blackbox-bench-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = Recorder::builder(dir.join("panic.ring"))
        .capacity(16 << 20)
        .heartbeat(None)
        .create()
        .expect("create ring");
    rec.install_crash_handlers();
    let with_hook = measure(n, runs, caught_panic);
    let old = measure(n.min(20), runs, || {
        std::hint::black_box(std::backtrace::Backtrace::force_capture().to_string());
    });
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);

    let hook = (with_hook - reference).max(0.0);
    println!("blackbox panic hook bench: {n} panics per run, median of {runs} runs");
    println!("{:<58} {:>10}", "case", "µs/panic");
    println!("{}", "-".repeat(70));
    println!(
        "{:<58} {:>10.1}",
        "caught panic, silent hook (reference)", reference
    );
    println!(
        "{:<58} {:>10.1}",
        "caught panic, blackbox hook installed", with_hook
    );
    println!("{:<58} {:>10.1}", "the hook alone (difference)", hook);
    println!(
        "{:<58} {:>10.1}",
        "before: Backtrace::force_capture().to_string()", old
    );
    println!();
    println!(
        "hook / reference panic: {:.2}; before / hook now: {:.0}x (target: hook under 50 µs)",
        hook / reference,
        old / hook.max(0.001)
    );
}
