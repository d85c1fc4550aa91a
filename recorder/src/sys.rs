//! Small system calls the recorder needs and std does not offer (FFI to
//! libc, so `unsafe` is allowed here). Everything here is
//! async-signal-safe: it may run inside a crash handler.

#![allow(unsafe_code)]

use std::cell::Cell;

/// Reads CLOCK_REALTIME in nanoseconds since the Unix epoch.
///
/// `clock_gettime` through the vDSO: no system call where the kernel's
/// clocksource allows it (TSC here, ~27 ns). Returns 0 if the clock fails,
/// which it cannot for CLOCK_REALTIME on Linux.
#[inline]
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; clock_gettime only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 || ts.tv_sec < 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reads CLOCK_MONOTONIC in nanoseconds (0 if the clock fails).
/// Async-signal-safe.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; clock_gettime only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 || ts.tv_sec < 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Copies up to `len` bytes at address `addr` of this process into `dst`
/// with `process_vm_readv` on our own pid: an unmapped address gives an
/// error (EFAULT) instead of a fault. Reads page by page so that a copy
/// that runs into an unmapped page returns what came before it. Returns
/// `(skipped, copied)`: unreadable bytes skipped at the start (when
/// `skip_leading` is set) and bytes copied after them into `dst`.
/// Async-signal-safe.
///
/// # Safety
///
/// `dst` is valid for `len` bytes of writes.
pub unsafe fn read_own_memory(
    addr: u64,
    dst: *mut u8,
    len: usize,
    skip_leading: bool,
) -> (usize, usize) {
    let page = 4096u64;
    let mut skipped = 0usize;
    let mut copied = 0usize;
    while skipped + copied < len {
        let at = addr.wrapping_add((skipped + copied) as u64);
        let to_page_end = (page - at % page) as usize;
        let n = to_page_end.min(len - skipped - copied);
        let local = libc::iovec {
            // SAFETY: copied + n <= len: inside dst (the caller's promise).
            iov_base: unsafe { dst.add(copied) }.cast(),
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: n,
        };
        // SAFETY: both iovecs are valid descriptions; the kernel checks the
        // remote one and fails with EFAULT if it is not mapped.
        let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if got == n as isize {
            copied += n;
        } else if copied == 0 && skip_leading && got <= 0 {
            skipped += n;
        } else {
            if got > 0 {
                copied += got as usize;
            }
            break;
        }
    }
    (skipped, copied)
}

thread_local! {
    // Const-initialised and without Drop: reading it never allocates or
    // registers a destructor, so it is safe in a signal handler.
    static THREAD_ID: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's Linux thread id (`gettid`), cached per thread.
#[inline]
pub fn thread_id() -> u32 {
    THREAD_ID.with(|cached| {
        let tid = cached.get();
        if tid != 0 {
            return tid;
        }
        let tid = nix::unistd::gettid().as_raw() as u32;
        cached.set(tid);
        tid
    })
}

/// The calling thread's kernel name (`prctl(PR_GET_NAME)`, at most 15
/// bytes), NUL-padded; all zero if the call fails.
pub fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL-terminated) to name,
    // which has 17.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let mut out = [0u8; 16];
    out[..15].copy_from_slice(&name[..15]);
    out
}

/// Eight random bytes from the kernel (`getrandom`), or a mix of the time and
/// pid if the call fails.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: buf is valid for 8 bytes of writes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(buf)
    } else {
        realtime_ns() ^ ((std::process::id() as u64) << 32)
    }
}

/// The system's page size in bytes (`sysconf(_SC_PAGESIZE)`), 4096 if unknown.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Writes all of `bytes` to `file` with `write(2)`, retrying short writes
/// and EINTR; gives up silently on any other error. Async-signal-safe: no
/// allocation, no lock, no buffering.
pub fn write_all(file: &std::fs::File, mut bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid slice; fd is an open descriptor owned by
        // `file`, which outlives this call.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    }
}
