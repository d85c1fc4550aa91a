//! `blackbox ship RING --to DEST [--format ndjson|otlp]`: the CLI glue
//! around [`crate::ship::ship_ring`], on a current-thread tokio runtime.

use std::path::{Path, PathBuf};

use blackbox_reader::Ring;
use clap::Args;

use super::units::{self, ShipFormat};
use crate::failure::Failure;
use crate::ship::{ship_ring, ShipError, ShipOptions, Shipped};

#[derive(Args, Debug)]
pub struct ShipArgs {
    /// The ring file.
    pub ring: PathBuf,
    /// Where to: - (stdout), a file (appended), or an http(s):// URL.
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// ndjson (a shipment line, then read --json lines) or otlp (OTLP/HTTP JSON, to URL/v1/logs).
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "ndjson")]
    pub format: ShipFormat,
    /// Tries in all for an HTTP destination (network errors, timeouts, 408, 429 and 5xx are retried).
    #[arg(long, value_name = "N", default_value_t = crate::ship::DEFAULT_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// The wait before the first retry; it doubles each retry (at most 30s).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = units::parse_duration)]
    pub backoff: std::time::Duration,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub timeout: std::time::Duration,
    /// Why this shipment is made (shipped as its reason).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The idempotency key (default: derived from the ring and its window, so a repeat has the same key).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Split the shipment into parts of at most SIZE bytes each (e.g. 1MiB; at least 4KiB): one POST per part.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = units::parse_max_body)]
    pub max_body: u64,
    /// Also ship the window as trace-event JSON: to FILE.KEY.trace.json beside a file, or POSTed to the URL.
    #[arg(long, value_name = "KIND", value_enum)]
    pub attach: Option<units::AttachKind>,
}

/// Ships `ring` (opened from `path`) on a current-thread runtime: for the
/// commands that ship once and exit (`ship`, `on-failure`). The outer
/// `Result` is the runtime's own failure to start.
pub fn ship_blocking(
    ring: &Ring,
    path: &Path,
    opts: &ShipOptions,
) -> Result<Result<Shipped, ShipError>, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(ship_ring(ring, path, opts)))
}

pub fn run(a: ShipArgs) -> Result<i32, Failure> {
    let to = crate::ship::Destination::parse(&a.to).map_err(Failure::error)?;
    units::check_attach(a.attach, &to)?;
    let ship = &ShipOptions {
        attach: a.attach.map(Into::into),
        reason: a.reason,
        key: a.key,
        attempts: a.attempts,
        backoff: a.backoff,
        timeout: a.timeout,
        max_body: a.max_body,
        ..ShipOptions::new(to, a.format.into())
    };
    let path = a.ring.as_path();
    let ring = Ring::open(path).map_err(|e| Failure::ring(path, &e))?;
    let shipped = ship_blocking(&ring, path, ship)?.map_err(|e| {
        // The message says how many tries were made.
        Failure::error(format!("cannot ship {}: {e}", path.display()))
    })?;
    // stdout may be the destination: the summary goes to stderr.
    let mut line = format!(
        "blackbox: shipped {} ({}, {}): {} records, {} bytes -> {}",
        path.display(),
        shipped.writer,
        shipped.cause,
        shipped.records,
        shipped.bytes,
        shipped.target,
    );
    if shipped.parts > 1 {
        line.push_str(&format!(" in {} parts", shipped.parts));
    }
    if shipped.retries > 0 {
        line.push_str(&format!(" after {} retries", shipped.retries));
    }
    if let Some(target) = &shipped.attachment {
        line.push_str(&format!("; trace-event -> {target}"));
    }
    eprintln!("{line}");
    Ok(0)
}
