//! Real writer processes that really die, read back by another process.
//!
//! Each test starts a writer (the `blackbox demo` binary, or this test
//! binary re-executed as a writer), lets it die (SIGKILL from itself or from
//! outside, or a clean exit), and then recovers the ring with the
//! `blackbox` binary in a separate process: invariant 1 (nothing committed
//! is lost), 2 (a torn record costs only itself), 3 (order, gaps reported)
//! and 4 (death is known: state and cause).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use blackbox_recorder::{Field, Level, Recorder};
use common::{
    assert_contiguous, assert_seq_increasing, by_thread, check_runs, counter, counters_of,
    forward_lines, info_json, is_epilogue, parse_report, read_json, verify_ok, wait_or_fail,
    Reaper, TempDir,
};
use serde_json::Value;

/// Generous bound for anything a child does; a loaded 2-core machine stays
/// far below it, and a hang fails with a message instead of blocking CI.
const PATIENCE: Duration = Duration::from_secs(60);

const SIGKILL: i32 = 9;

/// Receives every remaining line until the child's stdout closes.
fn drain(rx: &Receiver<String>, into: &mut Vec<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => into.push(line),
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => panic!("child's stdout did not close"),
        }
    }
}

fn demo(ring: &Path, args: &[&str]) -> Command {
    let mut cmd = common::blackbox();
    cmd.arg("demo").arg("--ring").arg(ring).args(args);
    cmd
}

