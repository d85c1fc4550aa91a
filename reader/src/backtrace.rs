//! Offline unwinding and symbolization of a crash dump (the `symbolize`
//! feature): the frames of the crashing thread, from the registers and the
//! stack copy the handler left, each labelled with how it was found.
//!
//! - Each module's file is found by its build id: the `--symbols`
//!   directories (a `.build-id/xx/rest.debug` tree, or plain files whose
//!   build id matches), the recorded path when its build id matches, then
//!   `/usr/lib/debug/.build-id`. A module without a build id is matched by
//!   its recorded path only. A module whose file is not found keeps its
//!   frames as module + offset + build id: never a name from another file.
//! - Unwinding uses the call frame information (`.eh_frame`, else
//!   `.debug_frame`, read with gimli), then frame pointers, then a scan of
//!   the stack for a word that points into executable code.
//! - Symbols come from DWARF (addr2line: function, file, line, inlined
//!   frames), else from the symbol table; Rust names are demangled.
//!
//! The dump is hostile input: every stack read stays inside the copy, the
//! walk is bounded in frames and in scanned words, and a module file is
//! read only if it is a regular file below a size bound.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use blackbox_recorder::layout::{ARCH_AARCH64, ARCH_X86_64};
use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, EhFrameHdr, LittleEndian, Register, RegisterRule,
    UnwindContext, UnwindSection,
};
use object::{Object, ObjectSection, ObjectSymbol};
use serde::Serialize;

use crate::postmortem::{hex, CrashContext, Module, Postmortem};

/// Most frames a backtrace holds.
pub const MAX_FRAMES: usize = 128;
/// Most stack words a scan looks at for one frame.
const MAX_SCAN_WORDS: u64 = 1024;
/// Largest module file read.
const MAX_FILE_LEN: u64 = 1 << 30;
/// Most directory entries looked at in one `--symbols` directory.
const MAX_DIR_ENTRIES: usize = 512;

/// How a frame was found, from most to least trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The crashing instruction, from the signal's context.
    Context,
    /// Unwound with call frame information.
    Cfi,
    /// Unwound through the frame pointer chain.
    FramePointer,
    /// A stack word that points into code: possibly stale.
    Scan,
}

impl Trust {
    /// The JSON and text label.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Context => "context",
            Trust::Cfi => "cfi",
            Trust::FramePointer => "frame_pointer",
            Trust::Scan => "scan",
        }
    }
}

/// One frame of a backtrace (an inlined call gives several frames at one
/// pc, innermost first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The frame's program counter (a return address for callers).
    pub pc: u64,
    /// The module's path, if the pc lies in a known module.
    pub module: Option<String>,
    /// The module's build id, hex.
    pub build_id: Option<String>,
    /// The pc as an address of the module's file (pc minus load bias).
    pub module_offset: Option<u64>,
    /// Demangled function name, if the module's symbols were found.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// Inlined into the next frame.
    pub inlined: bool,
    /// How the frame was found.
    pub trust: Trust,
}

impl Frame {
    /// One line: `function at file:line` or `module+0xoffset (build id ...)`.
    pub fn text(&self) -> String {
        let mut s = match (&self.function, &self.module, self.module_offset) {
            (Some(f), _, _) => f.clone(),
            (None, Some(m), Some(off)) => {
                let name = m.rsplit('/').next().unwrap_or(m);
                match &self.build_id {
                    Some(id) => format!("{name}+{off:#x} (build id {id})"),
                    None => format!("{name}+{off:#x}"),
                }
            }
            _ => format!("{:#x}", self.pc),
        };
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            s.push_str(&format!(" at {file}:{line}"));
        }
        if self.inlined {
            s.push_str(" [inlined]");
        }
        s.push_str(&format!(" ({})", self.trust.as_str()));
        s
    }
}

/// Where to look for module files.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--symbols` directories: build-id trees or plain files.
    pub symbol_dirs: Vec<PathBuf>,
    /// Also open the paths recorded in the module table.
    pub recorded_paths: bool,
    /// Also look in `/usr/lib/debug/.build-id`.
    pub system_debug: bool,
}

impl Options {
    /// Recorded paths and the system's debug directory, plus `symbol_dirs`.
    pub fn with_symbols(symbol_dirs: Vec<PathBuf>) -> Options {
        Options {
            symbol_dirs,
            recorded_paths: true,
            system_debug: true,
        }
    }
}

/// Call frame information of one file, owned.
struct Cfi {
    eh_frame: Vec<u8>,
    eh_frame_addr: u64,
    eh_frame_hdr: Vec<u8>,
    eh_frame_hdr_addr: u64,
    debug_frame: Vec<u8>,
    text_addr: u64,
}

