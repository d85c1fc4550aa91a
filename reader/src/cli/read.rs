//! `blackbox read RING [--json] [--last N] [--since D] [--level L] [--target PREFIX] [--follow]`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::render::{gap_text, json, show, text, Shown};
use super::Failure;
use crate::{Gap, Record, Ring};

pub struct Options {
    pub path: PathBuf,
    pub json: bool,
    pub last: Option<usize>,
    pub since: Option<Duration>,
    pub level: Option<recorder::Level>,
    pub target: Option<String>,
    pub follow: bool,
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// How long `--follow` waits for a reserved but unpublished record before
/// it counts it as torn and moves past it.
const FOLLOW_GRACE: Duration = Duration::from_secs(1);

struct Filter {
    min_level: Option<recorder::Level>,
    since_ns: Option<u64>,
    target: Option<String>,
}

impl Filter {
    /// `--since` applies to every record; `--level` keeps events only (other
    /// records have no level); `--target` keeps events whose target, and
    /// typed records whose type name, starts with the prefix.
    fn keeps(&self, record: &Record, shown: &Shown<'_>) -> bool {
        if self.since_ns.is_some_and(|t| record.ts_unix_ns < t) {
            return false;
        }
        if let Some(prefix) = &self.target {
            let name = match shown {
                Shown::Event(e) => &e.target,
                Shown::Typed { typed, .. } => &typed.type_name,
                Shown::Bytes { .. } => return false,
            };
            if !name.starts_with(prefix.as_str()) {
                return false;
            }
        }
        match (self.min_level, shown) {
            (None, _) => true,
            (Some(min), Shown::Event(e)) => e.level().is_some_and(|l| l >= min),
            (Some(_), Shown::Typed { .. } | Shown::Bytes { .. }) => false,
        }
    }
}

fn emit(
    out: &mut impl Write,
    opts: &Options,
    gap: Option<&Gap>,
    record: &Record,
    shown: &Shown<'_>,
) -> std::io::Result<()> {
    if opts.json {
        writeln!(out, "{}", json(record, gap, shown))
    } else {
        if let Some(gap) = gap {
            writeln!(out, "{}", gap_text(gap))?;
        }
        writeln!(out, "{}", text(record, shown))
    }
}

pub fn run(opts: Options) -> Result<i32, Failure> {
    let path = opts.path.clone();
    let ring = Ring::open(&path).map_err(|e| Failure::ring(&path, &e))?;
    let filter = Filter {
        min_level: opts.level,
        target: opts.target.clone(),
        since_ns: opts.since.map(|d| {
            recorder::realtime_ns().saturating_sub(d.as_nanos().min(u64::MAX as u128) as u64)
        }),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());

    let snap = ring.snapshot().map_err(|e| Failure::ring(&path, &e))?;
    // Following a live ring: a hole where a record was reserved but not yet
    // published may fill in a moment. Print up to the first such hole now
    // and let the follow loop take it from there, so nothing in flight at
    // the start is skipped.
    let live = opts.follow && ring.is_locked().unwrap_or(false);
    let upto = if live {
        snap.records
            .iter()
            .position(|r| snap.gap_before(r).is_some_and(|g| g.torn > 0))
            .unwrap_or(snap.records.len())
    } else {
        snap.records.len()
    };
    let initial = &snap.records[..upto];
    let kept: Vec<(&Record, Shown<'_>)> = initial
        .iter()
        .map(|r| (r, show(&snap, r)))
        .filter(|(r, s)| filter.keeps(r, s))
        .collect();
    let skip = opts.last.map_or(0, |n| kept.len().saturating_sub(n));
    for (record, shown) in &kept[skip..] {
        emit(&mut out, &opts, snap.gap_before(record), record, shown)?;
    }
    out.flush()?;
    if !opts.follow {
        return Ok(0);
    }
    let next = initial.last().map_or(snap.window_start, Record::end);
    drop(kept);
    follow(&ring, &opts, &filter, &mut out, next)
}

/// Prints records as they are published, until the writer is no longer
/// running. A reserved record that is not yet published holds the output
/// back for up to [`FOLLOW_GRACE`], so a slow writer's record is printed in
/// order instead of skipped.
fn follow(
    ring: &Ring,
    opts: &Options,
    filter: &Filter,
    out: &mut impl Write,
    mut next: u64,
) -> Result<i32, Failure> {
    let path = ring.path();
    // The start of a gap we are waiting on, and since when.
    let mut waiting: Option<(u64, Instant)> = None;
    // True when `next` is the window's overwritten edge (after a lap),
    // not the end of a record: the first record after it is no hole.
    let mut at_edge = false;
    loop {
        let running = ring.is_locked().map_err(|e| Failure::ring(path, &e))?;
        let snap = ring
            .snapshot_from(next)
            .map_err(|e| Failure::ring(path, &e))?;
        if snap.window_start > next || at_edge {
            // Lapped: what lay between `next` and the first record still
            // in the window was overwritten before it could be read.
            let resume = snap.records.first().map_or(snap.window_start, Record::pos);
            if resume > next {
                lapped_notice(out, opts.json, resume - next)?;
            }
            at_edge = snap.records.is_empty();
            next = resume.max(next);
            waiting = None;
        }
        for record in &snap.records {
            if record.pos() < next {
                continue;
            }
            let mut gap = snap.gap_before(record).copied();
            if record.pos() > next {
                if running {
                    // A record before this one is reserved but not yet
                    // published: wait for it, up to the grace period.
                    let since = match waiting {
                        Some((at, since)) if at == next => since,
                        _ => {
                            let now = Instant::now();
                            waiting = Some((next, now));
                            now
                        }
                    };
                    if since.elapsed() < FOLLOW_GRACE {
                        break;
                    }
                }
                // Moving past it: report the hole (the snapshot started
                // inside it, so its own gap list does not hold it).
                gap = gap.or(Some(Gap {
                    bytes: record.pos() - next,
                    torn: 1,
                    ..Gap::default()
                }));
            }
            waiting = None;
            let shown = show(&snap, record);
            if filter.keeps(record, &shown) {
                emit(out, opts, gap.as_ref(), record, &shown)?;
            }
            next = record.end();
        }
        out.flush()?;
        if !running {
            let state = ring.state().map_err(|e| Failure::ring(path, &e))?;
            eprintln!(
                "blackbox: {}: writer is no longer running ({})",
                path.display(),
                state.as_str()
            );
            return Ok(0);
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn lapped_notice(out: &mut impl Write, json: bool, bytes: u64) -> std::io::Result<()> {
    if json {
        writeln!(
            out,
            "{{\"lapped\":{{\"bytes\":{bytes},\"message\":\"the writer overwrote records before they were read\"}}}}"
        )
    } else {
        writeln!(
            out,
            "-- lapped: {bytes} bytes overwritten before they were read --"
        )
    }
}
