//! `blackbox watch`: a collector on the directory an application writes its
//! rings into. It ships each dead writer's last window once, ships the
//! window of a live writer that asks for a snapshot, and removes old
//! shipped rings.
//!
//! # What it does each scan (every `--interval`)
//!
//! 1. Lists the directory (`scan.rs`: no symlinks, no special files, no
//!    foreign owners, nothing larger than `--max-ring-size`; a ring is known
//!    by its header, whatever its name).
//! 2. A ring whose lock no process holds has a dead writer (the kernel lock
//!    of `shm-layout.md` section 8, which works across PID namespaces: the
//!    collector never looks at pids). Dead rings not yet shipped are
//!    shipped, one at a time: claim, ship, mark (`state.rs`).
//! 3. A live ring whose `SNAPSHOT_TRIGGER` moved since the last snapshot
//!    acted on (shm-layout.md 8.4) has its current window shipped with the
//!    request's reason, at most once per `--snapshot-interval` per ring;
//!    requests in between fold into the next shipment, they are not lost.
//! 4. Retention: while more than `--keep` dead rings (or more than
//!    `--keep-bytes` of them) remain, the oldest *shipped* dead ring (by its
//!    writer's start time) is removed. Live rings and unshipped rings are
//!    never removed.
//!
//! # Delivery guarantee
//!
//! Per ring, a death shipment is made by one collector at a time (an
//! exclusive `flock` claim in the state directory) and marked durably
//! before the claim is released, so neither a second run nor a second
//! collector on the same state directory ships it again. What a crash can
//! do: a collector killed after the destination received the window but
//! before the marker reached the disk ships it again when it restarts.
//! So the promise is **at-least-once**, with **exactly-once** whenever the
//! collector is not killed mid-shipment, and every repeat carries the same
//! idempotency key (the ring's nonce and window end, fixed once the writer
//! is dead; the `Idempotency-Key` HTTP header and the `key` of every NDJSON
//! line), so the receiver can drop it. Snapshot shipments carry the key
//! `NONCE-snapshot-TRIGGER`, the same for a repeat of the same request.
//!
//! A collector that starts with an empty state directory ships a live
//! ring's outstanding snapshot request once (the request was made and no
//! collector acted on it), and every dead ring in the directory.
//!
//! # Shutdown
//!
//! SIGTERM or SIGINT sets a deadline `--shutdown-timeout` away. The
//! shipment in flight may finish until then (and is then marked); then one
//! last scan ships the rings that died meanwhile (a native sidecar is
//! stopped right after the app, whose last ring has just died), dead rings
//! only, no snapshots, within the same deadline. A shipment cut off at the
//! deadline is abandoned unmarked and ships again on the next start. Exit
//! status 0.
//!
//! # Log
//!
//! One line on stderr per shipment, failure, removal and skipped file:
//!
//! ```text
//! blackbox watch: shipped app-1700000000000-45.ring (program app pid 45 host h) cause="killed: ..." records=1000 bytes=123456 parts=1 key=... to=http://...
//! ```

mod metrics;
mod state;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch as signal_channel;

use crate::ship::{self, ShipOptions};

pub use blackbox_reader::dir::Policy as ScanPolicy;
pub use metrics::{parse_metrics_addr, Counters};

use blackbox_reader::dir::{Found, Retention, Scanner};
use blackbox_reader::State;
use state::{SnapshotMark, StateDir};

/// The name of the default state directory inside the watched directory.
pub const STATE_DIR_NAME: &str = ".blackbox-watch";

/// How a collector ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Shipments of the last pass that failed (`--once`); 0 after a
    /// shutdown by signal.
    pub failed: usize,
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory of the rings.
    pub dir: PathBuf,
    /// How to ship (destination, format, retries); `reason` and `key` are
    /// set per shipment.
    pub ship: ShipOptions,
    /// Scan once, ship what is dead, exit.
    pub once: bool,
    /// Time between scans.
    pub interval: Duration,
    /// Least time between two snapshot shipments of one ring.
    pub snapshot_interval: Duration,
    /// Keep at most this many dead rings (only shipped ones are removed).
    pub keep: Option<usize>,
    /// Keep at most this many bytes of dead rings.
    pub keep_bytes: Option<u64>,
    /// Do not ship rings whose writer exited cleanly (mark them handled).
    pub skip_exited: bool,
    /// Serve the counters here (a loopback address).
    pub metrics: Option<std::net::SocketAddr>,
    /// Where claims and markers live (default `DIR/.blackbox-watch`).
    pub state_dir: Option<PathBuf>,
    /// How long the shipment in flight may take after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Which files may be read.
    pub policy: ScanPolicy,
}

