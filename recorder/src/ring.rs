//! The writer: create a ring file, append records without locks or system
//! calls, keep the liveness lock and the heartbeat, close cleanly.
//!
//! # The append protocol (`shm-layout.md`, "Appending")
//!
//! 1. Reserve: `pos = TAIL.fetch_add(stride)`: the one atomic operation.
//!    The bytes `[pos, pos + stride)` now belong to this append.
//! 2. Copy the record after its COMMIT word (the bytes `[pos + 8, pos + stride)`),
//!    checksum included, as plain stores.
//! 3. If the ring lapped this append meanwhile (`TAIL - pos > capacity`),
//!    give up: note it in the lap log and publish nothing.
//! 4. Publish: store `COMMIT = commit_word(len, pos)` with Release ordering.
//!
//! A writer that dies anywhere before step 4 leaves a record the reader sees
//! as unpublished (torn); it costs that record only, because every other
//! record is found by its own position stamp.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checksum::record_crc;
use crate::event::{
    encode_field, field_is_cut, field_len, truncate_str, Field, Level, Sink, EVENT_FLAG_TRUNCATED,
    MAX_FIELDS, MAX_TARGET,
};
use crate::layout::*;
use crate::mapping::RingMap;
use crate::{lock, sys};

/// Default capacity of the data region: 16 MiB.
pub const DEFAULT_CAPACITY: u64 = 16 << 20;

/// Default heartbeat period: one second.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// The environment variable that names the directory for
/// [`Recorder::builder_from_env`].
pub const ENV_DIR: &str = "BLACKBOX_DIR";

/// Target of the event [`Recorder::snapshot`] appends.
pub const SNAPSHOT_TARGET: &str = "blackbox::snapshot";

/// File name of a ring made by [`Recorder::builder_in_dir`]; `n` > 0 is a
/// suffix for a name already taken.
fn ring_file_name(program: &str, start_unix_ns: u64, pid: u32, n: u32) -> String {
    let program: String = program
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A leading dot would hide the file (and look like a temporary one).
    let program = program.trim_start_matches('.');
    let program = if program.is_empty() { "ring" } else { program };
    let ms = start_unix_ns / 1_000_000;
    match n {
        0 => format!("{program}-{ms}-{pid}.ring"),
        n => format!("{program}-{ms}-{pid}-{n}.ring"),
    }
}

/// Why a ring could not be created.
#[derive(Debug)]
pub struct CreateError {
    path: PathBuf,
    kind: CreateErrorKind,
}

/// What went wrong while creating a ring.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateErrorKind {
    /// The capacity is not a power of two in the allowed range.
    BadCapacity(u64),
    /// The file mode has bits other than read and write permission, or
    /// lets the group or others write (see [`RecorderBuilder::mode`]).
    BadMode(u32),
    /// A live writer holds the lock on the existing file at this path.
    InUse,
    /// The file system could not reserve the ring's pages.
    NoSpace {
        /// Bytes the file needs.
        needed: u64,
        /// The error from `posix_fallocate`.
        source: io::Error,
    },
    /// Another I/O step failed.
    Io {
        /// The step that failed.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl CreateError {
    fn new(path: &Path, kind: CreateErrorKind) -> CreateError {
        CreateError {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &CreateErrorKind {
        &self.kind
    }
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.kind {
            CreateErrorKind::BadCapacity(c) => write!(
                f,
                "cannot create ring {path}: capacity {c} bytes is not a power of two \
                 between 4KiB and 4GiB (try 64KiB, 16MiB or 256MiB)"
            ),
            CreateErrorKind::InUse => write!(
                f,
                "cannot create ring {path}: a live writer holds it (stop that process \
                 or choose another path)"
            ),
            CreateErrorKind::NoSpace { needed, source } => write!(
                f,
                "cannot create ring {path}: the file system cannot reserve {needed} bytes \
                 ({source}; free space or choose a smaller capacity)"
            ),
            CreateErrorKind::BadMode(m) => write!(
                f,
                "cannot create ring {path}: file mode {m:#o} is not allowed (use read and \
                 write bits for the owner and read bits for group and others, e.g. 0o600 \
                 or 0o640: a ring others may write could be truncated under the writer)"
            ),
            CreateErrorKind::Io { step, source } => {
                let hint = match source.raw_os_error() {
                    Some(libc::EROFS) => " (the file system is read-only: choose a writable directory)",
                    Some(libc::EACCES | libc::EPERM) => {
                        " (no permission to create files there: choose another directory or run as its owner)"
                    }
                    Some(libc::ENOENT) => " (the directory does not exist: create it first)",
                    Some(libc::ENOSPC | libc::EDQUOT) => {
                        " (the file system is full: free space or choose another directory)"
                    }
                    _ => "",
                };
                write!(f, "cannot create ring {path}: {step}: {source}{hint}")
            }
        }
    }
}

impl std::error::Error for CreateError {}

/// Why one append did not publish its record. Both cases are counted in the
/// ring's header, so the reader reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The record is larger than the ring accepts.
    TooLarge {
        /// The record's length in bytes.
        len: usize,
        /// The largest length this ring accepts.
        max: usize,
    },
    /// Other appends wrapped the whole ring while this one was copying; its
    /// bytes may already belong to newer records, so it was not published.
    Lapped,
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::TooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds this ring's limit of {max}")
            }
            AppendError::Lapped => write!(f, "the ring wrapped over this record while it was written (ring too small for the write rate)"),
        }
    }
}

