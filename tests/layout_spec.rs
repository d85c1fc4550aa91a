//! `shm-layout.md` is the authority on the bytes of a ring file; this test
//! holds the code to it.
//!
//! It reads the spec's markdown tables: a row whose first cell is a number is
//! a field (`| offset | size | type | NAME | meaning |`), checked against
//! `blackbox_recorder::layout::H_NAME` (section "Header"), `C_NAME` ("Chunk header",
//! 4.2), `R_NAME` ("Record framing") or `E_NAME` ("Standard event
//! payload"); a row whose first cell is a name in backticks is a constant
//! (`| NAME | value | meaning |`), checked against the code's constant of
//! that name. It checks the spec's formulas against the layout helpers, and
//! builds each worked example (`chunk-example`, `record-example`,
//! `event-example`, `typed-example`) from the code, byte for byte.
//!
//! Then it reads real rings by the spec's offsets alone (the reader's
//! algorithm of section 11, written again here from the spec): rings written
//! and closed by the recorder with either clock, one that wrapped, one with
//! memory evidence from a heartbeat, and three whose writers (`blackbox demo
//! --die`) crashed and recorded the cause. Every record found so is checked
//! against what `blackbox read --json` shows, its time converted as
//! section 8.5 says.
//!
//! Rust cannot list a module's constants, so the lists below name each one;
//! a scan of `recorder/src/layout.rs` makes sure no constant and no helper is
//! missing from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use blackbox_recorder::layout as l;
use blackbox_recorder::{Clock, Field, Level, Recorder};

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shm-layout.md");
const LAYOUT_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../recorder/src/layout.rs");

/// Header fields: name in the spec (the constant without `H_`), offset.
const HEADER_FIELDS: &[(&str, usize)] = &[
    ("MAGIC", l::H_MAGIC),
    ("VERSION", l::H_VERSION),
    ("ENDIAN", l::H_ENDIAN),
    ("HEADER_LEN", l::H_HEADER_LEN),
    ("RECORD_HEADER_LEN", l::H_RECORD_HEADER_LEN),
    ("INCOMPAT_FLAGS", l::H_INCOMPAT_FLAGS),
    ("COMPAT_FLAGS", l::H_COMPAT_FLAGS),
    ("DATA_OFFSET", l::H_DATA_OFFSET),
    ("CAPACITY", l::H_CAPACITY),
    ("NONCE", l::H_NONCE),
    ("START_UNIX_NS", l::H_START_UNIX_NS),
    ("PID", l::H_PID),
    ("MAX_RECORD_LEN", l::H_MAX_RECORD_LEN),
    ("BOOT_ID", l::H_BOOT_ID),
    ("MINOR_VERSION", l::H_MINOR_VERSION),
    ("CHUNK_SIZE", l::H_CHUNK_SIZE),
    ("CHUNK_COUNT", l::H_CHUNK_COUNT),
    ("CHUNK_HEADER_LEN", l::H_CHUNK_HEADER_LEN),
    ("CHUNK_TABLE_OFFSET", l::H_CHUNK_TABLE_OFFSET),
    ("CLOCK", l::H_CLOCK),
    ("PROGRAM", l::H_PROGRAM),
    ("APP_VERSION", l::H_APP_VERSION),
    ("HOSTNAME", l::H_HOSTNAME),
    ("INVOCATION_ID", l::H_INVOCATION_ID),
    ("POD_UID", l::H_POD_UID),
    ("POD_NAMESPACE", l::H_POD_NAMESPACE),
    ("CONTAINER_NAME", l::H_CONTAINER_NAME),
    ("POD_NAME", l::H_POD_NAME),
    ("NEXT_TICKET", l::H_NEXT_TICKET),
    ("STATE", l::H_STATE),
    ("HEARTBEAT_UNIX_NS", l::H_HEARTBEAT_UNIX_NS),
    ("CLOSE_UNIX_NS", l::H_CLOSE_UNIX_NS),
    ("HEARTBEAT_PERIOD_MS", l::H_HEARTBEAT_PERIOD_MS),
    ("WRITERS", l::H_WRITERS),
    ("DROPPED", l::H_DROPPED),
    ("OVERSIZE_DROPS", l::H_OVERSIZE_DROPS),
    ("SNAPSHOT_TRIGGER", l::H_SNAPSHOT_TRIGGER),
    ("SNAPSHOT_SEQ", l::H_SNAPSHOT_SEQ),
    ("SNAPSHOT_WRITER", l::H_SNAPSHOT_WRITER),
    ("CLOCK_CAL_COUNT", l::H_CLOCK_CAL_COUNT),
    ("CLOCK_BASE_TICKS", l::H_CLOCK_BASE_TICKS),
    ("CLOCK_BASE_NS", l::H_CLOCK_BASE_NS),
    ("CLOCK_MULT", l::H_CLOCK_MULT),
    ("CLOCK_SLOT_1", l::H_CLOCK_SLOT_1),
    ("MEM_SAMPLED_UNIX_NS", l::H_MEM_SAMPLED_UNIX_NS),
    ("MEM_RSS_BYTES", l::H_MEM_RSS_BYTES),
    ("MEM_CGROUP_USAGE", l::H_MEM_CGROUP_USAGE),
    ("MEM_CGROUP_LIMIT", l::H_MEM_CGROUP_LIMIT),
    ("MEM_WATCH", l::H_MEM_WATCH),
    ("MEM_CGROUP_VERSION", l::H_MEM_CGROUP_VERSION),
    ("MEM_LIMIT_HIT_UNIX_NS", l::H_MEM_LIMIT_HIT_UNIX_NS),
    ("MEM_LIMIT_HIT_USAGE", l::H_MEM_LIMIT_HIT_USAGE),
    ("MEM_OOM_UNIX_NS", l::H_MEM_OOM_UNIX_NS),
    ("MEM_PEAK", l::H_MEM_PEAK),
    ("MEM_MAX_EVENTS", l::H_MEM_MAX_EVENTS),
    ("MEM_OOM_EVENTS", l::H_MEM_OOM_EVENTS),
    ("MEM_OOM_KILL_EVENTS", l::H_MEM_OOM_KILL_EVENTS),
    ("MEM_OOM_KILL_BASE", l::H_MEM_OOM_KILL_BASE),
    ("MEM_CGROUP_PATH", l::H_MEM_CGROUP_PATH),
    ("DEATH_KIND", l::H_DEATH_KIND),
    ("DEATH_SIGNAL", l::H_DEATH_SIGNAL),
    ("DEATH_SI_CODE", l::H_DEATH_SI_CODE),
    ("DEATH_THREAD_ID", l::H_DEATH_THREAD_ID),
    ("DEATH_FAULT_ADDR", l::H_DEATH_FAULT_ADDR),
    ("DEATH_FLAGS", l::H_DEATH_FLAGS),
    ("DEATH_UNIX_NS", l::H_DEATH_UNIX_NS),
    ("DEATH_STACK_POINTER", l::H_DEATH_STACK_POINTER),
    ("DEATH_THREAD_NAME", l::H_DEATH_THREAD_NAME),
    ("DEATH_LOCATION", l::H_DEATH_LOCATION),
    ("DEATH_MESSAGE", l::H_DEATH_MESSAGE),
    ("PM_OFFSET", l::H_PM_OFFSET),
    ("PM_LEN", l::H_PM_LEN),
    ("PM_STACK_MAX", l::H_PM_STACK_MAX),
    ("MODULES_GEN", l::H_MODULES_GEN),
    ("MODULE_COUNT", l::H_MODULE_COUNT),
    ("MODULE_SLOTS", l::H_MODULE_SLOTS),
    ("MODULE_FLAGS", l::H_MODULE_FLAGS),
    ("BUILD_ID_LEN", l::H_BUILD_ID_LEN),
    ("BUILD_ID", l::H_BUILD_ID),
    ("DUMP_STATE", l::H_DUMP_STATE),
    ("DUMP_THREAD_ID", l::H_DUMP_THREAD_ID),
    ("DUMP_FLAGS", l::H_DUMP_FLAGS),
    ("DUMP_ARCH", l::H_DUMP_ARCH),
    ("DUMP_ENTRY_NS", l::H_DUMP_ENTRY_NS),
    ("DUMP_DONE_NS", l::H_DUMP_DONE_NS),
    ("DUMP_STACK_START", l::H_DUMP_STACK_START),
    ("DUMP_STACK_LEN", l::H_DUMP_STACK_LEN),
    ("DUMP_CODE_LEN", l::H_DUMP_CODE_LEN),
    ("DUMP_CODE_START", l::H_DUMP_CODE_START),
    ("DUMP_STACK_LO", l::H_DUMP_STACK_LO),
    ("DUMP_STACK_HI", l::H_DUMP_STACK_HI),
    ("DUMP_MODULES_GEN", l::H_DUMP_MODULES_GEN),
    ("DUMP_REG_COUNT", l::H_DUMP_REG_COUNT),
    ("DUMP_REGS", l::H_DUMP_REGS),
    ("DUMP_CODE", l::H_DUMP_CODE),
];

/// The header's areas: the constant that starts each (stated in the spec's
/// constant tables), the constant that ends it, and the prefix of the names
/// of the fields that must lie inside it.
const HEADER_AREAS: &[(&str, &str, &str)] = &[
    ("H_CLOCK_CAL", "H_MEMORY_EVIDENCE", "CLOCK_"),
    ("H_MEMORY_EVIDENCE", "H_DEATH", "MEM_"),
    ("H_DEATH", "H_DUMP", "DEATH_"),
    ("H_DUMP", "HEADER_LEN", "DUMP_"),
];

/// Chunk header fields (`C_*`), offsets from the start of the chunk.
const CHUNK_FIELDS: &[(&str, usize)] = &[
    ("GEN", l::C_GEN),
    ("FIRST_SEQ", l::C_FIRST_SEQ),
    ("WRITER_DROPPED", l::C_WRITER_DROPPED),
    ("WRITER", l::C_WRITER),
    ("THREAD_ID", l::C_THREAD_ID),
    ("THREAD_NAME", l::C_THREAD_NAME),
];

/// Record header fields (`R_*`), offsets from the start of the record.
const RECORD_FIELDS: &[(&str, usize)] = &[
    ("COMMIT", l::R_COMMIT),
    ("CRC", l::R_CRC),
    ("KIND", l::R_KIND),
    ("FLAGS", l::R_FLAGS),
    ("TS", l::R_TS),
];

/// Fixed event fields (`E_*`), offsets from the start of the payload.
const EVENT_FIELDS: &[(&str, usize)] = &[
    ("LEVEL", l::E_LEVEL),
    ("FIELD_COUNT", l::E_FIELD_COUNT),
    ("TARGET_LEN", l::E_TARGET_LEN),
    ("MESSAGE_LEN", l::E_MESSAGE_LEN),
    ("FLAGS", l::E_FLAGS),
];

