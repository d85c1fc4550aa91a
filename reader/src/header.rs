//! Parsing and validating a ring file's header (`shm-layout.md`, "Header").
//!
//! Nothing read from the file is trusted: every size and offset is checked
//! against the file's real length and the spec's bounds before use.

use blackbox_recorder::layout::*;

use crate::error::Error;

/// Largest `DATA_OFFSET` a reader accepts (`shm-layout.md`, section 3).
const MAX_DATA_OFFSET: u64 = 1 << 40;

/// A validated copy of a ring file's header, as read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Layout version ([`VERSION`]).
    pub version: u32,
    /// Compatible feature flags (unknown bits are ignored).
    pub compat_flags: u32,
    /// Capacity of the data region in bytes.
    pub capacity: u64,
    /// Bytes per chunk.
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunk_count: u32,
    /// File offset of the data region.
    pub data_offset: u64,
    /// What record timestamps count (`CLOCK_*`).
    pub clock: u32,
    /// The current clock calibration of a `CLOCK_TSC` ring, if usable.
    pub calibration: Option<Calibration>,
    /// The file's random nonce (seeds record checksums).
    pub nonce: u64,
    /// Writer start time, Unix nanoseconds.
    pub start_unix_ns: u64,
    /// Writer pid, in its own PID namespace.
    pub pid: u32,
    /// Largest record length the reader accepts for this file.
    pub max_record_len: usize,
    /// Kernel boot id at create.
    pub boot_id: [u8; 16],
    /// Program name.
    pub program: String,
    /// Application version or build id.
    pub app_version: String,
    /// Host name.
    pub hostname: String,
    /// systemd `INVOCATION_ID`.
    pub invocation_id: String,
    /// Kubernetes pod UID.
    pub pod_uid: String,
    /// Kubernetes namespace.
    pub pod_namespace: String,
    /// Kubernetes container name.
    pub container_name: String,
    /// Kubernetes pod name.
    pub pod_name: String,
    /// The chunk cursor: claims (and skips) so far.
    pub next_ticket: u64,
    /// Writers registered so far.
    pub writers: u32,
    /// STATE word (`STATE_*`).
    pub state: u32,
    /// Last heartbeat, Unix nanoseconds (0: none).
    pub heartbeat_unix_ns: u64,
    /// Clean-close time, Unix nanoseconds (0: not closed).
    pub close_unix_ns: u64,
    /// Heartbeat period in milliseconds (0: no heartbeat).
    pub heartbeat_period_ms: u32,
    /// Appends dropped because no chunk could be claimed.
    pub dropped: u64,
    /// Appends refused for their size.
    pub oversize_drops: u64,
    /// Snapshot requests so far (0: none).
    pub snapshot_trigger: u64,
    /// The record `(writer, seq)` of the latest snapshot request, if any.
    pub snapshot_record: Option<(u32, u64)>,
    /// Minor layout version of the writer.
    pub minor_version: u32,
    /// Memory evidence from the writer's last heartbeat, if any.
    pub memory: Option<MemoryEvidence>,
    /// The writer's memory cgroup as `/proc/self/cgroup` names it, with its
    /// version (1 or 2), if the writer recorded one.
    pub cgroup: Option<(u32, String)>,
    /// The newest record's time (CLOCK_REALTIME nanoseconds), filled in by
    /// a [`crate::Snapshot`] (none in a header read alone, or an empty
    /// window): what the memory verdict is timed against.
    pub last_record_unix_ns: Option<u64>,
    /// The cause of death the writer recorded, if any.
    pub death: Option<Death>,
}

/// How a `CLOCK_TSC` ring's timestamps become wall time (`shm-layout.md`,
/// 8.5): one calibration slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// A counter reading.
    pub base_ticks: u64,
    /// CLOCK_REALTIME nanoseconds at that reading.
    pub base_ns: u64,
    /// Nanoseconds per tick times 2^32.
    pub mult: u64,
}