impl std::error::Error for AppendError {}

/// Where a record went: its sequence number, the record's absolute position
/// in the ring divided by 8.
pub type Seq = u64;

/// Settings for a new ring; see [`Recorder::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RecorderBuilder {
    path: PathBuf,
    capacity: u64,
    program: Option<String>,
    app_version: String,
    heartbeat: Option<Duration>,
    mode: u32,
    msync: Option<Duration>,
    termination_log: Option<PathBuf>,
    /// `path` is a directory: name the ring in it (program, start, pid).
    in_dir: bool,
    snapshot_level: Option<Level>,
}

impl RecorderBuilder {
    /// Events at `level` or more severe also ask for a snapshot: a
    /// collector (`blackbox watch`) ships the live ring's window, as
    /// [`Recorder::snapshot`] asks, with the event as the reason. `None`
    /// (the default) turns it off. The request costs two more stores on
    /// such events, no system call; the collector rate-limits shipments.
    pub fn snapshot_level(mut self, level: Option<Level>) -> Self {
        self.snapshot_level = level;
        self
    }

    /// Also write the one-line cause of death to this file when the
    /// process panics or dies of a fatal signal, once the crash handlers are
    /// installed ([`Recorder::install_crash_handlers`]); for example
    /// `/dev/termination-log`, so `kubectl describe pod` shows why the
    /// container died. The file is opened (and emptied) when the ring is
    /// created, so the crash path only calls `write(2)`. Default: none.
    pub fn termination_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.termination_log = Some(path.into());
        self
    }

    /// Size of the data region in bytes: a power of two from 4 KiB to 4 GiB.
    /// Default [`DEFAULT_CAPACITY`] (16 MiB).
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Program name stored in the header. Default: the file name of `argv[0]`.
    pub fn program(mut self, name: impl Into<String>) -> Self {
        self.program = Some(name.into());
        self
    }

    /// Application version or build id stored in the header. Default: empty.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = version.into();
        self
    }

    /// Heartbeat period, or `None` for no heartbeat thread. Default
    /// [`DEFAULT_HEARTBEAT`] (one second). The heartbeat runs on its own
    /// thread, off the append path.
    pub fn heartbeat(mut self, period: Option<Duration>) -> Self {
        self.heartbeat = period;
        self
    }

    /// Permission bits of the ring file. Default `0o600` (owner only).
    ///
    /// `0o640` lets a collector running under the file's group read it:
    /// give the ring that group by creating it in a directory with the
    /// set-group-ID bit (`chmod g+s`), whose group new files inherit. The
    /// mode is set exactly, whatever the process's umask. Only read and
    /// write bits for the owner and read bits for group and others are
    /// accepted ([`CreateErrorKind::BadMode`] otherwise): a process that can
    /// write the file can also truncate it, and a truncated ring kills its
    /// writer with SIGBUS.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = std::env::temp_dir().join(format!("mode-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let rec = recorder::Recorder::builder(dir.join("app.ring"))
    ///     .capacity(64 << 10)
    ///     .mode(0o640)
    ///     .create()
    ///     .unwrap();
    /// let mode = std::fs::metadata(rec.path()).unwrap().permissions().mode();
    /// assert_eq!(mode & 0o777, 0o640);
    /// # drop(rec);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Writes the ring back to its file every `period` (`msync(MS_SYNC)` of
    /// the whole mapping, on the heartbeat thread), or never with `None`.
    /// Default `None`.
    ///
    /// A ring survives the death of its process without this: its pages
    /// are in the kernel's page cache. Only a crash of the kernel or a power
    /// loss loses what was not written back yet, and the kernel writes
    /// dirty pages back on its own schedule (Linux: after about 30 s,
    /// `vm.dirty_expire_centisecs`). With a period, a disk-backed ring
    /// loses at most the records of the last period (plus the time the
    /// write takes) to a power loss; on tmpfs (`/dev/shm`, a memory-backed
    /// `emptyDir`) there is no disk and it does nothing useful.
    ///
    /// The trade-off: every period the whole dirty part of the ring is
    /// written to disk (up to the capacity, a lap of records, each time),
    /// and after the write the kernel write-protects those pages again, so
    /// the next append to each page takes a page fault (a few µs), which on
    /// file systems with stable pages can wait for that page's write to
    /// finish. The append path itself makes no system call; the cost shows
    /// as rare, slower appends and as disk bandwidth. Choose a period of
    /// seconds, not milliseconds. A clean close is not synced: the
    /// records of the last period and the `exited` state word reach the
    /// disk when the kernel writes them back.
    pub fn msync(mut self, period: Option<Duration>) -> Self {
        self.msync = period;
        self
    }

    /// Creates the ring file and starts recording.
    ///
    /// The file is built under a temporary name in the same directory and
    /// renamed into place, so a reader never sees a half-made header. An
    /// existing file at the path is replaced, unless a live writer holds it.
    ///
    /// # Errors
    ///
    /// A bad capacity or mode, a path held by a live writer, a file system
    /// that cannot reserve the pages (full disk or tmpfs: the error comes
    /// now, not as SIGBUS later), a read-only file system or directory, or
    /// any other I/O failure.
    pub fn create(self) -> Result<Recorder, CreateError> {
        Recorder::create_with(self)
    }
}

