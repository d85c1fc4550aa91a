//! The `blackbox` command line: argument parsing, dispatch, and the mapping
//! of errors to one line on stderr and an exit status.
//!
//! Exit status: 0 success; 1 `verify` found the ring inconsistent; 2 any
//! error (bad flags, a missing, foreign or damaged file, a failed write).

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

// Shared with the library (ship): how records and causes look as text and JSON.
use crate::{cause, render};

mod demo;
mod info;
mod on_failure;
mod read;
mod ship;
mod units;
mod verify;
mod watch;

/// Exit status for errors.
pub const EXIT_ERROR: i32 = 2;
/// Exit status of `verify` for an inconsistent ring.
pub const EXIT_INCONSISTENT: i32 = 1;

/// A failure to report: one line, then exit with `code`.
#[derive(Debug)]
pub struct Failure {
    /// The line to print after `blackbox: `.
    pub message: String,
    /// Exit status.
    pub code: i32,
}

impl Failure {
    pub(crate) fn error(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    pub(crate) fn ring(path: &std::path::Path, err: &crate::Error) -> Failure {
        Failure::error(format!("{}: {err}", path.display()))
    }

    /// Stdout went away (for example `blackbox read RING | head`): not an
    /// error, stop quietly.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.code == 0
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        if err.kind() == io::ErrorKind::BrokenPipe {
            return Failure {
                message: String::new(),
                code: 0,
            };
        }
        Failure::error(format!("cannot write output: {err}"))
    }
}

/// blackbox: recover the last window of a process that died, from its ring file.
#[derive(Parser, Debug)]
#[command(name = "blackbox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the writer's identity, its state or cause of death, and the window's extent.
    Info(InfoArgs),
    /// Print the window's records, oldest first.
    Read(ReadArgs),
    /// Check that the ring is consistent (exit 0) or say what is damaged (exit 1).
    Verify(VerifyArgs),
    /// Ship the window (dead or alive) to stdout, a file or an HTTP endpoint, as NDJSON or OTLP.
    Ship(ShipArgs),
    /// Run a demo writer that records, then dies as asked (for trying the pipeline and for tests).
    Demo(DemoArgs),
    /// Report (and ship) the ring of a unit that failed: the command a systemd OnFailure= unit runs.
    #[command(long_about = ON_FAILURE_ABOUT)]
    OnFailure(OnFailureArgs),
    /// Collect from a directory of rings: ship each dead writer's window once, and live writers' snapshots.
    #[command(long_about = watch::WATCH_ABOUT)]
    Watch(watch::WatchArgs),
}

#[derive(Args, Debug)]
struct InfoArgs {
    /// The ring file.
    ring: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReadArgs {
    /// The ring file.
    ring: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Only the last N records (after the other filters).
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Only records written within DURATION before now (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only events at LEVEL or more severe (trace, debug, info, warn, error).
    #[arg(long, value_name = "LEVEL", value_parser = units::parse_level)]
    level: Option<recorder::Level>,
    /// Only events whose target (and typed records whose type name) starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    target: Option<String>,
    /// Keep printing new records as they are written, until the writer ends.
    #[arg(long)]
    follow: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The ring file.
    ring: PathBuf,
}

#[derive(Args, Debug)]
struct ShipArgs {
    /// The ring file.
    ring: PathBuf,
    /// Where to: - (stdout), a file (appended), or an http(s):// URL.
    #[arg(long, value_name = "DEST")]
    to: String,
    /// ndjson (a shipment line, then read --json lines) or otlp (OTLP/HTTP JSON, to URL/v1/logs).
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "ndjson")]
    format: ShipFormat,
    /// Tries in all for an HTTP destination (network errors, timeouts, 408, 429 and 5xx are retried).
    #[arg(long, value_name = "N", default_value_t = crate::ship::DEFAULT_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
    /// The wait before the first retry; it doubles each retry (at most 30s).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = units::parse_duration)]
    backoff: std::time::Duration,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    timeout: std::time::Duration,
    /// Why this shipment is made (shipped as its reason).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The idempotency key (default: derived from the ring and its window, so a repeat has the same key).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Split the shipment into parts of at most SIZE bytes each (e.g. 1MiB; at least 4KiB): one POST per part.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = units::parse_max_body)]
    max_body: u64,
}

