//! Opening a ring read-only and recovering its window
//! (`shm-layout.md`, "Recovery: the reader's algorithm").
//!
//! The reader never maps the file: it copies with `pread`, so a file that is
//! truncated under it gives a short read (an error), never SIGBUS, and no
//! byte of the file is ever looked at in place. A data region of 8 MiB or
//! more is copied and walked by two threads (this one and a scoped one):
//! most of a recovery's time is copying into fresh memory and walking,
//! and two cores do both faster than one (the recover bench). A ring can
//! also be read from bytes in memory ([`Ring::from_bytes`]): the same
//! validation and walk, with the copies taken from the buffer instead of
//! the file.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use blackbox_recorder::checksum::record_crc;
use blackbox_recorder::layout::*;

use crate::error::Error;
use crate::header::Header;
use crate::records::PodBuf;

/// A ring file opened for reading.
#[derive(Debug)]
pub struct Ring {
    source: Source,
    path: PathBuf,
    header: Header,
}

/// Where a ring's bytes come from. Every read goes through
/// [`Source::read_exact_at`], so both kinds share one recovery path.
enum Source {
    /// A ring file, read with `pread`.
    File(File),
    /// A ring file's bytes in memory; it has no writer and no lock.
    Bytes(Box<[u8]>),
}

impl Source {
    /// The length of the file (or buffer) in bytes.
    fn len(&self) -> io::Result<u64> {
        match self {
            Source::File(f) => Ok(f.metadata()?.len()),
            Source::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// Fills `buf` from `offset`; a source that ends first is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File(f) => f.read_exact_at(buf, offset),
            Source::Bytes(b) => {
                let from = usize::try_from(offset).unwrap_or(usize::MAX);
                let bytes = from
                    .checked_add(buf.len())
                    .and_then(|end| b.get(from..end))
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(bytes);
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(file) => f.debug_tuple("File").field(file).finish(),
            Source::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// How the writer is (or ended), as far as the file and its lock tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A live process holds the ring's lock.
    Running,
    /// The writer closed the ring cleanly.
    Exited,
    /// The writer recorded its own crash.
    Crashed,
    /// The writer died without a word: lock gone, state still running
    /// (SIGKILL, OOM kill, or an exit that skipped the close).
    Killed,
}

impl State {
    /// `running`, `exited`, `crashed` or `killed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Exited => "exited",
            State::Crashed => "crashed",
            State::Killed => "killed",
        }
    }
}

/// One valid record of a snapshot. Its bytes live in the [`Snapshot`].
///
/// Plain data (`repr(C)`, no padding), so that a large index can live in a
/// huge-page mapping ([`Records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Record {
    /// Its sequence number in that writer's run: how many records the
    /// writer appended before it.
    pub seq: u64,
    /// Write time, Unix nanoseconds (converted from the ring's clock).
    pub ts_unix_ns: u64,
    payload_at: u64,
    /// The writer (one thread's stream of records) that appended it.
    pub writer: u32,
    /// Length in bytes (header + payload).
    pub len: u32,
    /// Linux thread id of the writer's thread.
    pub thread_id: u32,
    /// Record kind (`KIND_*`).
    pub kind: u16,
    /// Record flags.
    pub flags: u16,
}

/// The records of a [`Snapshot`], oldest first: a slice of
/// [`Record`] (`snap.records.iter()`, `.len()`, `[i]`, ...).
#[derive(Clone)]
pub struct Records(pub(crate) PodBuf<Record>);

impl Deref for Records {
    type Target = [Record];

    fn deref(&self) -> &[Record] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = &'a Record;
    type IntoIter = std::slice::Iter<'a, Record>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Records {
    fn eq(&self, other: &Records) -> bool {
        **self == **other
    }
}

impl Eq for Records {}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What a writer's run lost right before one of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gap {
    /// Sequence numbers of this writer that are not in the window between
    /// the previous record of the writer and this one.
    pub missing: u64,
    /// Of those, records that failed their checksum.
    pub corrupt: u64,
    /// Appends of this writer dropped in between (no chunk was free).
    pub dropped: u64,
}

/// Totals over a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Records marked as being written and never published (on a live ring,
    /// some may be being written right now).
    pub torn: u64,
    /// Records that failed their checksum or had an impossible length, and
    /// chunks whose header or table word no writer makes.
    pub corrupt: u64,
    /// Sequence numbers missing from the middle of a writer's run (a working
    /// writer never leaves one).
    pub holes: u64,
    /// Appends dropped by the writers whose chunks the window shows (the
    /// rises of their drop counts); the header's `dropped` counts all.
    pub dropped: u64,
}

/// One writer as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterRun {
    /// The writer's number.
    pub writer: u32,
    /// Linux thread id of its thread.
    pub thread_id: u32,
    /// Kernel name of its thread.
    pub thread_name: String,
    /// `seq` of its oldest record in the window: how many of its records
    /// left the window before it.
    pub first_seq: u64,
    /// `seq` of its newest record in the window.
    pub last_seq: u64,
    /// Its valid records in the window.
    pub records: u64,
    /// Its appends dropped before its newest chunk in the window.
    pub dropped: u64,
    /// Time of its oldest record in the window, Unix nanoseconds.
    pub first_ts_unix_ns: u64,
    /// Time of its newest record in the window, Unix nanoseconds.
    pub last_ts_unix_ns: u64,
}

/// The recovered window of a ring at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The header as read at the start of the snapshot.
    pub header: Header,
    /// Valid records, oldest first (by time across writers, by `seq` within
    /// each).
    pub records: Records,
    /// The writers with records in the window, by writer number.
    pub writers: Vec<WriterRun>,
    /// Totals over the window.
    pub totals: Totals,
    /// Chunks ever claimed (not free).
    pub chunks_used: u32,
    /// Chunks owned at the snapshot (being written, or a dead writer's last).
    pub chunks_owned: u32,
    /// Gaps, each keyed by the `(writer, seq)` of the record that follows it
    /// (sparse, sorted).
    pub gaps: Vec<((u32, u64), Gap)>,
    data: Buffer,
}

