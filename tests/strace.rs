//! The README's claim about the append path, checked with strace: once a
//! thread has appended (its first append registers it: `gettid`, `getpid`,
//! `prctl(PR_GET_NAME)`, `sigaltstack` and `mmap`/`mprotect` for its
//! alternate signal stack, once; the test prints them), its appends make no
//! system call at all, including the chunk claims and seals of a ring that
//! wraps many times, through `Recorder::append`, `Recorder::log`,
//! `Recorder::snapshot` and a `tracing` event through `BlackboxLayer`.
//!
//! The test binary re-executes itself under `strace -ff` as the writer (the
//! same test, in child mode: [`CHILD_ENV`] names its ring). The appending
//! thread marks where its steady state begins and ends with a system call
//! nothing else makes, `write(-1, "<marker>", ...)` (EBADF); `-ff` writes
//! each thread's calls to a file of its own, so the appending thread's
//! calls between the two markers are read in order from its file alone.
//! The heartbeat thread is off (it makes calls of its own, on its own
//! thread); the clock is the builder's default, the TSC where the kernel
//! uses it, else `clock_gettime` through the vDSO: neither is a system call
//! strace can see. Where `clock_gettime` has no vDSO path (some
//! clocksources) it is a real system call, and the only one tolerated here,
//! reported, on a ring whose clock is CLOCK_REALTIME.
//!
//! strace is a system package: `.ci/run` installs it
//! (`scripts/apt-install.sh strace`). Without it, or where ptrace is
//! refused, the test says "skipped: why", except under CI (`CI` set),
//! where both are failures (see [`strace_usable`]).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use blackbox_recorder::{BlackboxLayer, Clock, Field, Level, Recorder};
use common::{stderr, stdout, TempDir};
use tracing_subscriber::prelude::*;

/// Child mode: the ring to write.
const CHILD_ENV: &str = "BLACKBOX_STRACE_CHILD_RING";
const STEADY: &str = "bbx-strace-steady";
const DONE: &str = "bbx-strace-done";
/// Records appended in the steady state.
const RECORDS: u64 = 200_000;
/// Ring size: the steady state wraps it many times.
const CAPACITY: u64 = 1 << 20;
const THIS_TEST: &str = "steady_state_appends_make_no_system_call";

/// A system call strace shows with `text` and nothing else makes: the
/// markers of the appending thread's steady state.
fn marker(text: &str) {
    // SAFETY: write(2) on fd -1 reads nothing and fails with EBADF; the
    // buffer is valid for its length anyway.
    let rc = unsafe { libc::write(-1, text.as_ptr().cast(), text.len()) };
    assert_eq!(rc, -1);
}

/// The child: creates the ring, warms one thread up, then appends
/// [`RECORDS`] records between the two markers.
fn child(ring: &Path) {
    let rec = Arc::new(
        Recorder::builder(ring)
            .capacity(CAPACITY)
            .heartbeat(None)
            .program("strace-child")
            .create()
            .expect("create ring"),
    );
    let layer = BlackboxLayer::new(Arc::clone(&rec));
    let subscriber = tracing_subscriber::registry().with(layer);
    let dispatch = tracing::Dispatch::new(subscriber);
    let appender = {
        let rec = Arc::clone(&rec);
        std::thread::Builder::new()
            .name("appender".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || appender(&rec));
            })
            .expect("spawn the appending thread")
    };
    appender.join().expect("the appending thread");
    // After the done marker, outside the appending thread: the proof that
    // the steady state did wrap the ring (claims and seals happened).
    println!(
        "tickets {} chunks {} clock {:?}",
        rec.tickets(),
        rec.capacity() / u64::from(rec.chunk_size()),
        rec.clock()
    );
    Arc::try_unwrap(rec).ok().expect("the last handle").close();
}

/// The appending thread: a warm-up of each kind of append (the first one
/// registers the thread; the tracing callsites register too), then the
/// steady state between the markers. Nothing in the loop allocates or
/// formats: only the appends run there.
fn appender(rec: &Recorder) {
    let span = tracing::info_span!("steady");
    let _entered = span.enter();
    let payload = [0x5au8; 64];
    let all_ok = |what: &str, ok: bool| assert!(ok, "{what} failed: dropped?");
    for n in 0..3u64 {
        all_ok("append", rec.append(&payload).is_ok());
        all_ok(
            "log",
            rec.log(Level::Info, "strace", "warm-up", &[Field::new("n", n)])
                .is_ok(),
        );
        tracing::info!(n, ok = true, "steady event");
        all_ok("snapshot", rec.snapshot("warm-up").is_ok());
    }
    marker(STEADY);
    let mut failed = 0u64;
    for n in 0..RECORDS {
        let ok = match n % 3 {
            0 => rec.append(&payload).is_ok(),
            1 => rec
                .log(
                    Level::Info,
                    "strace",
                    "steady record",
                    &[Field::new("n", n), Field::new("user", "alice")],
                )
                .is_ok(),
            _ => {
                tracing::info!(n, ok = true, "steady event");
                true
            }
        };
        failed += u64::from(!ok);
        if n % 20_000 == 0 {
            failed += u64::from(rec.snapshot("steady").is_err());
        }
    }
    marker(DONE);
    assert_eq!(failed, 0, "appends failed in the steady state");
}

