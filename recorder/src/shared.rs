//! What every appending thread of one ring shares: [`Shared`]. The append
//! paths that use it are in [`crate::append`] and [`crate::recorder`].

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::clock::{Clock, Pair};
use crate::event::Level;
use crate::layout::*;
use crate::mapping::RingMap;

/// What every thread of a ring shares: the mapping and the settings the
/// append path needs.
pub(crate) struct Shared {
    /// Unique per `Shared` in this process: how a thread finds its writer
    /// for this ring.
    pub(crate) id: u64,
    pub(crate) map: RingMap,
    pub(crate) nonce: u64,
    pub(crate) max_record_len: usize,
    pub(crate) clock: Clock,
    /// Whether this CPU has the CRC-32C instruction: asked once here, so
    /// that the append path's check is a plain load, not a call that could
    /// change memory (which made the compiler reload and check again what
    /// it had checked before it).
    pub(crate) hardware_crc: bool,
    /// The clock pair read at create, the base of every calibration.
    pub(crate) clock_origin: Pair,
    /// Tickets a claim may try before the append is dropped.
    pub(crate) claim_budget: usize,
    /// Where the crash handlers also write the cause, opened in advance.
    pub(crate) termination_log: Option<File>,
    /// Level code at and above which an event asks for a snapshot;
    /// `u8::MAX`: never.
    pub(crate) snapshot_level: u8,
    this: Weak<Shared>,
}

/// Hands out [`Shared::id`]s.
static NEXT_SHARED_ID: AtomicU64 = AtomicU64::new(1);

impl Shared {
    /// Wraps a ring's mapping; `Arc::new_cyclic` gives it a handle to
    /// itself for the threads' writers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        map: RingMap,
        nonce: u64,
        clock: Clock,
        clock_origin: Pair,
        termination_log: Option<File>,
        snapshot_level: Option<Level>,
    ) -> Arc<Shared> {
        Arc::new_cyclic(|this| Shared {
            // Relaxed: only uniqueness matters.
            id: NEXT_SHARED_ID.fetch_add(1, Ordering::Relaxed),
            max_record_len: max_record_len(map.chunk_size()),
            claim_budget: crate::claim::claim_budget(map.chunk_count()),
            map,
            nonce,
            clock,
            hardware_crc: crate::checksum::hardware_crc(),
            clock_origin,
            termination_log,
            snapshot_level: snapshot_level.map_or(u8::MAX, Level::code),
            this: this.clone(),
        })
    }

    pub(crate) fn weak(&self) -> Weak<Shared> {
        self.this.clone()
    }

    /// Asks a collector for a snapshot whose reason is the record `seq` of
    /// `writer`
    /// (`shm-layout.md`, 9.4).
    pub(crate) fn request_snapshot(&self, writer: u32, seq: u64) {
        let map = &self.map;
        // Relaxed: ordered before the reader's view by the Release below.
        map.header_u32(H_SNAPSHOT_WRITER)
            .store(writer, Ordering::Relaxed);
        map.header_u64(H_SNAPSHOT_SEQ)
            .store(seq + 1, Ordering::Relaxed);
        // Release: a collector that reads the new count also reads the
        // reason's record (published before) and the two fields above.
        map.header_u64(H_SNAPSHOT_TRIGGER)
            .fetch_add(1, Ordering::Release);
    }
}
