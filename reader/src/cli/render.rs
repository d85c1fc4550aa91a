//! How records look on the terminal and as JSON lines.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use recorder::layout::{KIND_EVENT, KIND_RAW, KIND_TYPED};
use serde_json::{json, Map, Value};

use crate::typed::{parse_typed, JsonTypes, Typed, TypedError};
use crate::{decode_event, Event, FieldValue, Gap, Record, Snapshot};

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-23T19:49:29.123456789Z`.
pub fn rfc3339(unix_ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// A record decoded for display.
pub enum Shown<'a> {
    /// A well-formed event.
    Event(Event<'a>),
    /// A typed record: its type name and bytes, and its value as JSON when
    /// the CLI knows the type ([`cli_types`]).
    Typed {
        typed: Typed<'a>,
        value: Option<Result<Value, TypedError>>,
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
                let value = cli_types().to_json(&typed);
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

/// The types the CLI shows as JSON: the demo's own. Every other typed
/// record is shown by its type name and its bytes in hex.
pub fn cli_types() -> &'static JsonTypes {
    static TYPES: std::sync::OnceLock<JsonTypes> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        let mut types = JsonTypes::new();
        super::demo::register_types(&mut types);
        types
    })
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
        k => format!("kind-{k}"),
    }
}

fn field_text(v: &FieldValue<'_>) -> String {
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

fn field_json(v: &FieldValue<'_>) -> Value {
    match v {
        FieldValue::I64(x) => json!(x),
        FieldValue::U64(x) => json!(x),
        FieldValue::F64(x) if x.is_finite() => json!(x),
        FieldValue::F64(x) => json!(x.to_string()),
        FieldValue::Bool(x) => json!(x),
        FieldValue::Str(s) | FieldValue::Debug(s) => json!(s),
    }
}

/// One line of text for a gap before a record.
pub fn gap_text(gap: &Gap) -> String {
    let mut parts = vec![format!("{} bytes lost", gap.bytes)];
    if gap.torn > 0 {
        parts.push(format!("{} torn (writer never published)", gap.torn));
    }
    if gap.corrupt > 0 {
        parts.push(format!("{} corrupt (failed checksum)", gap.corrupt));
    }
    if gap.overwritten > 0 {
        parts.push(format!(
            "{} overwritten by a lapped writer",
            gap.overwritten
        ));
    }
    format!("-- gap: {} --", parts.join(", "))
}

fn gap_json(gap: &Gap) -> Value {
    json!({
        "bytes": gap.bytes,
        "torn": gap.torn,
        "corrupt": gap.corrupt,
        "overwritten": gap.overwritten,
    })
}

/// The text line of a record.
pub fn text(record: &Record, shown: &Shown<'_>) -> String {
    let ts = rfc3339(record.ts_unix_ns);
    match shown {
        Shown::Event(e) => {
            let level = e.level().map_or("?", |l| l.as_str());
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
                Some(Ok(v)) => v.to_string(),
                Some(Err(e)) => format!("({e}) {}", hex(typed.bytes, 64)),
                None => hex(typed.bytes, 64),
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
    o.insert("ts".into(), json!(rfc3339(record.ts_unix_ns)));
    match shown {
        Shown::Event(e) => {
            o.insert("level".into(), json!(e.level().map(|l| l.as_str())));
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
            o.insert("thread_id".into(), json!(e.thread_id));
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
                Some(Ok(v)) => {
                    o.insert("value".into(), v.clone());
                }
                Some(Err(e)) => {
                    o.insert("decode_error".into(), json!(e.to_string()));
                }
                None => {}
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
