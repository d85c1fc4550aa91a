//! The timeline of a real process that really dies: a child (this test
//! binary, re-executed) uses `tracing` with nested spans on three named
//! threads and is SIGKILLed while one of them is inside a span. `blackbox
//! export --format trace-event`, run in another process, must give Trace
//! Event Format JSON in which:
//! - every closed span is one slice on the right thread's track, nested
//!   in its parent, with the duration its records give (to the
//!   nanosecond, as the export writes microseconds with three decimals);
//! - the spans still open at the kill are flagged unfinished and end at
//!   the death marker;
//! - instant events carry their fields (and their spans' fields);
//! - nothing in the window is missing: one slice per enter, one instant
//!   per event.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use blackbox_recorder::{BlackboxLayer, Recorder};
use common::{read_json, run, stderr, wait_or_fail, Reaper, TempDir};
use serde_json::Value;
use tracing_subscriber::prelude::*;

const CHILD_ENV: &str = "BLACKBOX_TIMELINE_CHILD";
const CHILD_TEST: &str = "timeline_child";
const WORKERS: u64 = 3;
const ROUNDS: u64 = 20;

/// The child: not a test of its own (returns at once without the
/// variable).
#[test]
fn timeline_child() {
    let Ok(ring) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rec = Arc::new(
        Recorder::builder(&ring)
            .capacity(4 << 20)
            .create()
            .expect("create the ring"),
    );
    let layer = BlackboxLayer::new(Arc::clone(&rec)).with_thread_names(true);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the only subscriber");
    let main_span = tracing::info_span!("main", pid = std::process::id());
    let _main = main_span.enter();
    tracing::info!(target: "app", "starting");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for worker in 0..WORKERS {
        let done = done_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{worker}"))
                .spawn(move || {
                    for round in 0..ROUNDS {
                        let request = tracing::info_span!(
                            "request",
                            worker,
                            round,
                            status = tracing::field::Empty
                        );
                        let _request = request.enter();
                        tracing::info!(target: "app", worker, round, "start");
                        {
                            let db = tracing::debug_span!("db", table = "users");
                            let _db = db.enter();
                            std::thread::sleep(Duration::from_millis(1));
                            tracing::debug!(target: "app", rows = round * 10, "query");
                        }
                        request.record("status", 200u64);
                    }
                    if worker == 0 {
                        // Dies in here.
                        let last = tracing::warn_span!("final", worker);
                        let _last = last.enter();
                        tracing::warn!(target: "app", "inside the final span");
                        done.send(()).unwrap();
                        loop {
                            std::thread::park();
                        }
                    }
                    done.send(()).unwrap();
                })
                .unwrap(),
        );
    }
    for _ in 0..WORKERS {
        done_rx.recv().unwrap();
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}

