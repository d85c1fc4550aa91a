//! Creating a ring file (`shm-layout.md`, section 10): the file under a
//! temporary name, its lock, its pages reserved and touched, its header,
//! then its name.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::builder::RecorderBuilder;
use crate::clock::{Clock, Pair};
use crate::error::{CreateError, CreateErrorKind};
use crate::event::truncate_str;
use crate::heartbeat::Heartbeat;
use crate::layout::*;
use crate::mapping::RingMap;
use crate::recorder::Recorder;
use crate::ring_dir;
use crate::shared::Shared;
use crate::{lock, sys};

/// The first clock calibration spans at least this long (2 ms).
const CALIBRATION_MIN_NS: u64 = 2_000_000;

/// File name of a ring made by [`Recorder::builder_in_dir`]; `n` > 0 is a
/// suffix for a name already taken.
fn ring_file_name(program: &str, start_unix_ns: u64, pid: u32, n: u32) -> String {
    let program = file_name_program(program);
    let ms = start_unix_ns / 1_000_000;
    match n {
        0 => format!("{program}-{ms}-{pid}.ring"),
        n => format!("{program}-{ms}-{pid}-{n}.ring"),
    }
}

/// The program part of a ring's file name: at most 64 characters of
/// `[A-Za-z0-9._-]` (others become `_`), no leading dot, never empty.
fn file_name_program(program: &str) -> String {
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
    if program.is_empty() {
        "ring".into()
    } else {
        program.into()
    }
}

