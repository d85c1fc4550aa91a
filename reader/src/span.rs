//! Span records (`shm-layout.md`, 6b): decoding them, and joining the
//! fields of the spans an event is in into the event, as `tracing`'s fmt
//! layer shows them (`req{id=7}:db{table="users"}`).
//!
//! A span's fields are recorded once, in its creation record, not copied
//! into every event: the reader finds them through the `span_id` field the
//! event carries (the innermost span) and the parent ids of the creation
//! records. A span whose creation record left the window is known by its
//! name alone, and said to be so: its fields are never guessed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use blackbox_recorder::layout::*;
use serde_json::{json, Map, Value};

use crate::event::{decode_event, DecodeError, Event, FieldValue};
use crate::ring::{Record, Snapshot};

/// Most recorded-value updates kept apart per span: beyond them the oldest
/// is folded into the span's fields, so that joining stays linear in the
/// window (an event older than a folded update sees its value).
pub const MAX_SPAN_UPDATES: usize = 64;

/// Most fields a span is shown with (a writer records at most 17 at its
/// creation; later names beyond this are not shown).
pub const MAX_SPAN_FIELDS: usize = 128;

/// Most parent links followed from an event's innermost span.
pub const MAX_SPAN_CHAIN: usize = 64;

/// Name of the event field that names its spans (outermost first, joined
/// by `:`), as the `tracing` adapter writes it.
pub const SPANS_FIELD: &str = "spans";

/// Name of the event field, right after `spans`, with the innermost span's
/// id.
pub const SPAN_ID_FIELD: &str = "span_id";

/// What a `KIND_SPAN_STEP` record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOp {
    /// The record's thread entered the span.
    Enter,
    /// The record's thread exited the span.
    Exit,
    /// The span was closed.
    Close,
}

impl SpanOp {
    /// `enter`, `exit` or `close`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanOp::Enter => "enter",
            SpanOp::Exit => "exit",
            SpanOp::Close => "close",
        }
    }
}

/// A decoded span record.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanRecord<'a> {
    /// `KIND_SPAN_NEW`: the span's event payload has its level, target,
    /// name (as the message) and fields.
    New {
        /// The span's id.
        id: u64,
        /// The parent's id, if any.
        parent: Option<u64>,
        /// Level, target, name (`message`) and fields.
        event: Event<'a>,
    },
    /// `KIND_SPAN_RECORD`: values recorded later, as the event's fields.
    Record {
        /// The span's id.
        id: u64,
        /// The values, as fields.
        event: Event<'a>,
    },
    /// `KIND_SPAN_STEP`.
    Step {
        /// The span's id.
        id: u64,
        /// Enter, exit or close.
        op: SpanOp,
        /// The span's name.
        name: Cow<'a, str>,
    },
    /// `KIND_SPAN_FOLLOWS`.
    Follows {
        /// The span's id.
        id: u64,
        /// The span it follows from.
        follows: u64,
    },
}

impl SpanRecord<'_> {
    /// The span's id.
    pub fn id(&self) -> u64 {
        match self {
            SpanRecord::New { id, .. }
            | SpanRecord::Record { id, .. }
            | SpanRecord::Step { id, .. }
            | SpanRecord::Follows { id, .. } => *id,
        }
    }
}

/// Whether records of `kind` are span records.
pub fn is_span_kind(kind: u16) -> bool {
    (KIND_SPAN_NEW..=KIND_SPAN_FOLLOWS).contains(&kind)
}

fn u64_at(payload: &[u8], at: usize) -> Result<u64, DecodeError> {
    payload
        .get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or(DecodeError("span payload ends early"))
}

