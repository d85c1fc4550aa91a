//! The reader's error: one sentence for a person, and a kind for a program.

use std::fmt;
use std::io;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be opened or read.
    Io,
    /// The file is not a valid ring (foreign, truncated or damaged header).
    Format,
    /// A valid ring of a version or feature this reader does not know.
    Unsupported,
}

/// An error from opening or reading a ring.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn format(message: String) -> Error {
        Error {
            kind: ErrorKind::Format,
            message,
        }
    }

    pub(crate) fn unsupported(message: String) -> Error {
        Error {
            kind: ErrorKind::Unsupported,
            message,
        }
    }

    pub(crate) fn io(what: &str, err: &io::Error) -> Error {
        let hint = match err.kind() {
            io::ErrorKind::NotFound => " (check the path)",
            io::ErrorKind::PermissionDenied => " (run as the ring's owner or root)",
            _ => "",
        };
        Error {
            kind: ErrorKind::Io,
            message: format!("{what}: {err}{hint}"),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
