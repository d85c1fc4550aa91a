//! Memory evidence for telling an OOM kill from other silent deaths, kept by
//! the heartbeat thread (never on the append path) in the ring's header
//! (`shm-layout.md`, 9.2): the process's resident set, its memory cgroup's
//! usage, limit and peak, and what the kernel's memory notifications said.
//!
//! A periodic sample alone misses a fast leak: the last one may be a whole
//! period old when the OOM killer strikes. So between samples the thread
//! waits on the kernel's notifications: on cgroup v2 the change
//! notification of `memory.events` (poll `POLLPRI`), on v1 eventfds for
//! `memory.oom_control` and for usage crossing 90% of the limit
//! (`cgroup.event_control`). Each wake-up records a sample, the rise of
//! the `max` / `oom` / `oom_kill` counters, and when the cgroup last hit its
//! limit.
//!
//! The cgroup is looked up at every period, since a process may move (as
//! `blackbox demo --die oom` does right after it creates its ring).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::layout::*;
use crate::mapping::RingMap;
use crate::sys;

/// A v1 limit at or above this means "no limit" (the kernel reports a
/// page-rounded `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 62;

/// The v1 usage notification is set at this share of the limit (per mille).
const V1_THRESHOLD_PER_MILLE: u64 = 900;

/// The process's memory cgroup, as `/proc/self/cgroup` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cgroup {
    /// 1 or 2.
    pub(crate) version: u32,
    /// The path in its hierarchy (`/system.slice/app.service`).
    pub(crate) path: String,
}

/// The memory cgroup in the text of `/proc/self/cgroup`: a v1 line whose
/// controllers include `memory`, else the v2 line `0::PATH`.
pub(crate) fn cgroup_of(proc_self_cgroup: &str) -> Option<Cgroup> {
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        if let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        {
            if controllers.split(',').any(|c| c == "memory") {
                return Some(Cgroup {
                    version: 1,
                    path: path.to_string(),
                });
            }
        }
    }
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|path| Cgroup {
            version: 2,
            path: path.to_string(),
        })
}

/// The directory of `cgroup` in the mounted hierarchy, if it is there: v1
/// under `/sys/fs/cgroup/memory`; v2 under `/sys/fs/cgroup` (or
/// `/sys/fs/cgroup/unified` on hybrid hosts) where it has `memory.current`.
fn dir_of(cgroup: &Cgroup) -> Option<PathBuf> {
    let rel = cgroup.path.trim_start_matches('/');
    if cgroup.version == 1 {
        let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
        return dir.is_dir().then_some(dir);
    }
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|base| Path::new(base).join(rel))
        .find(|dir| dir.join("memory.current").exists())
}

/// The counters of the memory events that matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// The cgroup reached its limit (v2 `max`, v1 `failcnt`).
    pub(crate) max: u64,
    /// The OOM killer was invoked (v2 `oom`; v1 not counted).
    pub(crate) oom: u64,
    /// Processes the OOM killer killed (`oom_kill`).
    pub(crate) oom_kill: u64,
}

/// Parses cgroup v2 `memory.events` (`max 12\noom 1\noom_kill 1\n...`);
/// keys it does not know, and malformed lines, are skipped.
pub(crate) fn parse_memory_events(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "max" => counts.max = value,
            "oom" => counts.oom = value,
            "oom_kill" => counts.oom_kill = value,
            _ => {}
        }
    }
    counts
}

/// `oom_kill` of cgroup v1 `memory.oom_control` (`oom_kill_disable 0\n
/// under_oom 0\noom_kill 1\n`); 0 where the kernel does not count it.
pub(crate) fn parse_oom_control_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a small kernel file from its start through a descriptor opened
/// beforehand, into `buf`: no open, no allocation. At the cgroup's limit
/// every new kernel object (a file, a seq_file buffer) and every new heap
/// page is charged to the cgroup and would stall this thread in reclaim
/// until the OOM kill, so the files stay open from when memory was fine.
fn pread_text<'b>(file: &File, buf: &'b mut [u8; 512]) -> Option<&'b str> {
    use std::os::unix::fs::FileExt;
    let n = file.read_at(buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()
}

fn pread_u64(file: Option<&File>) -> Option<u64> {
    let mut buf = [0u8; 512];
    pread_text(file?, &mut buf)?.trim().parse().ok()
}

/// The kernel's notifications for the watched cgroup.
enum Notify {
    /// Periodic samples only.
    None,
    /// cgroup v2: `memory.events`, open (reading it re-arms the poll).
    Events(File),
    /// cgroup v1: the OOM eventfd and the usage-threshold eventfd, with the
    /// files they were registered for (kept open with them).
    V1 {
        oom: EventFd,
        threshold: Option<EventFd>,
        _files: Vec<File>,
    },
}

