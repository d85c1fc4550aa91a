//! Opening a ring read-only and recovering its window
//! (`shm-layout.md`, "Recovery: the reader's algorithm").
//!
//! The reader never maps the file: it copies with `pread`, so a file that is
//! truncated under it gives a short read (an error), never SIGBUS, and no
//! byte of the file is ever looked at in place. A ring can also be read
//! from bytes in memory ([`Ring::from_bytes`]): the same validation and walk,
//! with the copies taken from the buffer instead of the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use recorder::checksum::record_crc;
use recorder::layout::*;

use crate::error::Error;
use crate::header::Header;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number: the record's absolute position divided by 8.
    /// Strictly increasing along the window; the next record's `seq` is
    /// `seq + stride / 8` unless a gap lies between.
    pub seq: u64,
    /// Length in bytes (header + payload).
    pub len: u32,
    /// Write time, Unix nanoseconds.
    pub ts_unix_ns: u64,
    /// Record kind (`KIND_*`).
    pub kind: u16,
    /// Record flags.
    pub flags: u16,
    payload_at: usize,
}

impl Record {
    /// Absolute byte position of the record.
    pub fn pos(&self) -> u64 {
        self.seq << 3
    }

    /// The position right after this record (where the next one starts).
    pub fn end(&self) -> u64 {
        self.pos() + stride(self.len as usize) as u64
    }
}

/// Bytes between two valid records that hold no valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gap {
    /// Length of the gap in bytes.
    pub bytes: u64,
    /// Records a writer reserved and never published (at least this many).
    pub torn: u64,
    /// Published records that failed their checksum or position stamp.
    pub corrupt: u64,
    /// Damaged records explained by a lapped append (see the lap log).
    pub overwritten: u64,
}

/// The recovered window of a ring at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The header as read at the start of the snapshot.
    pub header: Header,
    /// Valid records, oldest first.
    pub records: Vec<Record>,
    /// Absolute position where the examined window starts.
    pub window_start: u64,
    /// TAIL when the snapshot began: the examined window ends here.
    pub tail: u64,
    /// Totals over the window.
    pub totals: Gap,
    /// Bytes at the end of the window after the last valid record (records
    /// being written, or torn by the writer's death).
    pub trailing: Gap,
    /// Gaps, each keyed by the `seq` of the record that follows it (sparse:
    /// most records have none).
    pub gaps: Vec<(u64, Gap)>,
    data: Buffer,
}

