//! The writer's view of a ring file: raw pointers into a shared mapping.
//!
//! # Safety
//!
//! Everything here rests on one fact, checked when the [`RingMap`] is
//! built: the mapping is at least `DATA_OFFSET + CAPACITY` bytes long, page
//! aligned, and lives as long as the `RingMap`. Like memmap2's `MmapRaw`,
//! this module hands out raw pointers and atomics, never `&[u8]` views of
//! the shared bytes: other threads, and other processes, read and write the
//! same memory at the same time.
//!
//! Who touches what (`shm-layout.md`, sections 4 and 7):
//!
//! - header words that several threads change (the cursor, the counters,
//!   the chunk table, the state word) only through atomics;
//! - header bytes written once (at create, or the death area after its
//!   claim) through [`RingMap::write_header_bytes`];
//! - a chunk's bytes only through a [`ChunkCursor`], which exists only for a
//!   chunk its holder claimed and has not sealed: the claim's
//!   compare-and-swap (acquire) follows the previous owner's seal (release),
//!   so no two threads ever write a chunk at the same time, and the COMMIT
//!   words that a reader may look at are stored as atomics.
//!
//! The file must not shrink while it is mapped (a shrunk file raises SIGBUS
//! on access). The recorder never shrinks it, and the ring file is mode
//! 0600 (0640 at most) so only its owner can.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::layout::{commit_word, CHUNK_HEADER_LEN, HEADER_LEN, R_COMMIT};

/// A ring file mapped read-write and shared.
pub(crate) struct RingMap {
    map: MmapRaw,
    /// Start of the data region (`map` + `DATA_OFFSET`).
    data: *mut u8,
    /// Start of the chunk table (`map` + `HEADER_LEN`).
    table: *const AtomicU64,
    chunk_size: u32,
    chunk_count: u32,
}

