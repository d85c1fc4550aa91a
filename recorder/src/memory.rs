//! Memory evidence for telling an OOM kill from other silent deaths: the
//! process's resident set and its cgroup's usage and limit, sampled by the
//! heartbeat thread (never on the append path) into the ring's header.
//!
//! Reads cgroup v2 (`memory.current`, `memory.max`) and v1
//! (`memory.usage_in_bytes`, `memory.limit_in_bytes`), whichever holds the
//! process's memory controller; the cgroup is looked up at every sample,
//! since a process may move.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::layout::*;
use crate::mapping::RingMap;
use crate::sys;

/// A v1 limit at or above this means "no limit" (the kernel reports a
/// page-rounded `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 62;

fn read_u64(path: &PathBuf) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `(usage, limit)` of the process's memory cgroup; 0 for what is unknown
/// or unlimited.
pub(crate) fn cgroup_memory() -> (u64, u64) {
    let Ok(table) = fs::read_to_string("/proc/self/cgroup") else {
        return (0, 0);
    };
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let dir = PathBuf::from("/sys/fs/cgroup/memory").join(rel);
            let usage = read_u64(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
            let limit = read_u64(&dir.join("memory.limit_in_bytes"))
                .filter(|&l| l < V1_UNLIMITED)
                .unwrap_or(0);
            return (usage, limit);
        }
    }
    // cgroup v2: the "0::" line; the unified tree at /sys/fs/cgroup (or
    // /sys/fs/cgroup/unified on hybrid hosts).
    if let Some(path) = table.lines().find_map(|l| l.strip_prefix("0::")) {
        let rel = path.trim_start_matches('/');
        for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let dir = PathBuf::from(base).join(rel);
            if let Some(usage) = read_u64(&dir.join("memory.current")) {
                let limit = read_u64(&dir.join("memory.max")).unwrap_or(0);
                return (usage, limit);
            }
        }
    }
    (0, 0)
}

fn rss_bytes() -> u64 {
    let Ok(statm) = fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * sys::page_size()
}

/// Samples the evidence into the header.
pub(crate) fn sample(map: &RingMap) {
    let (usage, limit) = cgroup_memory();
    // Relaxed: independent diagnostic values; the sample time is written
    // last so a reader can tell a complete sample from none.
    map.header_u64(H_MEM_RSS_BYTES)
        .store(rss_bytes(), Ordering::Relaxed);
    map.header_u64(H_MEM_CGROUP_USAGE)
        .store(usage, Ordering::Relaxed);
    map.header_u64(H_MEM_CGROUP_LIMIT)
        .store(limit, Ordering::Relaxed);
    map.header_u64(H_MEM_SAMPLED_UNIX_NS)
        .store(sys::realtime_ns(), Ordering::Release);
}