/// Decodes the payload of a span record of `kind`.
///
/// # Errors
///
/// Not a span kind, a payload shorter than its fixed part, a span id 0, an
/// event payload that does not decode, a name past the payload, an unknown
/// step.
pub fn decode_span(kind: u16, payload: &[u8]) -> Result<SpanRecord<'_>, DecodeError> {
    let id = u64_at(payload, SP_ID)?;
    if id == 0 {
        return Err(DecodeError("span id 0"));
    }
    match kind {
        KIND_SPAN_NEW => {
            let parent = u64_at(payload, SP_PARENT)?;
            let event = decode_event(&payload[SPAN_NEW_FIXED_LEN.min(payload.len())..])?;
            Ok(SpanRecord::New {
                id,
                parent: (parent != 0).then_some(parent),
                event,
            })
        }
        KIND_SPAN_RECORD => Ok(SpanRecord::Record {
            id,
            event: decode_event(&payload[SPAN_RECORD_FIXED_LEN..])?,
        }),
        KIND_SPAN_STEP => {
            let fixed = payload
                .get(..SPAN_STEP_FIXED_LEN)
                .ok_or(DecodeError("span payload ends early"))?;
            let op = match fixed[SP_OP] {
                SPAN_OP_ENTER => SpanOp::Enter,
                SPAN_OP_EXIT => SpanOp::Exit,
                SPAN_OP_CLOSE => SpanOp::Close,
                _ => return Err(DecodeError("unknown span step")),
            };
            let n = fixed[SP_NAME_LEN] as usize;
            let name = payload
                .get(SPAN_STEP_FIXED_LEN..SPAN_STEP_FIXED_LEN + n)
                .ok_or(DecodeError("span name runs past the payload"))?;
            Ok(SpanRecord::Step {
                id,
                op,
                name: String::from_utf8_lossy(name),
            })
        }
        KIND_SPAN_FOLLOWS => {
            let follows = u64_at(payload, SP_FOLLOWS)?;
            Ok(SpanRecord::Follows { id, follows })
        }
        _ => Err(DecodeError("not a span record")),
    }
}

/// Fields as decoded: name and value.
pub type Fields<'a> = Vec<(Cow<'a, str>, FieldValue<'a>)>;

/// One span as its records in the window describe it.
#[derive(Debug, Clone)]
pub struct SpanInfo<'a> {
    /// The span's id.
    pub id: u64,
    /// Time of its creation record.
    pub created_unix_ns: u64,
    /// Its name.
    pub name: Cow<'a, str>,
    /// Its target.
    pub target: Cow<'a, str>,
    /// Its level code.
    pub level_code: u8,
    /// Its parent's id.
    pub parent: Option<u64>,
    /// Its fields at creation.
    pub fields: Fields<'a>,
    /// Values recorded later, with their times, oldest first: the latest
    /// [`MAX_SPAN_UPDATES`]; older ones are folded into `fields`.
    pub updates: Vec<(u64, Fields<'a>)>,
    /// Values recorded up to this time are folded into `fields` (0: none).
    pub folded_until_ns: u64,
    /// Time of its close record, if in the window.
    pub closed_unix_ns: Option<u64>,
}

impl<'a> SpanInfo<'a> {
    /// Adds values recorded at `unix_ns` (in time order), folding the
    /// oldest kept update into the fields when [`MAX_SPAN_UPDATES`] are
    /// kept.
    pub fn record(&mut self, unix_ns: u64, values: Fields<'a>) {
        if self.updates.len() == MAX_SPAN_UPDATES {
            let (when, oldest) = self.updates.remove(0);
            merge(&mut self.fields, &oldest);
            self.folded_until_ns = when;
        }
        self.updates.push((unix_ns, values));
    }

    /// The span's fields as of `unix_ns`: the creation's, each replaced by a
    /// later value of the same name recorded by then, and new names added.
    pub fn fields_at(&self, unix_ns: u64) -> Fields<'a> {
        let mut out = self.fields.clone();
        for (ts, values) in &self.updates {
            if *ts > unix_ns {
                break;
            }
            merge(&mut out, values);
        }
        out
    }
}

/// `values` over `fields`: a name's new value replaces the old, new names
/// are added.
fn merge<'a>(fields: &mut Fields<'a>, values: &Fields<'a>) {
    for (name, value) in values {
        if let Some(slot) = fields.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.clone();
        } else if fields.len() < MAX_SPAN_FIELDS {
            fields.push((name.clone(), value.clone()));
        }
    }
}

/// The spans of a window, by id, for joining their fields into events.
#[derive(Debug, Default)]
pub struct SpanIndex<'a> {
    /// Each id's spans (ids are reused after a close), by creation time.
    spans: HashMap<u64, Vec<SpanInfo<'a>>>,
    /// Span records that did not decode.
    pub undecodable: u64,
}

