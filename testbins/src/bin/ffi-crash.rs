//! `ffi-crash RING`: creates a ring, installs the crash handlers, and dies
//! of SIGSEGV inside C code (c/crash.c, built without frame pointers),
//! called through FFI from a named Rust function.

use std::hint::black_box;

#[link(name = "bbxcrash", kind = "static")]
extern "C" {
    fn bbx_c_update(place: *mut i32, value: i32) -> i32;
}

#[inline(never)]
fn rust_calls_c(place: *mut i32) -> i32 {
    // SAFETY: deliberately unsound: `place` is null and the C code writes
    // through it, which faults; that is the point of this program.
    let r = unsafe { bbx_c_update(black_box(place), 7) };
    black_box(r)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: ffi-crash RING");
    let rec = blackbox_recorder::Recorder::builder(path)
        .capacity(64 << 10)
        .create()
        .expect("create the ring");
    rec.install_crash_handlers();
    let _ = rec.log(blackbox_recorder::Level::Info, "ffi", "calling C", &[]);
    let r = rust_calls_c(std::ptr::null_mut());
    println!("unreachable: {r}");
}
