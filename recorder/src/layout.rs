//! The bytes on disk: every offset, size and code of `shm-layout.md`, by the
//! spec's names.
//!
//! Both the writer (this crate) and the reader (the `blackbox` crate's
//! library) use these constants; `tests/layout_spec.rs` checks them against
//! the tables in `shm-layout.md`, which is the authority. Change a byte here
//! only together with the spec and [`VERSION`] or [`MINOR_VERSION`].
//!
//! All integers are little-endian. Offsets are from the start of the file
//! (`H_*`), of a chunk (`C_*`), of a record (`R_*`) or of an event payload
//! (`E_*`).

/// The first 8 bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"BBOXRING";

/// Layout version. A reader refuses a version it does not know.
pub const VERSION: u32 = 2;

/// Minor layout version: compatible additions within [`VERSION`] (meaning
/// given to bytes that earlier minors kept zero). A reader accepts any minor
/// and reads what it knows; zero bytes mean "not recorded".
pub const MINOR_VERSION: u32 = 0;

/// Written as a `u32` at [`H_ENDIAN`]; reads back as this value only on a
/// little-endian machine.
pub const ENDIAN_CHECK: u32 = 0x0102_0304;

/// Size of the file header; the chunk table starts right after it.
/// Must be a multiple of [`TABLE_ALIGN`].
pub const HEADER_LEN: usize = 4096;

/// Size of a chunk header; the chunk's records start right after it.
pub const CHUNK_HEADER_LEN: usize = 64;

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 24;

/// Records start at multiples of this inside their chunk; a record's stride
/// is its length rounded up to it.
pub const RECORD_ALIGN: usize = 8;

/// The chunk table is padded to a multiple of this, so the data region
/// starts on a page.
pub const TABLE_ALIGN: u64 = 4096;

/// Smallest data region: 16 KiB ([`MIN_CHUNKS`] chunks of the smallest size).
pub const MIN_CAPACITY: u64 = 16 * 1024;

/// Largest data region: 4 GiB.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Smallest chunk. A power of two.
pub const MIN_CHUNK_SIZE: u32 = 1024;

/// Largest chunk. A power of two; bounds the largest record.
pub const MAX_CHUNK_SIZE: u32 = 64 * 1024;

/// Fewest chunks in a ring.
pub const MIN_CHUNKS: u32 = 16;

/// Most chunks in a ring: bounds the chunk table to 8 MiB.
pub const MAX_CHUNKS: u32 = 1 << 20;

/// Largest record (header + payload) in any ring: a whole chunk but its
/// header.
pub const MAX_RECORD_LEN: usize = MAX_CHUNK_SIZE as usize - CHUNK_HEADER_LEN;

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
/// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`], `CHUNK_COUNT · CHUNK_SIZE`.
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
/// `u32` bytes per chunk.
pub const H_CHUNK_SIZE: usize = 92;
/// `u32` number of chunks.
pub const H_CHUNK_COUNT: usize = 96;
/// `u32` chunk header length in bytes ([`CHUNK_HEADER_LEN`]).
pub const H_CHUNK_HEADER_LEN: usize = 100;
/// `u64` file offset of the chunk table ([`HEADER_LEN`]).
pub const H_CHUNK_TABLE_OFFSET: usize = 104;
/// `u32` what record timestamps count: [`CLOCK_REALTIME_NS`] or [`CLOCK_TSC`].
pub const H_CLOCK: usize = 112;
// 116..128 reserved, zero.

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

// Postmortem directory (`shm-layout.md`, 9.5): where the postmortem area
// lies, the module table's state, and the main binary's build id.

/// Start of the postmortem directory in the header.
pub const H_PM: usize = 832;
/// `u64` file offset of the postmortem area (0: the file has none).
pub const H_PM_OFFSET: usize = 832;
/// `u32` length of the postmortem area in bytes.
pub const H_PM_LEN: usize = 840;
/// `u32` bytes of stack the crash handler copies at most (0: no copy).
pub const H_PM_STACK_MAX: usize = 844;
/// `u64` module table generation: odd while the table is being rewritten.
pub const H_MODULES_GEN: usize = 848;
/// `u32` module table entries in use.
pub const H_MODULE_COUNT: usize = 856;
/// `u32` module table slots (entries of [`MODULE_ENTRY_LEN`] bytes).
pub const H_MODULE_SLOTS: usize = 860;
/// `u32` `MODULES_FLAG_*` bits.
pub const H_MODULE_FLAGS: usize = 864;
/// `u32` length of [`H_BUILD_ID`] in bytes (0: none).
pub const H_BUILD_ID_LEN: usize = 868;
/// `[u8; 32]` the main binary's GNU build id.
pub const H_BUILD_ID: usize = 872;
/// Size of a build id field.
pub const BUILD_ID_MAX: usize = 32;
// 904..1024 reserved, zero.

