//! SIGKILL torture with records of every size. `torture.rs` kills the demo,
//! whose events are all the same size; here a dedicated writer appends raw
//! records from 1 byte to more than a page (up to the ring's limit), from
//! one to eight threads (more than this machine's cores), and is killed at
//! a random instant. Each ring is then checked from other processes
//! (`blackbox verify`, `read --json`, `info --json`):
//!
//! - no false record: every record shown is byte for byte what its thread
//!   wrote as its record `n` (length and content are a function of the
//!   seed, the thread and `n`, so the checker knows them);
//! - nothing committed is destroyed: each thread's records in the window are
//!   one run of its appends, without a hole, that ends at or after its last
//!   append reported as returned. Appends are lost only as drops the writer
//!   was told of (`AppendError::Dropped`, no free chunk), and the ring
//!   counts them (`info`'s `dropped`). The writer prints each drop, so the
//!   checker knows which `n` a `seq` is: the `seq`-th `n` not dropped;
//! - `verify` passes, nothing is corrupt, at most one torn record per thread.
//!
//! The writer is this test binary itself, started again with
//! `BLACKBOX_SIZED_WRITER` set: the test `sized_writer_process` is the
//! writer's main then, and a no-op otherwise.
//!
//! Replay: `BLACKBOX_SIZES_SEED=<seed>`. Longer runs (`scripts/torture.sh`):
//! `BLACKBOX_SIZES_ITERS` (default 200), `BLACKBOX_SIZES_BUDGET_S` (seconds
//! after which no iteration starts, default 25, 0 for none),
//! `BLACKBOX_SIZES_MAX_KIB` (largest ring, default 1024).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_recorder::layout::{default_chunk_size, max_record_len, RECORD_HEADER_LEN};
use blackbox_recorder::{AppendError, Recorder};
use common::{
    assert_seq_increasing, drain, forward_lines, info_json, read_json, seed_from_env, verify_ok,
    wait_or_fail, Reaper, Rng, TempDir,
};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;
const WRITER_ENV: &str = "BLACKBOX_SIZED_WRITER";
/// The writer prints `t n seq` after every this many appends of a thread
/// (and `t n drop` after every dropped append).
const REPORT_EVERY: u64 = 16;
/// Bytes of a payload that identify it: the thread (1 byte), then `n` (u64).
const ID_LEN: usize = 9;

/// The sizes a case's payloads are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sizes {
    /// 1..=16 bytes: half of them too short to hold their own `n`.
    Tiny,
    /// A quarter each: 1..=16, 17..=256, 257..=4096, 4097..=the limit.
    Mixed,
    /// Uniform in 1..=the limit (more than a page from 32 KiB rings up).
    Large,
}

/// What the writer writes: everything the checker needs to predict it.
#[derive(Clone, Debug)]
struct Spec {
    ring: PathBuf,
    capacity: u64,
    threads: u64,
    seed: u64,
    sizes: Sizes,
}

