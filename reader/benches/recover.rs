//! Recovery speed, with plain `std` timing (no criterion).
//!
//! `cargo bench -p blackbox --bench recover`
//!
//! Creates a 64 MiB ring on `/dev/shm` (or the temp dir when that is
//! missing), fills it past full with 64-byte `rec.log` events so it wraps,
//! closes it, then times `Ring::open(path)` + `snapshot()` (copy, validate
//! every checksum, index every record) several times and reports the median,
//! the rate (capacity / time) and the records recovered. Decoding every event
//! (`reader::decode_event`) is timed separately. For reading the figures,
//! the bench also times the parts a snapshot is made of: the `pread` copy of
//! the data region and CRC-32C over it.
//!
//! Environment knobs: `BENCH_RUNS` (runs per case, default 9), `BENCH_LAPS`
//! (how many times the ring is filled, default 1.5), `BENCH_ONLY=snapshot`
//! (time only open + snapshot, for profiling).

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reader::{decode_event, FieldValue, Ring};
use recorder::layout::{stride, EVENT_FIXED_LEN, HEADER_LEN, RECORD_HEADER_LEN, R_CRC_START};
use recorder::{Field, Level, Recorder};

const CAPACITY: u64 = 64 << 20;
const TARGET: &str = "bench";
const MESSAGE: &str = "msg";
/// `reader::Record` in 8-byte words, to time building an index like it.
const RECORD_WORDS: usize = std::mem::size_of::<reader::Record>() / 8;

/// Removes the ring file when the bench ends, also on a panic.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            eprintln!("cannot remove {}: {e}", self.0.display());
        }
    }
}

fn ring_path() -> PathBuf {
    let name = format!("blackbox-bench-recover-{}.ring", std::process::id());
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(name)
    } else {
        std::env::temp_dir().join(name)
    }
}

