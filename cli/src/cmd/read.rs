//! `blackbox read RING [--json] [--last N|DURATION] [--since D] [--level L] [--target PREFIX] [--follow]`.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use blackbox_reader::backtrace::{
    parse_return_addresses, symbolize_return_addresses, Frame, Options as BacktraceOptions,
};
use blackbox_reader::postmortem::Postmortem;
use blackbox_reader::render::{gap_text, json, show, text, Shown};
use blackbox_reader::span::{decode_span, is_span_kind, span_json, span_text, SpanIndex};
use blackbox_reader::{FieldValue, Gap, Record, Ring};
use clap::Args;

use super::units::{self, Last};
use crate::failure::Failure;

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The ring file.
    pub ring: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only the last N records (after the other filters); with a unit
    /// (5s, 500ms, 2m), the window's last DURATION instead: the records
    /// written within DURATION before the newest one, which for a dead
    /// writer is its last word before it died, however long ago that was.
    #[arg(long, value_name = "N|DURATION", value_parser = units::parse_last)]
    pub last: Option<Last>,
    /// Only records written within DURATION before now, by this machine's
    /// clock (as `journalctl --since`; e.g. 30s, 5m, 1h). For a dead
    /// writer's last seconds, use --last 5s.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only events at LEVEL or more severe (trace, debug, info, warn, error).
    #[arg(long, value_name = "LEVEL", value_parser = units::parse_level)]
    pub level: Option<blackbox_recorder::Level>,
    /// Only events whose target (and typed records whose type name) starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    pub target: Option<String>,
    /// Keep printing new records as they are written, until the writer ends.
    #[arg(long)]
    pub follow: bool,
    /// Also print span records (creation, recorded values, enter, exit,
    /// close, follows-from), which `export` draws as a timeline.
    #[arg(long)]
    pub spans: bool,
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

struct Filter {
    spans: bool,
    min_level: Option<blackbox_recorder::Level>,
    since_ns: Option<u64>,
    target: Option<String>,
}

impl Filter {
    /// `--since` and `--last DURATION` apply to every record; `--level`
    /// keeps events only (other records have no level); `--target` keeps
    /// events whose target, and typed records whose type name, starts with
    /// the prefix.
    fn keeps(&self, record: &Record, shown: &Shown<'_>) -> bool {
        if self.since_ns.is_some_and(|t| record.ts_unix_ns < t) {
            return false;
        }
        if is_span_kind(record.kind) {
            // Span records have no level or target of their own.
            return self.spans && self.min_level.is_none() && self.target.is_none();
        }
        if let Some(prefix) = &self.target {
            let name = match shown {
                Shown::Event(e) => &e.target,
                Shown::Typed { typed, .. } => &typed.type_name,
                Shown::Bytes { .. } => return false,
            };
            if !name.starts_with(prefix.as_str()) {
                return false;
            }
        }
        match (self.min_level, shown) {
            (None, _) => true,
            (Some(min), Shown::Event(e)) => e.level().is_some_and(|l| l >= min),
            (Some(_), Shown::Typed { .. } | Shown::Bytes { .. }) => false,
        }
    }
}

/// A panic event's backtrace of raw return addresses, symbolized with the
/// ring's module table: the event without that field, and the frames.
fn panic_frames<'a>(
    shown: &Shown<'a>,
    postmortem: Option<&Postmortem>,
) -> Option<(Shown<'a>, Vec<Frame>)> {
    let (Shown::Event(e), Some(pm)) = (shown, postmortem) else {
        return None;
    };
    if e.target != "blackbox::crash" {
        return None;
    }
    let addresses = e.fields.iter().find_map(|(name, value)| match value {
        FieldValue::Str(s) if name == "backtrace" => parse_return_addresses(s),
        _ => None,
    })?;
    let frames =
        symbolize_return_addresses(pm, &addresses, &BacktraceOptions::with_symbols(Vec::new()));
    let mut without = e.clone();
    without.fields.retain(|(name, _)| name != "backtrace");
    Some((Shown::Event(without), frames))
}

/// Prints one record; an event's spans get their fields from `spans`
/// (`req{id=7}:db` in text, a `spans` array in JSON), and a panic event's
/// raw backtrace is symbolized with the ring's module table.
fn emit(
    out: &mut impl Write,
    opts: &ReadArgs,
    gap: Option<&Gap>,
    record: &Record,
    shown: &mut Shown<'_>,
    spans: &SpanIndex<'_>,
    postmortem: Option<&Postmortem>,
) -> std::io::Result<()> {
    if is_span_kind(record.kind) {
        if let Shown::Bytes { bytes, problem, .. } = shown {
            let bytes: &[u8] = bytes;
            let decoded = decode_span(record.kind, bytes);
            if let Err(e) = &decoded {
                *problem = Some(e.0);
            }
            if let Ok(span) = decoded {
                if opts.json {
                    let mut v = span_json(record, &span);
                    if let Some(gap) = gap {
                        v["gap_before"] = json(record, Some(gap), shown)["gap_before"].clone();
                    }
                    return writeln!(out, "{v}");
                }
                if let Some(gap) = gap {
                    writeln!(out, "{}", gap_text(record.writer, gap))?;
                }
                return writeln!(out, "{}", span_text(record, &span));
            }
        }
    }
    let joined = match shown {
        Shown::Event(e) => spans.join(record, e),
        _ => None,
    };
    let symbolized = panic_frames(shown, postmortem);
    if opts.json {
        let mut v = json(record, gap, shown);
        if let Some(joined) = &joined {
            v["spans"] = joined.to_json();
        }
        if let Some((_, frames)) = &symbolized {
            // The frames as an array, in place of the raw addresses.
            if let Some(fields) = v.get_mut("fields").and_then(|f| f.as_object_mut()) {
                fields.insert(
                    "backtrace".into(),
                    serde_json::to_value(frames).unwrap_or_default(),
                );
            }
        }
        writeln!(out, "{v}")
    } else {
        if let Some(gap) = gap {
            writeln!(out, "{}", gap_text(record.writer, gap))?;
        }
        match symbolized {
            Some((mut without, frames)) => {
                if let (Some(joined), Shown::Event(e)) = (&joined, &mut without) {
                    joined.apply(e);
                }
                writeln!(out, "{}", text(record, &without))?;
                writeln!(out, "    backtrace:")?;
                for f in &frames {
                    writeln!(out, "      {}", f.text())?;
                }
                Ok(())
            }
            None => {
                if let (Some(joined), Shown::Event(e)) = (&joined, &mut *shown) {
                    joined.apply(e);
                }
                writeln!(out, "{}", text(record, shown))
            }
        }
    }
}

