//! Span fields reach the events inside the spans: the `tracing` Layer
//! records each span once (its creation, with its fields, and values
//! recorded later), and `blackbox read` joins them into every event inside
//! it, as fmt shows them (`req{id=7}:db{table="users"}`), in text and in
//! `--json`. A span whose creation left the window is shown by name with
//! its fields unknown, never with another span's fields.

mod common;

use std::sync::Arc;

use blackbox_recorder::{BlackboxLayer, Recorder};
use common::{read_json, run, stderr, stdout, TempDir};
use serde_json::json;
use tracing_subscriber::prelude::*;

fn ring_with(path: &std::path::Path, capacity: u64, body: impl FnOnce()) {
    let rec = Arc::new(
        Recorder::builder(path)
            .capacity(capacity)
            .heartbeat(None)
            .create()
            .unwrap(),
    );
    let layer = BlackboxLayer::new(Arc::clone(&rec));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    Arc::try_unwrap(rec).ok().expect("last handle").close();
}

#[test]
fn an_event_shows_the_fields_of_its_spans_in_text_and_json() {
    let dir = TempDir::new("span-fields");
    let ring = dir.path("fields.ring");
    ring_with(&ring, 1 << 20, || {
        let req = tracing::info_span!("req", id = 7u64, user = tracing::field::Empty);
        let _req = req.enter();
        tracing::info!(target: "app", "before the user is known");
        req.record("user", "ann");
        let db = tracing::debug_span!("db", table = "users");
        let _db = db.enter();
        tracing::warn!(target: "app", ms = 250u64, "slow query");
    });

    let o = run(&["read", ring.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("app: before the user is known spans=req{id=7}\n"),
        "{text}"
    );
    assert!(
        text.contains("app: slow query spans=req{id=7 user=\"ann\"}:db{table=\"users\"} ms=250"),
        "{text}"
    );
    assert!(
        !text.contains("span_id"),
        "the join replaces the id: {text}"
    );
    assert!(
        !text.contains("SPAN"),
        "span records only with --spans: {text}"
    );

    let records = read_json(&ring, &[]);
    let slow = records
        .iter()
        .find(|r| r["message"] == "slow query")
        .expect("the event");
    assert_eq!(slow["spans"][0]["name"], "req", "{slow}");
    assert_eq!(
        slow["spans"][0]["fields"],
        json!({"id": 7, "user": "ann"}),
        "{slow}"
    );
    assert_eq!(
        slow["spans"][1]["fields"],
        json!({"table": "users"}),
        "{slow}"
    );
    assert_eq!(slow["fields"]["spans"], "req:db", "{slow}");
    assert_eq!(slow["fields"]["ms"], 250, "{slow}");
    let before = records
        .iter()
        .find(|r| r["message"] == "before the user is known")
        .expect("the first event");
    assert_eq!(before["spans"][0]["fields"], json!({"id": 7}), "{before}");

    // With --spans, the span records themselves.
    let o = run(&["read", ring.to_str().unwrap(), "--spans"]);
    let text = stdout(&o);
    assert!(text.contains("SPAN  "), "{text}");
    assert!(text.contains(": new req #"), "{text}");
    assert!(text.contains(" id=7"), "{text}");
    assert!(text.contains("SPAN  enter db #"), "{text}");
    assert!(text.contains("SPAN  close req #"), "{text}");
    let all = read_json(&ring, &["--spans"]);
    let steps: Vec<&str> = all
        .iter()
        .filter(|r| r["kind"] == "span-step")
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["enter", "enter", "exit", "close", "exit", "close"],
        "db is dropped first"
    );
}

#[test]
fn a_span_whose_creation_left_the_window_is_shown_with_unknown_fields() {
    let dir = TempDir::new("span-lost");
    let ring = dir.path("lost.ring");
    // A small ring: the events inside the span push its creation out.
    ring_with(&ring, 64 << 10, || {
        let old = tracing::info_span!("old", id = 1u64);
        let _old = old.enter();
        for i in 0..5_000u64 {
            tracing::info!(target: "app", i, "filler");
        }
        let new = tracing::info_span!("new", id = 2u64);
        let _new = new.enter();
        tracing::info!(target: "app", "last");
    });
    let records = read_json(&ring, &[]);
    let first = records.iter().find(|r| r["message"] == "filler").unwrap();
    assert!(
        first["fields"]["i"].as_u64().unwrap() > 0,
        "the ring wrapped"
    );
    let last = records.iter().find(|r| r["message"] == "last").unwrap();
    assert_eq!(
        last["spans"],
        json!([
            {"name": "old", "id": null, "fields": null},
            {"name": "new", "id": last["fields"]["span_id"], "fields": {"id": 2}},
        ]),
        "{last}"
    );
    let o = run(&["read", ring.to_str().unwrap(), "--last", "1"]);
    assert!(
        stdout(&o).contains("app: last spans=old{?}:new{id=2}"),
        "{}",
        stdout(&o)
    );
}
