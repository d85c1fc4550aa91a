//! `blackbox watch`: the collector on a directory of rings, with real
//! writers that really die and a real HTTP receiver (a few lines of
//! `std::net` below) that records every shipment.
//!
//! What is promised (reader/src/watch/mod.rs, README "Collecting with
//! blackbox watch"): each dead ring is shipped once per state directory,
//! also with two collectors at once; live rings are left alone; a
//! collector killed mid-shipment ships again on restart with the same
//! idempotency key (at-least-once); a live writer's snapshot request ships
//! within about a second, at most once per `--snapshot-interval`.
//! The PID-namespace test needs `unshare --pid --fork`; the owner test
//! needs root. Where the machine lacks them they print "skipped: why".
//!
//! No test asserts how fast anything happened (the machine may be loaded):
//! each waits for an event (a request at the receiver, a log line, a scan
//! counted by `--metrics`, a process that ended) with a generous deadline
//! that only fails a test if the event never comes, and a "nothing more
//! was shipped" check is made after the collector provably scanned again.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{blackbox, info_json, stderr, wait_or_fail, wait_until, Reaper, TempDir};
use serde_json::Value;

/// The deadline for an event that must come (a shipment, a log line, an
/// exit): it fails a test only if the event never comes.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// A tiny HTTP receiver.

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// 200 at once.
    Ok,
    /// 500 at once.
    Fail,
    /// Reads the request, then never answers.
    Stall,
    /// Reads the request and answers 200 once the test changes the mode
    /// ([`Sink::set_mode`]): a shipment held in flight until released.
    Hold,
    /// 200 after this long.
    Delay(Duration),
}

/// One request received.
#[derive(Clone, Debug)]
struct Request {
    headers: BTreeMap<String, String>,
    body: String,
}

impl Request {
    fn key(&self) -> String {
        self.headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default()
    }

    /// The NDJSON lines of the body.
    fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("each NDJSON line is JSON"))
            .collect()
    }

    /// The shipment line (the first one).
    fn shipment(&self) -> Value {
        self.lines().into_iter().next().expect("a shipment line")
    }

    /// The record lines (after the shipment line).
    fn records(&self) -> Vec<Value> {
        self.lines().into_iter().skip(1).collect()
    }
}

struct Sink {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    mode: Arc<Mutex<Mode>>,
    done: Arc<AtomicBool>,
}

