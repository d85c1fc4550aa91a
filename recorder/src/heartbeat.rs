//! The writer's background thread: the heartbeat, the clock calibration,
//! the memory evidence (waiting on the kernel's memory notifications
//! between periods), and the optional periodic write-back. It writes only
//! its own header words and makes the only `msync` calls: the append path
//! never waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::clock::{mult, Clock, Pair};
use crate::layout::*;
use crate::mapping::RingMap;
use crate::memory::Watch;
use crate::shared::Shared;
use crate::sys;

/// The running background thread of a ring.
pub(crate) struct Heartbeat {
    stop: Arc<AtomicBool>,
    /// Wakes the thread from its wait on the kernel's memory notifications.
    wake: Option<Arc<EventFd>>,
    thread: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts the thread that keeps the heartbeat (every `heartbeat`), the
    /// memory evidence (with the heartbeat) and writes the ring back (every
    /// `msync`); none if both are `None`.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        heartbeat: Option<Duration>,
        msync: Option<Duration>,
    ) -> Option<Heartbeat> {
        if heartbeat.is_none() && msync.is_none() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .ok()
            .map(Arc::new);
        let thread = {
            let shared = Arc::clone(shared);
            let stop = Arc::clone(&stop);
            let wake = wake.clone();
            std::thread::Builder::new()
                .name("blackbox-heartbeat".into())
                .spawn(move || run(&shared, &stop, wake.as_deref(), heartbeat, msync))
                .expect("spawn heartbeat thread")
        };
        Some(Heartbeat { stop, wake, thread })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        // Relaxed: the stop flag is a request; join() orders the rest.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(wake) = &self.wake {
            let _ = wake.write(1);
        }
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn run(
    shared: &Shared,
    stop: &AtomicBool,
    wake: Option<&EventFd>,
    heartbeat: Option<Duration>,
    msync: Option<Duration>,
) {
    let start = Instant::now();
    let mut next_beat = start;
    let mut next_sync = start + msync.unwrap_or_default();
    // The memory evidence is kept with the heartbeat.
    let mut watch = heartbeat.map(|_| Watch::start(&shared.map));
    let mut next_sample = start;
    // Relaxed: the stop flag is a request; join() orders the rest.
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if let Some(period) = heartbeat.filter(|_| now >= next_beat) {
            shared
                .map
                .header_u64(H_HEARTBEAT_UNIX_NS)
                .store(sys::realtime_ns(), Ordering::Relaxed);
            if shared.clock == Clock::Tsc {
                calibrate(&shared.map, shared.clock_origin, Pair::now());
            }
            next_beat = now + period;
        }
        // The memory evidence: with the heartbeat, and more often while
        // memory is near the cgroup's limit.
        if let (Some(period), Some(w)) = (heartbeat, watch.as_mut()) {
            if now >= next_sample {
                w.sample(&shared.map);
                next_sample = now + w.interval(period);
            }
        }
        if let Some(period) = msync.filter(|_| now >= next_sync) {
            // A failed write-back (EIO) is retried next period; there is no
            // one to tell on this thread.
            let _ = shared.map.flush();
            next_sync = Instant::now() + period;
        }
        let until = match (heartbeat, msync) {
            (Some(_), Some(_)) => next_beat.min(next_sync).min(next_sample),
            (Some(_), None) => next_beat.min(next_sample),
            _ => next_sync,
        };
        let timeout = until.saturating_duration_since(Instant::now());
        match (wake, watch.as_mut()) {
            (Some(wake), Some(w)) if !w.fds().is_empty() => {
                if wait_for_memory_events(wake, w, timeout) {
                    w.notified(&shared.map);
                    // The kernel rate-limits these notifications (10 ms
                    // for cgroup v2); this keeps a descriptor that stays
                    // ready from spinning the thread.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            _ => std::thread::park_timeout(timeout),
        }
    }
}

/// Waits up to `timeout` for the kernel's memory notifications or for
/// `wake`; true if a notification came.
fn wait_for_memory_events(wake: &EventFd, watch: &Watch, timeout: Duration) -> bool {
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    for (fd, priority) in watch.fds() {
        let events = if priority {
            PollFlags::POLLPRI
        } else {
            PollFlags::POLLIN
        };
        fds.push(PollFd::new(fd, events));
    }
    let ms = u32::try_from(timeout.as_millis().max(1)).unwrap_or(u32::MAX);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    if poll(&mut fds, timeout).is_err() {
        // EINTR, or a descriptor the kernel refuses: wait as without one.
        return false;
    }
    if fds[0].any().unwrap_or(false) {
        let _ = wake.read();
    }
    fds[1..].iter().any(|fd| fd.any().unwrap_or(false))
}

/// Writes a clock calibration (`shm-layout.md`, 8.5): the pair `now` and
/// the nanoseconds per tick since `origin`, into the slot after the current
/// one, then publishes it by counting it. A pair too close to the origin to
/// give a rate is skipped.
pub(crate) fn calibrate(map: &RingMap, origin: Pair, now: Pair) {
    let m = mult(origin, now);
    if m == 0 {
        return;
    }
    let count = map.header_u64(H_CLOCK_CAL_COUNT);
    // Relaxed: only this thread (or create, before anyone else) writes it.
    let n = count.load(Ordering::Relaxed);
    let slot = H_CLOCK_BASE_TICKS + (n as usize % CLOCK_SLOTS) * CLOCK_SLOT_LEN;
    // Relaxed: published by the Release increment below.
    map.header_u64(slot).store(now.ticks, Ordering::Relaxed);
    map.header_u64(slot + 8).store(now.ns, Ordering::Relaxed);
    map.header_u64(slot + 16).store(m, Ordering::Relaxed);
    // Release: a reader that sees the new count sees the slot's fields.
    count.store(n + 1, Ordering::Release);
}
