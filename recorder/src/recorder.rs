//! The writer's public face: [`Recorder`] and [`RecorderBuilder`], and the
//! state its threads share ([`Shared`]).
//!
//! # The append protocol (`shm-layout.md`, section 7)
//!
//! Each thread appends into a chunk of the ring that it alone owns: it
//! marks the record as being written, copies it, and publishes it with one
//! release store of its COMMIT word. Only when its chunk is full does it
//! seal the chunk and claim another, with two compare-and-swaps on shared
//! words. A chunk is never taken from its owner, so a thread that is
//! preempted or stopped for any time can never write over another thread's
//! records; when no chunk is free the new record is dropped and counted.
//!
//! A writer that dies before publishing leaves a record the reader sees as
//! torn; it costs that record only.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::append::publish;
pub use crate::builder::{RecorderBuilder, DEFAULT_CAPACITY, DEFAULT_HEARTBEAT};
use crate::clock::Clock;
use crate::error::{AppendError, CreateError};
use crate::event::{Field, Level};
use crate::heartbeat::Heartbeat;
use crate::layout::*;
use crate::payload::{EventPayload, Payload, RawPayload};
use crate::shared::Shared;
use crate::sys;

/// The environment variable that names the directory for
/// [`Recorder::builder_from_env`].
pub const ENV_DIR: &str = "BLACKBOX_DIR";

/// The environment variable that sets [`Recorder::builder_from_env`]'s
/// retention ([`RecorderBuilder::keep_dead_rings`]): a number, or `all`.
pub const ENV_KEEP: &str = "BLACKBOX_KEEP";

/// Target of the event [`Recorder::snapshot`] appends.
pub const SNAPSHOT_TARGET: &str = "blackbox::snapshot";