/// Fields whose size the code fixes through another constant.
const FIELD_SIZES: &[(Group, &str, usize, &str)] = &[
    (Group::Header, "MAGIC", l::MAGIC.len(), "MAGIC.len()"),
    (Group::Header, "PROGRAM", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    (
        Group::Header,
        "APP_VERSION",
        l::SHORT_STR_LEN,
        "SHORT_STR_LEN",
    ),
    (Group::Header, "HOSTNAME", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    (
        Group::Header,
        "INVOCATION_ID",
        l::SHORT_STR_LEN,
        "SHORT_STR_LEN",
    ),
    (Group::Header, "POD_UID", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    (
        Group::Header,
        "POD_NAMESPACE",
        l::SHORT_STR_LEN,
        "SHORT_STR_LEN",
    ),
    (
        Group::Header,
        "CONTAINER_NAME",
        l::SHORT_STR_LEN,
        "SHORT_STR_LEN",
    ),
    (Group::Header, "POD_NAME", l::LONG_STR_LEN, "LONG_STR_LEN"),
    (
        Group::Header,
        "CLOCK_SLOT_1",
        l::CLOCK_SLOT_LEN,
        "CLOCK_SLOT_LEN",
    ),
    (
        Group::Header,
        "DEATH_THREAD_NAME",
        l::SHORT_STR_LEN,
        "SHORT_STR_LEN",
    ),
    (
        Group::Header,
        "DEATH_LOCATION",
        l::LONG_STR_LEN,
        "LONG_STR_LEN",
    ),
    (
        Group::Header,
        "DEATH_MESSAGE",
        l::DEATH_MESSAGE_LEN,
        "DEATH_MESSAGE_LEN",
    ),
    (Group::Header, "BUILD_ID", l::BUILD_ID_MAX, "BUILD_ID_MAX"),
    (
        Group::Header,
        "DUMP_REGS",
        8 * l::DUMP_REG_SLOTS,
        "8 * DUMP_REG_SLOTS",
    ),
    (
        Group::Header,
        "DUMP_CODE",
        l::DUMP_CODE_MAX,
        "DUMP_CODE_MAX",
    ),
    (
        Group::Chunk,
        "THREAD_NAME",
        l::THREAD_NAME_LEN,
        "THREAD_NAME_LEN",
    ),
    (
        Group::Header,
        "MEM_CGROUP_PATH",
        l::CGROUP_PATH_LEN,
        "CGROUP_PATH_LEN",
    ),
];

/// A constant's value in the code.
#[derive(Clone, Copy)]
enum Code {
    Int(u128),
    Bytes(&'static [u8]),
}

/// Every other constant the spec must state, by its name in the code.
const CONSTANTS: &[(&str, Code)] = &[
    ("MAGIC", Code::Bytes(&l::MAGIC)),
    ("VERSION", Code::Int(l::VERSION as u128)),
    ("MINOR_VERSION", Code::Int(l::MINOR_VERSION as u128)),
    ("ENDIAN_CHECK", Code::Int(l::ENDIAN_CHECK as u128)),
    ("HEADER_LEN", Code::Int(l::HEADER_LEN as u128)),
    ("CHUNK_HEADER_LEN", Code::Int(l::CHUNK_HEADER_LEN as u128)),
    ("RECORD_HEADER_LEN", Code::Int(l::RECORD_HEADER_LEN as u128)),
    ("RECORD_ALIGN", Code::Int(l::RECORD_ALIGN as u128)),
    ("TABLE_ALIGN", Code::Int(l::TABLE_ALIGN as u128)),
    ("MIN_CAPACITY", Code::Int(l::MIN_CAPACITY as u128)),
    ("MAX_CAPACITY", Code::Int(l::MAX_CAPACITY as u128)),
    ("MIN_CHUNK_SIZE", Code::Int(l::MIN_CHUNK_SIZE as u128)),
    ("MAX_CHUNK_SIZE", Code::Int(l::MAX_CHUNK_SIZE as u128)),
    ("MIN_CHUNKS", Code::Int(l::MIN_CHUNKS as u128)),
    ("MAX_CHUNKS", Code::Int(l::MAX_CHUNKS as u128)),
    ("MAX_RECORD_LEN", Code::Int(l::MAX_RECORD_LEN as u128)),
    ("SHORT_STR_LEN", Code::Int(l::SHORT_STR_LEN as u128)),
    ("LONG_STR_LEN", Code::Int(l::LONG_STR_LEN as u128)),
    ("THREAD_NAME_LEN", Code::Int(l::THREAD_NAME_LEN as u128)),
    ("DEATH_MESSAGE_LEN", Code::Int(l::DEATH_MESSAGE_LEN as u128)),
    ("DEATH_NONE", Code::Int(l::DEATH_NONE as u128)),
    ("DEATH_PANIC", Code::Int(l::DEATH_PANIC as u128)),
    ("DEATH_SIGNAL", Code::Int(l::DEATH_SIGNAL as u128)),
    (
        "DEATH_FLAG_FAULT_ADDR",
        Code::Int(l::DEATH_FLAG_FAULT_ADDR as u128),
    ),
    ("CLOCK_REALTIME_NS", Code::Int(l::CLOCK_REALTIME_NS as u128)),
    ("CLOCK_TSC", Code::Int(l::CLOCK_TSC as u128)),
    ("H_CLOCK_CAL", Code::Int(l::H_CLOCK_CAL as u128)),
    ("CLOCK_SLOTS", Code::Int(l::CLOCK_SLOTS as u128)),
    ("CLOCK_SLOT_LEN", Code::Int(l::CLOCK_SLOT_LEN as u128)),
    ("CLOCK_SHIFT", Code::Int(l::CLOCK_SHIFT as u128)),
    ("H_MEMORY_EVIDENCE", Code::Int(l::H_MEMORY_EVIDENCE as u128)),
    ("H_DEATH", Code::Int(l::H_DEATH as u128)),
    ("CHUNK_FREE", Code::Int(l::CHUNK_FREE as u128)),
    ("CHUNK_OWNED", Code::Int(l::CHUNK_OWNED as u128)),
    ("CHUNK_SEALED", Code::Int(l::CHUNK_SEALED as u128)),
    ("CHUNK_CLAIMED", Code::Int(l::CHUNK_CLAIMED as u128)),
    ("CHUNK_STATE_BITS", Code::Int(l::CHUNK_STATE_BITS as u128)),
    ("COMMIT_LEN_BITS", Code::Int(l::COMMIT_LEN_BITS as u128)),
    ("R_CRC_START", Code::Int(l::R_CRC_START as u128)),
    ("KIND_EVENT", Code::Int(l::KIND_EVENT as u128)),
    ("KIND_RAW", Code::Int(l::KIND_RAW as u128)),
    ("KIND_TYPED", Code::Int(l::KIND_TYPED as u128)),
    ("EVENT_FIXED_LEN", Code::Int(l::EVENT_FIXED_LEN as u128)),
    (
        "EVENT_FLAG_TRUNCATED",
        Code::Int(blackbox_recorder::EVENT_FLAG_TRUNCATED as u128),
    ),
    ("FIELD_I64", Code::Int(l::FIELD_I64 as u128)),
    ("FIELD_U64", Code::Int(l::FIELD_U64 as u128)),
    ("FIELD_F64", Code::Int(l::FIELD_F64 as u128)),
    ("FIELD_BOOL", Code::Int(l::FIELD_BOOL as u128)),
    ("FIELD_STR", Code::Int(l::FIELD_STR as u128)),
    ("FIELD_DEBUG", Code::Int(l::FIELD_DEBUG as u128)),
    ("LEVEL_TRACE", Code::Int(l::LEVEL_TRACE as u128)),
    ("LEVEL_DEBUG", Code::Int(l::LEVEL_DEBUG as u128)),
    ("LEVEL_INFO", Code::Int(l::LEVEL_INFO as u128)),
    ("LEVEL_WARN", Code::Int(l::LEVEL_WARN as u128)),
    ("LEVEL_ERROR", Code::Int(l::LEVEL_ERROR as u128)),
    ("T_NAME_LEN", Code::Int(l::T_NAME_LEN as u128)),
    ("T_CODEC", Code::Int(l::T_CODEC as u128)),
    ("TYPED_FIXED_LEN", Code::Int(l::TYPED_FIXED_LEN as u128)),
    ("MAX_TYPE_NAME", Code::Int(l::MAX_TYPE_NAME as u128)),
    ("TYPED_CODEC_CBOR", Code::Int(l::TYPED_CODEC_CBOR as u128)),
    ("STATE_CREATING", Code::Int(l::STATE_CREATING as u128)),
    ("STATE_RUNNING", Code::Int(l::STATE_RUNNING as u128)),
    ("STATE_EXITED", Code::Int(l::STATE_EXITED as u128)),
    ("STATE_CRASHED", Code::Int(l::STATE_CRASHED as u128)),
    ("H_PM", Code::Int(l::H_PM as u128)),
    ("H_DUMP", Code::Int(l::H_DUMP as u128)),
    ("BUILD_ID_MAX", Code::Int(l::BUILD_ID_MAX as u128)),
    ("DUMP_REG_SLOTS", Code::Int(l::DUMP_REG_SLOTS as u128)),
    ("DUMP_CODE_MAX", Code::Int(l::DUMP_CODE_MAX as u128)),
    ("DUMP_NONE", Code::Int(l::DUMP_NONE as u128)),
    ("DUMP_WRITING", Code::Int(l::DUMP_WRITING as u128)),
    ("DUMP_COMPLETE", Code::Int(l::DUMP_COMPLETE as u128)),
    (
        "DUMP_FLAG_STACK_OVERFLOW",
        Code::Int(l::DUMP_FLAG_STACK_OVERFLOW as u128),
    ),
    (
        "DUMP_FLAG_STACK_SHORT",
        Code::Int(l::DUMP_FLAG_STACK_SHORT as u128),
    ),
    (
        "DUMP_FLAG_STACK_BOUNDS",
        Code::Int(l::DUMP_FLAG_STACK_BOUNDS as u128),
    ),
    (
        "DUMP_FLAG_MODULES_CHANGING",
        Code::Int(l::DUMP_FLAG_MODULES_CHANGING as u128),
    ),
    ("ARCH_X86_64", Code::Int(l::ARCH_X86_64 as u128)),
    ("ARCH_AARCH64", Code::Int(l::ARCH_AARCH64 as u128)),
    ("MODULE_ENTRY_LEN", Code::Int(l::MODULE_ENTRY_LEN as u128)),
    ("MODULE_SLOTS", Code::Int(l::MODULE_SLOTS as u128)),
    ("MODULE_RANGES", Code::Int(l::MODULE_RANGES as u128)),
    ("MODULE_PATH_MAX", Code::Int(l::MODULE_PATH_MAX as u128)),
    ("MODULES_FLAG_FULL", Code::Int(l::MODULES_FLAG_FULL as u128)),
    ("M_LOAD_BIAS", Code::Int(l::M_LOAD_BIAS as u128)),
    ("M_RANGES", Code::Int(l::M_RANGES as u128)),
    ("M_RANGE_COUNT", Code::Int(l::M_RANGE_COUNT as u128)),
    ("M_BUILD_ID_LEN", Code::Int(l::M_BUILD_ID_LEN as u128)),
    ("M_BUILD_ID", Code::Int(l::M_BUILD_ID as u128)),
    ("M_PATH_LEN", Code::Int(l::M_PATH_LEN as u128)),
    ("M_PATH", Code::Int(l::M_PATH as u128)),
    (
        "DEFAULT_STACK_DUMP",
        Code::Int(l::DEFAULT_STACK_DUMP as u128),
    ),
    ("MAX_STACK_DUMP", Code::Int(l::MAX_STACK_DUMP as u128)),
    ("CGROUP_PATH_LEN", Code::Int(l::CGROUP_PATH_LEN as u128)),
    ("MEM_WATCH_NONE", Code::Int(l::MEM_WATCH_NONE as u128)),
    (
        "MEM_WATCH_V2_EVENTS",
        Code::Int(l::MEM_WATCH_V2_EVENTS as u128),
    ),
    (
        "MEM_WATCH_V1_EVENTFD",
        Code::Int(l::MEM_WATCH_V1_EVENTFD as u128),
    ),
    ("MEM_WATCH_SAMPLED", Code::Int(l::MEM_WATCH_SAMPLED as u128)),
    ("KIND_SPAN_NEW", Code::Int(l::KIND_SPAN_NEW as u128)),
    ("KIND_SPAN_RECORD", Code::Int(l::KIND_SPAN_RECORD as u128)),
    ("KIND_SPAN_STEP", Code::Int(l::KIND_SPAN_STEP as u128)),
    ("KIND_SPAN_FOLLOWS", Code::Int(l::KIND_SPAN_FOLLOWS as u128)),
    ("SP_ID", Code::Int(l::SP_ID as u128)),
    ("SP_PARENT", Code::Int(l::SP_PARENT as u128)),
    (
        "SPAN_NEW_FIXED_LEN",
        Code::Int(l::SPAN_NEW_FIXED_LEN as u128),
    ),
    (
        "SPAN_RECORD_FIXED_LEN",
        Code::Int(l::SPAN_RECORD_FIXED_LEN as u128),
    ),
    ("SP_OP", Code::Int(l::SP_OP as u128)),
    ("SP_NAME_LEN", Code::Int(l::SP_NAME_LEN as u128)),
    (
        "SPAN_STEP_FIXED_LEN",
        Code::Int(l::SPAN_STEP_FIXED_LEN as u128),
    ),
    ("SP_FOLLOWS", Code::Int(l::SP_FOLLOWS as u128)),
    ("SPAN_FOLLOWS_LEN", Code::Int(l::SPAN_FOLLOWS_LEN as u128)),
    ("SPAN_OP_ENTER", Code::Int(l::SPAN_OP_ENTER as u128)),
    ("SPAN_OP_EXIT", Code::Int(l::SPAN_OP_EXIT as u128)),
    ("SPAN_OP_CLOSE", Code::Int(l::SPAN_OP_CLOSE as u128)),
];

/// The layout's helper functions, each checked against the spec's formula
/// in `helpers_follow_the_spec_formulas`.
const HELPERS: &[&str] = &[
    "table_word",
    "table_state",
    "table_visits",
    "commit_tag",
    "commit_word",
    "stride",
    "default_chunk_size",
    "max_record_len",
    "data_offset",
    "crc_seed",
    "record_crc_of",
    "tsc_to_unix_ns",
    "pm_len",
];

/// The spec's worked examples (sections 5, 6 and 6a) are built from these.
const EXAMPLE_NONCE: u64 = 0x0123_4567_89AB_CDEF;
const EXAMPLE_GEN: u64 = 0x1_0000_0005;
const EXAMPLE_FIRST_SEQ: u64 = 42;
const EXAMPLE_WRITER_DROPPED: u64 = 0;
const EXAMPLE_WRITER: u32 = 3;
const EXAMPLE_THREAD_ID: u32 = 0x1234;
const EXAMPLE_THREAD_NAME: &[u8] = b"worker";
const EXAMPLE_TS: u64 = 1_700_000_000_123_456_789;
const EXAMPLE_PAYLOAD: &[u8] = b"ping";
/// `event-example`: INFO, target "app", message "hi", field `n` = 7 (u64).
const EVENT_TARGET: &str = "app";
const EVENT_MESSAGE: &str = "hi";
const EVENT_FIELD: (&str, u64) = ("n", 7);
/// `typed-example`: `(21.5f64, true)` named `app::Reading`.
const TYPED_NAME: &str = "app::Reading";
const TYPED_VALUE: (f64, bool) = (21.5, true);

// ---------------------------------------------------------------------------
// Reading the spec.

/// Which table group a field row belongs to, from the section it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Group {
    Header,
    Chunk,
    Record,
    Event,
}

impl Group {
    const ALL: [Group; 4] = [Group::Header, Group::Chunk, Group::Record, Group::Event];

    /// The group of a `## ` or `### ` heading's section, if it has one.
    fn from_heading(title: &str) -> Option<Group> {
        // "2. Header" -> "Header", "4.2 Chunk header" -> "Chunk header"
        let title = title
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim();
        if title == "Header" {
            Some(Group::Header)
        } else if title == "Chunk header" {
            Some(Group::Chunk)
        } else if title.starts_with("Record framing") {
            Some(Group::Record)
        } else if title.starts_with("Standard event payload") {
            Some(Group::Event)
        } else {
            None
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Group::Header => "H_",
            Group::Chunk => "C_",
            Group::Record => "R_",
            Group::Event => "E_",
        }
    }

    fn fields(self) -> &'static [(&'static str, usize)] {
        match self {
            Group::Header => HEADER_FIELDS,
            Group::Chunk => CHUNK_FIELDS,
            Group::Record => RECORD_FIELDS,
            Group::Event => EVENT_FIELDS,
        }
    }

    /// The size the group's rows must tile, and the constant that says so.
    fn len(self) -> (usize, &'static str) {
        match self {
            Group::Header => (l::HEADER_LEN, "HEADER_LEN"),
            Group::Chunk => (l::CHUNK_HEADER_LEN, "CHUNK_HEADER_LEN"),
            Group::Record => (l::RECORD_HEADER_LEN, "RECORD_HEADER_LEN"),
            Group::Event => (l::EVENT_FIXED_LEN, "EVENT_FIXED_LEN"),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::Header => "header",
            Group::Chunk => "chunk header",
            Group::Record => "record header",
            Group::Event => "event fixed part",
        })
    }
}

/// `| offset | size | type | NAME | meaning |`
#[derive(Debug, Clone)]
struct FieldRow {
    line: usize,
    group: Group,
    offset: usize,
    size: usize,
    ty: String,
    /// `None` for a `(reserved)` row.
    name: Option<String>,
}

impl FieldRow {
    fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("`{n}`"),
            None => "(reserved)".to_string(),
        }
    }
}

/// A value as the spec writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpecValue {
    Int(u128),
    Bytes(Vec<u8>),
}

impl fmt::Display for SpecValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecValue::Int(v) => write!(f, "{v} ({v:#x})"),
            SpecValue::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
        }
    }
}

impl Code {
    fn value(self) -> SpecValue {
        match self {
            Code::Int(v) => SpecValue::Int(v),
            Code::Bytes(b) => SpecValue::Bytes(b.to_vec()),
        }
    }
}

/// `| NAME | value | meaning |`
#[derive(Debug, Clone)]
struct ConstRow {
    line: usize,
    name: String,
    value: SpecValue,
}

#[derive(Debug, Default)]
struct Spec {
    fields: Vec<FieldRow>,
    consts: Vec<ConstRow>,
    /// ```` ```hex LABEL ```` blocks.
    hex: HashMap<String, Vec<u8>>,
    /// Rows and blocks that could not be read.
    errors: Vec<String>,
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(SPEC_PATH)
            .unwrap_or_else(|e| panic!("cannot read the spec at {SPEC_PATH}: {e}"));
        Spec::parse(&text)
    }

    fn parse(text: &str) -> Spec {
        let mut spec = Spec::default();
        let mut group = None;
        let mut in_fence = false;
        // The hex block being read: its label and the bytes so far.
        let mut hex: Option<(String, Vec<u8>)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if let Some(info) = line.strip_prefix("```") {
                if in_fence {
                    in_fence = false;
                    if let Some((label, bytes)) = hex.take() {
                        if spec.hex.insert(label.clone(), bytes).is_some() {
                            spec.errors
                                .push(format!("line {n}: a second hex block `{label}`"));
                        }
                    }
                } else {
                    in_fence = true;
                    if let Some(label) = info.trim().strip_prefix("hex ") {
                        hex = Some((label.trim().to_string(), Vec::new()));
                    }
                }
                continue;
            }
            if in_fence {
                if let Some((label, bytes)) = &mut hex {
                    if let Err(e) = parse_hex_line(line, bytes) {
                        spec.errors
                            .push(format!("line {n}: hex block `{label}`: {e}"));
                    }
                }
                continue;
            }
            if let Some(title) = line.strip_prefix("## ") {
                group = Group::from_heading(title);
                continue;
            }
            if let Some(title) = line.strip_prefix("### ") {
                // A subsection keeps its section's group ("### ABI block" of
                // "2. Header"), except the chunk header (4.2), whose section
                // "4. Chunks" has no field group of its own; a subsection
                // after it is no longer the chunk header.
                match Group::from_heading(title) {
                    Some(g) => group = Some(g),
                    None if group == Some(Group::Chunk) => group = None,
                    None => {}
                }
                continue;
            }
            if line.starts_with('|') {
                spec.parse_row(n, line, group);
            }
        }
        if in_fence {
            spec.errors.push("unclosed code block".to_string());
        }
        spec
    }

    fn parse_row(&mut self, n: usize, line: &str, group: Option<Group>) {
        let cells = split_row(line);
        let Some(first) = cells.first() else { return };
        if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
            let Some(group) = group else {
                self.errors.push(format!(
                    "line {n}: a field row outside the Header, Chunk header, Record framing \
                     and Standard event payload sections"
                ));
                return;
            };
            if cells.len() < 5 {
                self.errors.push(format!(
                    "line {n}: a field row needs 5 cells (offset, size, type, name, meaning), \
                     found {}",
                    cells.len()
                ));
                return;
            }
            let size = match cells[1].parse() {
                Ok(s) => s,
                Err(_) => {
                    self.errors
                        .push(format!("line {n}: size {:?} is not a number", cells[1]));
                    return;
                }
            };
            let name = if cells[3] == "(reserved)" {
                None
            } else if let Some(name) = backticked_name(&cells[3]) {
                Some(name.to_string())
            } else {
                self.errors.push(format!(
                    "line {n}: name cell {:?} is neither `NAME` nor (reserved)",
                    cells[3]
                ));
                return;
            };
            self.fields.push(FieldRow {
                line: n,
                group,
                offset: first.parse().expect("digits"),
                size,
                ty: cells[2].trim_matches('`').to_string(),
                name,
            });
        } else if let Some(name) = backticked_name(first) {
            match cells.get(1).map(|v| parse_value(v)) {
                Some(Ok(value)) => self.consts.push(ConstRow {
                    line: n,
                    name: name.to_string(),
                    value,
                }),
                Some(Err(e)) => self
                    .errors
                    .push(format!("line {n}: constant `{name}`: {e}")),
                None => self
                    .errors
                    .push(format!("line {n}: constant `{name}` has no value cell")),
            }
        }
    }

    /// The spec's offset of field `name` in `group`.
    fn offset(&self, group: Group, name: &str) -> usize {
        self.field(group, name).offset
    }

    fn field(&self, group: Group, name: &str) -> &FieldRow {
        self.fields
            .iter()
            .find(|r| r.group == group && r.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("shm-layout.md has no {group} row `{name}`"))
    }

    /// The rows of `group`.
    fn rows(&self, group: Group) -> Vec<&FieldRow> {
        self.fields.iter().filter(|r| r.group == group).collect()
    }

    /// The spec's value of constant `name`.
    fn constant(&self, name: &str) -> &SpecValue {
        &self
            .consts
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("shm-layout.md states no value for `{name}`"))
            .value
    }

    fn int(&self, name: &str) -> u128 {
        match self.constant(name) {
            SpecValue::Int(v) => *v,
            SpecValue::Bytes(_) => panic!("shm-layout.md: `{name}` is not a number"),
        }
    }

    /// [`Spec::int`] as a size or offset.
    fn us(&self, name: &str) -> usize {
        self.int(name) as usize
    }

    fn hex(&self, label: &str) -> &[u8] {
        self.hex
            .get(label)
            .unwrap_or_else(|| panic!("shm-layout.md has no ```hex {label} block"))
    }
}