// SAFETY: RingMap only hands out atomics and chunk cursors; sharing it
// between threads is the point (all cross-thread access goes through atomics
// or through chunks owned by one thread at a time, see the module docs).
unsafe impl Send for RingMap {}
// SAFETY: as above.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// Wraps a mapping of a ring file whose data region of `chunk_count`
    /// chunks of `chunk_size` bytes starts at `data_offset`.
    ///
    /// # Panics
    ///
    /// If the mapping is too short for the table and the data region, or
    /// `data_offset` does not leave room for the table (the caller computed
    /// all three from the layout).
    pub(crate) fn new(
        map: MmapRaw,
        data_offset: u64,
        chunk_size: u32,
        chunk_count: u32,
    ) -> RingMap {
        let capacity = chunk_size as u64 * chunk_count as u64;
        assert!(data_offset >= HEADER_LEN as u64 + 8 * chunk_count as u64);
        assert!(map.len() as u64 >= data_offset + capacity);
        assert!(data_offset % 4096 == 0 && chunk_size % 8 == 0);
        // SAFETY: both offsets are within the mapping (asserted just above);
        // HEADER_LEN is a multiple of 8, so the table is 8-aligned.
        let (data, table) = unsafe {
            (
                map.as_mut_ptr().add(data_offset as usize),
                map.as_mut_ptr().add(HEADER_LEN).cast::<AtomicU64>() as *const AtomicU64,
            )
        };
        RingMap {
            map,
            data,
            table,
            chunk_size,
            chunk_count,
        }
    }

    pub(crate) fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub(crate) fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// The `u64` header field at `offset`.
    pub(crate) fn header_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= HEADER_LEN);
        // SAFETY: in bounds and 8-aligned (asserted; the mapping is page
        // aligned); the mapping outlives &self; AtomicU64 permits concurrent
        // access from other threads and processes.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    /// The `u32` header field at `offset`.
    pub(crate) fn header_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= HEADER_LEN);
        // SAFETY: as in header_u64, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset).cast()) }
    }

    /// The chunk table: one word per chunk.
    pub(crate) fn table(&self) -> &[AtomicU64] {
        // SAFETY: the table's chunk_count words lie inside the mapping
        // (checked in `new`), are 8-aligned, and are only accessed as
        // atomics; the mapping outlives &self.
        unsafe { std::slice::from_raw_parts(self.table, self.chunk_count as usize) }
    }

    /// Copies `bytes` into the header at `offset`: for fields only one
    /// writer ever writes (while the file is created, or the death area
    /// after its claim), which readers validate anyway.
    pub(crate) fn write_header_bytes(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= HEADER_LEN);
        // SAFETY: the range is inside the header (asserted) and the mapping
        // outlives &self; no other writer writes these bytes (see above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    /// A raw pointer to `len` header bytes at `offset`: for a header field
    /// only one writer writes (the dump's claimant), like
    /// [`Self::write_header_bytes`]. Writes through it must stay inside `len`.
    pub(crate) fn area_ptr_header(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset + len <= HEADER_LEN);
        // SAFETY: inside the header (asserted), inside the mapping.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    /// A raw pointer to `len` bytes at file offset `offset`, which must lie
    /// between the end of the chunk table and the data region: the
    /// postmortem area (`shm-layout.md`, 9.5), which only the module table
    /// writer (under its lock) and the crash handler that claimed the dump
    /// write. Writes through it must stay inside `len`.
    pub(crate) fn area_ptr(&self, offset: u64, len: usize) -> *mut u8 {
        let table_end = HEADER_LEN as u64 + 8 * self.chunk_count as u64;
        let data_offset = self.data as u64 - self.map.as_mut_ptr() as u64;
        assert!(offset >= table_end && offset + len as u64 <= data_offset);
        // SAFETY: the range is inside the mapping, before the data region
        // (asserted above).
        unsafe { self.map.as_mut_ptr().add(offset as usize) }
    }

    /// A cursor over chunk `index`, just claimed with ticket `gen`.
    ///
    /// # Safety
    ///
    /// The caller claimed chunk `index` (its compare-and-swap to `OWNED`
    /// succeeded with ticket `gen`) and has not sealed it, and uses the
    /// cursor only while this `RingMap` is alive and only on one thread at
    /// a time.
    pub(crate) unsafe fn owned_chunk(&self, index: u32, gen: u64) -> ChunkCursor {
        assert!(index < self.chunk_count);
        ChunkCursor {
            // SAFETY: index < chunk_count, so the chunk lies in the data
            // region (checked in `new`).
            start: unsafe { self.data.add(index as usize * self.chunk_size as usize) },
            size: self.chunk_size,
            offset: CHUNK_HEADER_LEN as u32,
            index,
            gen,
        }
    }

    /// Writes the whole mapping back to the file and waits for it
    /// (`msync(MS_SYNC)`): for the optional periodic write-back of
    /// disk-backed rings, on the heartbeat thread.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }

    /// Writes to every page of the file once, so no later append takes a
    /// page fault or finds the page missing.
    pub(crate) fn touch_pages(&self) {
        let page = 4096;
        let mut offset = 0;
        while offset < self.map.len() {
            // SAFETY: offset < len; the file is freshly created and zero, and
            // not yet visible to anyone else, so writing zero changes nothing
            // but the page-table entry.
            unsafe { std::ptr::write_volatile(self.map.as_mut_ptr().add(offset), 0) };
            offset += page;
        }
    }
}

/// Write access to one chunk that the holder owns (`shm-layout.md`, 4.1):
/// its header, then records one after another from offset 64.
///
/// Made only by [`RingMap::owned_chunk`], whose contract (the chunk is
/// claimed and not sealed, the mapping alive, one thread) makes every write
/// below a write to bytes nobody else writes at the same time.
pub(crate) struct ChunkCursor {
    start: *mut u8,
    size: u32,
    /// Where the next record goes.
    offset: u32,
    index: u32,
    gen: u64,
}