/// Runs a single-thread demo of `n` records to completion and checks the
/// window holds exactly records 0..n in order.
fn run_demo_and_check_all(ring: &Path, n: u64, die: &str) -> (ExitStatus, u32, Value) {
    let mut child = demo(
        ring,
        &[
            "--capacity",
            "1MiB",
            "--records",
            &n.to_string(),
            "--threads",
            "1",
            "--die",
            die,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn demo");
    let pid = child.id();
    let status = wait_or_fail(&mut child, PATIENCE, "demo");

    let records = read_json(ring, &[]);
    // The demo's epilogue comes last, after every counter.
    let last = records.last().expect("no record recovered");
    assert!(
        is_epilogue(last),
        "the last record is not the epilogue: {last}"
    );
    assert_eq!(last["fields"]["how"], die, "{last}");
    let counters = counters_of(&records);
    assert_eq!(
        counters.len() as u64,
        n,
        "recovered {} records of {n} (die {die})",
        counters.len()
    );
    for (i, &(t, k)) in counters.iter().enumerate() {
        assert_eq!((t, k), (0, i as u64), "record #{i} out of order");
    }
    assert_seq_increasing(&records);
    for r in &records {
        assert!(r.get("gap_before").is_none(), "unexpected gap: {r}");
    }
    let info = info_json(ring);
    assert_eq!(info["records"], n + 1, "counters and the epilogue: {info}");
    assert_eq!(info["torn"], 0, "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["pid"], pid, "{info}");
    assert_eq!(info["program"], "blackbox-demo", "{info}");
    assert_eq!(info["first_seq"], records[0]["seq"], "{info}");
    assert_eq!(
        info["last_seq"],
        records[records.len() - 1]["seq"],
        "{info}"
    );
    verify_ok(ring);
    (status, pid, info)
}

#[test]
fn sigkill_after_n_records_loses_nothing() {
    let dir = TempDir::new("crash-kill-self");
    let ring = dir.path("kill.ring");
    let (status, _, info) = run_demo_and_check_all(&ring, 5000, "kill");
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "demo --die kill should die of SIGKILL, got {status:?}"
    );
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
}

#[test]
fn clean_exit_is_reported_as_exited() {
    let dir = TempDir::new("crash-exit");
    let ring = dir.path("exit.ring");
    let (status, _, info) = run_demo_and_check_all(&ring, 3000, "exit");
    assert!(status.success(), "demo --die exit failed: {status:?}");
    assert_eq!(info["state"], "exited", "{info}");
    assert!(info["cause"].is_null(), "clean exit has no cause: {info}");
}

/// The test kills the writer from outside while both threads are writing
/// (2000 records per second each); every record whose append returned (as
/// the child reported on stdout) must be recovered.
#[test]
fn sigkill_from_outside_keeps_every_reported_record() {
    let dir = TempDir::new("crash-kill-outside");
    let ring = dir.path("outside.ring");
    // 4 MiB holds ~43000 demo records: at 4000 records/s the ring does not
    // wrap for ~10 s, far longer than the test lets the writer run.
    let child = demo(
        &ring,
        &[
            "--capacity",
            "4MiB",
            "--records",
            "1000000000",
            "--threads",
            "2",
            "--rate",
            "2000",
            "--report-every",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn demo");
    let mut child = Reaper(child);
    let pid = child.0.id();
    let rx = forward_lines(child.0.stdout.take().unwrap());

    let mut lines = Vec::new();
    let mut progress = [0u64; 2];
    let deadline = Instant::now() + PATIENCE;
    while progress.iter().any(|&n| n < 300) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let (t, n) = parse_report(&line);
                assert!(t < 2, "report from thread {t}: {line:?}");
                progress[t as usize] = progress[t as usize].max(n);
                lines.push(line);
            }
            Err(e) => panic!("demo stopped reporting ({e:?}) at {progress:?}"),
        }
    }
    child.0.kill().expect("SIGKILL the demo");
    let status = wait_or_fail(&mut child.0, PATIENCE, "killed demo");
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");
    // Reports written before the kill are still in the pipe: they count too.
    drain(&rx, &mut lines);
    let reported: Vec<(u64, u64)> = lines.iter().map(|l| parse_report(l)).collect();

    let records = read_json(&ring, &[]);
    // Killed mid-run: counters only, no epilogue.
    let counters: Vec<(u64, u64)> = records.iter().map(counter).collect();
    assert_seq_increasing(&records);
    let last = assert_contiguous(&counters);
    let runs = by_thread(&counters);
    let info = info_json(&ring);
    let wrapped = info["chunk_tickets"].as_u64().unwrap() > info["chunks"].as_u64().unwrap();
    for t in 0..2u64 {
        let ns = runs
            .get(&t)
            .unwrap_or_else(|| panic!("no record of thread {t} recovered"));
        if !wrapped {
            assert_eq!(
                ns[0], 0,
                "thread {t}: the ring never wrapped, yet 0 is gone"
            );
        }
    }
    for &(t, n) in &reported {
        let ns = &runs[&t];
        if n >= ns[0] {
            assert!(
                n <= last[&t],
                "thread {t}: record {n} was reported appended but the window ends at {}",
                last[&t]
            );
        } else {
            assert!(
                wrapped,
                "thread {t}: reported record {n} lost without a wrap"
            );
        }
    }
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
    assert_eq!(info["pid"], pid, "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    // A SIGKILL can land between reserve and publish: at most one torn
    // record per writer thread, at the end of the window.
    assert!(info["torn"].as_u64().unwrap() <= 2, "{info}");
    verify_ok(&ring);
}

/// Two or more threads on a small ring that wraps many times: each thread's
/// records in the window form one contiguous run ending at its last record.
#[test]
fn wrapping_ring_with_four_threads_keeps_contiguous_suffixes() {
    let dir = TempDir::new("crash-wrap");
    let ring = dir.path("wrap.ring");
    let records = 20_000u64;
    let mut child = demo(
        &ring,
        &[
            "--capacity",
            "16KiB",
            "--threads",
            "4",
            "--records",
            &records.to_string(),
            "--die",
            "exit",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn demo");
    let status = wait_or_fail(&mut child, PATIENCE, "demo");
    assert!(status.success(), "{status:?}");

    let recs = read_json(&ring, &[]);
    assert!(recs.len() > 10, "window nearly empty: {}", recs.len());
    let runs = check_runs(&recs, 4);
    // A thread's chunks leave the window oldest first: a thread with records
    // in the window has its last one there.
    for (&t, ns) in &runs.threads {
        let n = *ns.last().unwrap();
        assert_eq!(
            n,
            records - 1,
            "thread {t}: window ends at {n}, not at its last record"
        );
    }
    let info = info_json(&ring);
    let chunks = info["chunks"].as_u64().unwrap();
    assert!(
        info["chunk_tickets"].as_u64().unwrap() > 10 * chunks,
        "the ring should have gone round many times: {info}"
    );
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["torn"], 0, "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["records"], recs.len(), "{info}");
    verify_ok(&ring);
}

fn log_demo(rec: &Recorder, n: u64) {
    rec.log(
        Level::Info,
        "blackbox::demo",
        "demo record",
        &[Field::new("t", 0u64), Field::new("n", n)],
    )
    .expect("append");
}

/// Writes records 0..5, one reserved-but-never-published record, and
/// records 5..10.
fn write_with_hole(rec: &Recorder) {
    for n in 0..5 {
        log_demo(rec, n);
    }
    rec.log_unpublished_for_test("x");
    for n in 5..10 {
        log_demo(rec, n);
    }
}

/// Checks the window of a ring written by [`write_with_hole`]: the ten
/// published records, one after the other (the torn record took no `seq`:
/// the writer's run goes on in a new chunk), and the torn one counted.
fn check_hole(ring: &Path) -> Value {
    let records = read_json(ring, &[]);
    let counters: Vec<(u64, u64)> = records.iter().map(counter).collect();
    let expected: Vec<(u64, u64)> = (0..10).map(|n| (0, n)).collect();
    assert_eq!(counters, expected, "the torn record must cost only itself");
    assert_seq_increasing(&records);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64, "record #{i}: {r}");
        assert!(r.get("gap_before").is_none(), "record #{i}: {r}");
    }
    let info = info_json(ring);
    assert_eq!(info["torn"], 1, "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["records"], 10, "{info}");
    info
}

/// The deterministic torn-record test. A child process cannot be stopped
/// deterministically between reserve and publish, so the writer here is the
/// recorder library in this process with its test hook, which leaves a
/// record reserved and written but never published, exactly as a writer
/// killed between the two steps would. The reading is done by another
/// process.
#[test]
fn torn_record_costs_only_itself() {
    let dir = TempDir::new("crash-torn");
    let ring = dir.path("torn.ring");
    let rec = Recorder::builder(&ring)
        .capacity(64 << 10)
        .program("torn-test")
        .create()
        .expect("create ring");
    write_with_hole(&rec);
    drop(rec);
    let info = check_hole(&ring);
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["program"], "torn-test", "{info}");
}

const TORN_CHILD_ENV: &str = "BLACKBOX_TEST_TORN_CHILD_RING";
const TORN_CHILD_READY: &str = "blackbox-torn-child-ready";

/// The SIGKILL variant: this test binary re-executes itself as the writer
/// (the same test, in child mode), which leaves the hole, says "ready" and
/// waits; the test SIGKILLs it and reads the ring from another process.
#[test]
fn torn_record_then_sigkill() {
    if let Ok(ring) = std::env::var(TORN_CHILD_ENV) {
        // Child mode: write, report, and wait to be killed.
        let rec = Recorder::builder(&ring)
            .capacity(64 << 10)
            .program("torn-child")
            .create()
            .expect("create ring");
        write_with_hole(&rec);
        // libtest may print "test NAME ... " before it on the same line.
        println!("{TORN_CHILD_READY}");
        std::thread::sleep(PATIENCE * 2);
        std::process::exit(3); // never closes the ring cleanly either
    }
    let dir = TempDir::new("crash-torn-kill");
    let ring = dir.path("torn-kill.ring");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["torn_record_then_sigkill", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(TORN_CHILD_ENV, &ring)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-execute the test binary");
    let mut child = Reaper(child);
    let pid = child.0.id();
    let rx = forward_lines(child.0.stdout.take().unwrap());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(TORN_CHILD_READY) => break,
            Ok(_) => {}
            Err(e) => panic!("child writer never got ready ({e:?})"),
        }
    }
    child.0.kill().expect("SIGKILL the child");
    let status = wait_or_fail(&mut child.0, PATIENCE, "killed child");
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");
    let info = check_hole(&ring);
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
    assert_eq!(info["pid"], pid, "{info}");
    assert_eq!(info["program"], "torn-child", "{info}");
    // A torn record in a killed writer's ring is expected, not damage.
    verify_ok(&ring);
}
