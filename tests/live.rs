//! Reading a ring while its writer runs: snapshots of a ring whose chunks
//! are reused constantly hold only intact records (`shm-layout.md`, 8.4,
//! "Reading a live ring"), and `read --follow` prints every record once, in
//! order, and ends by itself when the writer does.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_seq_increasing, by_thread, check_runs, counters_of, forward_lines, info_json,
    is_epilogue, read_json, run, stderr, stdout, wait_or_fail, Reaper, TempDir,
};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;

/// The tests of this file run one at a time: each loads both cores on
/// purpose, and together they would only make each other's timing odd.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_for_file(path: &Path, writer: &mut Child) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        if let Some(status) = writer.try_wait().expect("try_wait") {
            panic!("the writer ended ({status:?}) before its ring appeared");
        }
        assert!(Instant::now() < deadline, "ring {path:?} never appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn spawn_demo(ring: &Path, args: &[&str]) -> Reaper {
    let child = common::blackbox()
        .arg("demo")
        .arg("--ring")
        .arg(ring)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    Reaper(child)
}

/// Checks one snapshot of a live ring: valid demo records only, each
/// thread's run whole (see [`check_runs`]), nothing corrupt. Returns the
/// sum of each writer's newest `seq`: it grows as the writers write.
fn check_snapshot(records: &[Value], threads: u64) -> Option<u64> {
    check_runs(records, threads);
    for r in records {
        if let Some(gap) = r.get("gap_before") {
            assert_eq!(gap["corrupt"], 0, "a live snapshot reported damage: {r}");
        }
    }
    let mut newest = std::collections::BTreeMap::new();
    for r in records {
        newest.insert(r["writer"].as_u64().unwrap(), r["seq"].as_u64().unwrap());
    }
    (!records.is_empty()).then(|| newest.values().sum())
}

/// Two threads write as fast as they can into a 64 KiB ring, going round
/// it thousands of times per second, while `read`, `info` and `verify` run
/// against it from other processes.
#[test]
fn reading_a_wrapping_live_ring_gives_only_intact_records() {
    let _serial = serial();
    let dir = TempDir::new("live-wrap");
    let ring = dir.path("live.ring");
    let mut writer = spawn_demo(
        &ring,
        &[
            "--capacity",
            "64KiB",
            "--threads",
            "2",
            "--records",
            "1000000000",
        ],
    );
    wait_for_file(&ring, &mut writer.0);

    let mut last_seqs = Vec::new();
    let mut first_seen_wrap = false;
    for i in 0..30 {
        let records = read_json(&ring, &[]);
        if let Some(seq) = check_snapshot(&records, 2) {
            last_seqs.push(seq);
        }
        let info = info_json(&ring);
        assert_eq!(info["state"], "running", "{info}");
        assert!(info["cause"].is_null(), "{info}");
        assert_eq!(info["corrupt"], 0, "{info}");
        let chunks = info["chunks"].as_u64().unwrap();
        first_seen_wrap |= info["chunk_tickets"].as_u64().unwrap() > 2 * chunks;
        if i % 5 == 4 {
            let v = run(&["verify", ring.to_str().unwrap()]);
            assert!(
                v.status.success(),
                "verify on the live ring exited {:?}: {}{}",
                v.status,
                stdout(&v),
                stderr(&v)
            );
        }
    }
    assert!(
        writer.0.try_wait().unwrap().is_none(),
        "the writer should still run"
    );
    writer.0.kill().expect("SIGKILL the writer");
    let status = wait_or_fail(&mut writer.0, PATIENCE, "killed writer");
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");

    // The test did what it meant to: the ring wrapped while it was read,
    // and the reads saw it move.
    assert!(first_seen_wrap, "the ring never wrapped during the reads");
    assert!(
        last_seqs.len() >= 25,
        "too many empty snapshots: {last_seqs:?}"
    );
    assert!(
        last_seqs.first() < last_seqs.last(),
        "the window did not move between reads: {last_seqs:?}"
    );

    let records = read_json(&ring, &[]);
    check_snapshot(&records, 2);
    let info = info_json(&ring);
    assert_eq!(info["state"], "killed", "{info}");
}

