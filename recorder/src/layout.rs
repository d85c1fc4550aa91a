//! The bytes on disk: every offset, size and code of `shm-layout.md`, by the
//! spec's names.
//!
//! Both the writer (this crate) and the reader (`blackbox-reader`) use these
//! constants; `tests/layout_spec.rs` checks them against the tables in
//! `shm-layout.md`, which is the authority. Change a byte here only together
//! with the spec and [`VERSION`].
//!
//! All integers are little-endian. All offsets are from the start of the file
//! (header fields) or from the start of a record (record fields).

/// The first 8 bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"BBOXRING";

/// Layout version. A reader refuses a version it does not know.
pub const VERSION: u32 = 1;

/// Minor layout version: compatible additions within [`VERSION`] (meaning
/// given to bytes that earlier minors kept zero). A reader accepts any minor
/// and reads what it knows; zero bytes mean "not recorded".
/// 0: the ring, identity, state and lap log. 1: adds the memory evidence
/// and the cause of death. 2: adds the snapshot trigger.
pub const MINOR_VERSION: u32 = 2;

/// Written as a `u32` at [`H_ENDIAN`]; reads back as this value only on a
/// little-endian machine.
pub const ENDIAN_CHECK: u32 = 0x0102_0304;

/// Size of the file header; the data region starts right after it.
/// Must be a multiple of the page size (4096) so the data region is page aligned.
pub const HEADER_LEN: usize = 4096;

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 32;

/// Records start at multiples of this; a record's stride is its length
/// rounded up to it.
pub const RECORD_ALIGN: usize = 8;

/// Smallest data region: one page.
pub const MIN_CAPACITY: u64 = 4096;

/// Largest data region: 4 GiB. Keeps the commit tag (32 bits of the position
/// in 8-byte units, a period of 32 GiB) unambiguous across at least 8 laps.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Largest record (header + payload) a writer produces and a reader accepts.
/// A ring smaller than 4 × this accepts records of at most capacity / 4.
pub const MAX_RECORD_LEN: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// File header: ABI block (written once at create, before MAGIC).

/// `[u8; 8]` [`MAGIC`], written last at create.
pub const H_MAGIC: usize = 0;
/// `u32` [`VERSION`].
pub const H_VERSION: usize = 8;
/// `u32` [`ENDIAN_CHECK`].
pub const H_ENDIAN: usize = 12;
/// `u32` header length in bytes ([`HEADER_LEN`]).
pub const H_HEADER_LEN: usize = 16;
/// `u32` record header length in bytes ([`RECORD_HEADER_LEN`]).
pub const H_RECORD_HEADER_LEN: usize = 20;
/// `u32` incompatible feature flags: a reader refuses a file with a bit it does not know.
pub const H_INCOMPAT_FLAGS: usize = 24;
/// `u32` compatible feature flags: a reader ignores bits it does not know.
pub const H_COMPAT_FLAGS: usize = 28;
/// `u64` offset of the data region from the start of the file.
pub const H_DATA_OFFSET: usize = 32;
/// `u64` capacity of the data region in bytes: a power of two in
/// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
pub const H_CAPACITY: usize = 40;
/// `u64` random per-file value; seeds every record checksum.
pub const H_NONCE: usize = 48;
/// `u64` writer start time, nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub const H_START_UNIX_NS: usize = 56;
/// `u32` writer pid, in the writer's own PID namespace.
pub const H_PID: usize = 64;
/// `u32` largest record length this writer produces.
pub const H_MAX_RECORD_LEN: usize = 68;
/// `[u8; 16]` the kernel boot id (`/proc/sys/kernel/random/boot_id`) at create.
pub const H_BOOT_ID: usize = 72;
/// `u32` [`MINOR_VERSION`] of the writer.
pub const H_MINOR_VERSION: usize = 88;
// 92..128 reserved, zero.

// Identity strings: UTF-8, padded with NUL bytes; a field that is full has no NUL.

