//! Errors of the recorder: creating a ring, and appending to it.

use std::io;
use std::path::{Path, PathBuf};

/// Why a ring could not be created.
///
/// Its `Debug` is its `Display` text (what `?` in `main` prints); `{:#?}`
/// shows the fields.
pub struct CreateError {
    path: PathBuf,
    kind: CreateErrorKind,
}

/// What went wrong while creating a ring.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateErrorKind {
    /// The capacity is not a power of two in the allowed range.
    BadCapacity(u64),
    /// The chunk size is not a power of two from 1 KiB to 64 KiB, or
    /// leaves the ring fewer than 16 (or more than 2^20) chunks.
    BadChunkSize {
        /// The chunk size asked for.
        chunk_size: u32,
        /// The ring's capacity.
        capacity: u64,
    },
    /// The file mode has bits other than read and write permission, or
    /// lets the group or others write (see [`RecorderBuilder::mode`](crate::RecorderBuilder::mode)).
    BadMode(u32),
    /// A live writer holds the lock on the existing file at this path.
    InUse,
    /// The file system could not reserve the ring's pages.
    NoSpace {
        /// Bytes the file needs.
        needed: u64,
        /// The error from `posix_fallocate`.
        source: io::Error,
    },
    /// Another I/O step failed.
    Io {
        /// The step that failed.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl CreateError {
    pub(crate) fn new(path: &Path, kind: CreateErrorKind) -> CreateError {
        CreateError {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &CreateErrorKind {
        &self.kind
    }
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.kind {
            CreateErrorKind::BadCapacity(c) => write!(
                f,
                "cannot create ring {path}: capacity {c} bytes is not a power of two \
                 between 16KiB and 4GiB (try 64KiB, 16MiB or 256MiB)"
            ),
            CreateErrorKind::BadChunkSize {
                chunk_size,
                capacity,
            } => write!(
                f,
                "cannot create ring {path}: chunk size {chunk_size} bytes does not fit a ring \
                 of {capacity} bytes (use a power of two from 1KiB to 64KiB that leaves at \
                 least 16 chunks, or leave the chunk size to the default)"
            ),
            CreateErrorKind::InUse => write!(
                f,
                "cannot create ring {path}: a live writer holds it (stop that process \
                 or choose another path)"
            ),
            CreateErrorKind::NoSpace { needed, source } => write!(
                f,
                "cannot create ring {path}: the file system cannot reserve {needed} bytes \
                 ({source}; free space or choose a smaller capacity)"
            ),
            CreateErrorKind::BadMode(m) => write!(
                f,
                "cannot create ring {path}: file mode {m:#o} is not allowed (use read and \
                 write bits for the owner and read bits for group and others, e.g. 0o600 \
                 or 0o640: a ring others may write could be truncated under the writer)"
            ),
            CreateErrorKind::Io { step, source } => {
                let hint = match source.raw_os_error() {
                    Some(libc::EROFS) => " (the file system is read-only: choose a writable directory)",
                    Some(libc::EACCES | libc::EPERM) => {
                        " (no permission to create files there: choose another directory or run as its owner)"
                    }
                    Some(libc::ENOENT) => " (a directory on the path does not exist)",
                    Some(libc::ELOOP | libc::ENOTDIR) => {
                        " (a component of the directory is a symlink or not a directory: a directory the recorder creates is never reached through a symlink)"
                    }
                    Some(libc::ENOSPC | libc::EDQUOT) => {
                        " (the file system is full: free space or choose another directory)"
                    }
                    _ => "",
                };
                write!(f, "cannot create ring {path}: {step}: {source}{hint}")
            }
        }
    }
}

/// The `Display` text, so that `fn main() -> Result<(), Box<dyn Error>>`
/// (which prints an error with `Debug`) shows the sentence with its hint;
/// the alternate form (`{:#?}`) shows the path and kind.
impl std::fmt::Debug for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            f.debug_struct("CreateError")
                .field("path", &self.path)
                .field("kind", &self.kind)
                .finish()
        } else {
            std::fmt::Display::fmt(self, f)
        }
    }
}

impl std::error::Error for CreateError {}

/// Why one append did not publish its record. Both cases are counted in the
/// ring's header, so the reader reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The record is larger than the ring accepts.
    TooLarge {
        /// The record's length in bytes.
        len: usize,
        /// The largest length this ring accepts.
        max: usize,
    },
    /// No chunk could be claimed: every chunk the claim met is owned by a
    /// writer that has not finished it (more appending threads than the
    /// ring has chunks to spare). The record was dropped and counted
    /// (`shm-layout.md`, 7.4); the next append tries again.
    Dropped,
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::TooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds this ring's limit of {max}")
            }
            AppendError::Dropped => write!(f, "no free chunk in the ring: every chunk is held by a writer that has not finished it (more appending threads than chunks; use a smaller chunk size or a larger ring)"),
        }
    }
}

impl std::error::Error for AppendError {}
