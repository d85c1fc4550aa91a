//! `blackbox on-failure`: the collector a systemd `OnFailure=` unit runs.
//!
//! systemd starts the OnFailure unit after the failed unit stopped and hands
//! it `MONITOR_SERVICE_RESULT`, `MONITOR_EXIT_CODE`, `MONITOR_EXIT_STATUS`,
//! `MONITOR_UNIT` and `MONITOR_INVOCATION_ID`. This command finds the ring of
//! exactly that run (the ring whose header holds the writer's
//! `INVOCATION_ID`, which equals `MONITOR_INVOCATION_ID`), prints a report
//! (unit, systemd's verdict, the ring's writer, how it died, the last
//! records) to stdout, which is the journal under systemd, and ships the
//! window when asked.
//!
//! # Which ring
//!
//! The directory is scanned without recursion; only regular files are
//! considered (symlinks are not followed) and a ring is known by its magic,
//! whatever its name. The ring whose invocation id matches wins (the newest,
//! should a restarted writer have left several). Otherwise the newest ring
//! that no live writer holds and that records no invocation id at all (its
//! writer ran outside systemd or before the id was recorded) is taken, and
//! the report says so. A ring that records another invocation id belongs to
//! another run and is never reported as this one.
//!
//! # Which cause
//!
//! The ring's own cause (a panic, a fatal signal caught by the crash
//! handlers) comes first. A ring that says only "killed without a word"
//! cannot tell SIGKILL from an OOM kill or an `exit()` that skipped closing
//! the ring; systemd can, so its result becomes the cause: `oom-kill` ->
//! "OOM-killed", `signal` -> "killed by SIGKILL", `exit-code` -> "exited with
//! status 3 without closing the ring". The report always shows both.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use blackbox_reader::dir::{Found, Retention, Scanner, SkipReason};
use blackbox_reader::render::{gap_text, json as record_json, rfc3339, show, text as record_text};
use blackbox_reader::{Ring, State};
use clap::Args;

use super::info::Summary;
use super::units::{self, ShipFormat};
use crate::failure::Failure;
use crate::ship::{Destination, Format, ShipOptions};

pub const ON_FAILURE_ABOUT: &str = "\
Report (and ship) the ring of a unit that failed: the command a systemd
OnFailure= unit runs (systemd/blackbox-collect@.service).

An app unit names the collector with OnFailure=blackbox-collect@%n.service and
sets BLACKBOX_DIR, so its recorder creates its ring there. When the unit fails,
systemd starts the collector with MONITOR_UNIT, MONITOR_INVOCATION_ID,
MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE and MONITOR_EXIT_STATUS set. This
command then:

  1. scans DIR with the file rules of blackbox watch (one level; symlinks
     never followed; only regular files with one link, owned by this user,
     DIR's owner or an --owner, at most --max-ring-size; a ring is known by
     its header, not its name; each file skipped for safety is named on
     stderr) for the ring whose recorded INVOCATION_ID equals
     MONITOR_INVOCATION_ID. Without a match (or an id), it takes the newest
     ring that no live writer holds and that records no invocation id, and
     says so; a ring of another run is never taken.
  2. prints a report to stdout (the journal, under systemd): the unit,
     systemd's verdict, the ring's writer, state and cause of death, and the
     last N records. When the ring has no cause of its own (killed without a
     word), systemd's result becomes the cause: oom-kill -> OOM-killed,
     signal -> killed by SIGKILL, exit-code -> exited with status N.
  3. with --to (or BLACKBOX_TO), ships the window (as blackbox ship does),
     with the reason \"systemd OnFailure: UNIT result=R code=C status=S\".
  4. with --keep K, removes the oldest dead rings in DIR beyond the newest K
     (never the reported ring, never a ring a live writer holds).

Every flag defaults to its environment variable, so a unit needs no flags:
  --unit MONITOR_UNIT, --invocation-id MONITOR_INVOCATION_ID,
  --result MONITOR_SERVICE_RESULT, --exit-code MONITOR_EXIT_CODE,
  --exit-status MONITOR_EXIT_STATUS, --dir BLACKBOX_DIR, --to BLACKBOX_TO,
  --format BLACKBOX_FORMAT.