impl<'a> SpanIndex<'a> {
    /// Indexes the span records of `snap` (in the snapshot's time order).
    /// Memory: one entry per creation record, plus the recorded values.
    pub fn build(snap: &'a Snapshot) -> SpanIndex<'a> {
        let mut index = SpanIndex::default();
        for record in &snap.records {
            if !is_span_kind(record.kind) {
                continue;
            }
            let ts = record.ts_unix_ns;
            match decode_span(record.kind, snap.payload(record)) {
                Ok(SpanRecord::New { id, parent, event }) => {
                    index.spans.entry(id).or_default().push(SpanInfo {
                        id,
                        created_unix_ns: ts,
                        name: event.message,
                        target: event.target,
                        level_code: event.level_code,
                        parent,
                        fields: event.fields,
                        updates: Vec::new(),
                        folded_until_ns: 0,
                        closed_unix_ns: None,
                    });
                }
                Ok(SpanRecord::Record { id, event }) => {
                    if let Some(info) = index.latest_mut(id, ts) {
                        info.record(ts, event.fields);
                    }
                }
                Ok(SpanRecord::Step {
                    id,
                    op: SpanOp::Close,
                    ..
                }) => {
                    if let Some(info) = index.latest_mut(id, ts) {
                        info.closed_unix_ns.get_or_insert(ts);
                    }
                }
                Ok(_) => {}
                Err(_) => index.undecodable += 1,
            }
        }
        index
    }

    fn latest_mut(&mut self, id: u64, unix_ns: u64) -> Option<&mut SpanInfo<'a>> {
        let list = self.spans.get_mut(&id)?;
        let at = list.partition_point(|s| s.created_unix_ns <= unix_ns);
        list[..at]
            .last_mut()
            .filter(|s| s.closed_unix_ns.is_none_or(|c| c >= unix_ns))
    }

    /// The span `id` as of `unix_ns`: the latest created by then and not
    /// closed before.
    pub fn at(&self, id: u64, unix_ns: u64) -> Option<&SpanInfo<'a>> {
        let list = self.spans.get(&id)?;
        let at = list.partition_point(|s| s.created_unix_ns <= unix_ns);
        list[..at]
            .last()
            .filter(|s| s.closed_unix_ns.is_none_or(|c| c >= unix_ns))
    }

    /// Every span in the index, by id and creation time.
    pub fn spans(&self) -> impl Iterator<Item = &SpanInfo<'a>> {
        self.spans.values().flatten()
    }

    /// The spans `event` (written at `record`'s time) is in, outermost
    /// first, with their fields where their creation is in the window; `None`
    /// for an event in no span.
    pub fn join(&self, record: &Record, event: &Event<'_>) -> Option<Joined<'a>> {
        let path = match event.fields.first() {
            Some((name, FieldValue::Str(path))) if name == SPANS_FIELD => path,
            _ => return None,
        };
        let innermost = match event.fields.get(1) {
            Some((name, FieldValue::U64(id))) if name == SPAN_ID_FIELD => Some(*id),
            _ => None,
        };
        let ts = record.ts_unix_ns;
        // Innermost first.
        let mut known: Vec<JoinedSpan<'a>> = Vec::new();
        let mut seen = HashSet::new();
        let mut next = innermost;
        while let Some(id) = next {
            if known.len() == MAX_SPAN_CHAIN || !seen.insert(id) {
                break;
            }
            let Some(info) = self.at(id, ts) else { break };
            known.push(JoinedSpan {
                name: info.name.to_string(),
                id: Some(id),
                fields: Some(info.fields_at(ts)),
            });
            next = info.parent;
        }
        known.reverse();
        let known_path = known
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(":");
        // Only spans whose names match the event's own path are joined: the
        // rest of the path is shown by name, its fields unknown.
        let unknown_prefix = if known.is_empty() {
            Some(path.as_ref())
        } else if path.as_ref() == known_path {
            None
        } else if let Some(prefix) = path
            .strip_suffix(known_path.as_str())
            .and_then(|p| p.strip_suffix(':'))
        {
            Some(prefix)
        } else {
            known.clear();
            Some(path.as_ref())
        };
        let mut spans: Vec<JoinedSpan<'a>> = unknown_prefix
            .into_iter()
            .flat_map(|p| p.split(':'))
            .map(|name| JoinedSpan {
                name: name.to_string(),
                id: None,
                fields: None,
            })
            .collect();
        spans.extend(known);
        Some(Joined { spans })
    }
}

