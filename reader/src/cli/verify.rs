//! `blackbox verify RING`: exit 0 when the ring is consistent, 1 with the
//! reason when it is not, 2 when it cannot be read at all.
//!
//! Consistent means: the header is valid, no published record fails its
//! checksum or position stamp (unless a lapped append in the lap log
//! explains it), and a ring that was closed cleanly has no torn record (a
//! torn record needs a writer that died, or is still, mid-append).

use std::io::Write;
use std::path::Path;

use super::info::Summary;
use super::{Failure, EXIT_INCONSISTENT};
use crate::State;

pub fn run(path: &Path) -> Result<i32, Failure> {
    let summary = Summary::load(path)?;
    let s = &summary.snap;
    let mut problems = Vec::new();
    if s.totals.corrupt > 0 {
        let first = s
            .records
            .iter()
            .find(|r| r.gap_before.is_some_and(|g| g.corrupt > 0))
            .map_or(String::new(), |r| format!(", first before seq {}", r.seq));
        problems.push(format!(
            "{} published record(s) fail their checksum or position stamp{first}",
            s.totals.corrupt
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
        "{}: ok: {} records, {} torn, {} overwritten by lapped writes, writer {}",
        path.display(),
        s.records.len(),
        s.totals.torn,
        s.totals.overwritten,
        summary.state.as_str()
    )?;
    Ok(0)
}
