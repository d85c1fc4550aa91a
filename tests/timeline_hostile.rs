//! Hostile span records: records that no honest writer makes (an exit
//! without an enter, an unknown parent, a parent cycle, an absurd depth, a
//! step out of order, a payload cut short, an unknown step) written into a
//! real ring with valid checksums. `export` still gives valid Trace Event
//! Format JSON whose slices nest on every track, flags what it had to
//! guess, and stays bounded; `read` shows every record.

mod common;

use blackbox_recorder::layout::*;
use blackbox_recorder::{Clock, Field, Level, Recorder};
use common::{file_records, read_json, reseal_record, run, stderr, stdout, TempDir};
use serde_json::Value;

/// A step payload.
fn step(id: u64, op: u8, name: &str) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.push(op);
    p.push(name.len() as u8);
    p.extend_from_slice(name.as_bytes());
    p
}

/// A creation payload without fields.
fn new_span(id: u64, parent: u64, name: &str) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.extend_from_slice(&parent.to_le_bytes());
    p.extend_from_slice(&[LEVEL_INFO, 0, 3, 0, name.len() as u8, 0, 0, 0]);
    p.extend_from_slice(b"app");
    p.extend_from_slice(name.as_bytes());
    p
}

/// Writes `records` (kind, payload) as raw records, then gives each its
/// kind and checksum back; events are written as events.
fn hostile_ring(path: &std::path::Path, records: &[(u16, Vec<u8>)]) {
    let rec = Recorder::builder(path)
        .capacity(4 << 20)
        .heartbeat(None)
        .clock(Clock::Realtime)
        .create()
        .unwrap();
    for (kind, payload) in records {
        if *kind == KIND_EVENT {
            let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
            rec.log(
                Level::Info,
                "app",
                "inside",
                &[Field::new("spans", "a:b"), Field::new("span_id", id)],
            )
            .unwrap();
        } else {
            rec.append(payload).unwrap();
        }
    }
    rec.close();
    let mut file = std::fs::read(path).unwrap();
    let mut found = file_records(&file);
    found.sort_by_key(|r| (r.writer, r.seq));
    assert_eq!(found.len(), records.len());
    for (r, (kind, _)) in found.iter().zip(records) {
        file[r.at + R_KIND..r.at + R_KIND + 2].copy_from_slice(&kind.to_le_bytes());
        reseal_record(&mut file, r);
    }
    std::fs::write(path, file).unwrap();
}

