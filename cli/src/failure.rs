//! A command's failure: one line on stderr and an exit status. Only the
//! binary maps errors to exit statuses.
//!
//! Exit status: 0 success; 1 `verify` found the ring inconsistent; 2 any
//! error (bad flags, a missing, foreign or damaged file, a failed write).

use std::io;

/// Exit status for errors.
pub const EXIT_ERROR: i32 = 2;
/// Exit status of `verify` for an inconsistent ring.
pub const EXIT_INCONSISTENT: i32 = 1;

/// A failure to report: one line, then exit with `code`.
#[derive(Debug)]
pub struct Failure {
    /// The line to print after `blackbox: `.
    pub message: String,
    /// Exit status.
    pub code: i32,
}

impl Failure {
    pub(crate) fn error(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    pub(crate) fn ring(path: &std::path::Path, err: &blackbox_reader::Error) -> Failure {
        Failure::error(format!("{}: {err}", path.display()))
    }

    /// Stdout went away (for example `blackbox read RING | head`): not an
    /// error, stop quietly.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.code == 0
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        if err.kind() == io::ErrorKind::BrokenPipe {
            return Failure {
                message: String::new(),
                code: 0,
            };
        }
        Failure::error(format!("cannot write output: {err}"))
    }
}
