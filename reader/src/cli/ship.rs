//! `blackbox ship RING --to DEST [--format ndjson|otlp]`: the CLI glue
//! around [`crate::ship::ship_ring`], on a current-thread tokio runtime.

use std::path::PathBuf;
use std::time::Duration;

use super::Failure;
use crate::ship::{ship_ring, Destination, Format, ShipOptions};
use crate::Ring;

pub struct Options {
    pub ring: PathBuf,
    pub to: String,
    pub format: Format,
    pub reason: Option<String>,
    pub key: Option<String>,
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    pub max_body: u64,
}

pub fn run(opts: Options) -> Result<i32, Failure> {
    let to = Destination::parse(&opts.to).map_err(Failure::error)?;
    let ring = Ring::open(&opts.ring).map_err(|e| Failure::ring(&opts.ring, &e))?;
    let ship = ShipOptions {
        to,
        format: opts.format,
        reason: opts.reason,
        key: opts.key,
        attempts: opts.attempts,
        backoff: opts.backoff,
        timeout: opts.timeout,
        max_body: opts.max_body,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the async runtime: {e}")))?;
    let shipped = runtime
        .block_on(ship_ring(&ring, &opts.ring, &ship))
        .map_err(|e| {
            // The message says how many tries were made.
            Failure::error(format!("cannot ship {}: {e}", opts.ring.display()))
        })?;
    // stdout may be the destination: the summary goes to stderr.
    let mut line = format!(
        "blackbox: shipped {} ({}, {}): {} records, {} bytes -> {}",
        opts.ring.display(),
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
