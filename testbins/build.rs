//! Builds the C half of `ffi-crash` with the system C compiler, without
//! frame pointers (as much C code in production is built), so that the
//! reader must unwind it with call frame information.

fn main() {
    println!("cargo:rerun-if-changed=c/crash.c");
    cc::Build::new()
        .file("c/crash.c")
        .flag("-fomit-frame-pointer")
        .flag("-fasynchronous-unwind-tables")
        .opt_level(1)
        .debug(true)
        .compile("bbxcrash");
}