/// Size of the 64-byte identity string fields.
pub const SHORT_STR_LEN: usize = 64;
/// Size of [`H_POD_NAME`].
pub const LONG_STR_LEN: usize = 256;

// Live counters. NEXT_TICKET alone on its cache line.

/// `u64` the chunk cursor: the next claim ticket. Starts at 0, only grows.
pub const H_NEXT_TICKET: usize = 1024;
/// `u32` STATE: one of the `STATE_*` values.
pub const H_STATE: usize = 1088;
/// `u64` last heartbeat, Unix nanoseconds; 0 when the writer keeps none.
pub const H_HEARTBEAT_UNIX_NS: usize = 1096;
/// `u64` clean-close time, Unix nanoseconds; 0 until the writer closes.
pub const H_CLOSE_UNIX_NS: usize = 1104;
/// `u32` heartbeat period in milliseconds; 0 when the writer keeps none.
pub const H_HEARTBEAT_PERIOD_MS: usize = 1112;
/// `u32` writers registered so far: the next writer number.
pub const H_WRITERS: usize = 1116;
/// `u64` appends dropped because no chunk could be claimed.
pub const H_DROPPED: usize = 1152;
/// `u64` count of appends refused because the record was too large.
pub const H_OVERSIZE_DROPS: usize = 1160;
/// `u64` count of snapshot requests: bumped after the request's record is
/// published.
pub const H_SNAPSHOT_TRIGGER: usize = 1168;
/// `u64` `seq` of the record that carries the latest snapshot request's
/// reason, plus one (0: none yet).
pub const H_SNAPSHOT_SEQ: usize = 1176;
/// `u32` the writer of that record.
pub const H_SNAPSHOT_WRITER: usize = 1184;

/// Clock calibration for [`CLOCK_TSC`] rings.
pub const H_CLOCK_CAL: usize = 1280;
/// `u64` calibrations written; the current one is in slot `(count - 1) % 2`.
pub const H_CLOCK_CAL_COUNT: usize = 1280;
/// `u64` slot 0: a timestamp counter reading.
pub const H_CLOCK_BASE_TICKS: usize = 1312;
/// `u64` slot 0: CLOCK_REALTIME nanoseconds at that reading.
pub const H_CLOCK_BASE_NS: usize = 1320;
/// `u64` slot 0: nanoseconds per tick times `2^CLOCK_SHIFT`.
pub const H_CLOCK_MULT: usize = 1328;
/// Slot 1: the same fields at the same offsets plus [`CLOCK_SLOT_LEN`].
pub const H_CLOCK_SLOT_1: usize = 1344;
/// Number of calibration slots.
pub const CLOCK_SLOTS: usize = 2;
/// Bytes per calibration slot.
pub const CLOCK_SLOT_LEN: usize = 32;
/// Fixed-point shift of the calibration's multiplier.
pub const CLOCK_SHIFT: u32 = 32;
// 1376..1536 reserved, zero.