/// One span of an event's path.
#[derive(Debug, Clone)]
pub struct JoinedSpan<'a> {
    /// The span's name.
    pub name: String,
    /// Its id, where its creation is in the window.
    pub id: Option<u64>,
    /// Its fields, `None` where its creation left the window.
    pub fields: Option<Fields<'a>>,
}

/// The spans an event is in, outermost first.
#[derive(Debug, Clone)]
pub struct Joined<'a> {
    /// The spans.
    pub spans: Vec<JoinedSpan<'a>>,
}

impl Joined<'_> {
    /// As `tracing`'s fmt layer shows a span path: `req{id=7}:db`; a span
    /// whose fields are unknown (its creation left the window) is `name{?}`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&span.name);
            match &span.fields {
                None => s.push_str("{?}"),
                Some(fields) if fields.is_empty() => {}
                Some(fields) => {
                    s.push('{');
                    for (j, (name, value)) in fields.iter().enumerate() {
                        if j > 0 {
                            s.push(' ');
                        }
                        let _ = write!(s, "{name}={}", crate::render::field_text(value));
                    }
                    s.push('}');
                }
            }
        }
        s
    }

    /// As JSON: `[{"name": "req", "id": 1, "fields": {"id": 7}}, ...]`,
    /// `id` and `fields` null where the creation left the window.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.spans
                .iter()
                .map(|span| {
                    let fields = span.fields.as_ref().map_or(Value::Null, |f| {
                        Value::Object(
                            f.iter()
                                .map(|(n, v)| (n.to_string(), crate::render::field_json(v)))
                                .collect::<Map<String, Value>>(),
                        )
                    });
                    json!({"name": span.name, "id": span.id, "fields": fields})
                })
                .collect(),
        )
    }

    /// Puts the joined path into `event`'s `spans` field (as text shown
    /// unquoted) and removes `span_id`, for `read`'s text lines.
    pub fn apply(&self, event: &mut Event<'_>) {
        if let Some((name, value)) = event.fields.first_mut() {
            if name == SPANS_FIELD {
                *value = FieldValue::Debug(Cow::Owned(self.text()));
            }
        }
        if matches!(event.fields.get(1), Some((n, FieldValue::U64(_))) if n == SPAN_ID_FIELD) {
            event.fields.remove(1);
        }
    }
}

/// One text line for a span record (`read --spans`): `SPAN enter req #1`.
pub fn span_text(record: &Record, span: &SpanRecord<'_>) -> String {
    let ts = crate::time::rfc3339(record.ts_unix_ns);
    let fields = |fields: &Fields<'_>| {
        let mut s = String::new();
        for (name, value) in fields {
            let _ = write!(s, " {name}={}", crate::render::field_text(value));
        }
        s
    };
    match span {
        SpanRecord::New { id, parent, event } => {
            let parent = parent.map_or(String::new(), |p| format!(" parent #{p}"));
            format!(
                "{ts} SPAN  {}: new {} #{id}{parent}{}",
                event.target,
                event.message,
                fields(&event.fields)
            )
        }
        SpanRecord::Record { id, event } => {
            format!("{ts} SPAN  record #{id}{}", fields(&event.fields))
        }
        SpanRecord::Step { id, op, name } => format!("{ts} SPAN  {} {name} #{id}", op.as_str()),
        SpanRecord::Follows { id, follows } => {
            format!("{ts} SPAN  #{id} follows from #{follows}")
        }
    }
}

