//! The collector's durable state: claims and markers, one set per ring.
//!
//! For a ring whose identity is `ID` (nonce, start time, pid; see
//! [`blackbox_reader::dir::Found::id`]) the state directory holds:
//!
//! - `ID.lock`: empty; a collector holds an exclusive `flock` on it while it
//!   ships or removes the ring (non-blocking: a collector that finds it held
//!   leaves the ring to the holder this round). `flock` is not the writer's
//!   OFD lock on the ring itself, which the collector never takes, so the
//!   liveness probe is undisturbed.
//! - `ID.shipped`: written after a death shipment succeeded; its presence
//!   means "done". Written atomically: a temporary file, `fsync`, `rename`,
//!   `fsync` of the directory, so it survives the collector's crash and the
//!   machine's.
//! - `ID.snapshot`: the last snapshot trigger count acted on and when.
//!
//! Every check of a marker that decides a shipment is made while holding
//! the claim, and the marker is written before the claim is released, so
//! two collectors never ship one ring twice. A crash between the shipment
//! and the marker leaves no marker: the restart ships again, with the same
//! idempotency key.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The state directory.
pub(crate) struct StateDir {
    path: PathBuf,
}

/// A held claim on one ring; released when dropped.
#[must_use = "the claim is released when dropped"]
pub(crate) struct Claim {
    _lock: Flock<File>,
}

/// What `ID.snapshot` remembers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SnapshotMark {
    /// The trigger count last acted on.
    pub trigger: u64,
    /// When that snapshot was shipped, Unix milliseconds.
    pub shipped_unix_ms: u64,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory. It must be a real
    /// directory (not a symlink) owned by this collector.
    ///
    /// # Errors
    ///
    /// One line saying what is wrong with the directory.
    pub fn open(path: &Path) -> Result<StateDir, String> {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                "cannot create the state directory {}: {e} (give a writable one with --state-dir)",
                path.display()
            ))
            }
        }
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| format!("cannot stat the state directory {}: {e}", path.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "the state directory {} is not a directory (a symlink or a file; remove it or give another with --state-dir)",
                path.display()
            ));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(format!(
                "the state directory {} belongs to uid {}, not to this collector (uid {euid}); give another with --state-dir",
                path.display(),
                meta.uid()
            ));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.path.join(format!("{id}.{ext}"))
    }

    /// Takes the claim on ring `id` without waiting: `None` when another
    /// collector holds it.
    ///
    /// # Errors
    ///
    /// The claim file cannot be created or locked.
    pub fn claim(&self, id: &str) -> io::Result<Option<Claim>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.file(id, "lock"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Claim { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io::Error::from(e)),
        }
    }

    /// Whether ring `id` was shipped (its marker exists).
    pub fn is_shipped(&self, id: &str) -> bool {
        std::fs::symlink_metadata(self.file(id, "shipped")).is_ok()
    }

    /// Records that ring `id` was shipped, durably.
    ///
    /// # Errors
    ///
    /// The marker cannot be written.
    pub fn mark_shipped(&self, id: &str, what: &serde_json::Value) -> io::Result<()> {
        self.write_atomic(id, "shipped", format!("{what}\n").as_bytes())
    }

    /// The last snapshot acted on for ring `id` (zero when none).
    pub fn snapshot_mark(&self, id: &str) -> SnapshotMark {
        let Ok(text) = read_small(&self.file(id, "snapshot")) else {
            return SnapshotMark::default();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        SnapshotMark {
            trigger: v["trigger"].as_u64().unwrap_or(0),
            shipped_unix_ms: v["shipped_unix_ms"].as_u64().unwrap_or(0),
        }
    }

    /// Records the snapshot acted on for ring `id`, durably.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn mark_snapshot(&self, id: &str, mark: SnapshotMark, key: &str) -> io::Result<()> {
        let v = serde_json::json!({
            "trigger": mark.trigger,
            "shipped_unix_ms": mark.shipped_unix_ms,
            "key": key,
        });
        self.write_atomic(id, "snapshot", format!("{v}\n").as_bytes())
    }

    /// Forgets ring `id` (after the ring itself was removed).
    pub fn forget(&self, id: &str) {
        for ext in ["shipped", "snapshot", "lock"] {
            let _ = std::fs::remove_file(self.file(id, ext));
        }
    }

    /// Writes `ID.EXT` atomically and durably: temporary file, fsync,
    /// rename, fsync of the directory.
    fn write_atomic(&self, id: &str, ext: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self
            .path
            .join(format!(".{id}.{ext}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.file(id, ext))?;
            File::open(&self.path)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Reads a state file of at most 4 KiB (they are a line of JSON).
fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_exclude_each_other_and_markers_persist() {
        let dir = std::env::temp_dir().join(format!("bbx-watch-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).unwrap();
        let first = state.claim("abc").unwrap();
        assert!(first.is_some());
        // Another open file description: flock conflicts even in one process.
        assert!(state.claim("abc").unwrap().is_none());
        drop(first);
        assert!(state.claim("abc").unwrap().is_some());

        assert!(!state.is_shipped("abc"));
        state
            .mark_shipped("abc", &serde_json::json!({"key": "k"}))
            .unwrap();
        assert!(StateDir::open(&dir).unwrap().is_shipped("abc"));

        assert_eq!(state.snapshot_mark("abc"), SnapshotMark::default());
        let mark = SnapshotMark {
            trigger: 7,
            shipped_unix_ms: 42,
        };
        state.mark_snapshot("abc", mark, "k").unwrap();
        assert_eq!(state.snapshot_mark("abc"), mark);

        state.forget("abc");
        assert!(!state.is_shipped("abc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_state_directory_is_refused() {
        let base = std::env::temp_dir().join(format!("bbx-watch-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let err = StateDir::open(&base.join("link")).err().unwrap();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