/// The snapshot's copy of the data region. Large copies go to an anonymous
/// mapping with transparent huge pages: filling 64 MiB of fresh 4 KiB pages
/// costs more page faults than the copy itself.
#[derive(Debug)]
enum Buffer {
    Heap(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

impl Buffer {
    fn zeroed(len: usize) -> Buffer {
        match crate::records::huge_page_map(len) {
            Some(map) => Buffer::Mapped(map),
            None => Buffer::Heap(vec![0; len]),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Buffer::Heap(v) => v,
            Buffer::Mapped(m) => m,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::Heap(v) => v,
            Buffer::Mapped(m) => m,
        }
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Buffer {
        let mut copy = Buffer::zeroed(self.bytes().len());
        copy.bytes_mut().copy_from_slice(self.bytes());
        copy
    }
}

impl Snapshot {
    /// The payload bytes of `record` (after its 24-byte header).
    pub fn payload(&self, record: &Record) -> &[u8] {
        let at = record.payload_at as usize;
        &self.data.bytes()[at..at + record.len as usize - RECORD_HEADER_LEN]
    }

    /// What its writer lost right before `record`, if anything.
    pub fn gap_before(&self, record: &Record) -> Option<&Gap> {
        self.gaps
            .binary_search_by_key(&(record.writer, record.seq), |g| g.0)
            .ok()
            .map(|i| &self.gaps[i].1)
    }

    /// Records torn anywhere in the window.
    pub fn torn(&self) -> u64 {
        self.totals.torn
    }

    /// Records and chunks that failed validation.
    pub fn corrupt(&self) -> u64 {
        self.totals.corrupt
    }

    /// The record `seq` of `writer`, if it is in the window.
    pub fn record(&self, writer: u32, seq: u64) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.writer == writer && r.seq == seq)
    }

    /// The writer `number`, if it has records in the window.
    pub fn writer(&self, number: u32) -> Option<&WriterRun> {
        self.writers
            .binary_search_by_key(&number, |w| w.writer)
            .ok()
            .map(|i| &self.writers[i])
    }

    /// From when on the window holds every record of every writer
    /// (`shm-layout.md`, 8.8): the newest first-record time among writers
    /// whose first records left the window; `None` if none did.
    pub fn complete_from_unix_ns(&self) -> Option<u64> {
        self.writers
            .iter()
            .filter(|w| w.first_seq > 0)
            .map(|w| w.first_ts_unix_ns)
            .max()
    }

    /// How many records the writers in the window have appended, counting
    /// the ones that left it: the sum of `last_seq + 1`. Grows as a live
    /// ring is written; the same for the same window.
    pub fn appended(&self) -> u64 {
        self.writers.iter().map(|w| w.last_seq + 1).sum()
    }

    /// Why the writer last asked for a snapshot (`shm-layout.md`, 9.4): the
    /// message of the record named by `header`'s snapshot fields, or for an
    /// event that asked by its level, `LEVEL target: message`. `None` when
    /// no snapshot was asked for or its record has left the window.
    pub fn snapshot_reason(&self, header: &crate::header::Header) -> Option<String> {
        if header.snapshot_trigger == 0 {
            return None;
        }
        let (writer, seq) = header.snapshot_record?;
        let record = self.record(writer, seq)?;
        if record.kind != KIND_EVENT {
            return None;
        }
        let event = crate::event::decode_event(self.payload(record)).ok()?;
        if event.target == blackbox_recorder::SNAPSHOT_TARGET {
            return Some(event.message.into_owned());
        }
        let level = crate::event::level_text(event.level_code);
        Some(format!("{level} {}: {}", event.target, event.message))
    }
}

impl Ring {
    /// Opens the ring at `path` read-only and validates its header.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or read, or is not a valid ring of a
    /// supported version.
    pub fn open(path: impl AsRef<Path>) -> Result<Ring, Error> {
        let path = path.as_ref();
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
        // refused as not a regular file); it changes nothing for pread.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io("cannot open", &e))?;
        Ring::from_file(file, path)
    }

    /// Reads the ring from `file`, already opened read-only (for callers
    /// that open with flags of their own, such as `O_NOFOLLOW`); `path` is
    /// what [`Ring::path`] reports. The same checks as [`Ring::open`].
    ///
    /// # Errors
    ///
    /// As [`Ring::open`]: not a regular file, or not a valid ring of a
    /// supported version.
    pub fn from_file(file: File, path: impl AsRef<Path>) -> Result<Ring, Error> {
        let meta = file.metadata().map_err(|e| Error::io("cannot stat", &e))?;
        if !meta.is_file() {
            return Err(Error::format("not a regular file".to_string()));
        }
        let source = Source::File(file);
        let header = read_header(&source)?;
        Ok(Ring {
            source,
            path: path.as_ref().to_path_buf(),
            header,
        })
    }

    /// Reads a ring from a copy of its file in memory, with the same
    /// validation and recovery as [`Ring::open`]. Such a ring has no writer:
    /// [`Ring::is_locked`] is `false`. Its [`Ring::path`] is `<memory>`.
    /// For fuzzing, and for tools that hold a ring's bytes already.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = blackbox_reader::Ring::from_bytes(vec![0u8; 100]).unwrap_err();
    /// assert_eq!(err.kind(), blackbox_reader::ErrorKind::Format);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Ring::open`]: the bytes are not a valid ring of a supported
    /// version.
    pub fn from_bytes(bytes: impl Into<Box<[u8]>>) -> Result<Ring, Error> {
        let source = Source::Bytes(bytes.into());
        let header = read_header(&source)?;
        Ok(Ring {
            source,
            path: PathBuf::from("<memory>"),
            header,
        })
    }

    /// Another handle on the same ring (the file descriptor duplicated),
    /// for reading it on another thread.
    ///
    /// # Errors
    ///
    /// The descriptor cannot be duplicated.
    pub fn try_clone(&self) -> Result<Ring, Error> {
        let source = match &self.source {
            Source::File(f) => Source::File(
                f.try_clone()
                    .map_err(|e| Error::io("cannot duplicate the file descriptor", &e))?,
            ),
            Source::Bytes(b) => Source::Bytes(b.clone()),
        };
        Ok(Ring {
            source,
            path: self.path.clone(),
            header: self.header.clone(),
        })
    }

    /// The path the ring was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as read when the ring was opened.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the header again (counters, state and heartbeat move).
    ///
    /// # Errors
    ///
    /// As [`Ring::open`], for a file that changed since.
    pub fn reread_header(&self) -> Result<Header, Error> {
        let header = read_header(&self.source)?;
        if header.nonce != self.header.nonce || header.capacity != self.header.capacity {
            return Err(Error::format(
                "the ring file was replaced while being read".to_string(),
            ));
        }
        Ok(header)
    }

    /// The postmortem dump (`shm-layout.md`, 9.5): the module table and
    /// the crash context, read now. A missing or misplaced postmortem area
    /// gives an empty table and a note in its `problems`, not an error.
    ///
    /// # Errors
    ///
    /// The file cannot be read.
    pub fn postmortem(&self) -> Result<crate::postmortem::Postmortem, Error> {
        let mut header = vec![0u8; HEADER_LEN];
        self.source
            .read_exact_at(&mut header, 0)
            .map_err(|e| Error::io("read the header", &e))?;
        let h = &self.header;
        let mut area = Vec::new();
        let mut problem = None;
        match crate::postmortem::area_bounds(&header, h.chunk_count, h.data_offset) {
            Ok((offset, len)) => {
                area = vec![0u8; len as usize];
                if let Err(e) = self.source.read_exact_at(&mut area, offset) {
                    area.clear();
                    problem = Some(format!("the postmortem area cannot be read: {e}"));
                }
            }
            Err(p) => {
                problem = (u64::from_le_bytes(
                    header[H_PM_OFFSET..H_PM_OFFSET + 8]
                        .try_into()
                        .unwrap_or([0; 8]),
                ) != 0)
                    .then_some(p)
            }
        }
        let mut pm = crate::postmortem::decode(&header, &area);
        pm.problems.extend(problem);
        Ok(pm)
    }

    /// Whether a live process holds the ring's lock.
    ///
    /// # Errors
    ///
    /// The lock cannot be queried (a file system without locks).
    pub fn is_locked(&self) -> Result<bool, Error> {
        match &self.source {
            Source::File(file) => blackbox_recorder::lock::is_locked(file)
                .map_err(|e| Error::io("cannot query the lock", &e)),
            Source::Bytes(_) => Ok(false),
        }
    }

    /// The writer's state: from the lock and the state word.
    ///
    /// # Errors
    ///
    /// As [`Ring::is_locked`] and [`Ring::reread_header`].
    pub fn state(&self) -> Result<State, Error> {
        let locked = self.is_locked()?;
        let header = self.reread_header()?;
        Ok(match header.state {
            STATE_EXITED => State::Exited,
            STATE_CRASHED => State::Crashed,
            _ if locked => State::Running,
            _ => State::Killed,
        })
    }

