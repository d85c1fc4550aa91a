//! `blackbox read --follow --json` under load, proven by sequence numbers.
//!
//! A record's `seq` is its position / 8, so consecutive records printed by
//! the follower must satisfy `next.seq = prev.seq + prev.stride / 8`
//! (the stride is computed from the printed event itself), unless the
//! follower says what lies between: a `gap_before` of exactly the missing
//! bytes, or `{"lapped":{"bytes":B}}` notices (plus at most one record
//! whose start was overwritten at the window's edge). Per writer thread the
//! counters `n` strictly increase (nothing repeated) and run contiguously
//! except across such a notice. Every printed record is a well-formed
//! demo record (nothing torn is shown).
//!
//! `live.rs` checks that `--follow` prints every record of a slow writer
//! once and from the middle of a stream; these tests add load (a wrapping
//! ring), a follower that is lapped, and a hole that never fills while
//! the writer runs.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{forward_lines, info_json, wait_or_fail, Reaper, TempDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use recorder::{Field, Level, Recorder};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);
/// A demo record: target `blackbox::demo`, message `demo record`, two u64
/// fields (shm-layout.md 7.7).
const DEMO_STRIDE: u64 = 96;

/// The tests of this file run one at a time: each loads both cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line of `read --follow --json`.
#[derive(Debug)]
enum Line {
    Record(Value),
    Lapped(u64),
}

fn parse(line: &str) -> Line {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match v.get("lapped") {
        Some(l) => Line::Lapped(l["bytes"].as_u64().unwrap_or_else(|| panic!("{line}"))),
        None => Line::Record(v),
    }
}

/// The stride of a printed event, from its target, message and typed
/// fields (shm-layout.md sections 4 and 5).
fn event_stride(r: &Value) -> u64 {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("not an event: {r}"))
            .len()
    };
    let mut len = 32 + 12 + text(&r["target"]) + text(&r["message"]);
    let fields = r["fields"].as_object().expect("fields");
    for (name, value) in fields {
        len += 2 + name.len();
        len += match r["field_types"][name].as_str() {
            Some("u64" | "i64" | "f64") => 8,
            Some("bool") => 1,
            Some("str" | "debug") => 2 + text(value),
            other => panic!("field {name} of unknown type {other:?}: {r}"),
        };
    }
    (len as u64 + 7) & !7
}

/// What the proof found: the records printed and everything that breaks it.
struct Proof {
    records: Vec<Value>,
    lapped: Vec<u64>,
    problems: Vec<String>,
}

/// Checks the follower's output line by line (see the module docs).
fn prove(lines: &[String], threads: u64) -> Proof {
    let mut proof = Proof {
        records: Vec::new(),
        lapped: Vec::new(),
        problems: Vec::new(),
    };
    // The previous record: (its end position, its line number); the
    // lapped bytes and notices since; each thread's last counter.
    let mut prev: Option<(u64, usize)> = None;
    let mut lapped_since = 0u64;
    let mut last_line_lapped = false;
    let mut counters: Vec<Option<u64>> = vec![None; threads as usize];
    // Per thread: whether a notice (lapped, or a gap) came since its last
    // record; one notice may explain a jump in every thread's counters.
    let mut noticed = vec![false; threads as usize];
    for (k, line) in lines.iter().enumerate() {
        let r = match parse(line) {
            Line::Lapped(bytes) => {
                if last_line_lapped {
                    proof.problems.push(format!(
                        "line {k}: lapped twice in a row: the records of the snapshot after \
                         line {} were in the window and none was printed:\n  {}\n  {line}",
                        k - 1,
                        lines[k - 1]
                    ));
                }
                proof.lapped.push(bytes);
                lapped_since += bytes;
                noticed.iter_mut().for_each(|n| *n = true);
                last_line_lapped = true;
                continue;
            }
            Line::Record(r) => r,
        };
        last_line_lapped = false;
        let seq = r["seq"].as_u64().expect("seq");
        let gap = r
            .get("gap_before")
            .map_or(0, |g| g["bytes"].as_u64().unwrap());
        if r.get("gap_before").is_some() {
            noticed.iter_mut().for_each(|n| *n = true);
        }
        if let Some((end, at)) = prev {
            let skipped = (seq * 8).checked_sub(end);
            let said = gap + lapped_since;
            let ok = match skipped {
                None => false,
                // Without a lapped notice the gap must be exact; after one,
                // the window's edge may have cut one record in two.
                Some(s) if lapped_since == 0 => s == gap,
                Some(s) => s >= said && s < said + 65536,
            };
            if !ok {
                proof.problems.push(format!(
                    "line {k}: seq {seq} after a record ending at position {end} (line {at}): \
                     {} bytes skipped, {gap} reported as a gap and {lapped_since} as lapped:\n  \
                     {}\n  {line}",
                    skipped.map_or("-".into(), |s| s.to_string()),
                    lines[at]
                ));
            }
        }
        if r["target"] == "blackbox::demo" && r["message"] == "demo record" {
            let (t, n) = common::counter(&r);
            assert!(t < threads, "record of thread {t}: {r}");
            if let Some(m) = counters[t as usize] {
                if n <= m {
                    proof.problems.push(format!(
                        "line {k}: thread {t} record {n} after its record {m}: repeated or \
                         out of order"
                    ));
                } else if n > m + 1 && !noticed[t as usize] {
                    proof.problems.push(format!(
                        "line {k}: thread {t} records {}..={} missing with no notice",
                        m + 1,
                        n - 1
                    ));
                }
            }
            counters[t as usize] = Some(n);
            noticed[t as usize] = false;
            assert_eq!(event_stride(&r), DEMO_STRIDE, "{r}");
        }
        prev = Some((seq * 8 + event_stride(&r), k));
        lapped_since = 0;
        proof.records.push(r);
    }
    proof
}