/// `[u8; 64]` program name.
pub const H_PROGRAM: usize = 128;
/// `[u8; 64]` application version or build id.
pub const H_APP_VERSION: usize = 192;
/// `[u8; 64]` host name.
pub const H_HOSTNAME: usize = 256;
/// `[u8; 64]` systemd `INVOCATION_ID` of the writer's unit, if set.
pub const H_INVOCATION_ID: usize = 320;
/// `[u8; 64]` Kubernetes `POD_UID`, if set.
pub const H_POD_UID: usize = 384;
/// `[u8; 64]` Kubernetes `POD_NAMESPACE`, if set.
pub const H_POD_NAMESPACE: usize = 448;
/// `[u8; 64]` Kubernetes `CONTAINER_NAME`, if set.
pub const H_CONTAINER_NAME: usize = 512;
/// `[u8; 256]` Kubernetes `POD_NAME`, if set.
pub const H_POD_NAME: usize = 576;
// 832..1024 reserved, zero.

/// Size of the 64-byte identity string fields.
pub const SHORT_STR_LEN: usize = 64;
/// Size of [`H_POD_NAME`].
pub const LONG_STR_LEN: usize = 256;

// Live counters, each group on its own 64-byte cache line.

/// `u64` TAIL: absolute byte position of the next reservation. Starts at 0,
/// only grows, always a multiple of [`RECORD_ALIGN`].
pub const H_TAIL: usize = 1024;
/// `u32` STATE: one of the `STATE_*` values.
pub const H_STATE: usize = 1088;
/// `u64` last heartbeat, Unix nanoseconds; 0 when the writer keeps none.
pub const H_HEARTBEAT_UNIX_NS: usize = 1096;
/// `u64` clean-close time, Unix nanoseconds; 0 until the writer closes.
pub const H_CLOSE_UNIX_NS: usize = 1104;
/// `u32` heartbeat period in milliseconds; 0 when the writer keeps none.
pub const H_HEARTBEAT_PERIOD_MS: usize = 1112;
/// `u64` count of appends that found themselves lapped before publishing.
pub const H_LAPPED_WRITES: usize = 1152;
/// `u64` count of appends refused because the record was too large.
pub const H_OVERSIZE_DROPS: usize = 1160;
/// `u64` count of snapshot requests (minor 2): bumped after the request's
/// record is published.
pub const H_SNAPSHOT_TRIGGER: usize = 1168;
/// `u64` position of the record that carries the latest snapshot request's
/// reason, plus one (0: none yet) (minor 2).
pub const H_SNAPSHOT_POS: usize = 1176;
/// Lap log: [`LAP_LOG_ENTRIES`] entries of `{ pos: u64, stride: u64 }`.
/// Entry `k % LAP_LOG_ENTRIES` holds the k-th lapped write (k counted from 0).
pub const H_LAP_LOG: usize = 1280;
/// Number of lap log entries.
pub const LAP_LOG_ENTRIES: usize = 16;
/// Memory evidence for OOM attribution, sampled by the heartbeat (minor 1).
pub const H_MEMORY_EVIDENCE: usize = 1536;
/// `u64` when the memory evidence was sampled, Unix nanoseconds (0: never).
pub const H_MEM_SAMPLED_UNIX_NS: usize = 1536;
/// `u64` the process's resident set size in bytes.
pub const H_MEM_RSS_BYTES: usize = 1544;
/// `u64` the memory usage of the process's cgroup in bytes (0: unknown).
pub const H_MEM_CGROUP_USAGE: usize = 1552;
/// `u64` the memory limit of the process's cgroup in bytes (0: none or unknown).
pub const H_MEM_CGROUP_LIMIT: usize = 1560;
// 1568..2048 reserved, zero.

