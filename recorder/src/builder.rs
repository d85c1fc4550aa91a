//! The settings of a new ring: [`RecorderBuilder`]. Creating the ring from
//! them is [`crate::create`]'s job.

use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Clock;
use crate::event::Level;

/// Default capacity of the data region: 16 MiB.
pub const DEFAULT_CAPACITY: u64 = 16 << 20;

/// How many of this program's dead rings a directory of rings keeps by
/// default ([`RecorderBuilder::keep_dead_rings`]): three.
pub const DEFAULT_KEEP_DEAD_RINGS: usize = 3;

/// Default heartbeat period: one second.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Settings for a new ring; see [`Recorder::builder`](crate::Recorder::builder).
#[derive(Debug, Clone)]
#[must_use]
pub struct RecorderBuilder {
    pub(crate) path: PathBuf,
    pub(crate) capacity: u64,
    pub(crate) program: Option<String>,
    pub(crate) app_version: String,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) mode: u32,
    pub(crate) msync: Option<Duration>,
    pub(crate) termination_log: Option<PathBuf>,
    /// `path` is a directory: name the ring in it (program, start, pid).
    pub(crate) in_dir: bool,
    pub(crate) snapshot_level: Option<Level>,
    pub(crate) chunk_size: Option<u32>,
    pub(crate) clock: Option<Clock>,
    pub(crate) keep_dead_rings: Option<usize>,
    pub(crate) stack_dump: u32,
}

impl RecorderBuilder {
    /// The defaults, for a ring at `path` (see [`Recorder::builder`](crate::Recorder::builder)).
    pub(crate) fn new(path: PathBuf) -> RecorderBuilder {
        RecorderBuilder {
            path,
            capacity: DEFAULT_CAPACITY,
            program: None,
            app_version: String::new(),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            mode: 0o600,
            msync: None,
            termination_log: None,
            in_dir: false,
            snapshot_level: None,
            chunk_size: None,
            clock: None,
            keep_dead_rings: Some(DEFAULT_KEEP_DEAD_RINGS),
            stack_dump: crate::layout::DEFAULT_STACK_DUMP,
        }
    }

    /// Events at `level` or more severe also ask for a snapshot: a
    /// collector (`blackbox watch`) ships the live ring's window, as
    /// [`Recorder::snapshot`](crate::Recorder::snapshot) asks, with the event as the reason. `None`
    /// (the default) turns it off. The request costs two more stores on
    /// such events, no system call (once the thread has appended before);
    /// the collector rate-limits shipments.
    pub fn snapshot_level(mut self, level: Option<Level>) -> Self {
        self.snapshot_level = level;
        self
    }

    /// Also write the one-line cause of death to this file when the
    /// process panics or dies of a fatal signal, once the crash handlers are
    /// installed ([`Recorder::install_crash_handlers`](crate::Recorder::install_crash_handlers)); for example
    /// `/dev/termination-log`, so `kubectl describe pod` shows why the
    /// container died. The file is opened (and emptied) when the ring is
    /// created, so the crash path only calls `write(2)`. Default: none.
    pub fn termination_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.termination_log = Some(path.into());
        self
    }

    /// How many bytes of the crashing thread's stack the fatal-signal
    /// handler copies into the ring (from the stack pointer, red zone
    /// included, towards the stack's top), for the reader to unwind
    /// offline. Default 64 KiB; at most 1 MiB (larger values are cut);
    /// 0 turns the copy off, for services whose stacks may hold secrets
    /// (registers and the module table are still recorded). The space is
    /// reserved in the file at create, outside the data region.
    pub fn stack_dump(mut self, bytes: u32) -> Self {
        self.stack_dump = bytes.min(crate::layout::MAX_STACK_DUMP);
        self
    }

    /// Size of the data region in bytes: a power of two from 16 KiB to 4 GiB.
    /// Default [`DEFAULT_CAPACITY`] (16 MiB).
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Size of a chunk in bytes: a power of two from 1 KiB to 64 KiB that
    /// leaves the ring at least 16 chunks. Default: the capacity / 128, kept
    /// within those bounds (128 KiB rings and smaller get 1 KiB chunks).
    ///
    /// Each appending thread owns one chunk at a time, and the largest
    /// record is the chunk size less 64 bytes. Smaller chunks suit many
    /// threads (a thread that appends and then idles holds its chunk);
    /// larger chunks suit large records (`shm-layout.md`, 7.5 and 8.7).
    pub fn chunk_size(mut self, bytes: u32) -> Self {
        self.chunk_size = Some(bytes);
        self
    }

    /// The clock of the records' timestamps. Default: [`Clock::best`], the
    /// time stamp counter where the kernel itself uses it (~13 ns a read
    /// here), else `CLOCK_REALTIME` through the vDSO (~27 ns).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Retention, for a ring in a directory of rings
    /// ([`Recorder::builder_in_dir`](crate::Recorder::builder_in_dir),
    /// [`Recorder::builder_from_env`](crate::Recorder::builder_from_env)):
    /// once the new ring is in place, this program's dead rings in the
    /// directory beyond the newest `keep` are removed, so short runs do
    /// not pile up (on `/dev/shm` a ring is memory). `None` keeps them all
    /// (leave removal to a collector, `blackbox watch --keep K`). Default
    /// `Some(`[`DEFAULT_KEEP_DEAD_RINGS`]`)`: the last three deaths stay
    /// for a collector or `blackbox on-failure` to read.
    ///
    /// Only rings this recorder would have made for the same program are
    /// candidates: named `{program}-...ring`, regular files (never a
    /// symlink) owned by this user with one link, whose header names the
    /// same program. A ring whose writer lives (holds its lock) is never
    /// removed, nor another program's or another user's file. A
    /// collector that falls more than `keep` deaths behind loses the
    /// oldest. A ring at an explicit path ([`Recorder::builder`](crate::Recorder::builder))
    /// prunes nothing.
    pub fn keep_dead_rings(mut self, keep: Option<usize>) -> Self {
        self.keep_dead_rings = keep;
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
    /// accepted ([`CreateErrorKind::BadMode`](crate::CreateErrorKind::BadMode) otherwise): a process that can
    /// write the file can also truncate it, and a truncated ring kills its
    /// writer with SIGBUS.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = std::env::temp_dir().join(format!("mode-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let rec = blackbox_recorder::Recorder::builder(dir.join("app.ring"))
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
}