/// Whether strace can be used here. Missing strace, or strace that may
/// not trace (ptrace refused: a container without CAP_SYS_PTRACE or with a
/// seccomp profile that forbids it, or Yama's ptrace_scope 3), makes the
/// test print "skipped: why" on a developer's machine. Under CI both fail:
/// CI installs strace itself (.ci/run), so a missing one is a broken CI
/// script, and a runner that forbids ptrace would leave the README's claim
/// unchecked for good without anyone noticing; such a runner must be given
/// the capability (e.g. `docker run --cap-add SYS_PTRACE`), which is a
/// visible decision, unlike a skip.
fn strace_usable() -> bool {
    let ci = std::env::var_os("CI").is_some();
    let version = Command::new("strace").arg("-V").output();
    if version.is_err() {
        assert!(
            !ci,
            "strace is not installed; under CI it must be: .ci/run installs it with \
             `bash scripts/apt-install.sh strace`"
        );
        println!("skipped: strace not installed (scripts/apt-install.sh strace)");
        return false;
    }
    let probe = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .output()
        .expect("run strace");
    if !probe.status.success() {
        let why = stderr(&probe);
        let refused = why.contains("ptrace") || why.contains("Operation not permitted");
        assert!(
            refused && !ci,
            "strace cannot trace `true` (status {:?}){}: {why}",
            probe.status,
            if refused {
                "; ptrace is refused here, and under CI that is a failure: give the \
                 runner CAP_SYS_PTRACE"
            } else {
                ""
            }
        );
        println!(
            "skipped: strace cannot attach here (ptrace refused): {}",
            why.lines().next().unwrap_or("").trim()
        );
        return false;
    }
    true
}

/// The calls of one thread's `strace -ff` file between the two markers
/// (without them), or None if the file does not hold the steady marker.
/// Lines that report a signal (`--- ...`) or an exit (`+++ ...`) are not
/// calls.
fn between_markers(trace: &str) -> Option<(Vec<String>, Vec<String>)> {
    let lines: Vec<&str> = trace.lines().collect();
    let start = lines.iter().position(|l| l.contains(STEADY))?;
    let end = lines
        .iter()
        .position(|l| l.contains(DONE))
        .unwrap_or_else(|| panic!("the steady marker without the done marker:\n{trace}"));
    assert!(start < end, "markers out of order:\n{trace}");
    let calls = |ls: &[&str]| -> Vec<String> {
        ls.iter()
            .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
            .map(|l| l.to_string())
            .collect()
    };
    Some((calls(&lines[..start]), calls(&lines[start + 1..end])))
}

#[test]
fn steady_state_appends_make_no_system_call() {
    if let Ok(ring) = std::env::var(CHILD_ENV) {
        child(Path::new(&ring));
        return;
    }
    if !strace_usable() {
        return;
    }
    let dir = TempDir::new("strace");
    let ring = dir.path("strace.ring");
    let prefix = dir.path("trace");
    let o = Command::new("strace")
        .args(["-ff", "-qq", "-e", "trace=all", "-o"])
        .arg(&prefix)
        .arg(std::env::current_exe().unwrap())
        .args([THIS_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &ring)
        .output()
        .expect("run the child under strace");
    assert!(
        o.status.success(),
        "the child under strace failed ({:?}):\n{}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let facts: Vec<&str> = out
        .lines()
        .find_map(|l| l.split("tickets ").nth(1))
        .unwrap_or_else(|| panic!("the child did not report its ring: {out}"))
        .split_whitespace()
        .collect();
    let (tickets, chunks): (u64, u64) = (facts[0].parse().unwrap(), facts[2].parse().unwrap());
    let realtime = facts[4] == format!("{:?}", Clock::Realtime);
    assert!(
        tickets > 3 * chunks,
        "the steady state should wrap the ring several times (claims and seals): \
         {tickets} tickets, {chunks} chunks"
    );

    // The appending thread's file: the one with the markers.
    let mut found = None;
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("trace.") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(split) = between_markers(&text) {
            assert!(found.is_none(), "two threads wrote the markers");
            found = Some((name, split));
        }
    }
    let (file, (warm_up, steady)) =
        found.expect("no thread's trace holds the markers (is strace -ff tracing threads?)");
    println!("{file}: the thread's calls before its steady state (its start and first appends):");
    for call in &warm_up {
        println!("  {call}");
    }
    // CLOCK_REALTIME without a vDSO path is a real call: the one call
    // tolerated, on such a ring, and said so.
    let (clock, other): (Vec<&String>, Vec<&String>) = steady
        .iter()
        .partition(|c| realtime && c.starts_with("clock_gettime(CLOCK_REALTIME"));
    if !clock.is_empty() {
        println!(
            "note: clock_gettime is a system call on this machine's clocksource ({} calls): \
             the ring's clock is CLOCK_REALTIME without a vDSO path",
            clock.len()
        );
    }
    assert!(
        other.is_empty(),
        "{} system call(s) on the appending thread in the steady state ({RECORDS} appends, \
         {tickets} chunk tickets, {chunks} chunks); the first ones:\n{}",
        other.len(),
        other
            .iter()
            .take(20)
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "{RECORDS} steady-state appends ({tickets} chunk tickets over {chunks} chunks): \
         no system call on the appending thread"
    );
}
