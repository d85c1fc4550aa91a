//! Structured records: events written through `tracing` (the blackbox
//! Layer) and `log` (the blackbox Logger) arrive with their field types and
//! values after a real SIGKILL of the writer, read back by `blackbox read
//! --json` in another process; typed records are shown by type name and
//! decoded by the reader library; and the append paths allocate nothing in
//! steady state (a counting global allocator in this test binary).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;

use blackbox_recorder::layout::{KIND_TYPED, R_KIND, TYPED_CODEC_CBOR};
use blackbox_recorder::{BlackboxLayer, BlackboxLogger, Field, Level, Recorder};
use common::{assert_contiguous, demo_counters, read_json, run, stderr, TempDir};
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

// ---------------------------------------------------------------------------
// A counting allocator: counts the allocations of the threads that ask it
// to (so the other tests running in parallel do not count).

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // try_with: the thread-locals are const-initialised and have no
    // destructor, so this never allocates and never fails mid-teardown.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so the caller's obligations pass through; counting
// only touches thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Helpers.

const RECORDS: u64 = 200;
const THREADS: u64 = 2;

/// Runs `blackbox demo --via VIA --every-type --die kill` and checks that
/// it died of SIGKILL.
fn demo_killed(ring: &Path, via: &str) {
    let o = run(&[
        "demo",
        "--ring",
        ring.to_str().unwrap(),
        "--capacity",
        "1MiB",
        "--records",
        &RECORDS.to_string(),
        "--threads",
        &THREADS.to_string(),
        "--via",
        via,
        "--every-type",
        "--die",
        "kill",
    ]);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGKILL),
        "demo --via {via} --die kill: {:?}, stderr {}",
        o.status,
        stderr(&o)
    );
}

fn state(ring: &Path) -> String {
    let info = common::info_json(ring);
    info["state"].as_str().unwrap_or_default().to_string()
}

/// The `--every-type` event, as every path must deliver it.
fn assert_every_type_event(r: &Value, via: &str) {
    assert_eq!(r["kind"], "event", "{via}: {r}");
    assert_eq!(r["level"], "DEBUG", "{via}: {r}");
    assert_eq!(r["target"], "blackbox::demo::types", "{via}: {r}");
    assert_eq!(r["message"], "every field type", "{via}: {r}");
    let mut types = json!({
        "i": "i64", "u": "u64", "f": "f64", "b": "bool", "s": "str", "d": "debug",
    });
    let mut fields = json!({
        "i": -5, "u": 7, "f": 2.5, "b": true, "s": "text", "d": "[1, 2]",
    });
    if via == "tracing" {
        // The names of the spans the event was in, outermost first.
        types["spans"] = json!("str");
        fields["spans"] = json!("outer:inner");
        // The innermost span's id, through which the reader joins the
        // spans' fields into the event.
        types["span_id"] = json!("u64");
        let id = r["fields"]["span_id"].as_u64().unwrap_or(0);
        assert!(id > 0, "{via}: {r}");
        fields["span_id"] = json!(id);
        assert_eq!(r["spans"][1]["id"], json!(id), "{via}: {r}");
        assert_eq!(r["spans"][0]["name"], "outer", "{via}: {r}");
        assert_eq!(r["spans"][1]["fields"], json!({}), "{via}: {r}");
    }
    assert_eq!(r["field_types"], types, "{via}: {r}");
    assert_eq!(r["fields"], fields, "{via}: {r}");
    assert!(
        r["fields"]["f"].is_f64() && r["fields"]["i"].is_i64(),
        "{r}"
    );
}

