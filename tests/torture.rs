//! SIGKILL torture: a multi-threaded writer killed at random instants, many
//! times, on rings from 16 KiB (chunks reused constantly) to 1 MiB, with
//! one to eight threads on this machine's two cores. After every kill
//! another process must recover a consistent window in which nothing
//! committed was destroyed: each thread's records form one run that ends at
//! its last append reported as returned, and a jump in a thread's counter
//! is exactly a rise of its `dropped` field (appends dropped, and counted,
//! when no chunk was free). No loss is tolerated.
//!
//! Replay a failure with the seed it prints:
//! `BLACKBOX_TORTURE_SEED=<seed> cargo test -p blackbox --test torture -- --nocapture`.
//! `BLACKBOX_TORTURE_ITERS=<n>` changes the number of iterations (default
//! 60), `BLACKBOX_TORTURE_BUDGET_S=<s>` the seconds after which no new
//! iteration starts (default 40, 0 for none), `BLACKBOX_TORTURE_MAX_KIB`
//! the largest ring (default 1024).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    check_runs, forward_lines, info_json, parse_report, read_json, verify_ok, wait_or_fail,
    wait_until, Reaper, TempDir,
};

const PATIENCE: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;
const DEFAULT_ITERS: u64 = 60;
/// No new iteration starts after this much time (unless
/// `BLACKBOX_TORTURE_BUDGET_S` says otherwise), so a slow machine still
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
/// check. Panics on any violation; returns the appends dropped.
fn torture_once(ring: &Path, case: &Case) -> u64 {
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

fn check_killed_ring(ring: &Path, threads: u64, lines: &[String]) -> u64 {
    verify_ok(ring);
    let records = read_json(ring, &[]);
    assert!(!records.is_empty(), "no record recovered");
    // Strict: every jump in a thread's run is its own counted drop.
    let runs = check_runs(&records, threads);

    // Every reported (t, n): the append returned, so the record is in the
    // window unless its chunk was reused; either way, the thread's run in
    // the window goes at least up to n.
    let mut reported: BTreeMap<u64, u64> = BTreeMap::new();
    for line in lines {
        let (t, n) = parse_report(line);
        assert!(t < threads, "report of thread {t}: {line:?}");
        let e = reported.entry(t).or_default();
        *e = (*e).max(n);
    }
    for (&t, &n) in &reported {
        let Some(ns) = runs.threads.get(&t) else {
            continue; // all of its chunks were reused
        };
        let last = *ns.last().unwrap();
        assert!(
            n <= last,
            "thread {t}: record {n} was reported appended, but the thread's run in the window \
             is {}..={last}: committed records destroyed",
            ns[0]
        );
    }

    let info = info_json(ring);
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["missing"], 0, "{info}");
    assert_eq!(info["program"], "blackbox-demo", "{info}");
    assert_eq!(info["records"], records.len(), "{info}");
    // Drops the threads saw are counted in the ring.
    let seen: u64 = runs.dropped.values().sum();
    assert!(
        info["dropped"].as_u64().unwrap() >= seen,
        "threads saw {seen} drops, the ring counts fewer: {info}"
    );
    // At most one torn record per thread: the append each was in when the
    // SIGKILL landed.
    let torn = info["torn"].as_u64().unwrap();
    assert!(
        torn <= threads,
        "{torn} torn records from {threads} threads: {info}"
    );
    info["dropped"].as_u64().unwrap()
}

