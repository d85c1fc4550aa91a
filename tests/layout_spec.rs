//! `shm-layout.md` is the authority on the bytes of a ring file; this test
//! holds the code to it.
//!
//! It reads the spec's markdown tables: a row whose first cell is a number is
//! a field (`| offset | size | type | NAME | meaning |`), checked against
//! `recorder::layout::H_NAME` (section "Header"), `R_NAME` ("Record
//! framing") or `E_NAME` ("Standard event payload"); a row whose first cell
//! is a name in backticks is a constant (`| NAME | value | meaning |`),
//! checked against the code's constant of that name. It also checks the
//! spec's worked examples against the layout helpers, and real rings against
//! the spec's offsets: one written and closed by the recorder, one with
//! memory evidence from a heartbeat, and three whose writers (`blackbox demo
//! --die`) crashed and recorded the cause.
//!
//! Rust cannot list a module's constants, so the lists below name each one;
//! a scan of `recorder/src/layout.rs` makes sure no constant is missing from
//! them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::os::unix::fs::PermissionsExt;

use recorder::layout as l;
use recorder::{Field, Level, Recorder};

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
    ("PROGRAM", l::H_PROGRAM),
    ("APP_VERSION", l::H_APP_VERSION),
    ("HOSTNAME", l::H_HOSTNAME),
    ("INVOCATION_ID", l::H_INVOCATION_ID),
    ("POD_UID", l::H_POD_UID),
    ("POD_NAMESPACE", l::H_POD_NAMESPACE),
    ("CONTAINER_NAME", l::H_CONTAINER_NAME),
    ("POD_NAME", l::H_POD_NAME),
    ("TAIL", l::H_TAIL),
    ("STATE", l::H_STATE),
    ("HEARTBEAT_UNIX_NS", l::H_HEARTBEAT_UNIX_NS),
    ("CLOSE_UNIX_NS", l::H_CLOSE_UNIX_NS),
    ("HEARTBEAT_PERIOD_MS", l::H_HEARTBEAT_PERIOD_MS),
    ("LAPPED_WRITES", l::H_LAPPED_WRITES),
    ("OVERSIZE_DROPS", l::H_OVERSIZE_DROPS),
    ("SNAPSHOT_TRIGGER", l::H_SNAPSHOT_TRIGGER),
    ("SNAPSHOT_POS", l::H_SNAPSHOT_POS),
    ("LAP_LOG", l::H_LAP_LOG),
    ("MEM_SAMPLED_UNIX_NS", l::H_MEM_SAMPLED_UNIX_NS),
    ("MEM_RSS_BYTES", l::H_MEM_RSS_BYTES),
    ("MEM_CGROUP_USAGE", l::H_MEM_CGROUP_USAGE),
    ("MEM_CGROUP_LIMIT", l::H_MEM_CGROUP_LIMIT),
    ("DEATH_KIND", l::H_DEATH_KIND),
    ("DEATH_SIGNAL", l::H_DEATH_SIGNAL),
    ("DEATH_SI_CODE", l::H_DEATH_SI_CODE),
    ("DEATH_THREAD_ID", l::H_DEATH_THREAD_ID),
    ("DEATH_FAULT_ADDR", l::H_DEATH_FAULT_ADDR),
    ("DEATH_UNIX_NS", l::H_DEATH_UNIX_NS),
    ("DEATH_STACK_POINTER", l::H_DEATH_STACK_POINTER),
    ("DEATH_THREAD_NAME", l::H_DEATH_THREAD_NAME),
    ("DEATH_LOCATION", l::H_DEATH_LOCATION),
    ("DEATH_MESSAGE", l::H_DEATH_MESSAGE),
];

/// The header's areas: the constant that starts each (stated in the spec's
/// constant tables), the constant that ends it, and the prefix of the names
/// of the fields that must lie inside it.
const HEADER_AREAS: &[(&str, &str, &str)] = &[
    ("H_MEMORY_EVIDENCE", "H_DEATH", "MEM_"),
    ("H_DEATH", "HEADER_LEN", "DEATH_"),
];

/// Record header fields (`R_*`), offsets from the start of the record.
const RECORD_FIELDS: &[(&str, usize)] = &[
    ("COMMIT", l::R_COMMIT),
    ("CRC", l::R_CRC),
    ("KIND", l::R_KIND),
    ("FLAGS", l::R_FLAGS),
    ("POS", l::R_POS),
    ("TS", l::R_TS),
];

