//! The window as a timeline: Trace Event Format JSON, which Chrome's
//! tracing, Perfetto's UI and speedscope open.
//!
//! - one track per writer thread, named after it (`thread_name`
//!   metadata), ordered by thread id;
//! - ids (span ids, parents, follows-from) as decimal strings: JavaScript
//!   viewers read JSON numbers as doubles, which hold 53 bits;
//! - one complete slice (`"ph": "X"`) per span entry, from its enter to its
//!   exit on that thread, nested as entered; args: the span's id, target,
//!   level, parent, follows-from links and fields (recorded values
//!   included);
//! - span creations, recorded values and follows-from links as the args
//!   of their span's slices;
//! - every other record as an instant event on its thread (`"ph": "i"`):
//!   events with their level, target, fields and joined span fields, as
//!   `read --json` shows them; typed and raw records too, so that nothing
//!   in the window is missing;
//! - process metadata: the program, pid, version (build id) and host;
//! - a global marker at the death with its cause, and a process marker for
//!   each snapshot request with its reason; a marker where records are
//!   missing.
//!
//! A span still entered at the end of the window is drawn to the death (or
//! to the writer's last sign of life, or for a live ring the newest record)
//! and flagged `unfinished`; an exit whose enter left the window is drawn
//! from the window's start and flagged `start_overwritten`. A span exited
//! before spans entered after it on its thread (tracing allows that) is
//! drawn until they end, with its own exit in `exited_at`: slices on a
//! track nest, and there is exactly one per entry. Times are
//! microseconds from the window's first record (`otherData.base_unix_ns`),
//! with nanosecond digits. The output is deterministic: events sorted by
//! time, an enclosing slice before the slices it encloses.
//!
//! Nothing in the file is trusted: an exit without an enter, an unknown
//! parent or a parent cycle gives a valid export; each thread's nesting is
//! bounded by [`MAX_DEPTH`] (deeper entries are counted, not drawn); memory
//! is a few words per record, and the JSON is written as it is made.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use blackbox_recorder::layout::{CLOCK_TSC, KIND_EVENT, KIND_SPAN_STEP, KIND_TYPED};
use serde_json::{json, Map, Value};

use crate::cause::Cause;
use crate::event::decode_event;
use crate::render::{json as record_json, rfc3339, show, Shown};
use crate::ring::{Record, Snapshot, State};
use crate::span::{decode_span, is_span_kind, SpanIndex, SpanOp, SpanRecord};

/// Deepest nesting drawn on one thread; entries deeper are counted in
/// `otherData.depth_capped` and not drawn.
pub const MAX_DEPTH: usize = 256;

/// Most follows-from links kept per span.
const MAX_FOLLOWS: usize = 64;

/// The process id used in the export when the header's is 0.
const FALLBACK_PID: u32 = 1;

/// What an export holds, in numbers (also written in `otherData`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Records in the window.
    pub records: usize,
    /// Span slices drawn.
    pub slices: usize,
    /// Instant events: one per record that is not a span record, and one
    /// per span record that does not decode.
    pub instants: usize,
    /// Slices still open at the end of the window.
    pub unfinished: usize,
    /// Slices whose enter left the window.
    pub start_overwritten: usize,
    /// Slices drawn past their exit, because spans entered after them on
    /// the thread were exited later (tracing allows exits out of order):
    /// slices on a track must nest.
    pub deferred: usize,
    /// Enters beyond [`MAX_DEPTH`], not drawn.
    pub depth_capped: usize,
    /// Span records that do not decode (shown as instants with the reason).
    pub undecodable: usize,
}

/// One slice flag set.
const UNFINISHED: u8 = 1;
const START_OVERWRITTEN: u8 = 2;
/// Drawn to where the spans above it on its thread ended, past its own
/// exit (in its args as `exited_at`).
const DEFERRED: u8 = 4;

#[derive(Debug, Clone, Copy)]
enum Item {
    /// A span entry: the index of a step record that names it.
    Slice {
        span_id: u64,
        name_record: usize,
        end_ns: u64,
        flags: u8,
        /// Its own exit, when drawn past it.
        exited_ns: u64,
    },
    /// A record other than a span step, or an undecodable step.
    Instant { record: usize },
    /// A snapshot request: the record with its reason.
    Snapshot { record: usize },
    /// Records missing before this one.
    Gap { record: usize },
}