// SAFETY: a cursor is the exclusive right to write one chunk; moving it to
// another thread (a thread-local that is torn down elsewhere, say) moves
// that right with it.
unsafe impl Send for ChunkCursor {}

impl ChunkCursor {
    /// The chunk's index in the ring.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Whether a record of `stride` bytes fits after the last one.
    #[inline]
    pub(crate) fn fits(&self, stride: usize) -> bool {
        self.offset as usize + stride <= self.size as usize
    }

    /// Writes the chunk header (all 64 bytes), and clears the first
    /// record's COMMIT word: bytes left by an earlier claim there must not
    /// pass for a record of this one (`shm-layout.md`, 7.2).
    pub(crate) fn write_header(&mut self, header: &[u8; CHUNK_HEADER_LEN]) {
        // SAFETY: the chunk is ours (type invariant) and at least 1024 bytes.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), self.start, CHUNK_HEADER_LEN) };
        self.clear_commit_at(CHUNK_HEADER_LEN);
    }

    /// Stores 0 in the COMMIT word at chunk offset `at`, if a word fits
    /// there.
    #[inline(always)]
    fn clear_commit_at(&self, at: usize) {
        if at + 8 <= self.size as usize {
            // Relaxed: the Release store that publishes the record before
            // it (or the OWNED state) orders it for readers.
            // SAFETY: inside the chunk (checked), ours; record offsets are 8-aligned.
            unsafe { AtomicU64::from_ptr(self.start.add(at).cast()) }.store(0, Ordering::Relaxed);
        }
    }

    /// Begins the record of `stride` bytes at the cursor, if it fits after
    /// the last one (else `None`, and nothing is written): marks it as
    /// being written (its COMMIT gets this claim's tag with length 0), and
    /// hands out the writer of its bytes. The fit is checked here, once,
    /// where the writes rely on it.
    ///
    /// # Panics
    ///
    /// If `stride` is not a record's stride (a multiple of 8, at least 24).
    #[inline(always)]
    pub(crate) fn begin(&mut self, stride: usize) -> Option<RecordWriter<'_>> {
        assert!(stride >= 24 && stride % 8 == 0);
        if !self.fits(stride) {
            return None;
        }
        // SAFETY: offset + stride <= size (checked): the record lies in
        // the chunk, which is ours; offset is a multiple of 8.
        let rec = unsafe { self.start.add(self.offset as usize) };
        let w = RecordWriter {
            rec,
            stride,
            cursor: self,
        };
        // Relaxed: a hint for a reader of a dead writer's file (a record
        // that was begun); the Release in `publish` orders what matters.
        w.commit()
            .store(commit_word(w.cursor.gen, 0), Ordering::Relaxed);
        Some(w)
    }
}

/// The bytes of one record being written at a [`ChunkCursor`]: every write
/// is checked to stay inside the record's stride, which `begin` checked to
/// lie inside the chunk.
pub(crate) struct RecordWriter<'a> {
    rec: *mut u8,
    stride: usize,
    cursor: &'a mut ChunkCursor,
}

