//! How records look on the terminal and as JSON lines, and a ring as the
//! `info --json` object: shared by the CLI (`read`, `info`, `on-failure`)
//! and the shipper, so a shipment carries exactly what `read --json` and
//! `info --json` print.

use std::fmt::Write as _;

use blackbox_recorder::layout::{KIND_EVENT, KIND_RAW, KIND_TYPED};
use serde_json::{json, Map, Value};

use crate::cause::Cause;
use crate::event::{decode_event, Event, FieldValue};
use crate::ring::{Gap, Record, Snapshot, State};
use crate::typed::{parse_typed, Typed, TypedError};

pub use crate::time::rfc3339;

/// A record decoded for display.
pub enum Shown<'a> {
    /// A well-formed event.
    Event(Event<'a>),
    /// A typed record: its type name and bytes, and its value as JSON (or
    /// why it could not be had).
    Typed {
        typed: Typed<'a>,
        value: Result<Value, TypedError>,
    },
    /// Anything else: raw bytes, an unknown kind, or an event or typed
    /// record that does not decode (with the reason).
    Bytes {
        kind: u16,
        bytes: &'a [u8],
        problem: Option<&'static str>,
    },
}

/// Decodes `record` for display.
pub fn show<'a>(snap: &'a Snapshot, record: &Record) -> Shown<'a> {
    let payload = snap.payload(record);
    if record.kind == KIND_EVENT {
        match decode_event(payload) {
            Ok(e) => Shown::Event(e),
            Err(e) => Shown::Bytes {
                kind: record.kind,
                bytes: payload,
                problem: Some(e.0),
            },
        }
    } else if record.kind == KIND_TYPED {
        match parse_typed(payload) {
            Ok(typed) => {
                let value = typed.to_json();
                Shown::Typed { typed, value }
            }
            Err(e) => Shown::Bytes {
                kind: record.kind,
                bytes: payload,
                problem: Some(e.0),
            },
        }
    } else {
        Shown::Bytes {
            kind: record.kind,
            bytes: payload,
            problem: None,
        }
    }
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(bytes.len().min(max) * 2);
    for b in bytes.iter().take(max) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > max {
        s.push('…');
    }
    s
}

fn kind_name(kind: u16) -> String {
    match kind {
        KIND_EVENT => "event".into(),
        KIND_RAW => "raw".into(),
        KIND_TYPED => "typed".into(),
        blackbox_recorder::layout::KIND_SPAN_NEW => "span-new".into(),
        blackbox_recorder::layout::KIND_SPAN_RECORD => "span-record".into(),
        blackbox_recorder::layout::KIND_SPAN_STEP => "span-step".into(),
        blackbox_recorder::layout::KIND_SPAN_FOLLOWS => "span-follows".into(),
        k => format!("kind-{k}"),
    }
}

pub(crate) fn field_text(v: &FieldValue<'_>) -> String {
    match v {
        FieldValue::I64(x) => x.to_string(),
        FieldValue::U64(x) => x.to_string(),
        FieldValue::F64(x) => x.to_string(),
        FieldValue::Bool(x) => x.to_string(),
        FieldValue::Str(s) => format!("{s:?}"),
        FieldValue::Debug(s) => s.to_string(),
    }
}