    /// Recovers the whole window (`shm-layout.md`, section 11).
    ///
    /// On a live ring, a record that fails validation may have been caught
    /// mid-write, and a chunk reclaimed while it was copied can leave a hole
    /// in a writer's run: the snapshot is then taken again, at most twice
    /// more, before anything is called corrupt or missing. Every record returned was, at some
    /// moment, whole and published.
    ///
    /// # Errors
    ///
    /// The file cannot be read or its header became invalid.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut snap = self.snapshot_once()?;
        for _ in 0..2 {
            let suspect = snap.totals.corrupt > 0 || snap.totals.holes > 0;
            if !suspect || !self.is_locked().unwrap_or(false) {
                break;
            }
            snap = self.snapshot_once()?;
        }
        Ok(snap)
    }

    fn snapshot_once(&self) -> Result<Snapshot, Error> {
        let header = self.reread_header()?;
        let before = self.read_table(&header)?;
        let mut data = Buffer::zeroed(header.capacity as usize);
        self.copy_data(data.bytes_mut(), &header)?;
        // The seqlock rule, per chunk (`shm-layout.md`, 8.4): a chunk whose
        // table word changed during the copy is kept only if the claim that
        // was copied is the one it had before the copy and still has:
        // settled (owned or sealed) then and now, the same GEN in the copy
        // and in the file now, and a GEN older than its visits before the
        // copy (a claim made during the copy has a lap at least that).
        // Anything else is in flux and left for the next snapshot, as if the
        // chunk were just claimed.
        let after = self.read_table(&header)?;
        let mut table = before;
        let chunk_size = header.chunk_size as u64;
        let count = header.chunk_count as u64;
        let settled = |w: u64| matches!(table_state(w), CHUNK_OWNED | CHUNK_SEALED);
        for (i, (word, &now)) in table.iter_mut().zip(&after).enumerate() {
            if *word == now {
                continue;
            }
            let copied = u64_at(data.bytes(), i * chunk_size as usize + C_GEN);
            let mut keep = settled(*word) && settled(now) && copied / count < table_visits(*word);
            if keep {
                let mut gen = [0u8; 8];
                self.read_exact_at(
                    &mut gen,
                    header.data_offset + i as u64 * chunk_size + C_GEN as u64,
                )?;
                keep = u64::from_le_bytes(gen) == copied;
            }
            *word = if keep {
                now
            } else {
                table_word(CHUNK_CLAIMED, table_visits(now))
            };
        }
        Ok(recover(header, &table, data))
    }

    /// Copies the data region into `buf`. A large region is copied in two
    /// halves at once, on this thread and one more: copying into fresh
    /// memory is most of a recovery's time, and one core alone does not
    /// use all of the machine's memory bandwidth (on a 2-vCPU VM, two
    /// threads copied 64 MiB from tmpfs in 15-18 ms, one in 23-27 ms).
    fn copy_data(&self, buf: &mut [u8], header: &Header) -> Result<(), Error> {
        let chunk = (header.chunk_size as usize).max(1);
        let (first, second) = buf.split_at_mut(buf.len() / chunk / 2 * chunk);
        let second_at = header.data_offset + first.len() as u64;
        let (mine, theirs) = both(
            two_threads(first.len() + second.len()),
            || self.read_exact_at(first, header.data_offset),
            || self.read_exact_at(second, second_at),
        );
        mine.and(theirs)
    }

    fn read_table(&self, header: &Header) -> Result<Vec<u64>, Error> {
        let mut bytes = vec![0u8; 8 * header.chunk_count as usize];
        self.read_exact_at(&mut bytes, HEADER_LEN as u64)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.source.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::format("file is truncated: it ended before its data region did".to_string())
            } else {
                Error::io("cannot read", &e)
            }
        })
    }
}

fn read_header(source: &Source) -> Result<Header, Error> {
    let len = source.len().map_err(|e| Error::io("cannot stat", &e))?;
    let mut bytes = vec![0u8; HEADER_LEN];
    let want = (len as usize).min(HEADER_LEN);
    source
        .read_exact_at(&mut bytes[..want], 0)
        .map_err(|e| Error::io("cannot read header", &e))?;
    Header::parse(&bytes, len)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

/// Data regions of at least this many bytes are copied and walked by two
/// threads.
const PARALLEL_MIN: usize = 8 << 20;

/// Whether a data region of `len` bytes is worth a second thread.
fn two_threads(len: usize) -> bool {
    len >= PARALLEL_MIN && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// Largest `FIRST_SEQ` a reader accepts: no writer appends 2^62 records,
/// and the bound keeps `FIRST_SEQ + k` from overflowing.
const MAX_SEQ: u64 = 1 << 62;

/// One claim's chunk, as its header says (a valid header of a chunk that is
/// owned or sealed).
struct ChunkMeta {
    index: usize,
    writer: u32,
    gen: u64,
    first_seq: u64,
    dropped_before: u64,
    thread_id: u32,
}

/// What a walk of one chunk found: how many `seq`s its records used
/// (valid and corrupt alike), how many of them are valid, and the newest
/// valid record's time (0 when none).
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    used: u64,
    valid: u64,
    newest: u64,
}

/// Walks the records of `meta`'s chunk of the data region `data` from
/// offset 64 (section 11, step 5): counts the torn and corrupt ones in
/// `totals` and `corrupt_seqs`, and writes the valid ones to `out`, in
/// order, as far as it has room (none when it is empty: a walk that only
/// counts). With `check_crc` false (a second walk of a chunk whose records
/// the first walk found all valid) the checksums are not computed again.
///
/// The loop's state lives in locals and the records go straight to their
/// slots: with a closure that pushed them and kept the newest time, that
/// state went through memory on every record.
fn walk_chunk(
    header: &Header,
    data: &[u8],
    meta: &ChunkMeta,
    check_crc: bool,
    corrupt_seqs: &mut Vec<(u32, u64)>,
    totals: &mut Totals,
    out: &mut [Record],
) -> Counted {
    let base = meta.index * header.chunk_size as usize;
    let chunk = &data[base..base + header.chunk_size as usize];
    let head: &[u8; CHUNK_HEADER_LEN] = chunk[..CHUNK_HEADER_LEN].try_into().expect("64 bytes");
    let seed = crc_seed(header.nonce, head);
    let tag = commit_tag(meta.gen);
    let (chunk_size, max) = (chunk.len(), header.max_record_len);
    let mut offset = CHUNK_HEADER_LEN;
    let (mut used, mut valid, mut newest) = (0u64, 0u64, 0u64);
    while offset + RECORD_HEADER_LEN <= chunk_size {
        let commit = u64_at(chunk, offset + R_COMMIT);
        if commit >> COMMIT_LEN_BITS != tag {
            break;
        }
        let len = (commit & ((1 << COMMIT_LEN_BITS) - 1)) as usize;
        if len == 0 {
            totals.torn += 1;
            break;
        }
        let step = stride(len);
        if len < RECORD_HEADER_LEN || len > max || offset + step > chunk_size {
            totals.corrupt += 1;
            break;
        }
        let seq = meta.first_seq + used;
        let ts = u64_at(chunk, offset + R_TS);
        let sound = !check_crc
            || u32_at(chunk, offset + R_CRC)
                == record_crc(
                    seed,
                    len as u32,
                    seq,
                    &chunk[offset + RECORD_HEADER_LEN..offset + step],
                    u32_at(chunk, offset + R_CRC_START),
                    ts,
                );
        if sound {
            let ts_unix_ns = header.ts_unix_ns(ts);
            newest = newest.max(ts_unix_ns);
            if let Some(slot) = out.get_mut(valid as usize) {
                *slot = Record {
                    writer: meta.writer,
                    seq,
                    len: len as u32,
                    ts_unix_ns,
                    kind: u16_at(chunk, offset + R_KIND),
                    flags: u16_at(chunk, offset + R_FLAGS),
                    thread_id: meta.thread_id,
                    payload_at: (base + offset + RECORD_HEADER_LEN) as u64,
                };
            }
            valid += 1;
        } else {
            totals.corrupt += 1;
            corrupt_seqs.push((meta.writer, seq));
        }
        offset += step;
        used += 1;
    }
    Counted {
        used,
        valid,
        newest,
    }
}

/// The newest valid record's time a walk found, if it found one.
fn newest_of(counted: &Counted) -> Option<u64> {
    (counted.valid > 0).then_some(counted.newest)
}

/// Runs `a` on this thread and `b` on another, at once, when `parallel`
/// (and a thread can be started); otherwise one after the other here.
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let b = std::sync::Mutex::new(Some(b));
    let take = || b.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|scope| {
        let helper = parallel
            .then(|| {
                std::thread::Builder::new()
                    .name("blackbox-read".into())
                    .spawn_scoped(scope, || take().map(|f| f()))
                    .ok()
            })
            .flatten();
        let first = a();
        let second = match helper.map(|h| h.join()) {
            Some(Ok(Some(done))) => done,
            // Not started, or it panicked: a panic is passed on as it would
            // be on this thread.
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => take().expect("the second task runs once")(),
        };
        (first, second)
    })
}

