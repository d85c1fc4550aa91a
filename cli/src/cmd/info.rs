//! `blackbox info RING [--json]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use blackbox_reader::render::rfc3339;
use blackbox_reader::{Ring, Snapshot, State};
use clap::Args;

use crate::failure::Failure;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The ring file.
    pub ring: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

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

    /// The backtrace of the newest crash event in the window, if any.
    pub fn crash_backtrace(&self) -> Option<String> {
        self.snap.records.iter().rev().find_map(|r| {
            let e = blackbox_reader::decode_event(self.snap.payload(r)).ok()?;
            if e.target != "blackbox::crash" {
                return None;
            }
            e.fields.iter().find_map(|(name, value)| match value {
                blackbox_reader::FieldValue::Str(s) if name == "backtrace" => Some(s.to_string()),
                _ => None,
            })
        })
    }

    /// Bytes per second written over the window, if it spans any time.
    fn byte_rate(&self) -> Option<f64> {
        blackbox_reader::render::byte_rate(&self.snap)
    }

    /// The `info --json` object, with the kernel's OOM count for a killed
    /// writer (`kernel`).
    pub fn to_json(&self, path: &Path) -> Value {
        let mut v = blackbox_reader::render::info_json(path, self.state, &self.snap);
        if let (Some(kernel), Some(obj)) = (self.kernel_count(), v.as_object_mut()) {
            obj.insert("kernel".into(), kernel.to_json());
        }
        v
    }

    /// For a killed writer, the kernel's count of OOM kills in its cgroup.
    pub fn kernel_count(&self) -> Option<super::kernel_oom::KernelCount> {
        (self.state == blackbox_reader::State::Killed)
            .then(|| super::kernel_oom::KernelCount::read(&self.snap.header))
    }

    pub fn state_line(&self) -> String {
        blackbox_reader::cause::text(self.state, &self.snap.header)
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

pub fn run(args: &InfoArgs) -> Result<i32, Failure> {
    let (path, as_json) = (args.ring.as_path(), args.json);
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
    if let Some(line) = summary.kernel_count().and_then(|k| k.text()) {
        writeln!(out, "kernel    {line}")?;
    }
    if summary.state == blackbox_reader::State::Crashed {
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
        "capacity  {} in {} chunks of {} ({} used, {} owned)",
        size_text(h.capacity),
        h.chunk_count,
        size_text(h.chunk_size as u64),
        s.chunks_used,
        s.chunks_owned
    )?;
    match (s.records.first(), s.records.last()) {
        (Some(first), Some(last)) => {
            writeln!(
                out,
                "records   {} in the window, from {} writer(s)",
                s.records.len(),
                s.writers.len()
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
            if let Some(from) = s.complete_from_unix_ns() {
                writeln!(
                    out,
                    "complete  from {} (before it, only some writers' records are left)",
                    rfc3339(from)
                )?;
            }
        }
        _ => writeln!(out, "records   none in the window")?,
    }
    const WRITER_LINES: usize = 16;
    for w in s.writers.iter().take(WRITER_LINES) {
        writeln!(
            out,
            "writer {:<3} thread {} '{}': seq {} .. {} ({} records, {} dropped before)",
            w.writer, w.thread_id, w.thread_name, w.first_seq, w.last_seq, w.records, w.dropped
        )?;
    }
    if s.writers.len() > WRITER_LINES {
        writeln!(
            out,
            "writers   ... and {} more",
            s.writers.len() - WRITER_LINES
        )?;
    }
    writeln!(
        out,
        "losses    {} torn, {} corrupt, {} missing from a writer's run; {} dropped (no free chunk), {} refused as too large",
        s.totals.torn,
        s.totals.corrupt,
        s.totals.holes,
        h.dropped,
        h.oversize_drops
    )?;
    if h.clock_uncalibrated() {
        writeln!(
            out,
            "clock     the ring's time stamp counter has no calibration: times are raw ticks"
        )?;
    }
    if h.snapshot_trigger > 0 {
        let reason = s.snapshot_reason(h).map_or_else(
            || "its record has left the window".to_string(),
            |r| format!("\"{r}\""),
        );
        writeln!(
            out,
            "snapshots {} asked for; the last: {reason}",
            h.snapshot_trigger
        )?;
    }
    Ok(0)
}