impl Spec {
    fn to_env(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{}",
            self.capacity,
            self.threads,
            self.seed,
            self.sizes,
            self.ring.display()
        )
    }

    fn from_env(text: &str) -> Spec {
        let mut it = text.splitn(5, '|');
        let mut next = || it.next().expect("five fields");
        let capacity = next().parse().unwrap();
        let threads = next().parse().unwrap();
        let seed = next().parse().unwrap();
        let sizes = match next() {
            "Tiny" => Sizes::Tiny,
            "Mixed" => Sizes::Mixed,
            _ => Sizes::Large,
        };
        Spec {
            capacity,
            threads,
            seed,
            sizes,
            ring: PathBuf::from(next()),
        }
    }

    fn max_payload(&self) -> usize {
        max_record_len(default_chunk_size(self.capacity)) - RECORD_HEADER_LEN
    }

    fn hash(&self, t: u64, n: u64) -> u64 {
        mix(self.seed ^ mix(t << 56 ^ n))
    }

    /// The payload length of thread `t`'s record `n`.
    fn len(&self, t: u64, n: u64) -> usize {
        let h = self.hash(t, n);
        let max = self.max_payload() as u64;
        let pick = |lo: u64, hi: u64| (lo + (h >> 8) % (hi.min(max) - lo + 1)) as usize;
        match self.sizes {
            Sizes::Tiny => pick(1, 16),
            Sizes::Large => pick(1, max),
            Sizes::Mixed => match h % 4 {
                0 => pick(1, 16),
                1 => pick(17, 256),
                2 => pick(257, 4096),
                _ if max > 4096 => pick(4097, max),
                _ => pick(1, max),
            },
        }
    }

    /// Thread `t`'s record `n`: the thread, `n`, then filler from the hash,
    /// cut to its length.
    fn payload_into(&self, buf: &mut Vec<u8>, t: u64, n: u64) {
        let len = self.len(t, n);
        let h = self.hash(t, n);
        buf.clear();
        buf.push(t as u8);
        buf.extend_from_slice(&n.to_le_bytes());
        buf.extend(
            (ID_LEN..len.max(ID_LEN))
                .map(|i| (h.rotate_left(i as u32 % 64) as u8) ^ (i >> 6) as u8),
        );
        buf.truncate(len);
    }

    fn is_record(&self, t: u64, n: u64, bytes: &[u8]) -> bool {
        let mut want = Vec::new();
        self.payload_into(&mut want, t, n);
        want == bytes
    }
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The writer's main, when this binary runs as the writer; a no-op test
/// otherwise.
#[test]
fn sized_writer_process() {
    let Ok(text) = std::env::var(WRITER_ENV) else {
        return;
    };
    let spec = Spec::from_env(&text);
    let rec = Recorder::builder(&spec.ring)
        .capacity(spec.capacity)
        .program("bbx-sized-writer")
        .heartbeat(Some(Duration::from_millis(100)))
        .create()
        .expect("create ring");
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..spec.threads {
            let (rec, spec) = (&rec, &spec);
            s.spawn(move || {
                let mut buf = Vec::new();
                for n in 0.. {
                    spec.payload_into(&mut buf, t, n);
                    // One write(2) per line, after the append returned: a
                    // line the test reads is about an append that is done.
                    match rec.append(&buf) {
                        Ok(seq) if n % REPORT_EVERY == 0 => {
                            let line = format!("{t} {n} {seq}\n");
                            let _ = std::io::stdout().lock().write_all(line.as_bytes());
                        }
                        Ok(_) => {}
                        Err(AppendError::Dropped) => {
                            let line = format!("{t} {n} drop\n");
                            let _ = std::io::stdout().lock().write_all(line.as_bytes());
                        }
                        Err(e) => panic!("append of {} bytes: {e}", buf.len()),
                    }
                    // A writer nobody kills (its test died) stops by itself.
                    if n % 4096 == 0 && started.elapsed() > PATIENCE {
                        return;
                    }
                }
            });
        }
    });
}

/// What the writer said about one append.
#[derive(Clone, Copy, Debug)]
enum Report {
    /// "t n seq": thread t's append n returned `seq`.
    Appended { t: u64, n: u64, seq: u64 },
    /// "t n drop": thread t's append n was dropped (no free chunk).
    Dropped { t: u64, n: u64 },
}

/// One report line; `None` for the test harness's own lines.
fn parse_report(line: &str) -> Option<Report> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [t, n, last] = words[..] else {
        return None;
    };
    let (t, n) = (t.parse().ok()?, n.parse().ok()?);
    if last == "drop" {
        return Some(Report::Dropped { t, n });
    }
    Some(Report::Appended {
        t,
        n,
        seq: last.parse().ok()?,
    })
}