type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// Symbols of one file.
struct Symbols {
    dwarf: Option<addr2line::Context<Reader>>,
    /// `(address, size, name)`, sorted by address.
    table: Vec<(u64, u64, String)>,
}

#[derive(Default)]
struct Loaded {
    cfi: Option<Cfi>,
    symbols: Option<Symbols>,
}

/// Reads the files of modules, once each.
struct Files<'a> {
    options: &'a Options,
    loaded: HashMap<usize, Rc<Loaded>>,
}

fn build_id_of(path: &Path) -> Option<Vec<u8>> {
    // stat before open: a path from a hostile ring may name a FIFO or a
    // device, whose open could block.
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_LEN {
        return None;
    }
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    obj.build_id().ok().flatten().map(<[u8]>::to_vec)
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_LEN {
        return None;
    }
    std::fs::read(path).ok()
}

impl Files<'_> {
    /// Files that belong to `m`, best first: matching build id (or the
    /// recorded path for a module without one).
    fn candidates(&self, m: &Module) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if m.build_id.is_empty() {
            if self.options.recorded_paths && !m.path.is_empty() {
                out.push(PathBuf::from(&m.path));
            }
            return out;
        }
        let id = hex(&m.build_id);
        let (head, rest) = id.split_at(2.min(id.len()));
        let matches = |p: &Path| build_id_of(p).is_some_and(|b| b == m.build_id);
        for dir in &self.options.symbol_dirs {
            for p in [
                dir.join(".build-id")
                    .join(head)
                    .join(format!("{rest}.debug")),
                dir.join(head).join(format!("{rest}.debug")),
            ] {
                if matches(&p) {
                    out.push(p);
                }
            }
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.take(MAX_DIR_ENTRIES).flatten() {
                    let p = entry.path();
                    if matches(&p) {
                        out.push(p);
                    }
                }
            }
        }
        if self.options.recorded_paths && !m.path.is_empty() && matches(Path::new(&m.path)) {
            out.push(PathBuf::from(&m.path));
        }
        if self.options.system_debug {
            let p = Path::new("/usr/lib/debug/.build-id")
                .join(head)
                .join(format!("{rest}.debug"));
            if matches(&p) {
                out.push(p);
            }
        }
        out
    }

    fn get(&mut self, index: usize, m: &Module) -> Rc<Loaded> {
        if let Some(l) = self.loaded.get(&index) {
            return Rc::clone(l);
        }
        let mut loaded = Loaded::default();
        for path in self.candidates(m) {
            if loaded.cfi.is_some() && loaded.symbols.as_ref().is_some_and(|s| s.dwarf.is_some()) {
                break;
            }
            let Some(data) = read_file(&path) else {
                continue;
            };
            let Ok(obj) = object::File::parse(&*data) else {
                continue;
            };
            if loaded.cfi.is_none() {
                loaded.cfi = cfi_of(&obj);
            }
            let has_dwarf = obj
                .section_by_name(".debug_info")
                .is_some_and(|s| s.size() > 0);
            let better = match &loaded.symbols {
                None => true,
                Some(s) => s.dwarf.is_none() && has_dwarf,
            };
            if better {
                if let Some(symbols) = symbols_of(&obj, has_dwarf) {
                    loaded.symbols = Some(symbols);
                }
            }
        }
        let loaded = Rc::new(loaded);
        self.loaded.insert(index, Rc::clone(&loaded));
        loaded
    }
}

fn section(obj: &object::File<'_>, name: &str) -> Option<(Vec<u8>, u64)> {
    let s = obj.section_by_name(name)?;
    let data = s.uncompressed_data().ok()?;
    (!data.is_empty()).then(|| (data.into_owned(), s.address()))
}

fn cfi_of(obj: &object::File<'_>) -> Option<Cfi> {
    let eh = section(obj, ".eh_frame");
    let debug = section(obj, ".debug_frame");
    if eh.is_none() && debug.is_none() {
        return None;
    }
    let hdr = section(obj, ".eh_frame_hdr");
    let text_addr = obj.section_by_name(".text").map_or(0, |s| s.address());
    let (eh_frame, eh_frame_addr) = eh.unwrap_or_default();
    let (eh_frame_hdr, eh_frame_hdr_addr) = hdr.unwrap_or_default();
    Some(Cfi {
        eh_frame,
        eh_frame_addr,
        eh_frame_hdr,
        eh_frame_hdr_addr,
        debug_frame: debug.map(|d| d.0).unwrap_or_default(),
        text_addr,
    })
}

