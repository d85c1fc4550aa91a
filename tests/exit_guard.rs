//! The exit guard: a program that follows the README's `tracing` or `log`
//! setup and returns normally from `main` leaves its ring `exited`, though
//! the global subscriber or logger (and the `Recorder` in it) is never
//! dropped; without the guard the same program reads `killed`; and a panic
//! with the guard alive is not taken for a clean exit.
//!
//! Each case runs the setup in a child process: this test binary,
//! re-executed to run only [`guard_child`], which does what the README says
//! when `BLACKBOX_GUARD_CHILD` is set (and nothing otherwise). The harness's
//! `main` then returns as a program's would. The ring is read afterwards by
//! the `blackbox` binary, in another process.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use blackbox_recorder::{BlackboxLayer, BlackboxLogger, ExitGuard, Recorder};
use common::{info_json, read_json, stderr, stdout, TempDir};
use serde_json::Value;
use tracing_subscriber::prelude::*;

/// `VIA,GUARD,END:RING`: `tracing` or `log`; `guard` or `none`; `return`
/// or `panic`; the ring's path.
const CHILD_ENV: &str = "BLACKBOX_GUARD_CHILD";

/// The name of the child's test function, for `--exact`.
const CHILD_TEST: &str = "guard_child";

/// The panic message of a child that ends in a panic.
const PANIC_MESSAGE: &str = "exit guard test: panic with the guard alive";

/// The child program: the README's setup, one event, then the end it was
/// asked for. Does nothing unless [`CHILD_ENV`] is set.
#[test]
fn guard_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (how, ring) = spec
        .split_once(':')
        .unwrap_or_else(|| panic!("{CHILD_ENV}={spec:?} is not VIA,GUARD,END:RING"));
    let words: Vec<&str> = how.split(',').collect();
    let [via, guard, end] = words[..] else {
        panic!("{CHILD_ENV}={spec:?} is not VIA,GUARD,END:RING");
    };

    let rec = Recorder::builder(ring)
        .capacity(1 << 20)
        .create()
        .expect("create ring");
    rec.install_crash_handlers(); // as the README does
    let rec = Arc::new(rec);
    // The global subscriber or logger keeps its clone of `rec` for the
    // life of the process, as in any program.
    let _guard: Option<ExitGuard> = match (via, guard) {
        ("tracing", "guard") => {
            let (layer, guard) = BlackboxLayer::new(rec.clone()).with_guard();
            tracing_subscriber::registry().with(layer).init();
            Some(guard)
        }
        ("tracing", "none") => {
            tracing_subscriber::registry()
                .with(BlackboxLayer::new(rec.clone()))
                .init();
            None
        }
        ("log", "guard") => Some(
            BlackboxLogger::new(rec.clone())
                .init()
                .expect("install the logger"),
        ),
        ("log", "none") => {
            // What `init` did before it returned a guard.
            log::set_boxed_logger(Box::new(BlackboxLogger::new(rec.clone())))
                .expect("install the logger");
            log::set_max_level(log::LevelFilter::Trace);
            None
        }
        _ => panic!("{CHILD_ENV}={spec:?}: unknown VIA or GUARD"),
    };
    match via {
        "tracing" => tracing::warn!(target: "app", n = 7u64, "last words"),
        _ => log::warn!(target: "app", n = 7u64; "last words"),
    }
    match end {
        // Returns: the guard (if any) is dropped here, and the harness's
        // main returns after this test.
        "return" => {}
        // Unwinds with the guard alive; the harness catches the panic and
        // exits with status 101.
        "panic" => panic!("{PANIC_MESSAGE}"),
        _ => panic!("{CHILD_ENV}={spec:?}: unknown END"),
    }
}

/// Runs [`guard_child`] in a child process with `how` on `ring`, waits for
/// it to exit, and returns its output.
fn run_child(how: &str, ring: &Path) -> Output {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, format!("{how}:{}", ring.display()))
        .output()
        .expect("re-execute the test binary")
}

/// Runs the child, checks that its event is in the ring and that it ended
/// as asked, and returns what `blackbox info --json` says of the ring.
fn ring_after(name: &str, via: &str, guard: &str, end: &str) -> (Value, Vec<Value>) {
    let dir = TempDir::new(name);
    let ring = dir.path("app.ring");
    let out = run_child(&format!("{via},{guard},{end}"), &ring);
    let said = format!(
        "child {via},{guard},{end} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert!(ring.exists(), "no ring: {said}");
    match end {
        "return" => assert!(out.status.success(), "{said}"),
        _ => assert!(!out.status.success(), "the panic did not fail: {said}"),
    }
    let info = info_json(&ring);
    let records = read_json(&ring, &[]);
    assert!(
        records
            .iter()
            .any(|r| r["target"] == "app" && r["message"] == "last words"),
        "the {via} event is not in the ring: {records:?}\n{said}"
    );
    (info, records)
}

#[test]
fn tracing_with_the_guard_a_return_from_main_reads_exited() {
    let (info, _) = ring_after("guard-tracing", "tracing", "guard", "return");
    assert_eq!(info["state"], "exited", "{info}");
}

#[test]
fn tracing_without_the_guard_a_return_from_main_reads_killed() {
    let (info, _) = ring_after("noguard-tracing", "tracing", "none", "return");
    assert_eq!(info["state"], "killed", "{info}");
}

#[test]
fn log_with_the_guard_a_return_from_main_reads_exited() {
    let (info, _) = ring_after("guard-log", "log", "guard", "return");
    assert_eq!(info["state"], "exited", "{info}");
}

#[test]
fn log_without_the_guard_a_return_from_main_reads_killed() {
    let (info, _) = ring_after("noguard-log", "log", "none", "return");
    assert_eq!(info["state"], "killed", "{info}");
}

/// A panic with the guard alive: the guard is dropped while unwinding and
/// must not mark the ring exited. The harness runs the test on a thread of
/// its own, and the crash handlers mark a ring `crashed` only for a panic
/// on the main thread (another thread's panic may be caught and survived):
/// here they record the panic event, and the ring of the process that then
/// exited reads `killed`. (A panic in a real `main` reads `crashed`:
/// tests/crash.rs.)
fn panic_with_the_guard(via: &str) {
    let (info, records) = ring_after(&format!("panic-{via}"), via, "guard", "panic");
    assert_ne!(info["state"], "exited", "{info}");
    assert_eq!(info["state"], "killed", "{info}");
    assert!(
        records.iter().any(|r| r["target"] == "blackbox::crash"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains(PANIC_MESSAGE))),
        "the crash handlers did not record the panic: {records:?}"
    );
}

#[test]
fn tracing_with_the_guard_a_panic_is_not_a_clean_exit() {
    panic_with_the_guard("tracing");
}

#[test]
fn log_with_the_guard_a_panic_is_not_a_clean_exit() {
    panic_with_the_guard("log");
}