/// Memory evidence for OOM attribution, sampled by the heartbeat.
pub const H_MEMORY_EVIDENCE: usize = 1536;
/// `u64` when the memory evidence was sampled, Unix nanoseconds (0: never).
pub const H_MEM_SAMPLED_UNIX_NS: usize = 1536;
/// `u64` the process's resident set size in bytes.
pub const H_MEM_RSS_BYTES: usize = 1544;
/// `u64` the memory usage of the process's cgroup in bytes (0: unknown).
pub const H_MEM_CGROUP_USAGE: usize = 1552;
/// `u64` the memory limit of the process's cgroup in bytes (0: none or unknown).
pub const H_MEM_CGROUP_LIMIT: usize = 1560;
/// `u32` how the sampler watches the cgroup's memory events (`MEM_WATCH_*`).
pub const H_MEM_WATCH: usize = 1568;
/// `u32` the cgroup version of the memory controller watched: 1, 2 (0: none).
pub const H_MEM_CGROUP_VERSION: usize = 1572;
/// `u64` when the sampler last saw the cgroup reach its limit (v2
/// `memory.events` `max` rose; v1 `memory.failcnt` rose), Unix
/// nanoseconds (0: not since it began watching this cgroup).
pub const H_MEM_LIMIT_HIT_UNIX_NS: usize = 1576;
/// `u64` the cgroup's usage read right after that (bytes).
pub const H_MEM_LIMIT_HIT_USAGE: usize = 1584;
/// `u64` when the sampler last saw the cgroup's OOM killer invoked (v2
/// `memory.events` `oom` or `oom_kill` rose; v1 the `memory.oom_control`
/// notification or its `oom_kill` rose), Unix nanoseconds (0: never).
pub const H_MEM_OOM_UNIX_NS: usize = 1592;
/// `u64` the cgroup's peak usage (v2 `memory.peak`, v1
/// `memory.max_usage_in_bytes`; 0: unknown).
pub const H_MEM_PEAK: usize = 1600;
/// `u64` how often the cgroup reached its limit since the sampler began
/// watching it.
pub const H_MEM_MAX_EVENTS: usize = 1608;
/// `u64` how often the cgroup's OOM killer was invoked since then.
pub const H_MEM_OOM_EVENTS: usize = 1616;
/// `u64` how many processes of the cgroup the OOM killer killed since then
/// (seen while the sampler lived: a kill of the writer itself is not).
pub const H_MEM_OOM_KILL_EVENTS: usize = 1624;
/// `u64` the cgroup's own `oom_kill` count when the sampler began watching
/// it: a collector that reads the count after the death tells the kills
/// that came later from those before.
pub const H_MEM_OOM_KILL_BASE: usize = 1632;
// 1640..1664 reserved, zero.
/// The path of the writer's memory cgroup as `/proc/self/cgroup` names it
/// (NUL-padded UTF-8, `CGROUP_PATH_LEN` bytes; empty: unknown), rewritten
/// by the sampler when the process moves.
pub const H_MEM_CGROUP_PATH: usize = 1664;
/// Bytes of `H_MEM_CGROUP_PATH` (to the end of the memory area).
pub const CGROUP_PATH_LEN: usize = 384;

/// `H_MEM_WATCH`: no memory evidence (no heartbeat, or no cgroup).
pub const MEM_WATCH_NONE: u32 = 0;
/// `H_MEM_WATCH`: cgroup v2 `memory.events`, woken by the kernel's file
/// notification (poll), plus the periodic samples.
pub const MEM_WATCH_V2_EVENTS: u32 = 1;
/// `H_MEM_WATCH`: cgroup v1 `memory.oom_control` and a usage threshold at
/// 90% of the limit through `cgroup.event_control` eventfds, plus the
/// periodic samples.
pub const MEM_WATCH_V1_EVENTFD: u32 = 2;
/// `H_MEM_WATCH`: periodic samples only (the notifications were refused).
pub const MEM_WATCH_SAMPLED: u32 = 3;

/// The cause of death, written once by the first crash handler.
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
/// `u32` `DEATH_FLAG_*` bits.
pub const H_DEATH_FLAGS: usize = 2088;
// 2092..2112 reserved, zero.
/// `[u8; 64]` the crashing thread's name.
pub const H_DEATH_THREAD_NAME: usize = 2112;
/// `[u8; 256]` panic location, `file:line:column`.
pub const H_DEATH_LOCATION: usize = 2176;
/// `[u8; 1024]` panic message (cut to fit).
pub const H_DEATH_MESSAGE: usize = 2432;
/// Size of [`H_DEATH_MESSAGE`].
pub const DEATH_MESSAGE_LEN: usize = 1024;

// Crash context (`shm-layout.md`, 9.5): written by the fatal-signal
// handler of the thread that claims `DUMP_STATE`.