Exit status: 0 when the report was written (and shipped, if asked); 2 with one
line on stderr otherwise (no ring of this run, an unreadable ring, a failed
shipment: the report is then still printed).

Example (what the collector unit runs):
  BLACKBOX_DIR=/run/blackbox/myapp.service blackbox on-failure --keep 8";

#[derive(Args, Debug)]
pub struct OnFailureArgs {
    /// The directory of the rings [env: BLACKBOX_DIR].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Report this ring instead of looking for one in DIR.
    #[arg(long, value_name = "PATH")]
    pub ring: Option<PathBuf>,
    /// The failed unit [env: MONITOR_UNIT].
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// The failed run's invocation id [env: MONITOR_INVOCATION_ID].
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
    /// systemd's result: exit-code, signal, core-dump, oom-kill, timeout, ... [env: MONITOR_SERVICE_RESULT].
    #[arg(long, value_name = "RESULT")]
    pub result: Option<String>,
    /// exited, killed or dumped [env: MONITOR_EXIT_CODE].
    #[arg(long, value_name = "CODE")]
    pub exit_code: Option<String>,
    /// The exit status, or the signal name without SIG [env: MONITOR_EXIT_STATUS].
    #[arg(long, value_name = "STATUS")]
    pub exit_status: Option<String>,
    /// Also ship the window to DEST: -, a file, or an http(s):// URL [env: BLACKBOX_TO].
    #[arg(long, value_name = "DEST")]
    pub to: Option<String>,
    /// The shipment's format [env: BLACKBOX_FORMAT; default: ndjson].
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub format: Option<ShipFormat>,
    /// Ship in parts of at most SIZE bytes each (see `blackbox ship --help`).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = units::parse_max_body)]
    pub max_body: u64,
    /// Records in the report.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub last: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Afterwards, remove the oldest dead rings in DIR beyond the newest K (live rings and the reported one are kept).
    #[arg(long, value_name = "K")]
    pub keep: Option<usize>,
    /// Which files of DIR are read (the rules of `blackbox watch`).
    #[command(flatten)]
    pub files: units::FileRules,
}

/// What systemd said about the failed unit (`MONITOR_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `MONITOR_SERVICE_RESULT`: `exit-code`, `signal`, `core-dump`,
    /// `oom-kill`, `timeout`, `watchdog`, ...
    pub result: Option<String>,
    /// `MONITOR_EXIT_CODE`: `exited`, `killed` or `dumped`.
    pub exit_code: Option<String>,
    /// `MONITOR_EXIT_STATUS`: a number for `exited`, a signal name without
    /// `SIG` (`KILL`, `SEGV`) otherwise.
    pub exit_status: Option<String>,
}

impl Verdict {
    /// `SIGKILL` for `KILL`, `SIGSEGV` for `SEGV` (or `11`).
    fn signal(&self) -> Option<String> {
        if self.exit_code.as_deref() == Some("exited") {
            return None;
        }
        let status = self.exit_status.as_deref()?;
        Some(match status.parse::<u32>() {
            Ok(n) => blackbox_reader::cause::signal_name(n),
            Err(_) if status.starts_with("SIG") => status.to_string(),
            Err(_) => format!("SIG{status}"),
        })
    }

    fn exit_status_number(&self) -> Option<&str> {
        (self.exit_code.as_deref() == Some("exited"))
            .then_some(self.exit_status.as_deref())
            .flatten()
    }

    /// `result=signal, killed SIGKILL` for the report's systemd line.
    fn text(&self) -> String {
        let mut parts = vec![format!(
            "result={}",
            self.result.as_deref().unwrap_or("unknown")
        )];
        if let Some(code) = &self.exit_code {
            parts.push(format!("code={code}"));
        }
        if let Some(status) = &self.exit_status {
            parts.push(format!("status={status}"));
        }
        parts.join(" ")
    }

    /// The reason a shipment carries: systemd's whole verdict, which the
    /// shipped ring's own cause lacks (`result=signal code=killed
    /// status=KILL`).
    fn reason(&self, unit: &str) -> String {
        format!("systemd OnFailure: {unit} {}", self.text())
    }
}