pub(crate) struct Shared {
    pub(crate) map: RingMap,
    /// CRC-32C of the file's nonce: the start of every record checksum.
    crc_seed: u32,
    max_record_len: usize,
    /// Where the crash handlers also write the cause, opened in advance.
    pub(crate) termination_log: Option<File>,
    /// Level code at and above which an event asks for a snapshot;
    /// `u8::MAX`: never.
    snapshot_level: u8,
}

impl Shared {
    /// Appends an event: level, target, message and typed fields.
    ///
    /// No lock, no system call (the clock is read through the vDSO), no
    /// allocation. Parts too long for the ring are cut to fit, and the event
    /// is flagged as truncated; it is never refused for its size.
    ///
    /// # Errors
    ///
    /// [`AppendError::Lapped`] if the ring wrapped over the record while it
    /// was being written.
    pub(crate) fn log(
        &self,
        level: Level,
        target: &str,
        message: &str,
        fields: &[Field<'_>],
    ) -> Result<Seq, AppendError> {
        let event = EventPayload::fit(self.max_record_len, level, target, message, fields);
        let seq = self.publish(KIND_EVENT, &event)?;
        if level.code() >= self.snapshot_level {
            self.request_snapshot(seq);
        }
        Ok(seq)
    }

    /// Asks a collector for a snapshot whose reason is the record `seq`
    /// (shm-layout.md, 8.4).
    pub(crate) fn request_snapshot(&self, seq: Seq) {
        let map = &self.map;
        // Relaxed: ordered before the reader's view by the Release below.
        map.header_u64(H_SNAPSHOT_POS)
            .store((seq << 3) + 1, Ordering::Relaxed);
        // Release: a collector that reads the new count also reads the
        // reason's record (published before) and SNAPSHOT_POS.
        map.header_u64(H_SNAPSHOT_TRIGGER)
            .fetch_add(1, Ordering::Release);
    }

    /// Appends opaque bytes as a record of kind `KIND_RAW`.
    ///
    /// # Errors
    ///
    /// [`AppendError::TooLarge`] if `payload` does not fit (see
    /// [`Recorder::max_record_len`]); [`AppendError::Lapped`] as for
    /// [`Recorder::log`]. Both are counted in the ring.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<Seq, AppendError> {
        self.append_payload(KIND_RAW, &RawPayload(payload))
    }