/// Start of the crash context in the header (up to [`HEADER_LEN`]).
pub const H_DUMP: usize = 3456;
/// `u32` one of `DUMP_*`: claimed (0 to [`DUMP_WRITING`]) first.
pub const H_DUMP_STATE: usize = 3456;
/// `u32` Linux thread id of the dumped thread.
pub const H_DUMP_THREAD_ID: usize = 3460;
/// `u32` `DUMP_FLAG_*` bits.
pub const H_DUMP_FLAGS: usize = 3464;
/// `u32` the register set: one of `ARCH_*`.
pub const H_DUMP_ARCH: usize = 3468;
/// `u64` CLOCK_MONOTONIC nanoseconds when the handler started.
pub const H_DUMP_ENTRY_NS: usize = 3472;
/// `u64` CLOCK_MONOTONIC nanoseconds when the handler finished the dump.
pub const H_DUMP_DONE_NS: usize = 3480;
/// `u64` address of the first stack byte copied.
pub const H_DUMP_STACK_START: usize = 3488;
/// `u32` stack bytes copied (into the postmortem area's stack copy).
pub const H_DUMP_STACK_LEN: usize = 3496;
/// `u32` code bytes copied into [`H_DUMP_CODE`].
pub const H_DUMP_CODE_LEN: usize = 3500;
/// `u64` address of the first code byte copied.
pub const H_DUMP_CODE_START: usize = 3504;
/// `u64` lowest address of the thread's stack, if known (0: unknown).
pub const H_DUMP_STACK_LO: usize = 3512;
/// `u64` end of the thread's stack (its top), if known (0: unknown).
pub const H_DUMP_STACK_HI: usize = 3520;
/// `u64` the module table generation at the crash.
pub const H_DUMP_MODULES_GEN: usize = 3528;
/// `u32` registers recorded in [`H_DUMP_REGS`].
pub const H_DUMP_REG_COUNT: usize = 3536;
// 3540..3544 reserved, zero.
/// `[u64; 34]` the general registers, in DWARF register number order.
pub const H_DUMP_REGS: usize = 3544;
/// Register slots in [`H_DUMP_REGS`].
pub const DUMP_REG_SLOTS: usize = 34;
// 3816..3840 reserved, zero.
/// `[u8; 256]` code bytes around the crashing pc.
pub const H_DUMP_CODE: usize = 3840;
/// Size of [`H_DUMP_CODE`].
pub const DUMP_CODE_MAX: usize = 256;

/// `DUMP_STATE`: no dump.
pub const DUMP_NONE: u32 = 0;
/// `DUMP_STATE`: claimed, being written (the writer died in its handler).
pub const DUMP_WRITING: u32 = 1;
/// `DUMP_STATE`: complete.
pub const DUMP_COMPLETE: u32 = 2;
/// `DUMP_FLAGS`: the stack pointer or the fault lies in the stack's guard
/// area (a stack overflow); the copy holds what was readable.
pub const DUMP_FLAG_STACK_OVERFLOW: u32 = 1;
/// `DUMP_FLAGS`: the copy stopped at an unreadable page before its bound.
pub const DUMP_FLAG_STACK_SHORT: u32 = 2;
/// `DUMP_FLAGS`: `DUMP_STACK_LO` and `DUMP_STACK_HI` hold the stack's bounds.
pub const DUMP_FLAG_STACK_BOUNDS: u32 = 4;
/// `DUMP_FLAGS`: the module table was being rewritten at the crash.
pub const DUMP_FLAG_MODULES_CHANGING: u32 = 8;
/// `DUMP_ARCH`: x86_64; registers 0..=16 are DWARF's (rax, rdx, rcx, rbx,
/// rsi, rdi, rbp, rsp, r8..r15, rip), 17 is rflags.
pub const ARCH_X86_64: u32 = 1;
/// `DUMP_ARCH`: aarch64; registers 0..=30 are x0..x30, 31 sp, 32 pc,
/// 33 pstate.
pub const ARCH_AARCH64: u32 = 2;

// The postmortem area: the module table, then the stack copy.