/// The cause the report gives, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedCause {
    /// One sentence.
    pub text: String,
    /// `ring`, `systemd`, or `ring+systemd` (the ring's state, told
    /// precisely by systemd).
    pub source: &'static str,
    /// The kind, as `info --json`'s cause (`panic`, `signal`, `killed`,
    /// `crashed`), plus `oom`, `exit` and `none` for what systemd adds.
    pub kind: &'static str,
    /// The signal, where one is known (`SIGKILL`).
    pub signal: Option<String>,
}

/// Combines the ring's state and cause with systemd's verdict.
pub fn merge_cause(
    state: State,
    ring_text: &str,
    ring_kind: Option<&str>,
    v: &Verdict,
) -> ReportedCause {
    let systemd = format!("systemd: {}", v.text());
    // Without a word from systemd (run by hand, or in a pod), the ring's
    // account stands alone.
    let said = if *v == Verdict::default() {
        String::new()
    } else {
        format!(" ({systemd})")
    };
    let result = v.result.as_deref().unwrap_or("");
    let ring_cause = |source| ReportedCause {
        text: format!("{ring_text}{said}"),
        source,
        kind: match ring_kind {
            Some("panic") => "panic",
            Some("signal") => "signal",
            Some("crashed") => "crashed",
            Some("killed") => "killed",
            _ => "none",
        },
        signal: None,
    };
    match state {
        // The writer said how it died: that is the most precise account.
        State::Crashed => ring_cause("ring"),
        State::Killed => match result {
            "oom-kill" => ReportedCause {
                text: format!("OOM-killed ({systemd}); the ring: {ring_text}"),
                source: "ring+systemd",
                kind: "oom",
                signal: v.signal().or(Some("SIGKILL".into())),
            },
            "signal" | "core-dump" | "timeout" | "watchdog" if v.signal().is_some() => {
                let signal = v.signal().unwrap_or_default();
                let why = match result {
                    "timeout" => " after a timeout",
                    "watchdog" => " by the watchdog",
                    _ => "",
                };
                ReportedCause {
                    text: format!("killed by {signal}{why} ({systemd})"),
                    source: "ring+systemd",
                    kind: "signal",
                    signal: Some(signal),
                }
            }
            _ if v.exit_status_number().is_some() => ReportedCause {
                text: format!(
                    "exited with status {} without closing the ring ({systemd})",
                    v.exit_status_number().unwrap_or_default()
                ),
                source: "ring+systemd",
                kind: "exit",
                signal: None,
            },
            _ => ring_cause("ring"),
        },
        State::Exited => {
            if let Some(status) = v.exit_status_number() {
                ReportedCause {
                    text: format!(
                        "exited with status {status} after closing the ring cleanly ({systemd})"
                    ),
                    source: "ring+systemd",
                    kind: "exit",
                    signal: None,
                }
            } else if let Some(signal) = v.signal() {
                ReportedCause {
                    text: format!(
                        "closed the ring cleanly, then was killed by {signal} ({systemd})"
                    ),
                    source: "ring+systemd",
                    kind: "signal",
                    signal: Some(signal),
                }
            } else {
                ring_cause("ring")
            }
        }
        State::Running => ReportedCause {
            text: format!(
                "the ring is still held by a live process (a child of the unit, or a new run){said}"
            ),
            source: "systemd",
            kind: "none",
            signal: v.signal(),
        },
    }
}

/// Scans `dir` with the collector's file rules (`blackbox watch`'s): the
/// rings, newest writer first. Files skipped for safety are named on
/// stderr; files that are not rings are passed over silently.
fn scan(dir: &Path, files: &units::FileRules) -> Result<Vec<Found>, Failure> {
    let mut scanner = Scanner::new(dir.to_path_buf(), files.policy());
    let scan = scanner.scan().map_err(|e| {
        Failure::error(format!(
            "{e} (give the rings' directory with --dir or BLACKBOX_DIR)"
        ))
    })?;
    for skip in &scan.skipped {
        if skip.reason != SkipReason::NotARing {
            eprintln!(
                "blackbox on-failure: skipping {}: {}",
                skip.path.display(),
                skip.detail
            );
        }
    }
    let mut rings = scan.rings;
    rings.reverse();
    Ok(rings)
}