impl Shared {
    /// Appends an event: level, target, message and typed fields, cut to
    /// fit the ring's largest record.
    ///
    /// # Errors
    ///
    /// [`AppendError::Dropped`] if no chunk could be claimed.
    #[inline]
    pub(crate) fn log(
        &self,
        level: Level,
        target: &str,
        message: &str,
        fields: &[Field<'_>],
    ) -> Result<Seq, AppendError> {
        let event = EventPayload::fit(self.max_record_len, level, target, message, fields);
        let at = publish(self, KIND_EVENT, &event)?;
        if level.code() >= self.snapshot_level {
            self.request_snapshot(at.writer, at.seq);
        }
        Ok(at.seq)
    }

    /// Appends an event payload the adapters encoded
    /// ([`crate::event_buf::EventBuf`]), which fits the record limit.
    #[cfg(any(feature = "log", feature = "tracing"))]
    #[inline]
    pub(crate) fn log_encoded(&self, level: Level, payload: &[u8]) -> Result<Seq, AppendError> {
        debug_assert!(RECORD_HEADER_LEN + payload.len() <= self.max_record_len);
        let at = publish(self, KIND_EVENT, &RawPayload(payload))?;
        if level.code() >= self.snapshot_level {
            self.request_snapshot(at.writer, at.seq);
        }
        Ok(at.seq)
    }

    /// Appends a record of `kind` whose payload the tracing layer encoded
    /// (a span record), which fits the record limit.
    #[cfg(feature = "tracing")]
    pub(crate) fn append_encoded(&self, kind: u16, payload: &[u8]) -> Result<Seq, AppendError> {
        debug_assert!(RECORD_HEADER_LEN + payload.len() <= self.max_record_len);
        Ok(publish(self, kind, &RawPayload(payload))?.seq)
    }

    /// Appends an event as a writer of its own, never through the calling
    /// thread's writer: for the fatal-signal handler (`shm-layout.md`, 8.6).
    pub(crate) fn log_alone(
        &self,
        level: Level,
        target: &str,
        message: &str,
        fields: &[Field<'_>],
    ) -> Result<Seq, AppendError> {
        let event = EventPayload::fit(self.max_record_len, level, target, message, fields);
        let len = RECORD_HEADER_LEN + event.len();
        let at = crate::append::append_alone(self, KIND_EVENT, len, self.clock.now(), &event)?;
        Ok(at.seq)
    }

    /// Appends a record of `kind` whose bytes `payload` writes; one that
    /// does not fit is refused and counted.
    ///
    /// # Errors
    ///
    /// [`AppendError::TooLarge`] for a record over the limit,
    /// [`AppendError::Dropped`] if no chunk could be claimed.
    pub(crate) fn append_payload(
        &self,
        kind: u16,
        payload: &impl Payload,
    ) -> Result<Seq, AppendError> {
        let len = RECORD_HEADER_LEN + payload.len();
        if len > self.max_record_len {
            // Relaxed: a counter for the reader.
            self.map
                .header_u64(H_OVERSIZE_DROPS)
                .fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::TooLarge {
                len,
                max: self.max_record_len,
            });
        }
        Ok(publish(self, kind, payload)?.seq)
    }

    /// Marks the ring `exited` (a clean close, `shm-layout.md`, 9).
    pub(crate) fn mark_exited(&self) {
        let map = &self.map;
        map.header_u64(H_CLOSE_UNIX_NS)
            .store(sys::realtime_ns(), Ordering::Relaxed);
        // Release: the reader that sees EXITED (after the lock is gone) sees
        // every record published before. Only RUNNING becomes EXITED, so a
        // crash recorded earlier is never overwritten.
        let _ = map.header_u32(H_STATE).compare_exchange(
            STATE_RUNNING,
            STATE_EXITED,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Test hook: marks a record as being written in this thread's chunk
    /// and leaves it so, as a writer killed mid-append would.
    pub(crate) fn log_unpublished_for_test(&self, message: &str) -> Seq {
        crate::append::mark_only_for_test(self, message)
    }
}

/// A record's sequence number in its writer's run: how many records that
/// writer (one thread) appended to the ring before it (`shm-layout.md`, 7.1).
pub type Seq = u64;

/// The writer side of a ring file.
///
/// `Recorder` is `Send + Sync`: share it by reference (or in an `Arc`)
/// between threads; every method takes `&self`. Dropping it closes the ring
/// cleanly ([`Recorder::close`]), except while the thread is panicking.
///
/// # Examples
///
/// ```
/// use blackbox_recorder::{Field, Level, Recorder};
/// let dir = std::env::temp_dir().join(format!("doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let rec = Recorder::builder(dir.join("app.ring")).capacity(64 << 10).create().unwrap();
/// rec.log(Level::Info, "app", "started", &[Field::new("port", 8080u64)]).unwrap();
/// rec.close();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct Recorder {
    pub(crate) shared: Arc<Shared>,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) path: PathBuf,
    /// Holds the liveness lock; closed last.
    pub(crate) _file: File,
}

impl Recorder {
    /// Settings for a ring at `path`, with the defaults.
    pub fn builder(path: impl Into<PathBuf>) -> RecorderBuilder {
        RecorderBuilder::new(path.into())
    }

    /// Settings for a new ring in the directory `dir`, named
    /// `{program}-{start_unix_ms}-{pid}.ring` (the program name with any
    /// character outside `[A-Za-z0-9._-]` replaced by `_`).
    ///
    /// A ring never replaces an existing file there: a restarted
    /// application (which may get the same pid, as pid 1 of a container
    /// does) leaves its dead predecessor's ring for the collector. A name
    /// already taken (a second ring of the same program and pid within a
    /// millisecond) gets a suffix: `{program}-{start_unix_ms}-{pid}-{n}.ring`.
    /// [`Recorder::path`] tells the name chosen. Once the new ring is in
    /// place, this program's dead rings there beyond the newest three are
    /// removed ([`RecorderBuilder::keep_dead_rings`]).
    ///
    /// The directory is created if it is missing (owner-only, see
    /// [`RecorderBuilder::create`]).
    pub fn builder_in_dir(dir: impl Into<PathBuf>) -> RecorderBuilder {
        let mut b = Recorder::builder(dir);
        b.in_dir = true;
        b
    }

