//! Memory that is cheap to fill: an anonymous mapping advised for
//! transparent huge pages, for the snapshot's copy of the data region and
//! for its index of records.
//!
//! A full 64 MiB ring holds over a million records, so its index is tens of
//! MiB. In a `Vec` that is tens of thousands of fresh 4 KiB pages, each a
//! page fault when first written: the recover bench's "Vec::push" part
//! (1.2 M 40-byte entries into a new `Vec`) took 38-40 ms here, a third of
//! a 64 MiB recovery, and moving the index to such a mapping took recovery
//! from 119-122 ms to 76-79 ms. Large buffers therefore live in a mapping,
//! the index seen as `[T]` through `bytemuck` (no `unsafe` here); small
//! ones in a `Vec`.
//!
//! A buffer's size is fixed when it is made: the index of a snapshot is
//! made for the most records its chunks can hold (`PodBuf::try_zeroed`;
//! where that much address space is refused, the chunks are counted first
//! and the index made with its exact length), a merged copy with its exact
//! length. A mapping reserves address space only; pages are faulted in as
//! they are written.

use std::ops::Deref;

use bytemuck::Pod;

/// Buffers of at least this many bytes go to a mapping.
pub(crate) const MAPPED_MIN: usize = 2 << 20;

/// An anonymous mapping of `bytes` (zeroed), advised for huge pages, if
/// `bytes` is large enough to gain from one and the kernel gives it.
pub(crate) fn huge_page_map(bytes: usize) -> Option<memmap2::MmapMut> {
    if bytes < MAPPED_MIN {
        return None;
    }
    // No swap reserved: a capacity may be an upper bound of which only the
    // pages written are ever used (without it, a bound larger than RAM
    // could be refused under the kernel's overcommit heuristic).
    let map = memmap2::MmapOptions::new()
        .len(bytes)
        .no_reserve_swap()
        .map_anon()
        .ok()?;
    // Advice only: without huge pages, filling is slower.
    let _ = map.advise(memmap2::Advice::HugePage);
    Some(map)
}

/// A growable-up-to-capacity array of plain-data values.
pub(crate) struct PodBuf<T: Pod> {
    storage: Storage<T>,
    /// Where the values start in a mapping ([`PodBuf::keep`]); 0 in a Vec.
    start: usize,
    len: usize,
}

enum Storage<T> {
    Heap(Vec<T>),
    Mapped(memmap2::MmapMut),
}

impl<T: Pod> PodBuf<T> {
    /// Room for `capacity` values.
    pub(crate) fn with_capacity(capacity: usize) -> PodBuf<T> {
        let size = std::mem::size_of::<T>();
        if let Some(map) = huge_page_map(capacity.saturating_mul(size)) {
            return PodBuf {
                storage: Storage::Mapped(map),
                start: 0,
                len: 0,
            };
        }
        // A Vec grows as needed: start small, not at the bound.
        PodBuf {
            storage: Storage::Heap(Vec::with_capacity(capacity.min(MAPPED_MIN / size))),
            start: 0,
            len: 0,
        }
    }

    /// `len` zero values.
    pub(crate) fn zeroed(len: usize) -> PodBuf<T> {
        let size = std::mem::size_of::<T>();
        let storage = match huge_page_map(len.saturating_mul(size)) {
            Some(map) => Storage::Mapped(map),
            None => Storage::Heap(vec![T::zeroed(); len]),
        };
        PodBuf {
            storage,
            start: 0,
            len,
        }
    }

    /// `len` zero values, or `None` when they are too many for a `Vec`
    /// ([`MAPPED_MIN`] bytes or more) and the kernel refused the mapping
    /// (an address-space limit, strict overcommit): for a bound the caller
    /// can do without, where [`PodBuf::zeroed`] would fall back to a `Vec`
    /// of that size and abort when it cannot have one.
    pub(crate) fn try_zeroed(len: usize) -> Option<PodBuf<T>> {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        let storage = match huge_page_map(bytes) {
            Some(map) => Storage::Mapped(map),
            None if bytes < MAPPED_MIN => Storage::Heap(vec![T::zeroed(); len]),
            None => return None,
        };
        Some(PodBuf {
            storage,
            start: 0,
            len,
        })
    }