/// The cells of a markdown table row, trimmed; `\|` is a literal bar.
fn split_row(line: &str) -> Vec<String> {
    let line = line.replace("\\|", "\u{0}");
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().replace('\u{0}', "|"))
        .collect()
}

/// `` `NAME` `` with an upper-case identifier inside.
fn backticked_name(cell: &str) -> Option<&str> {
    let name = cell.strip_prefix('`')?.strip_suffix('`')?;
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(name)
}

/// `1`, `4_096`, `0x01020304` or `"ASCII"`, optionally in backticks.
fn parse_value(cell: &str) -> Result<SpecValue, String> {
    let v = cell.trim().trim_matches('`');
    if let Some(text) = v.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Ok(SpecValue::Bytes(text.as_bytes().to_vec()));
    }
    let digits = v.replace('_', "");
    let parsed = match digits.strip_prefix("0x") {
        Some(hex) => u128::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    parsed
        .map(SpecValue::Int)
        .map_err(|_| format!("cannot read the value {cell:?} (write a number, 0x.. or \"..\")"))
}

/// Size in bytes of `u8`..`u64`, `i8`..`i64`, `[T; N]` and `(T, U, ..)`.
fn type_size(ty: &str) -> Option<usize> {
    let ty = ty.trim();
    match ty {
        "u8" | "i8" => return Some(1),
        "u16" | "i16" => return Some(2),
        "u32" | "i32" => return Some(4),
        "u64" | "i64" => return Some(8),
        _ => {}
    }
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let (elem, count) = inner.rsplit_once(';')?;
        return Some(type_size(elem)? * count.trim().parse::<usize>().ok()?);
    }
    if let Some(inner) = ty.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        return inner.split(',').map(type_size).sum();
    }
    None
}

/// Whether `ty` is one integer (`u16`, `i32`, ..), which the spec aligns.
fn is_integer(ty: &str) -> bool {
    matches!(
        ty.trim(),
        "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "u8" | "i8"
    )
}

/// One line of a hex block: `OFFSET: BYTE BYTE ..  # comment`.
fn parse_hex_line(line: &str, bytes: &mut Vec<u8>) -> Result<(), String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(());
    }
    let mut tokens = line.split_whitespace();
    let label = tokens.next().expect("non-empty line");
    let offset = label
        .strip_suffix(':')
        .and_then(|o| usize::from_str_radix(o, 16).ok())
        .ok_or_else(|| format!("line must start with a hex offset and ':', found {label:?}"))?;
    if offset != bytes.len() {
        return Err(format!(
            "offset label {label} but {:#x} bytes came before it",
            bytes.len()
        ));
    }
    for t in tokens {
        if t.len() != 2 {
            return Err(format!("{t:?} is not a two-digit hex byte"));
        }
        bytes.push(u8::from_str_radix(t, 16).map_err(|_| format!("{t:?} is not a hex byte"))?);
    }
    Ok(())
}

/// What `layout.rs` declares: its `pub const` items, each with the type its
/// doc comment starts with (`` /// `u64` GEN: .. ``), if any, and the names
/// of its `pub fn` and `pub const fn` helpers.
struct LayoutSource {
    consts: Vec<(String, Option<String>)>,
    helpers: Vec<String>,
}

fn layout_source() -> LayoutSource {
    let src = std::fs::read_to_string(LAYOUT_RS)
        .unwrap_or_else(|e| panic!("cannot read {LAYOUT_RS}: {e}"));
    let mut out = LayoutSource {
        consts: Vec::new(),
        helpers: Vec::new(),
    };
    let mut doc: Option<String> = None;
    // Items of `#[cfg(test)] mod tests` are not the layout's.
    for line in src.lines().take_while(|l| !l.starts_with("#[cfg(test)]")) {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.get_or_insert_with(|| d.trim().to_string());
            continue;
        }
        let function = t
            .strip_prefix("pub const fn ")
            .or_else(|| t.strip_prefix("pub fn "));
        if let Some(rest) = function {
            let name = rest.split(['(', '<']).next().unwrap_or(rest).trim();
            out.helpers.push(name.to_string());
        } else if let Some(rest) = t.strip_prefix("pub const ") {
            if let Some((name, _)) = rest.split_once(':') {
                let ty = doc
                    .as_deref()
                    .and_then(|d| d.strip_prefix('`'))
                    .and_then(|d| d.split_once('`'))
                    .map(|(ty, _)| ty.to_string());
                out.consts.push((name.trim().to_string(), ty));
            }
        }
        if !t.starts_with("#[") {
            doc = None;
        }
    }
    out
}

fn assert_no_errors(errors: &[String]) {
    assert!(
        errors.is_empty(),
        "shm-layout.md and the code disagree ({} problem(s)):\n  - {}",
        errors.len(),
        errors.join("\n  - ")
    );
}

/// The little-endian integer of `size` (at most 16) bytes at `offset`.
fn le(bytes: &[u8], offset: usize, size: usize) -> u128 {
    let mut v = [0u8; 16];
    v[..size].copy_from_slice(&bytes[offset..offset + size]);
    u128::from_le_bytes(v)
}

/// The `u64` at `offset`.
fn le64(bytes: &[u8], offset: usize) -> u64 {
    le(bytes, offset, 8) as u64
}

/// The text of a NUL-padded string field.
fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

// ---------------------------------------------------------------------------
// The spec against the layout constants.

#[test]
fn spec_tables_are_well_formed() {
    let spec = Spec::load();
    let mut errors = spec.errors.clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in &spec.consts {
        if let Some(first) = seen.insert(c.name.clone(), c.line) {
            errors.push(format!(
                "constant `{}` is stated twice (lines {first} and {})",
                c.name, c.line
            ));
        }
    }
    let mut seen: HashMap<(Group, String), usize> = HashMap::new();
    for r in &spec.fields {
        if let Some(name) = &r.name {
            if let Some(first) = seen.insert((r.group, name.clone()), r.line) {
                errors.push(format!(
                    "{} field `{name}` has two rows (lines {first} and {})",
                    r.group, r.line
                ));
            }
        }
    }
    for group in Group::ALL {
        if !spec.fields.iter().any(|r| r.group == group) {
            errors.push(format!(
                "shm-layout.md has no {group} table (is its section heading still the one \
                 Group::from_heading looks for?)"
            ));
        }
    }
    for label in [
        "chunk-example",
        "record-example",
        "event-example",
        "typed-example",
    ] {
        if !spec.hex.contains_key(label) {
            errors.push(format!("shm-layout.md has no ```hex {label} block"));
        }
    }
    assert_no_errors(&errors);
}

#[test]
fn field_tables_match_the_layout() {
    let spec = Spec::load();
    let code_types: HashMap<String, String> = layout_source()
        .consts
        .into_iter()
        .filter_map(|(name, ty)| Some((name, ty?)))
        .collect();
    let mut errors = Vec::new();
    for group in Group::ALL {
        let prefix = group.prefix();
        let code: BTreeMap<&str, usize> = group.fields().iter().copied().collect();
        let mut rows = spec.rows(group);

        for r in &rows {
            // The type and the size column agree.
            match type_size(&r.ty) {
                None => errors.push(format!(
                    "line {}: {} field {}: cannot size type {:?} (use u8..u64, i8..i64, [T; N] or (T, U))",
                    r.line,
                    group,
                    r.label(),
                    r.ty
                )),
                Some(s) if s != r.size => errors.push(format!(
                    "line {}: {} field {}: type {} is {s} bytes but the size column says {}",
                    r.line,
                    group,
                    r.label(),
                    r.ty,
                    r.size
                )),
                Some(_) => {}
            }
            let Some(name) = &r.name else { continue };
            // Section 1: every integer field of the header and of a chunk
            // header sits at a multiple of its size; a record's COMMIT is an
            // aligned u64 (records start at multiples of 8).
            let aligned = match group {
                Group::Header | Group::Chunk => is_integer(&r.ty),
                Group::Record => name == "COMMIT",
                Group::Event => false,
            };
            if aligned && r.size > 0 && r.offset % r.size != 0 {
                errors.push(format!(
                    "line {}: {group} field `{name}` ({}) at offset {} is not aligned to its \
                     size, as section 1 says every such field is",
                    r.line, r.ty, r.offset
                ));
            }
            // The offset is the code's.
            match code.get(name.as_str()) {
                None => errors.push(format!(
                    "line {}: the spec lists {group} field `{name}` (offset {}), but the code \
                     has no blackbox_recorder::layout::{prefix}{name}",
                    r.line, r.offset
                )),
                Some(&off) if off != r.offset => errors.push(format!(
                    "{group} field `{name}`: the spec says offset {} (line {}), the code says \
                     {prefix}{name} = {off}",
                    r.offset, r.line
                )),
                Some(_) => {}
            }
            // The type is the one the code's doc comment names.
            if let Some(ty) = code_types.get(&format!("{prefix}{name}")) {
                let squash = |s: &str| s.replace(' ', "");
                if squash(ty) != squash(&r.ty) {
                    errors.push(format!(
                        "{group} field `{name}`: the spec says type {} (line {}), the code's \
                         doc of {prefix}{name} says {ty}",
                        r.ty, r.line
                    ));
                }
            }
        }

        // Every field of the code has a row.
        for (name, off) in &code {
            if !rows.iter().any(|r| r.name.as_deref() == Some(*name)) {
                errors.push(format!(
                    "the code has blackbox_recorder::layout::{prefix}{name} = {off}, but shm-layout.md \
                     has no `{name}` row in its {group} table"
                ));
            }
        }

        // The rows tile the group: no hole, no overlap, the right total.
        rows.sort_by_key(|r| r.offset);
        let mut end = 0;
        for r in &rows {
            if r.offset > end {
                errors.push(format!(
                    "{group}: bytes {end}..{} are described by no row (add a (reserved) row)",
                    r.offset
                ));
            } else if r.offset < end {
                errors.push(format!(
                    "{group}: field {} at offset {} (line {}) overlaps the row before it, which \
                     ends at {end}",
                    r.label(),
                    r.offset,
                    r.line
                ));
            }
            end = end.max(r.offset + r.size);
        }
        let (len, len_name) = group.len();
        if end != len {
            errors.push(format!(
                "{group}: the spec's rows end at {end}, the code's {len_name} is {len}"
            ));
        }
    }

    // Sizes the code fixes through other constants.
    for &(group, name, size, why) in FIELD_SIZES {
        if let Some(r) = spec
            .fields
            .iter()
            .find(|r| r.group == group && r.name.as_deref() == Some(name))
        {
            if r.size != size {
                errors.push(format!(
                    "{group} field `{name}`: the spec says {} bytes (line {}), the code's {why} \
                     is {size}",
                    r.size, r.line
                ));
            }
        }
    }
    assert_no_errors(&errors);
}

#[test]
fn constants_match_the_code() {
    let spec = Spec::load();
    let code: BTreeMap<&str, Code> = CONSTANTS.iter().copied().collect();
    let mut errors = Vec::new();
    for c in &spec.consts {
        match code.get(c.name.as_str()) {
            None => errors.push(format!(
                "line {}: the spec states `{}` = {}, but the code has no such constant",
                c.line, c.name, c.value
            )),
            Some(v) if v.value() != c.value => errors.push(format!(
                "constant `{}`: the spec says {} (line {}), the code says {}",
                c.name,
                c.value,
                c.line,
                v.value()
            )),
            Some(_) => {}
        }
    }
    for (name, v) in &code {
        if !spec.consts.iter().any(|c| c.name == *name) {
            errors.push(format!(
                "the code has `{name}` = {}, but shm-layout.md states no value for it \
                 (add a | `{name}` | value | meaning | row)",
                v.value()
            ));
        }
    }
    assert_no_errors(&errors);
}

#[test]
fn every_layout_constant_is_checked() {
    let mut errors = Vec::new();
    let source = layout_source();
    assert!(
        source.consts.len() > 100,
        "found only {} constants in {LAYOUT_RS}; has the file moved?",
        source.consts.len()
    );
    for (name, _) in &source.consts {
        let in_group = Group::ALL.iter().any(|g| {
            name.strip_prefix(g.prefix())
                .is_some_and(|n| g.fields().iter().any(|(f, _)| *f == n))
        });
        let in_constants = CONSTANTS.iter().any(|(c, _)| c == name);
        if !in_group && !in_constants {
            errors.push(format!(
                "recorder/src/layout.rs declares `{name}`, which this test does not check: \
                 add it to the lists in tests/layout_spec.rs and its row to shm-layout.md"
            ));
        }
    }
    for name in &source.helpers {
        if !HELPERS.contains(&name.as_str()) {
            errors.push(format!(
                "recorder/src/layout.rs declares the helper `{name}`, which this test does not \
                 check: add it to HELPERS and check it against the spec's formula in \
                 helpers_follow_the_spec_formulas"
            ));
        }
    }
    for name in HELPERS {
        if !source.helpers.iter().any(|h| h == name) {
            errors.push(format!(
                "HELPERS names `{name}`, which recorder/src/layout.rs no longer declares"
            ));
        }
    }
    assert_no_errors(&errors);
}

/// The clock calibration, the memory evidence and the death area each hold
/// their own fields, from the area's first byte on, and nothing else but
/// reserved bytes.
#[test]
fn header_areas_hold_their_fields() {
    let spec = Spec::load();
    let code: BTreeMap<&str, Code> = CONSTANTS.iter().copied().collect();
    let code_int = |name: &str| match code.get(name).map(|c| c.value()) {
        Some(SpecValue::Int(v)) => v as usize,
        _ => panic!("`{name}` is not a numeric constant of the lists in this test"),
    };
    let mut errors = Vec::new();
    for &(start_name, end_name, prefix) in HEADER_AREAS {
        // The spec: the area's rows.
        let (start, end) = (spec.us(start_name), spec.us(end_name));
        let mut first = None;
        for r in spec.rows(Group::Header) {
            let ours = r.name.as_deref().is_some_and(|n| n.starts_with(prefix));
            let inside = start <= r.offset && r.offset + r.size <= end;
            if ours && !inside {
                errors.push(format!(
                    "line {}: `{}` (bytes {}..{}) lies outside its area {start_name}..{end_name} \
                     ({start}..{end})",
                    r.line,
                    r.name.as_deref().unwrap_or_default(),
                    r.offset,
                    r.offset + r.size
                ));
            }
            if inside && r.name.is_some() && !ours {
                errors.push(format!(
                    "line {}: {} lies in the area {start_name}..{end_name}, whose fields are \
                     named {prefix}*",
                    r.line,
                    r.label()
                ));
            }
            if r.offset == start {
                first = Some(r);
            }
        }
        match first {
            Some(r) if r.name.as_deref().is_some_and(|n| n.starts_with(prefix)) => {}
            Some(r) => errors.push(format!(
                "line {}: the area {start_name} starts with {}, not with a {prefix}* field",
                r.line,
                r.label()
            )),
            None => errors.push(format!(
                "no header row starts at {start_name} = {start} in shm-layout.md"
            )),
        }
        // The code: its fields with the prefix lie in the code's area.
        let (start, end) = (code_int(start_name), code_int(end_name));
        for &(name, off) in HEADER_FIELDS.iter().filter(|(n, _)| n.starts_with(prefix)) {
            if !(start..end).contains(&off) {
                errors.push(format!(
                    "blackbox_recorder::layout::H_{name} = {off} lies outside {start_name}..{end_name} \
                     ({start}..{end})"
                ));
            }
        }
    }
    assert_no_errors(&errors);
}

/// The calibration's slots (section 2, "Clock calibration") and the cursor's
/// cache line (section 2, "Live counters") are shaped as the spec says.
#[test]
fn clock_slots_and_the_cursor_line_are_shaped_as_the_spec_says() {
    use Group::Header;
    let spec = Spec::load();
    let mut errors = Vec::new();
    let slot_len = spec.us("CLOCK_SLOT_LEN");
    let slots = spec.us("CLOCK_SLOTS");
    let base = spec.offset(Header, "CLOCK_BASE_TICKS");
    // Slot 1: "the same four fields, at the same offsets plus 32".
    let slot_1 = spec.field(Header, "CLOCK_SLOT_1");
    if slot_1.offset != base + slot_len || slot_1.size != slot_len {
        errors.push(format!(
            "CLOCK_SLOT_1 is bytes {}..{} (line {}); slot 0 starts at CLOCK_BASE_TICKS = {base}, \
             so slot 1 must be {}..{} (CLOCK_SLOT_LEN = {slot_len})",
            slot_1.offset,
            slot_1.offset + slot_1.size,
            slot_1.line,
            base + slot_len,
            base + 2 * slot_len
        ));
    }
    if slots != 2 {
        errors.push(format!(
            "CLOCK_SLOTS is {slots}, but the header has rows for slots 0 and 1 only"
        ));
    }
    if base + slots * slot_len > spec.us("H_MEMORY_EVIDENCE") {
        errors.push(format!(
            "{slots} slots of {slot_len} bytes from {base} run past H_MEMORY_EVIDENCE"
        ));
    }
    // The writer (heartbeat.rs) and the reader (header.rs) address a slot's
    // fields as slot + 0, + 8 and + 16.
    for (name, at) in [
        ("CLOCK_BASE_TICKS", 0),
        ("CLOCK_BASE_NS", 8),
        ("CLOCK_MULT", 16),
    ] {
        let r = spec.field(Header, name);
        if r.offset != base + at || r.offset + r.size > base + slot_len {
            errors.push(format!(
                "{name} is at {} (line {}), but the code writes and reads it at slot + {at} = \
                 {} inside the slot's {slot_len} bytes",
                r.offset,
                r.line,
                base + at
            ));
        }
    }
    if spec.offset(Header, "CLOCK_CAL_COUNT") != spec.us("H_CLOCK_CAL") {
        errors.push("CLOCK_CAL_COUNT does not open the calibration at H_CLOCK_CAL".to_string());
    }
    // NEXT_TICKET alone on its 64-byte cache line.
    let cursor = spec.offset(Header, "NEXT_TICKET");
    let line = cursor / 64 * 64..cursor / 64 * 64 + 64;
    for r in spec.rows(Header) {
        let overlaps = r.offset < line.end && line.start < r.offset + r.size;
        if overlaps && r.name.as_deref().is_some_and(|n| n != "NEXT_TICKET") {
            errors.push(format!(
                "line {}: {} shares NEXT_TICKET's cache line {}..{}",
                r.line,
                r.label(),
                line.start,
                line.end
            ));
        }
    }
    assert_no_errors(&errors);
}