/// The writer's memory as last sampled (`shm-layout.md`, memory evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEvidence {
    /// When it was sampled, Unix nanoseconds.
    pub sampled_unix_ns: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// The cgroup's memory usage in bytes (0: unknown).
    pub cgroup_usage: u64,
    /// The cgroup's memory limit in bytes (0: none or unknown).
    pub cgroup_limit: u64,
    /// How the writer watched its cgroup (`MEM_WATCH_*`).
    pub watch: u32,
    /// When the writer last saw the cgroup reach its limit, Unix
    /// nanoseconds (0: not seen).
    pub limit_hit_unix_ns: u64,
    /// The cgroup's usage right after that.
    pub limit_hit_usage: u64,
    /// When the writer last saw the cgroup's OOM killer invoked (0: not).
    pub oom_unix_ns: u64,
    /// The cgroup's peak usage (0: unknown).
    pub peak: u64,
    /// Times the cgroup reached its limit while the writer watched.
    pub max_events: u64,
    /// Times the cgroup's OOM killer was invoked while the writer watched.
    pub oom_events: u64,
    /// Processes of the cgroup the OOM killer killed while the writer watched.
    pub oom_kill_events: u64,
    /// The cgroup's `oom_kill` count when the writer began watching it.
    pub oom_kill_base: u64,
}

impl MemoryEvidence {
    /// Usage as a fraction of the cgroup limit, when both are known.
    pub fn cgroup_fraction(&self) -> Option<f64> {
        (self.cgroup_limit > 0 && self.cgroup_usage > 0)
            .then(|| self.cgroup_usage as f64 / self.cgroup_limit as f64)
    }
}

/// The cause of death recorded by the writer's crash handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `DEATH_PANIC` or `DEATH_SIGNAL` (or an unknown code).
    pub kind: u32,
    /// Signal number (0: none).
    pub signal: u32,
    /// The signal's `si_code`.
    pub si_code: i32,
    /// Thread id of the crashing thread.
    pub thread_id: u32,
    /// Fault address, if the signal came from a fault (it may be 0: a null
    /// pointer).
    pub fault_addr: Option<u64>,
    /// Time of the crash, Unix nanoseconds.
    pub unix_ns: u64,
    /// The crashing thread's stack pointer at the fault (0: unknown).
    pub stack_pointer: u64,
    /// Name of the crashing thread.
    pub thread_name: String,
    /// Panic location.
    pub location: String,
    /// Panic message.
    pub message: String,
}