fn spawn_writer(spec: &Spec) -> Reaper {
    let exe = std::env::current_exe().expect("test binary path");
    let child = Command::new(exe)
        .args(["sized_writer_process", "--exact", "--nocapture", "--quiet"])
        .args(["--test-threads", "1"])
        .env(WRITER_ENV, spec.to_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writer");
    Reaper(child)
}

/// One iteration: start the writer, wait for its first report, wait
/// `wait`, SIGKILL it, check the ring. Returns the drops it saw.
fn torture_once(spec: &Spec, wait: Duration) -> u64 {
    let mut writer = spawn_writer(spec);
    let rx = forward_lines(writer.0.stdout.take().unwrap());
    let mut reports = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while reports.is_empty() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => reports.extend(parse_report(&line)),
            Err(e) => {
                let _ = writer.0.kill();
                let mut err = String::new();
                let _ = writer.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!("the writer never reported an append ({e:?}): {err}");
            }
        }
    }
    std::thread::sleep(wait);
    writer.0.kill().expect("SIGKILL the writer");
    let status = wait_or_fail(&mut writer.0, PATIENCE, "killed writer");
    assert_eq!(status.signal(), Some(SIGKILL), "writer: {status:?}");
    // Reports still in the pipe were written before the kill: they count.
    let mut rest = Vec::new();
    drain(&rx, &mut rest, PATIENCE);
    reports.extend(rest.iter().filter_map(|l| parse_report(l)));
    check_killed_ring(spec, &reports)
}

/// A raw record of the window: its thread and payload.
fn raw_payload(r: &Value) -> (u64, Vec<u8>) {
    assert_eq!(r["kind"], "raw", "not a raw record: {r}");
    let hex = r["bytes_hex"].as_str().expect("bytes_hex");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(!bytes.is_empty(), "empty payload: {r}");
    (u64::from(bytes[0]), bytes)
}

/// Thread `t`'s append that got `seq`: the `seq`-th `n` (from 0) that was
/// not dropped. `dropped` is sorted.
fn n_of_seq(seq: u64, dropped: &BTreeSet<u64>) -> u64 {
    // n = seq + the drops at or below n; the drops are few, so walk them.
    let mut n = seq;
    for &d in dropped {
        if d <= n {
            n += 1;
        } else {
            break;
        }
    }
    n
}

fn check_killed_ring(spec: &Spec, reports: &[Report]) -> u64 {
    let ring = &spec.ring;
    verify_ok(ring);
    let records = read_json(ring, &[]);
    assert!(!records.is_empty(), "no record recovered");
    assert_seq_increasing(&records);
    let info = info_json(ring);
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["missing"], 0, "{info}");
    assert_eq!(info["program"], "bbx-sized-writer", "{info}");
    assert_eq!(info["records"], records.len(), "{info}");
    let torn = info["torn"].as_u64().unwrap();
    assert!(
        torn <= spec.threads,
        "{torn} torn records from {} threads: {info}",
        spec.threads
    );

    let mut dropped: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last_reported: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for &r in reports {
        match r {
            Report::Dropped { t, n } => {
                dropped.entry(t).or_default().insert(n);
            }
            Report::Appended { t, n, seq } => {
                let e = last_reported.entry(t).or_insert((n, seq));
                *e = (*e).max((n, seq));
            }
        }
    }
    let drops: u64 = dropped.values().map(|d| d.len() as u64).sum();
    assert!(
        info["dropped"].as_u64().unwrap() >= drops,
        "the writer saw {drops} drops, the ring counts fewer: {info}"
    );

    // Per thread: its writer, and its records' seqs in window order.
    let none = BTreeSet::new();
    let mut runs: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new();
    for r in &records {
        let (t, bytes) = raw_payload(r);
        assert!(
            t < spec.threads,
            "record of thread {t} of {}: {r}",
            spec.threads
        );
        let writer = r["writer"].as_u64().unwrap();
        let seq = r["seq"].as_u64().unwrap();
        let n = n_of_seq(seq, dropped.get(&t).unwrap_or(&none));
        assert!(
            spec.is_record(t, n, &bytes),
            "false record: writer {writer} seq {seq} is thread {t}'s append {n} (its {}-th \
             append not dropped), but its {} bytes are not what that append wrote ({} bytes)",
            seq,
            bytes.len(),
            spec.len(t, n)
        );
        let run = runs.entry(t).or_insert((writer, Vec::new()));
        assert_eq!(run.0, writer, "thread {t}'s records come from two writers");
        if let Some(&prev) = run.1.last() {
            assert_eq!(
                seq,
                prev + 1,
                "thread {t}: seq {prev} is followed by seq {seq}: committed records destroyed"
            );
        }
        run.1.push(seq);
    }
    // Every append that returned is in the window, unless its chunk left it:
    // the thread's run ends at or after it.
    for (&t, &(n, seq)) in &last_reported {
        if let Some((_, seqs)) = runs.get(&t) {
            let last = *seqs.last().unwrap();
            assert!(
                last >= seq,
                "thread {t}: append {n} returned seq {seq}, but the thread's run in the window \
                 ends at seq {last}"
            );
        }
    }
    drops
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
    })
}