fn spawn_follower(ring: &Path) -> (Reaper, Receiver<String>) {
    let mut child = common::blackbox()
        .args(["read", ring.to_str().unwrap(), "--json", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn read --follow");
    let lines = forward_lines(child.stdout.take().unwrap());
    (Reaper(child), lines)
}

/// `blackbox demo` with two threads; returns once its ring holds a record.
fn spawn_demo(ring: &Path, capacity: &str, per_thread: u64, rate: u64) -> Reaper {
    let mut child = common::blackbox()
        .arg("demo")
        .arg("--ring")
        .arg(ring)
        .args(["--capacity", capacity, "--threads", "2"])
        .args(["--records", &per_thread.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--report-every", "1000000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let first = forward_lines(child.stdout.take().unwrap());
    first
        .recv_timeout(PATIENCE)
        .expect("the demo never reported its first record");
    Reaper(child)
}

/// Every line until the follower's stdout closes; it must end well.
fn finish(follower: &mut Child, lines: &Receiver<String>, into: &mut Vec<String>) {
    common::drain(lines, into, PATIENCE);
    let status = wait_or_fail(follower, PATIENCE, "read --follow");
    assert!(status.success(), "read --follow: {status:?}");
}

fn assert_proven(proof: &Proof, what: &str) {
    assert!(
        proof.problems.is_empty(),
        "{what}: {} problem(s) in the follower's output, first ones:\n{}",
        proof.problems.len(),
        proof.problems[..proof.problems.len().min(3)].join("\n")
    );
}

/// Two writer threads wrap a 1 MiB ring while a follower keeps up: every
/// record is printed once, in order, without a hole, and the final window
/// is the tail of what was printed.
#[test]
fn follow_under_load_prints_every_record_once() {
    let _serial = serial();
    let dir = TempDir::new("follow-load");
    let ring = dir.path("load.ring");
    let per_thread = 6000;
    let mut writer = spawn_demo(&ring, "1MiB", per_thread, 2000);
    let (mut follower, lines) = spawn_follower(&ring);
    let mut out = Vec::new();
    finish(&mut follower.0, &lines, &mut out);
    let status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(status.success(), "demo: {status:?}");

    let proof = prove(&out, 2);
    assert_proven(&proof, "follow under load");
    // Every record of the final window was printed (none skipped that was
    // still there), and, if the follower was never lapped, every record.
    let window = common::read_json(&ring, &[]);
    let printed: std::collections::HashSet<u64> = proof
        .records
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    for r in &window {
        assert!(
            printed.contains(&r["seq"].as_u64().unwrap()),
            "the final window's record was never printed: {r}"
        );
    }
    let counters = common::counters_of(&proof.records);
    if proof.lapped.is_empty() {
        assert_eq!(counters.len() as u64, 2 * per_thread, "records printed");
    } else {
        eprintln!(
            "follower was lapped {} times ({} bytes); accounted for",
            proof.lapped.len(),
            proof.lapped.iter().sum::<u64>()
        );
    }
    assert!(info_json(&ring)["bytes_written"].as_u64().unwrap() > 1 << 20);
}

/// A follower that falls a lap behind (frozen with SIGSTOP while the writer
/// wraps a 64 KiB ring twice) says how many bytes it missed, and then
/// follows again: it prints the records of the snapshot in which it
/// noticed the lap, so two lapped notices are never adjacent while the
/// writer goes on.
#[test]
fn lapped_follower_says_how_much_it_missed_and_follows_again() {
    let _serial = serial();
    let dir = TempDir::new("follow-lapped");
    let ring = dir.path("lapped.ring");
    let capacity = 64u64 << 10;
    // 2 x 1000 records/s of 96 bytes: a lap every ~0.34 s, for ~5 s.
    let mut writer = spawn_demo(&ring, "64KiB", 5000, 1000);
    let (mut follower, lines) = spawn_follower(&ring);
    let mut out = vec![lines
        .recv_timeout(PATIENCE)
        .expect("follower printed nothing")];
    let pid = Pid::from_raw(follower.0.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP the follower");
    let written = |ring: &Path| info_json(ring)["bytes_written"].as_u64().unwrap();
    let at_stop = written(&ring);
    let deadline = Instant::now() + PATIENCE;
    while written(&ring) < at_stop + 2 * capacity {
        assert!(
            Instant::now() < deadline,
            "the writer did not wrap the ring"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(pid, Signal::SIGCONT).expect("SIGCONT the follower");
    finish(&mut follower.0, &lines, &mut out);
    let status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(status.success(), "demo: {status:?}");

    let proof = prove(&out, 2);
    assert!(
        !proof.lapped.is_empty(),
        "a follower frozen for two laps of the ring printed no lapped notice"
    );
    assert!(proof.lapped.iter().all(|&b| b > 0), "{:?}", proof.lapped);
    eprintln!(
        "lapped {} times, {} bytes in all; {} records printed",
        proof.lapped.len(),
        proof.lapped.iter().sum::<u64>(),
        proof.records.len()
    );
    assert_proven(&proof, "lapped follower");
}

/// A record reserved and never published while the writer goes on (a
/// thread stuck mid-append) holds the follower back for its grace period;
/// then the follower moves past it, and must say so: the next record
/// carries a gap with the torn record, never a silent jump in `seq`.
#[test]
fn follower_reports_the_hole_it_moves_past() {
    let _serial = serial();
    let dir = TempDir::new("follow-hole");
    let ring = dir.path("hole.ring");
    let rec = Recorder::builder(&ring)
        .capacity(1 << 20)
        .program("follow-load")
        .create()
        .expect("create ring");
    let log = |t: u64, n: u64| {
        rec.log(
            Level::Info,
            "blackbox::demo",
            "demo record",
            &[Field::new("t", t), Field::new("n", n)],
        )
        .expect("append");
    };
    log(0, 0);
    let (mut follower, lines) = spawn_follower(&ring);
    let mut out = vec![lines
        .recv_timeout(PATIENCE)
        .expect("follower printed nothing")];
    let per_thread = 2500u64;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (log, rec) = (&log, &rec);
            s.spawn(move || {
                for n in u64::from(t == 0)..per_thread {
                    if t == 0 && n == 500 {
                        // Reserved and filled, never published.
                        rec.log_unpublished_for_test("demo record");
                    }
                    log(t, n);
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    rec.close();
    finish(&mut follower.0, &lines, &mut out);

    let proof = prove(&out, 2);
    assert!(proof.lapped.is_empty(), "a 1 MiB ring cannot lap here");
    let counters = common::counters_of(&proof.records);
    assert_eq!(counters.len() as u64, 2 * per_thread, "records printed");
    let torn: u64 = proof
        .records
        .iter()
        .filter_map(|r| r.get("gap_before"))
        .map(|g| g["torn"].as_u64().unwrap())
        .sum();
    assert_proven(&proof, "follower past a hole");
    assert_eq!(torn, 1, "the follower must report the one torn record");
}