/// Fixed event fields (`E_*`), offsets from the start of the payload.
const EVENT_FIELDS: &[(&str, usize)] = &[
    ("LEVEL", l::E_LEVEL),
    ("FIELD_COUNT", l::E_FIELD_COUNT),
    ("TARGET_LEN", l::E_TARGET_LEN),
    ("MESSAGE_LEN", l::E_MESSAGE_LEN),
    ("FLAGS", l::E_FLAGS),
    ("THREAD_ID", l::E_THREAD_ID),
];

/// Header fields whose size the code fixes through another constant.
const HEADER_SIZES: &[(&str, usize, &str)] = &[
    ("MAGIC", l::MAGIC.len(), "MAGIC.len()"),
    ("PROGRAM", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("APP_VERSION", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("HOSTNAME", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("INVOCATION_ID", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("POD_UID", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("POD_NAMESPACE", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("CONTAINER_NAME", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("POD_NAME", l::LONG_STR_LEN, "LONG_STR_LEN"),
    ("LAP_LOG", l::LAP_LOG_ENTRIES * 16, "LAP_LOG_ENTRIES * 16"),
    ("DEATH_THREAD_NAME", l::SHORT_STR_LEN, "SHORT_STR_LEN"),
    ("DEATH_LOCATION", l::LONG_STR_LEN, "LONG_STR_LEN"),
    ("DEATH_MESSAGE", l::DEATH_MESSAGE_LEN, "DEATH_MESSAGE_LEN"),
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
    ("RECORD_HEADER_LEN", Code::Int(l::RECORD_HEADER_LEN as u128)),
    ("RECORD_ALIGN", Code::Int(l::RECORD_ALIGN as u128)),
    ("MIN_CAPACITY", Code::Int(l::MIN_CAPACITY as u128)),
    ("MAX_CAPACITY", Code::Int(l::MAX_CAPACITY as u128)),
    ("MAX_RECORD_LEN", Code::Int(l::MAX_RECORD_LEN as u128)),
    ("SHORT_STR_LEN", Code::Int(l::SHORT_STR_LEN as u128)),
    ("LONG_STR_LEN", Code::Int(l::LONG_STR_LEN as u128)),
    ("LAP_LOG_ENTRIES", Code::Int(l::LAP_LOG_ENTRIES as u128)),
    ("H_MEMORY_EVIDENCE", Code::Int(l::H_MEMORY_EVIDENCE as u128)),
    ("H_DEATH", Code::Int(l::H_DEATH as u128)),
    ("DEATH_MESSAGE_LEN", Code::Int(l::DEATH_MESSAGE_LEN as u128)),
    ("DEATH_NONE", Code::Int(l::DEATH_NONE as u128)),
    ("DEATH_PANIC", Code::Int(l::DEATH_PANIC as u128)),
    ("DEATH_SIGNAL", Code::Int(l::DEATH_SIGNAL as u128)),
    ("STATE_CREATING", Code::Int(l::STATE_CREATING as u128)),
    ("STATE_RUNNING", Code::Int(l::STATE_RUNNING as u128)),
    ("STATE_EXITED", Code::Int(l::STATE_EXITED as u128)),
    ("STATE_CRASHED", Code::Int(l::STATE_CRASHED as u128)),
    ("R_CRC_START", Code::Int(l::R_CRC_START as u128)),
    ("KIND_EVENT", Code::Int(l::KIND_EVENT as u128)),
    ("KIND_RAW", Code::Int(l::KIND_RAW as u128)),
    ("KIND_TYPED", Code::Int(l::KIND_TYPED as u128)),
    ("T_NAME_LEN", Code::Int(l::T_NAME_LEN as u128)),
    ("T_CODEC", Code::Int(l::T_CODEC as u128)),
    ("TYPED_FIXED_LEN", Code::Int(l::TYPED_FIXED_LEN as u128)),
    ("MAX_TYPE_NAME", Code::Int(l::MAX_TYPE_NAME as u128)),
    (
        "TYPED_CODEC_BINCODE",
        Code::Int(l::TYPED_CODEC_BINCODE as u128),
    ),
    ("EVENT_FIXED_LEN", Code::Int(l::EVENT_FIXED_LEN as u128)),
    (
        "EVENT_FLAG_TRUNCATED",
        Code::Int(recorder::EVENT_FLAG_TRUNCATED as u128),
    ),
    ("LEVEL_TRACE", Code::Int(l::LEVEL_TRACE as u128)),
    ("LEVEL_DEBUG", Code::Int(l::LEVEL_DEBUG as u128)),
    ("LEVEL_INFO", Code::Int(l::LEVEL_INFO as u128)),
    ("LEVEL_WARN", Code::Int(l::LEVEL_WARN as u128)),
    ("LEVEL_ERROR", Code::Int(l::LEVEL_ERROR as u128)),
    ("FIELD_I64", Code::Int(l::FIELD_I64 as u128)),
    ("FIELD_U64", Code::Int(l::FIELD_U64 as u128)),
    ("FIELD_F64", Code::Int(l::FIELD_F64 as u128)),
    ("FIELD_BOOL", Code::Int(l::FIELD_BOOL as u128)),
    ("FIELD_STR", Code::Int(l::FIELD_STR as u128)),
    ("FIELD_DEBUG", Code::Int(l::FIELD_DEBUG as u128)),
];

/// The spec's worked record example (section 4) is built from these.
const EXAMPLE_NONCE: u64 = 0x0123_4567_89AB_CDEF;
const EXAMPLE_POS: u64 = 0x8_0000_0028;
const EXAMPLE_TS: u64 = 1_700_000_000_123_456_789;
const EXAMPLE_PAYLOAD: &[u8] = b"ping";

// ---------------------------------------------------------------------------
// Reading the spec.

/// Which table group a field row belongs to, from the `## ` section it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Group {
    Header,
    Record,
    Event,
}

impl Group {
    const ALL: [Group; 3] = [Group::Header, Group::Record, Group::Event];

    fn from_heading(title: &str) -> Option<Group> {
        // "2. Header" -> "Header"
        let title = title
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim();
        if title == "Header" {
            Some(Group::Header)
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
            Group::Record => "R_",
            Group::Event => "E_",
        }
    }

    fn fields(self) -> &'static [(&'static str, usize)] {
        match self {
            Group::Header => HEADER_FIELDS,
            Group::Record => RECORD_FIELDS,
            Group::Event => EVENT_FIELDS,
        }
    }

    /// The size the group's rows must tile, and the constant that says so.
    fn len(self) -> (usize, &'static str) {
        match self {
            Group::Header => (l::HEADER_LEN, "HEADER_LEN"),
            Group::Record => (l::RECORD_HEADER_LEN, "RECORD_HEADER_LEN"),
            Group::Event => (l::EVENT_FIXED_LEN, "EVENT_FIXED_LEN"),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::Header => "header",
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
                    "line {n}: a field row outside the Header, Record framing and \
                     Standard event payload sections"
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

/// The `pub const` items of `layout.rs`, each with the type its doc comment
/// starts with (`` /// `u64` TAIL: .. ``), if any.
fn layout_constants() -> Vec<(String, Option<String>)> {
    let src = std::fs::read_to_string(LAYOUT_RS)
        .unwrap_or_else(|e| panic!("cannot read {LAYOUT_RS}: {e}"));
    let mut out = Vec::new();
    let mut doc: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.get_or_insert_with(|| d.trim().to_string());
            continue;
        }
        if let Some(rest) = t.strip_prefix("pub const ") {
            if !rest.starts_with("fn ") {
                if let Some((name, _)) = rest.split_once(':') {
                    let ty = doc
                        .as_deref()
                        .and_then(|d| d.strip_prefix('`'))
                        .and_then(|d| d.split_once('`'))
                        .map(|(ty, _)| ty.to_string());
                    out.push((name.trim().to_string(), ty));
                }
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

fn le(bytes: &[u8], offset: usize, size: usize) -> u128 {
    let mut v = [0u8; 16];
    v[..size].copy_from_slice(&bytes[offset..offset + size]);
    u128::from_le_bytes(v)
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
    assert_no_errors(&errors);
}

#[test]
fn field_tables_match_the_layout() {
    let spec = Spec::load();
    let code_types: HashMap<String, String> = layout_constants()
        .into_iter()
        .filter_map(|(name, ty)| Some((name, ty?)))
        .collect();
    let mut errors = Vec::new();
    for group in Group::ALL {
        let prefix = group.prefix();
        let code: BTreeMap<&str, usize> = group.fields().iter().copied().collect();
        let mut rows: Vec<&FieldRow> = spec.fields.iter().filter(|r| r.group == group).collect();

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
            // The offset is the code's.
            match code.get(name.as_str()) {
                None => errors.push(format!(
                    "line {}: the spec lists {group} field `{name}` (offset {}), but the code \
                     has no recorder::layout::{prefix}{name}",
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
                    "the code has recorder::layout::{prefix}{name} = {off}, but shm-layout.md \
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
    for &(name, size, why) in HEADER_SIZES {
        if let Some(r) = spec
            .fields
            .iter()
            .find(|r| r.group == Group::Header && r.name.as_deref() == Some(name))
        {
            if r.size != size {
                errors.push(format!(
                    "header field `{name}`: the spec says {} bytes (line {}), the code's {why} \
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
    let consts = layout_constants();
    assert!(
        consts.len() > 50,
        "found only {} constants in {LAYOUT_RS}; has the file moved?",
        consts.len()
    );
    for (name, _) in consts {
        let in_group = Group::ALL.iter().any(|g| {
            name.strip_prefix(g.prefix())
                .is_some_and(|n| g.fields().iter().any(|(f, _)| *f == n))
        });
        let in_constants = CONSTANTS.iter().any(|(c, _)| *c == name);
        if !in_group && !in_constants {
            errors.push(format!(
                "recorder/src/layout.rs declares `{name}`, which this test does not check: \
                 add it to the lists in tests/layout_spec.rs and its row to shm-layout.md"
            ));
        }
    }
    assert_no_errors(&errors);
}

/// The memory evidence and the death area each hold their own fields, from
/// the area's first byte on, and nothing else but reserved bytes.
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
        let (start, end) = (spec.int(start_name) as usize, spec.int(end_name) as usize);
        let mut first = None;
        for r in spec.fields.iter().filter(|r| r.group == Group::Header) {
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
                    "recorder::layout::H_{name} = {off} lies outside {start_name}..{end_name} \
                     ({start}..{end})"
                ));
            }
        }
    }
    assert_no_errors(&errors);
}

// ---------------------------------------------------------------------------
// The spec's formulas and examples against the code.

#[test]
fn helpers_follow_the_spec_formulas() {
    let mut errors = Vec::new();
    for len in [32u32, 33, 39, 40, 1024, 65536] {
        for pos in [
            0u64,
            8,
            4096,
            (1 << 35) - 8,
            1 << 35,
            EXAMPLE_POS,
            u64::MAX - 7,
        ] {
            // COMMIT = len | ((pos / 8) mod 2^32) << 32
            let spec = u64::from(len) | (((pos / 8) % (1 << 32)) << 32);
            let code = l::commit_word(len, pos);
            if spec != code {
                errors.push(format!(
                    "commit word of len {len} at pos {pos}: spec formula {spec:#x}, \
                     commit_word() {code:#x}"
                ));
            }
        }
        // stride = (len + 7) & !7
        let spec = (len as usize + 7) & !7;
        if l::stride(len as usize) != spec {
            errors.push(format!(
                "stride of {len}: spec formula {spec}, stride() {}",
                l::stride(len as usize)
            ));
        }
    }
    // max_record_len(c) = min(65536, c / 4)
    let mut c = l::MIN_CAPACITY;
    while c <= l::MAX_CAPACITY {
        let spec = 65536.min(c / 4) as usize;
        if l::max_record_len(c) != spec {
            errors.push(format!(
                "max_record_len({c}): spec formula {spec}, code {}",
                l::max_record_len(c)
            ));
        }
        c *= 2;
    }
    // CRC-32C, Castagnoli, with the check value the spec states.
    let check = crc32c::crc32c(b"123456789");
    if check != 0xE306_9283 {
        errors.push(format!(
            "CRC-32C check value: spec says 0xE3069283, crc32c gives {check:#010x}"
        ));
    }
    // CRC over nonce ‖ len ‖ bytes, however it is computed.
    let body = b"KIND, FLAGS, POS, TS, payload and padding";
    for (nonce, len) in [(0u64, 32u32), (EXAMPLE_NONCE, 36), (u64::MAX, 65536)] {
        let mut cat = nonce.to_le_bytes().to_vec();
        cat.extend_from_slice(&len.to_le_bytes());
        cat.extend_from_slice(body);
        let spec = crc32c::crc32c(&cat);
        let code = crc32c::crc32c_append(l::crc_start(l::crc_seed(nonce), len), body);
        if spec != code {
            errors.push(format!(
                "checksum with nonce {nonce:#x} and len {len}: spec definition {spec:#010x}, \
                 crc_seed/crc_start {code:#010x}"
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
    errors
}

#[test]
fn record_example_matches_the_code() {
    let spec = Spec::load();
    let len = l::RECORD_HEADER_LEN + EXAMPLE_PAYLOAD.len();
    let mut rec = vec![0u8; l::stride(len)];
    rec[l::R_COMMIT..l::R_COMMIT + 8]
        .copy_from_slice(&l::commit_word(len as u32, EXAMPLE_POS).to_le_bytes());
    rec[l::R_KIND..l::R_KIND + 2].copy_from_slice(&l::KIND_RAW.to_le_bytes());
    rec[l::R_POS..l::R_POS + 8].copy_from_slice(&EXAMPLE_POS.to_le_bytes());
    rec[l::R_TS..l::R_TS + 8].copy_from_slice(&EXAMPLE_TS.to_le_bytes());
    rec[l::RECORD_HEADER_LEN..len].copy_from_slice(EXAMPLE_PAYLOAD);
    let crc = crc32c::crc32c_append(
        l::crc_start(l::crc_seed(EXAMPLE_NONCE), len as u32),
        &rec[l::R_CRC_START..],
    );
    rec[l::R_CRC..l::R_CRC + 4].copy_from_slice(&crc.to_le_bytes());

    let fields: Vec<&FieldRow> = spec
        .fields
        .iter()
        .filter(|r| r.group == Group::Record)
        .collect();
    let shown = spec.hex("record-example");
    let mut errors = diff_bytes("record-example", shown, &rec, &fields);

    // The shown CRC also follows the spec's own definition.
    if shown.len() == rec.len() {
        let crc_at = spec.offset(Group::Record, "CRC");
        let mut cat = EXAMPLE_NONCE.to_le_bytes().to_vec();
        cat.extend_from_slice(&(len as u32).to_le_bytes());
        cat.extend_from_slice(&shown[spec.int("R_CRC_START") as usize..]);
        let want = crc32c::crc32c(&cat);
        let got = le(shown, crc_at, 4) as u32;
        if want != got {
            errors.push(format!(
                "record-example: CRC shown {got:#010x}, the spec's definition gives {want:#010x}"
            ));
        }
    }
    assert_no_errors(&errors);
}

/// A ring written by the real recorder has every byte where the spec says.
#[test]
fn a_real_ring_has_the_bytes_the_spec_describes() {
    use Group::{Event, Header, Record};
    let spec = Spec::load();
    let dir = std::env::temp_dir().join(format!("layout-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spec.ring");
    let capacity = 64 << 10;

    let before = recorder::realtime_ns();
    let rec = Recorder::builder(&path)
        .capacity(capacity)
        .program("layout-spec")
        .app_version("9.9.9")
        .heartbeat(None)
        .create()
        .expect("create a ring");
    rec.log(Level::Info, "app", "hi", &[Field::new("n", 7u64)])
        .expect("append");
    rec.close();
    let after = recorder::realtime_ns();

    let file = std::fs::read(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    std::fs::remove_dir_all(&dir).unwrap();

    let mut errors = Vec::new();
    let expect = |errors: &mut Vec<String>, what: &str, spec_value: u128, file_value: u128| {
        if spec_value != file_value {
            errors.push(format!(
                "{what}: the spec says {spec_value} ({spec_value:#x}), the recorder wrote \
                 {file_value} ({file_value:#x})"
            ));
        }
    };
    let field = |group: Group, name: &str, base: usize| -> u128 {
        let r = spec.field(group, name);
        le(&file, base + r.offset, r.size.min(16))
    };
    let in_range = |v: u128| u128::from(before) <= v && v <= u128::from(after);

    // The file.
    let header_len = spec.int("HEADER_LEN");
    expect(
        &mut errors,
        "file length (HEADER_LEN + CAPACITY)",
        header_len + u128::from(capacity),
        file.len() as u128,
    );
    expect(&mut errors, "file mode", 0o600, u128::from(mode));

    // The header.
    let magic = spec.field(Header, "MAGIC");
    if SpecValue::Bytes(file[magic.offset..magic.offset + magic.size].to_vec())
        != *spec.constant("MAGIC")
    {
        errors.push(format!(
            "MAGIC: the spec says {}, the recorder wrote {:?}",
            spec.constant("MAGIC"),
            String::from_utf8_lossy(&file[magic.offset..magic.offset + magic.size])
        ));
    }
    for (name, value) in [
        ("VERSION", spec.int("VERSION")),
        ("ENDIAN", spec.int("ENDIAN_CHECK")),
        ("HEADER_LEN", header_len),
        ("RECORD_HEADER_LEN", spec.int("RECORD_HEADER_LEN")),
        ("INCOMPAT_FLAGS", 0),
        ("COMPAT_FLAGS", 0),
        ("DATA_OFFSET", header_len),
        ("CAPACITY", u128::from(capacity)),
        ("PID", u128::from(std::process::id())),
        (
            "MAX_RECORD_LEN",
            spec.int("MAX_RECORD_LEN").min(u128::from(capacity) / 4),
        ),
        ("HEARTBEAT_PERIOD_MS", 0),
        ("STATE", spec.int("STATE_EXITED")),
        ("LAPPED_WRITES", 0),
        ("OVERSIZE_DROPS", 0),
        ("SNAPSHOT_TRIGGER", 0),
        ("SNAPSHOT_POS", 0),
        ("MINOR_VERSION", spec.int("MINOR_VERSION")),
    ] {
        expect(
            &mut errors,
            &format!("header {name}"),
            value,
            field(Header, name, 0),
        );
    }
    for name in ["START_UNIX_NS", "HEARTBEAT_UNIX_NS", "CLOSE_UNIX_NS"] {
        let v = field(Header, name, 0);
        if !in_range(v) {
            errors.push(format!(
                "header {name}: {v} is not a CLOCK_REALTIME time in ns between {before} and {after}"
            ));
        }
    }
    for (name, text) in [("PROGRAM", "layout-spec"), ("APP_VERSION", "9.9.9")] {
        let r = spec.field(Header, name);
        let mut want = vec![0u8; r.size];
        want[..text.len()].copy_from_slice(text.as_bytes());
        if file[r.offset..r.offset + r.size] != want[..] {
            errors.push(format!(
                "header {name}: expected {text:?} padded with NUL to {} bytes, found {:?}",
                r.size,
                String::from_utf8_lossy(&file[r.offset..r.offset + r.size])
            ));
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        let r = spec.field(Header, "BOOT_ID");
        let found: String = file[r.offset..r.offset + r.size]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if found != hex {
            errors.push(format!(
                "header BOOT_ID: the boot id is {hex}, the recorder wrote {found}"
            ));
        }
    }
    // Reserved bytes are zero; so are the lap log (nothing was lapped), the
    // memory evidence (no heartbeat, no sample) and the death area (no crash).
    for r in spec.fields.iter().filter(|r| r.group == Header) {
        let reserved = match r.name.as_deref() {
            None => true,
            Some(name) => {
                name == "LAP_LOG" || name.starts_with("MEM_") || name.starts_with("DEATH_")
            }
        };
        if reserved && file[r.offset..r.offset + r.size].iter().any(|&b| b != 0) {
            errors.push(format!(
                "header {} (bytes {}..{}) is not zero",
                r.label(),
                r.offset,
                r.offset + r.size
            ));
        }
    }

    // The one record, at position 0, which is data offset 0.
    let data = field(Header, "DATA_OFFSET", 0) as usize;
    let event = spec.hex("event-example");
    let len = spec.int("RECORD_HEADER_LEN") as usize + event.len();
    let align = spec.int("RECORD_ALIGN") as usize;
    let stride = len.div_ceil(align) * align;
    expect(
        &mut errors,
        "header TAIL",
        stride as u128,
        field(Header, "TAIL", 0),
    );
    expect(
        &mut errors,
        "record COMMIT (len | 0 << 32 at position 0)",
        len as u128,
        field(Record, "COMMIT", data),
    );
    expect(
        &mut errors,
        "record KIND",
        spec.int("KIND_EVENT"),
        field(Record, "KIND", data),
    );
    expect(&mut errors, "record FLAGS", 0, field(Record, "FLAGS", data));
    expect(&mut errors, "record POS", 0, field(Record, "POS", data));
    let ts = field(Record, "TS", data);
    if !in_range(ts) {
        errors.push(format!(
            "record TS: {ts} is not a CLOCK_REALTIME time in ns between {before} and {after}"
        ));
    }
    if data + stride <= file.len() {
        let record = &file[data..data + stride];
        let mut cat = field(Header, "NONCE", 0).to_le_bytes()[..8].to_vec();
        cat.extend_from_slice(&(len as u32).to_le_bytes());
        cat.extend_from_slice(&record[spec.int("R_CRC_START") as usize..]);
        expect(
            &mut errors,
            "record CRC (CRC-32C of nonce, len, bytes [12, stride))",
            u128::from(crc32c::crc32c(&cat)),
            field(Record, "CRC", data),
        );
        if record[len..].iter().any(|&b| b != 0) {
            errors.push(format!("record padding {:?} is not zero", &record[len..]));
        }
        // The payload is the spec's event example, but for the thread id.
        let payload_at = spec.int("RECORD_HEADER_LEN") as usize;
        let payload = &record[payload_at..len];
        let mut want = event.to_vec();
        let tid = spec.field(Event, "THREAD_ID");
        want[tid.offset..tid.offset + tid.size]
            .copy_from_slice(&payload[tid.offset..tid.offset + tid.size]);
        let fields: Vec<&FieldRow> = spec.fields.iter().filter(|r| r.group == Event).collect();
        errors.extend(diff_bytes("event-example", &want, payload, &fields));
    }
    assert_no_errors(&errors);
}

/// The memory cgroup's `(usage readable, limit)` found as section 8.2 of the
/// spec says; `None` when no cgroup file can be read.
fn spec_cgroup_memory() -> Option<(bool, u64)> {
    let read = |p: &std::path::Path| -> Option<String> {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let table = read(std::path::Path::new("/proc/self/cgroup"))?;
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let dir =
                std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
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
        let dir = std::path::Path::new(base).join(path.trim_start_matches('/'));
        if read(&dir.join("memory.current")).is_some() {
            let limit = read(&dir.join("memory.max"))?;
            return Some((true, limit.parse().unwrap_or(0)));
        }
    }
    None
}

/// A writer with a heartbeat samples the memory evidence into the fields
/// the spec names.
#[test]
fn a_real_ring_has_the_memory_evidence_the_spec_describes() {
    use Group::Header;
    let spec = Spec::load();
    let dir = std::env::temp_dir().join(format!("layout-spec-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memory.ring");
    let sampled_at = spec.offset(Header, "MEM_SAMPLED_UNIX_NS");

    let before = recorder::realtime_ns();
    let rec = Recorder::builder(&path)
        .capacity(64 << 10)
        .heartbeat(Some(std::time::Duration::from_millis(10)))
        .create()
        .expect("create a ring");
    // The heartbeat thread samples when it starts; wait for the first one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut sampled = false;
    while !sampled && std::time::Instant::now() < deadline {
        let header = std::fs::read(&path).unwrap();
        sampled = le(&header, sampled_at, 8) != 0;
        if !sampled {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let cgroup = spec_cgroup_memory();
    rec.close();
    let after = recorder::realtime_ns();
    let file = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        sampled,
        "the heartbeat wrote no MEM_SAMPLED_UNIX_NS within 10 s"
    );

    let field = |name: &str| {
        let r = spec.field(Header, name);
        le(&file, r.offset, r.size)
    };
    let mut errors = Vec::new();
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
                 section 8.2 says is {limit}"
            ));
        }
    }
    for r in spec.fields.iter().filter(|r| r.group == Header) {
        let zero = match r.name.as_deref() {
            None => true,
            Some(name) => name.starts_with("DEATH_"),
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
    assert_no_errors(&errors);
}

/// A field value of a decoded event.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    I64(i64),
    Str(String),
    Other(u8),
}

/// An event of a ring, decoded with the spec's offsets and codes.
#[derive(Debug)]
struct Event {
    level: u128,
    target: String,
    message: String,
    fields: Vec<(String, Value)>,
}

/// The events of an unwrapped ring (positions 0 to TAIL), decoded with the
/// spec's offsets only.
fn events_by_the_spec(spec: &Spec, file: &[u8]) -> Vec<Event> {
    use Group::{Event as E, Header, Record};
    let hfield = |name: &str| {
        let r = spec.field(Header, name);
        le(file, r.offset, r.size) as usize
    };
    let (data, tail) = (hfield("DATA_OFFSET"), hfield("TAIL"));
    let rec_len = spec.int("RECORD_HEADER_LEN") as usize;
    let align = spec.int("RECORD_ALIGN") as usize;
    let fixed = spec.int("EVENT_FIXED_LEN") as usize;
    let mut events = Vec::new();
    let mut p = 0;
    while p + rec_len <= tail {
        let at = data + p;
        let commit = le(file, at + spec.offset(Record, "COMMIT"), 8) as u64;
        let len = (commit & 0xffff_ffff) as usize;
        if commit >> 32 != (p as u64 / 8) % (1 << 32) || len < rec_len || p + len > tail {
            p += align;
            continue;
        }
        let kind = le(file, at + spec.offset(Record, "KIND"), 2);
        let payload = &file[at + rec_len..at + len];
        p += len.div_ceil(align) * align;
        if kind != spec.int("KIND_EVENT") {
            continue;
        }
        let get = |name: &str| {
            let r = spec.field(E, name);
            le(payload, r.offset, r.size) as usize
        };
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
                Value::I64(le(payload, q - 8, 8) as u64 as i64)
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
        events.push(Event {
            level: u128::from(payload[spec.offset(E, "LEVEL")]),
            target,
            message,
            fields,
        });
    }
    events
}

/// The text of a NUL-padded string field.
fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Real writers (`blackbox demo --die HOW`) that crash on their main thread
/// fill the death area and append the crash event as section 8.1 says.
#[test]
fn real_crashes_fill_the_death_area_as_the_spec_says() {
    use Group::Header;
    let spec = Spec::load();
    let dir = std::env::temp_dir().join(format!("layout-spec-death-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut errors = Vec::new();
    for how in ["segv", "abort", "panic"] {
        let path = dir.join(format!("{how}.ring"));
        let before = recorder::realtime_ns();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blackbox"))
            .args(["demo", "--ring"])
            .arg(&path)
            .args(["--capacity", "64KiB", "--records", "1", "--die", how])
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
        let after = recorder::realtime_ns();
        let file = std::fs::read(&path).expect("the demo's ring");
        let bytes = |name: &str| {
            let r = spec.field(Header, name);
            &file[r.offset..r.offset + r.size]
        };
        let int = |name: &str| {
            le(
                &file,
                spec.offset(Header, name),
                spec.field(Header, name).size,
            )
        };
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
        expect(
            "MINOR_VERSION",
            spec.int("MINOR_VERSION"),
            int("MINOR_VERSION"),
        );
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
        for r in spec
            .fields
            .iter()
            .filter(|r| r.group == Header && r.name.is_none())
        {
            if file[r.offset..r.offset + r.size].iter().any(|&b| b != 0) {
                errors.push(format!(
                    "--die {how}: reserved header bytes {}..{} are not zero",
                    r.offset,
                    r.offset + r.size
                ));
            }
        }

        // The crash event.
        let crash: Vec<Event> = events_by_the_spec(&spec, &file)
            .into_iter()
            .filter(|e| e.target == "blackbox::crash")
            .collect();
        let want_message = match how {
            "segv" => "fatal signal SIGSEGV at 0x10 in thread 'main'".to_string(),
            "abort" => "fatal signal SIGABRT in thread 'main'".to_string(),
            _ => format!("panicked at {location}: demo panic"),
        };
        match &crash[..] {
            [e] => {
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
                        && matches!(e.fields[1].1, Value::Str(_))
                };
                if !fields_ok {
                    errors.push(format!(
                        "--die {how}: crash event fields {:?} are not the spec's",
                        e.fields
                    ));
                }
            }
            other => errors.push(format!(
                "--die {how}: expected one blackbox::crash event, found {}: {other:?}",
                other.len()
            )),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_no_errors(&errors);
}