fn create_ring(path: &Path) -> (Recorder, PathBuf) {
    let build = |p: &Path| {
        Recorder::builder(p)
            .capacity(CAPACITY)
            .heartbeat(None)
            .program("recover-bench")
            .create()
    };
    match build(path) {
        Ok(rec) => (rec, path.to_path_buf()),
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median, min and max milliseconds of `runs` timed calls of `f` (after one
/// warm-up call). `f` returns the time it measured itself, so setup and
/// tear-down (such as freeing a snapshot) stay outside.
fn time_ms(runs: usize, mut f: impl FnMut() -> Duration) -> (f64, f64, f64) {
    f();
    let mut ms: Vec<f64> = (0..runs).map(|_| f().as_secs_f64() * 1e3).collect();
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    (median(&mut ms), min, max)
}

fn main() {
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9usize)
        .max(1);
    let laps: f64 = std::env::var("BENCH_LAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.5f64)
        .max(1.01);

    // The event: header + fixed part + target + message + one u64 field
    // (code, name length, name, value).
    let record_len = RECORD_HEADER_LEN + EVENT_FIXED_LEN + TARGET.len() + MESSAGE.len() + 2 + 1 + 8;
    let record_stride = stride(record_len);
    assert_eq!(record_stride, 64, "the bench wants 64-byte records");
    let per_lap = CAPACITY / record_stride as u64;
    let written = (per_lap as f64 * laps) as u64;

    // Fill the ring past full, then close it cleanly.
    let (rec, path) = create_ring(&ring_path());
    let _cleanup = Cleanup(path.clone());
    let fill_start = Instant::now();
    let mut lapped = 0u64;
    let mut seqs = [0u64; 2];
    for n in 0..written {
        match rec.log(Level::Info, TARGET, MESSAGE, &[Field::new("n", n)]) {
            Ok(seq) if n < 2 => seqs[n as usize] = seq,
            Ok(_) => {}
            Err(_) => lapped += 1,
        }
    }
    let fill = fill_start.elapsed();
    assert_eq!(
        (seqs[1] - seqs[0]) * 8,
        record_stride as u64,
        "record stride"
    );
    assert_eq!(lapped, 0, "appends failed while filling");
    rec.close();

    println!(
        "blackbox recover bench: ring {} ({} MiB), {} records of {} B (stride {}) written \
         = {:.2} laps in {:.0} ms; median of {} runs",
        path.display(),
        CAPACITY >> 20,
        written,
        record_len,
        record_stride,
        written as f64 / per_lap as f64,
        fill.as_secs_f64() * 1e3,
        runs
    );

    // Check once what a snapshot recovers.
    let snap = Ring::open(&path)
        .and_then(|r| r.snapshot())
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let recovered = snap.records.len() as u64;
    assert_eq!(snap.corrupt(), 0, "corrupt records: {:?}", snap.totals);
    assert_eq!(snap.torn(), 0, "torn records: {:?}", snap.totals);
    assert_eq!(recovered, per_lap, "a full window of records");
    let last = snap.records.last().expect("records");
    let last_n = decode_event(snap.payload(last))
        .expect("decode")
        .fields
        .first()
        .map(|f| f.1.clone());
    assert_eq!(last_n, Some(FieldValue::U64(written - 1)), "newest record");
    drop(snap);

    // Open + snapshot: the figure with the target.
    let (snap_ms, snap_min, snap_max) = time_ms(runs, || {
        let t = Instant::now();
        let ring = Ring::open(&path).expect("open");
        let snap = ring.snapshot().expect("snapshot");
        let d = t.elapsed();
        assert_eq!(black_box(&snap).records.len() as u64, recovered);
        d
    });

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "snapshot") {
        println!(
            "Ring::open + snapshot: {snap_ms:.2} ms ({snap_min:.1} - {snap_max:.1}), {:.2} GB/s, \
             {recovered} records",
            CAPACITY as f64 / (snap_ms * 1e-3) / 1e9
        );
        return;
    }

    // Decode every event of one snapshot.
    let snap = Ring::open(&path)
        .and_then(|r| r.snapshot())
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let (dec_ms, dec_min, dec_max) = time_ms(runs, || {
        let t = Instant::now();
        let mut ok = 0u64;
        for r in &snap.records {
            if black_box(decode_event(black_box(snap.payload(r)))).is_ok() {
                ok += 1;
            }
        }
        let d = t.elapsed();
        assert_eq!(ok, recovered);
        d
    });
    let record_size = std::mem::size_of::<reader::Record>();
    drop(snap);

    // The parts: copying the data region, and checksumming it.
    let file = File::open(&path).expect("open ring file");
    let cap = CAPACITY as usize;
    let (pread_new_ms, ..) = time_ms(runs, || {
        let t = Instant::now();
        let mut buf = vec![0u8; cap];
        file.read_exact_at(&mut buf, HEADER_LEN as u64)
            .expect("pread");
        let d = t.elapsed();
        black_box(&buf);
        d
    });
    let mut reused = vec![0u8; cap];
    let (pread_reused_ms, ..) = time_ms(runs, || {
        let t = Instant::now();
        file.read_exact_at(&mut reused, HEADER_LEN as u64)
            .expect("pread");
        black_box(&reused);
        t.elapsed()
    });
    let (crc_bulk_ms, ..) = time_ms(runs, || {
        let t = Instant::now();
        black_box(crc32c::crc32c(black_box(&reused)));
        t.elapsed()
    });
    let (crc_rec_ms, ..) = time_ms(runs, || {
        // As the reader does it: length first, then bytes 12.. of the record.
        let t = Instant::now();
        let mut acc = 0u32;
        for rec in reused.chunks_exact(record_stride) {
            let c = crc32c::crc32c_append(0x1234_5678, &(record_len as u32).to_le_bytes());
            acc ^= crc32c::crc32c_append(c, &rec[R_CRC_START..]);
        }
        black_box(acc);
        t.elapsed()
    });
    let (alloc_ms, ..) = time_ms(runs, || {
        // The record index alone: a Vec grown by push, as the walk builds it.
        let t = Instant::now();
        let mut idx: Vec<[u64; RECORD_WORDS]> = Vec::new();
        for i in 0..recovered {
            let mut entry = [0u64; RECORD_WORDS];
            entry[0] = i;
            entry[RECORD_WORDS - 1] = i;
            idx.push(entry);
        }
        black_box(&idx);
        let d = t.elapsed();
        drop(idx);
        d
    });
    drop(reused);

    let gbps = |ms: f64| CAPACITY as f64 / (ms * 1e-3) / 1e9;
    let per_rec_ns = |ms: f64| ms * 1e6 / recovered as f64;
    println!();
    println!(
        "{:<44} {:>9} {:>17} {:>8} {:>10}",
        "case", "ms", "(min - max)", "GB/s", "ns/record"
    );
    println!("{}", "-".repeat(92));
    let row = |label: &str, ms: f64, range: Option<(f64, f64)>| {
        println!(
            "{:<44} {:>9.2} {:>17} {:>8.2} {:>10.1}",
            label,
            ms,
            range.map_or(String::new(), |(a, b)| format!("({a:.1} - {b:.1})")),
            gbps(ms),
            per_rec_ns(ms)
        );
    };
    row("Ring::open + snapshot", snap_ms, Some((snap_min, snap_max)));
    row(
        "decode_event on every record",
        dec_ms,
        Some((dec_min, dec_max)),
    );
    println!("parts, for comparison:");
    row("  pread 64 MiB into a new Vec", pread_new_ms, None);
    row("  pread 64 MiB into a reused Vec", pread_reused_ms, None);
    row("  crc32c over 64 MiB in one call", crc_bulk_ms, None);
    row("  crc32c per record (4 B + 52 B)", crc_rec_ms, None);
    row(
        &format!("  Vec::push of {recovered} {record_size}-byte entries"),
        alloc_ms,
        None,
    );
    println!();
    println!(
        "records recovered: {recovered} (window of {per_lap}); corrupt 0, torn 0; \
         size_of::<Record>() = {record_size} B"
    );
    let rate = gbps(snap_ms);
    println!(
        "recovery rate: {:.2} GB/s (target >= 2 GB/s: {})",
        rate,
        if rate >= 2.0 { "ok" } else { "MISSED" }
    );
}