fn symbols_of(obj: &object::File<'_>, has_dwarf: bool) -> Option<Symbols> {
    let endian = if obj.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let dwarf = if has_dwarf {
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = obj
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .map(|d| Rc::<[u8]>::from(&*d))
                .unwrap_or_else(|| Rc::from(&[][..]));
            Ok(gimli::EndianRcSlice::new(data, endian))
        };
        gimli::Dwarf::load(load)
            .ok()
            .and_then(|d| addr2line::Context::from_dwarf(d).ok())
    } else {
        None
    };
    let mut table: Vec<(u64, u64, String)> = obj
        .symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
        .collect();
    table.sort();
    table.dedup_by_key(|e| e.0);
    (dwarf.is_some() || !table.is_empty()).then_some(Symbols { dwarf, table })
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The frames at `probe` (a file address) from `symbols`, innermost first:
/// `(function, file, line)`.
fn lookup(symbols: &Symbols, probe: u64) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
    let mut out = Vec::new();
    if let Some(ctx) = &symbols.dwarf {
        if let Ok(mut frames) = ctx.find_frames(probe).skip_all_loads() {
            while let Ok(Some(f)) = frames.next() {
                if out.len() >= 64 {
                    break;
                }
                let function = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| demangle(n.as_ref()));
                let (file, line) = f
                    .location
                    .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
                out.push((function, file, line));
            }
        }
    }
    if out.iter().all(|f| f.0.is_none()) {
        // No DWARF for this address: the symbol table's name, if any.
        let i = symbols.table.partition_point(|e| e.0 <= probe);
        if let Some((addr, size, name)) = i.checked_sub(1).map(|i| &symbols.table[i]) {
            if *size == 0 || probe < addr.saturating_add(*size) {
                let (file, line) = out.first().map_or((None, None), |f| (f.1.clone(), f.2));
                out = vec![(Some(demangle(name)), file, line)];
            }
        }
    }
    out
}

/// Register numbers of an architecture (DWARF).
struct Arch {
    sp: usize,
    ra: usize,
    fp: usize,
    /// The slot the pc lives in (x86_64: rip = the return address column).
    pc: usize,
}

fn arch_of(code: u32) -> Option<Arch> {
    match code {
        ARCH_X86_64 => Some(Arch {
            sp: 7,
            ra: 16,
            fp: 6,
            pc: 16,
        }),
        ARCH_AARCH64 => Some(Arch {
            sp: 31,
            ra: 30,
            fp: 29,
            pc: 32,
        }),
        _ => None,
    }
}

type Regs = [Option<u64>; 34];

/// What the call frame information says about one frame.
#[allow(clippy::large_enum_variant)] // one per frame, on the stack, moved once
enum CfiStep {
    /// The caller's registers.
    Caller(Regs),
    /// The return address is undefined: the outermost frame.
    Outermost,
}

/// One unwinding step with call frame information at file address `svma`.
fn cfi_step(
    cfi: &Cfi,
    svma: u64,
    regs: &Regs,
    crash: &CrashContext,
    arch: &Arch,
) -> Option<CfiStep> {
    let bases = BaseAddresses::default()
        .set_eh_frame(cfi.eh_frame_addr)
        .set_eh_frame_hdr(cfi.eh_frame_hdr_addr)
        .set_text(cfi.text_addr);
    let mut ctx = Box::new(UnwindContext::new());
    let apply = |row: &gimli::UnwindTableRow<usize>| -> Option<CfiStep> {
        if matches!(
            row.register(Register(arch.ra as u16)),
            RegisterRule::Undefined
        ) {
            return Some(CfiStep::Outermost);
        }
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => regs
                .get(register.0 as usize)
                .copied()
                .flatten()?
                .checked_add_signed(*offset)?,
            CfaRule::Expression(_) => return None,
        };
        let mut next = *regs;
        for r in 0..=arch.ra.max(arch.fp) {
            let value = match row.register(Register(r as u16)) {
                RegisterRule::Undefined if r == arch.ra => return None,
                RegisterRule::Undefined | RegisterRule::SameValue => regs[r],
                RegisterRule::Offset(n) => crash.stack_u64(cfa.checked_add_signed(n)?),
                RegisterRule::ValOffset(n) => cfa.checked_add_signed(n),
                RegisterRule::Register(o) => regs.get(o.0 as usize).copied().flatten(),
                _ => None,
            };
            next[r] = value;
        }
        next[arch.sp] = Some(cfa);
        next[arch.pc] = next[arch.ra];
        Some(CfiStep::Caller(next))
    };
    if !cfi.eh_frame.is_empty() {
        let mut eh = EhFrame::new(&cfi.eh_frame, LittleEndian);
        eh.set_address_size(8);
        let from_hdr = (!cfi.eh_frame_hdr.is_empty())
            .then(|| {
                EhFrameHdr::new(&cfi.eh_frame_hdr, LittleEndian)
                    .parse(&bases, 8)
                    .ok()
            })
            .flatten();
        let row = match from_hdr.as_ref().and_then(|h| h.table()) {
            Some(table) => table
                .unwind_info_for_address(&eh, &bases, &mut ctx, svma, EhFrame::cie_from_offset)
                .ok()
                .cloned(),
            None => eh
                .unwind_info_for_address(&bases, &mut ctx, svma, EhFrame::cie_from_offset)
                .ok()
                .cloned(),
        };
        if let Some(row) = row {
            return apply(&row);
        }
    }
    if !cfi.debug_frame.is_empty() {
        let mut df = DebugFrame::new(&cfi.debug_frame, LittleEndian);
        df.set_address_size(8);
        let row = df
            .unwind_info_for_address(&bases, &mut ctx, svma, DebugFrame::cie_from_offset)
            .ok()
            .cloned();
        if let Some(row) = row {
            return apply(&row);
        }
    }
    None
}