/// Creates the ring file `b` describes (`shm-layout.md`, section 10).
pub(crate) fn create(mut b: RecorderBuilder) -> Result<Recorder, CreateError> {
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
    let chunk_size = b.chunk_size.unwrap_or(default_chunk_size(b.capacity));
    if !chunk_size_fits(chunk_size, b.capacity) {
        return Err(fail(CreateErrorKind::BadChunkSize {
            chunk_size,
            capacity: b.capacity,
        }));
    }
    if b.mode & !0o644 != 0 {
        return Err(fail(CreateErrorKind::BadMode(b.mode)));
    }
    let io = |step| move |source| CreateError::new(path, CreateErrorKind::Io { step, source });
    // The directory the ring goes in, created (owner-only) when missing.
    let parent = dir.as_deref().or_else(|| path.parent());
    if let Some(parent) = parent {
        ring_dir::ensure(parent, ring_dir::dir_mode(b.mode)).map_err(io("create the directory"))?;
    }
    if dir.is_none() {
        if let Ok(existing) = File::open(path) {
            if lock::is_locked(&existing).unwrap_or(false) {
                return Err(fail(CreateErrorKind::InUse));
            }
        }
    }
    let nonce = sys::random_u64();
    let file_name = path
        .file_name()
        .ok_or_else(|| io("path has no file name")(io::Error::from(io::ErrorKind::InvalidInput)))?
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
        Ok(()) => build_file(&b, chunk_size, file, nonce, start_unix_ns),
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
                if let (Some(dir), Some(keep)) = (&dir, b.keep_dead_rings) {
                    // The new ring is ours: its owner is our effective uid.
                    if let Ok(meta) = rec._file.metadata() {
                        let program = b.program.clone().unwrap_or_else(default_program);
                        let prefix = file_name_program(&program);
                        ring_dir::prune_dead(dir, &prefix, &program, keep, meta.uid());
                    }
                }
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

/// Whether `chunk_size` cuts a ring of `capacity` bytes into chunks the
/// layout allows.
fn chunk_size_fits(chunk_size: u32, capacity: u64) -> bool {
    chunk_size.is_power_of_two()
        && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        && (MIN_CHUNKS as u64..=MAX_CHUNKS as u64).contains(&(capacity / chunk_size as u64))
}

/// Locks, sizes, maps and initialises the (still temporary) file.
fn build_file(
    b: &RecorderBuilder,
    chunk_size: u32,
    file: File,
    nonce: u64,
    start_unix_ns: u64,
) -> Result<Recorder, CreateErrorKind> {
    let io = |step| move |source| CreateErrorKind::Io { step, source };
    if !lock::try_lock_exclusive(&file).map_err(io("lock file"))? {
        return Err(CreateErrorKind::InUse);
    }
    let chunk_count = (b.capacity / chunk_size as u64) as u32;
    // The postmortem area (module table, stack copy) sits between the
    // chunk table and the data region (`shm-layout.md`, 9.5).
    let pm_offset = data_offset(chunk_count);
    let pm_len = pm_len(b.stack_dump);
    let data_offset = pm_offset + pm_len;
    let total = data_offset + b.capacity;
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
    let map = RingMap::new(map, data_offset, chunk_size, chunk_count);
    map.touch_pages();
    let clock = b.clock.unwrap_or_else(Clock::best);
    let clock_origin = Pair::now();

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
    let max_record_len = max_record_len(chunk_size);
    map.write_header_bytes(H_VERSION, &VERSION.to_le_bytes());
    map.write_header_bytes(H_ENDIAN, &ENDIAN_CHECK.to_le_bytes());
    map.write_header_bytes(H_HEADER_LEN, &(HEADER_LEN as u32).to_le_bytes());
    map.write_header_bytes(
        H_RECORD_HEADER_LEN,
        &(RECORD_HEADER_LEN as u32).to_le_bytes(),
    );
    map.write_header_bytes(H_DATA_OFFSET, &data_offset.to_le_bytes());
    map.write_header_bytes(H_CAPACITY, &b.capacity.to_le_bytes());
    map.write_header_bytes(H_NONCE, &nonce.to_le_bytes());
    map.write_header_bytes(H_START_UNIX_NS, &start_unix_ns.to_le_bytes());
    map.write_header_bytes(H_PID, &std::process::id().to_le_bytes());
    map.write_header_bytes(H_MAX_RECORD_LEN, &(max_record_len as u32).to_le_bytes());
    map.write_header_bytes(H_BOOT_ID, &boot_id());
    map.write_header_bytes(H_MINOR_VERSION, &MINOR_VERSION.to_le_bytes());
    map.write_header_bytes(H_CHUNK_SIZE, &chunk_size.to_le_bytes());
    map.write_header_bytes(H_CHUNK_COUNT, &chunk_count.to_le_bytes());
    map.write_header_bytes(H_CHUNK_HEADER_LEN, &(CHUNK_HEADER_LEN as u32).to_le_bytes());
    map.write_header_bytes(H_CHUNK_TABLE_OFFSET, &(HEADER_LEN as u64).to_le_bytes());
    map.write_header_bytes(H_CLOCK, &clock.code().to_le_bytes());
    map.write_header_bytes(H_PM_OFFSET, &pm_offset.to_le_bytes());
    map.write_header_bytes(H_PM_LEN, &(pm_len as u32).to_le_bytes());
    map.write_header_bytes(H_PM_STACK_MAX, &b.stack_dump.to_le_bytes());
    map.write_header_bytes(H_MODULE_SLOTS, &MODULE_SLOTS.to_le_bytes());
    if clock == Clock::Tsc {
        // The first calibration, before MAGIC: at least 2 ms after the
        // origin, so that a ring whose writer dies before its first
        // heartbeat still turns ticks into wall time.
        let mut now = Pair::now();
        while now.ns.saturating_sub(clock_origin.ns) < CALIBRATION_MIN_NS {
            std::hint::spin_loop();
            now = Pair::now();
        }
        crate::heartbeat::calibrate(&map, clock_origin, now);
    }
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
    let shared = Shared::new(
        map,
        nonce,
        clock,
        clock_origin,
        termination_log,
        b.snapshot_level,
    );
    let heartbeat = Heartbeat::start(&shared, b.heartbeat, b.msync);
    Ok(Recorder {
        shared,
        heartbeat,
        path: b.path.clone(),
        _file: file,
    })
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

impl RecorderBuilder {
    /// Creates the ring file and starts recording.
    ///
    /// The file is built under a temporary name in the same directory and
    /// renamed into place, so a reader never sees a half-made header. An
    /// existing file at the path is replaced, unless a live writer holds it.
    ///
    /// A missing directory (the ring's, and any missing parent) is created,
    /// owner-only: mode `0o700`, or `0o750` / `0o755` where
    /// [`mode`](RecorderBuilder::mode) lets the group / others read the
    /// ring. Each directory it creates is made with `mkdirat` in its
    /// parent's descriptor and opened with `O_NOFOLLOW`, so a symlink
    /// planted there is never followed; directories that exist are used as
    /// they are.
    ///
    /// # Errors
    ///
    /// A bad capacity or mode, a path held by a live writer, a file system
    /// that cannot reserve the pages (full disk or tmpfs: the error comes
    /// now, not as SIGBUS later), a read-only file system or directory, or
    /// any other I/O failure.
    pub fn create(self) -> Result<Recorder, CreateError> {
        create(self)
    }
}