/// Picks this run's ring; returns it and how it was picked.
fn pick(
    dir: &Path,
    invocation_id: Option<&str>,
    files: &units::FileRules,
) -> Result<(Ring, String), Failure> {
    let mut rings = scan(dir, files)?;
    let count = rings.len();
    if let Some(id) = invocation_id {
        if let Some(i) = rings
            .iter()
            .position(|f| f.ring.header().invocation_id == id)
        {
            return Ok((
                rings.swap_remove(i).ring,
                format!("its invocation id is {id}"),
            ));
        }
    }
    // No id, or no ring of this run: the newest dead ring that names no
    // other run.
    let fallback = rings.iter().position(|f| {
        !f.live && (invocation_id.is_none() || f.ring.header().invocation_id.is_empty())
    });
    match (fallback, invocation_id) {
        (Some(i), Some(id)) => Ok((
            rings.swap_remove(i).ring,
            format!(
                "no ring in {} has invocation id {id}; this is the newest ring no live writer holds that records no invocation id",
                dir.display()
            ),
        )),
        (Some(i), None) => Ok((
            rings.swap_remove(i).ring,
            "no invocation id was given; this is the newest ring no live writer holds".into(),
        )),
        (None, Some(id)) => Err(Failure::error(format!(
            "no ring in {} belongs to invocation {id} ({count} rings there, none of this run; did the unit set BLACKBOX_DIR={} and create its ring before it failed?)",
            dir.display(),
            dir.display()
        ))),
        (None, None) => Err(Failure::error(format!(
            "no ring without a live writer in {} ({count} rings there; give --invocation-id or --ring)",
            dir.display(),
        ))),
    }
}

