//! A SIGSEGV inside C code built without frame pointers, called through
//! FFI: the reader unwinds it from the dump with call frame information and
//! names the C functions, then the Rust caller. A real child process dies;
//! this test reads its ring.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use blackbox_reader::backtrace::{backtrace, Options, Trust};
use blackbox_reader::Ring;

#[test]
fn a_segv_in_c_without_frame_pointers_unwinds_through_cfi() {
    let dir = std::env::temp_dir().join(format!("bbx-ffi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ring = dir.join("ffi.ring");
    let status = Command::new(env!("CARGO_BIN_EXE_ffi-crash"))
        .arg(&ring)
        .status()
        .expect("run ffi-crash");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let pm = Ring::open(&ring).unwrap().postmortem().unwrap();
    let frames = backtrace(&pm, &Options::with_symbols(Vec::new()));
    let names: Vec<String> = frames
        .iter()
        .map(|f| f.function.clone().unwrap_or_default())
        .collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| n.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {names:#?}"))
    };
    let (store, update, rust) = (at("bbx_c_store"), at("bbx_c_update"), at("rust_calls_c"));
    assert!(store < update && update < rust, "call order: {names:#?}");
    assert_eq!(frames[store].trust, Trust::Context);
    assert_eq!(frames[update].trust, Trust::Cfi, "{:?}", frames[update]);
    assert!(
        frames[store]
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("crash.c")),
        "{:?}",
        frames[store]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