/// One step through the frame pointer chain.
fn fp_step(regs: &Regs, crash: &CrashContext, arch: &Arch) -> Option<Regs> {
    let fp = regs[arch.fp]?;
    let sp = regs[arch.sp]?;
    if fp < sp {
        return None;
    }
    let saved_fp = crash.stack_u64(fp)?;
    let ra = crash.stack_u64(fp.checked_add(8)?)?;
    let mut next = *regs;
    next[arch.fp] = Some(saved_fp);
    next[arch.sp] = Some(fp.checked_add(16)?);
    next[arch.ra] = Some(ra);
    next[arch.pc] = Some(ra);
    Some(next)
}

/// One step by scanning the stack for a word that points into code.
fn scan_step(regs: &Regs, crash: &CrashContext, arch: &Arch, modules: &[Module]) -> Option<Regs> {
    let sp = regs[arch.sp]?;
    for i in 0..MAX_SCAN_WORDS {
        let slot = sp.checked_add(8 * i)?;
        let word = crash.stack_u64(slot)?;
        if modules.iter().any(|m| m.contains(word)) {
            let mut next = *regs;
            next[arch.sp] = Some(slot.checked_add(8)?);
            next[arch.ra] = Some(word);
            next[arch.pc] = Some(word);
            return Some(next);
        }
    }
    None
}

/// The crashing thread's backtrace: unwound from the dump, symbolized
/// with the module files `options` finds. Empty without a crash context.
pub fn backtrace(pm: &Postmortem, options: &Options) -> Vec<Frame> {
    let Some(crash) = &pm.crash else {
        return Vec::new();
    };
    let Some(arch) = arch_of(crash.arch) else {
        return Vec::new();
    };
    let mut files = Files {
        options,
        loaded: HashMap::new(),
    };
    let mut regs: Regs = [None; 34];
    for (slot, &v) in regs.iter_mut().zip(&crash.regs) {
        *slot = Some(v);
    }
    let mut frames = Vec::new();
    let mut trust = Trust::Context;
    let mut physical = 0;
    while physical < MAX_FRAMES {
        let Some(pc) = regs[arch.pc].filter(|&pc| pc != 0) else {
            break;
        };
        physical += 1;
        // A caller's pc is a return address: look up the call before it.
        let lookup_pc = if trust == Trust::Context { pc } else { pc - 1 };
        let module = pm
            .modules
            .iter()
            .enumerate()
            .find(|(_, m)| m.contains(lookup_pc));
        let mut frame = Frame {
            pc,
            module: None,
            build_id: None,
            module_offset: None,
            function: None,
            file: None,
            line: None,
            inlined: false,
            trust,
        };
        let mut loaded = None;
        if let Some((index, m)) = module {
            frame.module = Some(m.path.clone());
            frame.build_id = (!m.build_id.is_empty()).then(|| m.build_id_hex());
            frame.module_offset = Some(pc.wrapping_sub(m.load_bias));
            let l = files.get(index, m);
            let probe = lookup_pc.wrapping_sub(m.load_bias);
            let found = l
                .symbols
                .as_ref()
                .map(|s| lookup(s, probe))
                .unwrap_or_default();
            push_symbolized(&mut frames, frame, found);
            loaded = Some((l, probe));
        } else {
            frames.push(frame);
        }
        if frames.len() >= 4 * MAX_FRAMES {
            break;
        }
        let sp = regs[arch.sp];
        let cfi = match loaded.as_ref().and_then(|(l, probe)| {
            l.cfi
                .as_ref()
                .and_then(|c| cfi_step(c, *probe, &regs, crash, &arch))
        }) {
            Some(CfiStep::Outermost) => break,
            Some(CfiStep::Caller(next)) => Some(next),
            None => None,
        };
        let progressed = |next: &Regs| match (next[arch.sp], sp) {
            (Some(n), Some(o)) => n > o,
            _ => false,
        };
        let next = match cfi.filter(progressed) {
            Some(next) => {
                trust = Trust::Cfi;
                Some(next)
            }
            None => match fp_step(&regs, crash, &arch).filter(progressed) {
                Some(next)
                    if next[arch.pc]
                        .is_some_and(|pc| pm.modules.iter().any(|m| m.contains(pc))) =>
                {
                    trust = Trust::FramePointer;
                    Some(next)
                }
                _ => scan_step(&regs, crash, &arch, &pm.modules)
                    .filter(progressed)
                    .inspect(|_| {
                        trust = Trust::Scan;
                    }),
            },
        };
        match next {
            Some(next) => regs = next,
            None => break,
        }
    }
    frames
}

