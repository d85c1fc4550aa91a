//! The directory a ring lives in: created when missing, without following
//! a symlink in what it creates.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, mkdirat, Mode};

/// The mode of a directory this module creates for rings of file mode
/// `file_mode`: the owner's `rwx`, plus `r-x` for group and others where
/// the ring file is readable by them (a `0o640` ring gets a `0o750`
/// directory, so its group's collector can reach it). `0o700` for the
/// default `0o600` ring.
pub(crate) fn dir_mode(file_mode: u32) -> u32 {
    let mut mode = 0o700;
    if file_mode & 0o040 != 0 {
        mode |= 0o050;
    }
    if file_mode & 0o004 != 0 {
        mode |= 0o005;
    }
    mode
}

/// Makes sure `dir` exists: creates each missing component with `mode`
/// (exactly, whatever the umask), in order, each with `mkdirat` in its
/// parent's open descriptor and opened with `O_NOFOLLOW | O_DIRECTORY`, so
/// a symlink planted where a directory is being created is never followed.
/// Components that already exist are used as they are (a symlinked
/// `/dev/shm` is the system's choice).
pub(crate) fn ensure(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    // The missing components, deepest first, and the deepest that exists.
    let mut missing: Vec<&OsStr> = Vec::new();
    let mut base = dir;
    loop {
        if base.as_os_str().is_empty() {
            base = Path::new(".");
            break;
        }
        match std::fs::symlink_metadata(base) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(name), Some(parent)) = (base.file_name(), base.parent()) else {
                    return Err(e);
                };
                missing.push(name);
                base = parent;
            }
            Err(e) => return Err(e),
        }
    }
    let mut at: OwnedFd = openat(
        AT_FDCWD,
        base,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mode = Mode::from_bits_truncate(mode as libc::mode_t);
    for name in missing.into_iter().rev() {
        let created = match mkdirat(&at, name, mode) {
            Ok(()) => true,
            // Another process made it first: use it if it is a directory.
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(e.into()),
        };
        let next = openat(
            &at,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        if created {
            // The umask may have taken bits from `mode`.
            fchmod(&next, mode)?;
        }
        at = next;
    }
    Ok(())
}
