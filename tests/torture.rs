//! SIGKILL torture: a multi-threaded writer killed at random instants, many
//! times, on rings from 4 KiB (wrapping constantly, lapped appends) to
//! 1 MiB. After every kill another process must recover a consistent window
//! that holds every record the writer reported as appended (unless newer
//! records overwrote it), with no false record.
//!
//! Replay a failure with the seed it prints:
//! `BLACKBOX_TORTURE_SEED=<seed> cargo test -p blackbox --test torture -- --nocapture`.
//! `BLACKBOX_TORTURE_ITERS=<n>` changes the number of iterations (default 60).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    check_runs, forward_lines, info_json, lapped_gap_after, parse_report, read_json, verify_ok,
    wait_or_fail, Reaper, TempDir,
};

const PATIENCE: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;
const DEFAULT_ITERS: u64 = 60;
/// No new iteration starts after this much time, so a slow machine still
/// finishes in bounded time (the iterations done are printed).
const TIME_BUDGET: Duration = Duration::from_secs(40);

/// xorshift64*: small, deterministic for a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "(non-text panic)".to_string()
    }
}

struct Case {
    capacity_kib: u64,
    threads: u64,
    wait_ms: u64,
}

/// One iteration: start, wait for the first report, wait `wait_ms`, kill,
/// check. Panics on any violation; returns the tolerated lapped-writer
/// losses.
fn torture_once(ring: &Path, case: &Case) -> Vec<String> {
    let mut child = Reaper(
        common::blackbox()
            .arg("demo")
            .arg("--ring")
            .arg(ring)
            .args(["--capacity", &format!("{}KiB", case.capacity_kib)])
            .args(["--threads", &case.threads.to_string()])
            .args(["--records", "1000000000", "--report-every", "64"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo"),
    );
    let rx = forward_lines(child.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    // The first report means the ring exists and holds a record; the random
    // wait starts from there.
    match rx.recv_timeout(PATIENCE) {
        Ok(line) => lines.push(line),
        Err(e) => panic!("demo never reported a record ({e:?})"),
    }
    std::thread::sleep(Duration::from_millis(case.wait_ms));
    child.0.kill().expect("SIGKILL the demo");
    let status = wait_or_fail(&mut child.0, PATIENCE, "killed demo");
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the demo should have died of our SIGKILL: {status:?}"
    );
    // Reports still in the pipe were written before the kill: they count.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("demo's stdout did not close"),
        }
    }
    check_killed_ring(ring, case.threads, &lines)
}

fn check_killed_ring(ring: &Path, threads: u64, lines: &[String]) -> Vec<String> {
    verify_ok(ring);
    let records = read_json(ring, &[]);
    assert!(!records.is_empty(), "no record recovered");
    let runs = check_runs(&records, threads);

    // Every reported (t, n): the append returned, so the record is in the
    // window unless newer records pushed it out; either way, the thread's
    // run in the window goes at least up to n.
    let mut reported: BTreeMap<u64, u64> = BTreeMap::new();
    for line in lines {
        let (t, n) = parse_report(line);
        assert!(t < threads, "report of thread {t}: {line:?}");
        let e = reported.entry(t).or_default();
        *e = (*e).max(n);
    }
    let mut losses = runs.lapped_losses;
    for (&t, &n) in &reported {
        let Some(ns) = runs.threads.get(&t) else {
            continue; // all of its records were pushed out of the window
        };
        let last = *ns.last().unwrap();
        if n > last {
            let text = format!(
                "thread {t}: record {n} was reported appended, but the thread's run in the \
                 window is {}..={last}",
                ns[0]
            );
            assert!(
                lapped_gap_after(&records, runs.last_index[&t]),
                "{text}, and no lapped writer explains it"
            );
            losses.push(text);
        }
    }

    let info = info_json(ring);
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["program"], "blackbox-demo", "{info}");
    assert_eq!(info["records"], records.len(), "{info}");
    // At most one torn record per thread: the append each was in when the
    // SIGKILL landed.
    let torn = info["torn"].as_u64().unwrap();
    assert!(
        torn <= threads,
        "{torn} torn records from {threads} threads: {info}"
    );
    losses
}

