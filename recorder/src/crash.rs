//! Cause of death: a panic hook and fatal-signal handlers that write the
//! cause into the ring's header and a crash event into the ring, then let
//! the process die exactly as it would have without them.
//!
//! Installed by [`crate::Recorder::install_crash_handlers`]. An application
//! that does not call it is not changed.
//!
//! # Fatal signals
//!
//! SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT get a handler (installed with
//! `sigaction`, `SA_SIGINFO | SA_ONSTACK`, so it runs on the alternate stack
//! that Rust's runtime gives every thread, and a stack overflow is caught).
//! The handler only does async-signal-safe work: atomics, plain stores into
//! the mapping, `clock_gettime` (or `rdtsc`), `gettid`, `prctl`. No
//! allocation, no lock, nothing that can wait for a lock the crashing thread
//! holds. It appends its crash event as a writer of its own, into a chunk of
//! its own (`shm-layout.md`, 8.6), never through the thread's writer, so a
//! crash in the middle of an append on the same thread is fine.
//!
//! Then it restores the disposition that was there before (Rust's stack
//! overflow handler, another crash handler, or the default) and lets the
//! signal happen again: a fault re-executes and faults into it; a signal
//! that was sent (`kill`, `raise`, `abort`) is raised again, and delivered
//! when the handler returns. Exit status, core dumps and Rust's "has
//! overflowed its stack" message stay what they were.
//!
//! `signal-hook` is not used for these: its registry runs the previous
//! handler *before* ours, and Rust's stack-overflow handler never returns.
//!
//! # Panics
//!
//! The panic hook (chained to the previous hook, which still runs) appends
//! an ERROR event `panicked at FILE:LINE:COL: MESSAGE` with the thread name
//! and a backtrace: the raw return addresses (`0x...` separated by spaces,
//! innermost first), captured in microseconds and symbolized offline by the
//! reader with the module table. A panic on the main thread (or under `panic = "abort"`)
//! also records the cause and marks the ring crashed; a panic on another
//! thread may be caught and survived, so it is logged only.
//!
//! `unsafe` is allowed here: `sigaction`, the signal handler's arguments,
//! and the leaked handle the handlers read.

#![allow(unsafe_code)]

use std::cell::{Cell, UnsafeCell};
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Once};

use crate::event::{Field, Level};
use crate::layout::*;
use crate::shared::Shared;
use crate::sys;

/// The ring the handlers write to; null when none. Points into an `Arc`
/// that is never released (see [`install`]).
static TARGET: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

static INSTALL: Once = Once::new();

/// Set by the fatal-signal handler that claimed the death area once it has
/// written the cause and the dump. Another thread's fatal signal waits for
/// it before passing its signal on: passed on, the signal ends the process,
/// and the claimant's cause and dump with it.
static SIGNAL_DEATH_WRITTEN: AtomicBool = AtomicBool::new(false);

/// How long a thread whose fatal signal lost the claim waits for the
/// claimant (the claimant takes tens of microseconds; a preempted one
/// longer). Bounded, so that a claimant that never finishes cannot hold
/// the process alive.
const LOSER_WAIT_MS: u32 = 2000;

/// The signals that get a handler.
pub const FATAL_SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// The dispositions found at install time, one per [`FATAL_SIGNALS`] entry.
struct Previous(UnsafeCell<[MaybeUninit<libc::sigaction>; 5]>);

// SAFETY: each slot is written once, inside INSTALL, before the handler for
// its signal is installed (the sigaction call that installs it orders the
// write before any delivery); afterwards it is only read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new([MaybeUninit::uninit(); 5]));

/// Points the handlers at `shared`, installing them on the first call.
pub(crate) fn install(shared: &Arc<Shared>) {
    // The previous target's Arc is leaked on purpose: a handler on another
    // thread may be reading it at this moment, and it costs one mapping.
    let raw = Arc::into_raw(Arc::clone(shared)).cast_mut();
    // Release: a handler that loads the pointer (Acquire) sees the Shared.
    TARGET.swap(raw, Ordering::AcqRel);
    // Normal context: the module table (it allocates and takes the
    // loader's lock) and this thread's stack bounds, for the dump.
    crate::modules::write_table(&shared.map);
    learn_stack_bounds();
    INSTALL.call_once(|| {
        install_panic_hook();
        install_signal_handlers();
    });
    // The installing thread (usually main) gets a roomy alternate stack
    // too; it keeps it for the life of the process.
    if let Some(stack) = AltStack::ensure() {
        std::mem::forget(stack);
    }
}

