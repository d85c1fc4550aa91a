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

/// Asserts `seq` strictly increases along the records.
pub fn assert_seq_increasing(records: &[Value]) {
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    for w in seqs.windows(2) {
        assert!(w[0] < w[1], "seq {} is followed by {}", w[0], w[1]);
    }
}

/// What [`check_runs`] found in a window of demo records.
pub struct Runs {
    /// Each thread's counters, in window order.
    pub threads: BTreeMap<u64, Vec<u64>>,
    /// Window index of each thread's last record.
    pub last_index: BTreeMap<u64, usize>,
    /// Breaks in a thread's run that the reader explains as records
    /// destroyed by a lapped writer's late copy (see [`check_runs`]).
    pub lapped_losses: Vec<String>,
}

/// Sums the `gap_before` objects of `records`:
/// (bytes, torn, overwritten, corrupt).
pub fn gap_sum(records: &[Value]) -> (u64, u64, u64, u64) {
    let mut sum = (0, 0, 0, 0);
    for g in records.iter().filter_map(|r| r.get("gap_before")) {
        sum.0 += g["bytes"].as_u64().unwrap_or(0);
        sum.1 += g["torn"].as_u64().unwrap_or(0);
        sum.2 += g["overwritten"].as_u64().unwrap_or(0);
        sum.3 += g["corrupt"].as_u64().unwrap_or(0);
    }
    sum
}

/// Whether the reader reports, after window index `at`, a gap a lapped
/// writer explains (and no corrupt record).
pub fn lapped_gap_after(records: &[Value], at: usize) -> bool {
    let (_, _, overwritten, corrupt) = gap_sum(&records[at + 1..]);
    overwritten > 0 && corrupt == 0
}

/// Checks a window of demo records: each is a well-formed demo record of a
/// thread below `threads`, `seq` strictly increases, and each thread's
/// counters increase by one. A thread's run may only break where the reader
/// reports, between the two records, a gap of at least the missing
/// records' size that a lapped append explains (`overwritten`) and no
/// corrupt record: DESIGN.md ("A slow writer can be lapped") accepts that a
/// writer lapped mid-copy damages newer records, as long as the damage is
/// detected and reported. Such breaks are returned, not hidden; `torture.rs`
/// counts them.
pub fn check_runs(records: &[Value], threads: u64) -> Runs {
    assert_seq_increasing(records);
    let counters = counters_of(records);
    let seq = |i: usize| records[i]["seq"].as_u64().unwrap();
    // A demo record's stride, from neighbours with nothing between them.
    let stride = (1..records.len())
        .filter(|&i| records[i].get("gap_before").is_none())
        .map(|i| (seq(i) - seq(i - 1)) * 8)
        .min()
        .unwrap_or(8);
    let mut prev: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    let mut lapped_losses = Vec::new();
    for (i, &(t, n)) in counters.iter().enumerate() {
        assert!(
            t < threads,
            "record of thread {t}, but only {threads} ran: {}",
            records[i]
        );
        if let Some(&(j, m)) = prev.get(&t) {
            assert!(
                n > m,
                "thread {t}: {m} (seq {}) is followed by {n} (seq {}): out of order or repeated",
                seq(j),
                seq(i)
            );
            if n > m + 1 {
                let (bytes, torn, overwritten, corrupt) = gap_sum(&records[j + 1..=i]);
                let text = format!(
                    "thread {t}: committed records {}..={} lost between seq {} and seq {}; \
                     gaps reported between: {bytes} bytes, {torn} torn, {overwritten} \
                     overwritten by a lapped writer, {corrupt} corrupt",
                    m + 1,
                    n - 1,
                    seq(j),
                    seq(i)
                );
                assert!(
                    overwritten > 0 && corrupt == 0 && (n - m - 1) * stride <= bytes,
                    "{text}: nothing explains the loss"
                );
                lapped_losses.push(text);
            }
        }
        prev.insert(t, (i, n));
    }
    Runs {
        threads: by_thread(&counters),
        last_index: prev.iter().map(|(&t, &(i, _))| (t, i)).collect(),
        lapped_losses,
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
