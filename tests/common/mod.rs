//! Helpers shared by the cross-process tests: run the real `blackbox`
//! binary, parse its JSON, check per-thread counter runs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