thread_local! {
    /// This thread's stack `(lowest address, top)`, learned in normal
    /// context (install, a thread's first append); `(0, 0)`: unknown.
    /// Const-initialised and without Drop, so the handler may read it.
    static STACK_BOUNDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Learns the calling thread's stack bounds (`pthread_getattr_np`), for
/// the crash handler's stack copy. Normal context only (glibc reads
/// /proc/self/maps for the main thread).
pub(crate) fn learn_stack_bounds() {
    if STACK_BOUNDS.with(Cell::get) != (0, 0) {
        return;
    }
    // SAFETY: a zeroed pthread_attr_t filled by pthread_getattr_np, read
    // by pthread_attr_getstack, then destroyed; all pointers are valid.
    let bounds = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (addr as u64, addr as u64 + size as u64))
    };
    if let Some(bounds) = bounds {
        STACK_BOUNDS.with(|b| b.set(bounds));
    }
}

/// Bytes of alternate signal stack the crash handler wants: the 8 KiB
/// that Rust's runtime gives each thread (for its stack-overflow message)
/// are too few for a debug build's crash path.
const ALT_STACK_SIZE: usize = 64 << 10;

/// An alternate signal stack this module installed for the calling thread
/// (`sigaltstack`), with a guard page below it. Dropping it (on the thread
/// that installed it) disables it if it is still the thread's, then unmaps
/// it.
pub(crate) struct AltStack {
    base: *mut libc::c_void,
    len: usize,
}

impl AltStack {
    /// Gives the calling thread an alternate signal stack of
    /// [`ALT_STACK_SIZE`] bytes unless it has one at least that large.
    /// Call from normal context (not from a signal handler). `None` when
    /// nothing was changed (or the mapping failed: the thread keeps the
    /// stack it had).
    pub(crate) fn ensure() -> Option<AltStack> {
        let page = crate::sys::page_size() as usize;
        // SAFETY: sigaltstack with a null new stack only reads the current
        // one into `current`, a valid stack_t.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
            return None;
        }
        if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= ALT_STACK_SIZE {
            return None;
        }
        let len = ALT_STACK_SIZE + page;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to
        // it until sigaltstack installs it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = AltStack { base, len };
        // SAFETY: the lowest page of our own mapping becomes the guard; the
        // stack proper starts right above it and lies inside the mapping.
        let installed = unsafe {
            libc::mprotect(base, page, libc::PROT_NONE) == 0 && {
                let new = libc::stack_t {
                    ss_sp: base.cast::<u8>().add(page).cast(),
                    ss_flags: 0,
                    ss_size: ALT_STACK_SIZE,
                };
                libc::sigaltstack(&new, std::ptr::null_mut()) == 0
            }
        };
        installed.then_some(stack)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // Reads the thread's current alternate stack; disables it only if it
        // is ours (another library, or Rust's runtime, may have replaced it
        // since); then unmaps our mapping.
        // SAFETY: sigaltstack and munmap of our own mapping, which no signal can use any more.
        unsafe {
            let mut current: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(std::ptr::null(), &mut current) != 0 {
                return; // cannot tell: leave the mapping in place
            }
            let ours = current.ss_flags & libc::SS_DISABLE == 0
                && current.ss_sp.cast::<u8>() >= self.base.cast::<u8>()
                && current.ss_sp.cast::<u8>() < self.base.cast::<u8>().add(self.len);
            if ours {
                let off = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                if libc::sigaltstack(&off, std::ptr::null_mut()) != 0 {
                    return; // still in use (on it now?): leak it
                }
            }
            libc::munmap(self.base, self.len);
        }
    }
}

/// Stops pointing the handlers at `shared` (its ring is being closed).
pub(crate) fn detach(shared: &Arc<Shared>) {
    let ours = Arc::as_ptr(shared).cast_mut();
    let _ = TARGET.compare_exchange(
        ours,
        std::ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

fn target() -> Option<&'static Shared> {
    // Acquire: pairs with the swap in `install`.
    let ptr = TARGET.load(Ordering::Acquire);
    // SAFETY: a non-null TARGET comes from Arc::into_raw and that Arc is
    // never released, so the Shared lives for the rest of the process.
    unsafe { ptr.as_ref() }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        record_panic(info);
        previous(info);
    }));
}