    /// As [`Recorder::builder_in_dir`], in the directory named by the
    /// environment variable `BLACKBOX_DIR` if it is set and not empty, else
    /// in `default_dir`: so where a service's rings go is deployment
    /// configuration, not code.
    ///
    /// So is retention: `BLACKBOX_KEEP=K` keeps this program's newest K
    /// dead rings there, `BLACKBOX_KEEP=all` every one (where a collector,
    /// `blackbox watch --keep`, removes them once shipped); unset, empty or
    /// not a number, the default ([`RecorderBuilder::keep_dead_rings`]).
    pub fn builder_from_env(default_dir: impl Into<PathBuf>) -> RecorderBuilder {
        let mut b = match std::env::var_os(ENV_DIR) {
            Some(dir) if !dir.is_empty() => Recorder::builder_in_dir(dir),
            _ => Recorder::builder_in_dir(default_dir),
        };
        match std::env::var(ENV_KEEP).as_deref().map(str::trim) {
            Ok("all") => b.keep_dead_rings = None,
            Ok(k) => {
                if let Ok(k) = k.parse() {
                    b.keep_dead_rings = Some(k);
                }
            }
            Err(_) => {}
        }
        b
    }

    /// Creates a ring at `path` with `capacity` bytes of data and the other
    /// defaults.
    ///
    /// # Errors
    ///
    /// As [`RecorderBuilder::create`].
    pub fn create(path: impl Into<PathBuf>, capacity: u64) -> Result<Recorder, CreateError> {
        Recorder::builder(path).capacity(capacity).create()
    }

    /// The ring's shared state, for the crate's other append paths
    /// (typed records, the adapters' encoded events).
    #[cfg(any(feature = "log", feature = "tracing", feature = "typed"))]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Size of a chunk in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.shared.map.chunk_size()
    }

