//! Wild writes: a buggy application scribbles random bytes over the ring's
//! data region while the writers run (here: this test, from its own
//! process, `pwrite`s into the ring file). The reader must report the
//! damaged records (corrupt, or torn where a COMMIT word was hit) and
//! recover the rest; it must never show a record that is not one the
//! writer wrote.
//!
//! Replay: `BLACKBOX_WILD_SEED=<seed>`.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    forward_lines, gap_sum, info_json, read_json, seed_from_env, wait_or_fail, Reaper, Rng, TempDir,
};
use recorder::layout::{HEADER_LEN, H_TAIL};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 256 << 10;
const THREADS: u64 = 2;
const PER_THREAD: u64 = 8000;
/// A demo record's stride (shm-layout.md 7.7).
const STRIDE: u64 = 96;

/// One scribble: where it landed (data offset), how long, and the write
/// position (TAIL) just before.
struct Scribble {
    offset: u64,
    len: u64,
    tail: u64,
}

impl Scribble {
    /// Whether this scribble may have damaged a record of the window
    /// `[from, to)`: it hit the bytes last written at its offset (the
    /// position just below `tail` that maps there) or, if the writer got
    /// there first, the position one lap later.
    fn may_hit(&self, from: u64, to: u64) -> bool {
        let base = self.tail.saturating_sub(CAPACITY);
        let hit = base + (self.offset + CAPACITY - base % CAPACITY) % CAPACITY;
        [hit, hit + CAPACITY]
            .iter()
            .any(|&p| p < to && p + self.len > from)
    }
}

/// Checks a window of demo records with wild damage: every record is a
/// well-formed demo record (nothing false), each thread's counters
/// increase, and a thread's run breaks only where the reader reports a gap
/// with damage in it, at least as large as the missing records. Returns
/// the bytes reported lost and whether any of it is explained only by a
/// lapped writer.
fn check_window(records: &[Value]) -> (u64, u64) {
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
                let (bytes, torn, overwritten, corrupt) = gap_sum(&records[j + 1..=i]);
                assert!(
                    torn + corrupt + overwritten > 0 && bytes >= (n - m - 1) * STRIDE,
                    "thread {t}: records {}..={} missing between seq {} and seq {}, but the \
                     gaps between say {bytes} bytes, {torn} torn, {corrupt} corrupt, \
                     {overwritten} overwritten",
                    m + 1,
                    n - 1,
                    records[j]["seq"],
                    records[i]["seq"]
                );
            }
        }
        last[t as usize] = Some((i, n));
    }
    let (bytes, _, overwritten, _) = gap_sum(records);
    (bytes, overwritten)
}

fn tail_of(file: &File) -> u64 {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, H_TAIL as u64)
        .expect("read TAIL");
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
/// than the records the scribbles of its last lap can have hit.
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

    let mut scribbles = Vec::new();
    let mut live_reads = 0;
    let mut next_read = Instant::now();
    while writer.0.try_wait().expect("try_wait").is_none() {
        let len = rng.range(1, 32);
        let offset = rng.range(0, CAPACITY - len);
        let tail = tail_of(&file);
        file.write_all_at(&rng.bytes(len as usize), HEADER_LEN as u64 + offset)
            .expect("scribble");
        scribbles.push(Scribble { offset, len, tail });
        if Instant::now() >= next_read {
            check_window(&read_json(&ring, &[]));
            live_reads += 1;
            next_read = Instant::now() + Duration::from_millis(300);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(status.success(), "demo: {status:?}");

    let records = read_json(&ring, &[]);
    let info = info_json(&ring);
    assert_eq!(info["state"], "exited", "{info}");
    let (lost, overwritten) = check_window(&records);
    let damaged = info["corrupt"].as_u64().unwrap() + info["torn"].as_u64().unwrap();
    let tail = info["bytes_written"].as_u64().unwrap();
    let window = (tail - CAPACITY, tail);
    let hits: Vec<&Scribble> = scribbles
        .iter()
        .filter(|s| s.may_hit(window.0, window.1))
        .collect();
    // A scribble of `len` bytes costs the records it overlaps: at most
    // len + 2 strides of them.
    let bound: u64 = hits.iter().map(|s| s.len + 2 * STRIDE).sum();
    eprintln!(
        "wild: {} scribbles ({} may hit the final window), {live_reads} live reads; final \
         window: {} records, {damaged} damaged ({} corrupt, {} torn), {lost} bytes lost \
         (at most {bound} allowed)",
        scribbles.len(),
        hits.len(),
        records.len(),
        info["corrupt"],
        info["torn"]
    );
    assert!(
        damaged > 0,
        "{} scribbles may have hit the final window, and the reader reports no damage: {info}",
        hits.len()
    );
    if overwritten == 0 {
        assert!(
            lost <= bound,
            "{lost} bytes lost, more than the {bound} the scribbles can account for: the \
             damage cost more than the damaged records"
        );
    }
    let v = common::run(&["verify", ring.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "verify must call a scribbled ring inconsistent: {}{}",
        common::stdout(&v),
        common::stderr(&v)
    );
}