impl Death {
    /// Whether a SIGSEGV/SIGBUS looks like a stack overflow: the fault
    /// address lies within 64 KiB of the thread's stack pointer.
    pub fn likely_stack_overflow(&self) -> bool {
        matches!(self.signal, 7 | 11)
            && self.stack_pointer != 0
            && self
                .fault_addr
                .is_some_and(|a| a != 0 && a.abs_diff(self.stack_pointer) <= 64 * 1024)
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn str_at(b: &[u8], off: usize, len: usize) -> String {
    let field = &b[off..off + len];
    let end = field.iter().position(|&c| c == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_memory(b: &[u8]) -> Option<MemoryEvidence> {
    let sampled_unix_ns = u64_at(b, H_MEM_SAMPLED_UNIX_NS);
    (sampled_unix_ns != 0).then(|| MemoryEvidence {
        sampled_unix_ns,
        rss_bytes: u64_at(b, H_MEM_RSS_BYTES),
        cgroup_usage: u64_at(b, H_MEM_CGROUP_USAGE),
        cgroup_limit: u64_at(b, H_MEM_CGROUP_LIMIT),
        watch: u32_at(b, H_MEM_WATCH),
        limit_hit_unix_ns: u64_at(b, H_MEM_LIMIT_HIT_UNIX_NS),
        limit_hit_usage: u64_at(b, H_MEM_LIMIT_HIT_USAGE),
        oom_unix_ns: u64_at(b, H_MEM_OOM_UNIX_NS),
        peak: u64_at(b, H_MEM_PEAK),
        max_events: u64_at(b, H_MEM_MAX_EVENTS),
        oom_events: u64_at(b, H_MEM_OOM_EVENTS),
        oom_kill_events: u64_at(b, H_MEM_OOM_KILL_EVENTS),
        oom_kill_base: u64_at(b, H_MEM_OOM_KILL_BASE),
    })
}

fn parse_cgroup(b: &[u8]) -> Option<(u32, String)> {
    let version = u32_at(b, H_MEM_CGROUP_VERSION);
    let path = str_at(b, H_MEM_CGROUP_PATH, CGROUP_PATH_LEN);
    (version != 0 && !path.is_empty()).then_some((version, path))
}

fn parse_death(b: &[u8]) -> Option<Death> {
    let kind = u32_at(b, H_DEATH_KIND);
    (kind != DEATH_NONE).then(|| Death {
        kind,
        signal: u32_at(b, H_DEATH_SIGNAL),
        si_code: u32_at(b, H_DEATH_SI_CODE) as i32,
        thread_id: u32_at(b, H_DEATH_THREAD_ID),
        // A flag says whether the field holds an address (0 included).
        fault_addr: (u32_at(b, H_DEATH_FLAGS) & DEATH_FLAG_FAULT_ADDR != 0)
            .then(|| u64_at(b, H_DEATH_FAULT_ADDR)),
        unix_ns: u64_at(b, H_DEATH_UNIX_NS),
        stack_pointer: u64_at(b, H_DEATH_STACK_POINTER),
        thread_name: str_at(b, H_DEATH_THREAD_NAME, SHORT_STR_LEN),
        location: str_at(b, H_DEATH_LOCATION, LONG_STR_LEN),
        message: str_at(b, H_DEATH_MESSAGE, DEATH_MESSAGE_LEN),
    })
}

impl Header {
    /// Parses and validates `bytes` (the first [`HEADER_LEN`] bytes of a
    /// file whose length is `file_len`).
    ///
    /// # Errors
    ///
    /// A file too short, a foreign magic, a version or incompatible flag
    /// this reader does not know, a big-endian file, or sizes and offsets
    /// that do not fit the spec or the file.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Header, Error> {
        if bytes.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
            return Err(Error::format(format!(
                "file is {file_len} bytes, shorter than a ring header ({HEADER_LEN} bytes); \
                 not a blackbox ring or truncated"
            )));
        }
        if bytes[H_MAGIC..H_MAGIC + 8] != MAGIC {
            return Err(Error::format(
                "not a blackbox ring (bad magic; the file is foreign, or its writer is still creating it)"
                    .to_string(),
            ));
        }
        if u32_at(bytes, H_ENDIAN) != ENDIAN_CHECK {
            return Err(Error::format(
                "ring was written with another byte order or its endianness mark is damaged"
                    .to_string(),
            ));
        }
        let version = u32_at(bytes, H_VERSION);
        if version != VERSION {
            return Err(Error::unsupported(format!(
                "ring layout version {version} is not supported (this blackbox reads version {VERSION}; use a matching blackbox)"
            )));
        }
        let header_len = u32_at(bytes, H_HEADER_LEN);
        let record_header_len = u32_at(bytes, H_RECORD_HEADER_LEN);
        let chunk_header_len = u32_at(bytes, H_CHUNK_HEADER_LEN);
        let table_offset = u64_at(bytes, H_CHUNK_TABLE_OFFSET);
        if header_len as usize != HEADER_LEN
            || record_header_len as usize != RECORD_HEADER_LEN
            || chunk_header_len as usize != CHUNK_HEADER_LEN
            || table_offset != HEADER_LEN as u64
        {
            return Err(Error::format(format!(
                "header sizes are damaged (header {header_len}, record header {record_header_len}, \
                 chunk header {chunk_header_len}, chunk table at {table_offset})"
            )));
        }
        let incompat = u32_at(bytes, H_INCOMPAT_FLAGS);
        if incompat != 0 {
            return Err(Error::unsupported(format!(
                "ring uses incompatible features {incompat:#x} that this blackbox does not know (use a newer blackbox)"
            )));
        }
        let capacity = u64_at(bytes, H_CAPACITY);
        let chunk_size = u32_at(bytes, H_CHUNK_SIZE);
        let chunk_count = u32_at(bytes, H_CHUNK_COUNT);
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::format(format!(
                "capacity {capacity} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}; header damaged"
            )));
        }
        if !chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
            || !(MIN_CHUNKS..=MAX_CHUNKS).contains(&chunk_count)
            || chunk_size as u64 * chunk_count as u64 != capacity
        {
            return Err(Error::format(format!(
                "chunk size {chunk_size} and count {chunk_count} do not make the capacity {capacity}; header damaged"
            )));
        }
        let data_offset = u64_at(bytes, H_DATA_OFFSET);
        if data_offset % TABLE_ALIGN != 0
            || data_offset < table_offset + 8 * chunk_count as u64
            || data_offset > MAX_DATA_OFFSET
        {
            return Err(Error::format(format!(
                "data offset {data_offset} is not a page boundary after the chunk table; header damaged"
            )));
        }
        let needed = data_offset + capacity;
        if file_len < needed {
            return Err(Error::format(format!(
                "file is truncated: {file_len} bytes, the header says {needed}"
            )));
        }
        let clock = u32_at(bytes, H_CLOCK);
        if clock != CLOCK_REALTIME_NS && clock != CLOCK_TSC {
            return Err(Error::format(format!(
                "clock code {clock} is unknown; header damaged"
            )));
        }
        let calibration = (clock == CLOCK_TSC)
            .then(|| parse_calibration(bytes))
            .flatten();
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&bytes[H_BOOT_ID..H_BOOT_ID + 16]);
        // The file's own limit may not exceed what its chunks allow; a
        // hostile value cannot make records larger.
        let stated_max = u32_at(bytes, H_MAX_RECORD_LEN) as usize;
        let max_record_len = max_record_len(chunk_size).min(stated_max.max(RECORD_HEADER_LEN));
        let snapshot_seq = u64_at(bytes, H_SNAPSHOT_SEQ);
        Ok(Header {
            version,
            compat_flags: u32_at(bytes, H_COMPAT_FLAGS),
            capacity,
            chunk_size,
            chunk_count,
            data_offset,
            clock,
            calibration,
            nonce: u64_at(bytes, H_NONCE),
            start_unix_ns: u64_at(bytes, H_START_UNIX_NS),
            pid: u32_at(bytes, H_PID),
            max_record_len,
            boot_id,
            program: str_at(bytes, H_PROGRAM, SHORT_STR_LEN),
            app_version: str_at(bytes, H_APP_VERSION, SHORT_STR_LEN),
            hostname: str_at(bytes, H_HOSTNAME, SHORT_STR_LEN),
            invocation_id: str_at(bytes, H_INVOCATION_ID, SHORT_STR_LEN),
            pod_uid: str_at(bytes, H_POD_UID, SHORT_STR_LEN),
            pod_namespace: str_at(bytes, H_POD_NAMESPACE, SHORT_STR_LEN),
            container_name: str_at(bytes, H_CONTAINER_NAME, SHORT_STR_LEN),
            pod_name: str_at(bytes, H_POD_NAME, LONG_STR_LEN),
            next_ticket: u64_at(bytes, H_NEXT_TICKET),
            writers: u32_at(bytes, H_WRITERS),
            state: u32_at(bytes, H_STATE),
            heartbeat_unix_ns: u64_at(bytes, H_HEARTBEAT_UNIX_NS),
            close_unix_ns: u64_at(bytes, H_CLOSE_UNIX_NS),
            heartbeat_period_ms: u32_at(bytes, H_HEARTBEAT_PERIOD_MS),
            dropped: u64_at(bytes, H_DROPPED),
            oversize_drops: u64_at(bytes, H_OVERSIZE_DROPS),
            snapshot_trigger: u64_at(bytes, H_SNAPSHOT_TRIGGER),
            snapshot_record: snapshot_seq
                .checked_sub(1)
                .map(|seq| (u32_at(bytes, H_SNAPSHOT_WRITER), seq)),
            minor_version: u32_at(bytes, H_MINOR_VERSION),
            memory: parse_memory(bytes),
            cgroup: parse_cgroup(bytes),
            last_record_unix_ns: None,
            death: parse_death(bytes),
        })
    }

    /// The boot id as the usual 36-character UUID text.
    pub fn boot_id_text(&self) -> String {
        let h: String = self.boot_id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// A record timestamp as CLOCK_REALTIME nanoseconds (`shm-layout.md`,
    /// 8.5): as it is for a `CLOCK_REALTIME_NS` ring, through the
    /// calibration for a `CLOCK_TSC` ring (as it is, if the ring has none).
    #[inline]
    pub fn ts_unix_ns(&self, ts: u64) -> u64 {
        match self.calibration {
            Some(c) => tsc_to_unix_ns(ts, c.base_ticks, c.base_ns, c.mult),
            None => ts,
        }
    }

    /// Whether this ring's timestamps are ticks without a usable
    /// calibration (shown as if they were nanoseconds).
    pub fn clock_uncalibrated(&self) -> bool {
        self.clock == CLOCK_TSC && self.calibration.is_none()
    }
}

/// The current calibration slot, if there is one with a multiplier.
fn parse_calibration(b: &[u8]) -> Option<Calibration> {
    let count = u64_at(b, H_CLOCK_CAL_COUNT);
    let slot =
        H_CLOCK_BASE_TICKS + (count.checked_sub(1)? % CLOCK_SLOTS as u64) as usize * CLOCK_SLOT_LEN;
    let c = Calibration {
        base_ticks: u64_at(b, slot),
        base_ns: u64_at(b, slot + 8),
        mult: u64_at(b, slot + 16),
    };
    (c.mult != 0).then_some(c)
}