/// The snapshot's copy of the window. Large copies go to an anonymous
/// mapping with transparent huge pages: filling 64 MiB of fresh 4 KiB pages
/// costs more page faults than the copy itself.
#[derive(Debug)]
enum Buffer {
    Heap(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

const MAPPED_BUFFER_MIN: usize = 2 << 20;

impl Buffer {
    fn zeroed(len: usize) -> Buffer {
        if len >= MAPPED_BUFFER_MIN {
            if let Ok(map) = memmap2::MmapMut::map_anon(len) {
                // Advice only: without huge pages the copy is just slower.
                let _ = map.advise(memmap2::Advice::HugePage);
                return Buffer::Mapped(map);
            }
        }
        Buffer::Heap(vec![0; len])
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
    /// The payload bytes of `record` (after its 32-byte header).
    pub fn payload(&self, record: &Record) -> &[u8] {
        &self.data.bytes()
            [record.payload_at..record.payload_at + record.len as usize - RECORD_HEADER_LEN]
    }

    /// What was lost right before `record`, if anything.
    pub fn gap_before(&self, record: &Record) -> Option<&Gap> {
        self.gaps
            .binary_search_by_key(&record.seq, |g| g.0)
            .ok()
            .map(|i| &self.gaps[i].1)
    }

    /// Records torn anywhere in the window (between records and at its end).
    pub fn torn(&self) -> u64 {
        self.totals.torn
    }

    /// Published records that failed validation and no lapped append explains.
    pub fn corrupt(&self) -> u64 {
        self.totals.corrupt
    }

    /// The record at absolute position `pos`, if it is in the window.
    pub fn record_at(&self, pos: u64) -> Option<&Record> {
        self.records
            .binary_search_by_key(&pos, Record::pos)
            .ok()
            .map(|i| &self.records[i])
    }

    /// Why the writer last asked for a snapshot (shm-layout.md, 8.4): the
    /// message of the record at `header`'s `SNAPSHOT_POS`, or for an event
    /// that asked by its level, `LEVEL target: message`. `None` when no
    /// snapshot was asked for or its record has left the window.
    pub fn snapshot_reason(&self, header: &crate::Header) -> Option<String> {
        let record = self.record_at(header.snapshot_pos?)?;
        if record.kind != KIND_EVENT {
            return None;
        }
        let event = crate::decode_event(self.payload(record)).ok()?;
        if event.target == recorder::SNAPSHOT_TARGET {
            return Some(event.message.into_owned());
        }
        let level = event.level().map_or("?", |l| l.as_str());
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
    /// let err = reader::Ring::from_bytes(vec![0u8; 100]).unwrap_err();
    /// assert_eq!(err.kind(), reader::ErrorKind::Format);
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

    /// Whether a live process holds the ring's lock.
    ///
    /// # Errors
    ///
    /// The lock cannot be queried (a file system without locks).
    pub fn is_locked(&self) -> Result<bool, Error> {
        match &self.source {
            Source::File(file) => {
                recorder::lock::is_locked(file).map_err(|e| Error::io("cannot query the lock", &e))
            }
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

    /// Recovers the whole window.
    ///
    /// # Errors
    ///
    /// The file cannot be read or its header became invalid.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        self.snapshot_from(0)
    }

    /// Recovers the part of the window at or after absolute position `from`
    /// (for `--follow`: only what is new since the last look).
    ///
    /// On a live ring, records being overwritten while they are copied are
    /// dropped (the snapshot re-reads TAIL after the copy), and a published
    /// record that fails validation is read once more before it is called
    /// corrupt, so every record returned was intact.
    ///
    /// # Errors
    ///
    /// As [`Ring::snapshot`].
    pub fn snapshot_from(&self, from: u64) -> Result<Snapshot, Error> {
        let mut snap = self.snapshot_once(from)?;
        for _ in 0..2 {
            if snap.totals.corrupt == 0 || !self.is_locked().unwrap_or(false) {
                break;
            }
            snap = self.snapshot_once(from)?;
        }
        Ok(snap)
    }

    fn snapshot_once(&self, from: u64) -> Result<Snapshot, Error> {
        let header = self.reread_header()?;
        let capacity = header.capacity;
        let tail = header.tail;
        let start = tail.saturating_sub(capacity).max(from.min(tail));
        let len = (tail - start) as usize;
        let mut data = Buffer::zeroed(len);
        // Copy in position order (oldest byte first), so a record's COMMIT
        // word is read before its payload: with the writer's Release store
        // of COMMIT, a COMMIT seen here means its bytes are complete.
        let offset = (start & (capacity - 1)) as usize;
        let first = len.min(capacity as usize - offset);
        let bytes = data.bytes_mut();
        self.read_exact_at(&mut bytes[..first], HEADER_LEN as u64 + offset as u64)?;
        self.read_exact_at(&mut bytes[first..], HEADER_LEN as u64)?;
        // Seqlock check: whatever a writer reserved after `tail` may have
        // overwritten bytes below `tail_after - capacity` during the copy.
        let tail_after = self.read_tail()?.max(tail);
        let valid_from = start.max(tail_after.saturating_sub(capacity));
        let mut snap = Snapshot {
            header,
            records: Vec::new(),
            window_start: valid_from,
            tail,
            totals: Gap::default(),
            trailing: Gap::default(),
            gaps: Vec::new(),
            data,
        };
        walk(&mut snap, start, valid_from);
        Ok(snap)
    }

    fn read_tail(&self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.read_exact_at(&mut b, H_TAIL as u64)?;
        Ok(u64::from_le_bytes(b))
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

/// What lies at a candidate record position.
enum Found {
    /// A valid record of `len` bytes.
    Valid { len: u32 },
    /// A COMMIT word published for this position, but the record fails its
    /// length, stamp or checksum.
    Damaged { stride: u64 },
    /// No record published for this position.
    Nothing,
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

/// Examines the candidate record at absolute position `pos`, whose bytes
/// start at `data[at..]`.
///
/// A COMMIT word counts as published only if its tag is this position's and
/// its length is one a writer can produce; anything else (zeroes, stale
/// bytes of an earlier lap, the middle of another record) is `Nothing`.
fn examine(data: &[u8], header: &Header, seed: u32, pos: u64, at: usize) -> Found {
    if at + RECORD_HEADER_LEN > data.len() {
        return Found::Nothing;
    }
    let commit = u64_at(data, at + R_COMMIT);
    if commit >> 32 != (pos >> 3) as u32 as u64 {
        return Found::Nothing;
    }
    let len = commit as u32;
    let stride_len = stride(len as usize);
    if (len as usize) < RECORD_HEADER_LEN
        || len as usize > header.max_record_len
        || at + stride_len > data.len()
    {
        return Found::Nothing;
    }
    let crc = record_crc(seed, len, &data[at + R_CRC_START..at + stride_len]);
    if u64_at(data, at + R_POS) != pos || u32_at(data, at + R_CRC) != crc {
        return Found::Damaged {
            stride: stride_len as u64,
        };
    }
    Found::Valid { len }
}

/// Whether the damaged bytes `[from, to)` hold the header of a lapped
/// writer that died before it could note itself in the lap log
/// (shm-layout.md, 7.3): at an aligned position `x`, a position stamp of
/// `x` one or two laps back, under a COMMIT word that does not publish that
/// older position (so it is not an intact record left from an earlier lap,
/// as a never-written reservation shows). A lapped writer writes its header
/// first and never its COMMIT word, so a writer killed in the middle of its
/// late copy leaves exactly this. Only classifies damage; never makes a
/// record valid.
fn late_header_in(data: &[u8], start: u64, header: &Header, from: u64, to: u64) -> bool {
    let cap = header.capacity;
    let from = from.max(start);
    let mut x = from;
    while x < to {
        let at = (x - start) as usize;
        if at + RECORD_HEADER_LEN > data.len() {
            break;
        }
        let stamp = u64_at(data, at + R_POS);
        let back = x.wrapping_sub(stamp);
        if stamp < x && back % cap == 0 && back / cap <= 2 {
            let commit_tag = u64_at(data, at + R_COMMIT) >> 32;
            if commit_tag != (stamp >> 3) as u32 as u64 {
                return true;
            }
        }
        x += RECORD_ALIGN as u64;
    }
    false
}

/// Walks the copied bytes from `valid_from`, collecting valid records and
/// accounting for everything else (the reader's algorithm, steps 4-6).
fn walk(snap: &mut Snapshot, start: u64, valid_from: u64) {
    let seed = crc_seed(snap.header.nonce);
    let end = snap.tail;
    let mut pos = valid_from;
    // Where the next record must begin; None until the first valid record
    // (the bytes before it are the window's overwritten edge).
    let mut expected: Option<u64> = None;
    let mut pending = Gap::default();
    let mut totals = Gap::default();
    // Every record is at least 32 bytes: reserve for the typical 64.
    // (A fast writer can move valid_from past end during the copy.)
    let mut records = Vec::with_capacity((end.saturating_sub(valid_from) / 64) as usize);
    let mut gaps = Vec::new();
    let data = snap.data.bytes();
    while pos + RECORD_HEADER_LEN as u64 <= end {
        let at = (pos - start) as usize;
        match examine(data, &snap.header, seed, pos, at) {
            Found::Valid { len } => {
                match expected {
                    Some(e) if e != pos => {
                        pending.bytes = pos - e;
                        gaps.push((pos >> 3, pending));
                    }
                    // Damage before the first valid record: report it with
                    // the first record rather than lose it.
                    None if pending != Gap::default() => {
                        pending.bytes = pos - valid_from;
                        gaps.push((pos >> 3, pending));
                    }
                    _ => {}
                }
                records.push(Record {
                    seq: pos >> 3,
                    len,
                    ts_unix_ns: u64_at(data, at + R_TS),
                    kind: u16_at(data, at + R_KIND),
                    flags: u16_at(data, at + R_FLAGS),
                    payload_at: at + RECORD_HEADER_LEN,
                });
                pending = Gap::default();
                let next = pos + stride(len as usize) as u64;
                expected = Some(next);
                pos = next;
            }
            Found::Damaged { stride } => {
                let damage_from = expected.unwrap_or(valid_from);
                if snap.header.explained_by_lapped_write(pos, stride)
                    || late_header_in(data, start, &snap.header, damage_from, pos + stride)
                {
                    pending.overwritten += 1;
                    totals.overwritten += 1;
                } else {
                    pending.corrupt += 1;
                    totals.corrupt += 1;
                }
                // Do not trust its length: look for the next record from
                // the next aligned position.
                pos += RECORD_ALIGN as u64;
            }
            Found::Nothing => {
                if expected == Some(pos) {
                    if snap
                        .header
                        .explained_by_lapped_write(pos, RECORD_ALIGN as u64)
                    {
                        // A lapped writer's late bytes hide this record.
                        pending.overwritten += 1;
                        totals.overwritten += 1;
                    } else {
                        // A writer reserved this position and never published.
                        pending.torn += 1;
                        totals.torn += 1;
                    }
                }
                pos += RECORD_ALIGN as u64;
            }
        }
    }
    if let Some(e) = expected {
        if e < end {
            pending.bytes = end - e;
        }
    } else if end > valid_from {
        pending.bytes = end - valid_from;
    }
    snap.totals = totals;
    snap.trailing = pending;
    snap.records = records;
    snap.gaps = gaps;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode_event, FieldValue};
    use recorder::{Field, Level, Recorder};

    fn temp_ring(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("bbx-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("t.ring"), dir)
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

    #[test]
    fn two_threads_wrapping_give_contiguous_suffixes() {
        let (path, dir) = temp_ring("wrap");
        let rec = Recorder::builder(&path).capacity(8192).create().unwrap();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let rec = &rec;
                s.spawn(move || {
                    for n in 0..20_000u64 {
                        let _ = rec.log(
                            Level::Info,
                            "unit",
                            "demo record",
                            &[Field::new("t", t), Field::new("n", n)],
                        );
                    }
                });
            }
        });
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

    #[test]
    fn a_ring_in_memory_reads_like_its_file() {
        let (path, dir) = temp_ring("bytes");
        let rec = Recorder::create(&path, 8192).unwrap();
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

    /// A lapped writer killed in the middle of its late copy never notes
    /// itself in the lap log; the header it wrote first (its own position
    /// stamp, a lap back) explains the damage. The same damage without that
    /// header stays corrupt.
    #[test]
    fn a_lapped_writer_killed_mid_copy_is_told_by_its_stale_stamp() {
        let (path, dir) = temp_ring("late");
        let cap = 8192u64;
        let rec = Recorder::builder(&path)
            .capacity(cap)
            .heartbeat(None)
            .create()
            .unwrap();
        for n in 0..300u64 {
            rec.log(Level::Info, "unit", "lap", &[Field::new("n", n)])
                .unwrap();
        }
        drop(rec);
        let clean = std::fs::read(&path).unwrap();
        let before = Ring::from_bytes(clean.clone()).unwrap().snapshot().unwrap();
        assert_eq!(before.header.lapped_writes, 0);
        let victim = before.records[before.records.len() / 2].pos();
        // The late writer's record starts 16 bytes into the victim and was
        // reserved one lap earlier.
        let x = victim + 16;
        let damage = |with_header: bool| {
            let mut bytes = clean.clone();
            let at = HEADER_LEN + (x % cap) as usize;
            if with_header {
                bytes[at + R_POS..at + R_POS + 8].copy_from_slice(&(x - cap).to_le_bytes());
            } else {
                bytes[at + R_POS..at + R_POS + 8].copy_from_slice(&0x5a5a_5a5a_u64.to_le_bytes());
            }
            // ...and part of its payload, over the rest of the victim.
            for b in &mut bytes[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + 16] {
                *b ^= 0xff;
            }
            Ring::from_bytes(bytes).unwrap().snapshot().unwrap()
        };
        let late = damage(true);
        assert_eq!(late.corrupt(), 0, "{:?}", late.totals);
        assert!(late.totals.overwritten >= 1, "{:?}", late.totals);
        assert_eq!(
            late.records.len(),
            before.records.len() - late.totals.overwritten as usize
        );
        let wild = damage(false);
        assert!(wild.corrupt() >= 1, "{:?}", wild.totals);
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
        assert_eq!(snap.gap_before(&snap.records[5]).unwrap().torn, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