// ---------------------------------------------------------------------------
// The spec's formulas and examples against the code.

/// Section 8.5's conversion, written from the spec: exact, in unsigned
/// 128-bit arithmetic, the result cut to 64 bits.
fn spec_tsc_to_ns(ts: u64, base_ticks: u64, base_ns: u64, mult: u64, shift: u32) -> u64 {
    let (ts, base_ticks, base_ns, mult) = (
        u128::from(ts),
        u128::from(base_ticks),
        u128::from(base_ns),
        u128::from(mult),
    );
    if ts >= base_ticks {
        (base_ns + (((ts - base_ticks) * mult) >> shift)) as u64
    } else {
        let back = ((base_ticks - ts) * mult) >> shift;
        base_ns.saturating_sub(back) as u64
    }
}

#[test]
fn helpers_follow_the_spec_formulas() {
    let spec = Spec::load();
    let mut errors = Vec::new();
    // COMMIT = ((GEN + 1) mod 2^48) << 16 | len; 48 = 64 - COMMIT_LEN_BITS.
    let len_bits = spec.int("COMMIT_LEN_BITS") as u32;
    for gen in [
        0u64,
        1,
        15,
        EXAMPLE_GEN,
        (1 << 48) - 2,
        (1 << 48) - 1,
        1 << 48,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let tag = ((u128::from(gen) + 1) % (1u128 << (64 - len_bits))) as u64;
        if l::commit_tag(gen) != tag {
            errors.push(format!(
                "commit tag of GEN {gen:#x}: spec formula {tag:#x}, commit_tag() {:#x}",
                l::commit_tag(gen)
            ));
        }
        for len in [0u16, 24, 28, 960, 65472, u16::MAX] {
            let spec_word = tag << len_bits | u64::from(len);
            let code = l::commit_word(gen, len);
            if spec_word != code {
                errors.push(format!(
                    "COMMIT of len {len} under GEN {gen:#x}: spec formula {spec_word:#x}, \
                     commit_word() {code:#x}"
                ));
            }
        }
    }
    // Table word = VISITS << CHUNK_STATE_BITS | STATE.
    let state_bits = spec.int("CHUNK_STATE_BITS") as u32;
    for visits in [0u64, 1, 2, 1000, (1 << (64 - state_bits)) - 1] {
        for state in ["CHUNK_FREE", "CHUNK_OWNED", "CHUNK_SEALED", "CHUNK_CLAIMED"] {
            let s = spec.int(state) as u64;
            let word = visits << state_bits | s;
            if l::table_word(s, visits) != word
                || l::table_state(word) != s
                || l::table_visits(word) != visits
            {
                errors.push(format!(
                    "table word of {state} with VISITS {visits}: spec {word:#x}, table_word() \
                     {:#x}, table_state() {}, table_visits() {}",
                    l::table_word(s, visits),
                    l::table_state(word),
                    l::table_visits(word)
                ));
            }
        }
    }
    // stride = (len + 7) & !7
    let align = spec.us("RECORD_ALIGN");
    for len in [24usize, 25, 28, 31, 32, 49, 960, 65472] {
        let want = len.div_ceil(align) * align;
        if l::stride(len) != want {
            errors.push(format!(
                "stride of {len}: spec formula {want}, stride() {}",
                l::stride(len)
            ));
        }
    }
    // Section 10: the default chunk size is CAPACITY / 128 kept within
    // MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE.
    let (min_chunk, max_chunk) = (spec.int("MIN_CHUNK_SIZE"), spec.int("MAX_CHUNK_SIZE"));
    let mut c = spec.int("MIN_CAPACITY");
    while c <= spec.int("MAX_CAPACITY") {
        let want = (c / 128).clamp(min_chunk, max_chunk);
        let code = l::default_chunk_size(c as u64);
        if u128::from(code) != want {
            errors.push(format!(
                "default chunk size of a {c}-byte ring: spec formula {want}, \
                 default_chunk_size() {code}"
            ));
        }
        let chunks = c / want;
        if !(spec.int("MIN_CHUNKS")..=spec.int("MAX_CHUNKS")).contains(&chunks) {
            errors.push(format!(
                "a {c}-byte ring of default {want}-byte chunks has {chunks} chunks, outside \
                 MIN_CHUNKS..=MAX_CHUNKS"
            ));
        }
        c *= 2;
    }
    // Header MAX_RECORD_LEN: CHUNK_SIZE - CHUNK_HEADER_LEN.
    let mut chunk = min_chunk;
    while chunk <= max_chunk {
        let want = chunk as usize - spec.us("CHUNK_HEADER_LEN");
        if l::max_record_len(chunk as u32) != want {
            errors.push(format!(
                "max_record_len({chunk}): spec formula {want}, code {}",
                l::max_record_len(chunk as u32)
            ));
        }
        chunk *= 2;
    }
    if spec.int("MAX_RECORD_LEN") != max_chunk - spec.int("CHUNK_HEADER_LEN") {
        errors.push("MAX_RECORD_LEN is not MAX_CHUNK_SIZE - CHUNK_HEADER_LEN".to_string());
    }
    // Section 10: DATA_OFFSET = 4096 + 8·CHUNK_COUNT rounded up to 4096.
    let table_align = spec.int("TABLE_ALIGN") as u64;
    for count in [16u32, 17, 64, 511, 512, 513, 1024, 1 << 20] {
        let end = spec.int("HEADER_LEN") as u64 + 8 * u64::from(count);
        let want = end.div_ceil(table_align) * table_align;
        if l::data_offset(count) != want {
            errors.push(format!(
                "data_offset({count}): spec formula {want}, code {}",
                l::data_offset(count)
            ));
        }
    }
    // Section 9.5: PM_LEN = MODULE_SLOTS·MODULE_ENTRY_LEN + PM_STACK_MAX
    // rounded up to 4096.
    for stack_max in [0u32, 1, 4096, 65536, 65537, 1 << 20] {
        let len =
            (spec.int("MODULE_SLOTS") * spec.int("MODULE_ENTRY_LEN")) as u64 + u64::from(stack_max);
        let want = len.div_ceil(table_align) * table_align;
        if l::pm_len(stack_max) != want {
            errors.push(format!(
                "pm_len({stack_max}): spec formula {want}, code {}",
                l::pm_len(stack_max)
            ));
        }
    }
    // CRC-32C, Castagnoli, with the check value the spec states.
    let check = crc32c::crc32c(b"123456789");
    if check != 0xE306_9283 {
        errors.push(format!(
            "CRC-32C check value: spec says 0xE3069283, crc32c gives {check:#010x}"
        ));
    }
    // CRC over NONCE ‖ chunk header ‖ len ‖ seq ‖ bytes [24, stride) ‖
    // bytes [12, 24), however the code computes it (crc_seed,
    // record_crc_of, checksum::record_crc).
    let body: Vec<u8> = (0..1020u32).map(|i| (i * 31 + 7) as u8).collect();
    let header_a = [0u8; l::CHUNK_HEADER_LEN];
    let mut header_b = [0u8; l::CHUNK_HEADER_LEN];
    for (i, b) in header_b.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(1);
    }
    for (nonce, header, len, seq) in [
        (0u64, header_a, 24u32, 0u64),
        (EXAMPLE_NONCE, header_b, 28, EXAMPLE_FIRST_SEQ),
        (u64::MAX, header_b, 960, u64::MAX),
        (7, header_a, 1024 - 64, 0x0123_4567_89ab_cdef),
    ] {
        // A whole record: COMMIT, CRC (not covered), then bytes 12.. .
        let stride = l::stride(len as usize);
        let mut record = vec![0u8; stride];
        record[..8].copy_from_slice(&l::commit_word(5, len as u16).to_le_bytes());
        record[spec.us("R_CRC_START")..].copy_from_slice(&body[..stride - spec.us("R_CRC_START")]);
        let header_end = spec.us("RECORD_HEADER_LEN");
        let mut cat = nonce.to_le_bytes().to_vec();
        cat.extend_from_slice(&header);
        cat.extend_from_slice(&len.to_le_bytes());
        cat.extend_from_slice(&seq.to_le_bytes());
        cat.extend_from_slice(&record[header_end..]);
        cat.extend_from_slice(&record[spec.us("R_CRC_START")..header_end]);
        let want = crc32c::crc32c(&cat);
        let seed = l::crc_seed(nonce, &header);
        let plain = l::record_crc_of(seed, seq, &record);
        let word = |at: usize, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&record[at..at + n]);
            u64::from_le_bytes(b)
        };
        let fast = blackbox_recorder::checksum::record_crc(
            seed,
            len,
            seq,
            &record[header_end..],
            word(l::R_KIND, 4) as u32,
            word(l::R_TS, 8),
        );
        if want != plain || want != fast {
            errors.push(format!(
                "checksum with nonce {nonce:#x}, len {len} and seq {seq}: spec definition \
                 {want:#010x}, record_crc_of {plain:#010x}, record_crc {fast:#010x}"
            ));
        }
    }
    // Section 8.5.
    let shift = spec.int("CLOCK_SHIFT") as u32;
    let third = (1u64 << shift) / 3; // 3 ticks per ns
    for (ts, base_ticks, base_ns, mult) in [
        (1_000u64, 1_000u64, 5_000u64, 5u64 << (shift - 1)),
        (1_004, 1_000, 5_000, 5 << (shift - 1)),
        (996, 1_000, 5_000, 5 << (shift - 1)),
        (0, 1_000_000, 5, 5 << (shift - 1)),
        (
            7_000_000_123,
            4_000_000_000,
            1_700_000_000_000_000_000,
            third,
        ),
        (1, 4_000_000_000, 1_700_000_000_000_000_000, third),
        (u64::MAX, 0, u64::MAX - 3, u64::MAX),
        (0, u64::MAX, u64::MAX, u64::MAX),
    ] {
        let want = spec_tsc_to_ns(ts, base_ticks, base_ns, mult, shift);
        let code = l::tsc_to_unix_ns(ts, base_ticks, base_ns, mult);
        if want != code {
            errors.push(format!(
                "ts {ts} with BASE_TICKS {base_ticks}, BASE_NS {base_ns}, MULT {mult:#x}: \
                 section 8.5 gives {want}, tsc_to_unix_ns() {code}"
            ));
        }
    }
    assert_no_errors(&errors);
}

