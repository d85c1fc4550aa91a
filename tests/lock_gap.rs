//! `blackbox demo --scenario lock-gap` (the Go team's flight-recorder
//! example): a reporter holds every bucket lock inside its own span while
//! requests wait; a slow request asks for a snapshot, then the process is
//! SIGKILLed. The test reads the export, not a picture: a report slice
//! covers the stretched request slices (each began while the reporter
//! held the locks, or overlaps it, and ended after the report did), and
//! the snapshot and the death are marked.

mod common;

use common::{run, stderr, TempDir};
use serde_json::Value;

/// The scenario's threshold for a slow request, in microseconds.
const SLOW_US: f64 = 50_000.0;

fn span(e: &Value) -> (f64, f64) {
    let ts = e["ts"].as_f64().unwrap();
    (ts, ts + e["dur"].as_f64().unwrap())
}

#[test]
fn the_reporters_span_covers_the_stretched_requests() {
    let dir = TempDir::new("lock-gap");
    let ring = dir.path("lock-gap.ring");
    let o = run(&[
        "demo",
        "--ring",
        ring.to_str().unwrap(),
        "--scenario",
        "lock-gap",
    ]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGKILL), "{}", stderr(&o));
    let out = dir.path("lock-gap.json");
    let o = run(&[
        "export",
        ring.to_str().unwrap(),
        "--format",
        "trace-event",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trace: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let track = |name: &str| {
        events
            .iter()
            .find(|e| {
                e["name"] == "thread_name" && e["args"]["name"].as_str().unwrap().starts_with(name)
            })
            .map(|e| e["tid"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("no track {name}"))
    };
    let reporter = track("reporter");
    let reports: Vec<(f64, f64)> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == "report")
        .inspect(|e| assert_eq!(e["tid"].as_u64(), Some(reporter), "{e}"))
        .map(span)
        .collect();
    assert!(!reports.is_empty(), "no report slice");
    let stretched: Vec<(f64, f64)> = events
        .iter()
        .filter(|e| {
            e["ph"] == "X" && e["name"] == "request" && e["dur"].as_f64().unwrap() > SLOW_US
        })
        .map(span)
        .collect();
    assert!(!stretched.is_empty(), "no stretched request slice");
    // Every stretched request overlaps a report, and ends after it (it got
    // its lock only once the reporter let go).
    for &(start, end) in &stretched {
        assert!(
            reports
                .iter()
                .any(|&(rs, re)| rs < end && start < re && re <= end),
            "request {start}..{end} is not held up by a report: {reports:?}"
        );
    }
    // And at least one began inside the report: the report covers its
    // whole wait.
    assert!(
        stretched.iter().any(|&(start, end)| reports
            .iter()
            .any(|&(rs, re)| rs <= start && start < re && re <= end)),
        "no stretched request began inside a report: {stretched:?} {reports:?}"
    );
    // The snapshot the slow request asked for, and the death.
    assert!(events
        .iter()
        .any(|e| e["name"] == "snapshot: slow request" && e["s"] == "p"));
    assert!(events
        .iter()
        .any(|e| e["s"] == "g" && e["args"]["cause"]["kind"] == "killed"));
    // Its request threads each have a track.
    for t in 0..4 {
        track(&format!("request-{t}"));
    }
}
