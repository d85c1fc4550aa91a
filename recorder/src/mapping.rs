//! The writer's view of a ring file: raw pointers into a shared mapping.
//!
//! This is one of the two modules of the recorder that use `unsafe` (the
//! other is `sys`). Everything here rests on one fact, checked when the
//! [`RingMap`] is built: the mapping is at least `HEADER_LEN + capacity`
//! bytes long, page aligned, and lives as long as the `RingMap`.
//!
//! # Safety model
//!
//! Like memmap2's `MmapRaw`, this module hands out raw pointers and atomics,
//! never `&[u8]` views of the shared bytes: other threads, and other
//! processes, read and write the same memory at the same time. Two writers
//! touch the same data bytes only when one of them was lapped (it reserved a
//! range, stalled for a whole lap, and then wrote into bytes the ring had
//! given to a newer record). That race is part of the design: the bytes are
//! plain data, the reader trusts none of them and rejects a mixed record by
//! its checksum and position stamp (see `shm-layout.md`, "Concurrency").
//!
//! The file must not shrink while it is mapped (a shrunk file raises SIGBUS
//! on access). The recorder never shrinks it, and the ring file is mode
//! 0600 (0640 at most) so only its owner can.

use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::MmapRaw;

use crate::layout::HEADER_LEN;

/// A ring file mapped read-write and shared.
pub(crate) struct RingMap {
    map: MmapRaw,
    /// Start of the data region (`map` + `HEADER_LEN`).
    data: *mut u8,
    capacity: u64,
    /// `capacity - 1`; capacity is a power of two.
    mask: u64,
}

// SAFETY: RingMap only hands out atomics and performs raw copies; sharing it
// between threads is the point (all cross-thread access goes through atomics
// or through byte ranges owned by one reservation, see the module docs).
unsafe impl Send for RingMap {}
// SAFETY: as above.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// Wraps a mapping of a ring file with a data region of `capacity` bytes.
    ///
    /// # Panics
    ///
    /// If the mapping is shorter than the header plus `capacity`, or
    /// `capacity` is not a power of two (the caller validated both).
    pub(crate) fn new(map: MmapRaw, capacity: u64) -> RingMap {
        assert!(capacity.is_power_of_two());
        assert!(map.len() as u64 >= HEADER_LEN as u64 + capacity);
        // SAFETY: HEADER_LEN is within the mapping (checked just above).
        let data = unsafe { map.as_mut_ptr().add(HEADER_LEN) };
        RingMap {
            map,
            data,
            capacity,
            mask: capacity - 1,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
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

    /// The COMMIT word of the record at absolute position `pos`.
    #[inline]
    pub(crate) fn commit_word(&self, pos: u64) -> &AtomicU64 {
        let offset = pos & self.mask;
        debug_assert!(offset % 8 == 0);
        // SAFETY: offset < capacity and offset + 8 <= capacity because both
        // are multiples of 8; the data region is 8-aligned (page aligned).
        unsafe { AtomicU64::from_ptr(self.data.add(offset as usize).cast()) }
    }

    /// Copies `bytes` to the data region starting at absolute position
    /// `pos`, wrapping at the end of the region.
    #[inline]
    pub(crate) fn write_data(&self, pos: u64, bytes: &[u8]) {
        debug_assert!(bytes.len() as u64 <= self.capacity);
        let offset = (pos & self.mask) as usize;
        let first = bytes.len().min(self.capacity as usize - offset);
        // The bytes belong to our reservation (see the module docs for the
        // lapped-writer race).
        // SAFETY: offset + first <= capacity, and bytes.len() - first <=
        // offset as the length is at most the capacity: both copies fit.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(offset), first);
            if first < bytes.len() {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr().add(first),
                    self.data,
                    bytes.len() - first,
                );
            }
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