/// Compares `spec` bytes with `code` bytes, naming the spec's field at each
/// differing offset.
fn diff_bytes(what: &str, spec: &[u8], code: &[u8], fields: &[&FieldRow]) -> Vec<String> {
    let mut errors = Vec::new();
    if spec.len() != code.len() {
        errors.push(format!(
            "{what}: the spec shows {} bytes, the code makes {}",
            spec.len(),
            code.len()
        ));
    }
    for (i, (s, c)) in spec.iter().zip(code).enumerate() {
        if s != c {
            let field = fields
                .iter()
                .find(|r| (r.offset..r.offset + r.size).contains(&i))
                .map_or_else(|| "payload".to_string(), |r| r.label());
            errors.push(format!(
                "{what}: byte {i:#04x} ({field}): the spec shows {s:02x}, the code makes {c:02x}"
            ));
        }
    }
    if !errors.is_empty() {
        let line = |b: &[u8]| {
            b.chunks(8)
                .enumerate()
                .map(|(i, c)| {
                    let bytes: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{:02x}: {}", i * 8, bytes.join(" "))
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        errors.push(format!("{what}: the code's bytes are {}", line(code)));
    }
    errors
}

/// The chunk header of the spec's worked example, built with the code's
/// offsets.
fn example_chunk_header() -> [u8; l::CHUNK_HEADER_LEN] {
    let mut h = [0u8; l::CHUNK_HEADER_LEN];
    h[l::C_GEN..l::C_GEN + 8].copy_from_slice(&EXAMPLE_GEN.to_le_bytes());
    h[l::C_FIRST_SEQ..l::C_FIRST_SEQ + 8].copy_from_slice(&EXAMPLE_FIRST_SEQ.to_le_bytes());
    h[l::C_WRITER_DROPPED..l::C_WRITER_DROPPED + 8]
        .copy_from_slice(&EXAMPLE_WRITER_DROPPED.to_le_bytes());
    h[l::C_WRITER..l::C_WRITER + 4].copy_from_slice(&EXAMPLE_WRITER.to_le_bytes());
    h[l::C_THREAD_ID..l::C_THREAD_ID + 4].copy_from_slice(&EXAMPLE_THREAD_ID.to_le_bytes());
    h[l::C_THREAD_NAME..l::C_THREAD_NAME + EXAMPLE_THREAD_NAME.len()]
        .copy_from_slice(EXAMPLE_THREAD_NAME);
    h
}

#[test]
fn chunk_example_matches_the_code() {
    let spec = Spec::load();
    let shown = spec.hex("chunk-example");
    let errors = diff_bytes(
        "chunk-example",
        shown,
        &example_chunk_header(),
        &spec.rows(Group::Chunk),
    );
    assert_no_errors(&errors);
}

#[test]
fn record_example_matches_the_code() {
    let spec = Spec::load();
    let header = example_chunk_header();
    let len = l::RECORD_HEADER_LEN + EXAMPLE_PAYLOAD.len();
    let mut rec = vec![0u8; l::stride(len)];
    rec[l::R_COMMIT..l::R_COMMIT + 8]
        .copy_from_slice(&l::commit_word(EXAMPLE_GEN, len as u16).to_le_bytes());
    rec[l::R_KIND..l::R_KIND + 2].copy_from_slice(&l::KIND_RAW.to_le_bytes());
    rec[l::R_TS..l::R_TS + 8].copy_from_slice(&EXAMPLE_TS.to_le_bytes());
    rec[l::RECORD_HEADER_LEN..len].copy_from_slice(EXAMPLE_PAYLOAD);
    // The chunk's first record: seq = FIRST_SEQ.
    let crc = l::record_crc_of(l::crc_seed(EXAMPLE_NONCE, &header), EXAMPLE_FIRST_SEQ, &rec);
    rec[l::R_CRC..l::R_CRC + 4].copy_from_slice(&crc.to_le_bytes());

    let shown = spec.hex("record-example");
    let mut errors = diff_bytes("record-example", shown, &rec, &spec.rows(Group::Record));

    // The shown bytes also follow the spec's own definitions, with the
    // chunk header the spec shows.
    let chunk = spec.hex("chunk-example");
    if shown.len() == rec.len() && chunk.len() == spec.us("CHUNK_HEADER_LEN") {
        use Group::{Chunk, Record};
        let gen = le(chunk, spec.offset(Chunk, "GEN"), 8);
        let len_bits = spec.int("COMMIT_LEN_BITS");
        let commit = ((gen + 1) % (1 << (64 - len_bits))) << len_bits | len as u128;
        let commit_shown = le(shown, spec.offset(Record, "COMMIT"), 8);
        if commit != commit_shown {
            errors.push(format!(
                "record-example: COMMIT shown {commit_shown:#x}, ((GEN + 1) mod 2^48) << 16 | \
                 len with the chunk-example's GEN gives {commit:#x}"
            ));
        }
        // The first record after the chunk header: seq = FIRST_SEQ.
        let seq = le(chunk, spec.offset(Chunk, "FIRST_SEQ"), 8) as u64;
        let mut cat = EXAMPLE_NONCE.to_le_bytes().to_vec();
        cat.extend_from_slice(chunk);
        cat.extend_from_slice(&(len as u32).to_le_bytes());
        cat.extend_from_slice(&seq.to_le_bytes());
        let header_end = spec.us("RECORD_HEADER_LEN");
        cat.extend_from_slice(&shown[header_end..]);
        cat.extend_from_slice(&shown[spec.us("R_CRC_START")..header_end]);
        let want = crc32c::crc32c(&cat);
        let got = le(shown, spec.offset(Record, "CRC"), 4) as u32;
        if want != got {
            errors.push(format!(
                "record-example: CRC shown {got:#010x}, the spec's definition (NONCE ‖ \
                 chunk-example ‖ len ‖ seq {seq} ‖ bytes [24, 32) ‖ bytes [12, 24)) gives \
                 {want:#010x}"
            ));
        }
        let ts = le(shown, spec.offset(Record, "TS"), 8);
        if ts != u128::from(EXAMPLE_TS) {
            errors.push(format!(
                "record-example: TS shown {ts}, the text says {EXAMPLE_TS}"
            ));
        }
    }
    assert_no_errors(&errors);
}

/// `event-example` from the code's offsets and codes.
fn example_event_payload() -> Vec<u8> {
    let (name, value) = EVENT_FIELD;
    let mut p = vec![0u8; l::EVENT_FIXED_LEN];
    p[l::E_LEVEL] = l::LEVEL_INFO;
    p[l::E_FIELD_COUNT] = 1;
    p[l::E_TARGET_LEN..l::E_TARGET_LEN + 2]
        .copy_from_slice(&(EVENT_TARGET.len() as u16).to_le_bytes());
    p[l::E_MESSAGE_LEN..l::E_MESSAGE_LEN + 2]
        .copy_from_slice(&(EVENT_MESSAGE.len() as u16).to_le_bytes());
    p.extend_from_slice(EVENT_TARGET.as_bytes());
    p.extend_from_slice(EVENT_MESSAGE.as_bytes());
    p.push(l::FIELD_U64);
    p.push(name.len() as u8);
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(&value.to_le_bytes());
    p
}

/// `typed-example` from the code's offsets and codec.
fn example_typed_payload() -> Vec<u8> {
    let mut p = vec![0u8; l::TYPED_FIXED_LEN];
    p[l::T_NAME_LEN..l::T_NAME_LEN + 2].copy_from_slice(&(TYPED_NAME.len() as u16).to_le_bytes());
    p[l::T_CODEC] = l::TYPED_CODEC_CBOR;
    p.extend_from_slice(TYPED_NAME.as_bytes());
    p.extend(blackbox_recorder::typed::codec::encode_to_vec(&TYPED_VALUE).expect("encode"));
    p
}

/// The event and typed examples, built from the layout's constants, and
/// all three record examples as the recorder itself writes them.
#[test]
fn payload_examples_are_what_the_recorder_writes() {
    let spec = Spec::load();
    let mut errors = Vec::new();
    let event = spec.hex("event-example");
    let typed = spec.hex("typed-example");
    errors.extend(diff_bytes(
        "event-example",
        event,
        &example_event_payload(),
        &spec.rows(Group::Event),
    ));
    errors.extend(diff_bytes(
        "typed-example",
        typed,
        &example_typed_payload(),
        &[],
    ));

    // The recorder's own bytes.
    let dir = TempDir::new("examples");
    let path = dir.path("examples.ring");
    let rec = Recorder::builder(&path)
        .capacity(l::MIN_CAPACITY)
        .heartbeat(None)
        .clock(Clock::Realtime)
        .create()
        .expect("create a ring");
    let (name, value) = EVENT_FIELD;
    rec.log(
        Level::Info,
        EVENT_TARGET,
        EVENT_MESSAGE,
        &[Field::new(name, value)],
    )
    .expect("append the event");
    rec.record_as(TYPED_NAME, &TYPED_VALUE)
        .expect("append the typed value");
    rec.append(EXAMPLE_PAYLOAD).expect("append the raw record");
    rec.close();
    let file = std::fs::read(&path).expect("read the ring");
    let walk = walk_by_the_spec(&spec, &file);
    errors.extend(walk.corrupt.iter().map(|e| format!("examples ring: {e}")));
    match &walk.records[..] {
        [e, t, r] => {
            let kinds = [e.kind, t.kind, r.kind];
            let want = [
                spec.int("KIND_EVENT"),
                spec.int("KIND_TYPED"),
                spec.int("KIND_RAW"),
            ];
            if kinds != want {
                errors.push(format!(
                    "the recorder wrote records of kinds {kinds:?}, expected {want:?}"
                ));
            }
            let fields = spec.rows(Group::Event);
            errors.extend(diff_bytes(
                "event-example (recorder)",
                event,
                e.payload(),
                &fields,
            ));
            errors.extend(diff_bytes(
                "typed-example (recorder)",
                typed,
                t.payload(),
                &[],
            ));
            // The raw record: the example but for COMMIT's tag, CRC and TS,
            // which depend on the claim, the file and the time.
            let shown = spec.hex("record-example");
            let mut want = shown.to_vec();
            for name in ["COMMIT", "CRC", "TS"] {
                let f = spec.field(Group::Record, name);
                want[f.offset..f.offset + f.size]
                    .copy_from_slice(&r.bytes[f.offset..f.offset + f.size]);
            }
            errors.extend(diff_bytes(
                "record-example (recorder, but COMMIT, CRC, TS)",
                &want,
                &r.bytes,
                &spec.rows(Group::Record),
            ));
            let len_bits = spec.int("COMMIT_LEN_BITS");
            let shown_len = le(shown, spec.offset(Group::Record, "COMMIT"), 8) % (1 << len_bits);
            if r.len as u128 != shown_len {
                errors.push(format!(
                    "the recorder's raw record has len {}, the example {shown_len}",
                    r.len
                ));
            }
        }
        other => errors.push(format!(
            "the recorder wrote {} records, expected the event, the typed value and the raw \
             record",
            other.len()
        )),
    }
    assert_no_errors(&errors);
}

// ---------------------------------------------------------------------------
// Reading real rings by the spec alone.

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("layout-spec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A header field of `file`, at the spec's offset with the spec's size.
fn hfield(spec: &Spec, file: &[u8], name: &str) -> u128 {
    let r = spec.field(Group::Header, name);
    le(file, r.offset, r.size)
}

/// The bytes of a header field.
fn hbytes<'a>(spec: &Spec, file: &'a [u8], name: &str) -> &'a [u8] {
    let r = spec.field(Group::Header, name);
    &file[r.offset..r.offset + r.size]
}

/// A record found by the walk (section 11, step 5).
#[derive(Debug, Clone)]
struct SpecRecord {
    /// Chunk index, and offset in the chunk.
    chunk: usize,
    offset: usize,
    writer: u32,
    seq: u64,
    len: usize,
    kind: u128,
    flags: u128,
    ts: u64,
    /// The chunk's `THREAD_ID`.
    thread_id: u32,
    /// The record's bytes, `stride` of them.
    bytes: Vec<u8>,
    payload_at: usize,
}

impl SpecRecord {
    fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_at..self.len]
    }
}

/// A chunk whose table word and header are valid, as the walk saw it.
#[derive(Debug)]
struct SpecChunk {
    index: usize,
    state: u128,
    visits: u128,
    gen: u64,
    first_seq: u64,
    writer_dropped: u64,
    writer: u32,
    thread_id: u32,
    thread_name: String,
    /// Its records, as indexes into [`Walk::records`].
    records: Vec<usize>,
    /// Where the walk stopped, and the COMMIT word it found there (`None`:
    /// at the end of the chunk).
    end: usize,
    end_commit: Option<u64>,
}

/// A ring read with the spec's offsets and rules only.
#[derive(Debug)]
struct Walk {
    chunk_size: usize,
    chunk_count: usize,
    data_offset: usize,
    /// Every chunk table word.
    table: Vec<u128>,
    chunks: Vec<SpecChunk>,
    /// Chunks left `CHUNK_CLAIMED` (taken, their header not written yet).
    claimed: Vec<usize>,
    records: Vec<SpecRecord>,
    torn: usize,
    /// What no working writer makes: damaged words and headers, impossible
    /// lengths, checksums that do not match.
    corrupt: Vec<String>,
}

impl Walk {
    /// The bytes of chunk `i`.
    fn chunk<'a>(&self, file: &'a [u8], i: usize) -> &'a [u8] {
        let at = self.data_offset + i * self.chunk_size;
        &file[at..at + self.chunk_size]
    }

    /// The valid chunks of `writer`, in `FIRST_SEQ` order.
    fn chunks_of(&self, writer: u32) -> Vec<&SpecChunk> {
        let mut chunks: Vec<&SpecChunk> =
            self.chunks.iter().filter(|c| c.writer == writer).collect();
        chunks.sort_by_key(|c| c.first_seq);
        chunks
    }

    fn record(&self, writer: u32, seq: u64) -> Option<&SpecRecord> {
        self.records
            .iter()
            .find(|r| r.writer == writer && r.seq == seq)
    }
}

/// Reads `file` as section 11 says (steps 2, 4 and 5), with the spec's
/// offsets, codes and checksum only: no helper of the code.
fn walk_by_the_spec(spec: &Spec, file: &[u8]) -> Walk {
    use Group::{Chunk, Record};
    let h = |name: &str| hfield(spec, file, name) as usize;
    let (chunk_size, chunk_count) = (h("CHUNK_SIZE"), h("CHUNK_COUNT"));
    let (data_offset, table_offset) = (h("DATA_OFFSET"), h("CHUNK_TABLE_OFFSET"));
    assert!(
        chunk_size > 0 && file.len() >= data_offset + chunk_size * chunk_count,
        "the ring is shorter than its header says"
    );
    let nonce = hbytes(spec, file, "NONCE");
    let head_len = spec.us("CHUNK_HEADER_LEN");
    let rec_len = spec.us("RECORD_HEADER_LEN");
    let align = spec.us("RECORD_ALIGN");
    let crc_start = spec.us("R_CRC_START");
    let state_bits = spec.int("CHUNK_STATE_BITS");
    let len_bits = spec.int("COMMIT_LEN_BITS");
    let max = (chunk_size - head_len).min(h("MAX_RECORD_LEN").max(rec_len));
    let field = |group: Group, name: &str, bytes: &[u8], base: usize| {
        let r = spec.field(group, name);
        le(bytes, base + r.offset, r.size)
    };
    let mut walk = Walk {
        chunk_size,
        chunk_count,
        data_offset,
        table: (0..chunk_count)
            .map(|i| le(file, table_offset + 8 * i, 8))
            .collect(),
        chunks: Vec::new(),
        claimed: Vec::new(),
        records: Vec::new(),
        torn: 0,
        corrupt: Vec::new(),
    };
    for i in 0..chunk_count {
        let word = walk.table[i];
        let state = word % (1 << state_bits);
        let visits = word >> state_bits;
        if state == spec.int("CHUNK_FREE") && visits == 0 {
            continue;
        }
        if state == spec.int("CHUNK_CLAIMED") {
            // What it holds left the window with the claim.
            walk.claimed.push(i);
            continue;
        }
        if state != spec.int("CHUNK_OWNED") && state != spec.int("CHUNK_SEALED") {
            walk.corrupt
                .push(format!("chunk {i}: table word {word:#x} is damaged"));
            continue;
        }
        let chunk = walk.chunk(file, i);
        let header = &chunk[..head_len];
        let gen = field(Chunk, "GEN", header, 0) as u64;
        if gen as usize % chunk_count != i || u128::from(gen / chunk_count as u64) >= visits {
            walk.corrupt.push(format!(
                "chunk {i}: GEN {gen} does not belong to chunk {i} with VISITS {visits}"
            ));
            continue;
        }
        let thread_name = {
            let r = spec.field(Chunk, "THREAD_NAME");
            c_str(&header[r.offset..r.offset + r.size])
        };
        let mut c = SpecChunk {
            index: i,
            state,
            visits,
            gen,
            first_seq: field(Chunk, "FIRST_SEQ", header, 0) as u64,
            writer_dropped: field(Chunk, "WRITER_DROPPED", header, 0) as u64,
            writer: field(Chunk, "WRITER", header, 0) as u32,
            thread_id: field(Chunk, "THREAD_ID", header, 0) as u32,
            thread_name,
            records: Vec::new(),
            end: chunk_size,
            end_commit: None,
        };
        // Checksum prefix: NONCE ‖ the chunk header.
        let mut prefix = nonce.to_vec();
        prefix.extend_from_slice(header);
        let tag = (u128::from(gen) + 1) % (1 << (64 - len_bits));
        let mut offset = head_len;
        let mut k = 0u64;
        while offset + rec_len <= chunk_size {
            let commit = field(Record, "COMMIT", chunk, offset);
            if commit >> len_bits != tag {
                c.end = offset;
                c.end_commit = Some(commit as u64);
                break;
            }
            let len = (commit % (1 << len_bits)) as usize;
            if len == 0 {
                walk.torn += 1;
                c.end = offset;
                c.end_commit = Some(commit as u64);
                break;
            }
            let stride = len.div_ceil(align) * align;
            if len < rec_len || len > max || offset + stride > chunk_size {
                walk.corrupt.push(format!(
                    "chunk {i}: the record at {offset} has the impossible length {len}"
                ));
                c.end = offset;
                c.end_commit = Some(commit as u64);
                break;
            }
            let bytes = &chunk[offset..offset + stride];
            let seq = c.first_seq + k;
            let mut cat = prefix.clone();
            cat.extend_from_slice(&(len as u32).to_le_bytes());
            cat.extend_from_slice(&seq.to_le_bytes());
            cat.extend_from_slice(&bytes[spec.us("RECORD_HEADER_LEN")..]);
            cat.extend_from_slice(&bytes[crc_start..spec.us("RECORD_HEADER_LEN")]);
            let crc = field(Record, "CRC", bytes, 0);
            if crc != u128::from(crc32c::crc32c(&cat)) {
                walk.corrupt.push(format!(
                    "chunk {i}: the record at {offset} (writer {}, seq {}) fails its CRC",
                    c.writer,
                    c.first_seq + k
                ));
            } else {
                c.records.push(walk.records.len());
                walk.records.push(SpecRecord {
                    chunk: i,
                    offset,
                    writer: c.writer,
                    seq: c.first_seq + k,
                    len,
                    kind: field(Record, "KIND", bytes, 0),
                    flags: field(Record, "FLAGS", bytes, 0),
                    ts: field(Record, "TS", bytes, 0) as u64,
                    thread_id: c.thread_id,
                    bytes: bytes.to_vec(),
                    payload_at: rec_len,
                });
            }
            offset += stride;
            k += 1;
        }
        if offset + rec_len > chunk_size {
            c.end = offset;
        }
        walk.chunks.push(c);
    }
    walk
}

/// The current calibration slot of a `CLOCK_TSC` ring (section 8.5):
/// `(BASE_TICKS, BASE_NS, MULT)` of slot `(CLOCK_CAL_COUNT - 1) mod 2`.
fn current_calibration(spec: &Spec, file: &[u8]) -> Option<(u64, u64, u64)> {
    let count = hfield(spec, file, "CLOCK_CAL_COUNT");
    let slot = count.checked_sub(1)? % spec.int("CLOCK_SLOTS");
    let shift = slot as usize * spec.us("CLOCK_SLOT_LEN");
    let at = |name: &str| le64(file, spec.offset(Group::Header, name) + shift);
    let cal = (
        at("CLOCK_BASE_TICKS"),
        at("CLOCK_BASE_NS"),
        at("CLOCK_MULT"),
    );
    (cal.2 != 0).then_some(cal)
}

/// A record's time as CLOCK_REALTIME nanoseconds, as section 8.5 says.
fn spec_unix_ns(spec: &Spec, file: &[u8], ts: u64) -> u64 {
    if hfield(spec, file, "CLOCK") != spec.int("CLOCK_TSC") {
        return ts;
    }
    match current_calibration(spec, file) {
        Some((base_ticks, base_ns, mult)) => spec_tsc_to_ns(
            ts,
            base_ticks,
            base_ns,
            mult,
            spec.int("CLOCK_SHIFT") as u32,
        ),
        None => ts,
    }
}

/// RFC 3339 in UTC with nanoseconds, computed independently of the product
/// (days to civil date, after H. Hinnant).
fn rfc3339_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let z = (secs / 86_400) as i64 + 719_468;
    let rem = secs % 86_400;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One record as `blackbox read --json` shows it.
#[derive(Debug)]
struct Shown {
    writer: u32,
    seq: u64,
    ts: String,
    thread_id: u32,
}

/// `blackbox read RING --json`, in its order.
fn read_json(path: &Path) -> Result<Vec<Shown>, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blackbox"))
        .arg("read")
        .arg(path)
        .arg("--json")
        .output()
        .map_err(|e| format!("cannot run blackbox read: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "blackbox read --json {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
            let int = |k: &str| {
                v[k].as_u64()
                    .ok_or_else(|| format!("no integer {k:?} in {line}"))
            };
            Ok(Shown {
                writer: int("writer")? as u32,
                seq: int("seq")?,
                ts: v["ts"]
                    .as_str()
                    .ok_or_else(|| format!("no \"ts\" in {line}"))?
                    .to_string(),
                thread_id: int("thread_id")? as u32,
            })
        })
        .collect()
}