/// The shipment format, for `ship --format` and `on-failure --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ShipFormat {
    /// One JSON object per line.
    Ndjson,
    /// OTLP/HTTP JSON logs.
    Otlp,
}

impl From<ShipFormat> for crate::ship::Format {
    fn from(f: ShipFormat) -> crate::ship::Format {
        match f {
            ShipFormat::Ndjson => crate::ship::Format::Ndjson,
            ShipFormat::Otlp => crate::ship::Format::Otlp,
        }
    }
}

/// How the demo writer ends.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Die {
    /// Close the ring cleanly and exit 0.
    Exit,
    /// Panic (exit status 101).
    Panic,
    /// abort() (SIGABRT).
    Abort,
    /// A segmentation fault (SIGSEGV).
    Segv,
    /// A write through a null pointer (SIGSEGV at address 0; test aid).
    #[value(hide = true)]
    Null,
    /// SIGKILL to itself.
    Kill,
    /// Get OOM-killed inside a small memory cgroup of its own.
    Oom,
    /// A real SIGBUS (test aid).
    #[value(hide = true)]
    Bus,
    /// A stack overflow on the main thread (test aid).
    #[value(hide = true)]
    StackOverflow,
}

/// The path the demo's records take into the ring.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `Recorder::log`, the recorder's own API.
    Raw,
    /// `tracing` macros through the blackbox `tracing_subscriber::Layer`.
    Tracing,
    /// `log` macros through the blackbox `log::Log`.
    Log,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Where to create the ring (an existing ring there is replaced).
    #[arg(long, value_name = "PATH", conflicts_with = "dir")]
    ring: Option<PathBuf>,
    /// Create the ring in DIR as PROGRAM-START_MS-PID.ring, never replacing
    /// a file (the default with neither flag: $BLACKBOX_DIR).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Test aid: thread 0 asks for a snapshot after its record N.
    #[arg(long, value_name = "N", hide = true)]
    snapshot_at: Option<u64>,
    /// Test aid: how many snapshot requests at once.
    #[arg(long, value_name = "B", hide = true, default_value_t = 1)]
    snapshot_burst: u64,
    /// Test aid: the snapshot's reason.
    #[arg(long, value_name = "TEXT", hide = true, default_value = "slow request")]
    snapshot_reason: String,
    /// Events at LEVEL or more severe also ask for a snapshot.
    #[arg(long, value_name = "LEVEL", hide = true, value_parser = units::parse_level)]
    snapshot_level: Option<recorder::Level>,
    /// Ring capacity, a power of two with units (64KiB, 16MiB).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = units::parse_size)]
    capacity: u64,
    /// Chunk size, a power of two from 1KiB to 64KiB (default: the
    /// capacity / 128 within those bounds).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    chunk_size: Option<u64>,
    /// The records' clock: tsc (where the kernel trusts it) or realtime
    /// (default: the best this machine has).
    #[arg(long, value_name = "CLOCK", value_enum)]
    clock: Option<DemoClock>,
    /// Records per thread.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    records: u64,
    /// Writer threads.
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
    /// Records per second per thread (0: as fast as possible).
    #[arg(long, value_name = "PER_SEC", default_value_t = 0.0)]
    rate: f64,
    /// How to end after writing.
    #[arg(long, value_name = "HOW", value_enum, default_value_t = Die::Exit)]
    die: Die,
    /// The path the records take: raw (Recorder::log), tracing or log.
    #[arg(long, value_name = "PATH", value_enum, default_value_t = Via::Raw)]
    via: Via,
    /// Test aid: first write one DEBUG event `every field type` (target
    /// `blackbox::demo::types`) with a field of each type, through --via's
    /// path (inside spans `outer:inner` with tracing), and typed records
    /// where the binary is built with them.
    #[arg(long, hide = true)]
    every_type: bool,
    /// Test aid: after every K-th record of a thread, print "T N" on stdout
    /// once its append returned.
    #[arg(long, value_name = "K", hide = true)]
    report_every: Option<u64>,
    /// Test aid: die M milliseconds after starting, while the writer
    /// threads are still writing and allocating.
    #[arg(long, value_name = "M", hide = true)]
    die_after_ms: Option<u64>,
    /// Test aid: install the crash handlers twice.
    #[arg(long, hide = true)]
    install_twice: bool,
    /// Test aid: install another crash handler first, to check chaining.
    #[arg(long, hide = true)]
    foreign_handlers: bool,
    /// Also write the cause of death to this file (as to
    /// /dev/termination-log on Kubernetes).
    #[arg(long, value_name = "PATH")]
    termination_log: Option<PathBuf>,
    /// Test aid: thread T stops right after it claims a chunk (after its
    /// record --stall-after), until the others took the ring round
    /// --stall-laps times; prints "stalled T N TICKETS" and "resumed ...",
    /// appends three records more, prints "idle T N" and idles.
    #[arg(long, value_name = "T", hide = true)]
    stall_thread: Option<u64>,
    /// Test aid: see --stall-thread.
    #[arg(long, value_name = "N", hide = true, default_value_t = 0)]
    stall_after: u64,
    /// Test aid: see --stall-thread.
    #[arg(long, value_name = "L", hide = true, default_value_t = 3)]
    stall_laps: u64,
}