/// Bytes per module table entry.
pub const MODULE_ENTRY_LEN: usize = 512;
/// Module table slots a writer reserves.
pub const MODULE_SLOTS: u32 = 128;
/// Executable address ranges per module entry.
pub const MODULE_RANGES: usize = 4;
/// Size of a module entry's path field.
pub const MODULE_PATH_MAX: usize = 384;
/// `MODULE_FLAGS`: more modules were loaded than the table has slots.
pub const MODULES_FLAG_FULL: u32 = 1;
/// `u64` module entry: load bias (run-time address minus ELF address).
pub const M_LOAD_BIAS: usize = 0;
/// `[u64; 2 * MODULE_RANGES]` module entry: executable ranges `[start, end)`.
pub const M_RANGES: usize = 8;
/// `u32` module entry: ranges in use.
pub const M_RANGE_COUNT: usize = 72;
/// `u32` module entry: build id length (0: the file has none).
pub const M_BUILD_ID_LEN: usize = 76;
/// `[u8; 32]` module entry: GNU build id.
pub const M_BUILD_ID: usize = 80;
/// `u32` module entry: path length in bytes.
pub const M_PATH_LEN: usize = 112;
// 116..128 reserved, zero.
/// `[u8; 384]` module entry: the file's path as loaded.
pub const M_PATH: usize = 128;
/// Default stack copy bound: 64 KiB.
pub const DEFAULT_STACK_DUMP: u32 = 64 << 10;
/// Largest stack copy bound a writer accepts (and a reader reads): 1 MiB.
pub const MAX_STACK_DUMP: u32 = 1 << 20;

/// Length of the postmortem area for a stack copy bound: the module table,
/// then the stack copy, rounded up to [`TABLE_ALIGN`].
#[inline]
pub const fn pm_len(stack_max: u32) -> u64 {
    let len = MODULE_SLOTS as u64 * MODULE_ENTRY_LEN as u64 + stack_max as u64;
    len.div_ceil(TABLE_ALIGN) * TABLE_ALIGN
}

/// No cause recorded.
pub const DEATH_NONE: u32 = 0;
/// A panic (message and location recorded).
pub const DEATH_PANIC: u32 = 1;
/// A fatal signal.
pub const DEATH_SIGNAL: u32 = 2;
/// `DEATH_FLAGS`: `DEATH_FAULT_ADDR` holds the address of a fault, which
/// may be 0 (a null pointer); without it a 0 there means "no address".
pub const DEATH_FLAG_FAULT_ADDR: u32 = 1;

// STATE values.

/// The file is being created; never seen at the final path.
pub const STATE_CREATING: u32 = 0;
/// The writer was running when it last wrote the state word.
pub const STATE_RUNNING: u32 = 1;
/// The writer closed the ring cleanly.
pub const STATE_EXITED: u32 = 2;
/// The writer recorded its own crash (panic or fatal signal).
pub const STATE_CRASHED: u32 = 3;

// CLOCK values.

/// Record timestamps are CLOCK_REALTIME nanoseconds since the Unix epoch.
pub const CLOCK_REALTIME_NS: u32 = 1;
/// Record timestamps are x86 time stamp counter ticks (see the calibration).
pub const CLOCK_TSC: u32 = 2;

// ---------------------------------------------------------------------------
// The chunk table: one u64 per chunk, `VISITS << CHUNK_STATE_BITS | STATE`.

/// `STATE` of a chunk never claimed.
pub const CHUNK_FREE: u64 = 0;
/// `STATE` of a chunk its owner may be writing; nobody else writes it.
pub const CHUNK_OWNED: u64 = 1;
/// `STATE` of a chunk its owner finished; the next visit may claim it.
pub const CHUNK_SEALED: u64 = 2;
/// `STATE` of a chunk just claimed, whose header its new owner has not
/// written yet: what it holds belongs to the claim before, which left the
/// window with this claim.
pub const CHUNK_CLAIMED: u64 = 3;
/// Width of `STATE` in a table word; `VISITS` is the word shifted right by it.
pub const CHUNK_STATE_BITS: u32 = 2;

/// A chunk table word from its state and visit count.
#[inline]
pub const fn table_word(state: u64, visits: u64) -> u64 {
    visits << CHUNK_STATE_BITS | state
}

/// The `STATE` of a chunk table word.
#[inline]
pub const fn table_state(word: u64) -> u64 {
    word & ((1 << CHUNK_STATE_BITS) - 1)
}

/// The `VISITS` of a chunk table word.
#[inline]
pub const fn table_visits(word: u64) -> u64 {
    word >> CHUNK_STATE_BITS
}

// Chunk header, at the start of each chunk.

