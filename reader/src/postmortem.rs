//! The postmortem dump (`shm-layout.md`, 9.5): the module table and the
//! crash context a fatal-signal handler left, decoded from the header and
//! the postmortem area.
//!
//! Nothing here is trusted: every count and length is cut to the layout's
//! bounds and to the bytes actually there, so hostile bytes give a smaller
//! (or empty) result and a note in [`Postmortem::problems`], never a panic,
//! and memory stays within the postmortem area's size.

use blackbox_recorder::layout::*;

/// One loaded object from the module table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The path the loader used.
    pub path: String,
    /// Run-time address minus the file's virtual address.
    pub load_bias: u64,
    /// Executable run-time ranges, `[start, end)`.
    pub ranges: Vec<(u64, u64)>,
    /// GNU build id; empty when the object has none.
    pub build_id: Vec<u8>,
}

impl Module {
    /// Whether `addr` lies in one of the module's executable ranges.
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| (s..e).contains(&addr))
    }

    /// The build id as lowercase hex (empty without one).
    pub fn build_id_hex(&self) -> String {
        hex(&self.build_id)
    }

    /// The file name part of the path.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The crashing thread's state, as the handler copied it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashContext {
    /// The handler finished (`DUMP_COMPLETE`); otherwise it died while
    /// writing and some fields may be missing.
    pub complete: bool,
    /// Linux thread id of the dumped thread.
    pub thread_id: u32,
    /// `DUMP_FLAG_*` bits.
    pub flags: u32,
    /// `ARCH_*`.
    pub arch: u32,
    /// Registers in DWARF order (`shm-layout.md`, 9.5).
    pub regs: Vec<u64>,
    /// Address of `code[0]`.
    pub code_start: u64,
    /// Code bytes around the pc.
    pub code: Vec<u8>,
    /// Address of `stack[0]`.
    pub stack_start: u64,
    /// The stack copy.
    pub stack: Vec<u8>,
    /// The stack's known bounds `(lowest, top)`, if recorded.
    pub stack_bounds: Option<(u64, u64)>,
    /// Nanoseconds from the signal's arrival in the handler to the end of
    /// the dump, if both were recorded.
    pub handler_ns: Option<u64>,
}

impl CrashContext {
    /// The program counter at the crash.
    pub fn pc(&self) -> Option<u64> {
        match self.arch {
            ARCH_X86_64 => self.regs.get(16).copied(),
            ARCH_AARCH64 => self.regs.get(32).copied(),
            _ => None,
        }
    }

    /// The stack pointer at the crash.
    pub fn sp(&self) -> Option<u64> {
        match self.arch {
            ARCH_X86_64 => self.regs.get(7).copied(),
            ARCH_AARCH64 => self.regs.get(31).copied(),
            _ => None,
        }
    }