/// The cause of death, written once by the first crash handler (minor 1).
pub const H_DEATH: usize = 2048;
/// `u32` one of `DEATH_*`; claimed first (0 to the kind), the rest follows.
pub const H_DEATH_KIND: usize = 2048;
/// `u32` signal number (0 for a panic that was not followed by a signal).
pub const H_DEATH_SIGNAL: usize = 2052;
/// `i32` the signal's `si_code`.
pub const H_DEATH_SI_CODE: usize = 2056;
/// `u32` Linux thread id of the crashing thread.
pub const H_DEATH_THREAD_ID: usize = 2060;
/// `u64` fault address (`si_addr`) for SIGSEGV, SIGBUS, SIGILL, SIGFPE raised
/// by a fault; 0 otherwise.
pub const H_DEATH_FAULT_ADDR: usize = 2064;
/// `u64` time of the crash, Unix nanoseconds.
pub const H_DEATH_UNIX_NS: usize = 2072;
/// `u64` the crashing thread's stack pointer at the fault (0: unknown).
pub const H_DEATH_STACK_POINTER: usize = 2080;
// 2088..2112 reserved, zero.
/// `[u8; 64]` the crashing thread's name.
pub const H_DEATH_THREAD_NAME: usize = 2112;
/// `[u8; 256]` panic location, `file:line:column`.
pub const H_DEATH_LOCATION: usize = 2176;
/// `[u8; 1024]` panic message (cut to fit).
pub const H_DEATH_MESSAGE: usize = 2432;
/// Size of [`H_DEATH_MESSAGE`].
pub const DEATH_MESSAGE_LEN: usize = 1024;
// 3456..4096 reserved, zero.

/// No cause recorded.
pub const DEATH_NONE: u32 = 0;
/// A panic (message and location recorded).
pub const DEATH_PANIC: u32 = 1;
/// A fatal signal.
pub const DEATH_SIGNAL: u32 = 2;

// STATE values.

/// The file is being created; never seen at the final path.
pub const STATE_CREATING: u32 = 0;
/// The writer was running when it last wrote the state word.
pub const STATE_RUNNING: u32 = 1;
/// The writer closed the ring cleanly.
pub const STATE_EXITED: u32 = 2;
/// The writer recorded its own crash (panic or fatal signal).
pub const STATE_CRASHED: u32 = 3;

// ---------------------------------------------------------------------------
// Record header, at the record's position in the data region.
//
//  0               8       12      14      16              24              32
//  +---------------+-------+-------+-------+---------------+---------------+---------
//  | COMMIT  (u64) | CRC   | KIND  | FLAGS | POS     (u64) | TS      (u64) | payload..
//  | len | tag<<32 | (u32) | (u16) | (u16) |               |               |
//  +---------------+-------+-------+-------+---------------+---------------+---------
//
// COMMIT is stored last; the record is published when COMMIT equals
// commit_word(len, pos) for the position the reader expects.

/// `u64` COMMIT: `len | (pos / 8 mod 2^32) << 32`; written last (release).
pub const R_COMMIT: usize = 0;
/// `u32` CRC-32C over `nonce (u64) ‖ len (u32) ‖ record bytes [12, stride)`.
pub const R_CRC: usize = 8;
/// `u16` record kind, one of `KIND_*`.
pub const R_KIND: usize = 12;
/// `u16` flags, zero in version 1.
pub const R_FLAGS: usize = 14;
/// `u64` POS: the record's absolute position (its stamp).
pub const R_POS: usize = 16;
/// `u64` TS: write time, nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub const R_TS: usize = 24;
/// First byte of the CRC-covered part of the record.
pub const R_CRC_START: usize = 12;

/// A structured log event (the standard payload below).
pub const KIND_EVENT: u16 = 1;
/// Opaque bytes from [`crate::Recorder::append`].
pub const KIND_RAW: u16 = 2;
/// A typed value: a type name and the value's serde encoding (the typed
/// payload below).
pub const KIND_TYPED: u16 = 3;

// Typed payload, right after the record header (offsets from the payload
// start): the fixed part, the type name, then the encoded value up to the
// end of the payload.

/// `u16` type name length in bytes.
pub const T_NAME_LEN: usize = 0;
/// `u8` codec of the value, one of `TYPED_CODEC_*`.
pub const T_CODEC: usize = 2;
/// Size of the typed payload's fixed part (byte 3 is reserved, zero); the
/// type name and the value follow.
pub const TYPED_FIXED_LEN: usize = 4;
/// Longest type name a writer stores (longer names are cut).
pub const MAX_TYPE_NAME: usize = 1024;
/// Codec: serde's data model in bincode 1's wire format (little-endian
/// fixed-width integers, `u64` lengths, `u32` enum variant indexes).
pub const TYPED_CODEC_BINCODE: u8 = 1;

// Standard event payload, right after the record header (offsets from the
// payload start).

