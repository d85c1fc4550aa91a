//! Building a shipment's body: NDJSON (the `info --json` object, then the
//! `read --json` lines) or OTLP/HTTP JSON, from one snapshot. The JSON of
//! records and of the ring comes from [`crate::render`], the same code the
//! CLI prints with, so a shipment says exactly what `read` and `info` say.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::render::{info_json, rfc3339, show};
use crate::{Snapshot, State};

/// The version written into shipments and the OTLP scope.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One shipment of one snapshot.
pub(crate) struct Shipment<'a> {
    pub path: &'a Path,
    pub state: State,
    pub snap: &'a Snapshot,
    pub key: &'a str,
    pub reason: Option<&'a str>,
    pub shipped_unix_ns: u64,
}

impl Shipment<'_> {
    /// The shipment object: `info --json` plus `kind`, `key`, `reason`,
    /// `shipped_at`, `blackbox_version`.
    fn head(&self) -> Map<String, Value> {
        let mut head = match info_json(self.path, self.state, self.snap) {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        head.insert("kind".into(), json!("shipment"));
        head.insert("key".into(), json!(self.key));
        head.insert("reason".into(), json!(self.reason));
        head.insert("shipped_at".into(), json!(rfc3339(self.shipped_unix_ns)));
        head.insert("blackbox_version".into(), json!(VERSION));
        head
    }

    /// Each record as `read --json` prints it.
    fn record_objects(&self) -> impl Iterator<Item = (&crate::Record, Map<String, Value>)> + '_ {
        self.snap.records.iter().map(move |r| {
            let value = crate::render::json(r, self.snap.gap_before(r), &show(self.snap, r));
            let object = match value {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            (r, object)
        })
    }

    /// The NDJSON body: the shipment line, then one line per record with
    /// the key added.
    pub fn ndjson(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.snap.records.len() * 200);
        push_line(&mut out, &Value::Object(self.head()));
        for (_, mut object) in self.record_objects() {
            object.insert("key".into(), json!(self.key));
            push_line(&mut out, &Value::Object(object));
        }
        out
    }

    /// The OTLP/HTTP JSON body: one `ExportLogsServiceRequest`.
    pub fn otlp(&self) -> Vec<u8> {
        let observed = self.shipped_unix_ns.to_string();
        let records: Vec<Value> = self
            .record_objects()
            .map(|(r, object)| log_record(r.ts_unix_ns, &observed, object))
            .collect();
        let body = json!({
            "resourceLogs": [{
                "resource": { "attributes": self.resource_attributes() },
                "scopeLogs": [{
                    "scope": { "name": "blackbox", "version": VERSION },
                    "logRecords": records,
                }],
            }],
        });
        let mut out = serde_json::to_vec(&body).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn resource_attributes(&self) -> Vec<Value> {
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
        attrs.push(kv("blackbox.state", json!(self.state.as_str())));
        if let Value::Object(cause) = crate::cause::json(self.state, h) {
            for (name, value) in cause {
                if !value.is_null() {
                    attrs.push(kv(&format!("blackbox.cause.{name}"), value));
                }
            }
        }
        attrs.push(kv("blackbox.shipment.key", json!(self.key)));
        if let Some(reason) = self.reason {
            attrs.push(kv("blackbox.reason", json!(reason)));
        }
        attrs.push(kv("blackbox.ring", json!(self.path.display().to_string())));
        attrs.push(kv("blackbox.records", json!(s.records.len())));
        attrs.push(kv("blackbox.gaps", json!(s.gaps.len())));
        attrs.push(kv("blackbox.torn", json!(s.totals.torn)));
        attrs.push(kv("blackbox.corrupt", json!(s.totals.corrupt)));
        attrs.push(kv("blackbox.overwritten", json!(s.totals.overwritten)));
        attrs
    }
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