    /// Appends a record of `kind` whose bytes `payload` writes; one that
    /// does not fit is refused and counted, as by [`Shared::append`].
    ///
    /// # Errors
    ///
    /// As [`Recorder::append`].
    pub(crate) fn append_payload(
        &self,
        kind: u16,
        payload: &impl Payload,
    ) -> Result<Seq, AppendError> {
        let len = RECORD_HEADER_LEN + payload.len();
        if len > self.max_record_len {
            self.map
                .header_u64(H_OVERSIZE_DROPS)
                .fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::TooLarge {
                len,
                max: self.max_record_len,
            });
        }
        self.publish(kind, payload)
    }

    /// Reserves, copies and publishes one record.
    #[inline]
    fn publish(&self, kind: u16, payload: &impl Payload) -> Result<Seq, AppendError> {
        let len = RECORD_HEADER_LEN + payload.len();
        // The clock is read before the reservation: its ~25 ns then overlap
        // the draining of the previous append's stores, which the locked
        // add of `reserve` must wait for.
        let ts = sys::realtime_ns();
        let pos = self.reserve(len);
        self.fill(pos, kind, len, ts, payload);
        self.commit(pos, len)
    }

    #[inline]
    fn reserve(&self, len: usize) -> u64 {
        debug_assert!(len <= self.max_record_len);
        // Relaxed: the reservation only needs the atomicity of the add (no
        // two appends get overlapping bytes). What the reader may see is
        // ordered by the Release store of COMMIT in `commit`.
        self.map
            .header_u64(H_TAIL)
            .fetch_add(stride(len) as u64, Ordering::Relaxed)
    }

    /// Writes bytes `[8, stride)` of the record at `pos`: everything but
    /// its COMMIT word.
    #[inline]
    fn fill(&self, pos: u64, kind: u16, len: usize, ts: u64, payload: &impl Payload) {
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[R_KIND..R_KIND + 2].copy_from_slice(&kind.to_le_bytes());
        head[R_POS..R_POS + 8].copy_from_slice(&pos.to_le_bytes());
        head[R_TS..R_TS + 8].copy_from_slice(&ts.to_le_bytes());
        let stride = stride(len);
        let map = &self.map;
        if stride <= INLINE_MAX {
            // Common case: build the whole record on the stack, checksum
            // it in one pass of 8-byte words, copy it into the ring once.
            let mut rec = InlineRecord {
                buf: [0; INLINE_MAX],
                used: 0,
            };
            rec.put(&head);
            payload.write(&mut rec);
            debug_assert_eq!(rec.used, len, "payload length differs from the reservation");
            // Copy first, checksum second: the two are independent, so the
            // CPU overlaps the copy with the checksum's dependency chain.
            let body = &rec.buf[R_CRC_START..stride];
            map.write_data(pos + R_CRC_START as u64, body);
            let crc = record_crc(self.crc_seed, len as u32, body);
            map.write_data(pos + R_CRC as u64, &crc.to_le_bytes());
        } else {
            // Large record: stream it through a small buffer, checksumming
            // chunk by chunk (same checksum, computed incrementally).
            let mut sink = RecordSink::new(
                map,
                pos + R_CRC_START as u64,
                crc_start(self.crc_seed, len as u32),
            );
            sink.put(&head[R_CRC_START..]);
            payload.write(&mut sink);
            debug_assert_eq!(sink.written() as usize, len - R_CRC_START);
            sink.put(&[0u8; RECORD_ALIGN][..stride - len]);
            let crc = sink.finish();
            map.write_data(pos + R_CRC as u64, &crc.to_le_bytes());
        }
    }

    #[inline]
    fn commit(&self, pos: u64, len: usize) -> Result<Seq, AppendError> {
        let map = &self.map;
        // Relaxed: a hint, not a guarantee. If a later reservation already
        // covers our bytes' next lap, our copy may have mixed into newer
        // records; publishing would then also overwrite a newer COMMIT.
        let tail = map.header_u64(H_TAIL).load(Ordering::Relaxed);
        if tail.wrapping_sub(pos) > map.capacity() {
            self.note_lapped(pos, stride(len) as u64);
            return Err(AppendError::Lapped);
        }
        // Release: every byte written above is ordered before this word.
        // A reader copies the ring with pread, in position order, so COMMIT
        // is read before the body: on x86 (TSO) a copy that holds this word
        // holds the whole record; on weakly ordered CPUs a torn copy fails
        // the checksum and is read again (shm-layout.md, 7.4).
        map.commit_word(pos)
            .store(commit_word(len as u32, pos), Ordering::Release);
        // Look again: a writer preempted between the check above and the
        // store has just written its COMMIT word into a newer record's
        // bytes. It cannot be undone; the lap log lets the reader report
        // that damage as overwritten by a lapped writer instead of corrupt.
        // (Relaxed, as above: a store still in flight when this load runs
        // leaves a window of nanoseconds, see shm-layout.md, known limits.)
        let tail = map.header_u64(H_TAIL).load(Ordering::Relaxed);
        if tail.wrapping_sub(pos) > map.capacity() {
            self.note_lapped(pos, stride(len) as u64);
        }
        Ok(pos >> 3)
    }

    #[cold]
    fn note_lapped(&self, pos: u64, stride: u64) {
        let map = &self.map;
        // Relaxed throughout: a diagnostic the reader uses to explain
        // damaged records; it needs no ordering with the data.
        let k = map
            .header_u64(H_LAPPED_WRITES)
            .fetch_add(1, Ordering::Relaxed);
        let entry = H_LAP_LOG + (k as usize % LAP_LOG_ENTRIES) * 16;
        map.header_u64(entry).store(pos, Ordering::Relaxed);
        map.header_u64(entry + 8).store(stride, Ordering::Relaxed);
    }

    /// Test hook: reserves and writes an event like [`Recorder::log`] but
    /// never publishes it, as a writer killed between reserve and publish
    /// would leave it. Returns the sequence number it would have had.
    pub(crate) fn log_unpublished_for_test(&self, message: &str) -> Seq {
        let event = EventPayload::fit(self.max_record_len, Level::Info, "", message, &[]);
        let len = RECORD_HEADER_LEN + event.len();
        let pos = self.reserve(len);
        self.fill(pos, KIND_EVENT, len, sys::realtime_ns(), &event);
        pos >> 3
    }
}

struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The writer side of a ring file.
///
/// `Recorder` is `Send + Sync`: share it by reference (or in an `Arc`)
/// between threads; every method takes `&self`. Dropping it closes the ring
/// cleanly ([`Recorder::close`]), except while the thread is panicking.
///
/// # Examples
///
/// ```
/// use recorder::{Field, Level, Recorder};
/// let dir = std::env::temp_dir().join(format!("doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let rec = Recorder::builder(dir.join("app.ring")).capacity(64 << 10).create().unwrap();
/// rec.log(Level::Info, "app", "started", &[Field::new("port", 8080u64)]).unwrap();
/// rec.close();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct Recorder {
    shared: Arc<Shared>,
    heartbeat: Option<Heartbeat>,
    path: PathBuf,
    /// Holds the liveness lock; closed last.
    _file: File,
}