/// What every ring a working writer leaves must satisfy, read by the spec:
/// its ABI block, chunk table, chunk headers and records, and what
/// `blackbox read --json` makes of it. Returns the walk, for the caller's
/// own checks, and the problems found.
fn check_ring_by_the_spec(spec: &Spec, path: &Path, file: &[u8]) -> (Walk, Vec<String>) {
    use Group::{Chunk, Header};
    let mut errors = Vec::new();
    let h = |name: &str| hfield(spec, file, name);

    // The ABI block (sections 2 and 3).
    if SpecValue::Bytes(hbytes(spec, file, "MAGIC").to_vec()) != *spec.constant("MAGIC") {
        errors.push(format!(
            "MAGIC is {:?}, the spec says {}",
            String::from_utf8_lossy(hbytes(spec, file, "MAGIC")),
            spec.constant("MAGIC")
        ));
    }
    let (capacity, chunk_size, count) = (h("CAPACITY"), h("CHUNK_SIZE"), h("CHUNK_COUNT"));
    let table_end = h("CHUNK_TABLE_OFFSET") + 8 * count;
    let table_align = spec.int("TABLE_ALIGN");
    for (name, want) in [
        ("VERSION", spec.int("VERSION")),
        ("MINOR_VERSION", spec.int("MINOR_VERSION")),
        ("ENDIAN", spec.int("ENDIAN_CHECK")),
        ("HEADER_LEN", spec.int("HEADER_LEN")),
        ("RECORD_HEADER_LEN", spec.int("RECORD_HEADER_LEN")),
        ("CHUNK_HEADER_LEN", spec.int("CHUNK_HEADER_LEN")),
        // "the chunk table follows" the header.
        ("CHUNK_TABLE_OFFSET", spec.int("HEADER_LEN")),
        ("INCOMPAT_FLAGS", 0),
        ("COMPAT_FLAGS", 0),
        ("CHUNK_COUNT", capacity / chunk_size.max(1)),
        (
            "MAX_RECORD_LEN",
            chunk_size.saturating_sub(spec.int("CHUNK_HEADER_LEN")),
        ),
        // Section 10: 4096 + 8·CHUNK_COUNT rounded up to 4096, then the
        // postmortem area (section 9.5).
        ("PM_OFFSET", table_end.div_ceil(table_align) * table_align),
        (
            "DATA_OFFSET",
            table_end.div_ceil(table_align) * table_align + h("PM_LEN"),
        ),
        (
            "PM_LEN",
            (spec.int("MODULE_SLOTS") * spec.int("MODULE_ENTRY_LEN") + h("PM_STACK_MAX"))
                .div_ceil(table_align)
                * table_align,
        ),
    ] {
        if h(name) != want {
            errors.push(format!(
                "header {name} is {} ({:#x}), the spec says {want} ({want:#x})",
                h(name),
                h(name)
            ));
        }
    }
    let pow2_in = |v: u128, lo: &str, hi: &str| {
        v.is_power_of_two() && (spec.int(lo)..=spec.int(hi)).contains(&v)
    };
    if !pow2_in(capacity, "MIN_CAPACITY", "MAX_CAPACITY")
        || !pow2_in(chunk_size, "MIN_CHUNK_SIZE", "MAX_CHUNK_SIZE")
        || !(spec.int("MIN_CHUNKS")..=spec.int("MAX_CHUNKS")).contains(&count)
    {
        errors.push(format!(
            "CAPACITY {capacity}, CHUNK_SIZE {chunk_size}, CHUNK_COUNT {count} are outside the \
             spec's bounds"
        ));
    }
    let clock = h("CLOCK");
    if clock != spec.int("CLOCK_REALTIME_NS") && clock != spec.int("CLOCK_TSC") {
        errors.push(format!("CLOCK {clock} is no CLOCK_* code"));
    }
    let file_len = h("DATA_OFFSET") + capacity;
    if file.len() as u128 != file_len {
        errors.push(format!(
            "the file is {} bytes, DATA_OFFSET + CAPACITY is {file_len}",
            file.len()
        ));
    }
    // Reserved bytes are zero; so is the calibration of a realtime ring.
    for r in spec.rows(Header) {
        let zero = match r.name.as_deref() {
            None => true,
            Some(n) => n.starts_with("CLOCK_") && clock != spec.int("CLOCK_TSC"),
        };
        if zero && file[r.offset..r.offset + r.size].iter().any(|&b| b != 0) {
            errors.push(format!(
                "header {} (bytes {}..{}) is not zero",
                r.label(),
                r.offset,
                r.offset + r.size
            ));
        }
    }
    if file_len > file.len() as u128 {
        // Nothing more can be read by the header's offsets.
        assert_no_errors(&errors);
    }
    // The padding runs up to the postmortem area (section 9.5), if any.
    let data = match h("PM_OFFSET") as usize {
        0 => h("DATA_OFFSET") as usize,
        pm => pm,
    };
    if file[table_end as usize..data].iter().any(|&b| b != 0) {
        errors.push(format!(
            "the chunk table's padding {table_end}..{data} is not zero"
        ));
    }

    let walk = walk_by_the_spec(spec, file);
    for e in &walk.corrupt {
        errors.push(e.clone());
    }
    if !walk.claimed.is_empty() {
        errors.push(format!(
            "chunks {:?} are left CHUNK_CLAIMED, but no claim was in flight",
            walk.claimed
        ));
    }
    if walk.torn != 0 {
        errors.push(format!(
            "{} torn record(s), but no append was in flight",
            walk.torn
        ));
    }
    // Section 4.1: every ticket below NEXT_TICKET was visited exactly once.
    let visits: u128 = walk
        .table
        .iter()
        .map(|w| w >> spec.int("CHUNK_STATE_BITS"))
        .sum();
    if visits != h("NEXT_TICKET") {
        errors.push(format!(
            "the table words' VISITS add up to {visits}, NEXT_TICKET is {}",
            h("NEXT_TICKET")
        ));
    }
    // A chunk never claimed holds nothing (section 10: it stays zero).
    for (i, &word) in walk.table.iter().enumerate() {
        if word == 0 && walk.chunk(file, i).iter().any(|&b| b != 0) {
            errors.push(format!("chunk {i} was never claimed but is not zero"));
        }
    }
    let kinds = [
        spec.int("KIND_EVENT"),
        spec.int("KIND_RAW"),
        spec.int("KIND_TYPED"),
    ];
    for c in &walk.chunks {
        let chunk = walk.chunk(file, c.index);
        for r in spec.rows(Chunk).iter().filter(|r| r.name.is_none()) {
            if chunk[r.offset..r.offset + r.size].iter().any(|&b| b != 0) {
                errors.push(format!(
                    "chunk {}: reserved header bytes {}..{} are not zero",
                    c.index,
                    r.offset,
                    r.offset + r.size
                ));
            }
        }
        // On the first claim of a chunk, nothing follows its records.
        if (c.gen as usize) < walk.chunk_count && chunk[c.end..].iter().any(|&b| b != 0) {
            errors.push(format!(
                "chunk {} (first claim): bytes after its last record, from {}, are not zero",
                c.index, c.end
            ));
        }
        if c.records.is_empty() {
            errors.push(format!("chunk {} was claimed but holds no record", c.index));
        }
    }
    for r in &walk.records {
        if r.flags != 0 {
            errors.push(format!(
                "record ({}, {}): FLAGS {}, zero in version 2",
                r.writer, r.seq, r.flags
            ));
        }
        if !kinds.contains(&r.kind) {
            errors.push(format!(
                "record ({}, {}): KIND {} is none of KIND_*",
                r.writer, r.seq, r.kind
            ));
        }
        if r.bytes[r.len..].iter().any(|&b| b != 0) {
            errors.push(format!(
                "record ({}, {}): padding {:?} is not zero",
                r.writer,
                r.seq,
                &r.bytes[r.len..]
            ));
        }
    }
    // Each writer: one run without holes (section 4.1), at most one chunk
    // owned (7.2), and a chunk left only when the next record did not fit.
    let writers: BTreeSet<u32> = walk.chunks.iter().map(|c| c.writer).collect();
    for &w in &writers {
        let chunks = walk.chunks_of(w);
        let owned = chunks
            .iter()
            .filter(|c| c.state == spec.int("CHUNK_OWNED"))
            .count();
        if owned > 1 {
            errors.push(format!("writer {w} owns {owned} chunks at once"));
        }
        for pair in chunks.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let next = a.first_seq + a.records.len() as u64;
            if b.first_seq != next {
                errors.push(format!(
                    "writer {w}: chunk {} holds seq {}..{next}, its next chunk {} starts at {}",
                    a.index, a.first_seq, b.index, b.first_seq
                ));
            }
            if b.gen <= a.gen {
                errors.push(format!(
                    "writer {w}: chunk {} (GEN {}) follows chunk {} (GEN {}) in seq but was \
                     claimed first",
                    b.index, b.gen, a.index, a.gen
                ));
            }
            if a.state != spec.int("CHUNK_SEALED") {
                errors.push(format!(
                    "writer {w}: chunk {} is not sealed, but the writer went on to chunk {}",
                    a.index, b.index
                ));
            }
            if let Some(&first) = b.records.first() {
                let stride = walk.records[first].bytes.len();
                if a.end + stride <= walk.chunk_size {
                    errors.push(format!(
                        "writer {w}: chunk {} ends at {} with room for the next record \
                         ({stride} bytes), which went to chunk {}",
                        a.index, a.end, b.index
                    ));
                }
            }
        }
    }

    // What the reader shows: the same records, the same threads, and times
    // converted as section 8.5 says, to the nanosecond.
    match read_json(path) {
        Err(e) => errors.push(e),
        Ok(shown) => {
            let ours: BTreeMap<(u32, u64), &SpecRecord> = walk
                .records
                .iter()
                .map(|r| ((r.writer, r.seq), r))
                .collect();
            let theirs: BTreeSet<(u32, u64)> = shown.iter().map(|s| (s.writer, s.seq)).collect();
            let keys: BTreeSet<(u32, u64)> = ours.keys().copied().collect();
            if keys != theirs {
                errors.push(format!(
                    "blackbox read shows records {:?}, the spec's walk finds {:?}",
                    theirs.difference(&keys).collect::<Vec<_>>(),
                    keys.difference(&theirs).collect::<Vec<_>>()
                ));
            }
            for s in &shown {
                let Some(r) = ours.get(&(s.writer, s.seq)) else {
                    continue;
                };
                let want = rfc3339_utc(spec_unix_ns(spec, file, r.ts));
                if s.ts != want {
                    errors.push(format!(
                        "record ({}, {}) with TS {}: blackbox read says {}, section 8.5 gives \
                         {want}",
                        s.writer, s.seq, r.ts, s.ts
                    ));
                }
                if s.thread_id != r.thread_id {
                    errors.push(format!(
                        "record ({}, {}): blackbox read says thread {}, its chunk's THREAD_ID is \
                         {}",
                        s.writer, s.seq, s.thread_id, r.thread_id
                    ));
                }
            }
            // Section 11, step 7: by time, ties by writer then seq (each
            // writer's times rise with its seq here, so this is the merge).
            let mut order: Vec<(u64, u32, u64)> = walk
                .records
                .iter()
                .map(|r| (spec_unix_ns(spec, file, r.ts), r.writer, r.seq))
                .collect();
            order.sort_unstable();
            let rising = writers.iter().all(|&w| {
                let mut times: Vec<(u64, u64)> = walk
                    .records
                    .iter()
                    .filter(|r| r.writer == w)
                    .map(|r| (r.seq, spec_unix_ns(spec, file, r.ts)))
                    .collect();
                times.sort_unstable();
                times.windows(2).all(|p| p[0].1 <= p[1].1)
            });
            let printed: Vec<(u32, u64)> = shown.iter().map(|s| (s.writer, s.seq)).collect();
            let merged: Vec<(u32, u64)> = order.iter().map(|&(_, w, s)| (w, s)).collect();
            if rising && keys == theirs && printed != merged {
                errors.push(format!(
                    "blackbox read prints the records in the order {printed:?}, section 11 \
                     (by time, then writer, then seq) gives {merged:?}"
                ));
            }
        }
    }
    (walk, errors)
}

/// A field value of a decoded event.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    I64(i64),
    U64(u64),
    Str(String),
    Other(u8),
}

/// An event payload, decoded with the spec's offsets and codes (section 6).
#[derive(Debug)]
struct Event {
    level: u128,
    flags: u128,
    target: String,
    message: String,
    fields: Vec<(String, Value)>,
}

fn decode_event(spec: &Spec, payload: &[u8]) -> Event {
    use Group::Event as E;
    let get = |name: &str| {
        let r = spec.field(E, name);
        le(payload, r.offset, r.size) as usize
    };
    let fixed = spec.us("EVENT_FIXED_LEN");
    let (count, target_len, message_len) =
        (get("FIELD_COUNT"), get("TARGET_LEN"), get("MESSAGE_LEN"));
    let text =
        |from: usize, n: usize| String::from_utf8_lossy(&payload[from..from + n]).into_owned();
    let target = text(fixed, target_len);
    let message = text(fixed + target_len, message_len);
    let mut q = fixed + target_len + message_len;
    let mut fields = Vec::new();
    for _ in 0..count {
        let ty = u128::from(payload[q]);
        let name_len = payload[q + 1] as usize;
        let name = text(q + 2, name_len);
        q += 2 + name_len;
        let value = if ty == spec.int("FIELD_I64") {
            q += 8;
            Value::I64(le64(payload, q - 8) as i64)
        } else if ty == spec.int("FIELD_U64") {
            q += 8;
            Value::U64(le64(payload, q - 8))
        } else if ty == spec.int("FIELD_STR") || ty == spec.int("FIELD_DEBUG") {
            let n = le(payload, q, 2) as usize;
            q += 2 + n;
            Value::Str(text(q - n, n))
        } else if ty == spec.int("FIELD_BOOL") {
            q += 1;
            Value::Other(ty as u8)
        } else {
            q += 8;
            Value::Other(ty as u8)
        };
        fields.push((name, value));
    }
    Event {
        level: get("LEVEL") as u128,
        flags: get("FLAGS") as u128,
        target,
        message,
        fields,
    }
}

/// The events of a walk, each with its record.
fn events_of<'w>(spec: &Spec, walk: &'w Walk) -> Vec<(&'w SpecRecord, Event)> {
    walk.records
        .iter()
        .filter(|r| r.kind == spec.int("KIND_EVENT"))
        .map(|r| (r, decode_event(spec, r.payload())))
        .collect()
}

/// This thread's Linux thread id and kernel name, as `/proc` tells them.
fn this_thread() -> (u32, String) {
    let tid = nix::unistd::gettid().as_raw() as u32;
    let name = std::fs::read_to_string("/proc/thread-self/comm")
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    (tid, name)
}

/// The name a chunk header carries for a thread (section 4.2): its kernel
/// name, `main` for the main thread.
fn chunk_thread_name(tid: u32, kernel_name: &str) -> String {
    if tid == std::process::id() {
        "main".to_string()
    } else {
        kernel_name.to_string()
    }
}

/// Events the test thread appends to fill chunks.
const FILL: u64 = 100;