/// What one ring's handling came to, for the pass.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do, or done.
    Done,
    /// The shipment failed.
    Failed,
    /// The shutdown bound passed during the shipment (it was abandoned).
    Stopped,
}

/// What the collector remembers of a ring between scans (in memory; the
/// durable part is in the state directory).
#[derive(Debug, Default)]
struct Memo {
    /// Its death shipment is marked.
    shipped: bool,
    /// Snapshot mark last read or written.
    snapshot: Option<SnapshotMark>,
    /// The snapshot mark (its time) under which a folded request was
    /// logged: one line per ring per interval.
    fold_logged: Option<u64>,
    /// Failed shipments in a row, and when to try again.
    failures: u32,
    next_try: Option<Instant>,
}

struct Watcher {
    opts: Options,
    scanner: Scanner,
    state: StateDir,
    counters: Arc<Counters>,
    memo: HashMap<String, Memo>,
    shutdown: Shutdown,
}

/// The stop request (SIGTERM or SIGINT) and the bound it sets.
struct Shutdown {
    requested: signal_channel::Receiver<bool>,
    grace: Duration,
    /// Set when the request is first seen: request + `grace`.
    deadline: Option<Instant>,
}

impl Shutdown {
    /// Whether a stop was requested (and fixes the deadline when first seen).
    fn requested(&mut self) -> bool {
        if *self.requested.borrow() {
            self.deadline
                .get_or_insert_with(|| Instant::now() + self.grace);
            true
        } else {
            false
        }
    }

    /// Whether the shutdown bound has passed.
    fn over(&mut self) -> bool {
        self.requested() && self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Runs `fut` to the end, or, once a stop is requested, until the
    /// deadline at most (`None`: abandoned there).
    async fn bounded<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        if !self.requested() {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                _ = self.requested.wait_for(|s| *s) => {}
            }
            self.requested();
        }
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        tokio::time::timeout_at(deadline.into(), fut).await.ok()
    }
}

/// Runs the collector until `--once` is done or a signal stops it; returns
/// the exit status (0, or 2 when `--once` left a dead ring unshipped).
///
/// # Errors
///
/// One line: the directory, state directory, metrics address or signal
/// handlers could not be set up.
pub fn run(opts: Options) -> Result<Finished, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let finished = runtime.block_on(run_async(opts));
    // A shipment given up at the shutdown bound may still be reading its
    // ring on the blocking pool: do not wait for it.
    runtime.shutdown_background();
    finished
}