/// `read --follow` started as soon as the ring appears, against two
/// threads writing 500 records each at 500 per second, then exiting: it
/// ends by itself and prints every record exactly once, in order.
#[test]
fn follow_prints_every_record_once_and_ends_with_the_writer() {
    let _serial = serial();
    let dir = TempDir::new("live-follow");
    let ring = dir.path("follow.ring");
    let per_thread = 500u64;
    let mut writer = spawn_demo(
        &ring,
        &[
            "--capacity",
            "1MiB",
            "--threads",
            "2",
            "--rate",
            "500",
            "--records",
            &per_thread.to_string(),
            "--die",
            "exit",
        ],
    );
    wait_for_file(&ring, &mut writer.0);
    let follower = common::blackbox()
        .args(["read", ring.to_str().unwrap(), "--json", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn read --follow");
    let mut follower = Reaper(follower);
    let (lines, status, err) = collect_output(&mut follower.0, "read --follow");
    assert!(status.success(), "read --follow failed: {status:?}: {err}");
    let writer_status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(writer_status.success(), "demo failed: {writer_status:?}");

    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    for r in &records {
        assert!(
            r.get("missed").is_none(),
            "a 1 MiB ring must not lose records: {r}"
        );
    }
    assert_seq_increasing(&records);
    // The writer exited cleanly: its epilogue is the last record followed.
    let last = records.last().expect("follow printed nothing");
    assert!(
        is_epilogue(last),
        "the last record followed is not the epilogue: {last}"
    );
    let counters = counters_of(&records);
    let runs = by_thread(&counters);
    let want: Vec<u64> = (0..per_thread).collect();
    for t in 0..2u64 {
        let got = runs.get(&t).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "thread {t}: follow printed {} records, not {per_thread}",
            got.len()
        );
        assert_eq!(
            got, want,
            "thread {t}: records missing, repeated or out of order"
        );
    }
    assert_eq!(
        runs.len(),
        2,
        "records from unknown threads: {:?}",
        runs.keys()
    );
    // The same window, read after the fact, agrees: the same records, each
    // writer's in the same order (across writers the follower prints each
    // poll's records by time, and a record published late comes later). A
    // live ring's clock calibration improves with each heartbeat
    // (`shm-layout.md`, 8.5), so the times may differ by microseconds: they
    // are compared apart, within a millisecond.
    let after = read_json(&ring, &[]);
    // Nanoseconds of the day of an RFC 3339 time (both reads are of the
    // same seconds).
    let nanos = |r: &Value| -> i128 {
        let ts = r["ts"].as_str().expect("ts");
        let hms: Vec<i128> = ts[11..19].split(':').map(|x| x.parse().unwrap()).collect();
        let frac: i128 = ts[20..ts.len() - 1].parse().unwrap();
        ((hms[0] * 60 + hms[1]) * 60 + hms[2]) * 1_000_000_000 + frac
    };
    let by_writer = |rs: &[Value]| {
        let mut m: std::collections::BTreeMap<u64, Vec<(Value, i128)>> = Default::default();
        for r in rs {
            let mut rest = r.clone();
            rest["ts"].take();
            m.entry(r["writer"].as_u64().unwrap())
                .or_default()
                .push((rest, nanos(r)));
        }
        m
    };
    let (want, got) = (by_writer(&after), by_writer(&records));
    for (w, rs) in &want {
        let printed = got.get(w).map_or(&[][..], |v| &v[..]);
        let first_difference = rs
            .iter()
            .zip(printed)
            .position(|(a, b)| a.0 != b.0 || (a.1 - b.1).abs() > 1_000_000)
            .map(|i| {
                format!(
                    "first at #{i}: window {:?} / followed {:?}",
                    rs[i], printed[i]
                )
            });
        assert!(
            rs.len() == printed.len() && first_difference.is_none(),
            "writer {w}: follow output differs from the final window ({} records, {} \
             followed; {})",
            rs.len(),
            printed.len(),
            first_difference.unwrap_or_default()
        );
    }
    assert_eq!(want.len(), got.len(), "writers followed and in the window");
    assert_eq!(info_json(&ring)["state"], "exited");
}

/// Waits for `child` (stdout and stderr piped) and returns its output.
fn collect_output(child: &mut Child, what: &str) -> (String, ExitStatus, String) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let status = wait_or_fail(child, PATIENCE, what);
    let out = out_thread.join().unwrap().expect("read stdout");
    let err = err_thread.join().unwrap().expect("read stderr");
    (out, status, err)
}

