//! `blackbox demo --scenario lock-gap`: the Go team's flight-recorder
//! example, as a process that then dies.
//!
//! [`REQUEST_THREADS`] threads (`request-0`, ...) serve requests: each
//! request is a span `request{id, bucket}` in which the thread takes its
//! bucket's lock (a span `bucket_lock{bucket}` while it waits and holds
//! it) and works briefly. A `reporter` thread, every [`REPORT_EVERY`],
//! holds all [`BUCKETS`] locks at once for [`REPORT_HOLD`] inside its own
//! span `report{buckets}`. A request slower than [`SLOW`] logs a WARN
//! `slow request` (field `ms`) and calls `snapshot("slow request")`; the
//! process then waits a moment (so the other threads' stalled requests
//! finish too) and SIGKILLs itself. Its export shows the gap: the request
//! slices stretch while the reporter's slice covers them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use blackbox_recorder::{BlackboxLayer, Recorder};
use tracing_subscriber::prelude::*;

use crate::failure::Failure;

/// Request threads.
pub const REQUEST_THREADS: u64 = 4;
/// Buckets, each behind its own lock.
pub const BUCKETS: usize = 16;
/// How long the reporter holds every lock.
pub const REPORT_HOLD: Duration = Duration::from_millis(100);
/// How often the reporter reports (the first time after this too).
pub const REPORT_EVERY: Duration = Duration::from_millis(150);
/// A request slower than this asks for a snapshot.
pub const SLOW: Duration = Duration::from_millis(50);
/// A request's work while it holds its bucket's lock.
const WORK: Duration = Duration::from_micros(200);
/// The pause between a thread's requests.
const PAUSE: Duration = Duration::from_millis(2);
/// After the slow request: time for the other stalled requests to end.
const GRACE: Duration = Duration::from_millis(30);
/// If no request was slow by then (it always is after the first report),
/// the process dies anyway.
const GIVE_UP: Duration = Duration::from_secs(30);

/// The scenarios of `blackbox demo --scenario`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Request threads take per-bucket locks in spans; a reporter holds all
    /// of them ~100 ms in its own span; the first request slower than 50 ms
    /// asks for a snapshot ("slow request"); then the process SIGKILLs
    /// itself.
    LockGap,
}

/// Runs `scenario` on `rec`; does not return (the process SIGKILLs
/// itself), but for an error before it starts.
pub fn run(scenario: Scenario, rec: &Arc<Recorder>) -> Result<i32, Failure> {
    let Scenario::LockGap = scenario;
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(BlackboxLayer::new(Arc::clone(rec)).with_thread_names(true)),
    );
    let buckets: Arc<Vec<Mutex<u64>>> = Arc::new((0..BUCKETS).map(|_| Mutex::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let (slow_tx, slow_rx) = mpsc::channel::<()>();
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        let dispatch = dispatch.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || tracing::dispatcher::with_default(&dispatch, f))
            .map_err(|e| Failure::error(format!("cannot start a scenario thread: {e}")))
    };
    for t in 0..REQUEST_THREADS {
        let (buckets, stop, next_id, slow_tx, rec) = (
            Arc::clone(&buckets),
            Arc::clone(&stop),
            Arc::clone(&next_id),
            slow_tx.clone(),
            Arc::clone(rec),
        );
        spawn(
            format!("request-{t}"),
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Relaxed: only uniqueness matters.
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let bucket = (id as usize * 7 + t as usize) % BUCKETS;
                    let started = Instant::now();
                    {
                        let request = tracing::info_span!("request", id, bucket);
                        let _request = request.enter();
                        let lock = tracing::debug_span!("bucket_lock", bucket);
                        let _lock = lock.enter();
                        let mut count = buckets[bucket].lock().unwrap_or_else(|e| e.into_inner());
                        *count += 1;
                        std::thread::sleep(WORK);
                    }
                    let took = started.elapsed();
                    if took > SLOW {
                        tracing::warn!(
                            target: "app::requests",
                            id,
                            bucket,
                            ms = took.as_millis() as u64,
                            "slow request"
                        );
                        let _ = rec.snapshot("slow request");
                        let _ = slow_tx.send(());
                    }
                    std::thread::sleep(PAUSE);
                }
            }),
        )?;
    }
    {
        let (buckets, stop) = (Arc::clone(&buckets), Arc::clone(&stop));
        spawn(
            "reporter".to_string(),
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(REPORT_EVERY);
                    let report = tracing::info_span!("report", buckets = BUCKETS as u64);
                    let entered = report.enter();
                    let held: Vec<_> = buckets
                        .iter()
                        .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()))
                        .collect();
                    let total: u64 = held.iter().map(|c| **c).sum();
                    tracing::info!(target: "app::reporter", total, "report");
                    std::thread::sleep(REPORT_HOLD);
                    // The span ends before the locks are let go: a request
                    // that waited for them ends after the report.
                    drop(entered);
                    drop(held);
                }
            }),
        )?;
    }
    drop(slow_tx);
    let _ = slow_rx.recv_timeout(GIVE_UP);
    std::thread::sleep(GRACE);
    // Nothing is closed or flushed: the ring is all that remains.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL cannot be caught")
}