/// Index where `items` is cut in two halves of about equal `weight`.
fn halfway<T>(items: &[T], weight: impl Fn(&T) -> u64) -> usize {
    let total: u64 = items.iter().map(&weight).sum();
    let mut sum = 0u64;
    items
        .iter()
        .position(|item| {
            sum += weight(item);
            sum * 2 >= total
        })
        .map_or(items.len(), |i| i + 1)
}

/// What the first walk of every chunk found.
struct Walked {
    /// Per chunk, in `metas` order.
    counts: Vec<Counted>,
    corrupt_seqs: Vec<(u32, u64)>,
    totals: Totals,
    /// Every valid record of every chunk, in `metas` order: the index, when
    /// every chunk with a valid record is kept. `None` when the address
    /// space for the most records the chunks can hold was refused: the
    /// counts then size an exact index for a second walk.
    index: Option<PodBuf<Record>>,
    /// The newest time among them.
    newest: Option<u64>,
}

/// The first walk of `metas`' chunks: counts them, checks every checksum,
/// and puts every valid record into an index in `metas` order, in two
/// halves at once when `parallel`. A half's records are not counted before
/// they are walked, so the index is made for the most records each half's
/// chunks can hold (one per 24 bytes; a mapping's pages are only taken as
/// they are written): the first half's chunks are walked last to first,
/// each one's records put right below those of the chunks after it, and
/// the second half's first to last from where the first half's end. What
/// lies between is then one run of records. Where that much address space
/// is refused (a limit on it, strict overcommit), the walk only counts.
fn walk_chunks(header: &Header, bytes: &[u8], metas: &[ChunkMeta], parallel: bool) -> Walked {
    let chunk_size = header.chunk_size as usize;
    let most = (chunk_size.saturating_sub(CHUNK_HEADER_LEN)) / RECORD_HEADER_LEN;
    let (first, second) = metas.split_at(metas.len() / 2);
    let mut index: Option<PodBuf<Record>> = PodBuf::try_zeroed(metas.len() * most);
    let indexing = index.is_some();
    let slots = index
        .as_mut()
        .map_or(&mut [][..], |index| index.as_mut_slice());
    let (out1, out2) = slots.split_at_mut(if indexing { first.len() * most } else { 0 });
    let walk_first = || {
        let (mut corrupt_seqs, mut totals) = (Vec::new(), Totals::default());
        let mut counts = Vec::with_capacity(first.len());
        let mut newest: Option<u64> = None;
        // One chunk's records, before they go below the next chunk's.
        let mut chunk_records = vec![bytemuck::Zeroable::zeroed(); if indexing { most } else { 0 }];
        // Where each chunk's corrupt seqs start, to put them back in
        // `metas` order (sorted, as the caller's sort finds them fastest).
        let mut corrupt_starts = Vec::new();
        let mut start = out1.len();
        for meta in first.iter().rev() {
            corrupt_starts.push(corrupt_seqs.len());
            let counted = walk_chunk(
                header,
                bytes,
                meta,
                true,
                &mut corrupt_seqs,
                &mut totals,
                &mut chunk_records,
            );
            newest = newest.max(newest_of(&counted));
            if indexing {
                // At most `most` records in a chunk, and `most` slots for
                // each chunk of the half: they fit.
                let n = counted.valid as usize;
                out1[start - n..start].copy_from_slice(&chunk_records[..n]);
                start -= n;
            }
            counts.push(counted);
        }
        counts.reverse();
        let mut end = corrupt_seqs.len();
        let mut in_order = Vec::with_capacity(corrupt_seqs.len());
        for &from in corrupt_starts.iter().rev() {
            in_order.extend_from_slice(&corrupt_seqs[from..end]);
            end = from;
        }
        (counts, in_order, totals, newest, start)
    };
    let walk_second = || {
        let (mut corrupt_seqs, mut totals) = (Vec::new(), Totals::default());
        let mut newest: Option<u64> = None;
        let mut end = 0;
        let counts: Vec<Counted> = second
            .iter()
            .map(|meta| {
                // `most` slots for each chunk of the half: `end` stays in
                // bounds (when indexing; otherwise the walk only counts).
                let room = if indexing {
                    &mut out2[end..]
                } else {
                    &mut [][..]
                };
                let counted = walk_chunk(
                    header,
                    bytes,
                    meta,
                    true,
                    &mut corrupt_seqs,
                    &mut totals,
                    room,
                );
                newest = newest.max(newest_of(&counted));
                if indexing {
                    end += counted.valid as usize;
                }
                counted
            })
            .collect();
        (counts, corrupt_seqs, totals, newest, end)
    };
    let (
        (mut counts, mut corrupt_seqs, mut totals, newest, start),
        (counts2, corrupt2, totals2, newest2, end),
    ) = both(parallel, walk_first, walk_second);
    counts.extend(counts2);
    corrupt_seqs.extend(corrupt2);
    totals.torn += totals2.torn;
    totals.corrupt += totals2.corrupt;
    if let Some(index) = &mut index {
        index.keep(start..first.len() * most + end);
    }
    Walked {
        counts,
        corrupt_seqs,
        totals,
        index,
        newest: newest.max(newest2),
    }
}