/// `u8` level, one of `LEVEL_*`.
pub const E_LEVEL: usize = 0;
/// `u8` number of fields.
pub const E_FIELD_COUNT: usize = 1;
/// `u16` target length in bytes.
pub const E_TARGET_LEN: usize = 2;
/// `u16` message length in bytes.
pub const E_MESSAGE_LEN: usize = 4;
/// `u16` flags, zero in version 1.
pub const E_FLAGS: usize = 6;
/// `u32` Linux thread id of the writing thread.
pub const E_THREAD_ID: usize = 8;
/// Size of the fixed part; target, message and fields follow.
pub const EVENT_FIXED_LEN: usize = 12;

/// Level codes, from least to most severe.
pub const LEVEL_TRACE: u8 = 1;
/// DEBUG.
pub const LEVEL_DEBUG: u8 = 2;
/// INFO.
pub const LEVEL_INFO: u8 = 3;
/// WARN.
pub const LEVEL_WARN: u8 = 4;
/// ERROR.
pub const LEVEL_ERROR: u8 = 5;

/// Field type: `i64`, 8 bytes.
pub const FIELD_I64: u8 = 1;
/// Field type: `u64`, 8 bytes.
pub const FIELD_U64: u8 = 2;
/// Field type: `f64` (IEEE 754 bits), 8 bytes.
pub const FIELD_F64: u8 = 3;
/// Field type: bool, 1 byte (0 or 1).
pub const FIELD_BOOL: u8 = 4;
/// Field type: UTF-8 string, `u16` length then bytes.
pub const FIELD_STR: u8 = 5;
/// Field type: a value rendered with `Debug`, `u16` length then UTF-8 bytes.
pub const FIELD_DEBUG: u8 = 6;

/// The COMMIT word that publishes a record of `len` bytes at `pos`.
///
/// The tag (the high half) ties the word to one position, so a commit word
/// left by an earlier lap never publishes a later record at the same offset.
#[inline]
pub const fn commit_word(len: u32, pos: u64) -> u64 {
    (len as u64) | (((pos >> 3) as u32 as u64) << 32)
}

/// A record's stride: its length rounded up to [`RECORD_ALIGN`].
#[inline]
pub const fn stride(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The largest record a ring of `capacity` bytes holds.
#[inline]
pub const fn max_record_len(capacity: u64) -> usize {
    let quarter = (capacity / 4) as usize;
    if quarter < MAX_RECORD_LEN {
        quarter
    } else {
        MAX_RECORD_LEN
    }
}

/// The CRC-32C seed for a file: the checksum of its nonce.
#[inline]
pub fn crc_seed(nonce: u64) -> u32 {
    crc32c::crc32c(&nonce.to_le_bytes())
}

/// Continue a record checksum from the file's seed with the record length.
#[inline]
pub fn crc_start(seed: u32, len: u32) -> u32 {
    crc32c::crc32c_append(seed, &len.to_le_bytes())
}

// The header's groups do not overlap, fit in the header, and the hot
// counters sit on cache lines of their own (checked at compile time).
const _: () = {
    assert!(H_BOOT_ID + 16 <= H_PROGRAM);
    assert!(H_POD_NAME + LONG_STR_LEN <= H_TAIL);
    assert!(H_TAIL % 64 == 0 && H_STATE % 64 == 0 && H_LAPPED_WRITES % 64 == 0);
    assert!(H_LAP_LOG + LAP_LOG_ENTRIES * 16 <= H_MEMORY_EVIDENCE);
    assert!(H_MEM_CGROUP_LIMIT + 8 <= H_DEATH);
    assert!(H_DEATH_LOCATION + LONG_STR_LEN <= H_DEATH_MESSAGE);
    assert!(H_DEATH_MESSAGE + DEATH_MESSAGE_LEN <= HEADER_LEN);
    assert!(HEADER_LEN % 4096 == 0);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_word_differs_across_laps() {
        for cap in [MIN_CAPACITY, 1 << 20, MAX_CAPACITY] {
            let pos = 8 * 12345;
            assert_ne!(commit_word(40, pos), commit_word(40, pos + cap));
            assert_ne!(commit_word(40, pos), commit_word(40, pos + 7 * cap));
        }
    }

    #[test]
    fn stride_rounds_up_to_eight() {
        assert_eq!(stride(32), 32);
        assert_eq!(stride(33), 40);
        assert_eq!(stride(39), 40);
    }
}
