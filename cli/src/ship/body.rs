//! Building a shipment's body: NDJSON (the `info --json` object, then the
//! `read --json` lines) or OTLP/HTTP JSON, from one snapshot. The JSON of
//! records and of the ring comes from [`blackbox_reader::render`], the same code the
//! CLI prints with, so a shipment says exactly what `read` and `info` say.
//!
//! A shipment goes in parts of at most `max_body` bytes ([`split`]): each
//! part is a whole body (the shipment line or the resource, then that
//! part's records). The parts are planned from each record's serialized
//! length, then built one at a time, so only one part's bytes are held at
//! once (at the cost of serializing every record twice).

use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::options::Format;
use blackbox_reader::render::{info_json, rfc3339, show, Shown};
use blackbox_reader::span::{decode_span, is_span_kind, span_json, SpanIndex};
use blackbox_reader::{Snapshot, State};

/// The version written into shipments and the OTLP scope.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Which part of a shipment a body is: `index` of `count`, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    /// As wide as part numbers get: a body's frame is at most this long.
    const WIDEST: Part = Part {
        index: u32::MAX,
        count: u32::MAX,
    };
}

/// What the postmortem dump adds to a shipment: the main binary's build
/// id and, after a fatal signal, the crash's backtrace and the record of
/// its crash event (which carries the OpenTelemetry `exception.*`
/// attributes in OTLP).
#[derive(Debug, Default)]
pub(crate) struct Postmortem {
    pub build_id: Option<String>,
    pub frames: Vec<blackbox_reader::backtrace::Frame>,
    /// `(writer, seq)` of the crash event, and its exception type and
    /// message.
    pub exception: Option<((u32, u64), String, String)>,
}

impl Postmortem {
    /// From a ring's dump: the backtrace only for a crashed ring.
    pub fn of(ring: &blackbox_reader::Ring, state: State, snap: &Snapshot) -> Postmortem {
        let Ok(pm) = ring.postmortem() else {
            return Postmortem::default();
        };
        let build_id =
            (!pm.build_id.is_empty()).then(|| blackbox_reader::postmortem::hex(&pm.build_id));
        if state != State::Crashed {
            return Postmortem {
                build_id,
                ..Postmortem::default()
            };
        }
        if pm.crash.is_none() {
            // A panic leaves no dump: its hook's raw return addresses,
            // symbolized here as `info` does, are the backtrace.
            let frames = blackbox_reader::cause::backtrace(state, snap)
                .and_then(|raw| blackbox_reader::backtrace::parse_return_addresses(&raw))
                .map(|addresses| {
                    blackbox_reader::backtrace::symbolize_return_addresses(
                        &pm,
                        &addresses,
                        &blackbox_reader::backtrace::Options::with_symbols(Vec::new()),
                    )
                })
                .unwrap_or_default();
            return Postmortem {
                build_id,
                frames,
                exception: None,
            };
        }
        let frames = blackbox_reader::backtrace::backtrace(
            &pm,
            &blackbox_reader::backtrace::Options::with_symbols(Vec::new()),
        );
        let exception = snap.records.iter().rev().find_map(|r| {
            let e = blackbox_reader::decode_event(snap.payload(r)).ok()?;
            if e.target != "blackbox::crash" || !e.message.starts_with("fatal signal") {
                return None;
            }
            let signal = e.fields.iter().find_map(|(name, value)| match value {
                blackbox_reader::FieldValue::Str(s) if name == "signal" => Some(s.to_string()),
                _ => None,
            })?;
            Some(((r.writer, r.seq), signal, e.message.to_string()))
        });
        Postmortem {
            build_id,
            frames,
            exception,
        }
    }

