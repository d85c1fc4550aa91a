//! Finding the rings in a directory without trusting it, and removing old
//! dead ones: the one scanner and the one retention routine that every
//! collector uses (`blackbox watch` and `blackbox on-failure`).
//!
//! The directory is shared with the application (and, on a shared volume,
//! with whoever else can write it), so every entry is suspect:
//!
//! - one level only, no recursion; names starting with `.` are skipped (the
//!   recorder's temporary files `.NAME.PID.NONCE.tmp`, the state directory);
//! - symlinks are never followed: the entry's own type is checked, and the
//!   file is opened with `O_NOFOLLOW`, so a link swapped in after the check
//!   fails to open (a symlink to a ring inside the directory names a ring
//!   found anyway under its real name; one pointing outside is exactly what
//!   must not be read);
//! - only regular files are opened, with `O_NONBLOCK` so a FIFO swapped in
//!   cannot block the open, and `fstat` on the open file decides (type,
//!   owner, size, links), not the name;
//! - the owner must be the collector's effective uid, the directory's owner
//!   or a uid of [`Policy::owners`] (unless [`Policy::any_owner`]);
//! - a file with more than one hard link is skipped (a hard link can bring
//!   a file from outside the directory in; the recorder's link from its
//!   temporary name is undone within microseconds, and the next scan sees
//!   one link);
//! - a file larger than [`Policy::max_ring_size`] is skipped before a byte
//!   of it is read; for the others only the 4096-byte header is read here, and the
//!   header's capacity must fit the file, so a shipment copies at most the
//!   file's size;
//! - a ring is known by its header (magic, version, sizes), whatever its
//!   name.
//!
//! Every skipped file is in the scan's [`Scan::skipped`], marked
//! [`Skipped::new`] the first time this scanner skips it for that reason,
//! so a long-running collector can log each one once.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::ring::Ring;

/// Which files the collector may read.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Larger files are skipped unread.
    pub max_ring_size: u64,
    /// Owners accepted besides the collector's euid and the directory's owner.
    pub owners: Vec<u32>,
    /// Accept files of any owner.
    pub any_owner: bool,
}

/// Why a file was not taken as a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Special,
    /// It could not be opened.
    Open,
    /// Owned by a uid the policy does not accept.
    Owner,
    /// More than one hard link.
    Links,
    /// Larger than the policy's maximum.
    Size,
    /// Not a ring (its header says so).
    NotARing,
    /// A ring that cannot be read.
    Unreadable,
    /// Its lock cannot be queried, so whether its writer lives is unknown.
    Lock,
}

/// A file a scan did not take.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// `DIR/NAME`.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
    /// Why, in words (one line).
    pub detail: String,
    /// The first time this scanner skips this path for this reason.
    pub new: bool,
}

/// What one scan found.
#[derive(Debug)]
pub struct Scan {
    /// The rings, oldest writer first.
    pub rings: Vec<Found>,
    /// The files not taken.
    pub skipped: Vec<Skipped>,
}

/// A ring found by a scan, open for reading.
#[derive(Debug)]
pub struct Found {
    /// `DIR/NAME`.
    pub path: PathBuf,
    /// The file name, for logs.
    pub name: String,
    /// The ring, read through `file` (a duplicate descriptor).
    pub ring: Ring,
    /// The open file (to check it is still linked and still at `path`).
    pub file: File,
    /// File size in bytes.
    pub size: u64,
    /// Whether a live writer holds the ring's lock.
    pub live: bool,
}

impl Found {
    /// The ring's identity, independent of its file name: nonce, start
    /// time and pid, as `NONCE-START_NS-PID` (safe as a file name).
    pub fn id(&self) -> String {
        let h = self.ring.header();
        format!("{:016x}-{}-{}", h.nonce, h.start_unix_ns, h.pid)
    }