async fn run_async(opts: Options) -> Result<Finished, String> {
    let meta = std::fs::metadata(&opts.dir)
        .map_err(|e| format!("cannot watch {}: {e}", opts.dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "cannot watch {}: not a directory",
            opts.dir.display()
        ));
    }
    let state_path = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| opts.dir.join(STATE_DIR_NAME));
    let state = StateDir::open(&state_path)?;
    let counters = Arc::new(Counters::default());
    if let Some(addr) = opts.metrics {
        metrics::serve(addr, counters.clone()).await?;
    }
    let (stop_tx, requested) = signal_channel::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let grace = opts.shutdown_timeout;
    for (kind, name) in [
        (tokio::signal::unix::SignalKind::terminate(), "SIGTERM"),
        (tokio::signal::unix::SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut sig =
            tokio::signal::unix::signal(kind).map_err(|e| format!("cannot handle {name}: {e}"))?;
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            if sig.recv().await.is_some() {
                eprintln!(
                    "blackbox watch: {name}: finishing the shipment in flight (up to {}), then exiting",
                    humantime::format_duration(grace)
                );
                let _ = tx.send(true);
            }
        });
    }
    let mut watcher = Watcher {
        scanner: Scanner::new(opts.dir.clone(), opts.policy.clone()),
        state,
        counters,
        memo: HashMap::new(),
        shutdown: Shutdown {
            requested,
            grace,
            deadline: None,
        },
        opts,
    };
    let once = watcher.opts.once;
    let mut told_scan_error = false;
    loop {
        // A pass that starts after the stop request is the last one: it
        // ships the rings that died meanwhile (the app's own last ring,
        // when the sidecar is stopped right after it), within the bound.
        let last = watcher.shutdown.requested();
        let failed = match watcher.pass().await {
            Ok(PassEnd::Stopped) => break,
            Ok(PassEnd::Completed { failed }) => {
                told_scan_error = false;
                failed
            }
            Err(e) if once => return Err(e),
            Err(e) => {
                if !told_scan_error {
                    eprintln!("blackbox watch: {e} (trying again every scan)");
                    told_scan_error = true;
                }
                0
            }
        };
        if once {
            return Ok(Finished { failed });
        }
        if last {
            break;
        }
        if watcher.shutdown.requested() {
            continue;
        }
        let interval = watcher.opts.interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = watcher.shutdown.requested.wait_for(|s| *s) => {}
        }
    }
    drop(stop_tx);
    Ok(Finished { failed: 0 })
}

/// What a shipment is for.
#[derive(Clone, Copy)]
enum Shipment<'a> {
    /// A dead writer's window, once.
    Death,
    /// A live writer's window, asked for by its snapshot trigger.
    Snapshot {
        reason: &'a str,
        key: &'a str,
        trigger: u64,
    },
}

