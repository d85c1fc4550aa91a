//! `blackbox info RING [--json]`.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::render::rfc3339;
use super::Failure;
use crate::{Ring, Snapshot, State};

/// Everything `info` reports, computed once.
pub struct Summary {
    pub state: State,
    pub snap: Snapshot,
}

impl Summary {
    pub fn load(path: &Path) -> Result<Summary, Failure> {
        let ring = Ring::open(path).map_err(|e| Failure::ring(path, &e))?;
        let state = ring.state().map_err(|e| Failure::ring(path, &e))?;
        let snap = ring.snapshot().map_err(|e| Failure::ring(path, &e))?;
        Ok(Summary { state, snap })
    }

    /// The cause of death as DESIGN.md's `cause` object, or null.
    pub fn cause(&self) -> Value {
        super::cause::json(self.state, &self.snap.header)
    }

    /// The backtrace of the newest crash event in the window, if any.
    pub fn crash_backtrace(&self) -> Option<String> {
        self.snap.records.iter().rev().find_map(|r| {
            let e = crate::decode_event(self.snap.payload(r)).ok()?;
            if e.target != "blackbox::crash" {
                return None;
            }
            e.fields.iter().find_map(|(name, value)| match value {
                crate::FieldValue::Str(s) if name == "backtrace" => Some(s.to_string()),
                _ => None,
            })
        })
    }

    fn span(&self) -> Option<(u64, u64)> {
        let first = self.snap.records.first()?;
        let last = self.snap.records.last()?;
        Some((first.ts_unix_ns, last.ts_unix_ns))
    }

    /// Bytes per second written over the window, if it spans any time.
    fn byte_rate(&self) -> Option<f64> {
        let (first, last) = (self.snap.records.first()?, self.snap.records.last()?);
        let secs = last.ts_unix_ns.checked_sub(first.ts_unix_ns)? as f64 / 1e9;
        (secs > 0.0).then(|| (last.end() - first.pos()) as f64 / secs)
    }

    pub fn to_json(&self, path: &Path) -> Value {
        let h = &self.snap.header;
        let s = &self.snap;
        let ns_time = |ns: u64| {
            if ns == 0 {
                Value::Null
            } else {
                json!(rfc3339(ns))
            }
        };
        let span = self.span();
        let rate = self.byte_rate();
        json!({
            "path": path.display().to_string(),
            "state": self.state.as_str(),
            "cause": self.cause(),
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
            "bytes_written": s.tail,
            "records": s.records.len(),
            "first_seq": s.records.first().map(|r| r.seq),
            "last_seq": s.records.last().map(|r| r.seq),
            "first_ts": span.map(|(a, _)| rfc3339(a)),
            "last_ts": span.map(|(_, b)| rfc3339(b)),
            "span_seconds": span.map(|(a, b)| b.saturating_sub(a) as f64 / 1e9),
            "bytes_per_second": rate,
            "window_seconds_at_rate": rate.map(|r| h.capacity as f64 / r),
            "torn": s.totals.torn,
            "corrupt": s.totals.corrupt,
            "overwritten": s.totals.overwritten,
            "gaps": s.gaps.len(),
            "lapped_writes": h.lapped_writes,
            "oversize_drops": h.oversize_drops,
        })
    }

    pub fn state_line(&self) -> String {
        super::cause::text(self.state, &self.snap.header)
    }
}

fn empty_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

/// Seconds in a unit that fits: `850 µs`, `12.5 ms`, `3.20 s`.
fn secs_text(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub fn run(path: &Path, as_json: bool) -> Result<i32, Failure> {
    let summary = Summary::load(path)?;
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", summary.to_json(path))?;
        return Ok(0);
    }
    let h = &summary.snap.header;
    let s = &summary.snap;
    let mut writer = format!("{} (pid {})", h.program, h.pid);
    if !h.app_version.is_empty() {
        writer.push_str(&format!(" version {}", h.app_version));
    }
    writer.push_str(&format!(
        " on {}, started {}",
        h.hostname,
        rfc3339(h.start_unix_ns)
    ));
    writeln!(out, "ring      {}", path.display())?;
    writeln!(out, "writer    {writer}")?;
    writeln!(out, "state     {}", summary.state_line())?;
    if summary.state == crate::State::Crashed {
        if let Some(bt) = summary.crash_backtrace() {
            writeln!(out, "backtrace")?;
            for line in bt.lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    if h.heartbeat_unix_ns != 0 {
        writeln!(out, "heartbeat {}", rfc3339(h.heartbeat_unix_ns))?;
    }
    writeln!(
        out,
        "capacity  {} ({} written since start)",
        size_text(h.capacity),
        size_text(s.tail)
    )?;
    match (s.records.first(), s.records.last()) {
        (Some(first), Some(last)) => {
            writeln!(
                out,
                "records   {} in the window, seq {} .. {}",
                s.records.len(),
                first.seq,
                last.seq
            )?;
            let span = last.ts_unix_ns.saturating_sub(first.ts_unix_ns) as f64 / 1e9;
            let mut line = format!(
                "window    {} .. {} ({})",
                rfc3339(first.ts_unix_ns),
                rfc3339(last.ts_unix_ns),
                secs_text(span)
            );
            if let Some(rate) = summary.byte_rate() {
                line.push_str(&format!(
                    "; at this rate the ring holds {}",
                    secs_text(h.capacity as f64 / rate)
                ));
            }
            writeln!(out, "{line}")?;
        }
        _ => writeln!(out, "records   none in the window")?,
    }
    writeln!(
        out,
        "damage    {} torn, {} corrupt, {} overwritten by lapped writes, {} gaps; {} appends lapped, {} refused as too large",
        s.totals.torn,
        s.totals.corrupt,
        s.totals.overwritten,
        s.gaps.len(),
        h.lapped_writes,
        h.oversize_drops
    )?;
    Ok(0)
}