/// Slices on each track nest: sorted by start (longer first), each ends
/// within the slice open around it.
fn assert_nested(events: &[Value]) {
    let mut tracks: std::collections::BTreeMap<u64, Vec<(f64, f64)>> = Default::default();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let ts = e["ts"].as_f64().unwrap();
        let dur = e["dur"].as_f64().unwrap();
        assert!(dur >= 0.0, "{e}");
        tracks
            .entry(e["tid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + dur));
    }
    for (tid, mut slices) in tracks {
        slices.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (start, end) in slices {
            // Microseconds as JSON numbers: a slice that starts where
            // another ends may differ from its end in the last bits.
            while stack.last().is_some_and(|&e| e <= start + 1e-4) {
                stack.pop();
            }
            if let Some(&outer_end) = stack.last() {
                assert!(
                    end <= outer_end + 1e-4,
                    "track {tid}: {start}..{end} overlaps the slice ending at {outer_end}"
                );
            }
            stack.push(end);
        }
    }
}

#[test]
fn hostile_span_records_give_a_valid_bounded_export() {
    let dir = TempDir::new("timeline-hostile");
    let ring = dir.path("hostile.ring");
    let mut records = vec![
        // An exit whose enter never was.
        (KIND_SPAN_STEP, step(5, SPAN_OP_EXIT, "orphan")),
        // An unknown parent.
        (KIND_SPAN_NEW, new_span(6, 999, "lost-parent")),
        (KIND_SPAN_STEP, step(6, SPAN_OP_ENTER, "lost-parent")),
        (KIND_SPAN_STEP, step(6, SPAN_OP_EXIT, "lost-parent")),
        // A parent cycle, and an event inside it.
        (KIND_SPAN_NEW, new_span(7, 8, "a")),
        (KIND_SPAN_NEW, new_span(8, 7, "b")),
        (KIND_EVENT, 7u64.to_le_bytes().to_vec()),
        // Out of order: enter 10, enter 11, exit 10, exit 11.
        (KIND_SPAN_STEP, step(10, SPAN_OP_ENTER, "outer")),
        (KIND_SPAN_STEP, step(11, SPAN_OP_ENTER, "inner")),
        (KIND_SPAN_STEP, step(10, SPAN_OP_EXIT, "outer")),
        (KIND_SPAN_STEP, step(11, SPAN_OP_EXIT, "inner")),
        // Cut short, an unknown step, a zero id, a name past the end.
        (KIND_SPAN_STEP, vec![1, 2, 3]),
        (KIND_SPAN_STEP, step(12, 9, "x")),
        (KIND_SPAN_STEP, step(0, SPAN_OP_ENTER, "zero")),
        (KIND_SPAN_NEW, vec![7; 20]),
        (KIND_SPAN_FOLLOWS, vec![1; 9]),
    ];
    let mut bad = records[records.len() - 5..].len();
    let mut past = step(13, SPAN_OP_ENTER, "abc");
    past[SP_NAME_LEN] = 250;
    records.push((KIND_SPAN_STEP, past));
    bad += 1;
    // An absurd depth: 20,000 enters of one span, never exited.
    for _ in 0..20_000 {
        records.push((KIND_SPAN_STEP, step(9, SPAN_OP_ENTER, "deep")));
    }
    hostile_ring(&ring, &records);

    let out = dir.path("hostile.json");
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
    assert_nested(events);
    let other = &trace["otherData"];
    assert_eq!(other["start_overwritten"], 1, "{other}");
    assert_eq!(
        other["depth_capped"].as_u64(),
        Some(20_000 - blackbox_reader::trace_event::MAX_DEPTH as u64),
        "{other}"
    );
    assert_eq!(other["undecodable_span_records"], bad as u64, "{other}");
    assert_eq!(other["deferred"], 1, "outer, exited before inner: {other}");
    let slice = |name: &str| {
        events
            .iter()
            .find(|e| e["ph"] == "X" && e["name"] == name)
            .unwrap_or_else(|| panic!("no slice {name}"))
            .clone()
    };
    assert_eq!(slice("orphan")["args"]["start_overwritten"], true);
    assert_eq!(slice("orphan")["ts"].as_f64(), Some(0.0));
    let (outer, inner) = (slice("outer"), slice("inner"));
    assert!(
        outer["args"]["exited_at"].as_f64().unwrap()
            < inner["ts"].as_f64().unwrap() + inner["dur"].as_f64().unwrap()
    );
    assert_eq!(
        events.iter().filter(|e| e["name"] == "inner").count(),
        1,
        "one slice per entry"
    );
    assert_eq!(slice("lost-parent")["args"]["parent"], "999");
    assert_eq!(slice("deep")["args"]["unfinished"], true);
    let inside = events
        .iter()
        .find(|e| e["name"] == "inside")
        .expect("the event in the cycle");
    // The cycle is followed once around, then the path's names decide:
    // "a:b" is not what the cycle gives, so no fields are guessed.
    let spans = inside["args"]["spans"].as_array().unwrap();
    assert!(spans.len() <= 64, "{inside}");
    let instants = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["s"] == "t")
        .count();
    assert_eq!(instants, 1 + bad, "the event and the undecodable records");

    // read shows every record, the bad ones as bytes with the reason.
    let all = read_json(&ring, &["--spans"]);
    assert_eq!(all.len(), records.len());
    let o = run(&["read", ring.to_str().unwrap(), "--spans"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("unknown span step"), "{}", stdout(&o));
}