    /// The clock of the records' timestamps.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// The path the ring was created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capacity of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.shared.map.chunk_size() as u64 * self.shared.map.chunk_count() as u64
    }

    /// The largest record (header + payload) this ring accepts.
    pub fn max_record_len(&self) -> usize {
        self.shared.max_record_len
    }

    /// Appends an event: level, target, message and typed fields.
    ///
    /// No lock and no allocation; no system call once the thread has
    /// appended to this ring before (the first append of each thread reads
    /// its id and name and gives it an alternate signal stack), and the
    /// clock is the time stamp counter or the vDSO's, which is a system
    /// call only on clocksources without a vDSO path (`shm-layout.md`,
    /// 8.5). Parts too long for the ring are cut to
    /// fit, and the event is flagged as truncated; it is never refused for
    /// its size. Returns the record's `seq` in this thread's run.
    ///
    /// # Errors
    ///
    /// [`AppendError::Dropped`] if no chunk could be claimed (every chunk
    /// is held by a thread that has not finished it); the drop is counted
    /// in the ring.
    #[inline]
    pub fn log(
        &self,
        level: Level,
        target: &str,
        message: &str,
        fields: &[Field<'_>],
    ) -> Result<Seq, AppendError> {
        self.shared.log(level, target, message, fields)
    }

    /// Appends opaque bytes as a record of kind `KIND_RAW`.
    ///
    /// # Errors
    ///
    /// [`AppendError::TooLarge`] if `payload` does not fit (see
    /// [`Recorder::max_record_len`]); [`AppendError::Dropped`] as for
    /// [`Recorder::log`]. Both are counted in the ring.
    #[inline]
    pub fn append(&self, payload: &[u8]) -> Result<Seq, AppendError> {
        self.shared.append_payload(KIND_RAW, &RawPayload(payload))
    }

    /// Asks a collector to ship the window now, as Go's flight recorder is
    /// asked to write out the last seconds after a slow request: appends a
    /// `WARN` event (target `blackbox::snapshot`, `reason` as its message)
    /// and bumps the ring's snapshot trigger. No lock, and no system call
    /// once the thread has appended before (as [`Recorder::log`]); a
    /// running `blackbox watch` notices within its poll interval and ships
    /// the window with the reason (at most one shipment per ring per
    /// interval, however often this is called).
    ///
    /// # Errors
    ///
    /// [`AppendError::Dropped`] if the reason's record could not be
    /// appended; then no snapshot is requested.
    pub fn snapshot(&self, reason: &str) -> Result<Seq, AppendError> {
        let shared = &self.shared;
        let event = EventPayload::fit(
            shared.max_record_len,
            Level::Warn,
            SNAPSHOT_TARGET,
            reason,
            &[],
        );
        let at = publish(shared, KIND_EVENT, &event)?;
        shared.request_snapshot(at.writer, at.seq);
        Ok(at.seq)
    }

    /// Test hook: begins an event like [`Recorder::log`] (marks it as being
    /// written in this thread's chunk) but never publishes it, as a writer
    /// killed mid-append would leave it. Returns the `seq` it would have
    /// had; the thread's next record goes to a new chunk.
    #[doc(hidden)]
    pub fn log_unpublished_for_test(&self, message: &str) -> Seq {
        self.shared.log_unpublished_for_test(message)
    }

    /// How many of the calling thread's appends to this ring were dropped
    /// because no chunk was free (see [`AppendError::Dropped`]). A thread
    /// can stamp it into its records, so that a reader tells a drop from a
    /// loss.
    pub fn dropped_on_this_thread(&self) -> u64 {
        crate::append::dropped_on_this_thread(&self.shared)
    }

    /// Test aid: the claim ticket of the chunk the calling thread owns in
    /// this ring, if any; it changes exactly when the thread claims a chunk.
    #[doc(hidden)]
    pub fn chunk_of_this_thread(&self) -> Option<u64> {
        crate::append::chunk_of_this_thread(&self.shared)
    }

    /// Test aid: how many claim tickets the ring's cursor has handed out
    /// (claims and skips of chunks): a lap of the ring is `capacity /
    /// chunk_size` of them.
    #[doc(hidden)]
    pub fn tickets(&self) -> u64 {
        // Acquire: pairs with the cursor's AcqRel advances; a test that waits
        // for laps to pass sees the claims that made them.
        self.shared
            .map
            .header_u64(H_NEXT_TICKET)
            .load(Ordering::Acquire)
    }

    /// Records the cause of death when the process panics or receives a
    /// fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT); see
    /// [`crate::crash`]. Installing again, or for another ring, points the
    /// handlers at this ring; handlers installed before are chained.
    pub fn install_crash_handlers(&self) {
        crate::crash::install(&self.shared);
    }

    /// Rewrites the ring's module table (the loaded objects, their load
    /// addresses and build ids, which the reader needs to unwind a crash
    /// dump): call it after `dlopen` loads code that may crash.
    /// [`Self::install_crash_handlers`] writes it the first time. Normal
    /// context only (it allocates and takes the loader's lock).
    pub fn refresh_modules(&self) {
        crate::modules::write_table(&self.shared.map);
    }

    /// Closes the ring cleanly: stops the heartbeat, marks the state word
    /// `exited`, and releases the liveness lock. Dropping the `Recorder`
    /// does the same.
    pub fn close(self) {
        drop(self);
    }

    /// Marks the ring `exited` now, without closing it: for a recorder
    /// that is never dropped, such as one shared (in an `Arc`) with a global
    /// `tracing` subscriber or `log` logger. Call it as the last thing
    /// before a clean exit; otherwise the reader would find the state
    /// still `running`, the lock gone, and say `killed`. Appends after it
    /// still work. A crash recorded before is kept. An
    /// [`ExitGuard`](crate::ExitGuard) (which the `tracing` and `log`
    /// adapters' setup returns) calls it when dropped at the end of `main`.
    pub fn mark_clean_exit(&self) {
        self.shared.mark_exited();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        crate::crash::detach(&self.shared);
        if let Some(hb) = self.heartbeat.take() {
            hb.stop();
        }
        // A recorder dropped while its thread unwinds from a panic did not
        // exit cleanly: leave the state word as it is.
        if !std::thread::panicking() {
            self.shared.mark_exited();
        }
        // The file (and with it the lock) closes after this, field by field.
    }
}