pub fn run(opts: ReadArgs) -> Result<i32, Failure> {
    let path = opts.ring.clone();
    let ring = Ring::open(&path).map_err(|e| Failure::ring(&path, &e))?;
    let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    let snap = ring.snapshot().map_err(|e| Failure::ring(&path, &e))?;
    // --since counts back from now; --last DURATION from the newest record.
    let since_now = opts
        .since
        .map(|d| blackbox_recorder::realtime_ns().saturating_sub(ns(d)));
    let newest = snap.records.iter().map(|r| r.ts_unix_ns).max();
    let window_from = match (opts.last, newest) {
        (Some(Last::Window(d)), Some(newest)) => Some(newest.saturating_sub(ns(d))),
        _ => None,
    };
    let filter = Filter {
        spans: opts.spans,
        min_level: opts.level,
        target: opts.target.clone(),
        since_ns: since_now.max(window_from),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());

    let spans = SpanIndex::build(&snap);
    let mut kept: Vec<(&Record, Shown<'_>)> = snap
        .records
        .iter()
        .map(|r| (r, show(&snap, r)))
        .filter(|(r, s)| filter.keeps(r, s))
        .collect();
    let skip = match opts.last {
        Some(Last::Records(n)) => kept.len().saturating_sub(n),
        _ => 0,
    };
    let postmortem = ring.postmortem().ok();
    for (record, shown) in &mut kept[skip..] {
        emit(
            &mut out,
            &opts,
            snap.gap_before(record),
            record,
            shown,
            &spans,
            postmortem.as_ref(),
        )?;
    }
    out.flush()?;
    if !opts.follow {
        return Ok(0);
    }
    // Everything in the first window counts as seen, printed or filtered.
    let seen: HashMap<u32, u64> = snap
        .writers
        .iter()
        .map(|w| (w.writer, w.last_seq))
        .collect();
    drop(kept);
    follow(&ring, &opts, &filter, &mut out, seen)
}

/// Prints records as they are published, until the writer is no longer
/// running: each poll takes a snapshot and prints, per writer, the records
/// after the last `seq` seen (`shm-layout.md`, 8.4). Records that left the
/// window before a poll could see them are reported, not hidden.
fn follow(
    ring: &Ring,
    opts: &ReadArgs,
    filter: &Filter,
    out: &mut impl Write,
    mut seen: HashMap<u32, u64>,
) -> Result<i32, Failure> {
    let path = ring.path();
    loop {
        // Read the lock before the snapshot: a writer that is gone by then
        // has published everything this snapshot will show.
        let running = ring.is_locked().map_err(|e| Failure::ring(path, &e))?;
        let snap = ring.snapshot().map_err(|e| Failure::ring(path, &e))?;
        let spans = SpanIndex::build(&snap);
        for record in &snap.records {
            let last = seen.get(&record.writer).copied();
            if last.is_some_and(|s| record.seq <= s) {
                continue;
            }
            let expected = last.map_or(0, |s| s + 1);
            let mut gap = snap.gap_before(record).copied();
            if gap.is_none() && record.seq > expected {
                // Between the last poll and this one, the writer's records
                // from `expected` on left the window unread.
                missed_notice(out, opts.json, record.writer, record.seq - expected)?;
            } else if let Some(g) = &mut gap {
                // The snapshot's own gap counts from the writer's previous
                // record in the window, which may be older than what this
                // follower printed already.
                g.missing = g.missing.min(record.seq - expected);
            }
            let mut shown = show(&snap, record);
            if filter.keeps(record, &shown) {
                // The module table only for a crash event (rare).
                let pm = matches!(&shown, Shown::Event(e) if e.target == "blackbox::crash")
                    .then(|| ring.postmortem().ok())
                    .flatten();
                emit(
                    out,
                    opts,
                    gap.as_ref(),
                    record,
                    &mut shown,
                    &spans,
                    pm.as_ref(),
                )?;
            }
            seen.insert(record.writer, record.seq);
        }
        out.flush()?;
        if !running {
            let state = ring.state().map_err(|e| Failure::ring(path, &e))?;
            eprintln!(
                "blackbox: {}: writer is no longer running ({})",
                path.display(),
                state.as_str()
            );
            return Ok(0);
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn missed_notice(
    out: &mut impl Write,
    json: bool,
    writer: u32,
    records: u64,
) -> std::io::Result<()> {
    if json {
        writeln!(
            out,
            "{{\"missed\":{{\"writer\":{writer},\"records\":{records},\"message\":\"records left the window before they were read\"}}}}"
        )
    } else {
        writeln!(
            out,
            "-- missed: writer {writer}: {records} record(s) left the window before they were read --"
        )
    }
}