impl Recorder {
    /// Settings for a ring at `path`, with the defaults.
    pub fn builder(path: impl Into<PathBuf>) -> RecorderBuilder {
        RecorderBuilder {
            path: path.into(),
            capacity: DEFAULT_CAPACITY,
            program: None,
            app_version: String::new(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            mode: 0o600,
            msync: None,
            termination_log: None,
            in_dir: false,
            snapshot_level: None,
        }
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
    /// [`Recorder::path`] tells the name chosen. Removing old rings is the
    /// collector's job (`blackbox watch` keeps at most K of them).
    pub fn builder_in_dir(dir: impl Into<PathBuf>) -> RecorderBuilder {
        let mut b = Recorder::builder(dir);
        b.in_dir = true;
        b
    }

    /// As [`Recorder::builder_in_dir`], in the directory named by the
    /// environment variable `BLACKBOX_DIR` if it is set and not empty, else
    /// in `default_dir`: so where a service's rings go is deployment
    /// configuration, not code.
    pub fn builder_from_env(default_dir: impl Into<PathBuf>) -> RecorderBuilder {
        match std::env::var_os(ENV_DIR) {
            Some(dir) if !dir.is_empty() => Recorder::builder_in_dir(dir),
            _ => Recorder::builder_in_dir(default_dir),
        }
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

    fn create_with(mut b: RecorderBuilder) -> Result<Recorder, CreateError> {
        let start_unix_ns = sys::realtime_ns();
        // In a directory of rings, the name is chosen here (and again with a
        // suffix if taken, see `place`); `dir` keeps the directory.
        let dir = b.in_dir.then(|| b.path.clone());
        let name_in_dir = |n: u32| {
            let program = b.program.clone().unwrap_or_else(default_program);
            ring_file_name(&program, start_unix_ns, std::process::id(), n)
        };
        if let Some(dir) = &dir {
            b.path = dir.join(name_in_dir(0));
        }
        let path = b.path.as_path();
        let fail = |kind| CreateError::new(path, kind);
        if !b.capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&b.capacity) {
            return Err(fail(CreateErrorKind::BadCapacity(b.capacity)));
        }
        if b.mode & !0o644 != 0 {
            return Err(fail(CreateErrorKind::BadMode(b.mode)));
        }
        if dir.is_none() {
            if let Ok(existing) = File::open(path) {
                if lock::is_locked(&existing).unwrap_or(false) {
                    return Err(fail(CreateErrorKind::InUse));
                }
            }
        }
        let io = |step| move |source| CreateError::new(path, CreateErrorKind::Io { step, source });
        let nonce = sys::random_u64();
        let file_name = path
            .file_name()
            .ok_or_else(|| {
                io("path has no file name")(io::Error::from(io::ErrorKind::InvalidInput))
            })?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(
            ".{file_name}.{}.{:08x}.tmp",
            std::process::id(),
            nonce as u32
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create file"))?;
        // fchmod: the exact mode, whatever the umask took from it.
        let result = match file.set_permissions(fs::Permissions::from_mode(b.mode)) {
            Ok(()) => Recorder::build_file(&b, file, nonce, start_unix_ns),
            Err(e) => Err(CreateErrorKind::Io {
                step: "set file mode",
                source: e,
            }),
        };
        // At an explicit path, replace (the check above made sure no live
        // writer holds the old file). In a directory of rings, never
        // replace: link(2) fails if the name exists, and a second ring of
        // the same program, pid and millisecond takes the next suffix.
        let place = |tmp: &Path| -> io::Result<PathBuf> {
            let Some(dir) = &dir else {
                return fs::rename(tmp, path).map(|()| path.to_path_buf());
            };
            let mut n = 0;
            loop {
                let candidate = dir.join(name_in_dir(n));
                match fs::hard_link(tmp, &candidate) {
                    Ok(()) => return fs::remove_file(tmp).map(|()| candidate),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                    Err(e) => return Err(e),
                }
            }
        };
        match result {
            Ok(mut rec) => match place(&tmp) {
                Ok(placed) => {
                    rec.path = placed;
                    Ok(rec)
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(io("rename into place")(e))
                }
            },
            Err(kind) => {
                let _ = fs::remove_file(&tmp);
                Err(fail(kind))
            }
        }
    }

    /// Locks, sizes, maps and initialises the (still temporary) file.
    fn build_file(
        b: &RecorderBuilder,
        file: File,
        nonce: u64,
        start_unix_ns: u64,
    ) -> Result<Recorder, CreateErrorKind> {
        let io = |step| move |source| CreateErrorKind::Io { step, source };
        if !lock::try_lock_exclusive(&file).map_err(io("lock file"))? {
            return Err(CreateErrorKind::InUse);
        }
        let total = HEADER_LEN as u64 + b.capacity;
        // posix_fallocate reserves every block now: a full file system fails
        // here with ENOSPC instead of raising SIGBUS on some later append.
        nix::fcntl::posix_fallocate(&file, 0, total as libc::off_t).map_err(|e| {
            CreateErrorKind::NoSpace {
                needed: total,
                source: e.into(),
            }
        })?;
        let map = memmap2::MmapOptions::new()
            .len(total as usize)
            .map_raw(&file)
            .map_err(io("map file"))?;
        let map = RingMap::new(map, b.capacity);
        map.touch_pages();

        let program = b.program.clone().unwrap_or_else(default_program);
        write_str(&map, H_PROGRAM, SHORT_STR_LEN, &program);
        write_str(&map, H_APP_VERSION, SHORT_STR_LEN, &b.app_version);
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_str(&map, H_HOSTNAME, SHORT_STR_LEN, &host);
        for (offset, len, var) in [
            (H_INVOCATION_ID, SHORT_STR_LEN, "INVOCATION_ID"),
            (H_POD_UID, SHORT_STR_LEN, "POD_UID"),
            (H_POD_NAMESPACE, SHORT_STR_LEN, "POD_NAMESPACE"),
            (H_CONTAINER_NAME, SHORT_STR_LEN, "CONTAINER_NAME"),
            (H_POD_NAME, LONG_STR_LEN, "POD_NAME"),
        ] {
            if let Ok(value) = std::env::var(var) {
                write_str(&map, offset, len, &value);
            }
        }
        let max_record_len = max_record_len(b.capacity);
        map.write_header_bytes(H_VERSION, &VERSION.to_le_bytes());
        map.write_header_bytes(H_ENDIAN, &ENDIAN_CHECK.to_le_bytes());
        map.write_header_bytes(H_HEADER_LEN, &(HEADER_LEN as u32).to_le_bytes());
        map.write_header_bytes(
            H_RECORD_HEADER_LEN,
            &(RECORD_HEADER_LEN as u32).to_le_bytes(),
        );
        map.write_header_bytes(H_DATA_OFFSET, &(HEADER_LEN as u64).to_le_bytes());
        map.write_header_bytes(H_CAPACITY, &b.capacity.to_le_bytes());
        map.write_header_bytes(H_NONCE, &nonce.to_le_bytes());
        map.write_header_bytes(H_START_UNIX_NS, &start_unix_ns.to_le_bytes());
        map.write_header_bytes(H_PID, &std::process::id().to_le_bytes());
        map.write_header_bytes(H_MAX_RECORD_LEN, &(max_record_len as u32).to_le_bytes());
        map.write_header_bytes(H_BOOT_ID, &boot_id());
        map.write_header_bytes(H_MINOR_VERSION, &MINOR_VERSION.to_le_bytes());
        let period_ms = b
            .heartbeat
            .map_or(0, |p| p.as_millis().clamp(1, u32::MAX as u128) as u32);
        map.header_u32(H_HEARTBEAT_PERIOD_MS)
            .store(period_ms, Ordering::Relaxed);
        map.header_u64(H_HEARTBEAT_UNIX_NS)
            .store(sys::realtime_ns(), Ordering::Relaxed);
        map.header_u32(H_STATE)
            .store(STATE_RUNNING, Ordering::Relaxed);
        // MAGIC last: a file with the magic has a complete header. The
        // rename that follows publishes it; the Release fence keeps the
        // header stores before it for anyone who maps the file early.
        std::sync::atomic::fence(Ordering::Release);
        map.write_header_bytes(H_MAGIC, &MAGIC);

        let termination_log = match &b.termination_log {
            Some(path) => Some(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)
                    .map_err(io("open the termination log"))?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            crc_seed: crc_seed(nonce),
            max_record_len,
            snapshot_level: b.snapshot_level.map_or(u8::MAX, Level::code),
            map,
            termination_log,
        });
        let heartbeat = start_heartbeat(&shared, b.heartbeat, b.msync);
        Ok(Recorder {
            shared,
            heartbeat,
            path: b.path.clone(),
            _file: file,
        })
    }

    /// The ring's shared state, for the crate's other append paths
    /// (typed records).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The path the ring was created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capacity of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.shared.map.capacity()
    }

    /// The largest record (header + payload) this ring accepts.
    pub fn max_record_len(&self) -> usize {
        self.shared.max_record_len
    }

    /// Appends an event: level, target, message and typed fields.
    ///
    /// No lock, no system call (the clock is read through the vDSO), no
    /// allocation. Parts too long for the ring are cut to fit, and the event
    /// is flagged as truncated; it is never refused for its size.
    ///
    /// # Errors
    ///
    /// [`AppendError::Lapped`] if the ring wrapped over the record while it
    /// was being written.
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
    /// [`Recorder::max_record_len`]); [`AppendError::Lapped`] as for
    /// [`Recorder::log`]. Both are counted in the ring.
    #[inline]
    pub fn append(&self, payload: &[u8]) -> Result<Seq, AppendError> {
        self.shared.append(payload)
    }

    /// Asks a collector to ship the window now, as Go's flight recorder is
    /// asked to write out the last seconds after a slow request: appends a
    /// `WARN` event (target `blackbox::snapshot`, `reason` as its message)
    /// and bumps the ring's snapshot trigger. No system call, no lock; a
    /// running `blackbox watch` notices within its poll interval and ships
    /// the window with the reason (at most one shipment per ring per
    /// interval, however often this is called).
    ///
    /// # Errors
    ///
    /// [`AppendError::Lapped`] if the reason's record was lapped; then no
    /// snapshot is requested.
    pub fn snapshot(&self, reason: &str) -> Result<Seq, AppendError> {
        let shared = &self.shared;
        let event = EventPayload::fit(
            shared.max_record_len,
            Level::Warn,
            SNAPSHOT_TARGET,
            reason,
            &[],
        );
        let seq = shared.publish(KIND_EVENT, &event)?;
        shared.request_snapshot(seq);
        Ok(seq)
    }

    /// Test hook: reserves and writes an event like [`Recorder::log`] but
    /// never publishes it, as a writer killed between reserve and publish
    /// would leave it. Returns the sequence number it would have had.
    #[doc(hidden)]
    pub fn log_unpublished_for_test(&self, message: &str) -> Seq {
        self.shared.log_unpublished_for_test(message)
    }

    /// Records the cause of death when the process panics or receives a
    /// fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT); see
    /// [`crate::crash`]. Installing again, or for another ring, points the
    /// handlers at this ring; handlers installed before are chained.
    pub fn install_crash_handlers(&self) {
        crate::crash::install(&self.shared);
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
    /// still work. A crash recorded before is kept.
    pub fn mark_clean_exit(&self) {
        self.mark_exited();
    }

    fn mark_exited(&self) {
        let map = &self.shared.map;
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
}

impl Drop for Recorder {
    fn drop(&mut self) {
        crate::crash::detach(&self.shared);
        if let Some(hb) = self.heartbeat.take() {
            hb.stop.store(true, Ordering::Relaxed);
            hb.thread.thread().unpark();
            let _ = hb.thread.join();
        }
        // A recorder dropped while its thread unwinds from a panic did not
        // exit cleanly: leave the state word as it is.
        if !std::thread::panicking() {
            self.mark_exited();
        }
        // The file (and with it the lock) closes after this, field by field.
    }
}

/// Starts the thread that keeps the heartbeat (every `heartbeat`) and
/// writes the ring back (every `msync`); none if both are `None`. It writes
/// only its own header words and makes the only `msync` calls: the append
/// path never waits for it.
fn start_heartbeat(
    shared: &Arc<Shared>,
    heartbeat: Option<Duration>,
    msync: Option<Duration>,
) -> Option<Heartbeat> {
    if heartbeat.is_none() && msync.is_none() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let shared = Arc::clone(shared);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("blackbox-heartbeat".into())
            .spawn(move || {
                let start = Instant::now();
                let mut next_beat = start;
                let mut next_sync = start + msync.unwrap_or_default();
                // Relaxed: the stop flag is a request; join() orders the rest.
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if let Some(period) = heartbeat.filter(|_| now >= next_beat) {
                        shared
                            .map
                            .header_u64(H_HEARTBEAT_UNIX_NS)
                            .store(sys::realtime_ns(), Ordering::Relaxed);
                        crate::memory::sample(&shared.map);
                        next_beat = now + period;
                    }
                    if let Some(period) = msync.filter(|_| now >= next_sync) {
                        // A failed write-back (EIO) is retried next period;
                        // there is no one to tell on this thread.
                        let _ = shared.map.flush();
                        next_sync = Instant::now() + period;
                    }
                    let wake = match (heartbeat, msync) {
                        (Some(_), Some(_)) => next_beat.min(next_sync),
                        (Some(_), None) => next_beat,
                        _ => next_sync,
                    };
                    std::thread::park_timeout(wake.saturating_duration_since(Instant::now()));
                }
            })
            .expect("spawn heartbeat thread")
    };
    Some(Heartbeat { stop, thread })
}

/// Records up to this stride are built on the stack and copied once.
const INLINE_MAX: usize = 128;

/// A record's payload: its length, and how to write it.
pub(crate) trait Payload {
    fn len(&self) -> usize;
    fn write(&self, sink: &mut impl Sink);
}

struct RawPayload<'a>(&'a [u8]);

