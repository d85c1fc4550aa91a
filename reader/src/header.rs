//! Parsing and validating a ring file's header (`shm-layout.md`, "Header").
//!
//! Nothing read from the file is trusted: every size and offset is checked
//! against the file's real length and the spec's bounds before use.

use recorder::layout::*;

use crate::error::Error;

/// Largest TAIL a reader accepts: 2^62.
const MAX_TAIL: u64 = 1 << 62;

/// A validated copy of a ring file's header, as read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Layout version ([`VERSION`]).
    pub version: u32,
    /// Compatible feature flags (unknown bits are ignored).
    pub compat_flags: u32,
    /// Capacity of the data region in bytes.
    pub capacity: u64,
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
    /// TAIL: absolute position of the next reservation.
    pub tail: u64,
    /// STATE word (`STATE_*`).
    pub state: u32,
    /// Last heartbeat, Unix nanoseconds (0: none).
    pub heartbeat_unix_ns: u64,
    /// Clean-close time, Unix nanoseconds (0: not closed).
    pub close_unix_ns: u64,
    /// Heartbeat period in milliseconds (0: no heartbeat).
    pub heartbeat_period_ms: u32,
    /// Appends that were lapped before publishing.
    pub lapped_writes: u64,
    /// Appends refused for their size.
    pub oversize_drops: u64,
    /// Snapshot requests so far (minor 2; 0: none).
    pub snapshot_trigger: u64,
    /// Position of the latest snapshot request's record, if any (minor 2).
    pub snapshot_pos: Option<u64>,
    /// The retained lap log entries: `(pos, stride)` of lapped appends.
    pub lap_log: Vec<(u64, u64)>,
    /// Minor layout version of the writer.
    pub minor_version: u32,
    /// Memory evidence from the writer's last heartbeat, if any.
    pub memory: Option<MemoryEvidence>,
    /// The cause of death the writer recorded, if any.
    pub death: Option<Death>,
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
    /// Fault address (0: none).
    pub fault_addr: u64,
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
            && self.fault_addr != 0
            && self.stack_pointer != 0
            && self.fault_addr.abs_diff(self.stack_pointer) <= 64 * 1024
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
    })
}

fn parse_death(b: &[u8]) -> Option<Death> {
    let kind = u32_at(b, H_DEATH_KIND);
    (kind != DEATH_NONE).then(|| Death {
        kind,
        signal: u32_at(b, H_DEATH_SIGNAL),
        si_code: u32_at(b, H_DEATH_SI_CODE) as i32,
        thread_id: u32_at(b, H_DEATH_THREAD_ID),
        fault_addr: u64_at(b, H_DEATH_FAULT_ADDR),
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
        let data_offset = u64_at(bytes, H_DATA_OFFSET);
        if header_len as usize != HEADER_LEN
            || record_header_len as usize != RECORD_HEADER_LEN
            || data_offset != HEADER_LEN as u64
        {
            return Err(Error::format(format!(
                "header sizes are damaged (header {header_len}, record header {record_header_len}, data offset {data_offset})"
            )));
        }
        let incompat = u32_at(bytes, H_INCOMPAT_FLAGS);
        if incompat != 0 {
            return Err(Error::unsupported(format!(
                "ring uses incompatible features {incompat:#x} that this blackbox does not know (use a newer blackbox)"
            )));
        }
        let capacity = u64_at(bytes, H_CAPACITY);
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::format(format!(
                "capacity {capacity} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}; header damaged"
            )));
        }
        let needed = data_offset + capacity;
        if file_len < needed {
            return Err(Error::format(format!(
                "file is truncated: {file_len} bytes, the header says {needed}"
            )));
        }
        let tail = u64_at(bytes, H_TAIL);
        // No real writer gets near 2^62 bytes (4 EiB); a larger TAIL is
        // damage, and refusing it keeps every position sum below overflow.
        if tail % RECORD_ALIGN as u64 != 0 || tail > MAX_TAIL {
            return Err(Error::format(format!(
                "write position {tail} is not a multiple of {RECORD_ALIGN} below 2^62; header damaged"
            )));
        }
        let lapped_writes = u64_at(bytes, H_LAPPED_WRITES);
        let kept = (lapped_writes as usize).min(LAP_LOG_ENTRIES);
        // Entries that no writer could have made are ignored.
        let lap_log = (0..kept)
            .map(|i| {
                let e = H_LAP_LOG + i * 16;
                (u64_at(bytes, e), u64_at(bytes, e + 8))
            })
            .filter(|&(pos, stride)| pos <= MAX_TAIL && stride <= MAX_RECORD_LEN as u64)
            .collect();
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&bytes[H_BOOT_ID..H_BOOT_ID + 16]);
        // The file's own limit may not exceed what the spec allows for the
        // capacity; a hostile value cannot make records larger.
        let stated_max = u32_at(bytes, H_MAX_RECORD_LEN) as usize;
        let max_record_len = max_record_len(capacity).min(stated_max.max(RECORD_HEADER_LEN));
        Ok(Header {
            version,
            compat_flags: u32_at(bytes, H_COMPAT_FLAGS),
            capacity,
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
            tail,
            state: u32_at(bytes, H_STATE),
            heartbeat_unix_ns: u64_at(bytes, H_HEARTBEAT_UNIX_NS),
            close_unix_ns: u64_at(bytes, H_CLOSE_UNIX_NS),
            heartbeat_period_ms: u32_at(bytes, H_HEARTBEAT_PERIOD_MS),
            lapped_writes,
            oversize_drops: u64_at(bytes, H_OVERSIZE_DROPS),
            snapshot_trigger: u64_at(bytes, H_SNAPSHOT_TRIGGER),
            snapshot_pos: u64_at(bytes, H_SNAPSHOT_POS).checked_sub(1),
            lap_log,
            minor_version: u32_at(bytes, H_MINOR_VERSION),
            memory: parse_memory(bytes),
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

    /// Whether a damaged record at `[pos, pos + stride)` lies where a lapped
    /// append (from the lap log) may have written late.
    pub fn explained_by_lapped_write(&self, pos: u64, stride: u64) -> bool {
        self.lap_log.iter().any(|&(p, s)| {
            // The lapped append wrote [p, p + s) shifted by whole laps.
            if pos + stride <= p {
                return false;
            }
            let laps = (pos - p.min(pos)) / self.capacity;
            (laps.max(1)..=laps + 1).any(|k| {
                let start = p + k * self.capacity;
                start < pos + stride && pos < start + s
            })
        })
    }
}
