//! Whether a killed writer was likely OOM-killed, from the memory evidence
//! in its ring's header alone (`shm-layout.md`, 9.3), and the words that
//! say what the verdict rests on.

use crate::header::{Header, MemoryEvidence};

/// Memory at or above this fraction of the cgroup limit makes a silent
/// death a likely OOM kill.
pub const OOM_FRACTION: f64 = 0.9;

/// What the memory verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// The writer saw its cgroup's OOM killer invoked, at this time.
    OomKiller {
        /// Unix nanoseconds.
        at: u64,
    },
    /// The writer saw its cgroup reach its limit, at this time, and no
    /// later sample showed it below [`OOM_FRACTION`].
    LimitHit {
        /// Unix nanoseconds.
        at: u64,
        /// The cgroup's limit in bytes (0: unknown).
        limit: u64,
    },
    /// The last periodic sample.
    Sample {
        /// Unix nanoseconds.
        at: u64,
        /// Usage as a fraction of the limit.
        fraction: f64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Only the resident set is known.
    Resident {
        /// Bytes.
        bytes: u64,
    },
}

/// The memory verdict for a killed writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// What it rests on.
    pub basis: Basis,
    /// Whether that makes an OOM kill likely.
    pub likely_oom: bool,
    /// The newest record's time, if the window has any.
    pub last_record_unix_ns: Option<u64>,
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

/// `40 ms`, `1.0 s`, `3 min`.
fn span(ns: u64) -> String {
    let secs = ns as f64 / 1e9;
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1e3)
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

impl Verdict {
    /// The verdict from a header's memory evidence (the rules of
    /// `shm-layout.md`, 9.3, in order); none without evidence.
    pub fn of(header: &Header) -> Option<Verdict> {
        let m = header.memory?;
        let basis = basis(&m)?;
        let likely_oom = match basis {
            Basis::OomKiller { .. } | Basis::LimitHit { .. } => true,
            Basis::Sample { fraction, .. } => fraction >= OOM_FRACTION,
            Basis::Resident { .. } => false,
        };
        Some(Verdict {
            basis,
            likely_oom,
            last_record_unix_ns: header.last_record_unix_ns,
        })
    }

    /// `40 ms before the last record` (or after it), if the window has one.
    fn when(&self, at: u64) -> Option<String> {
        let last = self.last_record_unix_ns?;
        Some(if at <= last {
            format!("{} before the last record", span(last - at))
        } else {
            format!("{} after the last record", span(at - last))
        })
    }

    /// The words, as the cause's text continues them: `memory reached its
    /// cgroup limit 40 ms before the last record: likely an OOM kill`.
    pub fn text(&self) -> String {
        let mut s = match self.basis {
            Basis::OomKiller { at } => {
                let mut s = String::from("the cgroup's OOM killer ran");
                if let Some(w) = self.when(at) {
                    s.push(' ');
                    s.push_str(&w);
                }
                s
            }
            Basis::LimitHit { at, limit } => {
                let mut s = String::from("memory reached its cgroup limit");
                if limit > 0 {
                    s.push_str(&format!(" of {}", mib(limit)));
                }
                if let Some(w) = self.when(at) {
                    s.push(' ');
                    s.push_str(&w);
                }
                s
            }
            Basis::Sample {
                at,
                fraction,
                limit,
            } => {
                let mut s = format!(
                    "memory at {:.0}% of its {} cgroup limit at the last sample",
                    fraction * 100.0,
                    mib(limit)
                );
                if let Some(w) = self.when(at) {
                    s.push_str(", ");
                    s.push_str(&w);
                }
                s
            }
            Basis::Resident { bytes } => format!("resident memory {}", mib(bytes)),
        };
        if self.likely_oom {
            s.push_str(": likely an OOM kill");
        }
        s
    }

    /// `oom_killer`, `limit_hit`, `sample` or `resident`: the JSON name of
    /// the basis.
    pub fn basis_name(&self) -> &'static str {
        match self.basis {
            Basis::OomKiller { .. } => "oom_killer",
            Basis::LimitHit { .. } => "limit_hit",
            Basis::Sample { .. } => "sample",
            Basis::Resident { .. } => "resident",
        }
    }

    /// When the evidence the verdict rests on was seen, Unix nanoseconds.
    pub fn seen_unix_ns(&self) -> Option<u64> {
        match self.basis {
            Basis::OomKiller { at } | Basis::LimitHit { at, .. } | Basis::Sample { at, .. } => {
                Some(at)
            }
            Basis::Resident { .. } => None,
        }
    }

    /// Nanoseconds from the evidence to the newest record (negative: the
    /// evidence is newer).
    pub fn before_last_record_ns(&self) -> Option<i128> {
        Some(i128::from(self.last_record_unix_ns?) - i128::from(self.seen_unix_ns()?))
    }
}