/// `u64` GEN: the ticket of the claim this header belongs to.
pub const C_GEN: usize = 0;
/// `u64` the writer's `seq` of the chunk's first record.
pub const C_FIRST_SEQ: usize = 8;
/// `u64` the writer's dropped appends before the chunk's first record.
pub const C_WRITER_DROPPED: usize = 16;
/// `u32` the writer's number.
pub const C_WRITER: usize = 24;
/// `u32` Linux thread id of the writer's thread.
pub const C_THREAD_ID: usize = 28;
/// `[u8; 16]` the writer thread's kernel name.
pub const C_THREAD_NAME: usize = 32;
/// Size of [`C_THREAD_NAME`].
pub const THREAD_NAME_LEN: usize = 16;
// 48..64 reserved, zero.

// ---------------------------------------------------------------------------
// Record header, at the record's offset in its chunk.
//
//  0               8       12      14      16              24
//  +---------------+-------+-------+-------+---------------+---------
//  | COMMIT  (u64) | CRC   | KIND  | FLAGS | TS      (u64) | payload..
//  | tag<<16 | len | (u32) | (u16) | (u16) |               |
//  +---------------+-------+-------+-------+---------------+---------
//
// COMMIT is stored last; the record is published when COMMIT equals
// commit_word(gen, len) with the chunk header's GEN and len >= 24.

/// `u64` COMMIT: `((GEN + 1) mod 2^48) << 16 | len`; written last (release);
/// `len` 0 while the record is being written.
pub const R_COMMIT: usize = 0;
/// `u32` CRC-32C over `nonce ‖ chunk header ‖ len (u32) ‖ seq (u64) ‖
/// record bytes [24, stride) ‖ record bytes [12, 24)`.
pub const R_CRC: usize = 8;
/// `u16` record kind, one of `KIND_*`.
pub const R_KIND: usize = 12;
/// `u16` flags, zero in version 2.
pub const R_FLAGS: usize = 14;
/// `u64` TS: write time in the unit of [`H_CLOCK`].
pub const R_TS: usize = 16;
/// First byte of the CRC-covered part of the record.
pub const R_CRC_START: usize = 12;
/// Width of `len` in a COMMIT word; the tag is the word shifted right by it.
pub const COMMIT_LEN_BITS: u32 = 16;

/// A structured log event (the standard payload below).
pub const KIND_EVENT: u16 = 1;
/// Opaque bytes from [`crate::Recorder::append`].
pub const KIND_RAW: u16 = 2;
/// A typed value: a type name and the value's serde encoding (the typed
/// payload below).
pub const KIND_TYPED: u16 = 3;
/// A span was created: its id, its parent's, then its level, target, name
/// and fields as a standard event payload (the span payloads below).
pub const KIND_SPAN_NEW: u16 = 4;
/// Values recorded into a span after it was created (`Span::record`): its
/// id, then the values as the fields of a standard event payload.
pub const KIND_SPAN_RECORD: u16 = 5;
/// A span was entered, exited or closed on the record's thread: its id, the
/// step (`SPAN_OP_*`) and its name.
pub const KIND_SPAN_STEP: u16 = 6;
/// A span follows from another (a causal link without nesting).
pub const KIND_SPAN_FOLLOWS: u16 = 7;

// Span payloads, right after the record header (offsets from the payload
// start).

/// `u64` the span's id (non-zero), in every span payload.
pub const SP_ID: usize = 0;
/// `u64` `KIND_SPAN_NEW`: the parent span's id, 0 for a root span.
pub const SP_PARENT: usize = 8;
/// Size of `KIND_SPAN_NEW`'s fixed part; a standard event payload follows
/// (its message is the span's name).
pub const SPAN_NEW_FIXED_LEN: usize = 16;
/// Size of `KIND_SPAN_RECORD`'s fixed part; a standard event payload
/// follows (empty target and message, the recorded values as fields).
pub const SPAN_RECORD_FIXED_LEN: usize = 8;
/// `u8` `KIND_SPAN_STEP`: one of `SPAN_OP_*`.
pub const SP_OP: usize = 8;
/// `u8` `KIND_SPAN_STEP`: the span name's length in bytes; the name follows
/// the fixed part.
pub const SP_NAME_LEN: usize = 9;
/// Size of `KIND_SPAN_STEP`'s fixed part.
pub const SPAN_STEP_FIXED_LEN: usize = 10;
/// `u64` `KIND_SPAN_FOLLOWS`: the id of the span this one follows from.
pub const SP_FOLLOWS: usize = 8;
/// Size of a `KIND_SPAN_FOLLOWS` payload.
pub const SPAN_FOLLOWS_LEN: usize = 16;
/// `SPAN_OP`: the record's thread entered the span.
pub const SPAN_OP_ENTER: u8 = 1;
/// `SPAN_OP`: the record's thread exited the span.
pub const SPAN_OP_EXIT: u8 = 2;
/// `SPAN_OP`: the span was closed (its last handle dropped).
pub const SPAN_OP_CLOSE: u8 = 3;

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
/// Codec: the value's serde data model in CBOR (RFC 8949), as `ciborium`
/// maps it: self-describing (`shm-layout.md`, 6a).
pub const TYPED_CODEC_CBOR: u8 = 2;

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
/// `u16` flags (`EVENT_FLAG_*`).
pub const E_FLAGS: usize = 6;
/// Size of the fixed part; target, message and fields follow.
pub const EVENT_FIXED_LEN: usize = 8;

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