/// `read --follow` started while a record is being written (a writer
/// thread preempted mid-append, its record marked but not yet published):
/// the follower must print that record once it is published, not skip it.
/// The writer (eight threads on two cores) is frozen with SIGSTOP at an
/// instant where `info` counts such a record, the followers start and print
/// their first window, and the writer goes on with SIGCONT: deterministic
/// once the record in flight is caught.
#[test]
fn follow_started_mid_stream_misses_nothing() {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;

    let _serial = serial();
    let dir = TempDir::new("live-follow-mid");
    let ring = dir.path("mid.ring");
    let (threads, per_thread) = (8u64, 10_000u64);

    // Freeze the writer until a window shows a record in flight (counted
    // torn while the writer lives). A writer that finishes first is started
    // again.
    let mut caught = None;
    let mut attempts = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    for _run in 0..5 {
        let _ = std::fs::remove_file(&ring);
        let mut writer = spawn_demo(
            &ring,
            &[
                "--capacity",
                "16MiB",
                "--threads",
                &threads.to_string(),
                "--records",
                &per_thread.to_string(),
                "--die",
                "exit",
            ],
        );
        wait_for_file(&ring, &mut writer.0);
        let pid = Pid::from_raw(writer.0.id() as i32);
        loop {
            assert!(Instant::now() < deadline, "no hole caught within 40 s");
            if kill(pid, Signal::SIGSTOP).is_err() {
                break;
            }
            match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).expect("waitpid") {
                WaitStatus::Stopped(..) => {}
                _ => break, // it finished first (and is reaped now)
            }
            attempts += 1;
            let in_flight = info_json(&ring)["torn"].as_u64().unwrap_or(0);
            if in_flight > 0 {
                let hole = in_flight;
                caught = Some((writer, pid, hole));
                break;
            }
            kill(pid, Signal::SIGCONT).expect("SIGCONT the writer");
            std::thread::sleep(Duration::from_millis(1));
        }
        if caught.is_some() {
            break;
        }
    }
    let (mut writer, pid, hole) = caught.expect("five writers finished before a hole was caught");
    eprintln!("{hole} record(s) in flight caught after {attempts} freezes");
    let mut followers = Vec::new();
    for _ in 0..2 {
        let mut child = common::blackbox()
            .args(["read", ring.to_str().unwrap(), "--json", "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn read --follow");
        let lines = forward_lines(child.stdout.take().unwrap());
        followers.push((Reaper(child), lines));
    }
    // Each follower's first line means it has printed its first window.
    let mut outputs: Vec<Vec<String>> = Vec::new();
    for (k, (_, lines)) in followers.iter().enumerate() {
        let first = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("follower {k} printed nothing ({e:?})"));
        outputs.push(vec![first]);
    }
    kill(pid, Signal::SIGCONT).expect("SIGCONT the writer");
    let writer_status = wait_or_fail(&mut writer.0, PATIENCE, "demo");
    assert!(writer_status.success(), "demo failed: {writer_status:?}");

    // The ring itself holds every record: whatever a follower misses, it
    // missed on its own.
    let all = read_json(&ring, &[]);
    let want: Vec<u64> = (0..per_thread).collect();
    for (t, ns) in by_thread(&counters_of(&all)) {
        assert!(ns == want, "thread {t}: the final window lacks records");
    }
    assert_eq!(
        counters_of(&all).len() as u64,
        threads * per_thread,
        "final window"
    );

    let mut failures = Vec::new();
    for (k, (mut f, lines)) in followers.into_iter().enumerate() {
        let status = wait_or_fail(&mut f.0, PATIENCE, "read --follow");
        let mut err = String::new();
        f.0.stderr.take().unwrap().read_to_string(&mut err).ok();
        assert!(status.success(), "follower {k} failed: {status:?}: {err}");
        outputs[k].extend(lines.iter());
        let records: Vec<Value> = outputs[k]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        assert_seq_increasing(&records);
        let runs = by_thread(&counters_of(&records));
        for t in 0..threads {
            let got = runs.get(&t).map_or(&[][..], |v| &v[..]);
            let mut seen = vec![0u32; per_thread as usize];
            for &n in got {
                seen[n as usize] += 1;
            }
            let missing: Vec<u64> = (0..per_thread).filter(|&n| seen[n as usize] == 0).collect();
            let repeated: Vec<u64> = (0..per_thread).filter(|&n| seen[n as usize] > 1).collect();
            if !missing.is_empty() || !repeated.is_empty() {
                failures.push(format!(
                    "follower {k}, thread {t}: missing {:?}, repeated {:?}",
                    &missing[..missing.len().min(10)],
                    &repeated[..repeated.len().min(10)]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "followers started while {hole} record(s) were being written lost or repeated \
         records:\n{}",
        failures.join("\n")
    );
}

/// A ring whose chunk table changes under the reader faster than any
/// writer could change it: a thread of this test rewrites every table word
/// and the cursor with new states and visit counts (claims, skips, seals,
/// reclaims) while `info`, `verify` and `read` copy the ring. The reader
/// must answer, never panic: invariant 5, "a ring file may be ... still
/// being written".
#[test]
fn reader_survives_a_chunk_table_racing_past_its_copy() {
    let _serial = serial();
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = TempDir::new("live-table-race");
    let ring = dir.path("race.ring");
    let rec = blackbox_recorder::Recorder::builder(&ring)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .expect("create ring");
    for n in 0..2000u64 {
        rec.log(
            blackbox_recorder::Level::Info,
            "blackbox::demo",
            "demo record",
            &[
                blackbox_recorder::Field::new("t", 0u64),
                blackbox_recorder::Field::new("n", n),
            ],
        )
        .expect("append");
    }
    let chunks = rec.capacity() / u64::from(rec.chunk_size());
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = Arc::clone(&stop);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&ring)
            .expect("open ring for writing");
        std::thread::spawn(move || {
            use blackbox_recorder::layout::{table_word, HEADER_LEN, H_NEXT_TICKET};
            let mut steps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..chunks {
                    let word = table_word((steps + i) % 4, steps + i % 7);
                    file.write_at(&word.to_le_bytes(), HEADER_LEN as u64 + 8 * i)
                        .expect("write a table word");
                }
                file.write_at(&(steps * chunks).to_le_bytes(), H_NEXT_TICKET as u64)
                    .expect("write the cursor");
                steps += 1;
            }
            steps
        })
    };
    let path = ring.to_str().unwrap();
    // Stop at the first failure; a reader that copes reads 90 times.
    let mut problems = Vec::new();
    let mut reads = 0;
    while reads < 90 && problems.is_empty() {
        let i = reads;
        reads += 1;
        let args: &[&str] = match i % 3 {
            0 => &["info", path, "--json"],
            1 => &["verify", path],
            _ => &["read", path, "--json"],
        };
        let o = run(args);
        let err = stderr(&o);
        // Exit 0 (or 1 from verify) with a sane answer; never a panic.
        if o.status.code() == Some(101) || err.contains("panicked") || o.status.code().is_none() {
            problems.push(format!(
                "`blackbox {}` exited {:?}: {}",
                args.join(" "),
                o.status,
                err.lines().take(3).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let steps = racer.join().expect("racer thread");
    drop(rec);
    assert!(steps > 0, "the racer never changed the table");
    assert!(
        problems.is_empty(),
        "read {reads} of a ring whose chunk table changed during the copy failed: {}",
        problems.join("\n")
    );
}

/// `snapshot(reason)` and events at the snapshot level bump the trigger
/// in the live ring's header; the reader finds the reason (shm-layout.md,
/// 9.4). Events below the level, and every level without one, do not.
#[test]
fn snapshot_requests_bump_the_trigger_and_carry_a_reason() {
    let dir = TempDir::new("live-snapshot");
    let path = dir.path("snap.ring");
    let rec = blackbox_recorder::Recorder::builder(&path)
        .capacity(64 << 10)
        .heartbeat(None)
        .snapshot_level(Some(blackbox_recorder::Level::Error))
        .create()
        .unwrap();
    let look = || {
        let ring = blackbox_reader::Ring::open(&path).unwrap();
        let header = ring.header().clone();
        let reason = ring.snapshot().unwrap().snapshot_reason(&header);
        (header.snapshot_trigger, reason)
    };
    assert_eq!(look(), (0, None));
    rec.log(blackbox_recorder::Level::Warn, "db", "slowish", &[])
        .unwrap();
    assert_eq!(look(), (0, None), "WARN is below the snapshot level");
    rec.snapshot("slow request").unwrap();
    assert_eq!(look(), (1, Some("slow request".to_string())));
    rec.log(blackbox_recorder::Level::Error, "db", "timeout", &[])
        .unwrap();
    assert_eq!(look(), (2, Some("ERROR db: timeout".to_string())));
    rec.log(blackbox_recorder::Level::Info, "db", "fine", &[])
        .unwrap();
    assert_eq!(look(), (2, Some("ERROR db: timeout".to_string())));
    let info = info_json(&path);
    assert_eq!(info["snapshot_requests"], 2, "{info}");
    assert_eq!(info["snapshot_reason"], "ERROR db: timeout", "{info}");
    let text = stdout(&run(&["info", path.to_str().unwrap()]));
    assert!(
        text.contains("snapshots 2 asked for; the last: \"ERROR db: timeout\""),
        "{text}"
    );
    drop(rec);

    let quiet = dir.path("quiet.ring");
    let rec = blackbox_recorder::Recorder::builder(&quiet)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    rec.log(blackbox_recorder::Level::Error, "db", "timeout", &[])
        .unwrap();
    let ring = blackbox_reader::Ring::open(&quiet).unwrap();
    assert_eq!(
        ring.header().snapshot_trigger,
        0,
        "no snapshot level: no request"
    );
}