fn record_panic(info: &std::panic::PanicHookInfo<'_>) {
    let Some(shared) = target() else { return };
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let current = std::thread::current();
    let thread = current.name().unwrap_or("<unnamed>");
    // Raw return addresses only (microseconds); the reader symbolizes them
    // offline with the module table (`shm-layout.md`, 9.5).
    let mut addresses = [0u64; MAX_PANIC_FRAMES];
    let count = return_addresses(&mut addresses);
    let mut backtrace = String::with_capacity(count * 15);
    for (i, a) in addresses[..count].iter().enumerate() {
        let _ = write!(backtrace, "{}{a:#x}", if i == 0 { "" } else { " " });
    }
    let line = format!("panicked at {location}: {message}");
    write_termination_log(shared, &line);
    let _ = shared.log(
        Level::Error,
        "blackbox::crash",
        &line,
        &[
            Field::new("thread", thread),
            Field::new("backtrace", backtrace.as_str()),
        ],
    );
    let on_main_thread = sys::thread_id() == std::process::id();
    if on_main_thread || cfg!(panic = "abort") {
        let map = &shared.map;
        if claim(shared, DEATH_PANIC) {
            write_common(shared, sys::thread_id(), thread.as_bytes());
            map.write_header_bytes(H_DEATH_LOCATION, cut(location.as_bytes(), LONG_STR_LEN));
            map.write_header_bytes(H_DEATH_MESSAGE, cut(message.as_bytes(), DEATH_MESSAGE_LEN));
        }
        mark_crashed(shared);
    }
}

/// Most return addresses a panic's backtrace keeps.
const MAX_PANIC_FRAMES: usize = 100;