/// The COMMIT tag of a claim: the low 48 bits of `GEN + 1`, so that zero
/// bytes (a chunk never written) never carry the tag of a claim.
#[inline]
pub const fn commit_tag(gen: u64) -> u64 {
    gen.wrapping_add(1) & ((1 << (64 - COMMIT_LEN_BITS)) - 1)
}

/// The COMMIT word that publishes a record of `len` bytes written under the
/// claim `gen` (with `len` 0: the "being written" mark).
///
/// The tag ties the word to one claim, so a commit word left by an earlier
/// claim of the chunk never publishes a record of the current one.
#[inline]
pub const fn commit_word(gen: u64, len: u16) -> u64 {
    commit_tag(gen) << COMMIT_LEN_BITS | len as u64
}

/// A record's stride: its length rounded up to [`RECORD_ALIGN`].
#[inline]
pub const fn stride(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The default chunk size for a ring of `capacity` bytes: `capacity / 128`,
/// kept within [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
#[inline]
pub const fn default_chunk_size(capacity: u64) -> u32 {
    let c = capacity / 128;
    if c < MIN_CHUNK_SIZE as u64 {
        MIN_CHUNK_SIZE
    } else if c > MAX_CHUNK_SIZE as u64 {
        MAX_CHUNK_SIZE
    } else {
        c as u32
    }
}

/// The largest record a ring of `chunk_size`-byte chunks holds.
#[inline]
pub const fn max_record_len(chunk_size: u32) -> usize {
    chunk_size as usize - CHUNK_HEADER_LEN
}

/// Where the data region starts for `chunk_count` chunks: after the header
/// and the chunk table, rounded up to [`TABLE_ALIGN`].
#[inline]
pub const fn data_offset(chunk_count: u32) -> u64 {
    let end = HEADER_LEN as u64 + 8 * chunk_count as u64;
    end.div_ceil(TABLE_ALIGN) * TABLE_ALIGN
}

/// The CRC-32C seed of a claim: the checksum of the file's nonce and the
/// chunk's 64-byte header.
#[inline]
pub fn crc_seed(nonce: u64, chunk_header: &[u8; CHUNK_HEADER_LEN]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&nonce.to_le_bytes()), chunk_header)
}

/// A record's checksum from its claim's seed, its `seq` and the record's
/// bytes (from offset 0 to its stride), in the order `shm-layout.md` gives:
/// `len ‖ seq ‖ bytes [24, stride) ‖ bytes [12, 24)`. The plain form of
/// [`crate::checksum::record_crc`], for readers and tests.
pub fn record_crc_of(seed: u32, seq: u64, record: &[u8]) -> u32 {
    let commit = u64::from_le_bytes(record[R_COMMIT..R_COMMIT + 8].try_into().expect("8 bytes"));
    let len = (commit & ((1 << COMMIT_LEN_BITS) - 1)) as u32;
    let mut crc = crc32c::crc32c_append(seed, &len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &record[RECORD_HEADER_LEN..]);
    crc32c::crc32c_append(crc, &record[R_CRC_START..RECORD_HEADER_LEN])
}

/// Turns a [`CLOCK_TSC`] timestamp into CLOCK_REALTIME nanoseconds with a
/// calibration slot (`shm-layout.md`, 8.5): exact, in 128-bit arithmetic.
#[inline]
pub const fn tsc_to_unix_ns(ts: u64, base_ticks: u64, base_ns: u64, mult: u64) -> u64 {
    if ts >= base_ticks {
        let delta = ((ts - base_ticks) as u128 * mult as u128) >> CLOCK_SHIFT;
        (base_ns as u128 + delta) as u64
    } else {
        let delta = ((base_ticks - ts) as u128 * mult as u128) >> CLOCK_SHIFT;
        if delta > base_ns as u128 {
            0
        } else {
            base_ns - delta as u64
        }
    }
}

