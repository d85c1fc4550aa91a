//! The liveness lock: an open-file-description lock (`F_OFD_SETLK`) on the
//! whole ring file, held by the writer for its whole life.
//!
//! The kernel releases it when the last descriptor of the writer's open file
//! description closes, which happens on every kind of death (SIGKILL and the
//! OOM killer included). Another process sees it with `F_OFD_GETLK`, also
//! from another PID namespace, where the writer's pid means nothing: that is
//! why liveness rests on the lock and not on the pid.

use std::fs::File;
use std::io;

use nix::fcntl::{fcntl, FcntlArg};

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0, // to the end of the file, however long
        l_pid: 0, // must be 0 for OFD locks
    }
}

/// Takes the writer's exclusive lock without waiting (`F_OFD_SETLK`).
///
/// Returns `Ok(false)` if another open file description holds a lock.
///
/// # Errors
///
/// Any other `fcntl` failure.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    let lock = whole_file(libc::F_WRLCK as libc::c_short);
    match fcntl(file, FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes a shared lock without waiting (`F_OFD_SETLK`, `F_RDLCK`; the file
/// may be open read-only): `Ok(false)` while a writer holds its exclusive
/// lock. Held, it keeps a writer from taking the file (retention holds it
/// on a dead ring it is about to remove).
///
/// # Errors
///
/// Any other `fcntl` failure.
pub fn try_lock_shared(file: &File) -> io::Result<bool> {
    let lock = whole_file(libc::F_RDLCK as libc::c_short);
    match fcntl(file, FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether some open file description holds a lock on `file`
/// (`F_OFD_GETLK`); the file may be open read-only. Never takes the lock.
///
/// # Errors
///
/// Any `fcntl` failure (for example a file system without locks).
pub fn is_locked(file: &File) -> io::Result<bool> {
    let mut probe = whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut probe))?;
    Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
}