/// The second walk, when an overlap left a chunk out (no working writer
/// makes one) or the first walk could not index: the kept chunks' valid
/// records, each written to its place in `ordered` (which holds exactly
/// their number), in two halves at once when `parallel`. The first walk
/// said how many each chunk has; the bytes are the snapshot's own copy, so
/// the second walk finds the same.
/// Returns the newest record's time.
fn fill_records(
    header: &Header,
    bytes: &[u8],
    metas: &[ChunkMeta],
    kept: &[(usize, Counted)],
    ordered: &mut [Record],
    parallel: bool,
) -> Option<u64> {
    let fill = |part: &[(usize, Counted)], out: &mut [Record]| {
        let mut at = 0;
        let mut newest: Option<u64> = None;
        let (mut scratch_seqs, mut scratch_totals) = (Vec::new(), Totals::default());
        for &(m, counted) in part {
            let check_crc = counted.valid != counted.used;
            let end = (at + counted.valid as usize).min(out.len());
            let found = walk_chunk(
                header,
                bytes,
                &metas[m],
                check_crc,
                &mut scratch_seqs,
                &mut scratch_totals,
                &mut out[at..end],
            );
            newest = newest.max(newest_of(&found));
            at = end;
        }
        newest
    };
    let cut = halfway(kept, |k| k.1.valid);
    let (first, second) = kept.split_at(cut);
    let first_len: usize = first.iter().map(|k| k.1.valid as usize).sum();
    let (out1, out2) = ordered.split_at_mut(first_len.min(ordered.len()));
    let (newest1, newest2) = both(parallel, || fill(first, out1), || fill(second, out2));
    newest1.max(newest2)
}

/// Reads every chunk's header, then walks the chunks in each writer's
/// `seq` order, then merges the writers by time (the reader's algorithm,
/// steps 5 to 7). Each chunk is walked once to count and check its
/// records and to index the valid ones, and once more only when an
/// overlap left a chunk out or the first walk had no room to index; each
/// byte of the data region is looked at by those walks and by the
/// checksum at most twice.
fn recover(header: Header, table: &[u64], data: Buffer) -> Snapshot {
    let chunk_size = header.chunk_size as usize;
    let count = header.chunk_count as u64;
    let bytes = data.bytes();
    let mut totals = Totals::default();
    let (mut chunks_used, mut chunks_owned) = (0u32, 0u32);

    // Step 5, the table words and the chunk headers.
    let mut metas: Vec<ChunkMeta> = Vec::new();
    for (index, &word) in table.iter().enumerate() {
        let (state, visits) = (table_state(word), table_visits(word));
        if state == CHUNK_FREE && visits == 0 {
            continue;
        }
        if state == CHUNK_FREE {
            // Free chunks are never visited by a skip: a damaged word.
            totals.corrupt += 1;
            continue;
        }
        chunks_used += 1;
        if state == CHUNK_CLAIMED || state == CHUNK_OWNED {
            chunks_owned += 1;
        }
        if state == CHUNK_CLAIMED {
            // Taken, its new header not written yet: what it holds left the
            // window with the claim.
            continue;
        }
        let head = &bytes[index * chunk_size..index * chunk_size + CHUNK_HEADER_LEN];
        let gen = u64_at(head, C_GEN);
        let first_seq = u64_at(head, C_FIRST_SEQ);
        if gen % count != index as u64 || gen / count >= visits || first_seq > MAX_SEQ {
            totals.corrupt += 1;
            continue;
        }
        metas.push(ChunkMeta {
            index,
            writer: u32_at(head, C_WRITER),
            gen,
            first_seq,
            dropped_before: u64_at(head, C_WRITER_DROPPED),
            thread_id: u32_at(head, C_THREAD_ID),
        });
    }
    metas.sort_unstable_by_key(|m| (m.writer, m.first_seq, m.gen));

    // Steps 5 and 6: walk each writer's chunks in seq order. Holes are the
    // seqs that no chunk of the writer covers between its first and its
    // last (valid or corrupt records alike). Overlaps (no working writer
    // makes them) keep the later claim's records and count the other's
    // valid ones corrupt; a chunk without a valid record takes part in
    // neither: it never outranks another, and its corrupt records are
    // counted already. A first walk counts each chunk's records (and
    // checks their checksums), which decides the chunks kept, and indexes
    // every valid record on the way: when every chunk with a valid record
    // is kept (no overlap), that is the index. Otherwise (or where the
    // first walk had no room for an index) a second walk writes the kept
    // chunks' records into an index of their own. Both walks of a large
    // ring run in two halves at once.
    let parallel = two_threads(bytes.len());
    let walked = walk_chunks(&header, bytes, &metas, parallel);
    let (counts, mut corrupt_seqs) = (walked.counts, walked.corrupt_seqs);
    totals.torn += walked.totals.torn;
    totals.corrupt += walked.totals.corrupt;
    let mut overlapped = false;
    // The chunks whose records are kept: (meta, what the first walk found).
    let mut kept: Vec<(usize, Counted)> = Vec::with_capacity(metas.len());
    // Per writer: where the seqs its chunks cover so far end.
    let mut covered: Option<(u32, u64)> = None;
    for (m, (meta, &counted)) in metas.iter().zip(&counts).enumerate() {
        let end = meta.first_seq + counted.used;
        match covered {
            Some((w, covered_end)) if w == meta.writer => {
                totals.holes = totals
                    .holes
                    .saturating_add(meta.first_seq.saturating_sub(covered_end));
                covered = Some((w, covered_end.max(end)));
            }
            _ => covered = Some((meta.writer, end)),
        }
        if counted.valid == 0 {
            continue;
        }
        let overlap = kept.last().filter(|(p, prev)| {
            let p = &metas[*p];
            p.writer == meta.writer && meta.first_seq < p.first_seq + prev.used
        });
        match overlap {
            Some(&(p, prev)) => {
                overlapped = true;
                if meta.gen > metas[p].gen {
                    kept.pop();
                    kept.push((m, counted));
                    totals.corrupt = totals.corrupt.saturating_add(prev.valid);
                } else {
                    totals.corrupt = totals.corrupt.saturating_add(counted.valid);
                }
            }
            None => kept.push((m, counted)),
        }
    }
    // At most one record per smallest stride of the data region, so the
    // sum cannot overflow.
    let total: usize = kept.iter().map(|k| k.1.valid as usize).sum();
    let (ordered, newest) = match walked.index {
        Some(index) if !overlapped => {
            debug_assert_eq!(index.len(), total);
            (index, walked.newest)
        }
        _ => {
            let mut ordered: PodBuf<Record> = PodBuf::zeroed(total);
            let newest = fill_records(
                &header,
                bytes,
                &metas,
                &kept,
                ordered.as_mut_slice(),
                parallel,
            );
            (ordered, newest)
        }
    };
    // Each kept chunk's records in the index, and whether they are all
    // its records (no corrupt one among them: their seqs follow one
    // another).
    let mut at = 0;
    let kept: Vec<(usize, std::ops::Range<usize>, bool)> = kept
        .into_iter()
        .map(|(m, counted)| {
            let records = at..at + counted.valid as usize;
            at = records.end;
            (m, records, counted.valid == counted.used)
        })
        .collect();
    corrupt_seqs.sort_unstable();

    // Per writer: the gaps before its records, and its summary.
    let mut writers: Vec<WriterRun> = Vec::new();
    let mut gaps: Vec<((u32, u64), Gap)> = Vec::new();
    let mut streams = 0;
    let mut i = 0;
    while i < kept.len() {
        let writer = metas[kept[i].0].writer;
        let mut j = i;
        while j < kept.len() && metas[kept[j].0].writer == writer {
            j += 1;
        }
        // Where the previous record of this writer was, and its chunk's drop
        // count.
        let mut prev: Option<(u64, u64)> = None;
        for (m, records, whole) in &kept[i..j] {
            let dropped_before = metas[*m].dropped_before;
            // Inside a chunk whose records are all valid, the seqs follow
            // one another and the drop count is the chunk's: only the gap
            // before its first record needs looking for.
            let all = &ordered[records.clone()];
            let visit = if *whole { &all[..1] } else { all };
            for record in visit {
                if let Some((prev_seq, prev_dropped)) = prev {
                    let missing = record.seq - prev_seq - 1;
                    let dropped = dropped_before.saturating_sub(prev_dropped);
                    if missing > 0 || dropped > 0 {
                        let lo = corrupt_seqs.partition_point(|c| *c <= (writer, prev_seq));
                        let hi = corrupt_seqs.partition_point(|c| *c < (writer, record.seq));
                        totals.dropped = totals.dropped.saturating_add(dropped);
                        gaps.push((
                            (writer, record.seq),
                            Gap {
                                missing,
                                corrupt: (hi - lo) as u64,
                                dropped,
                            },
                        ));
                    }
                }
                prev = Some((record.seq, dropped_before));
            }
            prev = all.last().map(|last| (last.seq, dropped_before));
        }
        let first = &ordered[kept[i].1.start];
        let last = &ordered[kept[j - 1].1.end - 1];
        let newest = &metas[kept[j - 1].0];
        let name_at = newest.index * chunk_size + C_THREAD_NAME;
        writers.push(WriterRun {
            writer,
            thread_id: newest.thread_id,
            thread_name: c_text(&bytes[name_at..name_at + THREAD_NAME_LEN]),
            first_seq: first.seq,
            last_seq: last.seq,
            records: kept[i..j].iter().map(|k| k.1.len() as u64).sum(),
            dropped: newest.dropped_before,
            first_ts_unix_ns: first.ts_unix_ns,
            last_ts_unix_ns: last.ts_unix_ns,
        });
        streams += 1;
        i = j;
    }
    let records = Records(if streams > 1 {
        merge_by_time(&ordered, parallel)
    } else {
        ordered
    });
    let mut header = header;
    header.last_record_unix_ns = newest;
    Snapshot {
        header,
        records,
        writers,
        totals,
        chunks_used,
        chunks_owned,
        gaps,
        data,
    }
}

