//! [`ExitGuard`]: marks a ring `exited` when the program that holds it
//! returns normally, for a [`Recorder`] that is never dropped.
//!
//! A `Recorder` marks its ring `exited` when it is dropped. One shared with
//! a global `tracing` subscriber (`.init()`) or a `log` logger
//! (`log::set_boxed_logger`) never is: those live until the process ends,
//! so after a normal return from `main` the reader finds the state word
//! still `running`, the liveness lock gone, and says `killed`. The guard
//! that the adapters' setup returns
//! ([`BlackboxLayer::with_guard`](crate::BlackboxLayer::with_guard),
//! [`BlackboxLogger::init`](crate::BlackboxLogger::init)) fixes that the way
//! `tracing-appender`'s `WorkerGuard` flushes its writer: the program keeps
//! it in `main`, and when `main` returns it is dropped and calls
//! [`Recorder::mark_clean_exit`].

use std::fmt;
use std::sync::{Arc, Weak};

use crate::recorder::Recorder;

/// Marks the ring `exited` when dropped, unless the thread is panicking.
///
/// Returned by the adapters' setup
/// ([`BlackboxLayer::with_guard`](crate::BlackboxLayer::with_guard),
/// [`BlackboxLogger::init`](crate::BlackboxLogger::init)), or made with
/// [`ExitGuard::new`] for any shared [`Recorder`]. Keep it in `main`, bound
/// to a named variable, until `main` returns:
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("guard-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use std::sync::Arc;
/// use blackbox_recorder::{ExitGuard, Recorder};
///
/// let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
/// // Usually from the adapters: `let (layer, _guard) = BlackboxLayer::new(rec.clone())
/// // .with_guard();` or `let _guard = BlackboxLogger::new(rec.clone()).init()?;`
/// let _guard = ExitGuard::new(&rec);
/// // ... the program; a global subscriber or logger holds a clone of `rec` ...
/// // main returns: `_guard` is dropped and the ring says "exited".
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # What dropping it does
///
/// It calls [`Recorder::mark_clean_exit`]: the state word goes from
/// `running` to `exited` (a crash recorded before is kept), and records
/// appended afterwards (by code that runs after `main`) still land. It does
/// not close the ring: the subscriber or logger may still write to it.
///
/// - While the thread unwinds from a panic (`std::thread::panicking()`), it
///   does nothing: the program did not end cleanly. With the crash handlers
///   installed ([`Recorder::install_crash_handlers`]) a panic in `main` is
///   recorded as a crash; without them the reader says `killed`.
/// - It holds the recorder weakly: it never keeps the ring open, never
///   stops `Arc::try_unwrap` from returning the `Recorder` to close it, and
///   if every handle is gone (the ring closed itself, as `exited`, when the
///   last one was dropped) it does nothing. If it happens to hold the last
///   handle for a moment, the `Recorder` is dropped, and closed, here.
///
/// # Why it is `must_use`
///
/// A guard that is not kept is dropped at once, and marks the ring
/// `exited` while the program is still running: a later SIGKILL or OOM
/// kill would then read as a clean exit. `let _ = ...` drops it at once
/// too; bind it to a name (`let _guard = ...`). Without any guard the ring
/// of a program that returns from `main` reads as `killed`.
/// `std::process::exit` runs no destructors: drop the guard before calling
/// it (or call [`Recorder::mark_clean_exit`]).
#[must_use = "dropping the guard marks the ring `exited`: keep it (`let _guard = ...`) until `main` returns"]
pub struct ExitGuard {
    rec: Weak<Recorder>,
}

impl ExitGuard {
    /// A guard that marks `rec`'s ring `exited` when it is dropped.
    pub fn new(rec: &Arc<Recorder>) -> ExitGuard {
        ExitGuard {
            rec: Arc::downgrade(rec),
        }
    }
}

impl fmt::Debug for ExitGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ExitGuard");
        match self.rec.upgrade() {
            Some(rec) => d.field("ring", &rec.path()),
            None => d.field("ring", &"<closed>"),
        };
        d.finish()
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // Unwinding from a panic is not a clean exit: the panic hook (if
        // installed) records the crash; leave the state word to it.
        if std::thread::panicking() {
            return;
        }
        if let Some(rec) = self.rec.upgrade() {
            rec.mark_clean_exit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::ExitGuard;
    use crate::layout::{H_STATE, STATE_EXITED, STATE_RUNNING};
    use crate::recorder::Recorder;

    fn temp_ring(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("exit-guard-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("r.ring"), dir)
    }

    /// The state word, read from the file (the mapping is shared).
    fn state(path: &Path) -> u32 {
        let bytes = std::fs::read(path).unwrap();
        u32::from_le_bytes(bytes[H_STATE..H_STATE + 4].try_into().unwrap())
    }

    #[test]
    fn dropping_the_guard_marks_a_shared_ring_exited() {
        let (path, dir) = temp_ring("drop");
        let rec = Arc::new(Recorder::create(&path, 65536).unwrap());
        let held_elsewhere = Arc::clone(&rec); // as a global subscriber would
        let guard = ExitGuard::new(&rec);
        assert_eq!(state(&path), STATE_RUNNING);
        drop(guard);
        assert_eq!(state(&path), STATE_EXITED);
        drop((rec, held_elsewhere));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_guard_dropped_in_a_panic_leaves_the_ring_running() {
        let (path, dir) = temp_ring("panic");
        let rec = Arc::new(Recorder::create(&path, 65536).unwrap());
        let guard = ExitGuard::new(&rec);
        let unwound = std::thread::spawn(move || {
            let _guard = guard;
            panic!("test panic with an exit guard alive");
        })
        .join();
        assert!(unwound.is_err());
        assert_eq!(state(&path), STATE_RUNNING);
        // The recorder still closes cleanly after that.
        Arc::try_unwrap(rec).ok().expect("last handle").close();
        assert_eq!(state(&path), STATE_EXITED);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_guard_outlives_a_closed_recorder_harmlessly() {
        let (path, dir) = temp_ring("closed");
        let rec = Arc::new(Recorder::create(&path, 65536).unwrap());
        let guard = ExitGuard::new(&rec);
        // The guard does not keep the ring open: the last handle unwraps.
        let rec = Arc::try_unwrap(rec)
            .ok()
            .expect("the guard holds no handle");
        rec.close();
        assert_eq!(state(&path), STATE_EXITED);
        assert!(format!("{guard:?}").contains("closed"));
        drop(guard);
        assert_eq!(state(&path), STATE_EXITED);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
