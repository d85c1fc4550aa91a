//! `blackbox info RING [--json]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use blackbox_reader::backtrace::{backtrace, Frame, Options};
use blackbox_reader::postmortem::Postmortem;
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
    /// A directory of symbol files for a crash dump's backtrace: a
    /// `.build-id/xx/rest.debug` tree or plain (unstripped) binaries,
    /// matched by build id. May be given more than once.
    #[arg(long, value_name = "DIR")]
    pub symbols: Vec<PathBuf>,
}

/// Everything `info` reports, computed once.
pub struct Summary {
    pub state: State,
    pub snap: Snapshot,
    /// The postmortem dump (module table, crash context), if readable.
    pub postmortem: Option<Postmortem>,
    /// The crash dump's backtrace, unwound and symbolized (empty: none).
    pub frames: Vec<Frame>,
    /// Where module files are looked for besides their recorded paths.
    symbols: Vec<PathBuf>,
}

impl Summary {
    pub fn load(path: &Path) -> Result<Summary, Failure> {
        Summary::load_with_symbols(path, &[])
    }

    /// As [`Summary::load`], looking for module files also in `symbols`.
    pub fn load_with_symbols(path: &Path, symbols: &[PathBuf]) -> Result<Summary, Failure> {
        let ring = Ring::open(path).map_err(|e| Failure::ring(path, &e))?;
        Summary::from_ring(&ring, symbols)
    }

    /// The summary of an open ring; module files are looked for also in
    /// `symbols`.
    pub fn from_ring(ring: &Ring, symbols: &[PathBuf]) -> Result<Summary, Failure> {
        let path = ring.path();
        let state = ring.state().map_err(|e| Failure::ring(path, &e))?;
        let snap = ring.snapshot().map_err(|e| Failure::ring(path, &e))?;
        let postmortem = ring.postmortem().ok();
        // Only a crash's own dump: a live or cleanly closed ring has none.
        let frames = match &postmortem {
            Some(pm) if state == State::Crashed => {
                backtrace(pm, &Options::with_symbols(symbols.to_vec()))
            }
            _ => Vec::new(),
        };
        Ok(Summary {
            state,
            snap,
            postmortem,
            frames,
            symbols: symbols.to_vec(),
        })
    }

    /// The main binary's build id, hex, if recorded.
    pub fn build_id(&self) -> Option<String> {
        self.postmortem
            .as_ref()
            .filter(|pm| !pm.build_id.is_empty())
            .map(|pm| blackbox_reader::postmortem::hex(&pm.build_id))
    }

    /// The crash dump's backtrace as text lines, innermost first.
    pub fn dump_backtrace_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{i:>3}: {}", f.text()))
            .collect();
        if let Some(c) = self.postmortem.as_ref().and_then(|pm| pm.crash.as_ref()) {
            if c.stack_overflow() {
                lines.push(
                    "     (the stack pointer was in the stack's guard area: a stack overflow; frames from the readable part)"
                        .into(),
                );
            }
        }
        lines
    }

    /// The JSON of the crash dump's frames.
    pub fn backtrace_json(&self) -> Value {
        serde_json::to_value(&self.frames).unwrap_or(Value::Null)
    }

    /// The frames of the panic that is the cause of death, symbolized
    /// with the module table, if the window holds its backtrace.
    fn panic_frames(&self) -> Option<Vec<Frame>> {
        let raw = blackbox_reader::cause::backtrace(self.state, &self.snap)?;
        self.symbolize_panic_field(&raw)
    }

    fn symbolize_panic_field(&self, field: &str) -> Option<Vec<Frame>> {
        let addresses = blackbox_reader::backtrace::parse_return_addresses(field)?;
        let pm = self.postmortem.as_ref()?;
        Some(blackbox_reader::backtrace::symbolize_return_addresses(
            pm,
            &addresses,
            &Options::with_symbols(self.symbols.clone()),
        ))
    }

    /// A panic's raw return addresses, symbolized with the module table:
    /// one frame per line, the hook's and std's panic frames dropped.
    fn symbolized_panic_backtrace(&self, field: &str) -> Option<String> {
        let frames = self.symbolize_panic_field(field)?;
        Some(
            frames
                .iter()
                .map(Frame::text)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// The backtrace of the cause of death, if it has one (a panic's).
    pub fn crash_backtrace(&self) -> Option<String> {
        let raw = blackbox_reader::cause::backtrace(self.state, &self.snap)?;
        Some(self.symbolized_panic_backtrace(&raw).unwrap_or(raw))
    }

    /// Bytes per second written over the window, if it spans any time.
    fn byte_rate(&self) -> Option<f64> {
        blackbox_reader::render::byte_rate(&self.snap)
    }

    /// The `info --json` object, with the kernel's OOM count for a killed
    /// writer (`kernel`).
    pub fn to_json(&self, path: &Path) -> Value {
        let mut json = blackbox_reader::render::info_json(path, self.state, &self.snap);
        json["build_id"] = self.build_id().map_or(Value::Null, Value::String);
        json["backtrace"] = self.backtrace_json();
        // A panic's backtrace as `info` prints it (symbolized), so that text
        // and JSON agree; its frames also fill `backtrace` when no crash
        // dump was made (a panic leaves none).
        if let Some(bt) = self.crash_backtrace() {
            if let Some(cause) = json.get_mut("cause").and_then(Value::as_object_mut) {
                cause.insert("backtrace".into(), Value::from(bt));
            }
        }
        if self.frames.is_empty() {
            if let Some(frames) = self.panic_frames() {
                json["backtrace"] = serde_json::to_value(&frames).unwrap_or(Value::Null);
            }
        }
        json["crash_dump"] = match self
            .postmortem
            .as_ref()
            .and_then(|pm| pm.crash.as_ref().map(|c| (pm, c)))
        {
            Some((pm, c)) => serde_json::json!({
                "complete": c.complete,
                "thread_id": c.thread_id,
                "handler_ns": c.handler_ns,
                "stack_bytes": c.stack.len(),
                "stack_overflow": c.stack_overflow(),
                "modules": pm.modules.len(),
                "problems": pm.problems,
            }),
            None => Value::Null,
        };
        if let (Some(kernel), Some(obj)) = (self.kernel_count(), json.as_object_mut()) {
            obj.insert("kernel".into(), kernel.to_json());
        }
        json
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
    let summary = Summary::load_with_symbols(path, &args.symbols)?;
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
    if let Some(id) = summary.build_id() {
        writeln!(out, "build id  {id}")?;
    }
    if let Some(line) = summary.kernel_count().and_then(|k| k.text()) {
        writeln!(out, "kernel    {line}")?;
    }
    let dump_lines = summary.dump_backtrace_lines();
    if !dump_lines.is_empty() {
        writeln!(out, "backtrace (from the crash dump; innermost first)")?;
        for line in &dump_lines {
            writeln!(out, "  {line}")?;
        }
    } else if summary.state == blackbox_reader::State::Crashed {
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
