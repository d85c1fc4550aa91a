//! Wild writes: a buggy application scribbles random bytes over the ring's
//! data region while the writers run (here: this test, from its own
//! process, `pwrite`s into the ring file). The reader must report the
//! damage (corrupt records or chunks, and the records of a writer's run it
//! could not show) and recover the rest; it must never show a record that
//! is not one the writer wrote.
//!
//! Replay: `BLACKBOX_WILD_SEED=<seed>`.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use blackbox_recorder::layout::H_DATA_OFFSET;
use common::{
    forward_lines, gap_sum, info_json, read_json, seed_from_env, wait_or_fail, Reaper, Rng, TempDir,
};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 256 << 10;
const THREADS: u64 = 2;
const PER_THREAD: u64 = 8000;
/// The chunk size of a 256 KiB ring (the capacity / 128).
const CHUNK: u64 = 2048;

/// Checks a window of demo records with wild damage: every record is a
/// well-formed demo record (nothing false), each thread's counters
/// increase, and a thread's run breaks only where the reader reports that
/// the thread's writer is missing at least as many records there. Returns
/// the records reported missing.
fn check_window(records: &[Value]) -> u64 {
    common::assert_seq_increasing(records);
    let counters = common::counters_of(records);
    let mut last: Vec<Option<(usize, u64)>> = vec![None; THREADS as usize];
    for (i, &(t, n)) in counters.iter().enumerate() {
        assert!(
            t < THREADS && n < PER_THREAD,
            "not a record the demo wrote: {}",
            records[i]
        );
        if let Some((j, m)) = last[t as usize] {
            assert!(
                n > m,
                "thread {t}: record {n} after {m}: repeated or out of order"
            );
            if n > m + 1 {
                let missing = records[i]["gap_before"]["missing"].as_u64().unwrap_or(0);
                assert!(
                    missing >= n - m - 1,
                    "thread {t}: records {}..={} missing between window index {j} and {i}, \
                     but the reader reports {missing} missing: {}",
                    m + 1,
                    n - 1,
                    records[i]
                );
            }
        }
        last[t as usize] = Some((i, n));
    }
    gap_sum(records).0
}

fn data_offset_of(file: &File) -> u64 {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, H_DATA_OFFSET as u64)
        .expect("read DATA_OFFSET");
    u64::from_le_bytes(b)
}

fn spawn_demo(ring: &Path) -> Reaper {
    let mut child = common::blackbox()
        .arg("demo")
        .arg("--ring")
        .arg(ring)
        .args(["--capacity", "256KiB", "--threads", &THREADS.to_string()])
        .args(["--records", &PER_THREAD.to_string(), "--rate", "2000"])
        .args(["--report-every", "1000000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    forward_lines(child.stdout.take().unwrap())
        .recv_timeout(PATIENCE)
        .expect("the demo never reported its first record");
    Reaper(child)
}

/// Two writer threads wrap a 256 KiB ring (~4 s) while this process
/// scribbles 1..=32 random bytes at a random data offset every 2 ms and
/// reads the live ring every ~300 ms. Every live and final window shows
/// only demo records; the final one reports the damage (the writer closed
/// cleanly, so nothing else can explain a lost record) and loses no more
/// than the chunks the scribbles hit can hold (a damaged COMMIT word or
/// chunk header costs the rest of its chunk, `shm-layout.md` 12).
#[test]
fn scribbles_over_a_live_ring_are_reported_and_the_rest_recovered() {
    let seed = seed_from_env("BLACKBOX_WILD_SEED");
    eprintln!("wild: seed {seed} (replay: BLACKBOX_WILD_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("wild");
    let ring = dir.path("wild.ring");
    let mut writer = spawn_demo(&ring);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ring)
        .expect("open the ring read-write");

    let data = data_offset_of(&file);
    let mut scribbled_chunks = std::collections::BTreeSet::new();
    let mut scribbles = 0;
    let mut live_reads = 0;
    let mut next_read = Instant::now();
    while writer.0.try_wait().expect("try_wait").is_none() {
        let len = rng.range(1, 32);
        let offset = rng.range(0, CAPACITY - len);
        file.write_all_at(&rng.bytes(len as usize), data + offset)
            .expect("scribble");
        scribbled_chunks.insert(offset / CHUNK);
        scribbled_chunks.insert((offset + len - 1) / CHUNK);
        scribbles += 1;
        if Instant::now() >= next_read {
            check_window(&read_json(&ring, &[]));
            live_reads += 1;
            next_read = Instant::now() + Duration::from_millis(300);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(status.success(), "demo: {status:?}");
    // The writer heals every scribble that lands where it writes next; on a
    // loaded machine all of them may be healed. One last scribble after it
    // closed, over a chunk's first record (the ring wrapped: every chunk
    // was claimed in the last lap and begins with a record), bytes inverted
    // so that they change, cannot be.
    let chunk = rng.range(0, CAPACITY / CHUNK);
    let offset = chunk * CHUNK + 64;
    let mut last = [0u8; 8];
    file.read_exact_at(&mut last, data + offset).expect("read");
    let inverted: Vec<u8> = last.iter().map(|b| !b).collect();
    file.write_all_at(&inverted, data + offset)
        .expect("scribble");
    scribbled_chunks.insert(chunk);
    scribbles += 1;

    let records = read_json(&ring, &[]);
    let info = info_json(&ring);
    assert_eq!(info["state"], "exited", "{info}");
    let lost = check_window(&records);
    let damaged = info["corrupt"].as_u64().unwrap() + info["missing"].as_u64().unwrap();
    // A demo record is 96 bytes: a chunk holds (2048 - 64) / 96 of them.
    let per_chunk = (CHUNK - 64) / 96;
    let bound = scribbled_chunks.len() as u64 * per_chunk;
    eprintln!(
        "wild: {scribbles} scribbles over {} chunks, {live_reads} live reads; final window: \
         {} records, {} corrupt, {lost} missing (at most {bound} allowed)",
        scribbled_chunks.len(),
        records.len(),
        info["corrupt"],
    );
    assert!(
        damaged > 0,
        "{scribbles} scribbles, and the reader reports no damage: {info}"
    );
    assert!(
        lost <= bound,
        "{lost} records missing, more than the {bound} the scribbled chunks hold"
    );
    let v = common::run(&["verify", ring.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "verify must call a scribbled ring inconsistent: {}{}",
        common::stdout(&v),
        common::stderr(&v)
    );
}