impl Payload for RawPayload<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn write(&self, sink: &mut impl Sink) {
        sink.put(self.0);
    }
}

/// An event cut to fit a ring's record limit.
struct EventPayload<'a, 'f> {
    level: Level,
    flags: u16,
    target: &'a str,
    message: &'a str,
    fields: &'a [Field<'f>],
    fields_len: usize,
}

impl<'a, 'f> EventPayload<'a, 'f> {
    /// Fits the event into `max` bytes of record: the target is capped, then
    /// trailing fields are dropped, then the message is cut (at a character
    /// boundary); anything cut sets [`EVENT_FLAG_TRUNCATED`].
    #[inline]
    fn fit(
        max: usize,
        level: Level,
        target: &'a str,
        message: &'a str,
        fields: &'a [Field<'f>],
    ) -> Self {
        let capped_target = truncate_str(target, MAX_TARGET.min(max / 4));
        let given = fields.len();
        let mut fields = &fields[..given.min(MAX_FIELDS)];
        let mut flags = if capped_target.len() < target.len()
            || given > MAX_FIELDS
            || fields.iter().any(field_is_cut)
        {
            EVENT_FLAG_TRUNCATED
        } else {
            0
        };
        let fixed = RECORD_HEADER_LEN + EVENT_FIXED_LEN + capped_target.len();
        let mut fields_len: usize = fields.iter().map(field_len).sum();
        while fixed + fields_len > max {
            // The fixed part alone always fits: max >= 1024 > 44 + max / 4.
            let (last, rest) = fields.split_last().expect("the fixed part fits");
            fields_len -= field_len(last);
            fields = rest;
            flags |= EVENT_FLAG_TRUNCATED;
        }
        let room = (max - fixed - fields_len).min(u16::MAX as usize);
        let cut_message = truncate_str(message, room);
        if cut_message.len() < message.len() {
            flags |= EVENT_FLAG_TRUNCATED;
        }
        EventPayload {
            level,
            flags,
            target: capped_target,
            message: cut_message,
            fields,
            fields_len,
        }
    }
}