    /// Whether the open file is still the one at `path` (not removed, not
    /// replaced), so removing `path` removes this ring and nothing else.
    pub fn still_at_path(&self) -> bool {
        let (Ok(open), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return false;
        };
        open.nlink() > 0 && now.is_file() && open.dev() == now.dev() && open.ino() == now.ino()
    }

    /// Whether the open file still has a name (nobody removed it).
    pub fn still_linked(&self) -> bool {
        self.file.metadata().map(|m| m.nlink() > 0).unwrap_or(false)
    }
}

/// Scans one directory, remembering what it already reported.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    policy: Policy,
    euid: u32,
    told: HashSet<(PathBuf, SkipReason)>,
    /// Files seen with several links once (new only when seen so twice).
    linked: HashSet<PathBuf>,
    /// This scan's skips.
    skipped: Vec<Skipped>,
}

impl Scanner {
    /// A scanner of `dir` that takes what `policy` accepts.
    pub fn new(dir: PathBuf, policy: Policy) -> Scanner {
        Scanner {
            dir,
            policy,
            euid: nix::unistd::geteuid().as_raw(),
            told: HashSet::new(),
            linked: HashSet::new(),
            skipped: Vec::new(),
        }
    }

    /// The directory scanned.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes a skipped file.
    fn tell(&mut self, path: &Path, reason: SkipReason, detail: String) {
        let new = self.told.insert((path.to_path_buf(), reason));
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
            detail,
            new,
        });
    }

    /// Distinct files (path and reason) skipped so far, while they exist.
    pub fn skipped_count(&self) -> u64 {
        self.told.len() as u64
    }

    /// Lists the rings in the directory, oldest writer first, and the
    /// files it did not take.
    ///
    /// # Errors
    ///
    /// The directory cannot be listed ([`ErrorKind::Io`]).
    pub fn scan(&mut self) -> Result<Scan, Error> {
        self.skipped.clear();
        let dir_meta = std::fs::metadata(&self.dir)
            .map_err(|e| Error::io(&format!("cannot stat {}", self.dir.display()), &e))?;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&format!("cannot list {}", self.dir.display()), &e))?;
        let mut found = Vec::new();
        let mut present = HashSet::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let path = entry.path();
            present.insert(path.clone());
            // DirEntry::file_type does not follow symlinks.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                self.tell(
                    &path,
                    SkipReason::Symlink,
                    "a symlink (never followed)".into(),
                );
                continue;
            }
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                let what = if kind.is_fifo() {
                    "a FIFO"
                } else if kind.is_socket() {
                    "a socket"
                } else {
                    "a device"
                };
                self.tell(
                    &path,
                    SkipReason::Special,
                    format!("{what}, not a regular file"),
                );
                continue;
            }
            if let Some(f) = self.open(&path, dir_meta.uid()) {
                found.push(f);
            }
        }
        // Forget what was told about files that are gone (the set stays as
        // small as the directory).
        self.told.retain(|(path, _)| present.contains(path));
        self.linked.retain(|path| present.contains(path));
        found.sort_by(|a, b| {
            let (ha, hb) = (a.ring.header(), b.ring.header());
            ha.start_unix_ns
                .cmp(&hb.start_unix_ns)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(Scan {
            rings: found,
            skipped: std::mem::take(&mut self.skipped),
        })
    }

    /// Opens one candidate and applies the policy; `None` when skipped.
    fn open(&mut self, path: &Path, dir_uid: u32) -> Option<Found> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.tell(
                    path,
                    SkipReason::Symlink,
                    "a symlink (never followed)".into(),
                );
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.tell(path, SkipReason::Open, format!("cannot open: {e}"));
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            self.tell(path, SkipReason::Special, "not a regular file".into());
            return None;
        }
        let uid = meta.uid();
        if !self.policy.any_owner
            && uid != self.euid
            && uid != dir_uid
            && !self.policy.owners.contains(&uid)
        {
            self.tell(
                path,
                SkipReason::Owner,
                format!(
                    "owned by uid {uid}, not by this collector (uid {}) or the directory's owner (uid {dir_uid}); allow it with --owner {uid}",
                    self.euid
                ),
            );
            return None;
        }
        if meta.nlink() > 1 {
            let detail = format!(
                "{} hard links (a hard link can bring in a file from outside the directory)",
                meta.nlink()
            );
            // New from the second sighting on: the recorder's own link
            // from its temporary name shows two links for a moment.
            if self.linked.insert(path.to_path_buf()) {
                self.skipped.push(Skipped {
                    path: path.to_path_buf(),
                    reason: SkipReason::Links,
                    detail,
                    new: false,
                });
            } else {
                self.tell(path, SkipReason::Links, detail);
            }
            return None;
        }
        if meta.len() > self.policy.max_ring_size {
            self.tell(
                path,
                SkipReason::Size,
                format!(
                    "{} bytes, more than the {} --max-ring-size allows with the header (not read)",
                    meta.len(),
                    self.policy.max_ring_size
                ),
            );
            return None;
        }
        let dup = file.try_clone().ok()?;
        let ring = match Ring::from_file(dup, path) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Format => {
                self.tell(path, SkipReason::NotARing, format!("not a ring ({e})"));
                return None;
            }
            Err(e) => {
                self.tell(path, SkipReason::Unreadable, e.to_string());
                return None;
            }
        };
        let live = match ring.is_locked() {
            Ok(l) => l,
            Err(e) => {
                self.tell(
                    path,
                    SkipReason::Lock,
                    format!("{e} (cannot tell whether its writer lives)"),
                );
                return None;
            }
        };
        Some(Found {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            ring,
            file,
            size: meta.len(),
            live,
        })
    }
}