const ON_FAILURE_ABOUT: &str = "\
Report (and ship) the ring of a unit that failed: the command a systemd
OnFailure= unit runs (systemd/blackbox-collect@.service).

An app unit names the collector with OnFailure=blackbox-collect@%n.service and
sets BLACKBOX_DIR, so its recorder creates its ring there. When the unit fails,
systemd starts the collector with MONITOR_UNIT, MONITOR_INVOCATION_ID,
MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE and MONITOR_EXIT_STATUS set. This
command then:

  1. scans DIR (not recursively; regular files only, symlinks not followed;
     a ring is known by its magic, not its name) for the ring whose recorded
     INVOCATION_ID equals MONITOR_INVOCATION_ID. Without a match (or an id), it
     takes the newest ring that no live writer holds and that records no
     invocation id, and says so; a ring of another run is never taken.
  2. prints a report to stdout (the journal, under systemd): the unit,
     systemd's verdict, the ring's writer, state and cause of death, and the
     last N records. When the ring has no cause of its own (killed without a
     word), systemd's result becomes the cause: oom-kill -> OOM-killed,
     signal -> killed by SIGKILL, exit-code -> exited with status N.
  3. with --to (or BLACKBOX_TO), ships the window (as blackbox ship does),
     with the reason \"systemd OnFailure: UNIT result=R code=C status=S\".
  4. with --keep K, removes the oldest dead rings in DIR beyond the newest K.

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

/// `blackbox demo --clock`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DemoClock {
    /// The time stamp counter.
    Tsc,
    /// CLOCK_REALTIME.
    Realtime,
}

