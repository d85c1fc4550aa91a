//! The postmortem dump decoder and the unwinder on hostile bytes: the
//! first 4096 bytes are the header, the rest the postmortem area. The
//! module table is cut to 8 slots and the stack copy to 4 KiB so that short
//! inputs reach both. No module file is opened (no paths, no directories):
//! the unwinder works from the dump alone (frame pointers, stack scan).
//! Asserts: no panic, bounded output.

#![no_main]

use blackbox_reader::backtrace::{backtrace, Options, MAX_FRAMES};
use blackbox_reader::postmortem::decode;
use blackbox_recorder::layout::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut header = vec![0u8; HEADER_LEN];
    let n = data.len().min(HEADER_LEN);
    header[..n].copy_from_slice(&data[..n]);
    let area = &data[n..];
    let slots = u32::from_le_bytes(header[H_MODULE_SLOTS..H_MODULE_SLOTS + 4].try_into().unwrap()) % 9;
    header[H_MODULE_SLOTS..H_MODULE_SLOTS + 4].copy_from_slice(&slots.to_le_bytes());
    let stack = u32::from_le_bytes(header[H_PM_STACK_MAX..H_PM_STACK_MAX + 4].try_into().unwrap()) % 4097;
    header[H_PM_STACK_MAX..H_PM_STACK_MAX + 4].copy_from_slice(&stack.to_le_bytes());
    let pm = decode(&header, area);
    assert!(pm.modules.len() <= slots as usize);
    let frames = backtrace(&pm, &Options::default());
    assert!(frames.len() <= 4 * MAX_FRAMES + 64);
    assert!(frames.iter().all(|f| f.function.is_none()), "no file, no name");
});
