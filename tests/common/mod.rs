//! Helpers shared by the cross-process tests: run the real `blackbox`
//! binary, parse its JSON, check per-thread counter runs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `blackbox` binary under test.
pub fn blackbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blackbox"))
}

/// A fresh directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("bbx-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `blackbox ARGS...` to completion.
pub fn run(args: &[&str]) -> Output {
    blackbox().args(args).output().expect("run blackbox")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `blackbox info RING --json`, parsed; panics with stderr if it fails.
pub fn info_json(ring: &Path) -> Value {
    let o = run(&["info", ring.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "info failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("info --json is JSON")
}

/// `blackbox read RING --json [extra...]`, one parsed object per line.
pub fn read_json(ring: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["read", ring.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "read failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Whether a record is one of the demo's own last words (`demo: about to
/// die`, its OOM progress) or a crash event of the crash handlers: the
/// records around the counters.
pub fn is_demo_epilogue(r: &Value) -> bool {
    (r["target"] == "blackbox::demo" && r["level"] == "WARN") || r["target"] == "blackbox::crash"
}

/// The demo's `(t, n)` counters of each record, in output order, skipping
/// the epilogue records ([`is_demo_epilogue`]); panics if any other record
/// is not a well-formed demo record.
pub fn demo_counters(records: &[Value]) -> Vec<(u64, u64)> {
    records
        .iter()
        .filter(|r| !is_demo_epilogue(r))
        .map(|r| {
            assert_eq!(r["message"], "demo record", "not a demo record: {r}");
            assert_eq!(r["level"], "INFO", "{r}");
            assert_eq!(r["target"], "blackbox::demo", "{r}");
            let t = r["fields"]["t"].as_u64().expect("integer field t");
            let n = r["fields"]["n"].as_u64().expect("integer field n");
            (t, n)
        })
        .collect()
}

/// Groups counters by thread, keeping order.
pub fn by_thread(counters: &[(u64, u64)]) -> BTreeMap<u64, Vec<u64>> {
    let mut map: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(t, n) in counters {
        map.entry(t).or_default().push(n);
    }
    map
}

/// Asserts each thread's counters form one contiguous run `k, k+1, ..., m`.
/// Returns each thread's last counter.
pub fn assert_contiguous(counters: &[(u64, u64)]) -> BTreeMap<u64, u64> {
    let mut last = BTreeMap::new();
    for (t, ns) in by_thread(counters) {
        for w in ns.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "thread {t}: {} is followed by {}",
                w[0],
                w[1]
            );
        }
        last.insert(t, *ns.last().unwrap());
    }
    last
}

/// Asserts each writer's `seq` strictly increases along the records (the
/// window is ordered by time across writers, by `seq` within each).
pub fn assert_seq_increasing(records: &[Value]) {
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for r in records {
        let w = r["writer"].as_u64().expect("integer writer");
        let seq = r["seq"].as_u64().expect("integer seq");
        if let Some(&prev) = last.get(&w) {
            assert!(prev < seq, "writer {w}: seq {prev} is followed by {seq}");
        }
        last.insert(w, seq);
    }
}

/// What [`check_runs`] found in a window of demo records.
pub struct Runs {
    /// Each thread's counters, in window order.
    pub threads: BTreeMap<u64, Vec<u64>>,
    /// Window index of each thread's last record.
    pub last_index: BTreeMap<u64, usize>,
    /// Each thread's drop count in its last record (its `dropped` field).
    pub dropped: BTreeMap<u64, u64>,
}

/// Sums the `gap_before` objects of `records`: (missing, corrupt, dropped).
pub fn gap_sum(records: &[Value]) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for g in records.iter().filter_map(|r| r.get("gap_before")) {
        sum.0 += g["missing"].as_u64().unwrap_or(0);
        sum.1 += g["corrupt"].as_u64().unwrap_or(0);
        sum.2 += g["dropped"].as_u64().unwrap_or(0);
    }
    sum
}

/// Checks a window of demo records against the ring's promise that nothing
/// committed is destroyed (invariant 1): each record is a well-formed demo
/// record of a thread below `threads`; each writer's `seq` runs without a
/// hole (`seq` + 1 each time: the reader never shows a writer's run with a
/// hole it did not report); each thread's records come from one writer; and
/// each thread's counters `n` form one run in which a jump of k + 1 comes
/// with a rise of k in its `dropped` field (appends dropped, and counted,
/// because no chunk was free), and no other jump. No loss is tolerated.
pub fn check_runs(records: &[Value], threads: u64) -> Runs {
    assert_seq_increasing(records);
    let body = body(records);
    // thread -> (window index, n, dropped, writer, seq)
    let mut prev: BTreeMap<u64, (usize, u64, u64, u64, u64)> = BTreeMap::new();
    let mut counters = Vec::with_capacity(body.len());
    for (i, r) in body.iter().enumerate() {
        let (t, n) = counter(r);
        let dropped = r["fields"]["dropped"]
            .as_u64()
            .expect("integer field dropped");
        let writer = r["writer"].as_u64().expect("integer writer");
        let seq = r["seq"].as_u64().expect("integer seq");
        assert!(
            t < threads,
            "record of thread {t}, but only {threads} ran: {r}"
        );
        if let Some(&(j, m, d, w, s)) = prev.get(&t) {
            assert_eq!(
                w, writer,
                "thread {t}'s records come from writers {w} and {writer}"
            );
            assert_eq!(
                seq,
                s + 1,
                "thread {t} (writer {w}): seq {s} (window index {j}) is followed by {seq}: \
                 a hole in the writer's run{}",
                r.get("gap_before")
                    .map_or(String::new(), |g| format!(", reported as {g}"))
            );
            assert!(
                n > m && dropped >= d && n - m - 1 == dropped - d,
                "thread {t}: n {m} (dropped {d}) is followed by n {n} (dropped {dropped}): \
                 {} committed record(s) destroyed",
                (n - m - 1).saturating_sub(dropped.saturating_sub(d))
            );
        }
        prev.insert(t, (i, n, dropped, writer, seq));
        counters.push((t, n));
    }
    Runs {
        threads: by_thread(&counters),
        last_index: prev.iter().map(|(&t, &(i, ..))| (t, i)).collect(),
        dropped: prev.iter().map(|(&t, &(_, _, d, ..))| (t, d)).collect(),
    }
}

/// Whether `r` is the demo's last word before it dies as asked (WARN
/// `demo: about to die`), written after every thread's counters.
pub fn is_epilogue(r: &Value) -> bool {
    r["message"] == "demo: about to die" && r["level"] == "WARN" && r["target"] == "blackbox::demo"
}

/// `(t, n)` of a demo counter record; panics if `r` is not one.
pub fn counter(r: &Value) -> (u64, u64) {
    assert_eq!(r["message"], "demo record", "not a demo record: {r}");
    assert_eq!(r["level"], "INFO", "{r}");
    assert_eq!(r["target"], "blackbox::demo", "{r}");
    let t = r["fields"]["t"].as_u64().expect("integer field t");
    let n = r["fields"]["n"].as_u64().expect("integer field n");
    (t, n)
}

/// The counter records of a window: all of them, except that the last
/// may be the epilogue ([`is_epilogue`]).
pub fn body(records: &[Value]) -> &[Value] {
    match records.split_last() {
        Some((last, rest)) if is_epilogue(last) => rest,
        _ => records,
    }
}

/// `(t, n)` of every record of [`body`], in window order.
pub fn counters_of(records: &[Value]) -> Vec<(u64, u64)> {
    body(records).iter().map(counter).collect()
}

/// Kills the child when dropped, so a failing assertion never leaves a
/// writer running.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `poll` (every few milliseconds) until it gives a value, and
/// returns it; panics with `what` if it has not after `limit`. The limit
/// is a deadline for "it never happened", never a bound on how fast it
/// happened: tests give it generously (the machine may be loaded) and
/// assert nothing about the time it took.
pub fn wait_until<T>(limit: Duration, what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the child to end; kills it and panics if it is still running
/// after `limit` (a deadline for a hang, not a bound on how fast it ends).
pub fn wait_or_fail(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Forwards the child's stdout lines to a channel from a thread of its own,
/// so the child never blocks on a full pipe.
pub fn forward_lines(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Parses a `--report-every` line: "T N".
pub fn parse_report(line: &str) -> (u64, u64) {
    let mut it = line.split_whitespace().map(|w| w.parse::<u64>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(t)), Some(Ok(n)), None) => (t, n),
        _ => panic!("demo printed {line:?}, not a \"T N\" report"),
    }
}

/// xorshift64*: small, deterministic for a seed (for randomized tests that
/// print their seed so a failure can be replayed).
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed` (0 counts as 1: xorshift needs a nonzero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A seed from the environment variable `name` (to replay a failure), or
/// a fresh one from the clock and the pid.
pub fn seed_from_env(name: &str) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
        }
    }
}

/// Receives every remaining line until the child's stdout closes; panics
/// if it stays open longer than `limit`.
pub fn drain(rx: &Receiver<String>, into: &mut Vec<String>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => into.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child's stdout did not close"),
        }
    }
}

/// `blackbox verify RING` must pass; panics with its output otherwise.
pub fn verify_ok(ring: &Path) {
    let o = run(&["verify", ring.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "verify exited {:?}: {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
}

/// A record where `shm-layout.md` puts it in a ring file's bytes, for tests
/// that edit files: its writer and `seq`, the file offset of the record and
/// of its chunk, and its length.
#[derive(Debug, Clone, Copy)]
pub struct FileRecord {
    pub writer: u32,
    pub seq: u64,
    pub at: usize,
    pub chunk_at: usize,
    pub len: usize,
}

/// Every published record of a ring file's bytes, chunk by chunk, walked as
/// section 11 of the spec says (tags only; checksums are not checked).
pub fn file_records(file: &[u8]) -> Vec<FileRecord> {
    use blackbox_recorder::layout::*;
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    let chunk_size = u32_at(H_CHUNK_SIZE) as usize;
    let count = u32_at(H_CHUNK_COUNT) as usize;
    let data = u64_at(H_DATA_OFFSET) as usize;
    let mut out = Vec::new();
    for i in 0..count {
        let state = table_state(u64_at(HEADER_LEN + 8 * i));
        if state != CHUNK_OWNED && state != CHUNK_SEALED {
            continue;
        }
        let chunk_at = data + i * chunk_size;
        let gen = u64_at(chunk_at + C_GEN);
        let first_seq = u64_at(chunk_at + C_FIRST_SEQ);
        let writer = u32_at(chunk_at + C_WRITER);
        let mut offset = CHUNK_HEADER_LEN;
        let mut k = 0;
        while offset + RECORD_HEADER_LEN <= chunk_size {
            let commit = u64_at(chunk_at + offset);
            let len = (commit & 0xffff) as usize;
            if commit >> COMMIT_LEN_BITS != commit_tag(gen) || len < RECORD_HEADER_LEN {
                break;
            }
            out.push(FileRecord {
                writer,
                seq: first_seq + k,
                at: chunk_at + offset,
                chunk_at,
                len,
            });
            offset += stride(len);
            k += 1;
        }
    }
    out
}

/// Recomputes the checksum of the record `r` in `file` (after a test
/// changed its bytes), as a writer following the spec would have.
pub fn reseal_record(file: &mut [u8], r: &FileRecord) {
    use blackbox_recorder::layout::*;
    let nonce = u64::from_le_bytes(file[H_NONCE..H_NONCE + 8].try_into().unwrap());
    let header: [u8; CHUNK_HEADER_LEN] = file[r.chunk_at..r.chunk_at + CHUNK_HEADER_LEN]
        .try_into()
        .unwrap();
    let crc = record_crc_of(
        crc_seed(nonce, &header),
        r.seq,
        &file[r.at..r.at + stride(r.len)],
    );
    file[r.at + R_CRC..r.at + R_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}
