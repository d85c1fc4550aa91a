//! Recovery speed, with plain `std` timing (no criterion).
//!
//! `cargo bench -p blackbox-reader --bench recover`
//!
//! Creates a 64 MiB ring on `/dev/shm` (or the temp dir when that is
//! missing), fills it past full with 56-byte `rec.log` events so its chunks
//! are reused, closes it, then times `Ring::open(path)` + `snapshot()` (copy,
//! walk every chunk, validate every checksum, index and order every record)
//! several times and reports the median, the rate (capacity / time) and the
//! records recovered. The same is timed for a second ring, filled with the
//! same events by 4 threads at once (4 writers, whose records the snapshot
//! merges by time, as a service's ring needs). Decoding every event
//! (`blackbox_reader::decode_event`) is timed separately. For reading the figures,
//! the bench also times the parts a snapshot is made of: the `pread` copy of
//! the data region and CRC-32C over it.
//!
//! Environment knobs: `BENCH_RUNS` (runs per case, default 9), `BENCH_LAPS`
//! (how many times the ring is filled, default 1.5), `BENCH_ONLY=snapshot`
//! (time only open + snapshot, for profiling), `BENCH_ONLY=crafted` (only
//! [`crafted_ring_case`]: crafted 16 MiB rings against a valid one).

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blackbox_reader::{decode_event, FieldValue, Ring};
use blackbox_recorder::layout::{
    data_offset, default_chunk_size, stride, CHUNK_HEADER_LEN, EVENT_FIXED_LEN, RECORD_HEADER_LEN,
};
use blackbox_recorder::{Field, Level, Recorder};

const CAPACITY: u64 = 64 << 20;
const TARGET: &str = "bench";
const MESSAGE: &str = "msg";
/// `blackbox_reader::Record` in 8-byte words, to time building an index like it.
const RECORD_WORDS: usize = std::mem::size_of::<blackbox_reader::Record>() / 8;

/// Removes the ring file when the bench ends, also on a panic.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            eprintln!("cannot remove {}: {e}", self.0.display());
        }
    }
}