    /// `exception.stacktrace`: one frame per line, innermost first.
    fn stacktrace(&self) -> String {
        self.frames
            .iter()
            .map(|f| format!("    at {}", f.text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One shipment of one snapshot.
pub(crate) struct Shipment<'a> {
    pub path: &'a Path,
    pub state: State,
    pub snap: &'a Snapshot,
    pub key: &'a str,
    pub reason: Option<&'a str>,
    pub shipped_unix_ns: u64,
    pub postmortem: &'a Postmortem,
}

impl Shipment<'_> {
    /// The shipment object: `info --json` plus `kind`, `key`, `reason`,
    /// `shipped_at`, `blackbox_version`, `part`, `parts`.
    fn head(&self, part: Part) -> Map<String, Value> {
        let mut head = match info_json(self.path, self.state, self.snap) {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        head.insert("kind".into(), json!("shipment"));
        head.insert("key".into(), json!(self.key));
        head.insert("reason".into(), json!(self.reason));
        head.insert("shipped_at".into(), json!(rfc3339(self.shipped_unix_ns)));
        head.insert("blackbox_version".into(), json!(VERSION));
        head.insert("part".into(), json!(part.index));
        head.insert("parts".into(), json!(part.count));
        head.insert("build_id".into(), json!(self.postmortem.build_id));
        head.insert(
            "backtrace".into(),
            serde_json::to_value(&self.postmortem.frames).unwrap_or(Value::Null),
        );
        // A panic's backtrace under its cause as `info --json` gives it:
        // the symbolized frames as text, not the raw addresses.
        if let Some(Value::Object(cause)) = head.get_mut("cause") {
            if cause.get("backtrace").is_some_and(Value::is_string)
                && !self.postmortem.frames.is_empty()
            {
                let text = self
                    .postmortem
                    .frames
                    .iter()
                    .map(blackbox_reader::backtrace::Frame::text)
                    .collect::<Vec<_>>()
                    .join("\n");
                cause.insert("backtrace".into(), Value::from(text));
            }
        }
        head
    }

    /// The records of `range`, each as `read --spans --json` prints it:
    /// span records decoded, events with their spans' fields joined.
    fn record_objects(
        &self,
        range: Range<usize>,
    ) -> impl Iterator<Item = (&blackbox_reader::Record, Map<String, Value>)> + '_ {
        let spans = SpanIndex::build(self.snap);
        self.snap.records[range].iter().map(move |r| {
            let gap = self.snap.gap_before(r);
            let shown = show(self.snap, r);
            let mut value = blackbox_reader::render::json(r, gap, &shown);
            if is_span_kind(r.kind) {
                if let Ok(span) = decode_span(r.kind, self.snap.payload(r)) {
                    let gap_before = value.get("gap_before").cloned();
                    value = span_json(r, &span);
                    if let Some(g) = gap_before {
                        value["gap_before"] = g;
                    }
                }
            } else if let Shown::Event(e) = &shown {
                if let Some(joined) = spans.join(r, e) {
                    value["spans"] = joined.to_json();
                }
            }
            let object = match value {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            (r, object)
        })
    }

    /// The records of `range` as they stand in a body: an NDJSON line (the
    /// `read --json` object with the key), or an OTLP `logRecord`.
    fn record_values(
        &self,
        format: Format,
        range: Range<usize>,
    ) -> impl Iterator<Item = Value> + '_ {
        let observed = self.shipped_unix_ns.to_string();
        self.record_objects(range)
            .map(move |(r, mut object)| match format {
                Format::Ndjson => {
                    object.insert("key".into(), json!(self.key));
                    Value::Object(object)
                }
                Format::Otlp => {
                    let mut record = log_record(r.ts_unix_ns, &observed, object);
                    if let Some((at, kind, message)) = &self.postmortem.exception {
                        if *at == (r.writer, r.seq) {
                            add_exception(
                                &mut record,
                                kind,
                                message,
                                &self.postmortem.stacktrace(),
                            );
                        }
                    }
                    record
                }
            })
    }

    /// The OTLP request around `records`: one `ExportLogsServiceRequest`.
    fn otlp_request(&self, part: Part, records: Vec<Value>) -> Value {
        json!({
            "resourceLogs": [{
                "resource": { "attributes": self.resource_attributes(part) },
                "scopeLogs": [{
                    "scope": { "name": "blackbox", "version": VERSION },
                    "logRecords": records,
                }],
            }],
        })
    }

    /// Splits the records into parts of at most `max_body` bytes each (a
    /// record too large for a part of its own goes alone): the record
    /// ranges, in order; one (maybe empty) range for no records.
    pub fn plan(&self, format: Format, max_body: usize) -> Vec<Range<usize>> {
        // The frame: a body of no records, with the widest part numbers.
        let frame = match format {
            Format::Ndjson => json_len(&Value::Object(self.head(Part::WIDEST))) + 1,
            Format::Otlp => json_len(&self.otlp_request(Part::WIDEST, Vec::new())) + 1,
        };
        // Each record adds its line (and newline) or its logRecord (and a
        // comma, one more than it takes: a bound is enough).
        let lens = self
            .record_values(format, 0..self.snap.records.len())
            .map(|v| json_len(&v) + 1);
        split(frame, lens, max_body)
    }

    /// Appends the body of `part`, holding the records of `range`, to `out`.
    pub fn write_part(&self, format: Format, range: Range<usize>, part: Part, out: &mut Vec<u8>) {
        match format {
            Format::Ndjson => {
                push_line(out, &Value::Object(self.head(part)));
                for line in self.record_values(format, range) {
                    push_line(out, &line);
                }
            }
            Format::Otlp => {
                let records = self.record_values(format, range).collect();
                push_line(out, &self.otlp_request(part, records));
            }
        }
    }

    fn resource_attributes(&self, part: Part) -> Vec<Value> {
        let h = &self.snap.header;
        let s = self.snap;
        let mut attrs = vec![
            kv("service.name", json!(h.program)),
            kv("process.pid", json!(h.pid)),
            kv("host.name", json!(h.hostname)),
        ];
        let optional = [
            ("service.version", &h.app_version),
            ("k8s.pod.name", &h.pod_name),
            ("k8s.namespace.name", &h.pod_namespace),
            ("k8s.pod.uid", &h.pod_uid),
            ("k8s.container.name", &h.container_name),
            ("blackbox.invocation_id", &h.invocation_id),
        ];
        for (key, value) in optional {
            if !value.is_empty() {
                attrs.push(kv(key, json!(value)));
            }
        }
        if h.start_unix_ns != 0 {
            attrs.push(kv("blackbox.start_time", json!(rfc3339(h.start_unix_ns))));
        }
        if let Some(id) = &self.postmortem.build_id {
            attrs.push(kv("process.executable.build_id.gnu", json!(id)));
        }
        attrs.push(kv("blackbox.state", json!(self.state.as_str())));
        let cause = blackbox_reader::Cause::of(self.state, h).map(|c| c.to_json());
        if let Some(Value::Object(cause)) = cause {
            for (name, value) in cause {
                if !value.is_null() {
                    attrs.push(kv(&format!("blackbox.cause.{name}"), value));
                }
            }
        }
        attrs.push(kv("blackbox.shipment.key", json!(self.key)));
        attrs.push(kv("blackbox.shipment.part", json!(part.index)));
        attrs.push(kv("blackbox.shipment.parts", json!(part.count)));
        if let Some(reason) = self.reason {
            attrs.push(kv("blackbox.reason", json!(reason)));
        }
        attrs.push(kv("blackbox.ring", json!(self.path.display().to_string())));
        attrs.push(kv("blackbox.records", json!(s.records.len())));
        attrs.push(kv("blackbox.gaps", json!(s.gaps.len())));
        attrs.push(kv("blackbox.torn", json!(s.totals.torn)));
        attrs.push(kv("blackbox.corrupt", json!(s.totals.corrupt)));
        attrs.push(kv("blackbox.dropped", json!(s.header.dropped)));
        attrs.push(kv("blackbox.writers", json!(s.writers.len())));
        attrs
    }
}

/// Splits records of serialized lengths `lens` into parts of at most `max`
/// bytes, each also holding a `frame` of `frame` bytes: greedily, in order.
/// A part holds at least one record, so a record that does not fit with
/// the frame alone goes alone (never dropped, never cut). No records make
/// one empty part.
pub(crate) fn split(
    frame: usize,
    lens: impl IntoIterator<Item = usize>,
    max: usize,
) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = frame;
    let mut end = 0;
    for (i, len) in lens.into_iter().enumerate() {
        if i > start && size.saturating_add(len) > max {
            parts.push(start..i);
            start = i;
            size = frame;
        }
        size = size.saturating_add(len);
        end = i + 1;
    }
    parts.push(start..end);
    parts
}

/// The length of `value` serialized, without keeping the bytes.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a Value cannot fail, and Count never does.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn push_line(out: &mut Vec<u8>, value: &Value) {
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

/// OTLP's `severityNumber` for a level name (the first of each range).
fn severity_number(level: &str) -> Option<u32> {
    Some(match level {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        "ERROR" => 17,
        _ => return None,
    })
}

/// One `logRecord` from a record's `read --json` object.
fn log_record(ts_unix_ns: u64, observed: &str, mut object: Map<String, Value>) -> Value {
    let mut record = Map::new();
    record.insert("timeUnixNano".into(), json!(ts_unix_ns.to_string()));
    record.insert("observedTimeUnixNano".into(), json!(observed));
    // `ts` is timeUnixNano; `field_types` is what the typed values say.
    object.remove("ts");
    object.remove("field_types");
    if let Some(Value::String(level)) = object.remove("level") {
        if let Some(n) = severity_number(&level) {
            record.insert("severityNumber".into(), json!(n));
        }
        record.insert("severityText".into(), json!(level));
    }
    let message = object.remove("message").filter(|m| !m.is_null());
    let body = message.or_else(|| object.remove("value"));
    if let Some(body) = body {
        record.insert("body".into(), any_value(&body));
    }
    let mut attrs = Vec::new();
    if let Some(Value::Object(fields)) = object.remove("fields") {
        for (name, value) in fields {
            attrs.push(kv(&name, value));
        }
    }
    if let Some(seq) = object.remove("seq") {
        attrs.push(kv("blackbox.seq", seq));
    }
    for (name, value) in object {
        if !value.is_null() {
            attrs.push(kv(&format!("blackbox.{name}"), value));
        }
    }
    record.insert("attributes".into(), Value::Array(attrs));
    Value::Object(record)
}

/// The OpenTelemetry exception attributes on a crash event's `logRecord`.
fn add_exception(record: &mut Value, kind: &str, message: &str, stacktrace: &str) {
    if let Some(Value::Array(attrs)) = record.get_mut("attributes") {
        attrs.push(kv("exception.type", json!(kind)));
        attrs.push(kv("exception.message", json!(message)));
        if !stacktrace.is_empty() {
            attrs.push(kv("exception.stacktrace", json!(stacktrace)));
        }
    }
}

/// An OTLP `KeyValue`.
fn kv(key: &str, value: Value) -> Value {
    json!({ "key": key, "value": any_value(&value) })
}

/// A JSON value as an OTLP `AnyValue` in the JSON mapping: 64-bit integers
/// as decimal strings (`intValue` is an int64; a larger u64 becomes a
/// `stringValue`), objects as `kvlistValue`, arrays as `arrayValue`, null as
/// an empty `AnyValue`.
fn any_value(value: &Value) -> Value {
    match value {
        Value::Null => json!({}),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!({ "intValue": i.to_string() })
            } else if let Some(u) = n.as_u64() {
                json!({ "stringValue": u.to_string() })
            } else {
                json!({ "doubleValue": n.as_f64().unwrap_or(0.0) })
            }
        }
        Value::String(s) => json!({ "stringValue": s }),
        Value::Array(items) => {
            json!({ "arrayValue": { "values": items.iter().map(any_value).collect::<Vec<_>>() } })
        }
        Value::Object(members) => {
            let values: Vec<Value> = members.iter().map(|(k, v)| kv(k, v.clone())).collect();
            json!({ "kvlistValue": { "values": values } })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fills_parts_in_order_and_sends_an_oversized_record_alone() {
        // frame 10, max 40: 10+10+10 fits, a fourth would not.
        assert_eq!(
            split(10, [10, 10, 10, 10, 5], 40),
            [0..3, 3..5],
            "greedy, in order"
        );
        // A 100-byte record in a 40-byte limit: alone, between its
        // neighbours, which keep their own parts.
        assert_eq!(split(10, [10, 100, 10], 40), [0..1, 1..2, 2..3]);
        assert_eq!(split(10, [100], 40), vec![0..1], "first and only");
        assert_eq!(split(10, [10, 10, 100], 40), [0..2, 2..3], "last");
        // Exactly full is not over.
        assert_eq!(split(10, [15, 15, 1], 40), [0..2, 2..3]);
        // No records: one part with the frame alone.
        assert_eq!(split(10, [], 40), vec![0..0]);
        // Every record is in exactly one part, whatever the sizes.
        let lens: Vec<usize> = (0..1000).map(|i| (i * 7919) % 300 + 1).collect();
        let parts = split(50, lens.iter().copied(), 1000);
        let mut next = 0;
        for p in &parts {
            assert_eq!(p.start, next);
            assert!(p.end > p.start);
            let size: usize = 50 + lens[p.clone()].iter().sum::<usize>();
            assert!(size <= 1000 || p.len() == 1, "{p:?} is {size} bytes");
            next = p.end;
        }
        assert_eq!(next, lens.len());
    }

    #[test]
    fn any_value_follows_the_otlp_json_mapping() {
        assert_eq!(any_value(&json!(-5)), json!({"intValue": "-5"}));
        assert_eq!(
            any_value(&json!(u64::MAX)),
            json!({"stringValue": "18446744073709551615"})
        );
        assert_eq!(any_value(&json!(2.5)), json!({"doubleValue": 2.5}));
        assert_eq!(any_value(&json!(true)), json!({"boolValue": true}));
        assert_eq!(any_value(&json!(null)), json!({}));
        assert_eq!(
            any_value(&json!({"a": [1]})),
            json!({"kvlistValue": {"values": [
                {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}
            ]}})
        );
    }

    #[test]
    fn an_event_becomes_one_log_record() {
        let object = json!({
            "seq": 7, "ts": "x", "level": "WARN", "target": "app::db",
            "message": "slow", "fields": {"ms": 250, "user": "u"},
            "field_types": {"ms": "u64", "user": "str"}, "thread_id": 3, "kind": "event",
        });
        let Value::Object(object) = object else {
            unreachable!()
        };
        let r = log_record(1_700_000_000_000_000_001, "5", object);
        assert_eq!(r["timeUnixNano"], json!("1700000000000000001"));
        assert_eq!(r["severityNumber"], json!(13));
        assert_eq!(r["severityText"], json!("WARN"));
        assert_eq!(r["body"], json!({"stringValue": "slow"}));
        let attrs: Vec<&str> = r["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            attrs,
            [
                "ms",
                "user",
                "blackbox.seq",
                "blackbox.kind",
                "blackbox.target",
                "blackbox.thread_id"
            ]
        );
    }

    #[test]
    fn a_raw_record_keeps_its_bytes() {
        let object = json!({
            "seq": 1, "ts": "x", "level": null, "target": null, "message": null,
            "fields": {}, "bytes_hex": "00ff", "kind": "raw",
        });
        let Value::Object(object) = object else {
            unreachable!()
        };
        let r = log_record(1, "2", object);
        assert!(r.get("body").is_none());
        assert!(r.get("severityNumber").is_none());
        let attrs = r["attributes"].as_array().unwrap();
        assert!(
            attrs.contains(&json!({"key": "blackbox.bytes_hex", "value": {"stringValue": "00ff"}}))
        );
    }
}