fn export(ring: &Path, out: &Path) -> Value {
    let o = run(&[
        "export",
        ring.to_str().unwrap(),
        "--format",
        "trace-event",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "export failed: {}", stderr(&o));
    let text = std::fs::read_to_string(out).expect("the export file");
    serde_json::from_str(&text).expect("the export parses as JSON")
}

fn us(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

/// Nanoseconds since the epoch of an RFC 3339 time from `read --json`.
fn rfc3339_ns(text: &str) -> u64 {
    let t = humantime::parse_rfc3339(text).expect("RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn a_killed_child_exports_its_spans_as_a_timeline() {
    let dir = TempDir::new("timeline");
    let ring = dir.path("child.ring");
    let mut child = Reaper(
        Command::new(std::env::current_exe().expect("the test binary"))
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &ring)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("re-execute the test binary"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("ready"));
    assert!(ready, "the child ended before it was ready");
    child.0.kill().expect("SIGKILL");
    let status = wait_or_fail(&mut child.0, Duration::from_secs(60), "the killed child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let trace = export(&ring, &dir.path("child.json"));
    let events = trace["traceEvents"].as_array().expect("traceEvents");

    // Tracks: thread names from metadata.
    let mut track_of: HashMap<String, u64> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
    {
        let name = e["args"]["name"].as_str().unwrap();
        track_of.insert(name.to_string(), e["tid"].as_u64().unwrap());
    }
    for w in 0..WORKERS {
        assert!(
            track_of.contains_key(&format!("worker-{w}")),
            "{track_of:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "process_name"));

    // The death marker, with its cause.
    let death: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["s"] == "g")
        .collect();
    assert_eq!(death.len(), 1, "one death marker");
    assert_eq!(death[0]["args"]["cause"]["kind"], "killed", "{}", death[0]);
    let death_ts = us(&death[0]["ts"]);

    // The records themselves, as `read` gives them: the oracle for the
    // times.
    let records = read_json(&ring, &["--spans"]);
    let base_ns = trace["otherData"]["base_unix_ns"].as_u64().unwrap();
    let mut enters = 0;
    let mut step_times: HashMap<(u64, u64), Vec<(String, u64)>> = HashMap::new();
    for r in &records {
        if r["kind"] == "span-step" {
            let key = (
                r["thread_id"].as_u64().unwrap(),
                r["span_id"].as_u64().unwrap(),
            );
            step_times.entry(key).or_default().push((
                r["step"].as_str().unwrap().to_string(),
                rfc3339_ns(r["ts"].as_str().unwrap()),
            ));
            if r["step"] == "enter" {
                enters += 1;
            }
        }
    }
    let slices: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), enters, "one slice per enter in the window");

    // Every closed slice: on its worker's track, with the records' times.
    let mut by_tid: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for s in &slices {
        by_tid
            .entry(s["tid"].as_u64().unwrap())
            .or_default()
            .push(s);
        if s["args"]["unfinished"] == true {
            continue;
        }
        let key = (
            s["tid"].as_u64().unwrap(),
            s["args"]["span_id"].as_str().unwrap().parse().unwrap(),
        );
        let steps = &step_times[&key];
        // In nanoseconds from the window's start (an f64 of nanoseconds
        // since the epoch would not hold them).
        let start_ns = (us(&s["ts"]) * 1e3).round() as i64;
        let found = steps.windows(2).any(|w| {
            w[0].0 == "enter"
                && w[1].0 == "exit"
                && (w[0].1 as i64 - base_ns as i64 - start_ns).abs() <= 1
                && ((w[1].1 - w[0].1) as f64 / 1e3 - us(&s["dur"])).abs() < 0.002
        });
        assert!(found, "slice {s} does not match its records {steps:?}");
    }
    let mut requests = 0;
    for s in slices.iter().filter(|s| s["name"] == "request") {
        let fields = &s["args"]["fields"];
        let worker = fields["worker"].as_u64().unwrap();
        assert_eq!(
            s["tid"].as_u64(),
            track_of.get(&format!("worker-{worker}")).copied(),
            "{s}"
        );
        assert_eq!(fields["status"], 200, "the recorded value is kept: {s}");
        // Its db slice is inside it, on the same track.
        let (start, end) = (us(&s["ts"]), us(&s["ts"]) + us(&s["dur"]));
        let inner: Vec<&&Value> = by_tid[&s["tid"].as_u64().unwrap()]
            .iter()
            .filter(|d| d["name"] == "db" && us(&d["ts"]) >= start && us(&d["ts"]) <= end)
            .collect();
        assert_eq!(inner.len(), 1, "one db slice inside {s}");
        let db = inner[0];
        assert!(
            us(&db["ts"]) + us(&db["dur"]) <= end + 0.0005,
            "{db} in {s}"
        );
        assert!(us(&db["dur"]) >= 1000.0, "db slept 1 ms: {db}");
        assert_eq!(db["args"]["parent"], s["args"]["span_id"], "{db}");
        assert_eq!(db["args"]["fields"]["table"], "users");
        requests += 1;
    }
    assert_eq!(requests, (WORKERS * ROUNDS) as usize);

    // The spans open at the kill: main and final, up to the death.
    let open: Vec<&&Value> = slices
        .iter()
        .filter(|s| s["args"]["unfinished"] == true)
        .collect();
    let mut names: Vec<&str> = open.iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["final", "main"], "{open:?}");
    for s in &open {
        assert!(
            (us(&s["ts"]) + us(&s["dur"]) - death_ts).abs() < 0.002,
            "{s} ends at the death ({death_ts})"
        );
    }
    let last = open.iter().find(|s| s["name"] == "final").unwrap();
    assert_eq!(last["tid"].as_u64(), track_of.get("worker-0").copied());

    // Instants: one per event in the window, with their fields.
    let read_events: Vec<&Value> = records.iter().filter(|r| r["kind"] == "event").collect();
    let instants: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["s"] == "t")
        .collect();
    assert_eq!(instants.len(), read_events.len(), "one instant per event");
    let start = instants
        .iter()
        .find(|e| e["name"] == "start" && e["args"]["fields"]["round"] == 7)
        .expect("a start event of round 7");
    assert!(start["args"]["fields"]["worker"].is_u64(), "{start}");
    assert_eq!(start["args"]["spans"][0]["name"], "request", "{start}");
    assert_eq!(start["args"]["spans"][0]["fields"]["round"], 7, "{start}");
    let query = instants
        .iter()
        .find(|e| e["name"] == "query")
        .expect("a query event");
    assert!(query["args"]["fields"]["rows"].is_u64(), "{query}");
    assert_eq!(trace["otherData"]["state"], "killed");
}

#[test]
fn export_refuses_a_missing_ring_and_an_unwritable_output_in_one_line() {
    let dir = TempDir::new("timeline-errors");
    let o = run(&[
        "export",
        dir.path("none.ring").to_str().unwrap(),
        "--format",
        "trace-event",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let ring = dir.path("ok.ring");
    Recorder::create(&ring, 64 << 10).unwrap().close();
    let o = run(&[
        "export",
        ring.to_str().unwrap(),
        "--format",
        "trace-event",
        "-o",
        dir.path("no/such/dir/out.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let o = run(&["export", ring.to_str().unwrap(), "--format", "svg"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn export_to_a_closed_pipe_stops_quietly() {
    use std::io::Read;
    let dir = TempDir::new("timeline-pipe");
    let ring = dir.path("many.ring");
    let rec = Recorder::create(&ring, 1 << 20).unwrap();
    for i in 0..5_000u64 {
        rec.log(
            blackbox_recorder::Level::Info,
            "app",
            "filler",
            &[blackbox_recorder::Field::new("i", i)],
        )
        .unwrap();
    }
    rec.close();
    let mut child = common::blackbox()
        .args(["export", ring.to_str().unwrap(), "--format", "trace-event"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // The read end is closed here, as `| head -c 16` would.
    let out = child.wait_with_output().unwrap();
    assert_eq!(&head[..15], b"{\"traceEvents\":");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
