//! `blackbox ship RING --to DEST [--format ndjson|otlp]`: the CLI glue
//! around [`crate::ship::ship_ring`], on a current-thread tokio runtime.

use std::path::Path;

use super::Failure;
use crate::ship::{ship_ring, ShipError, ShipOptions, Shipped};
use crate::Ring;

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

pub fn run(path: &Path, ship: &ShipOptions) -> Result<i32, Failure> {
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
    eprintln!("{line}");
    Ok(0)
}
