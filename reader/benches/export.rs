//! The timeline export of a full ring: time and peak memory, plain `std`
//! timing (no criterion).
//!
//! `cargo bench -p blackbox-reader --bench export`
//!
//! For rings of 16, 32 and 64 MiB (`BENCH_SIZES_MIB`, e.g. `16,64`), fills
//! the ring past full through the `tracing` Layer from four threads, each
//! serving "requests": a span `request{id}` entered, a span `db{table}`
//! entered inside it, an event with two fields, both exited and closed.
//! Then, for each ring, a child process (this bench, re-executed) opens
//! it, takes the snapshot and writes the export (Trace Event Format JSON,
//! `blackbox_reader::trace_event`) to a sink that counts bytes, `BENCH_RUNS`
//! times (default 3), and reports the median time and its peak resident
//! memory (`VmHWM`) against the ring's size. Linear: time and memory per
//! record stay the same as the ring grows.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use blackbox_reader::trace_event::write_trace_event;
use blackbox_reader::Ring;
use blackbox_recorder::{BlackboxLayer, Recorder};
use tracing_subscriber::prelude::*;

const CHILD: &str = "BENCH_EXPORT_CHILD";

/// A `Write` that counts what it is given.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fill(path: &Path, capacity: u64) {
    let rec = Arc::new(
        Recorder::builder(path)
            .capacity(capacity)
            .heartbeat(None)
            .program("export-bench")
            .create()
            .expect("create the ring"),
    );
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(BlackboxLayer::new(Arc::clone(&rec))),
    );
    // About 330 bytes of records per request: fill the ring 1.5 times.
    let per_thread = (capacity as usize * 3 / 2) / 330 / 4;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let dispatch = dispatch.clone();
            s.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..per_thread as u64 {
                        let request = tracing::info_span!("request", id = i, thread = t);
                        let _request = request.enter();
                        let db = tracing::debug_span!("db", table = "users");
                        let _db = db.enter();
                        tracing::info!(rows = i % 100, user = "alice", "query done");
                    }
                });
            });
        }
    });
    drop(dispatch);
    Arc::try_unwrap(rec).ok().expect("last handle").close();
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// In the child: export the ring `runs` times; print "records bytes
/// median_ns peak_kib".
fn child(path: &Path, runs: usize) -> ! {
    let mut times = Vec::new();
    let (mut records, mut bytes) = (0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let ring = Ring::open(path).expect("open");
        let state = ring.state().expect("state");
        let snap = ring.snapshot().expect("snapshot");
        let mut out = std::io::BufWriter::with_capacity(1 << 16, Count(0));
        let stats = write_trace_event(&snap, state, &mut out).expect("export");
        out.flush().unwrap();
        times.push(start.elapsed().as_nanos() as u64);
        records = stats.records;
        bytes = out.get_ref().0;
        black_box(&snap);
    }
    times.sort_unstable();
    println!(
        "{records} {bytes} {} {}",
        times[times.len() / 2],
        peak_rss_kib()
    );
    std::process::exit(0)
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    if let Some(path) = std::env::var_os(CHILD) {
        child(Path::new(&path), runs);
    }
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "16,32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    println!(
        "export bench: rings in {}, median of {runs} runs, each in a fresh process",
        dir.display()
    );
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>12} {:>12} {:>12}",
        "ring MiB", "records", "export MiB", "ms", "ns/record", "peak MiB", "peak/ring"
    );
    for mib in sizes {
        let path = dir.join(format!("export-bench-{}-{mib}.ring", std::process::id()));
        fill(&path, mib << 20);
        let out = Command::new(std::env::current_exe().expect("the bench"))
            .env(CHILD, &path)
            .env("BENCH_RUNS", runs.to_string())
            .output()
            .expect("run the child");
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [records, bytes, ns, peak_kib] = v[..] else {
            panic!(
                "child said {text:?}, {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        println!(
            "{:>8} {:>10} {:>12.1} {:>10.1} {:>12.0} {:>12.1} {:>12.2}",
            mib,
            records,
            bytes as f64 / (1 << 20) as f64,
            ns as f64 / 1e6,
            ns as f64 / records as f64,
            peak_kib as f64 / 1024.0,
            peak_kib as f64 / 1024.0 / mib as f64
        );
    }
}