// The header's groups do not overlap, fit in the header, and the hot
// counter sits on a cache line of its own (checked at compile time).
const _: () = {
    assert!(H_CLOCK + 4 <= H_PROGRAM);
    assert!(H_NEXT_TICKET % 64 == 0 && H_STATE % 64 == 0);
    assert!(H_SNAPSHOT_WRITER + 4 <= H_CLOCK_CAL);
    assert!(H_CLOCK_SLOT_1 + CLOCK_SLOT_LEN <= H_MEMORY_EVIDENCE);
    assert!(H_CLOCK_BASE_TICKS + CLOCK_SLOT_LEN == H_CLOCK_SLOT_1);
    assert!(H_MEM_CGROUP_LIMIT + 8 <= H_DEATH);
    assert!(H_DEATH_LOCATION + LONG_STR_LEN <= H_DEATH_MESSAGE);
    assert!(H_DEATH_MESSAGE + DEATH_MESSAGE_LEN <= H_DUMP_STATE);
    assert!(H_POD_NAME + LONG_STR_LEN <= H_PM_OFFSET);
    assert!(H_BUILD_ID + BUILD_ID_MAX <= H_NEXT_TICKET);
    assert!(H_DUMP_REGS + 8 * DUMP_REG_SLOTS <= H_DUMP_CODE);
    assert!(H_DUMP_CODE + DUMP_CODE_MAX == HEADER_LEN);
    assert!(M_BUILD_ID + BUILD_ID_MAX <= M_PATH_LEN);
    assert!(M_RANGES + 16 * MODULE_RANGES <= M_RANGE_COUNT);
    assert!(M_PATH + MODULE_PATH_MAX == MODULE_ENTRY_LEN);
    assert!(HEADER_LEN as u64 % TABLE_ALIGN == 0);
    assert!(C_THREAD_NAME + THREAD_NAME_LEN <= CHUNK_HEADER_LEN);
    assert!(MAX_RECORD_LEN < 1 << COMMIT_LEN_BITS);
    assert!(MIN_CAPACITY == MIN_CHUNKS as u64 * MIN_CHUNK_SIZE as u64);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_words_differ_across_claims_and_mark_the_write() {
        let gen = 12345;
        assert_ne!(commit_word(gen, 40), commit_word(gen + 16, 40));
        assert_ne!(commit_word(gen, 0), commit_word(gen, 40));
        assert_eq!(commit_word(gen, 40) >> COMMIT_LEN_BITS, gen + 1);
        assert_ne!(commit_word(0, 0), 0, "zero bytes carry no claim's tag");
        assert_eq!(commit_word(gen, 40) as u16, 40);
    }

    #[test]
    fn stride_rounds_up_to_eight() {
        assert_eq!(stride(24), 24);
        assert_eq!(stride(25), 32);
        assert_eq!(stride(31), 32);
    }

    #[test]
    fn default_chunks_fit_the_bounds() {
        assert_eq!(default_chunk_size(MIN_CAPACITY), MIN_CHUNK_SIZE);
        assert_eq!(default_chunk_size(1 << 20), 8192);
        assert_eq!(default_chunk_size(MAX_CAPACITY), MAX_CHUNK_SIZE);
        assert_eq!(data_offset(16), 8192);
        assert_eq!(data_offset(512), 8192);
        assert_eq!(data_offset(513), 12288);
    }

    #[test]
    fn tsc_conversion_is_exact_both_ways() {
        // 2.5 ns per tick.
        let mult = 5u64 << (CLOCK_SHIFT - 1);
        assert_eq!(tsc_to_unix_ns(1_000, 1_000, 5_000, mult), 5_000);
        assert_eq!(tsc_to_unix_ns(1_004, 1_000, 5_000, mult), 5_010);
        assert_eq!(tsc_to_unix_ns(996, 1_000, 5_000, mult), 4_990);
        assert_eq!(tsc_to_unix_ns(0, 1_000_000, 5, mult), 0);
    }
}
