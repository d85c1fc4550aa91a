//! The directory a ring lives in: created when missing, without following
//! a symlink in what it creates; and this program's dead rings in it beyond
//! the newest few, removed at create.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, mkdirat, Mode};

use crate::event::truncate_str;
use crate::layout::{HEADER_LEN, H_MAGIC, H_PROGRAM, H_START_UNIX_NS, MAGIC, SHORT_STR_LEN};
use crate::lock;

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

/// A dead ring of this program that [`prune_dead`] may remove, held open
/// under a shared lock.
struct Dead {
    path: PathBuf,
    start_unix_ns: u64,
    file: File,
}

/// Removes the dead rings of `program` in `dir` beyond the newest `keep`
/// (newest by the writer's start time); returns the paths removed.
///
/// A file counts as this program's ring only if all of these hold: its
/// name is `{name_prefix}-....ring` (the recorder's own naming, see
/// `ring_file_name`), it is a regular file (the entry itself, opened with
/// `O_NOFOLLOW`: a symlink is never followed), owned by `euid` (this
/// process's effective uid: the owner of the ring it just created), with one link, and its header has the ring magic and
/// `program` as its program. Dead means what the reader's directory
/// scanner means: nobody holds the ring's lock. Here a shared lock is
/// taken (`F_OFD_SETLK`), so a ring whose writer lives is never touched; and
/// the path is removed only while it still names the file that was
/// checked. Errors are skipped: retention is a best effort, never a reason
/// for `create` to fail.
pub(crate) fn prune_dead(
    dir: &Path,
    name_prefix: &str,
    program: &str,
    keep: usize,
    euid: u32,
) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let program = truncate_str(program, SHORT_STR_LEN).as_bytes();
    let name_prefix = format!("{name_prefix}-");
    let mut dead: Vec<Dead> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let name = name.to_str()?;
            if !name.starts_with(&name_prefix) || !name.ends_with(".ring") {
                return None;
            }
            // DirEntry::file_type does not follow a symlink.
            if !entry.file_type().ok()?.is_file() {
                return None;
            }
            let path = entry.path();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)
                .ok()?;
            let meta = file.metadata().ok()?;
            if !meta.is_file() || meta.uid() != euid || meta.nlink() != 1 {
                return None;
            }
            let mut header = vec![0u8; HEADER_LEN];
            file.read_exact_at(&mut header, 0).ok()?;
            let stored = &header[H_PROGRAM..H_PROGRAM + SHORT_STR_LEN];
            let stored = &stored[..stored.iter().position(|&b| b == 0).unwrap_or(stored.len())];
            if header[H_MAGIC..H_MAGIC + MAGIC.len()] != MAGIC || stored != program {
                return None;
            }
            // Taking a lock is the liveness test: it fails while the
            // writer lives (its exclusive lock is held until its death).
            if !lock::try_lock_shared(&file).ok()? {
                return None;
            }
            let start = header[H_START_UNIX_NS..H_START_UNIX_NS + 8]
                .try_into()
                .ok()?;
            Some(Dead {
                path,
                start_unix_ns: u64::from_le_bytes(start),
                file,
            })
        })
        .collect();
    // Newest first; the name breaks ties so the order is stable.
    dead.sort_by(|a, b| {
        b.start_unix_ns
            .cmp(&a.start_unix_ns)
            .then_with(|| b.path.cmp(&a.path))
    });
    let mut removed = Vec::new();
    for d in dead.iter().skip(keep) {
        let (Ok(open), Ok(now)) = (d.file.metadata(), std::fs::symlink_metadata(&d.path)) else {
            continue;
        };
        let same = now.is_file() && open.dev() == now.dev() && open.ino() == now.ino();
        if same && std::fs::remove_file(&d.path).is_ok() {
            removed.push(d.path.clone());
        }
    }
    removed
}