#[derive(Debug, Clone, Copy)]
struct Out {
    ts_ns: u64,
    tid: u32,
    /// Order among same-time items: longer slices first.
    dur_ns: u64,
    writer: u32,
    seq: u64,
    item: Item,
}

/// An entered span on a thread's stack.
#[derive(Debug, Clone, Copy)]
struct Open {
    span_id: u64,
    name_record: usize,
    start_ns: u64,
    writer: u32,
    seq: u64,
    flags: u8,
    /// Exited while spans entered after it were still entered: popped
    /// when they are.
    exited_ns: Option<u64>,
}

#[derive(Default)]
struct Thread {
    stack: Vec<Open>,
    /// Enters not drawn (beyond MAX_DEPTH), by span id: their exits are
    /// ignored.
    capped: HashMap<u64, u32>,
}

/// The end of the window: the death's recorded time, the clean close, or
/// the last sign of life (record or heartbeat); never before the newest
/// record.
fn end_of_window(snap: &Snapshot, state: State, last_record_ns: u64) -> (u64, &'static str) {
    let h = &snap.header;
    let (ns, what) = match state {
        State::Crashed => match &h.death {
            Some(d) if d.unix_ns != 0 => (d.unix_ns, "death"),
            _ => (h.heartbeat_unix_ns, "last sign of life"),
        },
        State::Killed => (h.heartbeat_unix_ns, "last sign of life"),
        State::Exited => (h.close_unix_ns, "exit"),
        State::Running => (0, "newest record"),
    };
    if ns >= last_record_ns {
        (ns, what)
    } else {
        (
            last_record_ns,
            if state == State::Running {
                "newest record"
            } else {
                "last sign of life"
            },
        )
    }
}

/// Microseconds from `base` as a JSON number with nanosecond digits.
fn micros(ns: u64, base: u64) -> Value {
    json!(ns.saturating_sub(base) as f64 / 1000.0)
}

