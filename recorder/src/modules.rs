//! The module table (`shm-layout.md`, 9.5): every loaded object's path,
//! load bias, executable ranges and GNU build id, written into the ring's
//! postmortem area in normal context, so that the reader can find each
//! module's file and unwind a crash dump offline.
//!
//! Written by [`crate::Recorder::install_crash_handlers`] and again by
//! [`crate::Recorder::refresh_modules`] (after `dlopen`). The table is
//! guarded by a generation counter: odd while it is rewritten, even when
//! it is whole, so a reader (or a crash in the middle of a refresh) can
//! tell a torn table from a whole one.
//!
//! `unsafe` is allowed here: `dl_iterate_phdr` and the program headers and
//! notes it points at, and the stores into the mapped area.

#![allow(unsafe_code)]

use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;

use crate::layout::*;
use crate::mapping::RingMap;

/// One loaded object, as `dl_iterate_phdr` describes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Module {
    pub(crate) path: Vec<u8>,
    pub(crate) load_bias: u64,
    /// Executable `[start, end)` run-time ranges (at most [`MODULE_RANGES`]).
    pub(crate) ranges: Vec<(u64, u64)>,
    pub(crate) build_id: Vec<u8>,
}

/// Serialises writers of module tables (install and refreshes).
static WRITING: Mutex<()> = Mutex::new(());