/// How many dead rings a directory keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// At most this many dead rings.
    pub keep: Option<usize>,
    /// At most this many bytes of dead rings.
    pub keep_bytes: Option<u64>,
}

/// A dead ring that [`Retention::prune`] removed, or tried to.
#[derive(Debug)]
pub struct Pruned {
    /// `DIR/NAME`.
    pub path: PathBuf,
    /// The ring's identity ([`Found::id`]).
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the removal worked.
    pub result: io::Result<()>,
}

impl Retention {
    /// Whether it removes anything at all.
    pub fn is_unbounded(&self) -> bool {
        self.keep.is_none() && self.keep_bytes.is_none()
    }

    /// Removes the oldest dead rings of `rings` (a scan's, oldest writer
    /// first) while more than `keep` of them (or more than `keep_bytes`)
    /// remain. A live ring is never removed, nor one for which `may_remove`
    /// says `None`; what it returns (a lock, say) is held while that ring is
    /// removed. A ring no longer at its path (removed or replaced since the
    /// scan) is left alone, so removing a path removes that ring and no
    /// other file.
    pub fn prune<G>(
        &self,
        rings: &[Found],
        mut may_remove: impl FnMut(&Found) -> Option<G>,
    ) -> Vec<Pruned> {
        let mut pruned = Vec::new();
        if self.is_unbounded() {
            return pruned;
        }
        let dead: Vec<&Found> = rings.iter().filter(|f| !f.live).collect();
        let mut count = dead.len();
        let mut bytes: u64 = dead.iter().map(|f| f.size).sum();
        for f in dead {
            let over =
                self.keep.is_some_and(|k| count > k) || self.keep_bytes.is_some_and(|s| bytes > s);
            if !over {
                break;
            }
            let Some(guard) = may_remove(f) else {
                continue;
            };
            if !f.still_at_path() {
                continue;
            }
            let result = std::fs::remove_file(&f.path);
            if result.is_ok() {
                count -= 1;
                bytes -= f.size;
            }
            pruned.push(Pruned {
                path: f.path.clone(),
                id: f.id(),
                size: f.size,
                result,
            });
            drop(guard);
        }
        pruned
    }
}