/// The files a sample reads, opened when the watch begins.
#[derive(Default)]
struct Files {
    usage: Option<File>,
    limit: Option<File>,
    peak: Option<File>,
    /// v1 `memory.failcnt`.
    failcnt: Option<File>,
    /// v1 `memory.oom_control`.
    oom_control: Option<File>,
    statm: Option<File>,
}

impl Files {
    fn open(cgroup: Option<&Cgroup>, dir: Option<&Path>) -> Files {
        let open = |name: &str| dir.and_then(|d| File::open(d.join(name)).ok());
        let statm = File::open("/proc/self/statm").ok();
        match cgroup.map(|c| c.version) {
            Some(2) => Files {
                usage: open("memory.current"),
                limit: open("memory.max"),
                peak: open("memory.peak"),
                statm,
                ..Files::default()
            },
            Some(_) => Files {
                usage: open("memory.usage_in_bytes"),
                limit: open("memory.limit_in_bytes"),
                peak: open("memory.max_usage_in_bytes"),
                failcnt: open("memory.failcnt"),
                oom_control: open("memory.oom_control"),
                statm,
            },
            None => Files {
                statm,
                ..Files::default()
            },
        }
    }

    fn rss_bytes(&self) -> u64 {
        let mut buf = [0u8; 512];
        let Some(statm) = self.statm.as_ref().and_then(|f| pread_text(f, &mut buf)) else {
            return 0;
        };
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * sys::page_size()
    }
}

/// What the heartbeat thread watches: the process's memory cgroup and its
/// notifications, and the counters when it began watching.
pub(crate) struct Watch {
    cgroup: Option<Cgroup>,
    dir: Option<PathBuf>,
    files: Files,
    notify: Notify,
    baseline: Counts,
    last: Counts,
    /// The usage share of the limit at the last sample (per mille).
    last_per_mille: u64,
}

/// Near the limit the thread samples this often, whatever the heartbeat
/// period: the notifications are the first line, this is the second.
pub(crate) const NEAR_LIMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// "Near the limit": usage at or above this share of it (per mille).
const NEAR_LIMIT_PER_MILLE: u64 = 500;