/// Reads the killed demo's ring and checks everything the demo wrote.
fn check_killed_demo(ring: &Path, via: &str) {
    assert_eq!(state(ring), "killed", "{via}");
    // Events only (a demo built with typed records also writes those).
    let records: Vec<Value> = read_json(ring, &[])
        .into_iter()
        .filter(|r| r["kind"] == "event")
        .collect();
    let (types, rest): (Vec<Value>, Vec<Value>) = records
        .into_iter()
        .partition(|r| r["target"] == "blackbox::demo::types");
    assert_eq!(types.len(), 1, "{via}: one every-type event: {types:?}");
    assert_every_type_event(&types[0], via);

    // Every demo record arrived (nothing lost to the SIGKILL), with `t`,
    // `n` and `dropped` as u64 fields whatever the path.
    let demo: Vec<&Value> = rest
        .iter()
        .filter(|r| r["message"] == "demo record")
        .collect();
    for r in &demo {
        assert_eq!(
            r["field_types"],
            json!({"t": "u64", "n": "u64", "dropped": "u64"}),
            "{via}: {r}"
        );
    }
    let counters = demo_counters(&rest);
    let last = assert_contiguous(&counters);
    assert_eq!(counters.len() as u64, RECORDS * THREADS, "{via}");
    for t in 0..THREADS {
        assert_eq!(last.get(&t), Some(&(RECORDS - 1)), "{via}: thread {t}");
    }
}

// ---------------------------------------------------------------------------
// Through SIGKILL.

#[test]
fn tracing_fields_arrive_typed_through_sigkill() {
    let dir = TempDir::new("structured-tracing");
    let ring = dir.path("tracing.ring");
    demo_killed(&ring, "tracing");
    check_killed_demo(&ring, "tracing");
}

#[test]
fn log_key_values_arrive_typed_through_sigkill() {
    let dir = TempDir::new("structured-log");
    let ring = dir.path("log.ring");
    demo_killed(&ring, "log");
    check_killed_demo(&ring, "log");
}

#[test]
fn raw_tracing_and_log_write_the_same_demo_records() {
    let dir = TempDir::new("structured-same");
    let mut shapes = Vec::new();
    for via in ["raw", "tracing", "log"] {
        let ring = dir.path(&format!("{via}.ring"));
        let o = run(&[
            "demo",
            "--ring",
            ring.to_str().unwrap(),
            "--records",
            "5",
            "--via",
            via,
        ]);
        assert!(o.status.success(), "{via}: {}", stderr(&o));
        assert_eq!(state(&ring), "exited", "{via}: the ring is closed cleanly");
        let records = read_json(&ring, &["--target", "blackbox::demo", "--level", "info"]);
        let shape: Vec<Value> = records
            .iter()
            .map(|r| {
                json!([
                    r["level"],
                    r["target"],
                    r["message"],
                    r["fields"],
                    r["field_types"]
                ])
            })
            .collect();
        assert_eq!(shape.len(), 6, "{via}: 5 records and the epilogue");
        shapes.push(shape);
    }
    assert_eq!(shapes[0], shapes[1], "raw and tracing differ");
    assert_eq!(shapes[0], shapes[2], "raw and log differ");
}