/// A ring written and closed by the recorder, by the spec: two writers (a
/// thread that exits, and this one), the three kinds of record, a
/// snapshot request and a refused record.
fn check_closed_ring(spec: &Spec, clock: Clock, capacity: u64, chunk: Option<u32>) -> Vec<String> {
    use Group::Header;
    let what = format!("{clock:?} ring");
    let dir = TempDir::new(&format!("closed-{clock:?}"));
    let path = dir.path("spec.ring");
    let before = blackbox_recorder::realtime_ns();
    let mut builder = Recorder::builder(&path)
        .capacity(capacity)
        .program("layout-spec")
        .app_version("9.9.9")
        .heartbeat(None)
        .clock(clock);
    if let Some(c) = chunk {
        builder = builder.chunk_size(c);
    }
    let rec = builder.create().expect("create a ring");
    // Writer 0: a thread that appends the event and raw examples and exits.
    let other = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("spec-writer".into())
            .spawn_scoped(s, || {
                let (name, value) = EVENT_FIELD;
                rec.log(
                    Level::Info,
                    EVENT_TARGET,
                    EVENT_MESSAGE,
                    &[Field::new(name, value)],
                )
                .expect("append the event");
                rec.append(EXAMPLE_PAYLOAD).expect("append the raw record");
                this_thread()
            })
            .expect("spawn a writer thread")
            .join()
            .expect("the writer thread")
    });
    // Writer 1: this thread.
    let me = this_thread();
    rec.record_as(TYPED_NAME, &TYPED_VALUE)
        .expect("append the typed value");
    for n in 0..FILL {
        rec.log(Level::Info, "spec", "fill", &[Field::new("n", n)])
            .expect("append");
    }
    let snapshot_seq = rec.snapshot("spec snapshot").expect("ask for a snapshot");
    let refused = rec.append(&vec![0u8; rec.max_record_len()]);
    rec.close();
    let after = blackbox_recorder::realtime_ns();

    let file = std::fs::read(&path).expect("read the ring");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let (walk, mut errors) = check_ring_by_the_spec(spec, &path, &file);
    if refused.is_ok() {
        errors.push("a record of max_record_len() + 24 bytes was not refused".to_string());
    }
    let h = |name: &str| hfield(spec, &file, name);
    let in_range = |v: u128| u128::from(before) <= v && v <= u128::from(after);

    if mode != 0o600 {
        errors.push(format!("file mode {mode:o}, expected 600"));
    }
    // Section 10: the builder's chunk size, else CAPACITY / 128 kept within
    // MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE.
    let chunk_size = match chunk {
        Some(c) => u128::from(c),
        None => (u128::from(capacity) / 128)
            .clamp(spec.int("MIN_CHUNK_SIZE"), spec.int("MAX_CHUNK_SIZE")),
    };
    let clock_code = match clock {
        Clock::Realtime => spec.int("CLOCK_REALTIME_NS"),
        Clock::Tsc => spec.int("CLOCK_TSC"),
    };
    let used = walk.chunks.len() as u128;
    for (name, want) in [
        ("CAPACITY", u128::from(capacity)),
        ("CHUNK_SIZE", chunk_size),
        ("CLOCK", clock_code),
        ("PID", u128::from(std::process::id())),
        ("HEARTBEAT_PERIOD_MS", 0),
        ("STATE", spec.int("STATE_EXITED")),
        ("WRITERS", 2),
        ("NEXT_TICKET", used),
        ("DROPPED", 0),
        ("OVERSIZE_DROPS", 1),
        ("SNAPSHOT_TRIGGER", 1),
        ("SNAPSHOT_WRITER", 1),
        ("SNAPSHOT_SEQ", u128::from(snapshot_seq) + 1),
    ] {
        if h(name) != want {
            errors.push(format!(
                "header {name} is {} ({:#x}), expected {want} ({want:#x})",
                h(name),
                h(name)
            ));
        }
    }
    for name in ["START_UNIX_NS", "HEARTBEAT_UNIX_NS", "CLOSE_UNIX_NS"] {
        if !in_range(h(name)) {
            errors.push(format!(
                "header {name}: {} is not a CLOCK_REALTIME time in ns between {before} and \
                 {after}",
                h(name)
            ));
        }
    }
    for (name, text) in [("PROGRAM", "layout-spec"), ("APP_VERSION", "9.9.9")] {
        let bytes = hbytes(spec, &file, name);
        let mut want = vec![0u8; bytes.len()];
        want[..text.len()].copy_from_slice(text.as_bytes());
        if bytes != want {
            errors.push(format!(
                "header {name}: expected {text:?} padded with NUL, found {:?}",
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        let found: String = hbytes(spec, &file, "BOOT_ID")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if found != hex {
            errors.push(format!(
                "header BOOT_ID: the boot id is {hex}, the recorder wrote {found}"
            ));
        }
    }
    // No heartbeat, no crash: no memory evidence, no death.
    for r in spec.rows(Header) {
        let zero = r
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("MEM_") || n.starts_with("DEATH_"));
        if zero && file[r.offset..r.offset + r.size].iter().any(|&b| b != 0) {
            errors.push(format!("header {} is not zero", r.label()));
        }
    }

    // The chunk table of a ring that never wrapped: tickets 0.. claimed
    // chunks 0.., one visit each.
    let (owned, sealed) = (spec.int("CHUNK_OWNED"), spec.int("CHUNK_SEALED"));
    for c in &walk.chunks {
        if c.gen as usize != c.index || c.visits != 1 {
            errors.push(format!(
                "chunk {}: GEN {} and VISITS {} in a ring that never wrapped",
                c.index, c.gen, c.visits
            ));
        }
    }
    if walk.chunks.iter().any(|c| c.index as u128 >= used) {
        errors.push(format!(
            "claimed chunks {:?} are not the first NEXT_TICKET",
            walk.chunks.iter().map(|c| c.index).collect::<Vec<_>>()
        ));
    }

    // Writer 0: one chunk, sealed when its thread exited, with the event
    // and raw examples.
    let (other_tid, other_name) = other;
    match &walk.chunks_of(0)[..] {
        [c] => {
            if c.state != sealed || c.first_seq != 0 || c.writer_dropped != 0 {
                errors.push(format!(
                    "writer 0's chunk {}: state {}, FIRST_SEQ {}, WRITER_DROPPED {}; expected \
                     CHUNK_SEALED (its thread exited), 0, 0",
                    c.index, c.state, c.first_seq, c.writer_dropped
                ));
            }
            if c.thread_id != other_tid
                || c.thread_name != chunk_thread_name(other_tid, &other_name)
            {
                errors.push(format!(
                    "writer 0's chunk names thread {} {:?}, the thread was {other_tid} \
                     {other_name:?}",
                    c.thread_id, c.thread_name
                ));
            }
            match &c.records[..] {
                &[e, r] => {
                    let (e, r) = (&walk.records[e], &walk.records[r]);
                    if e.kind != spec.int("KIND_EVENT") || r.kind != spec.int("KIND_RAW") {
                        errors.push(format!(
                            "writer 0 wrote kinds {} and {}, expected KIND_EVENT and KIND_RAW",
                            e.kind, r.kind
                        ));
                    }
                    let fields = spec.rows(Group::Event);
                    errors.extend(diff_bytes(
                        "event-example (recorder)",
                        spec.hex("event-example"),
                        e.payload(),
                        &fields,
                    ));
                    if r.payload() != EXAMPLE_PAYLOAD {
                        errors.push(format!("the raw record's payload is {:?}", r.payload()));
                    }
                }
                other => errors.push(format!(
                    "writer 0's chunk holds {} records, expected 2",
                    other.len()
                )),
            }
        }
        other => errors.push(format!("writer 0 has {} chunks, expected 1", other.len())),
    }

    // Writer 1: the typed example first, then the fill, over several
    // chunks; the last one still owned (a clean close leaves chunks as they
    // are, section 7.5).
    let (my_tid, my_name) = me;
    let mine = walk.chunks_of(1);
    if mine.len() < 2 {
        errors.push(format!(
            "writer 1 has {} chunk(s); its {} records should fill more than one",
            mine.len(),
            FILL + 2
        ));
    }
    for (k, c) in mine.iter().enumerate() {
        let want = if k + 1 == mine.len() { owned } else { sealed };
        if c.state != want {
            errors.push(format!(
                "writer 1's chunk {} has state {}, expected {want}",
                c.index, c.state
            ));
        }
        if c.thread_id != my_tid || c.thread_name != chunk_thread_name(my_tid, &my_name) {
            errors.push(format!(
                "writer 1's chunk {} names thread {} {:?}, the thread was {my_tid} {my_name:?}",
                c.index, c.thread_id, c.thread_name
            ));
        }
    }
    if mine.first().is_some_and(|c| c.first_seq != 0) {
        errors.push("writer 1's first chunk does not start at seq 0".to_string());
    }
    let count: usize = mine.iter().map(|c| c.records.len()).sum();
    if count as u64 != FILL + 2 {
        errors.push(format!(
            "writer 1 has {count} records, it appended {}",
            FILL + 2
        ));
    }
    match walk.record(1, 0) {
        Some(t) if t.kind == spec.int("KIND_TYPED") => errors.extend(diff_bytes(
            "typed-example (recorder)",
            spec.hex("typed-example"),
            t.payload(),
            &[],
        )),
        other => errors.push(format!(
            "writer 1's seq 0 is {other:?}, expected the typed example"
        )),
    }
    // Section 9.4: the snapshot request names its record.
    let asked = (
        h("SNAPSHOT_WRITER") as u32,
        (h("SNAPSHOT_SEQ") as u64).wrapping_sub(1),
    );
    match walk.record(asked.0, asked.1) {
        Some(r) if r.kind == spec.int("KIND_EVENT") => {
            let e = decode_event(spec, r.payload());
            if e.level != spec.int("LEVEL_WARN")
                || e.target != "blackbox::snapshot"
                || e.message != "spec snapshot"
            {
                errors.push(format!(
                    "the snapshot's record {asked:?} is {e:?}, expected WARN blackbox::snapshot \
                     \"spec snapshot\""
                ));
            }
        }
        other => errors.push(format!(
            "(SNAPSHOT_WRITER, SNAPSHOT_SEQ - 1) = {asked:?} names {other:?}, not an event"
        )),
    }
    let fill: Vec<u64> = events_of(spec, &walk)
        .iter()
        .filter(|(_, e)| e.target == "spec")
        .filter_map(|(_, e)| match e.fields[..] {
            [(ref n, Value::U64(v))] if n == "n" && e.flags == 0 => Some(v),
            _ => None,
        })
        .collect();
    if fill != (0..FILL).collect::<Vec<_>>() {
        errors.push(format!(
            "the fill events decode as n = {fill:?}, expected 0..{FILL}"
        ));
    }

    // The clock (sections 2 and 8.5).
    match clock {
        Clock::Realtime => {
            for r in &walk.records {
                if !in_range(u128::from(r.ts)) {
                    errors.push(format!(
                        "record ({}, {}): TS {} is not a CLOCK_REALTIME time between {before} \
                         and {after}",
                        r.writer, r.seq, r.ts
                    ));
                }
            }
        }
        Clock::Tsc => {
            // No heartbeat: only the calibration of create, in slot 0.
            if h("CLOCK_CAL_COUNT") != 1 {
                errors.push(format!(
                    "CLOCK_CAL_COUNT is {}; a writer without a heartbeat calibrates once, at \
                     create",
                    h("CLOCK_CAL_COUNT")
                ));
            }
            if hbytes(spec, &file, "CLOCK_SLOT_1").iter().any(|&b| b != 0) {
                errors.push("slot 1 is written, but only one calibration was made".to_string());
            }
            let base = spec.offset(Header, "CLOCK_BASE_TICKS");
            match current_calibration(spec, &file) {
                None => errors.push("no usable calibration (MULT 0)".to_string()),
                Some((base_ticks, base_ns, mult)) => {
                    if (base_ticks, base_ns, mult)
                        != (
                            le64(&file, base),
                            le64(&file, spec.offset(Header, "CLOCK_BASE_NS")),
                            le64(&file, spec.offset(Header, "CLOCK_MULT")),
                        )
                    {
                        errors.push("the current calibration is not slot 0".to_string());
                    }
                    // "one at create (A), one at least 2 ms later": the newest
                    // pair is at least 2 ms after START_UNIX_NS.
                    let start = h("START_UNIX_NS");
                    let base_ns = u128::from(base_ns);
                    if !(start + 2_000_000 <= base_ns && base_ns <= u128::from(after)) {
                        errors.push(format!(
                            "CLOCK_BASE_NS {base_ns} is not between START_UNIX_NS + 2 ms \
                             ({}) and {after}",
                            start + 2_000_000
                        ));
                    }
                    if base_ticks == 0 {
                        errors.push("CLOCK_BASE_TICKS is 0".to_string());
                    }
                    if Clock::best() == Clock::Tsc {
                        for r in walk.records.iter().filter(|r| r.ts < base_ticks) {
                            errors.push(format!(
                                "record ({}, {}): TS {} is before CLOCK_BASE_TICKS \
                                 {base_ticks}, read before MAGIC",
                                r.writer, r.seq, r.ts
                            ));
                        }
                    }
                }
            }
        }
    }
    errors.into_iter().map(|e| format!("{what}: {e}")).collect()
}

/// Rings written and closed by the recorder have every byte where the spec
/// says: with CLOCK_REALTIME (explicit 1 KiB chunks, so the table takes
/// three pages) and with the time stamp counter (default chunks), whose
/// times `blackbox read` converts as section 8.5 says.
#[test]
fn real_rings_have_the_bytes_the_spec_describes() {
    let spec = Spec::load();
    let mut errors = check_closed_ring(&spec, Clock::Realtime, 1 << 20, Some(1024));
    if cfg!(target_arch = "x86_64") {
        errors.extend(check_closed_ring(&spec, Clock::Tsc, 256 << 10, None));
    }
    assert_no_errors(&errors);
}

/// A ring that went round several times: GEN and VISITS name the latest
/// claim of each chunk, the oldest records left the window a chunk at a
/// time, and the word after the newest chunk's records is zero, stored by
/// the writer so that an earlier claim's bytes are never read (section 7.2).
#[test]
fn a_wrapped_ring_reads_by_the_spec() {
    let spec = Spec::load();
    let dir = TempDir::new("wrapped");
    let path = dir.path("wrapped.ring");
    let rec = Recorder::builder(&path)
        .capacity(l::MIN_CAPACITY)
        .chunk_size(l::MIN_CHUNK_SIZE)
        .heartbeat(None)
        .clock(Clock::Realtime)
        .create()
        .expect("create a ring");
    const N: u64 = 1000;
    for n in 0..N {
        // All the same size, so every claim cuts its chunk the same way.
        rec.log(Level::Info, "wrap", "lap", &[Field::new("n", n)])
            .expect("append");
    }
    rec.close();
    let file = std::fs::read(&path).expect("read the ring");
    let (walk, mut errors) = check_ring_by_the_spec(&spec, &path, &file);
    let count = walk.chunk_count as u64;
    let next = hfield(&spec, &file, "NEXT_TICKET") as u64;
    if next <= 2 * count {
        errors.push(format!(
            "NEXT_TICKET {next}: the ring of {count} chunks did not go round twice"
        ));
    }
    // One writer, which never skips: ticket t claims chunk t mod count, so
    // chunk i was visited once per ticket i, i + count, .. below NEXT_TICKET
    // and its header is the latest of those claims.
    for c in &walk.chunks {
        let i = c.index as u64;
        let visits = (next - i).div_ceil(count);
        let gen = i + count * (visits - 1);
        if c.visits != u128::from(visits) || c.gen != gen {
            errors.push(format!(
                "chunk {i}: VISITS {} and GEN {}, expected {visits} and {gen}",
                c.visits, c.gen
            ));
        }
    }
    if walk.chunks.len() as u64 != count {
        errors.push(format!(
            "{} of the {count} chunks are valid",
            walk.chunks.len()
        ));
    }
    // The window: the newest records, without holes, up to the last.
    let mut seqs: Vec<u64> = walk.records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    let first = seqs.first().copied().unwrap_or(0);
    if first == 0 || seqs != (first..N).collect::<Vec<_>>() {
        errors.push(format!(
            "the window holds seq {first}..{:?}, expected the newest records up to {}",
            seqs.last(),
            N - 1
        ));
    }
    let ns: Vec<u64> = {
        let mut ev: Vec<(u64, u64)> = events_of(&spec, &walk)
            .iter()
            .filter_map(|(r, e)| match e.fields[..] {
                [(_, Value::U64(v))] => Some((r.seq, v)),
                _ => None,
            })
            .collect();
        ev.sort_unstable();
        ev.into_iter().map(|(_, v)| v).collect()
    };
    if ns != seqs {
        errors.push(format!(
            "the events' n {:?}.. differ from their seq {:?}..",
            ns.first(),
            seqs.first()
        ));
    }
    // The newest chunk: owned, partly filled (after at least one lap), and
    // after its last record a zero COMMIT, which the writer stored before
    // publishing that record (section 7.2), not the earlier claim's bytes.
    match walk.chunks.iter().max_by_key(|c| c.gen) {
        Some(c) => {
            if c.state != spec.int("CHUNK_OWNED") {
                errors.push(format!("the newest chunk {} is not owned", c.index));
            }
            let after = c.end_commit.unwrap_or(u64::MAX);
            if c.gen < count || after != 0 {
                errors.push(format!(
                    "after the newest chunk's records (GEN {}, ended at {}) comes COMMIT \
                     {after:#x}, expected 0 (section 7.2, step 6)",
                    c.gen, c.end
                ));
            }
        }
        None => errors.push("no chunk".to_string()),
    }
    let errors: Vec<String> = errors
        .into_iter()
        .map(|e| format!("wrapped ring: {e}"))
        .collect();
    assert_no_errors(&errors);
}

/// The memory cgroup's `(usage readable, limit)` found as section 9.2 of the
/// spec says; `None` when no cgroup file can be read.
fn spec_cgroup_memory() -> Option<(bool, u64)> {
    let read = |p: &Path| -> Option<String> {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let table = read(Path::new("/proc/self/cgroup"))?;
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            let usage = read(&dir.join("memory.usage_in_bytes"));
            let limit = read(&dir.join("memory.limit_in_bytes"))?
                .parse::<u64>()
                .ok()?;
            let limit = if limit >= 1 << 62 { 0 } else { limit };
            return Some((usage.is_some(), limit));
        }
    }
    let path = table.lines().find_map(|l| l.strip_prefix("0::"))?;
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let dir = Path::new(base).join(path.trim_start_matches('/'));
        if read(&dir.join("memory.current")).is_some() {
            let limit = read(&dir.join("memory.max"))?;
            return Some((true, limit.parse().unwrap_or(0)));
        }
    }
    None
}