impl Sink {
    fn start(mode: Mode) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let done = Arc::new(AtomicBool::new(false));
        let (r, m, d) = (requests.clone(), mode.clone(), done.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if d.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, m, d) = (r.clone(), m.clone(), d.clone());
                std::thread::spawn(move || serve(stream, &r, &m, &d));
            }
        });
        Sink {
            port,
            requests,
            mode,
            done,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Waits until at least `n` requests arrived; panics after `limit`.
    fn wait_for(&self, n: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} requests within {limit:?}, expected {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection (keep-alive) until it closes.
fn serve(
    mut stream: TcpStream,
    requests: &Mutex<Vec<Request>>,
    mode: &Mutex<Mode>,
    done: &AtomicBool,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if let Some(len) = headers.get("content-length") {
            body.resize(len.parse().unwrap(), 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        requests.lock().unwrap().push(Request {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let now = *mode.lock().unwrap();
        let status = match now {
            Mode::Ok => "200 OK",
            Mode::Fail => "500 Internal Server Error",
            Mode::Stall => {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Mode::Delay(d) => {
                std::thread::sleep(d);
                "200 OK"
            }
            Mode::Hold => {
                while *mode.lock().unwrap() == Mode::Hold {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                "200 OK"
            }
        };
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Writers and collectors.

/// The ring path a demo announced on stderr ("recording to PATH").
fn announced(text: &str) -> PathBuf {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("blackbox demo: recording to "))
        .unwrap_or_else(|| panic!("the demo did not say where it records: {text}"));
    PathBuf::from(line.trim())
}

/// Runs a demo in `dir` that writes `records` records and dies `how`;
/// returns its ring.
fn dead_ring(dir: &Path, records: u64, how: &str) -> PathBuf {
    let o = blackbox()
        .args([
            "demo",
            "--dir",
            dir.to_str().unwrap(),
            "--capacity",
            "256KiB",
        ])
        .args(["--records", &records.to_string(), "--die", how])
        .output()
        .expect("run the demo");
    announced(&stderr(&o))
}

/// A live writer in `dir` (slow, long); its ring and the process.
fn live_ring(cmd: &mut Command) -> (Reaper, PathBuf, Option<Receiver<String>>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let err = child.stderr.take().unwrap();
    let out = child.stdout.take().map(common::forward_lines);
    let mut lines = BufReader::new(err).lines();
    let first = lines
        .next()
        .expect("the demo says where it records")
        .unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    (Reaper(child), announced(&first), out)
}

fn demo_in(dir: &Path) -> Command {
    let mut cmd = blackbox();
    cmd.args([
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--capacity",
        "256KiB",
    ]);
    cmd
}

/// `blackbox watch DIR --to URL ARGS... --once`, to completion.
fn watch_once(dir: &Path, to: &str, args: &[&str]) -> Output {
    let mut cmd = blackbox();
    cmd.args(["watch", dir.to_str().unwrap(), "--to", to, "--once"])
        .args(args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    wait_or_fail(&mut child, PATIENCE, "watch --once");
    child.wait_with_output().unwrap()
}

/// A running `blackbox watch` daemon whose stderr lines arrive on a channel.
struct Daemon {
    child: Reaper,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(dir: &Path, to: &str, args: &[&str]) -> Daemon {
        let mut child = blackbox()
            .args(["watch", dir.to_str().unwrap(), "--to", to])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start watch");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child: Reaper(child),
            log: rx,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.0.id() as i32)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal watch");
    }

    /// Everything logged, once the process has ended (its stderr closed).
    fn final_log(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("watch's stderr did not close"),
            }
        }
        self.seen.join("\n")
    }

    /// Everything logged so far.
    fn log(&mut self) -> String {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Waits until a logged line contains `needle`; returns everything
    /// logged up to it. Panics if it never comes.
    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            match self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!(
                    "watch never logged {needle:?} ({e:?}): {}",
                    self.seen.join("\n")
                ),
            }
        }
        self.seen.join("\n")
    }
}

/// A loopback address with a port that was free a moment ago, for
/// `--metrics`.
fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// `GET /metrics` from a collector's `--metrics` address: the reply, or
/// None while it does not listen yet.
fn get_metrics(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// The value of the counter `blackbox_watch_NAME` in a metrics reply.
fn metric(reply: &str, name: &str) -> Option<u64> {
    let prefix = format!("blackbox_watch_{name} ");
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the collector at `addr` counts at least `n` directory
/// scans (`blackbox_watch_scans_total`, bumped as each scan starts);
/// returns its metrics reply then.
fn wait_for_scans(addr: &str, n: u64) -> String {
    wait_until(PATIENCE, &format!("{n} scans at {addr}"), || {
        get_metrics(addr).filter(|r| metric(r, "scans_total").is_some_and(|s| s >= n))
    })
}

fn shipped_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("blackbox watch: shipped"))
        .count()
}

/// Shipments per idempotency key.
fn per_key(requests: &[Request]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for r in requests {
        assert!(!r.key().is_empty(), "a shipment without an Idempotency-Key");
        *map.entry(r.key()).or_insert(0) += 1;
    }
    map
}

/// The demo records a shipment carries.
fn demo_records(r: &Request) -> usize {
    r.records()
        .iter()
        .filter(|l| l["message"] == "demo record")
        .count()
}

// ---------------------------------------------------------------------------
// The tests.

/// Two dead rings (one under a name of its own) and a live one: `--once`
/// ships exactly the two dead ones, each whole; a second run ships nothing new; the live ring is
/// left alone (still there, still running).
#[test]
fn ships_exactly_the_dead_rings_once() {
    let dir = TempDir::new("watch-dead");
    let sink = Sink::start(Mode::Ok);
    // A ring is known by its header, whatever its name.
    let killed = dir.path("renamed-without-extension");
    std::fs::rename(dead_ring(&dir.0, 300, "kill"), &killed).unwrap();
    let crashed = dead_ring(&dir.0, 500, "segv");
    let (_live, live, _) = live_ring(demo_in(&dir.0).args(["--rate", "20", "--records", "100000"]));

    let o = watch_once(&dir.0, &sink.url(), &[]);
    let log = stderr(&o);
    assert!(o.status.success(), "watch --once failed: {log}");
    let got = sink.requests();
    assert_eq!(got.len(), 2, "two dead rings, two shipments: {log}");
    assert_eq!(per_key(&got).len(), 2, "two distinct keys: {log}");
    let mut counts: Vec<usize> = got.iter().map(demo_records).collect();
    counts.sort();
    assert_eq!(counts, vec![300, 500], "each window whole");
    for r in &got {
        // The key travels in the body too (every NDJSON line).
        assert!(r.body.contains(&r.key()), "the body carries its key");
    }
    assert_eq!(shipped_lines(&log), 2, "{log}");
    for ring in [&killed, &crashed] {
        let name = ring.file_name().unwrap().to_str().unwrap();
        assert!(log.contains(name), "the log names {name}: {log}");
    }
    assert!(log.contains("SIGSEGV"), "the cause is in the log: {log}");

    let o = watch_once(&dir.0, &sink.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sink.requests().len(),
        2,
        "a second run ships nothing: {}",
        stderr(&o)
    );
    assert!(live.exists());
    assert_eq!(info_json(&live)["state"], "running");
}

/// A collector killed while its shipment is in flight (the receiver got
/// the body and has not answered): the restarted collector ships every
/// ring, and the repeat carries the same idempotency key. At-least-once
/// with a recognisable repeat, as the README promises; a third run ships
/// nothing.
#[test]
fn a_collector_killed_mid_shipment_ships_again_with_the_same_key() {
    let dir = TempDir::new("watch-crash");
    let sink = Sink::start(Mode::Stall);
    dead_ring(&dir.0, 200, "kill");
    dead_ring(&dir.0, 200, "abort");

    let mut first = Daemon::start(&dir.0, &sink.url(), &["--timeout", "60s"]);
    let stalled = sink.wait_for(1, PATIENCE);
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = first.child.0.wait();
    let stalled_key = stalled[0].key();

    sink.set_mode(Mode::Ok);
    let o = watch_once(&dir.0, &sink.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after: Vec<Request> = sink.requests().split_off(1);
    let keys = per_key(&after);
    assert_eq!(
        after.len(),
        2,
        "both rings shipped after the restart: {keys:?}"
    );
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.contains_key(&stalled_key),
        "the repeat of the interrupted shipment has its key {stalled_key}: {keys:?}"
    );
    let o = watch_once(&dir.0, &sink.url(), &[]);
    assert!(o.status.success());
    assert_eq!(sink.requests().len(), 3, "nothing new: {}", stderr(&o));
}

/// Two collectors on one directory at the same time: every dead ring is
/// shipped once in all.
#[test]
fn two_collectors_ship_each_ring_once() {
    let dir = TempDir::new("watch-two");
    // A slow receiver, so the two runs overlap.
    let sink = Sink::start(Mode::Delay(Duration::from_millis(100)));
    for _ in 0..4 {
        dead_ring(&dir.0, 100, "kill");
    }
    let spawn = || {
        blackbox()
            .args([
                "watch",
                dir.0.to_str().unwrap(),
                "--to",
                &sink.url(),
                "--once",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        stderr(&a),
        stderr(&b)
    );
    let keys = per_key(&sink.requests());
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.values().all(|&n| n == 1),
        "a ring shipped twice: {keys:?}"
    );
    assert_eq!(
        shipped_lines(&stderr(&a)) + shipped_lines(&stderr(&b)),
        4,
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
}

/// The writer in a PID namespace of its own (another container), the
/// collector outside: the pid in the ring means nothing here, the lock
/// still tells. Live: left alone; dead: shipped. The writer lives until
/// the test kills it (`unshare --kill-child`: killing unshare SIGKILLs
/// it), so the "live" check never races a timer.
#[test]
fn a_writer_in_another_pid_namespace() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "skipped: unshare --pid --fork --kill-child is not permitted here: {}",
                stderr(&o).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: no unshare: {e}");
            return;
        }
    }
    let dir = TempDir::new("watch-pidns");
    let sink = Sink::start(Mode::Ok);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        env!("CARGO_BIN_EXE_blackbox"),
    ])
    .args([
        "demo",
        "--dir",
        dir.0.to_str().unwrap(),
        "--capacity",
        "256KiB",
    ])
    .args(["--rate", "100", "--records", "100000"]);
    let (mut writer, ring, _) = live_ring(&mut cmd);
    assert_eq!(
        info_json(&ring)["pid"],
        1,
        "the writer is pid 1 of its namespace"
    );

    let o = watch_once(&dir.0, &sink.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sink.requests().len(),
        0,
        "a live writer is left alone: {}",
        stderr(&o)
    );

    // SIGKILL to unshare; the kernel SIGKILLs the writer (its parent
    // died). The writer is not our child: its ring tells when it is gone.
    writer.0.kill().expect("kill unshare");
    wait_or_fail(&mut writer.0, PATIENCE, "unshare");
    wait_until(PATIENCE, "the namespaced writer's death", || {
        (info_json(&ring)["state"] != "running").then_some(())
    });
    let o = watch_once(&dir.0, &sink.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = sink.requests();
    assert_eq!(
        got.len(),
        1,
        "the dead writer's ring is shipped: {}",
        stderr(&o)
    );
    assert!(demo_records(&got[0]) > 0);
}

/// A live writer asks for a snapshot ("slow request"): the running
/// collector ships its window with that reason; a burst of 50 requests
/// makes one shipment per --snapshot-interval. ("Within about a second" is
/// the README's claim; the time is printed, not asserted.)
#[test]
fn a_snapshot_request_ships_the_live_window_once_per_interval() {
    let dir = TempDir::new("watch-snap");
    let sink = Sink::start(Mode::Ok);
    let metrics = free_addr();
    let mut daemon = Daemon::start(
        &dir.0,
        &sink.url(),
        &[
            "--interval",
            "100ms",
            "--snapshot-interval",
            "1h",
            "--metrics",
            &metrics,
        ],
    );
    let (_writer, ring, out) = live_ring(demo_in(&dir.0).args([
        "--rate",
        "50",
        "--records",
        "100000",
        "--report-every",
        "1",
        "--snapshot-at",
        "40",
        "--snapshot-burst",
        "50",
    ]));
    let out = out.unwrap();
    // The report "0 40" is printed right after the 50 requests.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let line = out
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo reports its records");
        if line == "0 40" {
            break;
        }
    }
    let asked = Instant::now();
    let got = sink.wait_for(1, PATIENCE);
    println!(
        "snapshot shipped {:?} after the request (printed, not asserted)",
        asked.elapsed()
    );
    let shipment = got[0].shipment();
    assert_eq!(
        shipment["reason"], "slow request",
        "the shipment names the reason: {shipment}"
    );
    assert_eq!(shipment["state"], "running", "{shipment}");
    assert!(got[0].key().contains("snapshot"), "{}", got[0].key());
    assert!(demo_records(&got[0]) >= 40);

    // No second shipment: checked once the collector has provably looked
    // again after the whole burst. The scan that shipped started at or
    // before scan `seen`; scan `seen + 1` starts after this read (so after
    // the burst, which ended before "0 40") and has ended, with whatever
    // it shipped already at the receiver, once scan `seen + 2` starts.
    let seen = metric(&wait_for_scans(&metrics, 1), "scans_total").unwrap();
    let reply = wait_for_scans(&metrics, seen + 2);
    assert_eq!(
        sink.requests().len(),
        1,
        "50 requests at once, one shipment per interval: {}",
        daemon.log()
    );
    assert_eq!(metric(&reply, "snapshots_total"), Some(1), "{reply}");
    assert_eq!(metric(&reply, "shipped_total"), Some(1), "{reply}");
    let log = daemon.wait_log("snapshot of");
    assert!(log.contains("slow request"), "{log}");
    assert!(ring.exists());
    assert_eq!(info_json(&ring)["state"], "running");

    // The request acted on is remembered durably: a restarted collector
    // (without a rate limit) does not ship it again. Should the scan have
    // caught the burst half way, the rest is still owed: one more.
    drop(daemon);
    let mark = std::fs::read_dir(dir.path(".blackbox-watch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snapshot"))
        .expect("a snapshot mark");
    let mark: Value = serde_json::from_str(&std::fs::read_to_string(mark).unwrap()).unwrap();
    let owed = usize::from(mark["trigger"] != 50);
    let o = watch_once(&dir.0, &sink.url(), &["--snapshot-interval", "0s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sink.requests().len(), 1 + owed, "{mark}: {}", stderr(&o));
}

/// SIGTERM while a shipment is in flight: the collector gives it up to
/// --shutdown-timeout and exits 0. A shipment that finished in time is
/// marked (not shipped again), and the last scan after SIGTERM ships a
/// ring that died meanwhile; one that did not finish is not marked
/// (shipped by the next run). Synchronised on events: the receiver holds
/// the request until the collector has logged the SIGTERM, and releases it
/// then (the bound is an hour, so finishing in time does not depend on
/// the machine's speed) or never (the bound, 1.5 s, runs out).
#[test]
fn sigterm_finishes_the_shipment_in_flight_within_the_bound() {
    for finishes in [true, false] {
        let (mode, name, bound) = if finishes {
            (Mode::Hold, "watch-term-a", "1h")
        } else {
            (Mode::Stall, "watch-term-b", "1500ms")
        };
        let dir = TempDir::new(name);
        let sink = Sink::start(mode);
        dead_ring(&dir.0, 100, "kill");
        let mut daemon = Daemon::start(
            &dir.0,
            &sink.url(),
            &["--shutdown-timeout", bound, "--timeout", "1h"],
        );
        // The first shipment is at the receiver, unanswered: in flight,
        // after the scan that found it.
        sink.wait_for(1, PATIENCE);
        if finishes {
            // Dies after that scan: only the last scan can ship it.
            dead_ring(&dir.0, 100, "kill");
        }
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        daemon.wait_log("SIGTERM");
        if finishes {
            sink.set_mode(Mode::Ok);
        }
        let status = wait_or_fail(&mut daemon.child.0, PATIENCE, "watch after SIGTERM");
        let log = daemon.final_log();
        assert_eq!(status.code(), Some(0), "{log}");
        let shipped = if finishes { 2 } else { 0 };
        assert_eq!(shipped_lines(&log), shipped, "{mode:?}: {log}");
        assert_eq!(sink.requests().len(), shipped.max(1), "{mode:?}: {log}");

        sink.set_mode(Mode::Ok);
        let o = watch_once(&dir.0, &sink.url(), &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        // The finished ones are not shipped again; the abandoned one is.
        assert_eq!(sink.requests().len(), 2, "{mode:?}: {}", stderr(&o));
        assert_eq!(
            shipped_lines(&stderr(&o)),
            usize::from(!finishes),
            "{mode:?}: {}",
            stderr(&o)
        );
    }
}

/// A writer that died just before the collector is told to stop (a
/// native sidecar is stopped right after the app's last container): the
/// collector's last scan, after SIGTERM, ships its ring before exiting.
#[test]
fn a_ring_that_died_just_before_sigterm_is_shipped_before_exit() {
    let dir = TempDir::new("watch-term-last");
    let sink = Sink::start(Mode::Ok);
    // One scan at start, the next one an hour later.
    // The first scan logs this file: then the scan is over.
    std::fs::write(dir.path("marker.txt"), "not a ring\n").unwrap();
    let mut daemon = Daemon::start(&dir.0, &sink.url(), &["--interval", "1h"]);
    daemon.wait_log("marker.txt");
    dead_ring(&dir.0, 100, "kill");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = wait_or_fail(&mut daemon.child.0, PATIENCE, "watch after SIGTERM");
    let log = daemon.final_log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(sink.requests().len(), 1, "{log}");
    let term = log.find("SIGTERM").expect("the stop is logged");
    let shipped = log.find("shipped").expect("the shipment is logged");
    assert!(
        term < shipped,
        "shipped by the last scan after SIGTERM: {log}"
    );
}

/// Retention: with --keep 1 only the newest of three shipped dead rings
/// stays, the live ring stays; rings that could not be shipped are never
/// removed.
#[test]
fn retention_removes_only_shipped_dead_rings_oldest_first() {
    let dir = TempDir::new("watch-keep");
    let sink = Sink::start(Mode::Ok);
    let rings: Vec<PathBuf> = (0..3).map(|_| dead_ring(&dir.0, 50, "kill")).collect();
    let (_live, live, _) = live_ring(demo_in(&dir.0).args(["--rate", "20", "--records", "100000"]));
    let o = watch_once(&dir.0, &sink.url(), &["--keep", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sink.requests().len(), 3);
    assert!(!rings[0].exists() && !rings[1].exists(), "{}", stderr(&o));
    assert!(rings[2].exists(), "the newest dead ring stays");
    assert!(live.exists(), "a live ring is never removed");
    assert!(stderr(&o).contains("removed"), "{}", stderr(&o));

    let failing = TempDir::new("watch-keep-fail");
    let down = Sink::start(Mode::Fail);
    let kept: Vec<PathBuf> = (0..2).map(|_| dead_ring(&failing.0, 50, "kill")).collect();
    let o = watch_once(&failing.0, &down.url(), &["--keep", "0", "--attempts", "1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a failed shipment fails --once: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("failed to ship"), "{}", stderr(&o));
    assert!(kept.iter().all(|r| r.exists()), "unshipped rings are kept");
}

/// File safety: a symlink to a ring outside the directory is not
/// followed, a hard link to one is not read, a file of another owner is not read, a huge sparse file is
/// skipped unread, a FIFO and a non-ring file are ignored without
/// hanging; only the one proper dead ring is shipped.
#[test]
fn hostile_files_in_the_directory_are_skipped() {
    let dir = TempDir::new("watch-files");
    let outside = TempDir::new("watch-files-outside");
    let sink = Sink::start(Mode::Ok);
    let good = dead_ring(&dir.0, 50, "kill");
    let foreign = dead_ring(&outside.0, 50, "kill");
    std::os::unix::fs::symlink(&foreign, dir.path("link.ring")).unwrap();
    // A hard link to a ring outside (the same file system): not shipped.
    let _ = std::fs::hard_link(&foreign, dir.path("hard.ring"));
    // A valid ring header in a sparse file far beyond --max-ring-size.
    let header = std::fs::read(&good).unwrap()[..4096].to_vec();
    let huge = std::fs::File::create(dir.path("huge.ring")).unwrap();
    huge.set_len(8 << 30).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&huge, &header, 0).unwrap();
    std::fs::write(dir.path("notes.txt"), "not a ring\n").unwrap();
    let fifo = Command::new("mkfifo").arg(dir.path("pipe.ring")).status();
    let root = nix::unistd::geteuid().is_root();
    if root {
        let other = dead_ring(&dir.0, 50, "kill");
        std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
    } else {
        println!("skipped (part): a file of another owner needs root to make");
    }

    let o = watch_once(&dir.0, &sink.url(), &["--max-ring-size", "64MiB"]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let got = sink.requests();
    assert_eq!(got.len(), 1, "only the proper ring is shipped: {log}");
    assert!(
        log.contains(good.file_name().unwrap().to_str().unwrap()),
        "{log}"
    );
    assert!(
        log.contains("link.ring") && log.contains("symlink"),
        "{log}"
    );
    assert!(
        log.contains("huge.ring") && log.contains("--max-ring-size"),
        "{log}"
    );
    assert!(log.contains("notes.txt"), "{log}");
    if matches!(fifo, Ok(s) if s.success()) {
        assert!(log.contains("pipe.ring") && log.contains("FIFO"), "{log}");
    }
    if root {
        assert!(log.contains("uid 65534"), "{log}");
        // Allowed explicitly, it is shipped.
        let o = watch_once(
            &dir.0,
            &sink.url(),
            &["--owner", "65534", "--max-ring-size", "64MiB"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(sink.requests().len(), 2, "{}", stderr(&o));
    }
    // A second run does not repeat the complaints' shipments either.
    let o = watch_once(
        &dir.0,
        &sink.url(),
        &["--owner", "65534", "--max-ring-size", "64MiB"],
    );
    assert!(o.status.success());
    assert_eq!(sink.requests().len(), if root { 2 } else { 1 });
}

/// --metrics serves the counters in Prometheus text format; an address
/// off the loopback interface is refused with one line.
#[test]
fn metrics_are_served_on_loopback_only() {
    let dir = TempDir::new("watch-metrics");
    let sink = Sink::start(Mode::Ok);
    dead_ring(&dir.0, 50, "kill");
    let addr = free_addr();
    let _daemon = Daemon::start(&dir.0, &sink.url(), &["--metrics", &addr]);
    sink.wait_for(1, PATIENCE);
    let text = wait_until(PATIENCE, &format!("shipped_total 1 at {addr}"), || {
        get_metrics(&addr).filter(|r| metric(r, "shipped_total") == Some(1))
    });
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    for name in [
        "shipped_total",
        "failed_total",
        "retried_total",
        "snapshots_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE blackbox_watch_{name} counter")),
            "{name}: {text}"
        );
    }

    let o = common::run(&[
        "watch",
        dir.0.to_str().unwrap(),
        "--to",
        "-",
        "--metrics",
        "0.0.0.0:9464",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("loopback"), "{err}");
}

/// Bad input: one line, exit 2.
#[test]
fn a_missing_directory_is_one_line() {
    let o = common::run(&["watch", "/nonexistent/blackbox", "--to", "-", "--once"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("blackbox: cannot watch /nonexistent/blackbox"),
        "{err}"
    );
}

/// `--skip-exited`: a ring whose writer exited cleanly (a real demo that
/// returned from main) is not shipped but logged once and marked handled;
/// a killed one beside it ships. A second run neither ships nor logs it
/// again; retention then removes it like a shipped ring. Without the flag
/// a clean exit ships like a death.
#[test]
fn skip_exited_does_not_ship_clean_exits() {
    let dir = TempDir::new("watch-skip-exited");
    let sink = Sink::start(Mode::Ok);
    let exited = dead_ring(&dir.0, 100, "exit");
    let killed = dead_ring(&dir.0, 200, "kill");
    assert_eq!(info_json(&exited)["state"], "exited");
    let exited_name = exited.file_name().unwrap().to_str().unwrap();

    let o = watch_once(&dir.0, &sink.url(), &["--skip-exited"]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let got = sink.requests();
    assert_eq!(got.len(), 1, "only the killed ring ships: {log}");
    assert_eq!(demo_records(&got[0]), 200, "{log}");
    let skip_line = format!("not shipping {exited_name}");
    assert_eq!(
        log.lines().filter(|l| l.contains(&skip_line)).count(),
        1,
        "one line for the clean exit: {log}"
    );
    assert!(log.contains("exited cleanly"), "{log}");

    let o = watch_once(&dir.0, &sink.url(), &["--skip-exited"]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert_eq!(sink.requests().len(), 1, "nothing more ships: {log}");
    assert!(!log.contains(&skip_line), "logged once, not per run: {log}");

    // Handled like a shipped ring: retention removes both.
    let o = watch_once(&dir.0, &sink.url(), &["--skip-exited", "--keep", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!exited.exists() && !killed.exists(), "{}", stderr(&o));

    // Without the flag, a clean exit ships.
    let other = TempDir::new("watch-no-skip");
    dead_ring(&other.0, 100, "exit");
    let o = watch_once(&other.0, &sink.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sink.requests().len(), 2, "{}", stderr(&o));
}

/// A snapshot request within --snapshot-interval of the last snapshot is
/// folded into the next one, and the collector says so in one line (once
/// per interval, however many requests). The live writer is this test
/// process (it holds the ring's lock); the collector is another process.
#[test]
fn a_folded_snapshot_request_is_logged() {
    use blackbox_recorder::Recorder;
    let dir = TempDir::new("watch-fold");
    let sink = Sink::start(Mode::Ok);
    let rec = Recorder::builder_in_dir(&dir.0)
        .program("fold")
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    let name = rec
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    rec.snapshot("first").unwrap();
    let args = ["--snapshot-interval", "1h"];
    let o = watch_once(&dir.0, &sink.url(), &args);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert_eq!(sink.requests().len(), 1, "the first request ships: {log}");
    assert!(!log.contains("folded"), "{log}");

    rec.snapshot("second").unwrap();
    rec.snapshot("third").unwrap();
    let o = watch_once(&dir.0, &sink.url(), &args);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert_eq!(sink.requests().len(), 1, "within the interval: {log}");
    let folded: Vec<&str> = log.lines().filter(|l| l.contains("folded")).collect();
    assert_eq!(folded.len(), 1, "{log}");
    assert!(
        folded[0].contains(&name)
            && folded[0].contains("--snapshot-interval 1h")
            && folded[0].contains("2 request(s)"),
        "{log}"
    );
    rec.close();
}