/// The return addresses of a panic's `backtrace` field (`0x...` separated
/// by spaces, innermost first), if the field has that form (at most
/// [`MAX_FRAMES`] of them are kept).
pub fn parse_return_addresses(text: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for word in text.split_ascii_whitespace() {
        let hex = word.strip_prefix("0x")?;
        let a = u64::from_str_radix(hex, 16).ok()?;
        if out.len() < MAX_FRAMES {
            out.push(a);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a frame belongs to the panic machinery (std's or core's panic
/// path, or blackbox's own hook) rather than to the code that panicked.
fn is_panic_machinery(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("std::panicking::")
        || f.starts_with("core::panicking::")
        || f.starts_with("std::sys::backtrace::__rust_end_short_backtrace")
        || f.starts_with("blackbox_recorder::crash::")
        || f.contains("rust_begin_unwind")
        || f.starts_with("alloc::boxed::Box<F,A> as core::ops::function::Fn")
        || f.starts_with("alloc::boxed::Box<dyn for<'a, 'b> core::ops::function::Fn")
        || f == "__rustc::rust_panic"
        || f == "rust_panic"
}

/// Symbolizes a panic's return addresses with the ring's module table,
/// innermost first, and drops the frames of the panic hook and of std's
/// panic machinery (the innermost run of such frames).
pub fn symbolize_return_addresses(
    pm: &Postmortem,
    addresses: &[u64],
    options: &Options,
) -> Vec<Frame> {
    let mut files = Files {
        options,
        loaded: HashMap::new(),
    };
    let mut frames = Vec::new();
    for &pc in addresses.iter().take(MAX_FRAMES) {
        let lookup_pc = pc.wrapping_sub(1);
        let mut frame = Frame {
            pc,
            module: None,
            build_id: None,
            module_offset: None,
            function: None,
            file: None,
            line: None,
            inlined: false,
            trust: Trust::Cfi,
        };
        let Some((index, m)) = pm
            .modules
            .iter()
            .enumerate()
            .find(|(_, m)| m.contains(lookup_pc))
        else {
            frames.push(frame);
            continue;
        };
        frame.module = Some(m.path.clone());
        frame.build_id = (!m.build_id.is_empty()).then(|| m.build_id_hex());
        frame.module_offset = Some(pc.wrapping_sub(m.load_bias));
        let l = files.get(index, m);
        let found = l
            .symbols
            .as_ref()
            .map(|s| lookup(s, lookup_pc.wrapping_sub(m.load_bias)))
            .unwrap_or_default();
        push_symbolized(&mut frames, frame, found);
    }
    // The innermost frames are the hook's and the panic path's, up to the
    // code that panicked; the runtime's outer frames (its catch_unwind)
    // stay.
    let machinery = frames
        .iter()
        .take_while(|f| f.function.as_deref().is_some_and(is_panic_machinery))
        .count();
    frames.drain(..machinery);
    frames
}

/// Pushes `frame` once per symbol found at its pc (inlined callees first,
/// all but the last marked inlined), or as it is when none was found.
fn push_symbolized(
    frames: &mut Vec<Frame>,
    frame: Frame,
    found: Vec<(Option<String>, Option<String>, Option<u32>)>,
) {
    let count = found.len();
    for (i, (function, file, line)) in found.into_iter().enumerate() {
        frames.push(Frame {
            function,
            file,
            line,
            inlined: i + 1 < count,
            ..frame.clone()
        });
    }
    if count == 0 {
        frames.push(frame);
    }
}