#[test]
fn read_filters_by_target_prefix_with_level_and_since() {
    let dir = TempDir::new("structured-target");
    let ring = dir.path("t.ring");
    demo_killed(&ring, "tracing");
    // Events by target, typed records (where the demo writes them) by type
    // name.
    let demo = read_json(&ring, &[])
        .iter()
        .filter(|r| {
            r["target"]
                .as_str()
                .or(r["type"].as_str())
                .is_some_and(|n| n.starts_with("blackbox::demo"))
        })
        .count();
    assert!(demo > (RECORDS * THREADS) as usize);
    let count = |extra: &[&str]| read_json(&ring, extra).len();
    assert_eq!(count(&["--target", "blackbox::demo::types"]), 1);
    assert_eq!(count(&["--target", "blackbox::demo"]), demo, "a prefix");
    assert_eq!(count(&["--target", "blackbox::demo::t"]), 1, "a prefix");
    assert_eq!(count(&["--target", "nowhere"]), 0);
    assert_eq!(
        count(&["--target", "blackbox::demo::types", "--level", "info"]),
        0,
        "the every-type event is DEBUG"
    );
    assert_eq!(
        count(&[
            "--target",
            "blackbox::demo::types",
            "--level",
            "debug",
            "--since",
            "1h"
        ]),
        1
    );
    // Text output too.
    let o = run(&[
        "read",
        ring.to_str().unwrap(),
        "--target",
        "blackbox::demo::types",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = common::stdout(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(
            "every field type spans=outer:inner i=-5 u=7 f=2.5 b=true s=\"text\" d=[1, 2]"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Typed records.

/// A typed payload laid out as `shm-layout.md` says.
fn typed_payload(name: &str, codec_id: u8, value: &[u8]) -> Vec<u8> {
    let mut p = (name.len() as u16).to_le_bytes().to_vec();
    p.extend_from_slice(&[codec_id, 0]);
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(value);
    p
}

/// Turns the (closed) ring's raw record `seq` (of the only writer) into a
/// typed record: its KIND becomes `KIND_TYPED` and its checksum is
/// recomputed, as a writer following the spec would have written it.
fn retag_as_typed(ring: &Path, seq: u64) {
    let mut file = std::fs::read(ring).unwrap();
    let r = common::file_records(&file)
        .into_iter()
        .find(|r| r.seq == seq && r.writer == 0)
        .expect("the record is in the file");
    file[r.at + R_KIND..r.at + R_KIND + 2].copy_from_slice(&KIND_TYPED.to_le_bytes());
    common::reseal_record(&mut file, &r);
    std::fs::write(ring, file).unwrap();
}

/// A user's type, unknown to the `blackbox` binary: nested structs, enums
/// of every shape, a `Vec`, an `Option`, a map with integer keys.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    customer: Customer,
    items: Vec<Item>,
    status: Status,
    history: Vec<Status>,
    note: Option<String>,
    stock: std::collections::BTreeMap<u32, i64>,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Customer {
    name: String,
    tier: Tier,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
enum Tier {
    Free,
    Paid { seats: u16 },
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Item {
    sku: String,
    qty: u32,
    price: f64,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
enum Status {
    New,
    Paid(f64),
    Shipped { carrier: String, parcels: Vec<u32> },
}

fn order() -> Order {
    Order {
        id: 1 << 40,
        customer: Customer {
            name: "Ada".into(),
            tier: Tier::Paid { seats: 3 },
        },
        items: vec![
            Item {
                sku: "tea".into(),
                qty: 2,
                price: 3.5,
            },
            Item {
                sku: "cup".into(),
                qty: 1,
                price: -0.25,
            },
        ],
        status: Status::Shipped {
            carrier: "post".into(),
            parcels: vec![7, 8],
        },
        history: vec![Status::New, Status::Paid(10.5)],
        note: None,
        stock: [(1, -3), (20, 40)].into(),
    }
}

#[test]
fn any_user_type_shows_as_json_in_the_cli_and_decodes_into_its_type() {
    let dir = TempDir::new("structured-typed");
    let ring = dir.path("typed.ring");
    let rec = Recorder::builder(&ring)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    rec.record(&order()).unwrap();
    rec.record_as("app::Pair", &(7u32, "x")).unwrap();
    let payloads = [
        // An unknown codec: the type name and the bytes, with the reason.
        typed_payload("app::Future", 9, &[1, 2, 3]),
        // Codec 2, but not CBOR: the bytes, with the reason.
        typed_payload("app::Broken", TYPED_CODEC_CBOR, &[0xff, 0x00]),
        // A type name that runs past the payload: malformed.
        vec![200, 0, TYPED_CODEC_CBOR, 0, b'x'],
    ];
    let seqs: Vec<u64> = payloads.iter().map(|p| rec.append(p).unwrap()).collect();
    rec.log(Level::Info, "app", "after", &[]).unwrap();
    rec.close();
    for &seq in &seqs {
        retag_as_typed(&ring, seq);
    }
    let o = run(&["verify", ring.to_str().unwrap()]);
    assert!(o.status.success(), "retagged ring verifies: {}", stderr(&o));

    // The CLI, in another process, knows none of these types.
    let records = read_json(&ring, &[]);
    assert_eq!(records.len(), 6);
    let shown = &records[0];
    assert_eq!(shown["kind"], "typed", "{shown}");
    assert_eq!(shown["type"], std::any::type_name::<Order>(), "{shown}");
    assert_eq!(shown["value"], serde_json::to_value(order()).unwrap());
    assert_eq!(
        shown["value"]["status"]["Shipped"]["parcels"],
        json!([7, 8])
    );
    assert_eq!(shown["value"]["stock"], json!({"1": -3, "20": 40}));
    assert_eq!(records[1]["type"], "app::Pair");
    assert_eq!(records[1]["value"], json!([7, "x"]));
    let future = &records[2];
    assert_eq!(future["type"], "app::Future", "{future}");
    assert_eq!(future["bytes_hex"], "010203", "{future}");
    assert!(future.get("value").is_none(), "{future}");
    assert!(
        future["decode_error"]
            .as_str()
            .is_some_and(|e| e.contains("codec 9")),
        "{future}"
    );
    let broken = &records[3];
    assert_eq!(broken["bytes_hex"], "ff00", "{broken}");
    assert!(broken["decode_error"].is_string(), "{broken}");
    let malformed = &records[4];
    assert_eq!(malformed["kind"], "typed", "{malformed}");
    assert!(malformed.get("type").is_none(), "{malformed}");
    assert!(
        malformed["decode_error"]
            .as_str()
            .is_some_and(|e| e.contains("type name")),
        "{malformed}"
    );
    let o = run(&["read", ring.to_str().unwrap(), "--target", "app::Pair"]);
    let text = common::stdout(&o);
    assert_eq!(
        text.lines().count(),
        1,
        "--target matches type names: {text}"
    );
    assert!(
        text.contains(r#"TYPED app::Pair 4 bytes: [7,"x"]"#),
        "{text}"
    );

    // The library decodes them back into their types.
    let r = blackbox_reader::Ring::open(&ring).unwrap();
    let snap = r.snapshot().unwrap();
    let orders: Vec<_> = blackbox_reader::typed::records_of::<Order>(&snap).collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].1, Ok(order()));
    let pair = blackbox_reader::typed::typed_record(&snap, &snap.records[1]).unwrap();
    assert_eq!(
        pair.decode_named::<(u32, String)>("app::Pair"),
        Ok((7, "x".to_string()))
    );
    assert!(matches!(
        pair.decode::<(u32, String)>(),
        Err(blackbox_reader::typed::TypedError::OtherType { .. })
    ));
    assert!(blackbox_reader::typed::decode_record::<Order>(&snap, &snap.records[5]).is_err());
}

/// Typed records written by `Recorder::record` (needs the recorder's
/// `typed` feature) through a SIGKILL.
#[cfg(feature = "typed")]
#[test]
fn typed_records_written_by_the_recorder_survive_sigkill() {
    let dir = TempDir::new("structured-typed-kill");
    let ring = dir.path("typed.ring");
    demo_killed(&ring, "raw");
    let records = read_json(&ring, &["--target", "blackbox::demo::Sample"]);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["value"],
        json!({"i": -5, "label": "typed", "ratio": 0.25, "tags": ["a", "b"], "flag": true})
    );
    let r = blackbox_reader::Ring::open(&ring).unwrap();
    let snap = r.snapshot().unwrap();
    let tuples: Vec<_> = blackbox_reader::typed::records_of::<(u32, String)>(&snap).collect();
    assert_eq!(tuples.len(), 1);
    assert_eq!(tuples[0].1, Ok((7, "unknown to the CLI".to_string())));
}

// ---------------------------------------------------------------------------
// No allocation on the append paths.

#[test]
fn the_append_paths_allocate_nothing_in_steady_state() {
    const N: u64 = 2000;
    let dir = TempDir::new("structured-alloc");
    let ring = dir.path("alloc.ring");
    let rec = Arc::new(
        Recorder::builder(&ring)
            .capacity(1 << 20)
            .heartbeat(None)
            .create()
            .unwrap(),
    );

    // The counter counts.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))) >= 1);

    // Recorder::log.
    let raw = || {
        for i in 0..N {
            let fields = [
                Field::new("n", i),
                Field::new("ok", true),
                Field::new("s", "str"),
            ];
            rec.log(Level::Info, "app::raw", "request done", &fields)
                .unwrap();
        }
    };
    raw(); // warm-up
    assert_eq!(allocations_in(raw), 0, "Recorder::log allocated");

    // The tracing Layer, inside two spans, with a formatted message and a
    // few fields of several types (one rendered with Debug).
    let layer = BlackboxLayer::new(Arc::clone(&rec)).with_thread_names(true);
    let subscriber = tracing_subscriber::registry().with(layer);
    let guard = tracing::subscriber::set_default(subscriber);
    let outer = tracing::info_span!("outer");
    // A span's parent is the span current where it is created.
    let inner = outer.in_scope(|| tracing::info_span!("inner"));
    let events = || {
        let _outer = outer.enter();
        let _inner = inner.enter();
        for i in 0..N {
            tracing::info!(
                target: "app::tracing",
                n = i,
                delta = -3i64,
                ratio = 0.5,
                ok = true,
                s = "str",
                d = ?(1, 2),
                "request {} done",
                i
            );
        }
    };
    events(); // warm-up: callsite registration, the span stack
    assert_eq!(allocations_in(events), 0, "the tracing Layer allocated");
    drop(guard);

    // The log adapter, with key-values. The guard marks the ring exited
    // at the end of the test.
    let _exit_guard = BlackboxLogger::new(Arc::clone(&rec)).init().unwrap();
    let logs = || {
        for i in 0..N {
            log::info!(target: "app::log", n = i, ok = true, s = "str", d:? = (1, 2); "request {} done", i);
        }
    };
    logs(); // warm-up
    assert_eq!(allocations_in(logs), 0, "the log adapter allocated");

    #[cfg(feature = "typed")]
    {
        let value = (7u32, String::from("typed"), vec![1u64, 2, 3]);
        let typed = || {
            for _ in 0..N {
                rec.record(&value).unwrap();
            }
        };
        typed(); // warm-up
        assert_eq!(allocations_in(typed), 0, "Recorder::record allocated");
    }

    // The appends really happened: the last events of each path are there.
    let snap = blackbox_reader::Ring::open(&ring)
        .unwrap()
        .snapshot()
        .unwrap();
    let events: Vec<blackbox_reader::Event<'_>> = snap
        .records
        .iter()
        .filter_map(|r| blackbox_reader::decode_event(snap.payload(r)).ok())
        .collect();
    let last = |target: &str| {
        events
            .iter()
            .rev()
            .find(|e| e.target == target)
            .unwrap_or_else(|| panic!("no event of {target}"))
    };
    let t = last("app::tracing");
    assert_eq!(t.message, format!("request {} done", N - 1));
    let names: Vec<&str> = t.fields.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(
        names,
        ["spans", "span_id", "thread", "n", "delta", "ratio", "ok", "s", "d"]
    );
    assert_eq!(
        t.fields[0].1,
        blackbox_reader::FieldValue::Str("outer:inner".into())
    );
    assert_eq!(
        t.fields[8].1,
        blackbox_reader::FieldValue::Debug("(1, 2)".into())
    );
    let l = last("app::log");
    assert_eq!(l.message, format!("request {} done", N - 1));
    assert_eq!(l.fields[0].1, blackbox_reader::FieldValue::U64(N - 1));
    assert_eq!(
        l.fields[3].1,
        blackbox_reader::FieldValue::Debug("(1, 2)".into())
    );
}

#[test]
fn long_text_and_many_fields_are_cut_not_allocated() {
    let dir = TempDir::new("structured-cut");
    let ring = dir.path("cut.ring");
    let rec = Arc::new(
        Recorder::builder(&ring)
            .capacity(1 << 20)
            .heartbeat(None)
            .create()
            .unwrap(),
    );
    let subscriber = tracing_subscriber::registry().with(BlackboxLayer::new(Arc::clone(&rec)));
    let long = "é".repeat(2000); // 4000 bytes, two bytes a character
    tracing::subscriber::with_default(subscriber, || {
        let emit = || {
            tracing::warn!(
                target: "app::cut",
                a = 1u64, b = 2u64, c = 3u64, d = 4u64, e = 5u64, f = 6u64,
                g = 7u64, h = 8u64, i = 9u64, j = 10u64, k = 11u64, l = 12u64,
                m = 13u64, n = 14u64, o = 15u64, p = 16u64, q = 17u64, r = 18u64,
                long = long.as_str(),
                "{}",
                long
            );
        };
        emit();
        assert_eq!(allocations_in(emit), 0);
    });
    let snap = blackbox_reader::Ring::open(&ring)
        .unwrap()
        .snapshot()
        .unwrap();
    let e = blackbox_reader::decode_event(snap.payload(snap.records.last().unwrap())).unwrap();
    assert!(e.message.ends_with('…'), "{}", e.message);
    assert!(e.message.len() <= blackbox_recorder::tracing_layer::MESSAGE_CAP);
    assert_eq!(
        e.fields.len(),
        blackbox_recorder::tracing_layer::MAX_EVENT_FIELDS + 1
    );
    let (name, value) = e.fields.last().unwrap();
    assert_eq!(
        (name.as_ref(), value),
        ("dropped_fields", &blackbox_reader::FieldValue::U64(3))
    );
}

#[test]
fn events_too_big_for_the_fast_path_arrive_whole() {
    // 10 fields, a 300-byte message and 400 bytes of text: more than the
    // layer's small buffers, less than its full ones.
    let dir = TempDir::new("structured-medium");
    let ring = dir.path("medium.ring");
    let rec = Arc::new(
        Recorder::builder(&ring)
            .capacity(1 << 20)
            .heartbeat(None)
            .create()
            .unwrap(),
    );
    let layer = BlackboxLayer::new(Arc::clone(&rec)).with_thread_names(true);
    let subscriber = tracing_subscriber::registry().with(layer);
    let message = "m".repeat(300);
    let text = "t".repeat(200);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        let emit = || {
            tracing::error!(
                target: "app::medium",
                a = 1u64, b = 2u64, c = 3u64, d = 4u64, e = 5u64,
                f = 6u64, g = 7u64, h = 8u64,
                s1 = text.as_str(), s2 = text.as_str(),
                "{}", message
            );
        };
        emit();
        assert_eq!(allocations_in(emit), 0);
    });
    let snap = blackbox_reader::Ring::open(&ring)
        .unwrap()
        .snapshot()
        .unwrap();
    // The last event (span records of the exit and close follow it).
    let last_event = snap
        .records
        .iter()
        .rev()
        .find(|r| r.kind == blackbox_recorder::layout::KIND_EVENT)
        .unwrap();
    let e = blackbox_reader::decode_event(snap.payload(last_event)).unwrap();
    assert_eq!(e.level(), Some(Level::Error));
    assert_eq!(e.message, message);
    let names: Vec<&str> = e.fields.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(
        names,
        ["spans", "span_id", "thread", "a", "b", "c", "d", "e", "f", "g", "h", "s1", "s2"]
    );
    assert_eq!(
        e.fields[0].1,
        blackbox_reader::FieldValue::Str("request".into())
    );
    assert_eq!(
        e.fields[11].1,
        blackbox_reader::FieldValue::Str(text.clone().into())
    );
}
