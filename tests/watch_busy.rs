//! `blackbox watch` stays responsive while it ships: reading a ring and
//! serialising its window run off the collector's async thread, so
//! `/metrics` answers and SIGTERM is handled while a shipment is provably
//! in the middle of reading its ring.
//!
//! "Provably": the collector's hidden test aid `--hold-shipments-for-test
//! GATE` makes each shipment, once it started reading its ring, create
//! `GATE.entered` and wait until `GATE` exists. Were the reading done on
//! the async thread, that wait would block it, and neither `/metrics` nor
//! SIGTERM would be served until the gate opened: both tests would then
//! fail at their deadline. No test here asserts how long anything took.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{blackbox, stderr, wait_or_fail, wait_until, TempDir};

/// A deadline for "it never happened", not a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(60);

/// A dead writer's ring in `dir` (1 MiB, 20,000 records, SIGKILLed).
fn dead_ring(dir: &Path) -> PathBuf {
    let ring = dir.join("app.ring");
    let o = blackbox()
        .args(["demo", "--ring", ring.to_str().unwrap()])
        .args(["--capacity", "1MiB", "--records", "20000", "--die", "kill"])
        .output()
        .expect("run the demo");
    assert!(!o.status.success(), "the demo dies: {}", stderr(&o));
    ring
}

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// `GET /metrics`: the reply, or None while nothing answers.
fn get_metrics(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.contains("blackbox_watch_").then_some(reply)
}

fn metric(reply: &str, name: &str) -> Option<u64> {
    let prefix = format!("blackbox_watch_{name} ");
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// A collector of `dir` shipping to `sink`, holding each shipment at
/// `gate`.
fn collector(dir: &Path, sink: &Path, gate: &Path, metrics: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blackbox"))
        .args(["watch", dir.to_str().unwrap()])
        .args(["--to", sink.to_str().unwrap(), "--metrics", metrics])
        .args(["--interval", "50ms", "--shutdown-timeout", "1s"])
        .args(["--hold-shipments-for-test", gate.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start blackbox watch")
}

fn entered(gate: &Path) -> PathBuf {
    let mut p = gate.as_os_str().to_owned();
    p.push(".entered");
    PathBuf::from(p)
}

#[test]
fn metrics_answer_while_a_shipment_reads_its_ring() {
    let tmp = TempDir::new("watch-busy-metrics");
    let dir = tmp.path("rings");
    std::fs::create_dir_all(&dir).unwrap();
    dead_ring(&dir);
    let sink = tmp.path("shipped.ndjson");
    let gate = tmp.path("gate");
    let addr = free_addr();
    let mut watch = collector(&dir, &sink, &gate, &addr);

    // The shipment has started reading the ring, and waits.
    wait_until(PATIENCE, "the shipment starts", || {
        entered(&gate).exists().then_some(())
    });
    let reply = wait_until(PATIENCE, "/metrics answers during the shipment", || {
        get_metrics(&addr)
    });
    assert_eq!(metric(&reply, "shipped_total"), Some(0), "{reply}");
    assert!(
        !sink.exists() || std::fs::metadata(&sink).unwrap().len() == 0,
        "nothing shipped while held"
    );

    // Open the gate: the shipment completes.
    std::fs::write(&gate, b"").unwrap();
    let reply = wait_until(PATIENCE, "the shipment completes", || {
        get_metrics(&addr).filter(|r| metric(r, "shipped_total") == Some(1))
    });
    assert_eq!(metric(&reply, "failed_total"), Some(0), "{reply}");
    let shipped = std::fs::read_to_string(&sink).unwrap();
    assert!(shipped.contains("demo: about to die"), "{shipped}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_or_fail(&mut watch, PATIENCE, "watch after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_is_handled_while_a_shipment_reads_its_ring() {
    let tmp = TempDir::new("watch-busy-sigterm");
    let dir = tmp.path("rings");
    std::fs::create_dir_all(&dir).unwrap();
    dead_ring(&dir);
    let sink = tmp.path("shipped.ndjson");
    let gate = tmp.path("gate");
    let addr = free_addr();
    let mut watch = collector(&dir, &sink, &gate, &addr);
    wait_until(PATIENCE, "the shipment starts", || {
        entered(&gate).exists().then_some(())
    });

    // The gate never opens: the collector gives the shipment up at its
    // shutdown bound, exits 0, and does not mark the ring shipped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_or_fail(&mut watch, PATIENCE, "watch after SIGTERM");
    let mut log = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("gave up shipping app.ring at the shutdown bound"),
        "{log}"
    );
    assert!(
        !sink.exists() || std::fs::metadata(&sink).unwrap().len() == 0,
        "nothing shipped"
    );
    // Not marked: the next collector ships it (the gate is open now).
    std::fs::write(&gate, b"").unwrap();
    let o = blackbox()
        .args(["watch", dir.to_str().unwrap(), "--once"])
        .args(["--to", sink.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shipped = std::fs::read_to_string(&sink).unwrap();
    assert!(shipped.contains("demo: about to die"), "{shipped}");
}