impl Payload for EventPayload<'_, '_> {
    fn len(&self) -> usize {
        EVENT_FIXED_LEN + self.target.len() + self.message.len() + self.fields_len
    }

    #[inline]
    fn write(&self, sink: &mut impl Sink) {
        let mut fixed = [0u8; EVENT_FIXED_LEN];
        fixed[E_LEVEL] = self.level.code();
        fixed[E_FIELD_COUNT] = self.fields.len() as u8;
        fixed[E_TARGET_LEN..E_TARGET_LEN + 2]
            .copy_from_slice(&(self.target.len() as u16).to_le_bytes());
        fixed[E_MESSAGE_LEN..E_MESSAGE_LEN + 2]
            .copy_from_slice(&(self.message.len() as u16).to_le_bytes());
        fixed[E_FLAGS..E_FLAGS + 2].copy_from_slice(&self.flags.to_le_bytes());
        fixed[E_THREAD_ID..E_THREAD_ID + 4].copy_from_slice(&sys::thread_id().to_le_bytes());
        sink.put(&fixed);
        sink.put(self.target.as_bytes());
        sink.put(self.message.as_bytes());
        for field in self.fields {
            encode_field(sink, field);
        }
    }
}

/// A whole record (from offset 0) assembled on the stack.
struct InlineRecord {
    buf: [u8; INLINE_MAX],
    used: usize,
}

