//! `blackbox watch DIR --to DEST`: the flags of the collector
//! ([`crate::watch`] does the work).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::units::{self, ShipFormat};
use crate::failure::{Failure, EXIT_ERROR};
use crate::ship::{Destination, ShipOptions};
use crate::watch;

pub(crate) const WATCH_ABOUT: &str = "\
Watch DIR, the directory an application writes its rings into, and ship each
dead writer's last window once; ship a live writer's window when it asks for a
snapshot; remove old shipped rings.

A writer is dead when no process holds its ring's lock (this works from
another container's PID namespace). Each dead ring is shipped once: a marker
in the state directory (default DIR/.blackbox-watch) records it durably, and
a lock there keeps two collectors from shipping one ring. A collector killed
in the middle of a shipment ships that ring again when it restarts, with the
same idempotency key (at-least-once). Live rings are never removed; dead ones
only after they were shipped.

Files: one level of DIR; names starting with '.' are skipped; symlinks are
never followed; only regular files owned by this user, DIR's owner or an
--owner are read, at most --max-ring-size each; a ring is known by its
header, whatever its name.

SIGTERM or SIGINT: within --shutdown-timeout, the shipment in flight finishes
and one last scan ships the rings that died meanwhile; then the collector exits
0. With --once: scan, ship what is dead (and pending snapshot requests), exit
(0, or 2 if a shipment failed).

Example (a sidecar next to an app that sets BLACKBOX_DIR=/var/run/blackbox):
  blackbox watch /var/run/blackbox --to http://collector:4318 --format otlp \\
      --keep 8 --metrics 127.0.0.1:9464";

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// The directory of the rings.
    dir: PathBuf,
    /// Where to ship: -, a file (appended to), or an http(s):// URL.
    #[arg(long, value_name = "DEST")]
    to: String,
    /// The shipment's format.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = ShipFormat::Ndjson)]
    format: ShipFormat,
    /// Scan once, ship what is dead, and exit.
    #[arg(long)]
    once: bool,
    /// Time between scans.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = units::parse_duration)]
    interval: Duration,
    /// Least time between two snapshot shipments of one ring.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    snapshot_interval: Duration,
    /// Keep at most K dead rings: the oldest shipped ones beyond are removed.
    #[arg(long, value_name = "K", default_value_t = 16)]
    keep: usize,
    /// Keep at most SIZE bytes of dead rings (e.g. 512MiB).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    keep_bytes: Option<u64>,
    /// Never remove rings (overrides --keep and --keep-bytes).
    #[arg(long)]
    keep_all: bool,
    /// Do not ship rings whose writer exited cleanly (a deploy, a normal
    /// stop): each is logged once and marked as handled, so retention
    /// removes it like a shipped ring. Deaths and snapshots still ship.
    #[arg(long, alias = "skip-clean")]
    skip_exited: bool,
    /// Serve the counters in Prometheus text format at http://ADDR/metrics (a loopback address).
    #[arg(long, value_name = "ADDR", value_parser = watch::parse_metrics_addr)]
    metrics: Option<std::net::SocketAddr>,
    /// Where the shipped markers and claims live [default: DIR/.blackbox-watch].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// How long the shipment in flight may take after SIGTERM or SIGINT.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    shutdown_timeout: Duration,
    #[command(flatten)]
    files: units::FileRules,
    /// Test aid: each shipment, once it started reading its ring, creates
    /// GATE.entered and waits until the file GATE exists.
    #[arg(long, value_name = "GATE", hide = true)]
    hold_shipments_for_test: Option<PathBuf>,
    /// Tries in all for each shipment to a network destination [default: 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: Option<u32>,
    /// First retry delay, doubling each retry [default: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    backoff: Option<Duration>,
    /// Per-request timeout [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// Ship in parts of at most SIZE bytes each (at least 4KiB) [default: 4MiB].
    #[arg(long, value_name = "SIZE", value_parser = units::parse_max_body)]
    max_body: Option<u64>,
    /// Also ship each window as trace-event JSON: to FILE.KEY.trace.json beside a file, or POSTed to the URL.
    #[arg(long, value_name = "KIND", value_enum)]
    attach: Option<units::AttachKind>,
}

/// Runs `blackbox watch`.
pub(crate) fn run(a: WatchArgs) -> Result<i32, Failure> {
    let to = Destination::parse(&a.to).map_err(Failure::error)?;
    units::check_attach(a.attach, &to)?;
    let mut ship = ShipOptions::new(to, a.format.into());
    ship.attach = a.attach.map(Into::into);
    ship.attempts = a.attempts.unwrap_or(ship.attempts);
    ship.backoff = a.backoff.unwrap_or(ship.backoff);
    ship.timeout = a.timeout.unwrap_or(ship.timeout);
    ship.max_body = a.max_body.unwrap_or(ship.max_body);
    ship.hold_for_test = a.hold_shipments_for_test;
    let opts = watch::Options {
        ship,
        once: a.once,
        interval: a.interval.max(Duration::from_millis(10)),
        snapshot_interval: a.snapshot_interval,
        keep: (!a.keep_all).then_some(a.keep),
        keep_bytes: a.keep_bytes.filter(|_| !a.keep_all),
        skip_exited: a.skip_exited,
        metrics: a.metrics,
        state_dir: a.state_dir,
        shutdown_timeout: a.shutdown_timeout,
        policy: a.files.policy(),
        dir: a.dir,
    };
    let finished = watch::run(opts).map_err(Failure::error)?;
    Ok(if finished.failed == 0 { 0 } else { EXIT_ERROR })
}