/// The JSON object of a span record (`read --spans --json`).
pub fn span_json(record: &Record, span: &SpanRecord<'_>) -> Value {
    let fields = |fields: &Fields<'_>| {
        Value::Object(
            fields
                .iter()
                .map(|(n, v)| (n.to_string(), crate::render::field_json(v)))
                .collect(),
        )
    };
    let mut o = Map::new();
    o.insert("seq".into(), json!(record.seq));
    o.insert("writer".into(), json!(record.writer));
    o.insert("ts".into(), json!(crate::time::rfc3339(record.ts_unix_ns)));
    o.insert("thread_id".into(), json!(record.thread_id));
    o.insert("span_id".into(), json!(span.id()));
    match span {
        SpanRecord::New { parent, event, .. } => {
            o.insert("kind".into(), json!("span-new"));
            o.insert("name".into(), json!(event.message));
            o.insert("target".into(), json!(event.target));
            o.insert(
                "level".into(),
                json!(crate::event::level_text(event.level_code)),
            );
            o.insert("parent".into(), json!(parent));
            o.insert("fields".into(), fields(&event.fields));
        }
        SpanRecord::Record { event, .. } => {
            o.insert("kind".into(), json!("span-record"));
            o.insert("fields".into(), fields(&event.fields));
        }
        SpanRecord::Step { op, name, .. } => {
            o.insert("kind".into(), json!("span-step"));
            o.insert("step".into(), json!(op.as_str()));
            o.insert("name".into(), json!(name));
        }
        SpanRecord::Follows { follows, .. } => {
            o.insert("kind".into(), json!("span-follows"));
            o.insert("follows".into(), json!(follows));
        }
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: u64, op: u8, name: &str) -> Vec<u8> {
        let mut p = id.to_le_bytes().to_vec();
        p.push(op);
        p.push(name.len() as u8);
        p.extend_from_slice(name.as_bytes());
        p
    }

    #[test]
    fn recorded_values_are_bounded_and_the_latest_wins() {
        let mut info = SpanInfo {
            id: 1,
            created_unix_ns: 0,
            name: "s".into(),
            target: "t".into(),
            level_code: 3,
            parent: None,
            fields: vec![("n".into(), FieldValue::U64(0))],
            updates: Vec::new(),
            folded_until_ns: 0,
            closed_unix_ns: None,
        };
        for i in 1..=10_000u64 {
            let name = format!("k{}", i % 1000);
            info.record(
                i,
                vec![
                    ("n".into(), FieldValue::U64(i)),
                    (name.into(), FieldValue::Bool(true)),
                ],
            );
        }
        assert_eq!(info.updates.len(), MAX_SPAN_UPDATES);
        assert!(info.fields.len() <= MAX_SPAN_FIELDS);
        let at = |ts| {
            info.fields_at(ts)
                .into_iter()
                .find(|(n, _)| n == "n")
                .map(|(_, v)| v)
        };
        assert_eq!(at(10_000), Some(FieldValue::U64(10_000)));
        assert_eq!(at(9_990), Some(FieldValue::U64(9_990)));
        assert_eq!(info.folded_until_ns, 10_000 - MAX_SPAN_UPDATES as u64);
    }

    #[test]
    fn steps_decode_and_bad_ones_are_refused() {
        let p = step(9, SPAN_OP_EXIT, "db");
        assert_eq!(
            decode_span(KIND_SPAN_STEP, &p).unwrap(),
            SpanRecord::Step {
                id: 9,
                op: SpanOp::Exit,
                name: "db".into()
            }
        );
        assert!(
            decode_span(KIND_SPAN_STEP, &step(0, 1, "x")).is_err(),
            "id 0"
        );
        assert!(
            decode_span(KIND_SPAN_STEP, &step(1, 9, "x")).is_err(),
            "op 9"
        );
        let mut long = step(1, 1, "abc");
        long[SP_NAME_LEN] = 200;
        assert!(decode_span(KIND_SPAN_STEP, &long).is_err(), "name past end");
        assert!(decode_span(KIND_SPAN_NEW, &[1, 0, 0]).is_err());
        assert!(decode_span(KIND_SPAN_NEW, &step(1, 1, "x")).is_err());
        assert!(decode_span(KIND_SPAN_RECORD, &1u64.to_le_bytes()).is_err());
        assert!(decode_span(KIND_EVENT, &step(1, 1, "x")).is_err());
        let mut f = 3u64.to_le_bytes().to_vec();
        f.extend_from_slice(&4u64.to_le_bytes());
        assert_eq!(
            decode_span(KIND_SPAN_FOLLOWS, &f).unwrap(),
            SpanRecord::Follows { id: 3, follows: 4 }
        );
    }
}