/// The name of a field's type on disk, for `read --json`'s `field_types`.
fn field_type(v: &FieldValue<'_>) -> &'static str {
    match v {
        FieldValue::I64(_) => "i64",
        FieldValue::U64(_) => "u64",
        FieldValue::F64(_) => "f64",
        FieldValue::Bool(_) => "bool",
        FieldValue::Str(_) => "str",
        FieldValue::Debug(_) => "debug",
    }
}

pub(crate) fn field_json(v: &FieldValue<'_>) -> Value {
    match v {
        FieldValue::I64(x) => json!(x),
        FieldValue::U64(x) => json!(x),
        FieldValue::F64(x) if x.is_finite() => json!(x),
        FieldValue::F64(x) => json!(x.to_string()),
        FieldValue::Bool(x) => json!(x),
        FieldValue::Str(s) | FieldValue::Debug(s) => json!(s),
    }
}

/// One line of text for a gap before a record of writer `writer`.
pub fn gap_text(writer: u32, gap: &Gap) -> String {
    let mut parts = Vec::new();
    if gap.missing > 0 {
        let mut missing = format!("{} record(s) missing", gap.missing);
        if gap.corrupt > 0 {
            missing.push_str(&format!(" ({} corrupt: failed checksum)", gap.corrupt));
        }
        parts.push(missing);
    }
    if gap.dropped > 0 {
        parts.push(format!("{} append(s) dropped (no free chunk)", gap.dropped));
    }
    format!("-- gap in writer {writer}: {} --", parts.join(", "))
}

fn gap_json(gap: &Gap) -> Value {
    json!({
        "missing": gap.missing,
        "corrupt": gap.corrupt,
        "dropped": gap.dropped,
    })
}

/// The text line of a record.
pub fn text(record: &Record, shown: &Shown<'_>) -> String {
    let mut line = text_body(record, shown);
    if record.flags != 0 {
        let _ = write!(line, " [record flags {:#06x}]", record.flags);
    }
    line
}

fn text_body(record: &Record, shown: &Shown<'_>) -> String {
    let ts = rfc3339(record.ts_unix_ns);
    match shown {
        Shown::Event(e) => {
            let level = crate::event::level_text(e.level_code);
            let mut line = format!("{ts} {level:<5} {}: {}", e.target, e.message);
            for (name, value) in &e.fields {
                let _ = write!(line, " {name}={}", field_text(value));
            }
            if e.truncated() {
                line.push_str(" (truncated)");
            }
            line
        }
        Shown::Typed { typed, value } => {
            let shown = match value {
                Ok(v) => v.to_string(),
                Err(e) => format!("({e}) {}", hex(typed.bytes, 64)),
            };
            format!(
                "{ts} TYPED {} {} bytes: {shown}",
                typed.type_name,
                typed.bytes.len()
            )
        }
        Shown::Bytes {
            kind,
            bytes,
            problem,
        } => {
            let why = problem.map_or(String::new(), |p| format!(" ({p})"));
            format!(
                "{ts} {:<5} {} bytes{why}: {}",
                kind_name(*kind).to_uppercase(),
                bytes.len(),
                hex(bytes, 64)
            )
        }
    }
}

/// The JSON object of a record (one line of `read --json`).
pub fn json(record: &Record, gap_before: Option<&Gap>, shown: &Shown<'_>) -> Value {
    let mut o = Map::new();
    o.insert("seq".into(), json!(record.seq));
    o.insert("writer".into(), json!(record.writer));
    o.insert("ts".into(), json!(rfc3339(record.ts_unix_ns)));
    match shown {
        Shown::Event(e) => {
            // A level the layout does not define is shown as its number.
            let level = match e.level() {
                Some(l) => json!(l.as_str()),
                None => json!(e.level_code),
            };
            o.insert("level".into(), level);
            o.insert("target".into(), json!(e.target));
            o.insert("message".into(), json!(e.message));
            let fields: Map<String, Value> = e
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), field_json(v)))
                .collect();
            o.insert("fields".into(), Value::Object(fields));
            let types: Map<String, Value> = e
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), json!(field_type(v))))
                .collect();
            o.insert("field_types".into(), Value::Object(types));
            if e.truncated() {
                o.insert("truncated".into(), json!(true));
            }
        }
        Shown::Typed { typed, value } => {
            o.insert("level".into(), Value::Null);
            o.insert("target".into(), Value::Null);
            o.insert("message".into(), Value::Null);
            o.insert("fields".into(), json!({}));
            o.insert("type".into(), json!(typed.type_name));
            o.insert("bytes_hex".into(), json!(hex(typed.bytes, usize::MAX)));
            match value {
                Ok(v) => {
                    o.insert("value".into(), v.clone());
                }
                Err(e) => {
                    o.insert("decode_error".into(), json!(e.to_string()));
                }
            }
        }
        Shown::Bytes { bytes, problem, .. } => {
            o.insert("level".into(), Value::Null);
            o.insert("target".into(), Value::Null);
            o.insert("message".into(), Value::Null);
            o.insert("fields".into(), json!({}));
            o.insert("bytes_hex".into(), json!(hex(bytes, usize::MAX)));
            if let Some(p) = problem {
                o.insert("decode_error".into(), json!(p));
            }
        }
    }
    o.insert("thread_id".into(), json!(record.thread_id));
    o.insert("record_flags".into(), json!(record.flags));
    let kind = match shown {
        Shown::Event(_) => KIND_EVENT,
        Shown::Typed { .. } => KIND_TYPED,
        Shown::Bytes { kind, .. } => *kind,
    };
    o.insert("kind".into(), json!(kind_name(kind)));
    if let Some(gap) = gap_before {
        o.insert("gap_before".into(), gap_json(gap));
    }
    Value::Object(o)
}