/// A writer with a heartbeat samples the memory evidence into the fields
/// the spec names, and (CLOCK_TSC) writes its calibrations into the two
/// slots alternately.
#[test]
fn a_real_ring_has_the_memory_evidence_the_spec_describes() {
    use Group::Header;
    let spec = Spec::load();
    let dir = TempDir::new("memory");
    let path = dir.path("memory.ring");
    let sampled_at = spec.offset(Header, "MEM_SAMPLED_UNIX_NS");
    let cal_at = spec.offset(Header, "CLOCK_CAL_COUNT");

    let before = blackbox_recorder::realtime_ns();
    let rec = Recorder::builder(&path)
        .capacity(64 << 10)
        .heartbeat(Some(std::time::Duration::from_millis(10)))
        .create()
        .expect("create a ring");
    let tsc = rec.clock() == Clock::Tsc;
    // The heartbeat thread samples when it starts; wait for the first
    // sample and, with the TSC, for calibrations into both slots.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut ready = false;
    while !ready && std::time::Instant::now() < deadline {
        let header = std::fs::read(&path).unwrap();
        ready = le(&header, sampled_at, 8) != 0 && (!tsc || le(&header, cal_at, 8) >= 3);
        if !ready {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    rec.log(Level::Info, "spec", "sampled", &[])
        .expect("append");
    let cgroup = spec_cgroup_memory();
    rec.close();
    let after = blackbox_recorder::realtime_ns();
    let file = std::fs::read(&path).unwrap();
    assert!(
        ready,
        "within 10 s the heartbeat wrote no MEM_SAMPLED_UNIX_NS{}",
        if tsc { " or not 3 calibrations" } else { "" }
    );

    let (_, ring) = check_ring_by_the_spec(&spec, &path, &file);
    let mut errors: Vec<String> = ring.iter().map(|e| format!("memory ring: {e}")).collect();
    let field = |name: &str| hfield(&spec, &file, name);
    let when = field("MEM_SAMPLED_UNIX_NS");
    if !(u128::from(before) <= when && when <= u128::from(after)) {
        errors.push(format!(
            "MEM_SAMPLED_UNIX_NS: {when} is not a CLOCK_REALTIME time in ns between {before} \
             and {after}"
        ));
    }
    let rss = field("MEM_RSS_BYTES");
    if !(4096..=1 << 40).contains(&rss) {
        errors.push(format!(
            "MEM_RSS_BYTES: {rss} is no resident set size of this test"
        ));
    }
    if let Some((usage_known, limit)) = cgroup {
        let usage = field("MEM_CGROUP_USAGE");
        if usage_known && usage == 0 {
            errors.push(
                "MEM_CGROUP_USAGE: 0 (unknown), but the cgroup's usage is readable".to_string(),
            );
        }
        let written = field("MEM_CGROUP_LIMIT");
        if written != u128::from(limit) {
            errors.push(format!(
                "MEM_CGROUP_LIMIT: the recorder wrote {written}, the cgroup's limit read as \
                 section 9.2 says is {limit}"
            ));
        }
    }
    for r in spec.rows(Header) {
        if r.name.as_deref().is_some_and(|n| n.starts_with("DEATH_"))
            && file[r.offset..r.offset + r.size].iter().any(|&b| b != 0)
        {
            errors.push(format!("header {} is not zero", r.label()));
        }
    }
    if field("HEARTBEAT_PERIOD_MS") != 10 {
        errors.push(format!(
            "HEARTBEAT_PERIOD_MS is {}, the heartbeat was 10 ms",
            field("HEARTBEAT_PERIOD_MS")
        ));
    }
    // Section 8.5: calibration n goes to slot n mod 2, and the count says
    // which slot is current: both slots are written, the current one with
    // the newer pair.
    if tsc {
        let count = field("CLOCK_CAL_COUNT");
        let slot_len = spec.us("CLOCK_SLOT_LEN");
        let slot = |k: usize, name: &str| le64(&file, spec.offset(Header, name) + k * slot_len);
        let current = ((count.max(1) - 1) % spec.int("CLOCK_SLOTS")) as usize;
        let other = 1 - current;
        for k in [0, 1] {
            if slot(k, "CLOCK_MULT") == 0 || slot(k, "CLOCK_BASE_NS") == 0 {
                errors.push(format!(
                    "after {count} calibrations, slot {k} has no calibration"
                ));
            }
        }
        if slot(current, "CLOCK_BASE_TICKS") <= slot(other, "CLOCK_BASE_TICKS")
            || slot(current, "CLOCK_BASE_NS") < slot(other, "CLOCK_BASE_NS")
        {
            errors.push(format!(
                "after {count} calibrations the current slot {current} (ticks {}, ns {}) is not \
                 newer than slot {other} (ticks {}, ns {})",
                slot(current, "CLOCK_BASE_TICKS"),
                slot(current, "CLOCK_BASE_NS"),
                slot(other, "CLOCK_BASE_TICKS"),
                slot(other, "CLOCK_BASE_NS")
            ));
        }
    }
    assert_no_errors(&errors);
}

/// Real writers (`blackbox demo --die HOW`) that crash on their main thread
/// fill the death area and append the crash event as section 9.1 says.
#[test]
fn real_crashes_fill_the_death_area_as_the_spec_says() {
    let spec = Spec::load();
    let dir = TempDir::new("death");
    let mut errors = Vec::new();
    for how in ["segv", "abort", "panic"] {
        let path = dir.path(&format!("{how}.ring"));
        let before = blackbox_recorder::realtime_ns();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blackbox"))
            .args(["demo", "--ring"])
            .arg(&path)
            // Chunks large enough for the panic event's backtrace (cut to
            // 4096 bytes, section 6), which a 1 KiB chunk would drop.
            .args(["--capacity", "256KiB", "--chunk-size", "16KiB"])
            .args(["--records", "1", "--die", how])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run blackbox demo");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().expect("wait for the demo").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("blackbox demo --die {how} did not die within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let after = blackbox_recorder::realtime_ns();
        let file = std::fs::read(&path).expect("the demo's ring");
        let (walk, ring) = check_ring_by_the_spec(&spec, &path, &file);
        errors.extend(ring.iter().map(|e| format!("--die {how}: {e}")));
        let bytes = |name: &str| hbytes(&spec, &file, name);
        let int = |name: &str| hfield(&spec, &file, name);
        let mut expect = |name: &str, want: u128, got: u128| {
            if want != got {
                errors.push(format!(
                    "--die {how}: {name}: expected {want} ({want:#x}), the recorder wrote {got} \
                     ({got:#x})"
                ));
            }
        };
        let signal = how != "panic";
        let (kind, signo, si_code, fault) = match how {
            "segv" => (spec.int("DEATH_SIGNAL"), 11, 1i32, 0x10),
            "abort" => (spec.int("DEATH_SIGNAL"), 6, -6i32, 0),
            _ => (spec.int("DEATH_PANIC"), 0, 0i32, 0),
        };
        expect("STATE", spec.int("STATE_CRASHED"), int("STATE"));
        expect("PID", u128::from(pid), int("PID"));
        expect("CAPACITY", 256 << 10, int("CAPACITY"));
        expect("CHUNK_SIZE", 16 << 10, int("CHUNK_SIZE"));
        // The demo's writer thread, the main thread, and for a signal the
        // handler's one-record writer (section 8.6).
        expect("WRITERS", if signal { 3 } else { 2 }, int("WRITERS"));
        expect("DEATH_KIND", kind, int("DEATH_KIND"));
        expect("DEATH_SIGNAL", signo, int("DEATH_SIGNAL"));
        // i32, two's complement.
        expect(
            "DEATH_SI_CODE",
            u128::from(si_code as u32),
            int("DEATH_SI_CODE"),
        );
        expect(
            "DEATH_THREAD_ID (the main thread)",
            u128::from(pid),
            int("DEATH_THREAD_ID"),
        );
        expect("DEATH_FAULT_ADDR", fault, int("DEATH_FAULT_ADDR"));
        // Only a fault has an address (section 2, death area).
        let flags = if how == "segv" {
            spec.int("DEATH_FLAG_FAULT_ADDR")
        } else {
            0
        };
        expect("DEATH_FLAGS", flags, int("DEATH_FLAGS"));
        let when = int("DEATH_UNIX_NS");
        if !(u128::from(before) <= when && when <= u128::from(after)) {
            errors.push(format!(
                "--die {how}: DEATH_UNIX_NS {when} is not a time between {before} and {after}"
            ));
        }
        let sp = int("DEATH_STACK_POINTER");
        if !signal && sp != 0 {
            errors.push(format!(
                "--die {how}: DEATH_STACK_POINTER {sp:#x} without a signal"
            ));
        }
        if signal && cfg!(target_arch = "x86_64") && sp == 0 {
            errors.push(format!("--die {how}: DEATH_STACK_POINTER is 0 on x86_64"));
        }
        let thread = c_str(bytes("DEATH_THREAD_NAME"));
        if thread != "main" {
            errors.push(format!(
                "--die {how}: DEATH_THREAD_NAME {thread:?}, expected \"main\""
            ));
        }
        let location = c_str(bytes("DEATH_LOCATION"));
        let message = c_str(bytes("DEATH_MESSAGE"));
        // FILE:LINE:COLUMN
        let location_ok = {
            let mut parts = location.rsplitn(3, ':');
            let (col, line) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            numeric(col) && numeric(line) && parts.next().is_some_and(|f| f.ends_with("demo.rs"))
        };
        if signal && (!location.is_empty() || !message.is_empty()) {
            errors.push(format!(
                "--die {how}: a signal wrote DEATH_LOCATION {location:?} / DEATH_MESSAGE {message:?}"
            ));
        }
        if !signal && (!location_ok || message != "demo panic") {
            errors.push(format!(
                "--die {how}: DEATH_LOCATION {location:?} (want FILE:LINE:COLUMN in demo.rs), \
                 DEATH_MESSAGE {message:?} (want \"demo panic\")"
            ));
        }

        // The crash event, and the chunk it is in.
        let events = events_of(&spec, &walk);
        let crash: Vec<&(&SpecRecord, Event)> = events
            .iter()
            .filter(|(_, e)| e.target == "blackbox::crash")
            .collect();
        let want_message = match how {
            "segv" => "fatal signal SIGSEGV at 0x10 in thread 'main'".to_string(),
            "abort" => "fatal signal SIGABRT in thread 'main'".to_string(),
            _ => format!("panicked at {location}: demo panic"),
        };
        match &crash[..] {
            [(r, e)] => {
                if e.level != spec.int("LEVEL_ERROR") || e.message != want_message {
                    errors.push(format!(
                        "--die {how}: crash event level {} message {:?}, expected level \
                         LEVEL_ERROR and {want_message:?}",
                        e.level, e.message
                    ));
                }
                let names: Vec<&str> = e.fields.iter().map(|(n, _)| n.as_str()).collect();
                let fields_ok = if signal {
                    let name = if how == "segv" { "SIGSEGV" } else { "SIGABRT" };
                    e.fields
                        == [
                            ("signal".to_string(), Value::Str(name.to_string())),
                            ("si_code".to_string(), Value::I64(i64::from(si_code))),
                        ]
                } else {
                    names == ["thread", "backtrace"]
                        && e.fields[0].1 == Value::Str("main".to_string())
                        && matches!(&e.fields[1].1, Value::Str(b) if b.len() <= 4096)
                };
                if !fields_ok {
                    errors.push(format!(
                        "--die {how}: crash event fields {:?} are not the spec's",
                        e.fields
                    ));
                }
                // Section 6: the event's thread is its chunk's; section 9.1:
                // a signal's event comes from a one-record writer whose
                // chunk names the crashing thread.
                let c = walk
                    .chunks
                    .iter()
                    .find(|c| c.index == r.chunk)
                    .expect("the record's chunk");
                if c.thread_id != pid || c.thread_name != "main" {
                    errors.push(format!(
                        "--die {how}: the crash event's chunk names thread {} {:?}, expected \
                         the main thread {pid} \"main\"",
                        c.thread_id, c.thread_name
                    ));
                }
                let alone = walk.chunks_of(c.writer).len() == 1
                    && c.records.len() == 1
                    && c.first_seq == 0
                    && c.state == spec.int("CHUNK_SEALED");
                if signal && !alone {
                    errors.push(format!(
                        "--die {how}: the crash event's writer {} is not a one-record writer \
                         with a sealed chunk of its own (chunk {}: {} record(s), FIRST_SEQ {}, \
                         state {})",
                        c.writer,
                        c.index,
                        c.records.len(),
                        c.first_seq,
                        c.state
                    ));
                }
                if r.offset != spec.us("CHUNK_HEADER_LEN") && signal {
                    errors.push(format!(
                        "--die {how}: the crash event is at chunk offset {}, not first",
                        r.offset
                    ));
                }
            }
            other => errors.push(format!(
                "--die {how}: expected one blackbox::crash event, found {}",
                other.len()
            )),
        }
        let last_words = events
            .iter()
            .filter(|(_, e)| e.message == "demo: about to die")
            .count();
        if last_words != 1 {
            errors.push(format!(
                "--die {how}: {last_words} \"demo: about to die\" events, expected 1"
            ));
        }
    }
    assert_no_errors(&errors);
}

// ---------------------------------------------------------------------------
// Span records (section 6b).

/// `span-new-example`: span id 1, no parent, INFO, target "app", name
/// "req", field `id` = 7 (u64), from the layout's constants.
fn example_span_new_payload() -> Vec<u8> {
    let mut p = vec![0u8; l::SPAN_NEW_FIXED_LEN];
    p[l::SP_ID..l::SP_ID + 8].copy_from_slice(&1u64.to_le_bytes());
    p[l::SP_PARENT..l::SP_PARENT + 8].copy_from_slice(&0u64.to_le_bytes());
    let mut e = vec![0u8; l::EVENT_FIXED_LEN];
    e[l::E_LEVEL] = l::LEVEL_INFO;
    e[l::E_FIELD_COUNT] = 1;
    e[l::E_TARGET_LEN..l::E_TARGET_LEN + 2].copy_from_slice(&3u16.to_le_bytes());
    e[l::E_MESSAGE_LEN..l::E_MESSAGE_LEN + 2].copy_from_slice(&3u16.to_le_bytes());
    e.extend_from_slice(b"app");
    e.extend_from_slice(b"req");
    e.extend_from_slice(&[l::FIELD_U64, 2]);
    e.extend_from_slice(b"id");
    e.extend_from_slice(&7u64.to_le_bytes());
    p.extend(e);
    p
}

/// `span-step-example`: entering span 1, named "req".
fn example_span_step_payload() -> Vec<u8> {
    let mut p = vec![0u8; l::SPAN_STEP_FIXED_LEN];
    p[l::SP_ID..l::SP_ID + 8].copy_from_slice(&1u64.to_le_bytes());
    p[l::SP_OP] = l::SPAN_OP_ENTER;
    p[l::SP_NAME_LEN] = 3;
    p.extend_from_slice(b"req");
    p
}

/// The span examples, built from the constants, and the records the
/// tracing layer writes for the same span (but for the span id, which the
/// registry chooses): creation, enter, exit, close, in that order.
#[test]
fn span_examples_are_what_the_tracing_layer_writes() {
    use tracing_subscriber::prelude::*;
    let spec = Spec::load();
    let mut errors = Vec::new();
    let new = spec.hex("span-new-example");
    let step = spec.hex("span-step-example");
    errors.extend(diff_bytes(
        "span-new-example",
        new,
        &example_span_new_payload(),
        &[],
    ));
    errors.extend(diff_bytes(
        "span-step-example",
        step,
        &example_span_step_payload(),
        &[],
    ));

    let dir = TempDir::new("span-examples");
    let path = dir.path("spans.ring");
    let rec = std::sync::Arc::new(
        Recorder::builder(&path)
            .capacity(l::MIN_CAPACITY)
            .heartbeat(None)
            .clock(Clock::Realtime)
            .create()
            .expect("create a ring"),
    );
    let layer = blackbox_recorder::BlackboxLayer::new(std::sync::Arc::clone(&rec));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = tracing::info_span!(target: "app", "req", id = 7u64);
        let _entered = span.enter();
    });
    std::sync::Arc::try_unwrap(rec)
        .ok()
        .expect("last handle")
        .close();
    let file = std::fs::read(&path).expect("read the ring");
    let walk = walk_by_the_spec(&spec, &file);
    errors.extend(walk.corrupt.iter().map(|e| format!("spans ring: {e}")));
    let kinds: Vec<u128> = walk.records.iter().map(|r| r.kind).collect();
    let (k_new, k_step) = (spec.int("KIND_SPAN_NEW"), spec.int("KIND_SPAN_STEP"));
    if kinds != [k_new, k_step, k_step, k_step] {
        errors.push(format!(
            "the layer wrote kinds {kinds:?}, expected new, then three steps"
        ));
    } else {
        let id_at = spec.us("SP_ID");
        let with_id = |example: &[u8], written: &[u8]| {
            let mut want = example.to_vec();
            want[id_at..id_at + 8].copy_from_slice(&written[id_at..id_at + 8]);
            want
        };
        let written = walk.records[0].payload();
        errors.extend(diff_bytes(
            "span-new-example (layer, but the id)",
            &with_id(new, written),
            written,
            &[],
        ));
        let op_at = spec.us("SP_OP");
        for (i, op) in ["SPAN_OP_ENTER", "SPAN_OP_EXIT", "SPAN_OP_CLOSE"]
            .into_iter()
            .enumerate()
        {
            let written = walk.records[1 + i].payload();
            let mut want = with_id(step, written);
            want[op_at] = spec.int(op) as u8;
            errors.extend(diff_bytes(
                &format!("span-step-example as {op} (layer, but the id)"),
                &want,
                written,
                &[],
            ));
            if written[id_at..id_at + 8] != walk.records[0].payload()[id_at..id_at + 8] {
                errors.push(format!("the {op} step names another span id"));
            }
        }
    }
    assert_no_errors(&errors);
}