/// Builds the export of `snap` (of a writer in `state`) and writes it to
/// `out` as it goes.
///
/// # Errors
///
/// Only `out`'s: the snapshot cannot make it fail.
pub fn write_trace_event(
    snap: &Snapshot,
    state: State,
    out: &mut impl Write,
) -> io::Result<ExportStats> {
    let records = &snap.records;
    let mut stats = ExportStats {
        records: records.len(),
        ..ExportStats::default()
    };
    let base_ns = records
        .iter()
        .map(|r| r.ts_unix_ns)
        .min()
        .unwrap_or(snap.header.start_unix_ns);
    let last_ns = records
        .iter()
        .map(|r| r.ts_unix_ns)
        .max()
        .unwrap_or(base_ns);
    let (end_ns, end_is) = end_of_window(snap, state, last_ns);
    let spans = SpanIndex::build(snap);
    let snapshot_record = snap.header.snapshot_record;

    let mut items: Vec<Out> = Vec::with_capacity(records.len());
    let mut threads: BTreeMap<u32, Thread> = BTreeMap::new();
    let mut follows: HashMap<u64, Vec<u64>> = HashMap::new();

    for (index, record) in records.iter().enumerate() {
        let ts = record.ts_unix_ns;
        let at = |item| Out {
            ts_ns: ts,
            tid: record.thread_id,
            dur_ns: 0,
            writer: record.writer,
            seq: record.seq,
            item,
        };
        if snap.gap_before(record).is_some() {
            items.push(at(Item::Gap { record: index }));
        }
        let mut step = None;
        if is_span_kind(record.kind) {
            match decode_span(record.kind, snap.payload(record)) {
                Ok(SpanRecord::Step { id, op, .. }) => step = Some((id, op)),
                Ok(SpanRecord::Follows { id, follows: f }) => {
                    let list = follows.entry(id).or_default();
                    if list.len() < MAX_FOLLOWS {
                        list.push(f);
                    }
                    continue;
                }
                // Creation and recorded values are drawn as the slices'
                // args, not as instants.
                Ok(_) => continue,
                Err(_) => stats.undecodable += 1,
            }
        }
        let Some((id, op)) = step else {
            stats.instants += 1;
            items.push(at(Item::Instant { record: index }));
            if is_snapshot_request(snap, record, snapshot_record) {
                items.push(at(Item::Snapshot { record: index }));
            }
            continue;
        };
        let thread = threads.entry(record.thread_id).or_default();
        match op {
            SpanOp::Enter => {
                if thread.stack.len() >= MAX_DEPTH {
                    stats.depth_capped += 1;
                    *thread.capped.entry(id).or_default() += 1;
                    continue;
                }
                thread.stack.push(Open {
                    span_id: id,
                    name_record: index,
                    start_ns: ts,
                    writer: record.writer,
                    seq: record.seq,
                    flags: 0,
                    exited_ns: None,
                });
            }
            SpanOp::Exit => {
                if let Some(n) = thread.capped.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        thread.capped.remove(&id);
                    }
                    continue;
                }
                let pos = thread
                    .stack
                    .iter()
                    .rposition(|o| o.span_id == id && o.exited_ns.is_none());
                match pos {
                    Some(p) if p + 1 == thread.stack.len() => {
                        let o = thread.stack.pop().expect("not empty");
                        items.push(slice(&o, ts, o.flags, record.thread_id));
                        // Entries below that were exited already end here.
                        while thread.stack.last().is_some_and(|o| o.exited_ns.is_some()) {
                            let o = thread.stack.pop().expect("not empty");
                            stats.deferred += 1;
                            items.push(slice(&o, ts, o.flags | DEFERRED, record.thread_id));
                        }
                    }
                    Some(p) => thread.stack[p].exited_ns = Some(ts),
                    None => {
                        // Its enter left the window: it was entered before
                        // everything on the stack, so it sits below them.
                        stats.start_overwritten += 1;
                        let o = Open {
                            span_id: id,
                            name_record: index,
                            start_ns: base_ns,
                            writer: record.writer,
                            seq: record.seq,
                            flags: START_OVERWRITTEN,
                            exited_ns: Some(ts),
                        };
                        if thread.stack.is_empty() {
                            items.push(slice(&o, ts, o.flags, record.thread_id));
                        } else if thread.stack.len() >= MAX_DEPTH {
                            stats.depth_capped += 1;
                        } else {
                            thread.stack.insert(0, o);
                        }
                    }
                }
            }
            SpanOp::Close => {}
        }
    }
    for (&tid, thread) in &threads {
        for o in &thread.stack {
            if o.exited_ns.is_some() {
                // Exited, below spans that never were.
                stats.deferred += 1;
                items.push(slice(o, end_ns, o.flags | DEFERRED, tid));
            } else {
                stats.unfinished += 1;
                items.push(slice(o, end_ns, o.flags | UNFINISHED, tid));
            }
        }
    }
    stats.slices = items
        .iter()
        .filter(|o| matches!(o.item, Item::Slice { .. }))
        .count();
    items.sort_by(|a, b| {
        (a.ts_ns, std::cmp::Reverse(a.dur_ns), a.tid, a.writer, a.seq).cmp(&(
            b.ts_ns,
            std::cmp::Reverse(b.dur_ns),
            b.tid,
            b.writer,
            b.seq,
        ))
    });

    // The JSON, written as it is made.
    let h = &snap.header;
    let pid = if h.pid == 0 { FALLBACK_PID } else { h.pid };
    out.write_all(b"{\"traceEvents\":[\n")?;
    let mut first = true;
    let mut emit = |out: &mut dyn Write, v: Value| -> io::Result<()> {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, &v).map_err(io_error)
    };
    let program = if h.program.is_empty() {
        "blackbox ring".to_string()
    } else {
        h.program.clone()
    };
    emit(
        out,
        json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
               "args": {"name": program}}),
    )?;
    let mut labels = Vec::new();
    if !h.app_version.is_empty() {
        labels.push(format!("version {}", h.app_version));
    }
    if !h.hostname.is_empty() {
        labels.push(format!("host {}", h.hostname));
    }
    labels.push(state.as_str().to_string());
    emit(
        out,
        json!({"name": "process_labels", "ph": "M", "pid": pid, "tid": 0,
               "args": {"labels": labels.join(", ")}}),
    )?;
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    for w in &snap.writers {
        let name = names.entry(w.thread_id).or_default();
        if name.is_empty() && !w.thread_name.is_empty() {
            *name = w.thread_name.clone();
        }
    }
    for (tid, name) in &names {
        // Viewers show the tid beside the name.
        let shown = if name.is_empty() {
            format!("thread {tid}")
        } else {
            name.clone()
        };
        emit(
            out,
            json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                   "args": {"name": shown}}),
        )?;
        emit(
            out,
            json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                   "args": {"sort_index": tid}}),
        )?;
    }

    for o in &items {
        let ts = micros(o.ts_ns, base_ns);
        let record = |i: usize| &records[i];
        let v = match o.item {
            Item::Slice {
                span_id,
                name_record,
                end_ns,
                flags,
                exited_ns,
            } => {
                let name = match decode_span(KIND_SPAN_STEP, snap.payload(record(name_record))) {
                    Ok(SpanRecord::Step { name, .. }) => name.into_owned(),
                    _ => String::new(),
                };
                let mut args = Map::new();
                // Ids as strings: a JSON number read by JavaScript keeps
                // 53 bits, and span ids use all 64.
                args.insert("span_id".into(), json!(span_id.to_string()));
                if let Some(info) = spans.at(span_id, end_ns) {
                    args.insert("target".into(), json!(info.target));
                    args.insert(
                        "level".into(),
                        json!(crate::event::level_text(info.level_code)),
                    );
                    args.insert("parent".into(), json!(info.parent.map(|p| p.to_string())));
                    let fields: Map<String, Value> = info
                        .fields_at(end_ns)
                        .iter()
                        .map(|(n, v)| (n.to_string(), crate::render::field_json(v)))
                        .collect();
                    args.insert("fields".into(), Value::Object(fields));
                } else {
                    // Its creation left the window.
                    args.insert("fields".into(), Value::Null);
                }
                if let Some(f) = follows.get(&span_id) {
                    let f: Vec<String> = f.iter().map(u64::to_string).collect();
                    args.insert("follows_from".into(), json!(f));
                }
                if flags & UNFINISHED != 0 {
                    args.insert("unfinished".into(), json!(true));
                    args.insert("ends_at".into(), json!(end_is));
                }
                if flags & START_OVERWRITTEN != 0 {
                    args.insert("start_overwritten".into(), json!(true));
                }
                if flags & DEFERRED != 0 {
                    args.insert("exited_at".into(), micros(exited_ns, base_ns));
                }
                let cat = spans
                    .at(span_id, end_ns)
                    .map_or("span".to_string(), |i| i.target.to_string());
                json!({"name": name, "cat": cat, "ph": "X", "ts": ts,
                       "dur": micros(end_ns, o.ts_ns), "pid": pid, "tid": o.tid,
                       "args": args})
            }
            Item::Instant { record: i } => instant(snap, &spans, record(i), pid, ts),
            Item::Snapshot { record: i } => {
                let reason = snapshot_reason_of(snap, record(i));
                json!({"name": format!("snapshot: {reason}"), "cat": "blackbox", "ph": "i",
                       "s": "p", "ts": ts, "pid": pid, "tid": o.tid,
                       "args": {"reason": reason, "seq": record(i).seq,
                                "writer": record(i).writer}})
            }
            Item::Gap { record: i } => {
                let gap = snap.gap_before(record(i)).copied().unwrap_or_default();
                json!({"name": format!("gap: {} record(s) missing, {} dropped",
                                       gap.missing, gap.dropped),
                       "cat": "blackbox", "ph": "i", "s": "t", "ts": ts, "pid": pid,
                       "tid": o.tid,
                       "args": {"missing": gap.missing, "corrupt": gap.corrupt,
                                "dropped": gap.dropped}})
            }
        };
        emit(out, v)?;
    }
    if let Some(cause) = Cause::of(state, h) {
        emit(
            out,
            json!({"name": format!("death: {}", cause.text()), "cat": "blackbox",
                   "ph": "i", "s": "g", "ts": micros(end_ns, base_ns), "pid": pid,
                   "tid": 0, "args": {"cause": cause.to_json(), "time_is": end_is}}),
        )?;
    }
    out.write_all(b"\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":")?;
    let other = json!({
        "producer": "blackbox export",
        "program": h.program,
        "pid": h.pid,
        "app_version": h.app_version,
        "hostname": h.hostname,
        "state": state.as_str(),
        "base_unix_ns": base_ns,
        "base_time": rfc3339(base_ns),
        "end_unix_ns": end_ns,
        "end_is": end_is,
        "clock": if h.clock == CLOCK_TSC { "tsc" } else { "realtime" },
        "records": stats.records,
        "slices": stats.slices,
        "instants": stats.instants,
        "unfinished": stats.unfinished,
        "start_overwritten": stats.start_overwritten,
        "deferred": stats.deferred,
        "depth_capped": stats.depth_capped,
        "undecodable_span_records": stats.undecodable,
    });
    serde_json::to_writer(&mut *out, &other).map_err(io_error)?;
    out.write_all(b"}\n")?;
    Ok(stats)
}