impl Sink for InlineRecord {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }
}

/// Streams a record's bytes into the ring through a small stack buffer, so
/// the checksum and the copy run over a few large chunks instead of many
/// small pieces, with bounded stack use (safe on a signal stack).
pub(crate) struct RecordSink<'a> {
    map: &'a RingMap,
    /// Absolute position of the next byte to copy into the ring.
    cursor: u64,
    crc: u32,
    written: u64,
    used: usize,
    buf: [u8; SINK_BUF],
}

const SINK_BUF: usize = 256;

impl<'a> RecordSink<'a> {
    fn new(map: &'a RingMap, cursor: u64, crc: u32) -> Self {
        RecordSink {
            map,
            cursor,
            crc,
            written: 0,
            used: 0,
            buf: [0; SINK_BUF],
        }
    }

    fn written(&self) -> u64 {
        self.written + self.used as u64
    }

    fn flush(&mut self) {
        if self.used > 0 {
            let chunk = &self.buf[..self.used];
            self.crc = crc32c::crc32c_append(self.crc, chunk);
            self.map.write_data(self.cursor, chunk);
            self.cursor += self.used as u64;
            self.written += self.used as u64;
            self.used = 0;
        }
    }

    fn finish(mut self) -> u32 {
        self.flush();
        self.crc
    }
}

impl Sink for RecordSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.used + bytes.len() <= SINK_BUF {
            self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.used += bytes.len();
            return;
        }
        self.flush();
        if bytes.len() <= SINK_BUF / 2 {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.used = bytes.len();
        } else {
            self.crc = crc32c::crc32c_append(self.crc, bytes);
            self.map.write_data(self.cursor, bytes);
            self.cursor += bytes.len() as u64;
            self.written += bytes.len() as u64;
        }
    }
}

fn write_str(map: &RingMap, offset: usize, size: usize, value: &str) {
    map.write_header_bytes(offset, truncate_str(value, size).as_bytes());
}

fn default_program() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(text) = fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            id[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    id
}
