//! `blackbox verify RING`: exit 0 when the ring is consistent, 1 with the
//! reason when it is not, 2 when it cannot be read at all.
//!
//! Consistent means (`shm-layout.md`, section 11): the header is valid, no
//! record or chunk fails validation, no writer's run has a hole in the
//! middle, and a ring that was closed cleanly has no torn record (a torn
//! record needs a writer that died, or is still, mid-append).

use std::io::Write;
use std::path::PathBuf;

use blackbox_reader::State;
use clap::Args;

use super::info::Summary;
use crate::failure::{Failure, EXIT_INCONSISTENT};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ring file.
    pub ring: PathBuf,
}

pub fn run(args: &VerifyArgs) -> Result<i32, Failure> {
    let path = args.ring.as_path();
    let summary = Summary::load(path)?;
    let s = &summary.snap;
    let mut problems = Vec::new();
    if s.totals.corrupt > 0 {
        let first = s
            .gaps
            .iter()
            .find(|g| g.1.corrupt > 0)
            .map_or(String::new(), |((w, seq), _)| {
                format!(", first before writer {w} seq {seq}")
            });
        problems.push(format!(
            "{} record(s) or chunk(s) fail their checksum or framing{first}",
            s.totals.corrupt
        ));
    }
    if s.totals.holes > 0 {
        problems.push(format!(
            "{} record(s) missing from the middle of a writer's run",
            s.totals.holes
        ));
    }
    if summary.state == State::Exited && s.totals.torn > 0 {
        problems.push(format!(
            "{} torn record(s) in a ring that was closed cleanly",
            s.totals.torn
        ));
    }
    if !problems.is_empty() {
        return Err(Failure {
            message: format!("{}: inconsistent: {}", path.display(), problems.join("; ")),
            code: EXIT_INCONSISTENT,
        });
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: ok: {} records from {} writers, {} torn, {} dropped, writer {}",
        path.display(),
        s.records.len(),
        s.writers.len(),
        s.totals.torn,
        s.header.dropped,
        summary.state.as_str()
    )?;
    Ok(0)
}