/// The loaded objects, main program first. Normal context only: it
/// allocates, and `dl_iterate_phdr` takes the loader's lock.
pub(crate) fn loaded_modules() -> Vec<Module> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut Vec<Module>` passed below, alive for
        // the whole dl_iterate_phdr call; `info` is valid during the
        // callback (the loader's contract).
        let (modules, info) = unsafe { (&mut *data.cast::<Vec<Module>>(), &*info) };
        // SAFETY: as above: the loader's description of a loaded object.
        modules.push(unsafe { describe(info) });
        0
    }
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: the callback matches the expected signature and only touches
    // `modules` through the pointer given here.
    unsafe {
        libc::dl_iterate_phdr(Some(each), (&mut modules as *mut Vec<Module>).cast());
    }
    // The main program comes first with an empty name: give it its path.
    if let Some(main) = modules.first_mut() {
        if main.path.is_empty() {
            if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
                main.path = exe.into_os_string().into_encoded_bytes();
            }
        }
    }
    modules
}

/// # Safety
///
/// `info` comes from `dl_iterate_phdr`: its program headers describe a
/// loaded object whose PT_NOTE segments are mapped readable.
unsafe fn describe(info: &libc::dl_phdr_info) -> Module {
    let bias = info.dlpi_addr;
    let path = if info.dlpi_name.is_null() {
        Vec::new()
    } else {
        // SAFETY: a NUL-terminated name owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .to_vec()
    };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: dlpi_phnum headers at dlpi_phdr, mapped with the object.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let mut module = Module {
        path,
        load_bias: bias,
        ..Module::default()
    };
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            if module.ranges.len() < MODULE_RANGES {
                let start = bias.wrapping_add(ph.p_vaddr);
                module.ranges.push((start, start.wrapping_add(ph.p_memsz)));
            }
        } else if ph.p_type == libc::PT_NOTE && module.build_id.is_empty() {
            let start = bias.wrapping_add(ph.p_vaddr) as *const u8;
            // SAFETY: a PT_NOTE segment of a loaded object is mapped
            // (it lies in a PT_LOAD segment), p_memsz bytes long.
            let notes = unsafe { std::slice::from_raw_parts(start, ph.p_memsz as usize) };
            if let Some(id) = gnu_build_id(notes) {
                module.build_id = id.to_vec();
            }
        }
    }
    module
}

/// The descriptor of the `NT_GNU_BUILD_ID` note in a PT_NOTE segment.
pub(crate) fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    let align4 = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0) as usize;
        let descsz = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name_end = 12usize.checked_add(align4(namesz))?;
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" && descsz > 0 {
            return Some(&notes[name_end..name_end + descsz.min(BUILD_ID_MAX)]);
        }
        notes = &notes[desc_end..];
    }
    None
}

/// Writes the module table of the current process into `map`'s postmortem
/// area, and the main program's build id into the header.
pub(crate) fn write_table(map: &RingMap) {
    let modules = loaded_modules();
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let pm_offset = map.header_u64(H_PM_OFFSET).load(Ordering::Relaxed);
    let slots = map.header_u32(H_MODULE_SLOTS).load(Ordering::Relaxed);
    if pm_offset == 0 || slots == 0 {
        return;
    }
    let area = map.area_ptr(pm_offset, slots as usize * MODULE_ENTRY_LEN);
    let gen = map.header_u64(H_MODULES_GEN);
    // Relaxed, then the Release fence: a reader that sees any entry byte of
    // this rewrite also sees the odd generation (pairs with the reader's
    // Acquire fence after copying the table).
    let before = gen.load(Ordering::Relaxed);
    gen.store(before | 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let count = modules.len().min(slots as usize);
    for (i, module) in modules.iter().take(count).enumerate() {
        let entry = encode_entry(module);
        // SAFETY: entry i lies inside the area (i < slots), whose bytes
        // only this writer, holding WRITING, stores to.
        unsafe {
            std::ptr::copy_nonoverlapping(
                entry.as_ptr(),
                area.add(i * MODULE_ENTRY_LEN),
                MODULE_ENTRY_LEN,
            )
        };
    }
    map.header_u32(H_MODULE_COUNT)
        .store(count as u32, Ordering::Relaxed);
    map.header_u32(H_MODULE_FLAGS).store(
        if modules.len() > count {
            MODULES_FLAG_FULL
        } else {
            0
        },
        Ordering::Relaxed,
    );
    if let Some(main) = modules.first() {
        let mut id = [0u8; BUILD_ID_MAX];
        id[..main.build_id.len()].copy_from_slice(&main.build_id);
        map.write_header_bytes(H_BUILD_ID, &id);
        map.header_u32(H_BUILD_ID_LEN)
            .store(main.build_id.len() as u32, Ordering::Relaxed);
    }
    // Release: the entries above are ordered before the even generation.
    gen.store((before | 1).wrapping_add(1), Ordering::Release);
}

/// A module table entry's bytes (`shm-layout.md`, 9.5).
pub(crate) fn encode_entry(module: &Module) -> [u8; MODULE_ENTRY_LEN] {
    let mut e = [0u8; MODULE_ENTRY_LEN];
    e[M_LOAD_BIAS..M_LOAD_BIAS + 8].copy_from_slice(&module.load_bias.to_le_bytes());
    for (i, (start, end)) in module.ranges.iter().take(MODULE_RANGES).enumerate() {
        let at = M_RANGES + 16 * i;
        e[at..at + 8].copy_from_slice(&start.to_le_bytes());
        e[at + 8..at + 16].copy_from_slice(&end.to_le_bytes());
    }
    let ranges = module.ranges.len().min(MODULE_RANGES) as u32;
    e[M_RANGE_COUNT..M_RANGE_COUNT + 4].copy_from_slice(&ranges.to_le_bytes());
    let id_len = module.build_id.len().min(BUILD_ID_MAX);
    e[M_BUILD_ID_LEN..M_BUILD_ID_LEN + 4].copy_from_slice(&(id_len as u32).to_le_bytes());
    e[M_BUILD_ID..M_BUILD_ID + id_len].copy_from_slice(&module.build_id[..id_len]);
    // A path too long for the field keeps its end (the file name).
    let path = &module.path[module.path.len().saturating_sub(MODULE_PATH_MAX)..];
    e[M_PATH_LEN..M_PATH_LEN + 4].copy_from_slice(&(path.len() as u32).to_le_bytes());
    e[M_PATH..M_PATH + path.len()].copy_from_slice(path);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_program_comes_first_with_its_build_id_and_code() {
        let modules = loaded_modules();
        let main = &modules[0];
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(main.path, exe.into_os_string().into_encoded_bytes());
        assert!(
            !main.build_id.is_empty(),
            "rustc links with a build id on Linux"
        );
        let here =
            the_main_program_comes_first_with_its_build_id_and_code as *const () as usize as u64;
        assert!(
            main.ranges.iter().any(|&(s, e)| (s..e).contains(&here)),
            "this function lies in an executable range of the main program"
        );
    }

    #[test]
    fn a_build_id_note_is_found_among_others() {
        let mut notes = Vec::new();
        // An ABI tag note, then the build id note.
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&16u32.to_ne_bytes());
        notes.extend_from_slice(&1u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0; 16]);
        notes.extend_from_slice(&4u32.to_ne_bytes());
        notes.extend_from_slice(&3u32.to_ne_bytes());
        notes.extend_from_slice(&3u32.to_ne_bytes());
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(gnu_build_id(&notes), Some(&[0xab, 0xcd, 0xef][..]));
        assert_eq!(gnu_build_id(&notes[..40]), None, "a cut note is no id");
    }
}