/// Bytes per second written over the window, if it spans any time: the
/// records' strides over the time between the oldest and the newest.
pub fn byte_rate(snap: &Snapshot) -> Option<f64> {
    let (first, last) = (snap.records.first()?, snap.records.last()?);
    let secs = last.ts_unix_ns.checked_sub(first.ts_unix_ns)? as f64 / 1e9;
    let bytes: u64 = snap
        .records
        .iter()
        .map(|r| blackbox_recorder::layout::stride(r.len as usize) as u64)
        .sum();
    (secs > 0.0).then(|| bytes as f64 / secs)
}

/// The `cause` object of `info --json`, with the cause's own backtrace
/// (a panic's) where the window holds it: the same one `info` prints.
fn cause_json(state: State, snap: &Snapshot) -> Value {
    let mut cause = Cause::of(state, &snap.header).map_or(Value::Null, |c| c.to_json());
    if let Value::Object(fields) = &mut cause {
        if fields.get("kind").and_then(Value::as_str) == Some("panic") {
            let bt = crate::cause::backtrace(state, snap);
            fields.insert("backtrace".into(), bt.map_or(Value::Null, Value::from));
        }
    }
    cause
}

fn empty_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

/// The object `blackbox info --json` prints for the ring at `path`: the
/// writer's identity, its state and cause of death, the window's extent.
pub fn info_json(path: &std::path::Path, state: State, snap: &Snapshot) -> Value {
    let h = &snap.header;
    let s = snap;
    let ns_time = |ns: u64| {
        if ns == 0 {
            Value::Null
        } else {
            json!(rfc3339(ns))
        }
    };
    let span = s
        .records
        .first()
        .zip(s.records.last())
        .map(|(a, b)| (a.ts_unix_ns, b.ts_unix_ns));
    let rate = byte_rate(s);
    json!({
        "path": path.display().to_string(),
        "state": state.as_str(),
        "cause": cause_json(state, snap),
        "pid": h.pid,
        "program": h.program,
        "app_version": h.app_version,
        "hostname": h.hostname,
        "boot_id": h.boot_id_text(),
        "start_time": ns_time(h.start_unix_ns),
        "heartbeat_time": ns_time(h.heartbeat_unix_ns),
        "close_time": ns_time(h.close_unix_ns),
        "invocation_id": empty_null(&h.invocation_id),
        "pod": {
            "name": empty_null(&h.pod_name),
            "namespace": empty_null(&h.pod_namespace),
            "uid": empty_null(&h.pod_uid),
            "container": empty_null(&h.container_name),
        },
        "layout_version": h.version,
        "capacity": h.capacity,
        "chunk_size": h.chunk_size,
        "chunks": h.chunk_count,
        "chunks_used": s.chunks_used,
        "chunk_tickets": h.next_ticket,
        "chunks_owned": s.chunks_owned,
        "clock": if h.clock == blackbox_recorder::layout::CLOCK_TSC { "tsc" } else { "realtime" },
        "records": s.records.len(),
        "first_seq": s.records.first().map(|r| r.seq),
        "last_seq": s.records.last().map(|r| r.seq),
        "first_ts": span.map(|(a, _)| rfc3339(a)),
        "last_ts": span.map(|(_, b)| rfc3339(b)),
        "span_seconds": span.map(|(a, b)| b.saturating_sub(a) as f64 / 1e9),
        "bytes_per_second": rate,
        "window_seconds_at_rate": rate.map(|r| h.capacity as f64 / r),
        "complete_from": s.complete_from_unix_ns().map(rfc3339),
        "writers": s.writers.iter().map(|w| json!({
            "writer": w.writer,
            "thread_id": w.thread_id,
            "thread_name": w.thread_name,
            "first_seq": w.first_seq,
            "last_seq": w.last_seq,
            "records": w.records,
            "dropped": w.dropped,
            "first_ts": rfc3339(w.first_ts_unix_ns),
            "last_ts": rfc3339(w.last_ts_unix_ns),
        })).collect::<Vec<_>>(),
        "torn": s.totals.torn,
        "corrupt": s.totals.corrupt,
        "missing": s.totals.holes,
        "gaps": s.gaps.len(),
        "dropped": h.dropped,
        "oversize_drops": h.oversize_drops,
        "snapshot_requests": h.snapshot_trigger,
        "snapshot_reason": s.snapshot_reason(h),
    })
}
