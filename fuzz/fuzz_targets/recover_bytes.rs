//! Recovery from arbitrary bytes: the input is a whole ring file, header,
//! chunk table and data region. Most inputs are refused at the header; the
//! seed corpus (`fuzz/seeds/recover_bytes`) holds small valid version 2
//! rings written by `blackbox demo` (closed cleanly, killed, crashed), so
//! the mutations start from files the reader accepts and reach the walk.
//! See `check.rs` for what is asserted.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod check;

fuzz_target!(|file: &[u8]| {
    let _ = check::recover_and_check(file);
});
