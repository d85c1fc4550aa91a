//! `blackbox read --follow --json` under load, proven by sequence numbers.
//!
//! Each writer (one thread) numbers its records `seq` 0, 1, 2, ..., so the
//! records the follower prints for one writer must satisfy
//! `next.seq = prev.seq + 1`, unless the follower says what lies between:
//! a `gap_before` of exactly the missing records, or
//! `{"missed":{"writer":W,"records":R}}` notices for that writer (records
//! that left the window before the follower could read them). Per writer
//! thread the counters `n` strictly increase (nothing repeated) and run
//! contiguously except across such a notice. Every printed record is a
//! well-formed demo record (nothing torn is shown).
//!
//! `live.rs` checks that `--follow` prints every record of a slow writer
//! once and from the middle of a stream; these tests add load (a ring whose
//! chunks are reused), a follower that falls behind, and a record that is
//! never published while the writer runs.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use blackbox_recorder::{Field, Level, Recorder};
use common::{forward_lines, info_json, wait_or_fail, Reaper, TempDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time: each loads both cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line of `read --follow --json`.
#[derive(Debug)]
enum Line {
    Record(Value),
    Missed { writer: u64, records: u64 },
}

fn parse(line: &str) -> Line {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match v.get("missed") {
        Some(m) => Line::Missed {
            writer: m["writer"].as_u64().unwrap_or_else(|| panic!("{line}")),
            records: m["records"].as_u64().unwrap_or_else(|| panic!("{line}")),
        },
        None => Line::Record(v),
    }
}

/// What the proof found: the records printed and everything that breaks it.
struct Proof {
    records: Vec<Value>,
    /// The missed notices: (writer, records).
    missed: Vec<(u64, u64)>,
    problems: Vec<String>,
}

/// Checks the follower's output line by line (see the module docs).
fn prove(lines: &[String], threads: u64) -> Proof {
    let mut proof = Proof {
        records: Vec::new(),
        missed: Vec::new(),
        problems: Vec::new(),
    };
    // Per writer: its last seq printed and the line, and the records said
    // missed since.
    let mut writers: BTreeMap<u64, (u64, usize, u64)> = BTreeMap::new();
    // Per writer: missed notices not yet followed by one of its records.
    let mut pending: BTreeMap<u64, u64> = BTreeMap::new();
    // Per thread: its last counter, and whether a notice came since.
    let mut counters: Vec<Option<(u64, u64)>> = vec![None; threads as usize];
    for (k, line) in lines.iter().enumerate() {
        let r = match parse(line) {
            Line::Missed { writer, records } => {
                if pending.contains_key(&writer) {
                    proof.problems.push(format!(
                        "line {k}: writer {writer} missed twice with none of its records between"
                    ));
                }
                *pending.entry(writer).or_default() += records;
                proof.missed.push((writer, records));
                continue;
            }
            Line::Record(r) => r,
        };
        let writer = r["writer"].as_u64().expect("writer");
        let seq = r["seq"].as_u64().expect("seq");
        let gap = r
            .get("gap_before")
            .map_or(0, |g| g["missing"].as_u64().unwrap());
        let said = gap + pending.remove(&writer).unwrap_or(0);
        if let Some(&(prev, at, _)) = writers.get(&writer) {
            if seq <= prev || seq - prev - 1 != said {
                proof.problems.push(format!(
                    "line {k}: writer {writer}: seq {seq} after seq {prev} (line {at}), with \
                     {said} record(s) said missing between:\n  {}\n  {line}",
                    lines[at]
                ));
            }
        }
        writers.insert(writer, (seq, k, said));
        if r["target"] == "blackbox::demo" && r["message"] == "demo record" {
            let (t, n) = common::counter(&r);
            assert!(t < threads, "record of thread {t}: {r}");
            if let Some((w, m)) = counters[t as usize] {
                if w != writer {
                    proof.problems.push(format!(
                        "line {k}: thread {t} from writers {w} and {writer}"
                    ));
                }
                if n <= m {
                    proof.problems.push(format!(
                        "line {k}: thread {t} record {n} after its record {m}: repeated or \
                         out of order"
                    ));
                } else if n - m - 1 != said {
                    proof.problems.push(format!(
                        "line {k}: thread {t} records {}..={} missing, {said} said missing",
                        m + 1,
                        n - 1
                    ));
                }
            }
            counters[t as usize] = Some((writer, n));
        }
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

/// Two writer threads go round a 1 MiB ring while a follower keeps up:
/// every record is printed once, in order, without a hole, and the final
/// window is the tail of what was printed.
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
    // still there), and, if the follower never fell behind, every record.
    let window = common::read_json(&ring, &[]);
    let key = |r: &Value| (r["writer"].as_u64().unwrap(), r["seq"].as_u64().unwrap());
    let printed: HashSet<(u64, u64)> = proof.records.iter().map(key).collect();
    for r in &window {
        assert!(
            printed.contains(&key(r)),
            "the final window's record was never printed: {r}"
        );
    }
    let counters = common::counters_of(&proof.records);
    if proof.missed.is_empty() {
        assert_eq!(counters.len() as u64, 2 * per_thread, "records printed");
    } else {
        eprintln!(
            "follower missed records {} times ({} records); accounted for",
            proof.missed.len(),
            proof.missed.iter().map(|m| m.1).sum::<u64>()
        );
    }
    let info = info_json(&ring);
    assert!(
        info["chunk_tickets"].as_u64().unwrap() > info["chunks"].as_u64().unwrap(),
        "the ring should have gone round: {info}"
    );
}

/// A follower that falls behind (frozen with SIGSTOP while the writers take
/// a 64 KiB ring round twice) says, per writer, how many records it missed,
/// and then follows again.
#[test]
fn a_follower_that_falls_behind_says_what_it_missed_and_follows_again() {
    let _serial = serial();
    let dir = TempDir::new("follow-behind");
    let ring = dir.path("behind.ring");
    // 2 x 1000 records/s of 96 bytes into 64 chunks of 1 KiB: round in
    // ~0.35 s, for ~5 s.
    let mut writer = spawn_demo(&ring, "64KiB", 5000, 1000);
    let (mut follower, lines) = spawn_follower(&ring);
    let mut out = vec![lines
        .recv_timeout(PATIENCE)
        .expect("follower printed nothing")];
    let pid = Pid::from_raw(follower.0.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP the follower");
    let tickets = |ring: &Path| info_json(ring)["chunk_tickets"].as_u64().unwrap();
    let at_stop = tickets(&ring);
    let deadline = Instant::now() + PATIENCE;
    while tickets(&ring) < at_stop + 2 * 64 {
        assert!(
            Instant::now() < deadline,
            "the writers did not go round the ring"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(pid, Signal::SIGCONT).expect("SIGCONT the follower");
    finish(&mut follower.0, &lines, &mut out);
    let status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(status.success(), "demo: {status:?}");

    let proof = prove(&out, 2);
    assert!(
        !proof.missed.is_empty(),
        "a follower frozen for two rounds of the ring printed no missed notice"
    );
    assert!(
        proof.missed.iter().all(|&(_, r)| r > 0),
        "{:?}",
        proof.missed
    );
    eprintln!(
        "missed {} times, {} records in all; {} records printed",
        proof.missed.len(),
        proof.missed.iter().map(|m| m.1).sum::<u64>(),
        proof.records.len()
    );
    assert_proven(&proof, "follower that fell behind");
}

/// A record begun and never published while the writer goes on (a thread
/// stuck mid-append, as the test hook leaves it) holds nothing back: the
/// writer's run goes on in a new chunk, the follower prints every record,
/// and the torn record is counted in the ring, never shown.
#[test]
fn a_torn_record_holds_the_follower_back_for_nothing() {
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
    let (mut follower, lines) = spawn_follower(&ring);
    let per_thread = 2500u64;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (log, rec) = (&log, &rec);
            s.spawn(move || {
                for n in 0..per_thread {
                    if t == 0 && n == 500 {
                        // Begun and filled, never published.
                        rec.log_unpublished_for_test("demo record");
                    }
                    log(t, n);
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    let torn = info_json(&ring)["torn"].clone();
    rec.close();
    let mut out = Vec::new();
    finish(&mut follower.0, &lines, &mut out);

    let proof = prove(&out, 2);
    assert!(
        proof.missed.is_empty(),
        "a 1 MiB ring cannot lose records here"
    );
    assert!(proof.records.iter().all(|r| r.get("gap_before").is_none()));
    let counters = common::counters_of(&proof.records);
    assert_eq!(counters.len() as u64, 2 * per_thread, "records printed");
    assert_proven(&proof, "follower past a torn record");
    assert_eq!(torn, 1, "the ring counts the one torn record");
}