/// The calling thread's return addresses, innermost first, from the
/// system unwinder (`_Unwind_Backtrace`, which reads `.eh_frame`): no
/// symbolization, no allocation. Returns how many were written.
fn return_addresses(out: &mut [u64]) -> usize {
    struct Walk<'a> {
        out: &'a mut [u64],
        count: usize,
    }
    extern "C" fn each(ctx: *mut libc::c_void, arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `Walk` passed to _Unwind_Backtrace below,
        // alive and not otherwise borrowed during the call; `ctx` is the
        // unwinder's context for this frame.
        let walk = unsafe { &mut *arg.cast::<Walk<'_>>() };
        // SAFETY: `ctx` is the live context the unwinder passed us.
        let ip = unsafe { _Unwind_GetIP(ctx) } as u64;
        if walk.count == walk.out.len() || ip == 0 {
            return 9; // _URC_FAILURE: stop
        }
        walk.out[walk.count] = ip;
        walk.count += 1;
        0 // _URC_NO_REASON: go on
    }
    extern "C" {
        fn _Unwind_Backtrace(
            trace: extern "C" fn(*mut libc::c_void, *mut libc::c_void) -> libc::c_int,
            arg: *mut libc::c_void,
        ) -> libc::c_int;
        fn _Unwind_GetIP(ctx: *mut libc::c_void) -> libc::uintptr_t;
    }
    let mut walk = Walk { out, count: 0 };
    // SAFETY: the callback has the unwinder's signature and only touches
    // `walk` through the pointer given here, during the call. libgcc_s
    // (which std links on Linux) provides both functions.
    unsafe { _Unwind_Backtrace(each, (&mut walk as *mut Walk<'_>).cast()) };
    walk.count
}

/// Writes `line` and a newline to the termination log, if one is set:
/// plain `write(2)` calls on a file opened in advance (async-signal-safe).
fn write_termination_log(shared: &Shared, line: &str) {
    if let Some(file) = &shared.termination_log {
        sys::write_all(file, line.as_bytes());
        sys::write_all(file, b"\n");
    }
}

fn cut(bytes: &[u8], max: usize) -> &[u8] {
    let s = std::str::from_utf8(bytes).unwrap_or("");
    crate::event::truncate_str(s, max - 1).as_bytes()
}

/// Claims the death area for `kind`; only the first crash gets it.
fn claim(shared: &Shared, kind: u32) -> bool {
    // AcqRel/Relaxed: only one claimant may win; the loser writes nothing.
    shared
        .map
        .header_u32(H_DEATH_KIND)
        .compare_exchange(DEATH_NONE, kind, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

fn write_common(shared: &Shared, tid: u32, thread_name: &[u8]) {
    let map = &shared.map;
    // Relaxed: the Release store of STATE in `mark_crashed` publishes these.
    map.header_u32(H_DEATH_THREAD_ID)
        .store(tid, Ordering::Relaxed);
    map.header_u64(H_DEATH_UNIX_NS)
        .store(sys::realtime_ns(), Ordering::Relaxed);
    map.write_header_bytes(H_DEATH_THREAD_NAME, cut(thread_name, SHORT_STR_LEN));
}

fn mark_crashed(shared: &Shared) {
    // Release: a reader that sees CRASHED sees the death fields above.
    shared
        .map
        .header_u32(H_STATE)
        .store(STATE_CRASHED, Ordering::Release);
}

fn install_signal_handlers() {
    for (i, &signal) in FATAL_SIGNALS.iter().enumerate() {
        // SAFETY: plain sigaction calls with valid pointers. The previous
        // disposition is saved in its slot before our handler is installed,
        // and nothing else writes the slot (we are inside INSTALL).
        unsafe {
            let slot = (*PREVIOUS.0.get())[i].as_mut_ptr();
            if libc::sigaction(signal, std::ptr::null(), slot) != 0 {
                // Could not read it: leave this signal alone.
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// A fixed buffer for formatting without allocating.
struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("fatal signal")
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = N - self.len;
        let take = crate::event::truncate_str(s, room);
        self.buf[self.len..self.len + take.len()].copy_from_slice(take.as_bytes());
        self.len += take.len();
        Ok(())
    }
}

/// The name of a fatal signal, for the crash event.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let entry_ns = sys::monotonic_ns();
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let (code, addr) = unsafe {
        match info.as_ref() {
            Some(i) => (i.si_code, i.si_addr() as u64),
            None => (0, 0),
        }
    };
    // si_code > 0: raised by the kernel for a fault, si_addr is meaningful.
    let from_fault = code > 0;
    if let Some(shared) = target() {
        // A second fatal signal (Rust's stack-overflow handler aborting
        // after our SIGSEGV, say) runs nested on the alternate stack, with
        // little room left: the first cause is recorded, so do nothing
        // but pass the signal on.
        let first = shared.map.header_u32(H_DEATH_KIND).load(Ordering::Acquire) != DEATH_SIGNAL;
        // A fault's address, which may be 0 (a null pointer); `None` for a
        // signal that was sent.
        let fault_addr = (from_fault && signal != libc::SIGABRT).then_some(addr);
        if first {
            let regs = registers(context);
            // The thread that records the cause also makes the dump, so
            // two threads crashing at once never leave one's cause with
            // the other's registers.
            let owner = claim_signal_death(shared);
            let dumped = owner != Owner::None && dump(shared, &regs, fault_addr, entry_ns);
            record_signal(shared, signal, code, fault_addr, &regs, owner);
            if dumped {
                finish_dump(shared);
            }
            if owner != Owner::None {
                // Release: pairs with the Acquire load of a waiting loser.
                SIGNAL_DEATH_WRITTEN.store(true, Ordering::Release);
            } else {
                wait_for_claimant(shared);
            }
        } else {
            wait_for_claimant(shared);
        }
    }
    let index = FATAL_SIGNALS.iter().position(|&s| s == signal);
    // SAFETY: the slot for an installed signal was written before its
    // handler was installed; restoring it is a plain sigaction call.
    unsafe {
        match index {
            Some(i) => {
                let previous = (*PREVIOUS.0.get())[i].as_ptr();
                libc::sigaction(signal, previous, std::ptr::null_mut());
            }
            None => {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        if !from_fault {
            // Sent, not a fault: send it again. It stays blocked while this
            // handler runs and is delivered to the restored disposition
            // when it returns.
            libc::raise(signal);
        }
    }
    // A fault returns here and re-executes the faulting instruction, which
    // faults again into the restored disposition.
}

/// A fatal signal that did not claim the death area waits (bounded) until
/// the claimant has written it: a signal cause and dump, or a panic's cause.
/// On the claimant's own thread (a nested signal after it finished) the
/// flag is already set. Only nanosleep(2): async-signal-safe.
fn wait_for_claimant(shared: &Shared) {
    let map = &shared.map;
    let written = || {
        // Acquire: pairs with the claimant's Release stores.
        SIGNAL_DEATH_WRITTEN.load(Ordering::Acquire)
            || (map.header_u32(H_DEATH_KIND).load(Ordering::Acquire) == DEATH_PANIC
                && map.header_u32(H_STATE).load(Ordering::Acquire) == STATE_CRASHED)
    };
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    for _ in 0..LOSER_WAIT_MS {
        if written() {
            return;
        }
        // SAFETY: nanosleep with a valid timespec and no remainder pointer.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

/// What this thread's fatal signal owns of the death area.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Another thread recorded the cause.
    None,
    /// This signal claimed the area (`DEATH_SIGNAL`).
    Signal,
    /// A panic holds the area without a signal yet (a panic that ends in
    /// abort): this signal completes it.
    AfterPanic,
}

/// Claims the death area for a fatal signal (see [`Owner`]).
fn claim_signal_death(shared: &Shared) -> Owner {
    let map = &shared.map;
    if claim(shared, DEATH_SIGNAL) {
        Owner::Signal
    } else if map.header_u32(H_DEATH_KIND).load(Ordering::Acquire) == DEATH_PANIC
        && map.header_u32(H_DEATH_SIGNAL).load(Ordering::Relaxed) == 0
    {
        Owner::AfterPanic
    } else {
        Owner::None
    }
}

fn record_signal(
    shared: &Shared,
    signal: libc::c_int,
    code: i32,
    fault_addr: Option<u64>,
    regs: &Registers,
    owner: Owner,
) {
    let sp = regs.sp;
    let tid = sys::thread_id();
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL-terminated) to name.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(16);
    // The main thread's kernel name is the program's; Rust calls it "main".
    let thread_name: &[u8] = if tid == std::process::id() {
        b"main"
    } else {
        &name[..name_len]
    };
    let map = &shared.map;
    // Relaxed: published by the Release store of STATE below.
    let fill_signal = || {
        map.header_u32(H_DEATH_SIGNAL)
            .store(signal as u32, Ordering::Relaxed);
        map.header_u32(H_DEATH_SI_CODE)
            .store(code as u32, Ordering::Relaxed);
        map.header_u64(H_DEATH_FAULT_ADDR)
            .store(fault_addr.unwrap_or(0), Ordering::Relaxed);
        map.header_u32(H_DEATH_FLAGS).store(
            if fault_addr.is_some() {
                DEATH_FLAG_FAULT_ADDR
            } else {
                0
            },
            Ordering::Relaxed,
        );
        map.header_u64(H_DEATH_STACK_POINTER)
            .store(sp, Ordering::Relaxed);
    };
    match owner {
        Owner::Signal => {
            write_common(shared, tid, thread_name);
            fill_signal();
        }
        // A panic that ends in abort: keep the panic, add the signal.
        Owner::AfterPanic => fill_signal(),
        Owner::None => {}
    }
    let mut text = StackText::<256>::new();
    let _ = write!(text, "fatal signal {}", signal_name(signal));
    if let Some(fault_addr) = fault_addr {
        let _ = write!(text, " at {fault_addr:#x}");
    }
    let _ = write!(
        text,
        " in thread '{}'",
        std::str::from_utf8(thread_name).unwrap_or("?")
    );
    // The termination log also names the top frame, as far as the handler
    // can tell without symbols: the module and the offset in its file
    // (`blackbox info` names the function). The crash event keeps the
    // spec's message; the dump has the rest.
    let mut log_line = StackText::<384>::new();
    let _ = log_line.write_str(text.as_str());
    if let Some((name, offset)) = module_of(shared, regs.pc) {
        let _ = write!(
            log_line,
            ", pc {}+{offset:#x}",
            std::str::from_utf8(&name.buf[..name.len]).unwrap_or("?")
        );
    }
    write_termination_log(shared, log_line.as_str());
    let _ = shared.log_alone(
        Level::Error,
        "blackbox::crash",
        text.as_str(),
        &[
            Field::new("signal", signal_name(signal)),
            Field::new("si_code", i64::from(code)),
        ],
    );
    mark_crashed(shared);
}

/// The interrupted thread's general registers, in the dump's order
/// (DWARF register numbers, `shm-layout.md` 9.5).
struct Registers {
    arch: u32,
    count: usize,
    regs: [u64; DUMP_REG_SLOTS],
    pc: u64,
    sp: u64,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn registers(context: *mut libc::c_void) -> Registers {
    let mut out = Registers {
        arch: ARCH_X86_64,
        count: 0,
        regs: [0; DUMP_REG_SLOTS],
        pc: 0,
        sp: 0,
    };
    let uc = context.cast::<libc::ucontext_t>();
    // SAFETY: for SA_SIGINFO handlers the third argument is the interrupted
    // context, a valid ucontext_t (or null, checked).
    let Some(uc) = (unsafe { uc.as_ref() }) else {
        return out;
    };
    let g = &uc.uc_mcontext.gregs;
    let order = [
        libc::REG_RAX,
        libc::REG_RDX,
        libc::REG_RCX,
        libc::REG_RBX,
        libc::REG_RSI,
        libc::REG_RDI,
        libc::REG_RBP,
        libc::REG_RSP,
        libc::REG_R8,
        libc::REG_R9,
        libc::REG_R10,
        libc::REG_R11,
        libc::REG_R12,
        libc::REG_R13,
        libc::REG_R14,
        libc::REG_R15,
        libc::REG_RIP,
        libc::REG_EFL,
    ];
    for (slot, &reg) in out.regs.iter_mut().zip(order.iter()) {
        *slot = g[reg as usize] as u64;
    }
    out.count = order.len();
    out.pc = g[libc::REG_RIP as usize] as u64;
    out.sp = g[libc::REG_RSP as usize] as u64;
    out
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn registers(context: *mut libc::c_void) -> Registers {
    let mut out = Registers {
        arch: ARCH_AARCH64,
        count: 0,
        regs: [0; DUMP_REG_SLOTS],
        pc: 0,
        sp: 0,
    };
    let uc = context.cast::<libc::ucontext_t>();
    // SAFETY: for SA_SIGINFO handlers the third argument is the interrupted
    // context, a valid ucontext_t (or null, checked).
    let Some(uc) = (unsafe { uc.as_ref() }) else {
        return out;
    };
    let m = &uc.uc_mcontext;
    out.regs[..31].copy_from_slice(&m.regs);
    out.regs[31] = m.sp;
    out.regs[32] = m.pc;
    out.regs[33] = m.pstate;
    out.count = 34;
    out.pc = m.pc;
    out.sp = m.sp;
    out
}

#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux"
)))]
fn registers(_context: *mut libc::c_void) -> Registers {
    Registers {
        arch: 0,
        count: 0,
        regs: [0; DUMP_REG_SLOTS],
        pc: 0,
        sp: 0,
    }
}

/// Bytes below the stack pointer a leaf function may use without moving
/// it (the System V x86_64 red zone), copied with the stack.
const RED_ZONE: u64 = if cfg!(target_arch = "x86_64") { 128 } else { 0 };

/// Code bytes copied before the pc (the rest of [`DUMP_CODE_MAX`] after).
const CODE_BEFORE_PC: u64 = 128;

/// Writes the crash context and copies the stack into the postmortem area
/// (`shm-layout.md`, 9.5), if this thread is the first to claim the dump.
/// Async-signal-safe: atomics, plain stores into the mapping, and
/// `process_vm_readv`, which fails with EFAULT on an unmapped page instead
/// of faulting.
fn dump(shared: &Shared, regs: &Registers, fault_addr: Option<u64>, entry_ns: u64) -> bool {
    let map = &shared.map;
    let pm_offset = map.header_u64(H_PM_OFFSET).load(Ordering::Relaxed);
    if pm_offset == 0 || regs.count == 0 {
        return false;
    }
    // AcqRel/Relaxed: one dump; a second thread crashing at the same time
    // loses the claim and writes nothing here.
    if map
        .header_u32(H_DUMP_STATE)
        .compare_exchange(DUMP_NONE, DUMP_WRITING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // Relaxed throughout: DUMP_STATE's Release store in `finish_dump`
    // publishes them.
    let u32_field = |at, v| map.header_u32(at).store(v, Ordering::Relaxed);
    let u64_field = |at, v| map.header_u64(at).store(v, Ordering::Relaxed);
    u64_field(H_DUMP_ENTRY_NS, entry_ns);
    u32_field(H_DUMP_THREAD_ID, sys::thread_id());
    u32_field(H_DUMP_ARCH, regs.arch);
    for (i, &r) in regs.regs.iter().enumerate().take(regs.count) {
        u64_field(H_DUMP_REGS + 8 * i, r);
    }
    u32_field(H_DUMP_REG_COUNT, regs.count as u32);
    let modules_gen = map.header_u64(H_MODULES_GEN).load(Ordering::Acquire);
    u64_field(H_DUMP_MODULES_GEN, modules_gen);
    let mut flags = 0;
    if modules_gen % 2 == 1 {
        flags |= DUMP_FLAG_MODULES_CHANGING;
    }

    // Code around the pc: what precedes it may be unmapped; what follows
    // starts at the pc itself.
    let code_start = regs.pc.saturating_sub(CODE_BEFORE_PC);
    let code = map.area_ptr_header(H_DUMP_CODE, DUMP_CODE_MAX);
    // SAFETY: `code` is valid for DUMP_CODE_MAX bytes (the header field).
    let (skipped, copied) = unsafe { sys::read_own_memory(code_start, code, DUMP_CODE_MAX, true) };
    u64_field(H_DUMP_CODE_START, code_start + skipped as u64);
    u32_field(H_DUMP_CODE_LEN, copied as u32);

    // The stack, from below the red zone up to the bound or the stack's
    // known top.
    let (lo, hi) = STACK_BOUNDS.with(Cell::get);
    let page = 4096;
    if hi != 0 {
        flags |= DUMP_FLAG_STACK_BOUNDS;
        u64_field(H_DUMP_STACK_LO, lo);
        u64_field(H_DUMP_STACK_HI, hi);
        // Overflow: the stack pointer, or the fault, in or just below the
        // lowest page of the stack (where the guard page sits).
        let near_bottom = |a: u64| a < lo + page && a + (1 << 20) >= lo;
        if near_bottom(regs.sp) || fault_addr.is_some_and(near_bottom) {
            flags |= DUMP_FLAG_STACK_OVERFLOW;
        }
    } else if fault_addr.is_some_and(|a| a < regs.sp + page && a + (64 << 10) >= regs.sp) {
        // Bounds unknown: a fault right next to the stack pointer.
        flags |= DUMP_FLAG_STACK_OVERFLOW;
    }
    let stack_max = map.header_u32(H_PM_STACK_MAX).load(Ordering::Relaxed) as u64;
    let slots = map.header_u32(H_MODULE_SLOTS).load(Ordering::Relaxed) as u64;
    let stack_max = stack_max.min(MAX_STACK_DUMP as u64);
    if stack_max > 0 {
        let mut start = regs.sp.saturating_sub(RED_ZONE);
        if hi != 0 && start < lo && regs.sp >= lo {
            start = lo;
        }
        let mut len = stack_max;
        if hi != 0 && start < hi && regs.sp >= lo {
            len = len.min(hi - start);
        }
        let dst = map.area_ptr(
            pm_offset + slots * MODULE_ENTRY_LEN as u64,
            stack_max as usize,
        );
        // SAFETY: `dst` is valid for stack_max >= len bytes (the stack
        // copy of the postmortem area, which only the dump's claimant
        // writes).
        let (skipped, copied) = unsafe { sys::read_own_memory(start, dst, len as usize, true) };
        u64_field(H_DUMP_STACK_START, start + skipped as u64);
        u32_field(H_DUMP_STACK_LEN, copied as u32);
        if skipped + copied < len as usize {
            flags |= DUMP_FLAG_STACK_SHORT;
        }
    }
    u32_field(H_DUMP_FLAGS, flags);
    true
}

/// The file name of the module whose executable range holds `pc`, and
/// `pc` as an address of that file, from the module table in the mapping
/// (plain loads: async-signal-safe).
fn module_of(shared: &Shared, pc: u64) -> Option<(StackText<64>, u64)> {
    let map = &shared.map;
    let pm_offset = map.header_u64(H_PM_OFFSET).load(Ordering::Relaxed);
    let slots = map.header_u32(H_MODULE_SLOTS).load(Ordering::Relaxed) as usize;
    let count = (map.header_u32(H_MODULE_COUNT).load(Ordering::Acquire) as usize).min(slots);
    if pm_offset == 0 || pc == 0 || map.header_u64(H_MODULES_GEN).load(Ordering::Acquire) % 2 == 1 {
        return None;
    }
    let area = map.area_ptr(pm_offset, slots * MODULE_ENTRY_LEN);
    let word = |entry: usize, at: usize| -> u64 {
        // SAFETY: entry < count <= slots and at + 8 <= MODULE_ENTRY_LEN:
        // inside the module table, which no one writes while its
        // generation is even (checked above); unaligned reads are fine.
        unsafe {
            area.add(entry * MODULE_ENTRY_LEN + at)
                .cast::<u64>()
                .read_unaligned()
        }
    };
    for entry in 0..count {
        let ranges = (word(entry, M_RANGE_COUNT) as u32 as usize).min(MODULE_RANGES);
        let inside = (0..ranges).any(|r| {
            (word(entry, M_RANGES + 16 * r)..word(entry, M_RANGES + 16 * r + 8)).contains(&pc)
        });
        if !inside {
            continue;
        }
        let path_len = (word(entry, M_PATH_LEN) as u32 as usize).min(MODULE_PATH_MAX);
        // SAFETY: the path field lies inside the entry (as above).
        let path = unsafe {
            std::slice::from_raw_parts(area.add(entry * MODULE_ENTRY_LEN + M_PATH), path_len)
        };
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let mut text = StackText::<64>::new();
        let _ = text.write_str(std::str::from_utf8(name).unwrap_or("?"));
        return Some((text, pc.wrapping_sub(word(entry, M_LOAD_BIAS))));
    }
    None
}

/// Marks the dump complete with the handler's finishing time.
fn finish_dump(shared: &Shared) {
    let map = &shared.map;
    map.header_u64(H_DUMP_DONE_NS)
        .store(sys::monotonic_ns(), Ordering::Relaxed);
    // Release: a reader that sees COMPLETE sees every dump field.
    map.header_u32(H_DUMP_STATE)
        .store(DUMP_COMPLETE, Ordering::Release);
}

/// Test and demo aid: a real SIGSEGV, a write to address 0 (a null
/// pointer).
#[doc(hidden)]
#[inline(never)]
pub fn fault_null_for_test() -> ! {
    let null = std::hint::black_box(std::ptr::null_mut::<u8>());
    // SAFETY: deliberately unsound: this write faults, which is the point;
    // it never completes, and the process dies of SIGSEGV.
    unsafe { std::ptr::write_volatile(null, 1) };
    unreachable!("the write to address 0 faults")
}

/// Test and demo aid: a real SIGILL, an undefined instruction (`ud2` on
/// x86_64, `udf` on aarch64).
#[doc(hidden)]
#[inline(never)]
pub fn fault_sigill_for_test() -> ! {
    // SAFETY: deliberately executes an undefined instruction, which raises
    // SIGILL and never completes.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("ud2", options(noreturn))
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: `udf` is a permanently undefined instruction; SIGILL.
    unsafe {
        std::arch::asm!("udf #0", options(noreturn))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // SAFETY: raise(2) is always safe to call.
        unsafe { libc::raise(libc::SIGILL) };
        unreachable!("SIGILL")
    }
}

/// Test and demo aid: a real SIGSEGV, a write to address 0x10.
#[doc(hidden)]
pub fn fault_segv_for_test() -> ! {
    // SAFETY: deliberately unsound: this write faults, which is the point;
    // it never completes, and the process dies of SIGSEGV.
    unsafe { std::ptr::write_volatile(0x10 as *mut u8, 1) };
    unreachable!("the write to 0x10 faults")
}

/// Test and demo aid: a real SIGBUS, a read past the end of a mapped file
/// that was truncated after mapping.
#[doc(hidden)]
pub fn fault_sigbus_for_test(scratch: &std::path::Path) -> ! {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(scratch)
        .expect("scratch file");
    file.set_len(8192).expect("size scratch file");
    let map = memmap2::MmapOptions::new()
        .len(8192)
        .map_raw(&file)
        .expect("map scratch file");
    file.set_len(0).expect("truncate scratch file");
    // SAFETY: deliberately faults: the page behind the mapping is gone, so
    // this read raises SIGBUS and never completes.
    let byte = unsafe { std::ptr::read_volatile(map.as_ptr().add(4096)) };
    unreachable!("the read past the end of the file raises SIGBUS ({byte})")
}

/// Test aid: installs "someone else's" crash handlers (SIGSEGV, SIGBUS,
/// SIGABRT and a panic hook) that write `foreign handler ran` to stderr, so
/// a test can check that blackbox's handlers chain to them. The signal
/// handler then restores the default disposition, as a well-behaved crash
/// handler does, so the signal still ends the process.
#[doc(hidden)]
pub fn install_foreign_handlers_for_test() {
    extern "C" fn foreign(signal: libc::c_int) {
        const LINE: &[u8] = b"foreign handler ran\n";
        // SAFETY: write(2) and signal(2) are async-signal-safe; LINE is valid.
        unsafe {
            libc::write(2, LINE.as_ptr().cast(), LINE.len());
            libc::signal(signal, libc::SIG_DFL);
            if signal == libc::SIGABRT {
                libc::raise(signal);
            }
        }
    }
    for signal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT] {
        // SAFETY: installs a plain handler function with signal(2).
        unsafe { libc::signal(signal, foreign as *const () as libc::sighandler_t) };
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("foreign handler ran");
        previous(info);
    }));
}