/// Orders the records by time across writers, keeping each writer's in
/// `seq` order (`ordered` holds each writer's records together, in `seq`
/// order): the order of a stable sort by (the writer's newest time so far,
/// writer), so that a clock step back (CLOCK_REALTIME) never reorders one
/// writer's records.
///
/// Those keys only grow within a writer, so the records of a few writers
/// are merged as sorted runs ([`merge_runs`]; a sort of all the keys took
/// as long as the rest of a recovery of four writers), and many records
/// of few writers in two halves at once: the records up to a time, and the
/// records after it. The records of many writers are sorted by their keys
/// ([`sort_by_keys`]): the sort finds the runs too, and a heap of
/// thousands of runs was slower than it.
fn merge_by_time(ordered: &[Record], parallel: bool) -> PodBuf<Record> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for end in 1..=ordered.len() {
        if end == ordered.len() || ordered[end].writer != ordered[start].writer {
            runs.push(start..end);
            start = end;
        }
    }
    let mut merged: PodBuf<Record> = PodBuf::zeroed(ordered.len());
    let out = merged.as_mut_slice();
    if runs.len() > LINEAR_MERGE_MAX {
        sort_by_keys(ordered, out);
    } else if !(parallel && merge_in_halves(ordered, &runs, out)) {
        merge_runs(ordered, runs, out);
    }
    merged
}

/// `ordered` into `out` in the order of a stable sort by (the writer's
/// newest time so far, writer).
fn sort_by_keys(ordered: &[Record], out: &mut [Record]) {
    let mut keys: Vec<(u64, u32, u32)> = Vec::with_capacity(ordered.len());
    let mut current: Option<(u32, u64)> = None;
    for (i, r) in ordered.iter().enumerate() {
        let t = match current {
            Some((w, t)) if w == r.writer => t.max(r.ts_unix_ns),
            _ => r.ts_unix_ns,
        };
        current = Some((r.writer, t));
        // At most one record per 24 bytes of a data region of at most
        // 4 GiB: the index fits in 32 bits.
        keys.push((t, r.writer, i as u32));
    }
    keys.sort_by_key(|k| (k.0, k.1));
    for (slot, k) in out.iter_mut().zip(&keys) {
        *slot = ordered[k.2 as usize];
    }
}

/// Merges in two halves at once, cut at the middle time of the longest
/// run: first every run's records up to that time, then the rest. That
/// is the one merge's order when each run's times up to its cut are at
/// most that time and its time at the cut is after it, which holds unless
/// a clock stepped back across the cut. Returns whether it held; if not,
/// `out` is to be filled again.
fn merge_in_halves(
    ordered: &[Record],
    runs: &[std::ops::Range<usize>],
    out: &mut [Record],
) -> bool {
    let Some(longest) = runs.iter().max_by_key(|r| r.len()) else {
        return true;
    };
    let cut_ts = ordered[longest.start + longest.len() / 2].ts_unix_ns;
    let cuts: Vec<usize> = runs
        .iter()
        .map(|r| r.start + ordered[r.clone()].partition_point(|x| x.ts_unix_ns <= cut_ts))
        .collect();
    let firsts: Vec<_> = runs.iter().zip(&cuts).map(|(r, &c)| r.start..c).collect();
    let lasts: Vec<_> = runs.iter().zip(&cuts).map(|(r, &c)| c..r.end).collect();
    let first_len: usize = firsts.iter().map(|r| r.len()).sum();
    let (out1, out2) = out.split_at_mut(first_len);
    let (newest_first, _) = both(
        true,
        || merge_runs(ordered, firsts, out1),
        || merge_runs(ordered, lasts.clone(), out2),
    );
    newest_first <= cut_ts
        && lasts
            .iter()
            .all(|r| r.is_empty() || ordered[r.start].ts_unix_ns > cut_ts)
}

/// Writers up to which [`merge_by_time`] merges runs ([`merge_runs`]),
/// rather than sorting.
const LINEAR_MERGE_MAX: usize = 8;

/// Merges `runs` of `ordered` (each a writer's records in `seq` order, at
/// most [`LINEAR_MERGE_MAX`] runs) into `out` (exactly their size) by
/// (time, writer), each run in its order: a scan of the runs' next keys
/// finds the run whose next record is first, and from that run, its
/// records are copied while their times stay before the next run's. A
/// record's own time stands in for its writer's newest time so far: a run
/// continues only while its times are before the others', so a time that
/// steps back is before them as well, as its key is.
/// Returns the newest time copied.
fn merge_runs(ordered: &[Record], runs: Vec<std::ops::Range<usize>>, out: &mut [Record]) -> u64 {
    // Each run's next key, (time, writer) in one number, where its next
    // record is and where it ends.
    let key = |r: &Record| (u128::from(r.ts_unix_ns) << 32) | u128::from(r.writer);
    let mut heads: Vec<(u128, usize, usize)> = runs
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| (key(&ordered[r.start]), r.start, r.end))
        .collect();
    let mut written = 0;
    let mut newest = 0;
    // Copies from run `at..end` while the keys stay below `bound`.
    let mut copy = |at: &mut usize, end: usize, bound: u128| loop {
        let record = ordered[*at];
        newest = newest.max(record.ts_unix_ns);
        out[written] = record;
        written += 1;
        *at += 1;
        if *at == end || key(&ordered[*at]) > bound {
            return;
        }
    };
    while !heads.is_empty() {
        // The first run, and the next one's key (the bound).
        let (mut first, mut bound) = (0, u128::MAX);
        for (i, head) in heads.iter().enumerate().skip(1) {
            if head.0 < heads[first].0 {
                bound = heads[first].0;
                first = i;
            } else if head.0 < bound {
                bound = head.0;
            }
        }
        let (_, mut at, end) = heads[first];
        copy(&mut at, end, bound);
        if at == end {
            heads.swap_remove(first);
        } else {
            heads[first] = (key(&ordered[at]), at, end);
        }
    }
    debug_assert_eq!(written, out.len());
    newest
}