fn ring_path(suffix: &str) -> PathBuf {
    let name = format!("blackbox-bench-recover-{}{suffix}.ring", std::process::id());
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

/// Creates a ring at `path` and fills it with `written` events, spread
/// over `threads` threads logging at once (each its own writer), then
/// closes it. Returns where the ring is and how long the filling took.
fn fill_ring(path: &Path, threads: u64, written: u64) -> (PathBuf, Duration) {
    let (rec, path) = create_ring(path);
    let start = Instant::now();
    let failed: u64 = std::thread::scope(|s| {
        let rec = &rec;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..written)
                        .step_by(threads as usize)
                        .filter(|&n| {
                            rec.log(Level::Info, TARGET, MESSAGE, &[Field::new("n", n)])
                                .is_err()
                        })
                        .count() as u64
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("filling thread"))
            .sum()
    });
    let took = start.elapsed();
    assert_eq!(failed, 0, "appends failed while filling");
    rec.close();
    (path, took)
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
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "crafted") {
        crafted_ring_case(runs);
        return;
    }
    let laps: f64 = std::env::var("BENCH_LAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.5f64)
        .max(1.01);

    // The event: header + fixed part + target + message + one u64 field
    // (code, name length, name, value).
    let record_len = RECORD_HEADER_LEN + EVENT_FIXED_LEN + TARGET.len() + MESSAGE.len() + 2 + 1 + 8;
    let record_stride = stride(record_len);
    assert_eq!(record_stride, 56, "the bench wants 56-byte records");
    // What the ring holds: whole records per chunk, in every chunk.
    let chunk = default_chunk_size(CAPACITY) as usize;
    let chunks = CAPACITY / chunk as u64;
    let per_chunk = ((chunk - CHUNK_HEADER_LEN) / record_stride) as u64;
    let per_lap = chunks * per_chunk;
    let written = (per_lap as f64 * laps) as u64;

    // Fill the ring past full, then close it cleanly.
    let (path, fill) = fill_ring(&ring_path(""), 1, written);
    let _cleanup = Cleanup(path.clone());

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
    // The window: every chunk but the one being reused holds whole chunks
    // of records; the owned one holds some.
    assert!(
        recovered > per_lap - per_chunk && recovered <= per_lap,
        "a full window of records: {recovered} of {per_lap}"
    );
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

    // The same events from four threads at once: four writers' records,
    // merged by time, as in a service.
    let (path4, _) = fill_ring(&ring_path("-4w"), 4, written);
    let _cleanup4 = Cleanup(path4.clone());
    let snap4 = Ring::open(&path4)
        .and_then(|r| r.snapshot())
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let recovered4 = snap4.records.len() as u64;
    assert_eq!((snap4.corrupt(), snap4.torn()), (0, 0), "a clean ring");
    assert_eq!(snap4.writers.len(), 4, "four writers");
    assert!(
        recovered4 > per_lap - 4 * per_chunk && recovered4 <= per_lap,
        "a full window of records: {recovered4} of {per_lap}"
    );
    drop(snap4);
    let (snap4_ms, snap4_min, snap4_max) = time_ms(runs, || {
        let t = Instant::now();
        let snap = Ring::open(&path4)
            .and_then(|r| r.snapshot())
            .expect("snapshot");
        let d = t.elapsed();
        assert_eq!(black_box(&snap).records.len() as u64, recovered4);
        d
    });

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "snapshot") {
        for (label, ms, min, max, n) in [
            ("", snap_ms, snap_min, snap_max, recovered),
            (", 4 writers", snap4_ms, snap4_min, snap4_max, recovered4),
        ] {
            println!(
                "Ring::open + snapshot{label}: {ms:.2} ms ({min:.1} - {max:.1}), {:.2} GB/s, \
                 {n} records",
                CAPACITY as f64 / (ms * 1e-3) / 1e9
            );
        }
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
    let record_size = std::mem::size_of::<blackbox_reader::Record>();
    drop(snap);

    // The parts: copying the data region, and checksumming it.
    let file = File::open(&path).expect("open ring file");
    let cap = CAPACITY as usize;
    let (pread_new_ms, ..) = time_ms(runs, || {
        let t = Instant::now();
        let mut buf = vec![0u8; cap];
        file.read_exact_at(&mut buf, data_offset(chunks as u32))
            .expect("pread");
        let d = t.elapsed();
        black_box(&buf);
        d
    });
    let mut reused = vec![0u8; cap];
    let (pread_reused_ms, ..) = time_ms(runs, || {
        let t = Instant::now();
        file.read_exact_at(&mut reused, data_offset(chunks as u32))
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
        // As the reader does it: length and seq, the payload, then the
        // record header's KIND, FLAGS and TS.
        let t = Instant::now();
        let mut acc = 0u32;
        for (i, rec) in reused.chunks_exact(record_stride).enumerate() {
            acc ^= blackbox_recorder::checksum::record_crc(
                0x1234_5678,
                record_len as u32,
                i as u64,
                &rec[RECORD_HEADER_LEN..],
                2,
                i as u64,
            );
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
        "Ring::open + snapshot, 4 writers",
        snap4_ms,
        Some((snap4_min, snap4_max)),
    );
    row(
        "decode_event on every record",
        dec_ms,
        Some((dec_min, dec_max)),
    );
    println!("parts, for comparison:");
    row("  pread 64 MiB into a new Vec", pread_new_ms, None);
    row("  pread 64 MiB into a reused Vec", pread_reused_ms, None);
    row("  crc32c over 64 MiB in one call", crc_bulk_ms, None);
    row("  crc32c per record (12 + 32 + 12 B)", crc_rec_ms, None);
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
    // Machines differ most in how fast they hand out fresh memory: the
    // ratio to a bare pread of the same bytes into a new buffer, in this
    // run, is the figure that travels.
    let ratio = snap_ms / pread_new_ms;
    println!(
        "recovery rate: {rate:.2} GB/s; {ratio:.2}x a bare pread of the data region into new \
         memory in this run (target <= 1.5x: {})",
        if ratio <= 1.5 { "ok" } else { "MISSED" }
    );
    println!();
    crafted_ring_case(runs);
}

/// The crafted ring of the issue ("a crafted 16 MiB ring whose every slot
/// looks published is rejected within a small multiple of the time it
/// takes to read a valid 16 MiB ring"): times `Ring::open` + `snapshot()`
/// of a valid 16 MiB ring written by the recorder (the short events of
/// this bench, filled past full) and of rings crafted from the spec alone,
/// each the median of
/// `runs`, and prints each crafted ring's time as a multiple of the valid
/// ring's.
///
/// The crafted rings: every chunk claimed (sealed, `GEN` its index, one
/// writer per chunk); then either every 8-byte slot after each chunk
/// header a COMMIT word with its chunk's tag and length 24, so every place
/// a walk can land looks published and no CRC matches (in the valid ring's
/// 64 KiB chunks, and in 1 KiB chunks), or every 24-byte slot a record
/// with a valid CRC, the most records 16 MiB can hold, all to index and
/// merge by time (64 KiB chunks: 256 writers; 1 KiB chunks: 16384).
fn crafted_ring_case(runs: usize) {
    const SIZE: u64 = 16 << 20;
    const NONCE: u64 = 0x5eed_cafe_f00d_0001;
    use blackbox_recorder::layout::*;

    let put_u32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_u64 = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // A ring of SIZE bytes in `chunk_size` chunks, every chunk claimed;
    // every slot a COMMIT word of `len` 24 (`sign` false) or every 24
    // bytes a valid record (`sign` true).
    let crafted = |chunk_size: u32, sign: bool| -> Vec<u8> {
        let count = (SIZE / u64::from(chunk_size)) as u32;
        let data = data_offset(count) as usize;
        let mut b = vec![0u8; data + SIZE as usize];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, H_VERSION, VERSION);
        put_u32(&mut b, H_ENDIAN, ENDIAN_CHECK);
        put_u32(&mut b, H_HEADER_LEN, HEADER_LEN as u32);
        put_u32(&mut b, H_RECORD_HEADER_LEN, RECORD_HEADER_LEN as u32);
        put_u64(&mut b, H_DATA_OFFSET, data as u64);
        put_u64(&mut b, H_CAPACITY, SIZE);
        put_u64(&mut b, H_NONCE, NONCE);
        put_u32(&mut b, H_MAX_RECORD_LEN, max_record_len(chunk_size) as u32);
        put_u32(&mut b, H_CHUNK_SIZE, chunk_size);
        put_u32(&mut b, H_CHUNK_COUNT, count);
        put_u32(&mut b, H_CHUNK_HEADER_LEN, CHUNK_HEADER_LEN as u32);
        put_u64(&mut b, H_CHUNK_TABLE_OFFSET, HEADER_LEN as u64);
        put_u32(&mut b, H_CLOCK, CLOCK_REALTIME_NS);
        put_u32(&mut b, H_STATE, STATE_EXITED);
        let size = chunk_size as usize;
        let per_chunk = (size - CHUNK_HEADER_LEN) / RECORD_HEADER_LEN;
        for i in 0..count as usize {
            put_u64(&mut b, HEADER_LEN + 8 * i, table_word(CHUNK_SEALED, 1));
            let base = data + i * size;
            put_u64(&mut b, base + C_GEN, i as u64);
            put_u32(&mut b, base + C_WRITER, i as u32);
            let word = commit_word(i as u64, RECORD_HEADER_LEN as u16);
            if !sign {
                for slot in (base + CHUNK_HEADER_LEN..base + size).step_by(8) {
                    put_u64(&mut b, slot, word);
                }
                continue;
            }
            let head = b[base..base + CHUNK_HEADER_LEN].to_vec();
            // CRC-32C over nonce ‖ chunk header ‖ len ‖ seq ‖ bytes
            // [24, stride) (none here) ‖ bytes [12, 24).
            let mut seed = crc32c::crc32c(&NONCE.to_le_bytes());
            seed = crc32c::crc32c_append(seed, &head);
            seed = crc32c::crc32c_append(seed, &(RECORD_HEADER_LEN as u32).to_le_bytes());
            for k in 0..per_chunk {
                let at = base + CHUNK_HEADER_LEN + k * RECORD_HEADER_LEN;
                put_u64(&mut b, at + R_COMMIT, word);
                b[at + R_KIND..at + R_KIND + 2].copy_from_slice(&KIND_RAW.to_le_bytes());
                put_u64(&mut b, at + R_TS, 1_700_000_000_000_000_000 + k as u64);
                let crc = crc32c::crc32c_append(seed, &(k as u64).to_le_bytes());
                let crc = crc32c::crc32c_append(crc, &b[at + R_CRC_START..at + RECORD_HEADER_LEN]);
                put_u32(&mut b, at + R_CRC, crc);
            }
        }
        b
    };

    let dir = ring_path("").parent().expect("a directory").to_path_buf();
    let file = |name: &str| {
        dir.join(format!(
            "blackbox-bench-crafted-{}-{name}.ring",
            std::process::id()
        ))
    };
    // The valid ring.
    let valid = file("valid");
    let _cleanup_valid = Cleanup(valid.clone());
    let rec = Recorder::builder(&valid)
        .capacity(SIZE)
        .heartbeat(None)
        .program("recover-bench")
        .create()
        .unwrap_or_else(|e| panic!("create {}: {e}", valid.display()));
    for n in 0..SIZE / 64 * 3 / 2 {
        rec.log(Level::Info, TARGET, MESSAGE, &[Field::new("n", n)])
            .expect("log");
    }
    rec.close();
    let mut cases: Vec<(&str, PathBuf, Cleanup)> = Vec::new();
    for (name, chunk_size, sign) in [
        ("every slot published, 64 KiB chunks", MAX_CHUNK_SIZE, false),
        ("every slot published, 1 KiB chunks", MIN_CHUNK_SIZE, false),
        (
            "all-valid 24-byte records, 64 KiB chunks",
            MAX_CHUNK_SIZE,
            true,
        ),
        (
            "all-valid 24-byte records, 1 KiB chunks",
            MIN_CHUNK_SIZE,
            true,
        ),
    ] {
        let path = file(&format!(
            "{}-{chunk_size}",
            if sign { "signed" } else { "published" }
        ));
        std::fs::write(&path, crafted(chunk_size, sign)).expect("write crafted ring");
        cases.push((name, path.clone(), Cleanup(path)));
    }

    let measure = |path: &Path| {
        let snap = Ring::open(path)
            .and_then(|r| r.snapshot())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let counts = (snap.records.len() as u64, snap.totals.corrupt);
        drop(snap);
        let (ms, min, max) = time_ms(runs, || {
            let t = Instant::now();
            let snap = Ring::open(path)
                .and_then(|r| r.snapshot())
                .expect("snapshot");
            let d = t.elapsed();
            black_box(&snap);
            d
        });
        (ms, min, max, counts)
    };
    println!(
        "crafted 16 MiB rings against a valid one: Ring::open + snapshot, median of {runs} runs"
    );
    println!(
        "{:<42} {:>9} {:>17} {:>9} {:>9} {:>8}",
        "ring", "ms", "(min - max)", "records", "corrupt", "x valid"
    );
    println!("{}", "-".repeat(99));
    let (valid_ms, a, b, (records, corrupt)) = measure(&valid);
    let row = |name: &str, ms: f64, min: f64, max: f64, records: u64, corrupt: u64| {
        println!(
            "{:<42} {:>9.2} {:>17} {:>9} {:>9} {:>8.2}",
            name,
            ms,
            format!("({min:.1} - {max:.1})"),
            records,
            corrupt,
            ms / valid_ms
        );
    };
    row(
        "valid, written by the recorder",
        valid_ms,
        a,
        b,
        records,
        corrupt,
    );
    for (name, path, _) in &cases {
        let (ms, min, max, (records, corrupt)) = measure(path);
        row(name, ms, min, max, records, corrupt);
    }
}