#[derive(Args, Debug)]
struct OnFailureArgs {
    /// The directory of the rings [env: BLACKBOX_DIR].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Report this ring instead of looking for one in DIR.
    #[arg(long, value_name = "PATH")]
    ring: Option<PathBuf>,
    /// The failed unit [env: MONITOR_UNIT].
    #[arg(long, value_name = "UNIT")]
    unit: Option<String>,
    /// The failed run's invocation id [env: MONITOR_INVOCATION_ID].
    #[arg(long, value_name = "ID")]
    invocation_id: Option<String>,
    /// systemd's result: exit-code, signal, core-dump, oom-kill, timeout, ... [env: MONITOR_SERVICE_RESULT].
    #[arg(long, value_name = "RESULT")]
    result: Option<String>,
    /// exited, killed or dumped [env: MONITOR_EXIT_CODE].
    #[arg(long, value_name = "CODE")]
    exit_code: Option<String>,
    /// The exit status, or the signal name without SIG [env: MONITOR_EXIT_STATUS].
    #[arg(long, value_name = "STATUS")]
    exit_status: Option<String>,
    /// Also ship the window to DEST: -, a file, or an http(s):// URL [env: BLACKBOX_TO].
    #[arg(long, value_name = "DEST")]
    to: Option<String>,
    /// The shipment's format [env: BLACKBOX_FORMAT; default: ndjson].
    #[arg(long, value_name = "FORMAT", value_enum)]
    format: Option<ShipFormat>,
    /// Ship in parts of at most SIZE bytes each (see `blackbox ship --help`).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = units::parse_max_body)]
    max_body: u64,
    /// Records in the report.
    #[arg(long, value_name = "N", default_value_t = 20)]
    last: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Afterwards, remove the oldest dead rings in DIR beyond the newest K (live rings and the reported one are kept).
    #[arg(long, value_name = "K")]
    keep: Option<usize>,
}
/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_failure(err),
    };
    let result = match cli.command {
        Command::Info(a) => info::run(&a.ring, a.json),
        Command::Read(a) => read::run(read::Options {
            path: a.ring,
            json: a.json,
            last: a.last,
            since: a.since,
            level: a.level,
            target: a.target,
            follow: a.follow,
        }),
        Command::Verify(a) => verify::run(&a.ring),
        Command::OnFailure(a) => {
            on_failure::format_from_env(a.format.map(Into::into)).and_then(|format| {
                on_failure::run(on_failure::Options {
                    dir: a.dir,
                    ring: a.ring,
                    unit: a.unit,
                    invocation_id: a.invocation_id,
                    result: a.result,
                    exit_code: a.exit_code,
                    exit_status: a.exit_status,
                    to: a.to,
                    format,
                    max_body: a.max_body,
                    last: a.last,
                    json: a.json,
                    keep: a.keep,
                })
            })
        }
        Command::Watch(a) => watch::run(a),
        Command::Ship(a) => crate::ship::Destination::parse(&a.to)
            .map_err(Failure::error)
            .and_then(|to| {
                let opts = crate::ship::ShipOptions {
                    reason: a.reason,
                    key: a.key,
                    attempts: a.attempts,
                    backoff: a.backoff,
                    timeout: a.timeout,
                    max_body: a.max_body,
                    ..crate::ship::ShipOptions::new(to, a.format.into())
                };
                ship::run(&a.ring, &opts)
            }),
        Command::Demo(a) => demo::run(demo::Options {
            ring: a.ring,
            dir: a.dir,
            snapshot_at: a.snapshot_at,
            snapshot_burst: a.snapshot_burst,
            snapshot_reason: a.snapshot_reason,
            snapshot_level: a.snapshot_level,
            capacity: a.capacity,
            chunk_size: a.chunk_size,
            clock: a.clock.map(|c| match c {
                DemoClock::Tsc => recorder::Clock::Tsc,
                DemoClock::Realtime => recorder::Clock::Realtime,
            }),
            records: a.records,
            threads: a.threads,
            rate: a.rate,
            die: a.die,
            via: a.via,
            every_type: a.every_type,
            report_every: a.report_every,
            die_after: a.die_after_ms.map(std::time::Duration::from_millis),
            install_twice: a.install_twice,
            foreign_handlers: a.foreign_handlers,
            termination_log: a.termination_log,
            stall: a.stall_thread.map(|thread| demo::Stall {
                thread,
                after: a.stall_after,
                laps: a.stall_laps,
            }),
        }),
    };
    match result {
        Ok(code) => code,
        Err(f) if f.is_broken_pipe() => 0,
        Err(f) => {
            let _ = writeln!(io::stderr(), "blackbox: {}", f.message);
            f.code
        }
    }
}

/// Help and version go to stdout as usual; a usage error becomes one line.
fn clap_failure(err: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_ERROR
            } else {
                0
            }
        }
        _ => {
            // clap's message is a paragraph (for a missing argument the
            // names are on the lines after the first): join it into one line.
            let text = err.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = paragraph.join(" ");
            let line = line.trim_start_matches("error: ");
            let _ = writeln!(io::stderr(), "blackbox: {line} (see blackbox --help)");
            EXIT_ERROR
        }
    }
}