#[test]
fn random_sigkill_with_records_of_every_size() {
    let seed = seed_from_env("BLACKBOX_SIZES_SEED");
    let iters = env_u64("BLACKBOX_SIZES_ITERS", 200);
    let budget = env_u64("BLACKBOX_SIZES_BUDGET_S", 25);
    let max_kib = env_u64("BLACKBOX_SIZES_MAX_KIB", 1024).max(16);
    let max_shift = (max_kib / 16).ilog2() as u64;
    eprintln!(
        "torture_sizes: seed {seed}, {iters} iterations, rings of 16..={max_kib} KiB \
         (replay: BLACKBOX_SIZES_SEED={seed})"
    );
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("torture-sizes");
    let start = Instant::now();
    let (mut done, mut drops, mut failures) = (0, 0, Vec::new());
    let mut by_threads: BTreeMap<u64, u64> = BTreeMap::new();
    let mut by_size: BTreeMap<u64, u64> = BTreeMap::new();
    for iter in 0..iters {
        if budget > 0 && start.elapsed() > Duration::from_secs(budget) {
            eprintln!("torture_sizes: time budget spent after {done} iterations");
            break;
        }
        let spec = Spec {
            ring: dir.path(&format!("s{iter}.ring")),
            capacity: 16384 << rng.range(0, max_shift),
            threads: [1, 2, 4, 8][rng.range(0, 3) as usize],
            seed: rng.next(),
            sizes: [Sizes::Tiny, Sizes::Mixed, Sizes::Large][rng.range(0, 2) as usize],
        };
        let wait = Duration::from_micros(rng.range(0, 40_000));
        let what = format!(
            "iteration {iter}: {} KiB ring, {} threads, {:?} records (writer seed {}), \
             killed {wait:?} after the first report",
            spec.capacity >> 10,
            spec.threads,
            spec.sizes,
            spec.seed
        );
        match std::panic::catch_unwind(|| torture_once(&spec, wait)) {
            Ok(dropped) => drops += dropped,
            Err(e) => {
                let text = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("torture_sizes: FAILED {what}: {text}");
                let keep = std::env::temp_dir().join(format!("bbx-sizes-fail-{seed}-{iter}.ring"));
                if std::fs::copy(&spec.ring, &keep).is_ok() {
                    eprintln!("torture_sizes: failing ring copied to {}", keep.display());
                }
                failures.push(format!("{what}: {text}"));
            }
        }
        let _ = std::fs::remove_file(&spec.ring);
        *by_size.entry(spec.capacity >> 10).or_default() += 1;
        *by_threads.entry(spec.threads).or_default() += 1;
        done += 1;
    }
    eprintln!(
        "torture_sizes: {done} iterations in {:.1} s (by ring KiB: {by_size:?}; by threads: \
         {by_threads:?}), {} failed, {drops} appends dropped (no free chunk) and counted",
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(done > 0 || iters == 0, "no iteration ran");
    assert!(
        failures.is_empty(),
        "{} of {done} iterations failed (replay: BLACKBOX_SIZES_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
