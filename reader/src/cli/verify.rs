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
            .gaps
            .iter()
            .find(|g| g.1.corrupt > 0)
            .map_or(String::new(), |g| format!(", first before seq {}", g.0));
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
    // In a cleanly closed ring the oldest record sits at most one record
    // past the window's start: more means the bytes there are not records
    // (damage, or a TAIL that does not belong to this data). A writer that
    // died may have left appends in flight there (up to one per thread, each
    // up to the largest record), so the check is for clean rings only.
    let first = s.records.first().map_or(s.tail, |r| r.pos());
    let lead = first.saturating_sub(s.window_start);
    if summary.state == State::Exited
        && lead > s.header.max_record_len as u64
        && !(s.window_start == 0 && lead == 0)
    {
        problems.push(format!(
            "no valid record in the {lead} bytes at the start of the window"
        ));
    }
    // A clean close leaves no append in flight: the last record ends at TAIL.
    if summary.state == State::Exited && s.trailing.bytes > 0 {
        problems.push(format!(
            "{} bytes after the last record of a ring that was closed cleanly",
            s.trailing.bytes
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
