//! `shm-layout.md` is the authority on the bytes of a ring file; this test
//! holds the code to it.
//!
//! It reads the spec's markdown tables: a row whose first cell is a number is
//! a field (`| offset | size | type | NAME | meaning |`), checked against
//! `recorder::layout::H_NAME` (section "Header"), `R_NAME` ("Record
//! framing") or `E_NAME` ("Standard event payload"); a row whose first cell
//! is a name in backticks is a constant (`| NAME | value | meaning |`),
//! checked against the code's constant of that name. It also checks the
//! spec's worked examples against the layout helpers and a real ring written
//! by the recorder.
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
    ("LAP_LOG", l::H_LAP_LOG),
    ("MEMORY_EVIDENCE", l::H_MEMORY_EVIDENCE),
    ("DEATH", l::H_DEATH),
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
    ("STATE_CREATING", Code::Int(l::STATE_CREATING as u128)),
    ("STATE_RUNNING", Code::Int(l::STATE_RUNNING as u128)),
    ("STATE_EXITED", Code::Int(l::STATE_EXITED as u128)),
    ("STATE_CRASHED", Code::Int(l::STATE_CRASHED as u128)),
    ("R_CRC_START", Code::Int(l::R_CRC_START as u128)),
    ("KIND_EVENT", Code::Int(l::KIND_EVENT as u128)),
    ("KIND_RAW", Code::Int(l::KIND_RAW as u128)),
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

/// Size in bytes of `u8`..`u64`, `[T; N]` and `(T, U, ..)`.
fn type_size(ty: &str) -> Option<usize> {
    let ty = ty.trim();
    match ty {
        "u8" => return Some(1),
        "u16" => return Some(2),
        "u32" => return Some(4),
        "u64" => return Some(8),
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
                    "line {}: {} field {}: cannot size type {:?} (use u8..u64, [T; N] or (T, U))",
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
    // Reserved bytes, and the areas reserved in version 1, are zero.
    for r in spec.fields.iter().filter(|r| r.group == Header) {
        let reserved = r.name.is_none()
            || matches!(
                r.name.as_deref(),
                Some("LAP_LOG" | "MEMORY_EVIDENCE" | "DEATH")
            );
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