    /// Keeps only the values in `range` (of the present ones): in a
    /// mapping by moving where they start, in a Vec by moving them.
    pub(crate) fn keep(&mut self, range: std::ops::Range<usize>) {
        assert!(range.start <= range.end && range.end <= self.len);
        match &mut self.storage {
            Storage::Heap(v) => {
                v.truncate(range.end);
                v.drain(..range.start);
            }
            Storage::Mapped(_) => self.start += range.start,
        }
        self.len = range.len();
    }

    /// The slots from the first value on.
    fn slots(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Heap(v) => v.as_mut_slice(),
            // A mapping is page-aligned, and its length a multiple of
            // size_of::<T>(): the cast cannot fail.
            Storage::Mapped(m) => &mut bytemuck::cast_slice_mut(&mut m[..])[self.start..],
        }
    }

    /// Appends `value`. A mapped buffer that is full (the caller's bound
    /// was wrong) moves to a `Vec` rather than fail.
    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        let size = std::mem::size_of::<T>();
        let at = (self.start + self.len) * size;
        match &mut self.storage {
            Storage::Heap(v) => v.push(value),
            Storage::Mapped(m) if at + size <= m.len() => {
                m[at..at + size].copy_from_slice(bytemuck::bytes_of(&value));
            }
            Storage::Mapped(_) => {
                let mut v = Vec::with_capacity(self.len * 2 + 1);
                v.extend_from_slice(self);
                v.push(value);
                self.storage = Storage::Heap(v);
                self.start = 0;
            }
        }
        self.len += 1;
    }

    /// The values, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len;
        &mut self.slots()[..len]
    }
}

impl<T: Pod> Deref for PodBuf<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Heap(v) => v,
            Storage::Mapped(m) => &bytemuck::cast_slice(&m[..])[self.start..self.start + self.len],
        }
    }
}

impl<T: Pod> Clone for PodBuf<T> {
    fn clone(&self) -> PodBuf<T> {
        let mut copy = PodBuf::with_capacity(self.len);
        for &value in self.iter() {
            copy.push(value);
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_buffer_holds_what_was_pushed_and_outgrows_its_bound() {
        let n = MAPPED_MIN / 8 + 10;
        let mut buf: PodBuf<u64> = PodBuf::with_capacity(n);
        assert!(matches!(buf.storage, Storage::Mapped(_)));
        for i in 0..n as u64 + 5 {
            buf.push(i * 3);
        }
        assert!(
            matches!(buf.storage, Storage::Heap(_)),
            "moved to a Vec past its bound"
        );
        assert_eq!(buf.len(), n + 5);
        assert!(buf.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
        buf.as_mut_slice().copy_within(0..2, 5);
        assert_eq!(&buf[..7], &[0, 3, 6, 9, 12, 0, 3]);
        assert_eq!(&buf.clone()[..], &buf[..]);
    }

    #[test]
    fn keeping_a_range_keeps_those_values_and_the_buffer_usable() {
        for n in [9, MAPPED_MIN / 8 + 9] {
            let mut buf: PodBuf<u64> = PodBuf::zeroed(n);
            for (i, v) in buf.as_mut_slice().iter_mut().enumerate() {
                *v = i as u64;
            }
            buf.keep(3..n - 2);
            assert_eq!(buf.len(), n - 5);
            assert_eq!((buf[0], buf[buf.len() - 1]), (3, n as u64 - 3));
            buf.as_mut_slice()[0] = 100;
            buf.push(7);
            assert_eq!((buf[0], buf[buf.len() - 1]), (100, 7));
            assert_eq!(&buf.clone()[..], &buf[..]);
            buf.keep(0..0);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_zeroed_buffer_has_its_length_and_is_writable() {
        for n in [0, 5, MAPPED_MIN / 8 + 3] {
            let mut buf: PodBuf<u64> = PodBuf::zeroed(n);
            assert_eq!(buf.len(), n);
            assert!(buf.iter().all(|&v| v == 0));
            if let Some(last) = buf.as_mut_slice().last_mut() {
                *last = 7;
            }
            assert_eq!(buf.last().copied(), (n > 0).then_some(7));
        }
    }

    #[test]
    fn a_small_buffer_is_a_vec() {
        let mut buf: PodBuf<u64> = PodBuf::with_capacity(4);
        assert!(matches!(buf.storage, Storage::Heap(_)));
        (0..9).for_each(|i| buf.push(i));
        assert_eq!(buf.len(), 9);
        assert_eq!(&buf[..2], &[0, 1]);
    }
}