/// A serde_json error as the I/O error it wraps (a closed pipe stays a
/// `BrokenPipe`), or as an `Other` one.
fn io_error(e: serde_json::Error) -> io::Error {
    match e.io_error_kind() {
        Some(kind) => io::Error::new(kind, e),
        None => io::Error::other(e),
    }
}

fn slice(o: &Open, end_ns: u64, flags: u8, tid: u32) -> Out {
    Out {
        ts_ns: o.start_ns,
        tid,
        dur_ns: end_ns.saturating_sub(o.start_ns),
        writer: o.writer,
        seq: o.seq,
        item: Item::Slice {
            span_id: o.span_id,
            name_record: o.name_record,
            end_ns,
            flags,
            exited_ns: o.exited_ns.unwrap_or(end_ns),
        },
    }
}

/// A record that asks for a snapshot: an event of the snapshot target, or
/// the one the header names (an event at the snapshot level).
fn is_snapshot_request(snap: &Snapshot, record: &Record, named: Option<(u32, u64)>) -> bool {
    if record.kind != KIND_EVENT {
        return false;
    }
    if named == Some((record.writer, record.seq)) {
        return true;
    }
    decode_event(snap.payload(record)).is_ok_and(|e| e.target == blackbox_recorder::SNAPSHOT_TARGET)
}