impl Watch {
    /// Begins watching the process's memory cgroup; writes its path, its
    /// version and how it is watched into the header.
    pub(crate) fn start(map: &RingMap) -> Watch {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| cgroup_of(&t));
        Watch::on(map, cgroup)
    }

    fn on(map: &RingMap, cgroup: Option<Cgroup>) -> Watch {
        let dir = cgroup.as_ref().and_then(dir_of);
        let notify = match (&cgroup, &dir) {
            (Some(c), Some(d)) if c.version == 2 => File::open(d.join("memory.events"))
                .map(Notify::Events)
                .unwrap_or(Notify::None),
            (Some(_), Some(d)) => v1_notify(d).unwrap_or(Notify::None),
            _ => Notify::None,
        };
        let files = Files::open(cgroup.as_ref(), dir.as_deref());
        let mut watch = Watch {
            cgroup,
            dir,
            files,
            notify,
            baseline: Counts::default(),
            last: Counts::default(),
            last_per_mille: 0,
        };
        watch.baseline = watch.counts();
        watch.last = watch.baseline;
        let kind = match (&watch.dir, &watch.notify) {
            (None, _) => MEM_WATCH_NONE,
            (Some(_), Notify::Events(_)) => MEM_WATCH_V2_EVENTS,
            (Some(_), Notify::V1 { .. }) => MEM_WATCH_V1_EVENTFD,
            (Some(_), Notify::None) => MEM_WATCH_SAMPLED,
        };
        let path = watch.cgroup.as_ref().map_or("", |c| c.path.as_str());
        let mut field = [0u8; CGROUP_PATH_LEN];
        let len = path.len().min(CGROUP_PATH_LEN);
        field[..len].copy_from_slice(&path.as_bytes()[..len]);
        // Only this thread writes the memory area (create left it zero).
        map.write_header_bytes(H_MEM_CGROUP_PATH, &field);
        // Relaxed: independent diagnostic values (section 9.2).
        map.header_u32(H_MEM_CGROUP_VERSION).store(
            watch.cgroup.as_ref().map_or(0, |c| c.version),
            Ordering::Relaxed,
        );
        map.header_u32(H_MEM_WATCH).store(kind, Ordering::Relaxed);
        map.header_u64(H_MEM_OOM_KILL_BASE)
            .store(watch.baseline.oom_kill, Ordering::Relaxed);
        for field in [
            H_MEM_LIMIT_HIT_UNIX_NS,
            H_MEM_OOM_UNIX_NS,
            H_MEM_MAX_EVENTS,
            H_MEM_OOM_EVENTS,
            H_MEM_OOM_KILL_EVENTS,
        ] {
            map.header_u64(field).store(0, Ordering::Relaxed);
        }
        watch
    }

    /// The file descriptors to wait on for the kernel's notifications, each
    /// with whether the kernel signals it as priority data (`POLLPRI`).
    pub(crate) fn fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        match &self.notify {
            Notify::None => Vec::new(),
            // kernfs signals a change of memory.events as POLLPRI.
            Notify::Events(f) => vec![(f.as_fd(), true)],
            Notify::V1 { oom, threshold, .. } => {
                let mut fds = vec![(oom.as_fd(), false)];
                fds.extend(threshold.as_ref().map(|t| (t.as_fd(), false)));
                fds
            }
        }
    }

    /// When to sample next, given the heartbeat's own `period`: sooner while
    /// memory is near the cgroup's limit.
    pub(crate) fn interval(&self, period: std::time::Duration) -> std::time::Duration {
        if self.last_per_mille >= NEAR_LIMIT_PER_MILLE {
            period.min(NEAR_LIMIT_INTERVAL)
        } else {
            period
        }
    }

    /// The current counters (zero where unknown).
    fn counts(&mut self) -> Counts {
        let mut buf = [0u8; 512];
        match &self.notify {
            // Read through the polled descriptor: that re-arms it.
            Notify::Events(file) => pread_text(file, &mut buf)
                .map(parse_memory_events)
                .unwrap_or_default(),
            _ if self.cgroup.as_ref().is_some_and(|c| c.version == 2) => self
                .dir
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join("memory.events")).ok())
                .map(|t| parse_memory_events(&t))
                .unwrap_or_default(),
            _ => Counts {
                max: pread_u64(self.files.failcnt.as_ref()).unwrap_or(0),
                oom: 0,
                oom_kill: self
                    .files
                    .oom_control
                    .as_ref()
                    .and_then(|f| pread_text(f, &mut buf))
                    .map_or(0, parse_oom_control_kills),
            },
        }
    }

    /// A periodic sample: follows the process to another cgroup first.
    pub(crate) fn sample(&mut self, map: &RingMap) {
        // Not near the limit only: this opens a file.
        if self.last_per_mille < NEAR_LIMIT_PER_MILLE {
            let now = std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|t| cgroup_of(&t));
            if now != self.cgroup {
                *self = Watch::on(map, now);
            }
        }
        self.record(map, false);
    }

    /// After a notification: drains it and records what it says.
    pub(crate) fn notified(&mut self, map: &RingMap) {
        let mut oom_fired = false;
        if let Notify::V1 { oom, threshold, .. } = &self.notify {
            // Non-blocking eventfds: a read that finds nothing fails.
            oom_fired = oom.read().is_ok_and(|n| n > 0);
            if let Some(t) = threshold {
                let _ = t.read();
            }
        }
        self.record(map, oom_fired);
    }

    /// Records a sample and the counters' rises (`shm-layout.md`, 9.2),
    /// through descriptors opened beforehand (see [`pread_text`]).
    fn record(&mut self, map: &RingMap, oom_fired: bool) {
        let v1 = self.cgroup.as_ref().is_some_and(|c| c.version == 1);
        let usage = pread_u64(self.files.usage.as_ref()).unwrap_or(0);
        let limit = pread_u64(self.files.limit.as_ref())
            .filter(|&l| !v1 || l < V1_UNLIMITED)
            .unwrap_or(0);
        let peak = pread_u64(self.files.peak.as_ref()).unwrap_or(0);
        let counts = self.counts();
        let now_ns = sys::realtime_ns();
        // No limit: never "near" it.
        self.last_per_mille = usage.saturating_mul(1000).checked_div(limit).unwrap_or(0);
        // Relaxed: independent diagnostic values; the times are written
        // last so a reader that sees one sees its companions.
        map.header_u64(H_MEM_RSS_BYTES)
            .store(self.files.rss_bytes(), Ordering::Relaxed);
        map.header_u64(H_MEM_CGROUP_USAGE)
            .store(usage, Ordering::Relaxed);
        map.header_u64(H_MEM_CGROUP_LIMIT)
            .store(limit, Ordering::Relaxed);
        map.header_u64(H_MEM_PEAK).store(peak, Ordering::Relaxed);
        let rise = |now: u64, base: u64| now.saturating_sub(base);
        map.header_u64(H_MEM_MAX_EVENTS)
            .store(rise(counts.max, self.baseline.max), Ordering::Relaxed);
        map.header_u64(H_MEM_OOM_EVENTS)
            .store(rise(counts.oom, self.baseline.oom), Ordering::Relaxed);
        map.header_u64(H_MEM_OOM_KILL_EVENTS).store(
            rise(counts.oom_kill, self.baseline.oom_kill),
            Ordering::Relaxed,
        );
        if counts.max > self.last.max {
            map.header_u64(H_MEM_LIMIT_HIT_USAGE)
                .store(usage, Ordering::Relaxed);
            // Release: a reader that sees the time sees the usage above.
            map.header_u64(H_MEM_LIMIT_HIT_UNIX_NS)
                .store(now_ns, Ordering::Release);
        }
        if oom_fired || counts.oom > self.last.oom || counts.oom_kill > self.last.oom_kill {
            // Release: as above.
            map.header_u64(H_MEM_OOM_UNIX_NS)
                .store(now_ns, Ordering::Release);
        }
        self.last = counts;
        // Release: a non-zero sample time means a complete sample.
        map.header_u64(H_MEM_SAMPLED_UNIX_NS)
            .store(now_ns, Ordering::Release);
    }
}