/// How a pass ended.
enum PassEnd {
    /// Every ring was looked at; `failed` shipments failed.
    Completed { failed: usize },
    /// A signal asked to stop.
    Stopped,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Quotes a log value (one line, `"` and `\` escaped).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Watcher {
    /// One scan: ship the dead, snapshot the live that ask, apply retention.
    async fn pass(&mut self) -> Result<PassEnd, String> {
        let scan = self.scanner.scan().map_err(|e| e.to_string())?;
        for skip in scan.skipped.iter().filter(|s| s.new) {
            eprintln!(
                "blackbox watch: skipping {}: {}",
                skip.path.display(),
                skip.detail
            );
        }
        let found = scan.rings;
        let c = &self.counters;
        Counters::bump(&c.scans);
        let live = found.iter().filter(|f| f.live).count() as u64;
        c.rings_live
            .store(live, std::sync::atomic::Ordering::Relaxed);
        c.rings_dead.store(
            found.len() as u64 - live,
            std::sync::atomic::Ordering::Relaxed,
        );
        c.skipped_files.store(
            self.scanner.skipped_count(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut failed = 0;
        for f in &found {
            if self.shutdown.requested() {
                if self.shutdown.over() {
                    return Ok(PassEnd::Stopped);
                }
                // Shutting down: dead rings only, no snapshots.
                if f.live {
                    continue;
                }
            }
            let outcome = if f.live {
                self.snapshot(f).await
            } else {
                self.death(f).await
            };
            match outcome {
                Outcome::Done => {}
                Outcome::Failed => failed += 1,
                Outcome::Stopped => return Ok(PassEnd::Stopped),
            }
        }
        self.retention(&found);
        // Forget what is no longer in the directory.
        let ids: std::collections::HashSet<String> = found.iter().map(Found::id).collect();
        self.memo.retain(|id, _| ids.contains(id));
        Ok(PassEnd::Completed { failed })
    }

    /// Whether a ring that failed before may be tried again now.
    fn may_try(&self, id: &str) -> bool {
        match self.memo.get(id).and_then(|m| m.next_try) {
            Some(t) => self.opts.once || Instant::now() >= t,
            None => true,
        }
    }

    /// Counts a failure and schedules the next try (doubling from the scan
    /// interval up to a minute).
    fn failure(&mut self, id: &str, f: &Found, what: &str, err: &ship::ShipError) {
        let c = &self.counters;
        Counters::bump(&c.failed);
        c.retried
            .fetch_add(u64::from(err.retries), std::sync::atomic::Ordering::Relaxed);
        let memo = self.memo.entry(id.to_string()).or_default();
        memo.failures += 1;
        let delay = self
            .opts
            .interval
            .max(Duration::from_millis(250))
            .saturating_mul(1 << memo.failures.min(8))
            .min(Duration::from_secs(60));
        memo.next_try = Some(Instant::now() + delay);
        eprintln!(
            "blackbox watch: failed to ship {what} of {}: {err} (retries {}; trying again in {})",
            f.name,
            err.retries,
            humantime::format_duration(delay)
        );
    }

    /// A retry of a ring that failed before counts as one retry.
    /// Claims ring `id` for shipping; `Err` is the pass's outcome when it
    /// cannot: `Done` if another collector holds it, `Failed` on an error.
    fn claim(&self, id: &str, f: &Found) -> Result<state::Claim, Outcome> {
        match self.state.claim(id) {
            Ok(Some(claim)) => Ok(claim),
            // Another collector is shipping it.
            Ok(None) => Err(Outcome::Done),
            Err(e) => {
                eprintln!("blackbox watch: cannot claim {}: {e}", f.name);
                Err(Outcome::Failed)
            }
        }
    }

    fn note_attempt(&mut self, id: &str) {
        if self.memo.get(id).is_some_and(|m| m.failures > 0) {
            Counters::bump(&self.counters.retried);
        }
    }

    /// Ships a dead ring's window unless it was shipped.
    async fn death(&mut self, f: &Found) -> Outcome {
        let id = f.id();
        if self.memo.get(&id).is_some_and(|m| m.shipped) {
            return Outcome::Done;
        }
        if self.state.is_shipped(&id) {
            self.memo.entry(id).or_default().shipped = true;
            return Outcome::Done;
        }
        if !self.may_try(&id) {
            return Outcome::Done;
        }
        let claim = match self.claim(&id, f) {
            Ok(claim) => claim,
            Err(outcome) => return outcome,
        };
        // Under the claim: whoever held it before has marked it, or the
        // ring was removed meanwhile.
        if self.state.is_shipped(&id) {
            self.memo.entry(id).or_default().shipped = true;
            return Outcome::Done;
        }
        if !f.still_linked() {
            return Outcome::Done;
        }
        if self.opts.skip_exited && f.ring.state().is_ok_and(|s| s == State::Exited) {
            self.skip_exited(f, &id);
            return Outcome::Done;
        }
        let outcome = self.ship_window(f, &id, Shipment::Death).await;
        drop(claim);
        outcome
    }

    /// `--skip-exited`: marks a ring whose writer exited cleanly as
    /// handled, without shipping it (retention may then remove it).
    fn skip_exited(&mut self, f: &Found, id: &str) {
        let marker = serde_json::json!({
            "ring": f.name,
            "skipped": "exited cleanly (--skip-exited)",
            "skipped_unix_ms": unix_ms(),
        });
        if let Err(e) = self.state.mark_shipped(id, &marker) {
            eprintln!(
                "blackbox watch: cannot record {} as skipped in the state directory: {e}",
                f.name
            );
        }
        self.memo.entry(id.to_string()).or_default().shipped = true;
        let h = f.ring.header();
        eprintln!(
            "blackbox watch: not shipping {} ({} pid {}): its writer exited cleanly (--skip-exited)",
            f.name, h.program, h.pid
        );
    }

    /// Logs and counts a successful shipment.
    fn shipped(&self, f: &Found, s: &ship::Shipped, reason: Option<&str>) {
        let c = &self.counters;
        Counters::bump(&c.shipped);
        c.retried
            .fetch_add(u64::from(s.retries), std::sync::atomic::Ordering::Relaxed);
        let what = match reason {
            Some(r) => {
                Counters::bump(&c.snapshots);
                format!("snapshot of {} reason={}", f.name, quoted(r))
            }
            None => f.name.clone(),
        };
        eprintln!(
            "blackbox watch: shipped {what} ({}) cause={} records={} bytes={} parts={} key={} to={}",
            s.writer,
            quoted(&s.cause),
            s.records,
            s.bytes,
            s.parts,
            s.key,
            s.target
        );
        if let Some(target) = &s.attachment {
            eprintln!(
                "blackbox watch: attached trace-event of {} key={} to={target}",
                f.name, s.key
            );
        }
    }

    /// Ships a live ring's window when it asked for a snapshot since the
    /// last one acted on, at most once per `--snapshot-interval`.
    async fn snapshot(&mut self, f: &Found) -> Outcome {
        let Ok(header) = f.ring.reread_header() else {
            return Outcome::Done;
        };
        let trigger = header.snapshot_trigger;
        if trigger == 0 {
            return Outcome::Done;
        }
        let id = f.id();
        let mark = match self.memo.get(&id).and_then(|m| m.snapshot) {
            Some(mark) => mark,
            None => {
                let mark = self.state.snapshot_mark(&id);
                self.memo.entry(id.clone()).or_default().snapshot = Some(mark);
                mark
            }
        };
        if !self.snapshot_due(mark, trigger) {
            self.note_folded(f, &id, mark, trigger);
            return Outcome::Done;
        }
        if !self.may_try(&id) {
            return Outcome::Done;
        }
        let claim = match self.claim(&id, f) {
            Ok(claim) => claim,
            Err(outcome) => return outcome,
        };
        // Under the claim: another collector may have acted meanwhile.
        let mark = self.state.snapshot_mark(&id);
        self.memo.entry(id.clone()).or_default().snapshot = Some(mark);
        if !self.snapshot_due(mark, trigger) {
            return Outcome::Done;
        }
        // The reason is a record of the window: read off the runtime's
        // thread, like the shipment itself.
        let reason = match f.ring.try_clone() {
            Ok(ring) => {
                let header = header.clone();
                tokio::task::spawn_blocking(move || {
                    ring.snapshot()
                        .ok()
                        .and_then(|snap| snap.snapshot_reason(&header))
                })
                .await
                .ok()
                .flatten()
            }
            Err(_) => None,
        }
        .unwrap_or_else(|| "snapshot requested (its record has left the window)".to_string());
        let key = format!("{:016x}-snapshot-{trigger}", header.nonce);
        let outcome = self
            .ship_window(
                f,
                &id,
                Shipment::Snapshot {
                    reason: &reason,
                    key: &key,
                    trigger,
                },
            )
            .await;
        drop(claim);
        outcome
    }

    /// Ships `f`'s window (under its claim, which the caller holds) and
    /// records the outcome: a death's marker or a snapshot's mark on
    /// success, the next try on failure.
    async fn ship_window(&mut self, f: &Found, id: &str, what: Shipment<'_>) -> Outcome {
        self.note_attempt(id);
        let (reason, key) = match what {
            Shipment::Death => (None, None),
            Shipment::Snapshot { reason, key, .. } => (Some(reason), Some(key)),
        };
        let opts = ShipOptions {
            reason: reason.map(str::to_string),
            key: key.map(str::to_string),
            ..self.opts.ship.clone()
        };
        let grace = self.opts.shutdown_timeout;
        let out = self
            .shutdown
            .bounded(ship::ship_ring(&f.ring, &f.path, &opts))
            .await;
        match out {
            Some(Ok(shipped)) => {
                match what {
                    Shipment::Death => {
                        let marker = serde_json::json!({
                            "ring": f.name,
                            "key": shipped.key,
                            "records": shipped.records,
                            "bytes": shipped.bytes,
                            "cause": shipped.cause,
                            "to": shipped.target,
                            "shipped_unix_ms": unix_ms(),
                        });
                        if let Err(e) = self.state.mark_shipped(id, &marker) {
                            eprintln!(
                                "blackbox watch: shipped {} but cannot record it in the state directory: {e} (it will ship again)",
                                f.name
                            );
                        }
                        self.memo.entry(id.to_string()).or_default().shipped = true;
                    }
                    Shipment::Snapshot { key, trigger, .. } => {
                        let mark = SnapshotMark {
                            trigger,
                            shipped_unix_ms: unix_ms(),
                        };
                        if let Err(e) = self.state.mark_snapshot(id, mark, key) {
                            eprintln!(
                                "blackbox watch: shipped a snapshot of {} but cannot record it: {e}",
                                f.name
                            );
                        }
                        self.memo.entry(id.to_string()).or_default().snapshot = Some(mark);
                    }
                }
                self.shipped(f, &shipped, reason);
                let memo = self.memo.entry(id.to_string()).or_default();
                memo.failures = 0;
                memo.next_try = None;
                Outcome::Done
            }
            Some(Err(err)) => {
                let what = match what {
                    Shipment::Death => "the window",
                    Shipment::Snapshot { .. } => "a snapshot",
                };
                self.failure(id, f, what, &err);
                Outcome::Failed
            }
            None => {
                eprintln!(
                    "blackbox watch: gave up shipping {} at the shutdown bound ({}); not marked, it ships again on the next start",
                    f.name,
                    humantime::format_duration(grace)
                );
                Outcome::Stopped
            }
        }
    }

    /// Logs, once per ring and interval, that a snapshot request arrived
    /// within `--snapshot-interval` of the last snapshot and folds into the
    /// next one (it is not lost, and not shipped on its own).
    fn note_folded(&mut self, f: &Found, id: &str, mark: SnapshotMark, trigger: u64) {
        if trigger == mark.trigger || mark.shipped_unix_ms == 0 {
            return;
        }
        let memo = self.memo.entry(id.to_string()).or_default();
        if memo.fold_logged == Some(mark.shipped_unix_ms) {
            return;
        }
        memo.fold_logged = Some(mark.shipped_unix_ms);
        let interval = self.opts.snapshot_interval;
        let since = Duration::from_millis(unix_ms().saturating_sub(mark.shipped_unix_ms));
        let due = interval.saturating_sub(since);
        eprintln!(
            "blackbox watch: snapshot request for {} folded into the next snapshot, due in {} (--snapshot-interval {}; {} request(s) since the last)",
            f.name,
            humantime::format_duration(Duration::from_secs(due.as_secs())),
            humantime::format_duration(interval),
            trigger.saturating_sub(mark.trigger)
        );
    }

    /// Whether a trigger count calls for a snapshot now: it moved since
    /// `mark`, and the last snapshot is at least `--snapshot-interval` old.
    fn snapshot_due(&self, mark: SnapshotMark, trigger: u64) -> bool {
        if trigger == mark.trigger {
            return false;
        }
        let now = unix_ms();
        let interval = self.opts.snapshot_interval.as_millis() as u64;
        // A clock stepped back past the last snapshot does not hold the
        // next one back.
        mark.shipped_unix_ms == 0
            || mark.shipped_unix_ms > now
            || now - mark.shipped_unix_ms >= interval
    }

    /// Removes the oldest shipped dead rings while more than `--keep`
    /// dead rings (or `--keep-bytes` of them) remain: only shipped rings,
    /// each under its claim in the state directory.
    fn retention(&mut self, found: &[Found]) {
        let retention = Retention {
            keep: self.opts.keep,
            keep_bytes: self.opts.keep_bytes,
        };
        let state = &self.state;
        let pruned = retention.prune(found, |f| {
            let id = f.id();
            if !state.is_shipped(&id) {
                return None;
            }
            state.claim(&id).ok().flatten()
        });
        for p in pruned {
            let name = p
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match p.result {
                Ok(()) => {
                    self.state.forget(&p.id);
                    self.memo.remove(&p.id);
                    Counters::bump(&self.counters.removed);
                    eprintln!(
                        "blackbox watch: removed {name} (shipped; retention keeps {})",
                        self.retention_text()
                    );
                }
                Err(e) => eprintln!("blackbox watch: cannot remove {name}: {e}"),
            }
        }
    }

    fn retention_text(&self) -> String {
        match (self.opts.keep, self.opts.keep_bytes) {
            (Some(k), Some(s)) => format!("{k} dead rings and {s} bytes"),
            (Some(k), None) => format!("{k} dead rings"),
            (None, Some(s)) => format!("{s} bytes of dead rings"),
            (None, None) => "everything".to_string(),
        }
    }
}