/// A NUL-padded name as text.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode_event, FieldValue};
    use blackbox_recorder::{Field, Level, Recorder};

    fn temp_ring(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("bbx-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("t.ring"), dir)
    }

    /// A ring of `capacity` bytes without a heartbeat thread.
    fn quiet_ring(path: &Path, capacity: u64) -> Recorder {
        Recorder::builder(path)
            .capacity(capacity)
            .heartbeat(None)
            .create()
            .unwrap()
    }

    fn counters(snap: &Snapshot) -> Vec<(u64, u64)> {
        snap.records
            .iter()
            .map(|r| {
                let e = decode_event(snap.payload(r)).unwrap();
                let get = |n: &str| match e.fields.iter().find(|f| f.0 == n).unwrap().1 {
                    FieldValue::U64(v) => v,
                    _ => panic!("not u64"),
                };
                (get("t"), get("n"))
            })
            .collect()
    }

    /// Appends `per_thread` events `{t, n}` from each of `threads` threads
    /// at once.
    fn log_from_threads(rec: &Recorder, threads: u64, per_thread: u64, message: &str) {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for n in 0..per_thread {
                        let fields = [Field::new("t", t), Field::new("n", n)];
                        let _ = rec.log(Level::Info, "unit", message, &fields);
                    }
                });
            }
        });
    }

    /// The merge of writers' runs gives what a stable sort by (running
    /// maximum of time, writer) gives, for runs of every shape: bursts,
    /// fine interleaving, equal times, clocks stepping back, one writer.
    #[test]
    fn merging_writers_by_time_matches_a_stable_sort() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for case in 0..400 {
            // Up to 8 writers are merged as runs, the code under test;
            // more take the sort, which is this reference (they are here
            // for the choice between the two, not for the sort).
            let writers = 1 + next(2 * LINEAR_MERGE_MAX as u64 + 4) as u32;
            let mut ordered = Vec::new();
            for writer in 0..writers {
                let mut ts = 1_000 + next(50);
                for seq in 0..next(if case % 3 == 0 { 5 } else { 200 }) {
                    // Mostly forward, sometimes equal, sometimes back.
                    match next(10) {
                        0 => ts = ts.saturating_sub(next(30)),
                        1 | 2 => {}
                        _ => ts += next(if case % 2 == 0 { 3 } else { 40 }),
                    }
                    ordered.push(Record {
                        seq,
                        ts_unix_ns: ts,
                        payload_at: ordered.len() as u64,
                        writer,
                        len: 24,
                        thread_id: writer,
                        kind: 0,
                        flags: 0,
                    });
                }
            }
            let mut keys: Vec<(u64, u32, usize)> = Vec::new();
            let mut current: Option<(u32, u64)> = None;
            for (i, r) in ordered.iter().enumerate() {
                let t = match current {
                    Some((w, t)) if w == r.writer => t.max(r.ts_unix_ns),
                    _ => r.ts_unix_ns,
                };
                current = Some((r.writer, t));
                keys.push((t, r.writer, i));
            }
            keys.sort_by_key(|k| (k.0, k.1));
            let want: Vec<Record> = keys.iter().map(|k| ordered[k.2]).collect();
            for parallel in [false, true] {
                let got = merge_by_time(&ordered, parallel);
                assert_eq!(&*got, &want[..], "case {case}, parallel {parallel}");
            }
        }
    }

    /// Raw payloads of every length from 0 to 80 bytes come back byte for
    /// byte with valid checksums: whole words, and tails of 1 to 7 bytes
    /// both under 8 bytes (copied) and after whole words (taken from the
    /// last 8 bytes and shifted), with the record's padding zero.
    #[test]
    fn raw_payloads_of_every_length_read_back_exactly() {
        let (path, dir) = temp_ring("lengths");
        let rec = quiet_ring(&path, 1 << 20);
        let payload =
            |len: usize| -> Vec<u8> { (0..len).map(|i| (len * 31 + i * 7 + 1) as u8).collect() };
        for len in 0..=80 {
            rec.append(&payload(len)).unwrap();
        }
        drop(rec);
        let bytes = std::fs::read(&path).unwrap();
        let snap = Ring::open(&path).unwrap().snapshot().unwrap();
        assert_eq!(snap.totals, Totals::default());
        assert_eq!(snap.records.len(), 81);
        for (len, r) in snap.records.iter().enumerate() {
            assert_eq!(snap.payload(r), &payload(len)[..], "payload of {len} bytes");
            let end = snap.header.data_offset as usize + r.payload_at as usize + len;
            let padding = &bytes[end..end + (8 - len % 8) % 8];
            assert!(padding.iter().all(|&b| b == 0), "padding after {len} bytes");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A record that ends on its chunk's last byte stays in that chunk, and
    /// the next starts the writer's next chunk; a record 8 bytes longer
    /// than what is left of a chunk goes to the next one as well.
    #[test]
    fn records_fill_a_chunk_to_its_last_byte_and_go_on_in_the_next() {
        let (path, dir) = temp_ring("chunk-edge");
        let rec = quiet_ring(&path, 1 << 20);
        let chunk = rec.chunk_size() as usize;
        // Records of 40-byte payloads take 64 bytes: this many fill a chunk.
        let per_chunk = (chunk - CHUNK_HEADER_LEN) / 64;
        assert_eq!(CHUNK_HEADER_LEN + per_chunk * 64, chunk);
        let payload =
            |i: usize, len: usize| -> Vec<u8> { (0..len).map(|b| (i * 31 + b) as u8).collect() };
        let mut lens = vec![40; per_chunk];
        // The second chunk: one 72-byte record, then 64-byte ones up to
        // 56 bytes before its end; the next 64-byte record does not fit.
        lens.push(48);
        lens.extend(std::iter::repeat_n(40, per_chunk - 2));
        lens.push(40);
        for (i, &len) in lens.iter().enumerate() {
            rec.append(&payload(i, len)).unwrap();
        }
        drop(rec);
        let snap = Ring::open(&path).unwrap().snapshot().unwrap();
        assert_eq!(snap.totals, Totals::default());
        assert_eq!(snap.records.len(), lens.len());
        let in_chunk = |i: usize| snap.records[i].payload_at as usize % chunk;
        for (i, (r, &len)) in snap.records.iter().zip(&lens).enumerate() {
            assert_eq!(r.seq, i as u64);
            assert_eq!(snap.payload(r), &payload(i, len)[..], "record {i}");
        }
        let first_in_chunk = CHUNK_HEADER_LEN + RECORD_HEADER_LEN;
        // The first chunk's last record ends on its last byte.
        assert_eq!(in_chunk(per_chunk - 1) + 40, chunk);
        assert_eq!(in_chunk(per_chunk), first_in_chunk);
        // The second chunk ends 56 bytes short; the record after is the
        // third chunk's first.
        let last = 2 * per_chunk - 2;
        assert_eq!(in_chunk(last) + 40, chunk - 56);
        assert_eq!(in_chunk(last + 1), first_in_chunk);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn two_threads_wrapping_give_contiguous_suffixes() {
        let (path, dir) = temp_ring("wrap");
        let rec = Recorder::builder(&path)
            .capacity(16 << 10)
            .create()
            .unwrap();
        log_from_threads(&rec, 2, 20_000, "demo record");
        drop(rec);
        let ring = Ring::open(&path).unwrap();
        assert_eq!(ring.state().unwrap(), State::Exited);
        let snap = ring.snapshot().unwrap();
        assert_eq!(snap.corrupt(), 0, "{:?}", snap.totals);
        assert!(snap.records.len() > 50);
        for t in 0..2 {
            let ns: Vec<u64> = counters(&snap)
                .into_iter()
                .filter(|c| c.0 == t)
                .map(|c| c.1)
                .collect();
            for w in ns.windows(2) {
                assert_eq!(w[1], w[0] + 1, "thread {t} not contiguous");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A data region of 8 MiB or more is copied and walked in two halves
    /// at once: the halves meet without a seam (the first half's records
    /// are placed from its end down, the second's from there up), and a
    /// corrupt record in the middle of a chunk is a one-record gap.
    #[test]
    fn a_large_ring_read_in_two_halves_loses_nothing_at_the_seam() {
        let (path, dir) = temp_ring("halves");
        let rec = quiet_ring(&path, 16 << 20);
        log_from_threads(&rec, 3, 150_000, "halves");
        drop(rec);
        let mut bytes = std::fs::read(&path).unwrap();
        let ring = Ring::open(&path).unwrap();
        assert!(two_threads(ring.header().capacity as usize));
        let whole = ring.snapshot().unwrap();
        assert_eq!(whole.totals, Totals::default());
        assert!(whole.gaps.is_empty(), "{:?}", &whole.gaps[..1]);
        assert_eq!(
            Ring::from_bytes(bytes.clone())
                .unwrap()
                .snapshot()
                .unwrap()
                .records,
            whole.records
        );
        let runs = |snap: &Snapshot| {
            let mut per_thread = vec![Vec::new(); 3];
            for (t, n) in counters(snap) {
                per_thread[t as usize].push(n);
            }
            per_thread
        };
        for ns in runs(&whole) {
            assert_eq!(ns.last(), Some(&149_999));
            assert!(ns.windows(2).all(|w| w[1] == w[0] + 1));
        }
        // Spoil one record's payload halfway through the window.
        let victim = whole.records[whole.records.len() / 2];
        let at = whole.header.data_offset as usize + victim.payload_at as usize;
        bytes[at] ^= 0xff;
        let spoiled = Ring::from_bytes(bytes).unwrap().snapshot().unwrap();
        assert_eq!(spoiled.corrupt(), 1);
        assert_eq!(spoiled.records.len(), whole.records.len() - 1);
        let gap = spoiled
            .gaps
            .iter()
            .find(|g| g.0 .0 == victim.writer)
            .expect("a gap in the spoiled record's writer");
        assert_eq!(gap.0 .1, victim.seq + 1);
        assert_eq!((gap.1.missing, gap.1.corrupt, gap.1.dropped), (1, 1, 0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_ring_in_memory_reads_like_its_file() {
        let (path, dir) = temp_ring("bytes");
        let rec = Recorder::create(&path, 16 << 10).unwrap();
        for n in 0..300u64 {
            rec.log(Level::Info, "unit", "wrap", &[Field::new("n", n)])
                .unwrap();
        }
        drop(rec);
        let file = Ring::open(&path).unwrap().snapshot().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let ring = Ring::from_bytes(bytes.clone()).unwrap();
        assert!(!ring.is_locked().unwrap());
        assert_eq!(ring.state().unwrap(), State::Exited);
        let memory = ring.snapshot().unwrap();
        assert_eq!(memory.records, file.records);
        assert!(file.records.len() > 50);
        for r in &file.records {
            assert_eq!(memory.payload(r), file.payload(r));
        }
        let short = Ring::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(short.kind(), crate::ErrorKind::Format);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A chunk left `CLAIMED` (its new owner stalled or died before writing
    /// its header) still holds the records of the claim before, which left
    /// the window with the claim: they are not shown, and their writer's run
    /// has no hole for it, because its older chunks went first.
    #[test]
    fn a_claimed_chunk_shows_nothing_of_the_claim_before() {
        let (path, dir) = temp_ring("claimed");
        let rec = quiet_ring(&path, 16 << 10);
        for n in 0..60u64 {
            rec.log(Level::Info, "unit", "fill", &[Field::new("n", n)])
                .unwrap();
        }
        drop(rec);
        let clean = std::fs::read(&path).unwrap();
        let before = Ring::from_bytes(clean.clone()).unwrap().snapshot().unwrap();
        assert_eq!(before.records.len(), 60);
        // The chunk holding the writer's oldest records, as a claim at its
        // next visit would leave it before the new header.
        let table = |i: usize| HEADER_LEN + 8 * i;
        let oldest = (0..16)
            .find(|&i| {
                let at = 8192 + i * 1024;
                u64_at(&clean, table(i)) != 0 && u64_at(&clean, at + C_FIRST_SEQ) == 0
            })
            .expect("the first chunk");
        let mut bytes = clean.clone();
        let visits = table_visits(u64_at(&clean, table(oldest)));
        bytes[table(oldest)..table(oldest) + 8]
            .copy_from_slice(&table_word(CHUNK_CLAIMED, visits + 1).to_le_bytes());
        let after = Ring::from_bytes(bytes).unwrap().snapshot().unwrap();
        assert!(after.records.len() < 60);
        assert_eq!(after.records[0].seq, 60 - after.records.len() as u64);
        assert_eq!(after.totals, Totals::default(), "{:?}", after.totals);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_shared_recorder_can_mark_a_clean_exit() {
        let (path, dir) = temp_ring("clean");
        let rec = std::sync::Arc::new(Recorder::create(&path, 65536).unwrap());
        rec.log(Level::Info, "unit", "last words", &[]).unwrap();
        // While it runs, the lock says running whatever the state word.
        assert_eq!(Ring::open(&path).unwrap().state().unwrap(), State::Running);
        rec.mark_clean_exit();
        // A process that exits now, with the recorder never dropped, leaves
        // the ring exited (the state word outlives the lock).
        assert_eq!(Ring::open(&path).unwrap().state().unwrap(), State::Exited);
        drop(rec);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unpublished_record_is_torn_and_later_records_survive() {
        let (path, dir) = temp_ring("torn");
        let rec = Recorder::create(&path, 65536).unwrap();
        for n in 0..5u64 {
            rec.log(Level::Info, "unit", "before", &[Field::new("n", n)])
                .unwrap();
        }
        rec.log_unpublished_for_test("never published");
        for n in 5..10u64 {
            rec.log(Level::Info, "unit", "after", &[Field::new("n", n)])
                .unwrap();
        }
        drop(rec);
        let snap = Ring::open(&path).unwrap().snapshot().unwrap();
        assert_eq!(snap.records.len(), 10);
        assert_eq!(snap.torn(), 1);
        // The torn record took no seq: the run goes on without a gap.
        assert!(snap.records.iter().all(|r| snap.gap_before(r).is_none()));
        let seqs: Vec<u64> = snap.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