#[test]
fn random_sigkill_of_multithreaded_writer() {
    let seed = env_u64("BLACKBOX_TORTURE_SEED").unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    });
    let iters = env_u64("BLACKBOX_TORTURE_ITERS").unwrap_or(DEFAULT_ITERS);
    // Rings of 16 KiB up to BLACKBOX_TORTURE_MAX_KIB (default 1 MiB).
    let max_shift =
        (env_u64("BLACKBOX_TORTURE_MAX_KIB").unwrap_or(1024).max(16) / 16).ilog2() as u64;
    let budget = match env_u64("BLACKBOX_TORTURE_BUDGET_S") {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => Some(TIME_BUDGET),
    };
    eprintln!("torture: seed {seed}, {iters} iterations (replay: BLACKBOX_TORTURE_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("torture");
    let start = Instant::now();
    let mut done = 0;
    let mut failures = Vec::new();
    let mut dropped = 0;
    for iter in 0..iters {
        if budget.is_some_and(|b| start.elapsed() > b) {
            eprintln!("torture: time budget spent after {done} iterations");
            break;
        }
        let case = Case {
            capacity_kib: 16 << rng.range(0, max_shift), // 16 KiB ..= the largest
            threads: [1, 2, 4, 8][rng.range(0, 3) as usize],
            wait_ms: rng.range(1, 50),
        };
        let what = format!(
            "iteration {iter}: {} KiB ring, {} threads, killed {} ms after the first report",
            case.capacity_kib, case.threads, case.wait_ms
        );
        let ring = dir.path(&format!("t{iter}.ring"));
        match std::panic::catch_unwind(|| torture_once(&ring, &case)) {
            Ok(d) => dropped += d,
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
        "torture: {done} iterations in {:.1} s, {} failed, {dropped} appends dropped (counted)",
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

/// A writer that stalls can never destroy another writer's records, and is
/// never robbed of its own chunk (`shm-layout.md`, 8.3). Thread 0 of the
/// demo stops right after it claims a chunk, while three other threads
/// take the ring's cursor round three times (synchronised on the cursor,
/// not on time); then it resumes, writes three records more and idles,
/// keeping its chunk, while the others take the cursor round once more;
/// then the process is SIGKILLed. Every thread's run must be whole (no
/// jump but its own counted drops), and thread 0's records from before and
/// after the stall, in the chunk it kept, must still be there. The test
/// checks that it tested something: the cursor really went round while
/// thread 0 held its chunk (more tickets handed out since the stall than
/// the ring has chunks, as the ring's own header counts them), so every
/// other chunk was reused under it.
#[test]
fn a_stalled_writer_keeps_its_chunk_and_destroys_nothing() {
    let dir = TempDir::new("torture-stall");
    let ring = dir.path("stall.ring");
    let mut writer = Reaper(
        common::blackbox()
            .arg("demo")
            .arg("--ring")
            .arg(&ring)
            .args(["--capacity", "16KiB", "--threads", "4"])
            .args(["--records", "1000000000", "--report-every", "1"])
            .args([
                "--stall-thread",
                "0",
                "--stall-after",
                "20",
                "--stall-laps",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo"),
    );
    let rx = forward_lines(writer.0.stdout.take().unwrap());
    let next = |what: &str| {
        rx.recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("demo never said {what} ({e:?})"))
    };
    // "stalled 0 N TICKETS", then "resumed 0 N TICKETS" once the others
    // went round three times.
    let (stalled_n, from) = loop {
        let line = next("stalled");
        if let Some(rest) = line.strip_prefix("stalled 0 ") {
            let v: Vec<u64> = rest.split(' ').map(|w| w.parse().unwrap()).collect();
            break (v[0], v[1]);
        }
    };
    let until = loop {
        let line = next("resumed");
        if let Some(rest) = line.strip_prefix("resumed 0 ") {
            break rest.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
        }
    };
    // The chunk count from the ring itself, not from the demo's arithmetic.
    let chunks = info_json(&ring)["chunks"]
        .as_u64()
        .expect("info --json: chunks");
    assert!(chunks > 1, "a ring of {chunks} chunk(s) cannot be lapped");
    assert!(
        until.saturating_sub(from) > chunks,
        "no lap while thread 0 was stalled: tickets {from} -> {until}, {chunks} chunks"
    );
    assert!(
        until.saturating_sub(from) >= 3 * chunks,
        "--stall-laps 3: tickets {from} -> {until}, {chunks} chunks"
    );
    // Thread 0 appends three more and idles; the others take the cursor
    // round once more (the ring's ticket count is the event), then the kill.
    loop {
        if next("idle").starts_with("idle 0 ") {
            break;
        }
    }
    let tickets = || {
        info_json(&ring)["chunk_tickets"]
            .as_u64()
            .expect("info --json: chunk_tickets")
    };
    let idle = tickets();
    let lapped = wait_until(PATIENCE, "another lap after thread 0 went idle", || {
        let now = tickets();
        (now > idle + chunks).then_some(now)
    });
    writer.0.kill().expect("SIGKILL the demo");
    let status = wait_or_fail(&mut writer.0, PATIENCE, "killed demo");
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");

    verify_ok(&ring);
    let records = read_json(&ring, &[]);
    let runs = check_runs(&records, 4);
    let zero = runs
        .threads
        .get(&0)
        .expect("thread 0 has records in the window");
    assert!(
        zero.contains(&stalled_n),
        "thread 0's record {stalled_n}, written into the chunk it held while stalled, is gone; \
         its run is {zero:?}"
    );
    assert!(
        zero.last().unwrap() >= &(stalled_n + 3),
        "thread 0's records after resuming are missing: {zero:?}"
    );
    // Not every other thread need have records left: on two cores under
    // load one of them can be starved while the others reuse all of its
    // sealed chunks (the ring's ordinary eviction). Some must.
    assert!(
        runs.threads.keys().any(|&t| t != 0),
        "no other thread's records in the window: {:?}",
        runs.threads.keys().collect::<Vec<_>>()
    );
    let info = info_json(&ring);
    assert_eq!(info["corrupt"], 0, "{info}");
    assert_eq!(info["missing"], 0, "{info}");
    // The dead ring's cursor agrees: at least the tickets seen live.
    let tickets = info["chunk_tickets"]
        .as_u64()
        .expect("info --json: chunk_tickets");
    assert!(
        tickets >= lapped && lapped > until,
        "the ring's cursor says {tickets} tickets; {from} at the stall, {until} at the \
         resume, {lapped} a lap after the idle ({chunks} chunks)"
    );
}