#[test]
fn random_sigkill_of_multithreaded_writer() {
    let seed = env_u64("BLACKBOX_TORTURE_SEED").unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    });
    let iters = env_u64("BLACKBOX_TORTURE_ITERS").unwrap_or(DEFAULT_ITERS);
    eprintln!("torture: seed {seed}, {iters} iterations (replay: BLACKBOX_TORTURE_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("torture");
    let start = Instant::now();
    let mut done = 0;
    let mut failures = Vec::new();
    let mut tolerated = 0;
    for iter in 0..iters {
        if start.elapsed() > TIME_BUDGET {
            eprintln!("torture: time budget spent after {done} iterations");
            break;
        }
        let case = Case {
            capacity_kib: 4 << rng.range(0, 8), // 4 KiB ..= 1 MiB
            threads: rng.range(2, 4),
            wait_ms: rng.range(1, 50),
        };
        let what = format!(
            "iteration {iter}: {} KiB ring, {} threads, killed {} ms after the first report",
            case.capacity_kib, case.threads, case.wait_ms
        );
        let ring = dir.path(&format!("t{iter}.ring"));
        match std::panic::catch_unwind(|| torture_once(&ring, &case)) {
            Ok(losses) => {
                for l in &losses {
                    eprintln!("torture: {what}: tolerated (lapped writer): {l}");
                }
                tolerated += losses.len();
            }
            Err(e) => {
                let what = format!("{what}: {}", panic_text(&*e));
                eprintln!("torture: FAILED {what}");
                // Keep the evidence out of the directory removed on drop.
                let keep =
                    std::env::temp_dir().join(format!("bbx-torture-fail-{seed}-{iter}.ring"));
                if std::fs::copy(&ring, &keep).is_ok() {
                    eprintln!("torture: failing ring copied to {}", keep.display());
                }
                failures.push(what);
            }
        }
        let _ = std::fs::remove_file(&ring);
        done += 1;
    }
    eprintln!(
        "torture: {done} iterations in {:.1} s, {} failed, {tolerated} losses to lapped writers",
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(done > 0 || iters == 0, "no iteration ran");
    assert!(
        failures.is_empty(),
        "{} of {done} iterations failed (replay: BLACKBOX_TORTURE_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A lapped writer is reported, never shown. A writer preempted between
/// its reservation and its publication for a whole lap of the ring writes
/// its stale bytes over newer, already published records (the documented
/// limit of an overwrite ring with one-atomic reservations, shm-layout.md
/// section 7.3). Three threads on two cores write as fast as they can into
/// a 1 MiB ring, so this happens, while the window is read again and again:
/// every record shown must be intact (check_runs), every break in a
/// thread's run must be reported as `overwritten` by a lapped writer, and
/// nothing may be counted `corrupt`.
#[test]
fn lapped_writer_damage_is_reported_never_shown() {
    let dir = TempDir::new("torture-lapped");
    let ring = dir.path("lapped.ring");
    let mut writer = Reaper(
        common::blackbox()
            .arg("demo")
            .arg("--ring")
            .arg(&ring)
            .args(["--capacity", "1MiB", "--threads", "3"])
            .args(["--records", "1000000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo"),
    );
    let deadline = Instant::now() + PATIENCE;
    while !ring.exists() {
        if let Some(status) = writer.0.try_wait().unwrap() {
            panic!("demo ended ({status:?}) before its ring appeared");
        }
        assert!(Instant::now() < deadline, "ring never appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut losses = 0;
    for _ in 0..40 {
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        let records = read_json(&ring, &[]);
        // check_runs fails on any break not reported as overwritten.
        losses += check_runs(&records, 3).lapped_losses.len();
        let info = info_json(&ring);
        assert_eq!(
            info["state"], "running",
            "the writer should still run: {info}"
        );
        assert_eq!(
            info["corrupt"], 0,
            "damage not explained by the lap log: {info}"
        );
    }
    drop(writer);
    eprintln!("lapped-writer losses seen and reported as overwritten: {losses}");
}