fn snapshot_reason_of(snap: &Snapshot, record: &Record) -> String {
    match decode_event(snap.payload(record)) {
        Ok(e) if e.target == blackbox_recorder::SNAPSHOT_TARGET => e.message.into_owned(),
        Ok(e) => format!(
            "{} {}: {}",
            crate::event::level_text(e.level_code),
            e.target,
            e.message
        ),
        Err(_) => String::new(),
    }
}

/// A record as an instant event on its thread, with `read --json`'s object
/// (and the event's spans joined) as its args.
fn instant(snap: &Snapshot, spans: &SpanIndex<'_>, record: &Record, pid: u32, ts: Value) -> Value {
    let shown = show(snap, record);
    let mut args = record_json(record, None, &shown);
    let name = match &shown {
        Shown::Event(e) => {
            if let Some(joined) = spans.join(record, e) {
                args["spans"] = joined.to_json();
            }
            if e.message.is_empty() {
                e.target.to_string()
            } else {
                e.message.to_string()
            }
        }
        Shown::Typed { typed, .. } => format!("typed {}", typed.type_name),
        Shown::Bytes { kind, problem, .. } => match problem {
            Some(p) => format!("undecodable record of kind {kind}: {p}"),
            None if is_span_kind(*kind) => format!(
                "undecodable span record: {}",
                decode_span(*kind, snap.payload(record))
                    .err()
                    .map_or("", |e| e.0)
            ),
            None if record.kind == KIND_TYPED => "typed".to_string(),
            None => format!("record of kind {kind}"),
        },
    };
    let cat = match &shown {
        Shown::Event(e) if !e.target.is_empty() => e.target.to_string(),
        _ => "record".to_string(),
    };
    json!({"name": name, "cat": cat, "ph": "i", "s": "t", "ts": ts, "pid": pid,
           "tid": record.thread_id, "args": args})
}