/// `memory.events`, `eventfd` or `sampled`: how the writer watched its
/// cgroup (`MEM_WATCH_*`); none for no watch or an unknown code.
pub fn watch_name(watch: u32) -> Option<&'static str> {
    use blackbox_recorder::layout::{MEM_WATCH_SAMPLED, MEM_WATCH_V1_EVENTFD, MEM_WATCH_V2_EVENTS};
    match watch {
        MEM_WATCH_V2_EVENTS => Some("memory.events"),
        MEM_WATCH_V1_EVENTFD => Some("eventfd"),
        MEM_WATCH_SAMPLED => Some("sampled"),
        _ => None,
    }
}

fn basis(m: &MemoryEvidence) -> Option<Basis> {
    if m.oom_unix_ns != 0 {
        return Some(Basis::OomKiller { at: m.oom_unix_ns });
    }
    let fraction = m.cgroup_fraction();
    if m.limit_hit_unix_ns != 0 {
        // A later sample below the line means memory was given back since.
        let fell_since =
            m.sampled_unix_ns > m.limit_hit_unix_ns && fraction.is_some_and(|f| f < OOM_FRACTION);
        if !fell_since {
            return Some(Basis::LimitHit {
                at: m.limit_hit_unix_ns,
                limit: m.cgroup_limit,
            });
        }
    }
    match fraction {
        Some(fraction) => Some(Basis::Sample {
            at: m.sampled_unix_ns,
            fraction,
            limit: m.cgroup_limit,
        }),
        None if m.rss_bytes > 0 => Some(Basis::Resident { bytes: m.rss_bytes }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blackbox_recorder::layout::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_764_400_000_000_000_000;
    const MIB: u64 = 1 << 20;

    /// The header of a ring the recorder wrote (no heartbeat, so its memory
    /// area is zero), with the memory area's words set as `fill` says, as a
    /// writer's heartbeat thread would have left them.
    fn header(fill: &[(usize, u64)], last_record: Option<u64>) -> Header {
        let dir = std::env::temp_dir().join(format!("bbx-unit-{}-oom", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{n}.ring"));
        let rec = blackbox_recorder::Recorder::builder(&path)
            .capacity(64 * 1024)
            .heartbeat(None)
            .create()
            .unwrap();
        rec.close();
        let mut bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes[H_MEM_WATCH..H_MEM_WATCH + 4].copy_from_slice(&MEM_WATCH_V2_EVENTS.to_le_bytes());
        bytes[H_MEM_CGROUP_VERSION..H_MEM_CGROUP_VERSION + 4].copy_from_slice(&2u32.to_le_bytes());
        let cgroup = b"/system.slice/leak.service";
        bytes[H_MEM_CGROUP_PATH..H_MEM_CGROUP_PATH + cgroup.len()].copy_from_slice(cgroup);
        for &(off, v) in fill {
            bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        let mut h = Header::parse(&bytes, bytes.len() as u64).expect("a valid header");
        h.last_record_unix_ns = last_record;
        h
    }

    fn sample(at: u64, usage: u64, limit: u64) -> Vec<(usize, u64)> {
        vec![
            (H_MEM_SAMPLED_UNIX_NS, at),
            (H_MEM_RSS_BYTES, usage),
            (H_MEM_CGROUP_USAGE, usage),
            (H_MEM_CGROUP_LIMIT, limit),
        ]
    }

    #[test]
    fn the_header_carries_the_cgroup_and_the_events() {
        let mut fill = sample(T0, 10 * MIB, 64 * MIB);
        fill.extend([
            (H_MEM_LIMIT_HIT_UNIX_NS, T0),
            (H_MEM_MAX_EVENTS, 3),
            (H_MEM_PEAK, 64 * MIB),
        ]);
        let h = header(&fill, None);
        assert_eq!(h.cgroup, Some((2, "/system.slice/leak.service".into())));
        let m = h.memory.expect("sampled");
        assert_eq!(
            (m.watch, m.max_events, m.peak),
            (MEM_WATCH_V2_EVENTS, 3, 64 * MIB)
        );
    }

    /// The fast leak the periodic sample misses: sampled at 16%, then the
    /// limit was hit 40 ms before the last record.
    #[test]
    fn a_limit_hit_after_a_low_sample_is_a_likely_oom_kill() {
        let mut fill = sample(T0 - 900 * MS, 10 * MIB, 64 * MIB);
        fill.extend([
            (H_MEM_LIMIT_HIT_UNIX_NS, T0 - 40 * MS),
            (H_MEM_LIMIT_HIT_USAGE, 64 * MIB),
        ]);
        // The sample written with the hit reads the limit too.
        fill.extend(sample(T0 - 40 * MS, 64 * MIB, 64 * MIB));
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(v.likely_oom);
        assert_eq!(
            v.text(),
            "memory reached its cgroup limit of 64 MiB 40 ms before the last record: likely an OOM kill"
        );
        assert_eq!(v.basis_name(), "limit_hit");
        assert_eq!(v.before_last_record_ns(), Some(i128::from(40 * MS)));
    }

    #[test]
    fn the_oom_killer_seen_running_comes_first() {
        let mut fill = sample(T0 - 5 * MS, 63 * MIB, 64 * MIB);
        fill.extend([
            (H_MEM_LIMIT_HIT_UNIX_NS, T0 - 30 * MS),
            (H_MEM_OOM_UNIX_NS, T0 - 5 * MS),
        ]);
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(v.likely_oom);
        assert_eq!(
            v.text(),
            "the cgroup's OOM killer ran 5 ms before the last record: likely an OOM kill"
        );
    }

    /// A limit hit long ago, after which memory fell (a later sample at
    /// 16%), does not make a later SIGKILL an OOM kill.
    #[test]
    fn a_limit_hit_followed_by_a_low_sample_is_not_evidence() {
        let mut fill = vec![(H_MEM_LIMIT_HIT_UNIX_NS, T0 - 60_000 * MS)];
        fill.extend(sample(T0 - 300 * MS, 10 * MIB, 64 * MIB));
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(!v.likely_oom);
        assert_eq!(
            v.text(),
            "memory at 16% of its 64 MiB cgroup limit at the last sample, 300 ms before the last record"
        );
    }

    #[test]
    fn a_high_last_sample_alone_is_a_likely_oom_kill() {
        let fill = sample(T0 - 1000 * MS, 60 * MIB, 64 * MIB);
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(v.likely_oom);
        assert_eq!(
            v.text(),
            "memory at 94% of its 64 MiB cgroup limit at the last sample, 1.0 s before the last record: likely an OOM kill"
        );
        // 82%: evidence, no claim.
        let fill = sample(T0 - 1000 * MS, 52 * MIB + MIB / 2, 64 * MIB);
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(!v.likely_oom);
        assert_eq!(
            v.text(),
            "memory at 82% of its 64 MiB cgroup limit at the last sample, 1.0 s before the last record"
        );
    }

    #[test]
    fn without_a_limit_only_the_resident_set_is_shown() {
        let fill = vec![(H_MEM_SAMPLED_UNIX_NS, T0), (H_MEM_RSS_BYTES, 4 * MIB)];
        let v = Verdict::of(&header(&fill, Some(T0))).unwrap();
        assert!(!v.likely_oom);
        assert_eq!(v.text(), "resident memory 4 MiB");
        assert_eq!(Verdict::of(&header(&[], Some(T0))), None);
    }

    #[test]
    fn evidence_newer_than_the_last_record_says_after() {
        let fill = vec![(H_MEM_OOM_UNIX_NS, T0 + 2_500 * MS)];
        let mut fill2 = sample(T0, MIB, 64 * MIB);
        fill2.extend(fill);
        let v = Verdict::of(&header(&fill2, Some(T0))).unwrap();
        assert_eq!(
            v.text(),
            "the cgroup's OOM killer ran 2.5 s after the last record: likely an OOM kill"
        );
        // An empty window: no timing.
        let v = Verdict::of(&header(&fill2, None)).unwrap();
        assert_eq!(v.text(), "the cgroup's OOM killer ran: likely an OOM kill");
    }
}