impl RecordWriter<'_> {
    /// The record's COMMIT word.
    #[inline(always)]
    fn commit(&self) -> &AtomicU64 {
        // SAFETY: the record starts 8-aligned inside the chunk (see
        // `begin`), which outlives the borrow of `self`.
        unsafe { AtomicU64::from_ptr(self.rec.add(R_COMMIT).cast()) }
    }

    /// Stores the little-endian `u64` `w` at `at` bytes into the record (a
    /// multiple of 8).
    #[inline(always)]
    pub(crate) fn u64_at(&mut self, at: usize, w: u64) {
        assert!(at + 8 <= self.stride);
        debug_assert!(at % 8 == 0);
        // SAFETY: inside the record (asserted), which is ours; 8-aligned.
        unsafe { self.rec.add(at).cast::<u64>().write(w.to_le()) };
    }

    /// Stores `bytes` at `at` bytes into the record (a multiple of 8) as
    /// little-endian words, the last one padded with zeros, and hands each
    /// word to `each` (the checksum) as it goes: one bounds check for all.
    #[inline(always)]
    pub(crate) fn words_at(&mut self, at: usize, bytes: &[u8], mut each: impl FnMut(u64)) {
        let whole = bytes.len() / 8;
        let tail = bytes.len() % 8;
        // The stride is a multiple of 8 (`begin` asserts it), and so is
        // `at`: bytes that fit fit rounded up to whole words as well, so
        // one comparison covers the padded last word too.
        assert!(at % 8 == 0 && at + bytes.len() <= self.stride);
        // SAFETY: `at` lies inside the record (asserted), which is ours;
        // the record starts 8-aligned, and so does `at`.
        let words = unsafe { self.rec.add(at) }.cast::<u64>();
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            // SAFETY: word i < whole lies inside the record (asserted above).
            unsafe { words.add(i).write(w.to_le()) };
            each(w);
        }
        if tail != 0 {
            let w = if bytes.len() >= 8 {
                // The last 8 bytes, shifted down to the tail's: no copy.
                let last: [u8; 8] = bytes[bytes.len() - 8..].try_into().expect("8 bytes");
                u64::from_le_bytes(last) >> (8 * (8 - tail))
            } else {
                let mut last = [0u8; 8];
                last[..tail].copy_from_slice(bytes);
                u64::from_le_bytes(last)
            };
            // SAFETY: the padded word `whole` lies inside the record too:
            // at + 8 * whole + 8 is `bytes` rounded up to words, at most
            // the stride (see the assert).
            unsafe { words.add(whole).write(w.to_le()) };
            each(w);
        }
    }

    /// Copies `bytes` to `at` bytes into the record.
    #[inline(always)]
    pub(crate) fn bytes_at(&mut self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.stride);
        // SAFETY: inside the record (asserted), which is ours.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.rec.add(at), bytes.len()) };
    }

    /// The little-endian `u64` at `at` bytes into the record (a multiple of
    /// 8), as this writer stored it.
    #[inline(always)]
    pub(crate) fn read_u64(&self, at: usize) -> u64 {
        assert!(at + 8 <= self.stride);
        debug_assert!(at % 8 == 0);
        // SAFETY: inside the record (asserted), which is ours: nobody else
        // writes it (other processes may read it, which changes nothing);
        // 8-aligned.
        u64::from_le(unsafe { self.rec.add(at).cast::<u64>().read() })
    }

    /// Stores the little-endian `u32` `w` at `at` bytes into the record (a
    /// multiple of 4).
    #[inline(always)]
    pub(crate) fn u32_at(&mut self, at: usize, w: u32) {
        assert!(at + 4 <= self.stride);
        debug_assert!(at % 4 == 0);
        // SAFETY: inside the record (asserted), which is ours; 4-aligned.
        unsafe { self.rec.add(at).cast::<u32>().write(w.to_le()) };
    }

    /// Publishes the record, `len` bytes written before, and moves the
    /// cursor past it.
    #[inline(always)]
    pub(crate) fn publish(self, len: usize) {
        debug_assert!(len <= self.stride && self.stride - len < 8);
        // The word after this record: an earlier claim's bytes there could
        // carry this claim's tag (a payload word of the right value), and a
        // reader takes the first word without it as the chunk's end.
        let next = self.cursor.offset as usize + self.stride;
        self.cursor.clear_commit_at(next);
        // Release: every byte of the record (and the chunk header) written
        // before is ordered before this word. A reader copies the chunk with
        // pread and checks the record's checksum, so a copy that caught the
        // word but not the bytes is rejected, never shown.
        self.commit()
            .store(commit_word(self.cursor.gen, len as u16), Ordering::Release);
        self.cursor.offset += self.stride as u32;
    }
}