/// Removes the oldest dead rings in `dir` while more than `keep` remain
/// besides `report`'s ring, which is never removed (nor a ring a live
/// writer holds).
fn prune(dir: &Path, keep: usize, report: &Path, files: &units::FileRules) -> Vec<String> {
    let Ok(mut rings) = scan(dir, files) else {
        return Vec::new();
    };
    // The reported ring by its identity on disk, however its path was spelled.
    let same_file = |f: &Found| {
        use std::os::unix::fs::MetadataExt;
        match (f.file.metadata(), std::fs::metadata(report)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => f.path == report,
        }
    };
    rings.retain(|f| !same_file(f));
    // Oldest first, as the retention routine takes them.
    rings.reverse();
    let retention = Retention {
        keep: Some(keep),
        keep_bytes: None,
    };
    retention
        .prune(&rings, |_| Some(()))
        .into_iter()
        .map(|p| match p.result {
            Ok(()) => format!("removed old ring {}", p.path.display()),
            Err(e) => format!("cannot remove old ring {}: {e}", p.path.display()),
        })
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Fills what the flags left out from the environment systemd sets.
fn with_env(mut opts: OnFailureArgs) -> OnFailureArgs {
    opts.unit = opts.unit.or_else(|| env("MONITOR_UNIT"));
    opts.invocation_id = opts.invocation_id.or_else(|| env("MONITOR_INVOCATION_ID"));
    opts.result = opts.result.or_else(|| env("MONITOR_SERVICE_RESULT"));
    opts.exit_code = opts.exit_code.or_else(|| env("MONITOR_EXIT_CODE"));
    opts.exit_status = opts.exit_status.or_else(|| env("MONITOR_EXIT_STATUS"));
    opts.dir = opts.dir.or_else(|| env("BLACKBOX_DIR").map(PathBuf::from));
    opts.to = opts.to.or_else(|| env("BLACKBOX_TO"));
    opts
}

/// Parses `BLACKBOX_FORMAT` (the flag wins).
pub fn format_from_env(flag: Option<Format>) -> Result<Format, Failure> {
    if let Some(f) = flag {
        return Ok(f);
    }
    match env("BLACKBOX_FORMAT").as_deref() {
        None | Some("ndjson") => Ok(Format::Ndjson),
        Some("otlp") => Ok(Format::Otlp),
        Some(other) => Err(Failure::error(format!(
            "BLACKBOX_FORMAT={other} is not a format (use ndjson or otlp)"
        ))),
    }
}

pub fn run(opts: OnFailureArgs) -> Result<i32, Failure> {
    let format = format_from_env(opts.format.map(Into::into))?;
    let opts = with_env(opts);
    let unit = opts.unit.clone().unwrap_or_else(|| "(unknown unit)".into());
    let verdict = Verdict {
        result: opts.result.clone(),
        exit_code: opts.exit_code.clone(),
        exit_status: opts.exit_status.clone(),
    };
    let destination = opts
        .to
        .as_deref()
        .map(|to| Destination::parse(to).map_err(|e| Failure::error(format!("--to {to}: {e}"))))
        .transpose()?;
    let (ring, picked) = match (&opts.ring, &opts.dir) {
        (Some(path), _) => (
            Ring::open(path).map_err(|e| Failure::ring(path, &e))?,
            "given with --ring".to_string(),
        ),
        (None, Some(dir)) => pick(dir, opts.invocation_id.as_deref(), &opts.files)?,
        (None, None) => {
            return Err(Failure::error(
                "no rings' directory (give --dir DIR, set BLACKBOX_DIR, or give --ring PATH)",
            ))
        }
    };
    let path = ring.path().to_path_buf();
    let summary = Summary::from_ring(&ring, &[])?;
    let ring_cause = blackbox_reader::Cause::of(summary.state, &summary.snap.header);
    let ring_kind = ring_cause.as_ref().map(blackbox_reader::Cause::kind);
    let mut cause = merge_cause(summary.state, &summary.state_line(), ring_kind, &verdict);
    let kernel = summary.kernel_count();
    if cause.kind != "oom" && kernel.as_ref().is_some_and(|k| k.oom_killed()) {
        // No word from systemd, but the kernel counted the kill.
        cause = ReportedCause {
            text: format!(
                "OOM-killed (the kernel's count); the ring: {}",
                summary.state_line()
            ),
            source: "ring+kernel",
            kind: "oom",
            signal: Some("SIGKILL".into()),
        };
    }

    let snap = &summary.snap;
    let skip = snap.records.len().saturating_sub(opts.last);
    let last = &snap.records[skip..];

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if opts.json {
        let records: Vec<Value> = last
            .iter()
            .map(|r| record_json(r, snap.gap_before(r), &show(snap, r)))
            .collect();
        let report = json!({
            "unit": opts.unit,
            "invocation_id": opts.invocation_id,
            "systemd": {
                "result": verdict.result,
                "exit_code": verdict.exit_code,
                "exit_status": verdict.exit_status,
            },
            "ring": path.display().to_string(),
            "picked": picked,
            "state": summary.state.as_str(),
            "cause": {
                "text": cause.text,
                "kind": cause.kind,
                "source": cause.source,
                "signal": cause.signal,
                "ring": ring_cause.as_ref().map_or(Value::Null, blackbox_reader::Cause::to_json),
            },
            "info": summary.to_json(&path),
            "records": records,
        });
        writeln!(out, "{report}")?;
    } else {
        let h = &snap.header;
        // Run by hand (or in a pod, where there is no systemd), the report
        // leads with the ring instead of a unit.
        match &opts.unit {
            Some(unit) => {
                writeln!(out, "blackbox: {unit} failed: {}", cause.text)?;
                writeln!(out, "unit       {unit}")?;
            }
            None => writeln!(out, "blackbox: {}: {}", path.display(), cause.text)?,
        }
        if let Some(id) = &opts.invocation_id {
            writeln!(out, "invocation {id}")?;
        }
        if verdict != Verdict::default() {
            writeln!(out, "systemd    {}", verdict.text())?;
        }
        if let Some(line) = kernel.as_ref().and_then(|k| k.text()) {
            writeln!(out, "kernel     {line}")?;
        }
        writeln!(out, "ring       {} ({picked})", path.display())?;
        writeln!(
            out,
            "writer     {} (pid {}) on {}, started {}",
            h.program,
            h.pid,
            h.hostname,
            rfc3339(h.start_unix_ns)
        )?;
        writeln!(out, "state      {}", summary.state_line())?;
        if cause.text != summary.state_line() {
            writeln!(out, "cause      {} [from {}]", cause.text, cause.source)?;
        }
        let dump_lines = summary.dump_backtrace_lines();
        if !dump_lines.is_empty() {
            writeln!(out, "backtrace  (from the crash dump; innermost first)")?;
            for line in dump_lines.iter().take(40) {
                writeln!(out, "  {line}")?;
            }
        } else if summary.state == State::Crashed {
            if let Some(bt) = summary.crash_backtrace() {
                writeln!(out, "backtrace")?;
                for line in bt.lines().take(40) {
                    writeln!(out, "  {line}")?;
                }
            }
        }
        writeln!(
            out,
            "window     {} records, {} torn, {} corrupt; the last {}:",
            snap.records.len(),
            snap.totals.torn,
            snap.totals.corrupt,
            last.len()
        )?;
        for r in last {
            if let Some(gap) = snap.gap_before(r) {
                writeln!(out, "  {}", gap_text(r.writer, gap))?;
            }
            writeln!(out, "  {}", record_text(r, &show(snap, r)))?;
        }
    }
    out.flush()?;
    drop(out);

    if let Some(to) = destination {
        // The ship module's defaults for retries and timeouts; the reason
        // names the unit and systemd's verdict.
        let ship = ShipOptions {
            reason: Some(verdict.reason(&unit)),
            max_body: opts.max_body,
            ..ShipOptions::new(to, format)
        };
        let shipped = super::ship::ship_blocking(&ring, &path, &ship)?.map_err(|e| {
            // The error says how many tries it made.
            Failure::error(format!(
                "{}: report written, but shipping failed: {e}",
                path.display()
            ))
        })?;
        // The report went to stdout; where the shipment went is news for
        // the journal too, but on stderr so `--to -` output stays clean.
        eprintln!(
            "blackbox: shipped {} records ({} bytes) of {} to {} (key {})",
            shipped.records,
            shipped.bytes,
            path.display(),
            opts.to.as_deref().unwrap_or("?"),
            shipped.key
        );
    }

    if let (Some(keep), Some(dir)) = (opts.keep, &opts.dir) {
        for note in prune(dir, keep, &path, &opts.files) {
            eprintln!("blackbox: {note}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(result: &str, code: &str, status: &str) -> Verdict {
        Verdict {
            result: Some(result.into()),
            exit_code: Some(code.into()),
            exit_status: Some(status.into()),
        }
    }

    const KILLED: &str = "killed without a word (SIGKILL, ...)";

    #[test]
    fn systemd_names_the_signal_of_a_silent_death() {
        let c = merge_cause(
            State::Killed,
            KILLED,
            Some("killed"),
            &verdict("signal", "killed", "KILL"),
        );
        assert_eq!(
            c.text,
            "killed by SIGKILL (systemd: result=signal code=killed status=KILL)"
        );
        assert_eq!((c.kind, c.source), ("signal", "ring+systemd"));
    }

    #[test]
    fn systemd_oom_kill_becomes_the_cause() {
        let c = merge_cause(
            State::Killed,
            KILLED,
            Some("killed"),
            &verdict("oom-kill", "killed", "KILL"),
        );
        assert!(
            c.text.starts_with("OOM-killed (systemd: result=oom-kill"),
            "{}",
            c.text
        );
        assert_eq!(c.kind, "oom");
    }

    #[test]
    fn an_exit_that_skipped_closing_the_ring() {
        let c = merge_cause(
            State::Killed,
            KILLED,
            Some("killed"),
            &verdict("exit-code", "exited", "3"),
        );
        assert!(
            c.text
                .starts_with("exited with status 3 without closing the ring"),
            "{}",
            c.text
        );
        let c = merge_cause(
            State::Exited,
            "exited (closed cleanly)",
            None,
            &verdict("exit-code", "exited", "3"),
        );
        assert!(
            c.text.starts_with("exited with status 3 after closing"),
            "{}",
            c.text
        );
    }

    #[test]
    fn the_rings_own_cause_is_kept() {
        let text = "crashed: SIGSEGV at 0x10 in thread 'main'";
        let c = merge_cause(
            State::Crashed,
            text,
            Some("signal"),
            &verdict("core-dump", "dumped", "SEGV"),
        );
        assert!(c.text.starts_with(text), "{}", c.text);
        assert_eq!(c.source, "ring");
    }

    #[test]
    fn numeric_signal_status() {
        assert_eq!(
            verdict("signal", "killed", "9").signal().as_deref(),
            Some("SIGKILL")
        );
        assert_eq!(verdict("exit-code", "exited", "9").signal(), None);
    }
}