/// Registers the v1 notifications: `memory.oom_control` (the OOM killer
/// runs) and `memory.usage_in_bytes` crossing 90% of the limit, each on a
/// non-blocking eventfd, through `cgroup.event_control`.
fn v1_notify(dir: &Path) -> Option<Notify> {
    let mut control = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))
        .ok()?;
    let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
    let oom = EventFd::from_flags(flags).ok()?;
    let oom_control = File::open(dir.join("memory.oom_control")).ok()?;
    control
        .write_all(format!("{} {}", oom.as_raw_fd(), oom_control.as_raw_fd()).as_bytes())
        .ok()?;
    let mut files = vec![oom_control];
    let limit = read_u64(&dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
    let threshold = limit.and_then(|limit| {
        let fd = EventFd::from_flags(flags).ok()?;
        let usage = File::open(dir.join("memory.usage_in_bytes")).ok()?;
        let at = limit / 1000 * V1_THRESHOLD_PER_MILLE;
        control
            .write_all(format!("{} {} {at}", fd.as_raw_fd(), usage.as_raw_fd()).as_bytes())
            .ok()?;
        files.push(usage);
        Some(fd)
    });
    Some(Notify::V1 {
        oom,
        threshold,
        _files: files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `memory.events` as a 6.1 kernel wrote it for a unit that was
    /// OOM-killed under `MemoryMax=64M`.
    const EVENTS_AFTER_OOM: &str = "low 0\nhigh 0\nmax 1193\noom 1\noom_kill 1\noom_group_kill 0\n";

    #[test]
    fn memory_events_are_parsed() {
        assert_eq!(
            parse_memory_events(EVENTS_AFTER_OOM),
            Counts {
                max: 1193,
                oom: 1,
                oom_kill: 1
            }
        );
        // Older kernels lack oom_group_kill; unknown keys and bad lines
        // are skipped.
        assert_eq!(
            parse_memory_events("low 0\nhigh 3\nmax 7\noom 0\noom_kill 0\n"),
            Counts {
                max: 7,
                oom: 0,
                oom_kill: 0
            }
        );
        assert_eq!(
            parse_memory_events("max x\nmax 1 2\nfuture 9\n"),
            Counts::default()
        );
        assert_eq!(parse_memory_events(""), Counts::default());
    }

    #[test]
    fn oom_control_kills_are_parsed() {
        assert_eq!(
            parse_oom_control_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        // Kernels before 4.13 do not count kills.
        assert_eq!(
            parse_oom_control_kills("oom_kill_disable 0\nunder_oom 0\n"),
            0
        );
    }

    #[test]
    fn the_memory_cgroup_is_found_in_either_version() {
        let hybrid = "13:pids:/x\n6:memory:/user.slice/s\n0::/user.slice/s\n";
        assert_eq!(
            cgroup_of(hybrid),
            Some(Cgroup {
                version: 1,
                path: "/user.slice/s".into()
            })
        );
        assert_eq!(
            cgroup_of("0::/system.slice/app.service\n"),
            Some(Cgroup {
                version: 2,
                path: "/system.slice/app.service".into()
            })
        );
        assert_eq!(cgroup_of("5:cpu:/\n"), None);
    }
}