    /// The `u64` at `addr` in the stack copy, if the copy holds all 8 bytes.
    pub fn stack_u64(&self, addr: u64) -> Option<u64> {
        let at = usize::try_from(addr.checked_sub(self.stack_start)?).ok()?;
        let bytes = self.stack.get(at..at.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// Whether the handler saw a stack overflow.
    pub fn stack_overflow(&self) -> bool {
        self.flags & DUMP_FLAG_STACK_OVERFLOW != 0
    }
}

/// What the ring holds for a postmortem: the module table and, after a
/// fatal signal, the crash context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Postmortem {
    /// The loaded objects, main program first.
    pub modules: Vec<Module>,
    /// `MODULES_GEN` as read.
    pub modules_generation: u64,
    /// The table was being rewritten (odd generation): it may be torn.
    pub modules_torn: bool,
    /// More objects were loaded than the table holds.
    pub modules_full: bool,
    /// The main binary's build id (empty: none recorded).
    pub build_id: Vec<u8>,
    /// The crash context, if a handler claimed the dump.
    pub crash: Option<CrashContext>,
    /// What could not be used, in words.
    pub problems: Vec<String>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

/// Where the postmortem area lies, if the header places it validly:
/// `(offset, len)` between the chunk table's end and `data_offset`.
pub fn area_bounds(
    header: &[u8],
    chunk_count: u32,
    data_offset: u64,
) -> Result<(u64, u64), String> {
    let offset = u64_at(header, H_PM_OFFSET);
    let len = u64::from(u32_at(header, H_PM_LEN));
    if offset == 0 {
        return Err("the ring has no postmortem area".into());
    }
    let table_end = HEADER_LEN as u64 + 8 * u64::from(chunk_count);
    let fits = offset >= table_end
        && len <= pm_len(MAX_STACK_DUMP)
        && offset
            .checked_add(len)
            .is_some_and(|end| end <= data_offset);
    if !fits {
        return Err(format!(
            "the postmortem area ({len} bytes at {offset}) does not lie between the chunk table and the data region; ignored"
        ));
    }
    Ok((offset, len))
}

/// Decodes the module table and the crash context from the file's header
/// bytes and its postmortem area (`area`, as placed by [`area_bounds`];
/// empty when there is none).
pub fn decode(header: &[u8], area: &[u8]) -> Postmortem {
    let mut pm = Postmortem::default();
    if header.len() < HEADER_LEN {
        pm.problems.push("the header is cut short".into());
        return pm;
    }
    let id_len = (u32_at(header, H_BUILD_ID_LEN) as usize).min(BUILD_ID_MAX);
    pm.build_id = header[H_BUILD_ID..H_BUILD_ID + id_len].to_vec();
    let slots = (u32_at(header, H_MODULE_SLOTS) as usize).min(MODULE_SLOTS as usize);
    let stack_max = (u32_at(header, H_PM_STACK_MAX) as usize).min(MAX_STACK_DUMP as usize);
    let table_len = slots * MODULE_ENTRY_LEN;
    if area.len() < table_len + stack_max {
        if !area.is_empty() {
            pm.problems.push(format!(
                "the postmortem area ({} bytes) is smaller than its table and stack copy ({} bytes)",
                area.len(),
                table_len + stack_max
            ));
        }
    } else {
        pm.modules_generation = u64_at(header, H_MODULES_GEN);
        pm.modules_torn = pm.modules_generation % 2 == 1;
        pm.modules_full = u32_at(header, H_MODULE_FLAGS) & MODULES_FLAG_FULL != 0;
        let count = (u32_at(header, H_MODULE_COUNT) as usize).min(slots);
        for i in 0..count {
            let e = &area[i * MODULE_ENTRY_LEN..(i + 1) * MODULE_ENTRY_LEN];
            pm.modules.push(decode_entry(e));
        }
        if pm.modules_torn {
            pm.problems
                .push("the module table was being rewritten: it may be torn".into());
        }
    }
    let state = u32_at(header, H_DUMP_STATE);
    if state == DUMP_NONE {
        return pm;
    }
    let mut c = CrashContext {
        complete: state == DUMP_COMPLETE,
        thread_id: u32_at(header, H_DUMP_THREAD_ID),
        flags: u32_at(header, H_DUMP_FLAGS),
        arch: u32_at(header, H_DUMP_ARCH),
        ..CrashContext::default()
    };
    if !c.complete {
        pm.problems
            .push("the crash handler did not finish its dump".into());
    }
    let count = (u32_at(header, H_DUMP_REG_COUNT) as usize).min(DUMP_REG_SLOTS);
    c.regs = (0..count)
        .map(|i| u64_at(header, H_DUMP_REGS + 8 * i))
        .collect();
    let code_len = (u32_at(header, H_DUMP_CODE_LEN) as usize).min(DUMP_CODE_MAX);
    c.code_start = u64_at(header, H_DUMP_CODE_START);
    c.code = header[H_DUMP_CODE..H_DUMP_CODE + code_len].to_vec();
    if c.flags & DUMP_FLAG_STACK_BOUNDS != 0 {
        let (lo, hi) = (
            u64_at(header, H_DUMP_STACK_LO),
            u64_at(header, H_DUMP_STACK_HI),
        );
        if lo < hi {
            c.stack_bounds = Some((lo, hi));
        }
    }
    let (entry, done) = (
        u64_at(header, H_DUMP_ENTRY_NS),
        u64_at(header, H_DUMP_DONE_NS),
    );
    if entry != 0 && done >= entry {
        c.handler_ns = Some(done - entry);
    }
    c.stack_start = u64_at(header, H_DUMP_STACK_START);
    let stack_len = (u32_at(header, H_DUMP_STACK_LEN) as usize).min(stack_max);
    if let Some(stack) = area.get(table_len..table_len + stack_len) {
        c.stack = stack.to_vec();
    }
    if c.pc().is_none() {
        pm.problems.push(format!(
            "the crash context's register set ({}) is unknown",
            c.arch
        ));
    }
    pm.crash = Some(c);
    pm
}

fn decode_entry(e: &[u8]) -> Module {
    let ranges = (u32_at(e, M_RANGE_COUNT) as usize).min(MODULE_RANGES);
    let id_len = (u32_at(e, M_BUILD_ID_LEN) as usize).min(BUILD_ID_MAX);
    let path_len = (u32_at(e, M_PATH_LEN) as usize).min(MODULE_PATH_MAX);
    Module {
        path: String::from_utf8_lossy(&e[M_PATH..M_PATH + path_len]).into_owned(),
        load_bias: u64_at(e, M_LOAD_BIAS),
        ranges: (0..ranges)
            .map(|i| {
                (
                    u64_at(e, M_RANGES + 16 * i),
                    u64_at(e, M_RANGES + 16 * i + 8),
                )
            })
            .filter(|(s, e)| s < e)
            .collect(),
        build_id: e[M_BUILD_ID..M_BUILD_ID + id_len].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_everywhere_decodes_within_bounds() {
        let header = vec![0xffu8; HEADER_LEN];
        let area = vec![0xffu8; pm_len(DEFAULT_STACK_DUMP) as usize];
        let pm = decode(&header, &area);
        assert!(pm.modules.len() <= MODULE_SLOTS as usize);
        let c = pm.crash.unwrap();
        assert!(c.regs.len() <= DUMP_REG_SLOTS && c.code.len() <= DUMP_CODE_MAX);
        assert!(c.stack.len() <= DEFAULT_STACK_DUMP as usize);
        assert!(pm.build_id.len() <= BUILD_ID_MAX);
    }

    #[test]
    fn a_short_header_or_area_is_reported() {
        assert!(!decode(&[0; 100], &[]).problems.is_empty());
        let mut header = vec![0u8; HEADER_LEN];
        header[H_MODULE_SLOTS..H_MODULE_SLOTS + 4].copy_from_slice(&4u32.to_le_bytes());
        let pm = decode(&header, &[0; 100]);
        assert!(pm.modules.is_empty() && !pm.problems.is_empty());
    }
}
