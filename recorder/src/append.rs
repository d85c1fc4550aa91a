//! The hot path: each thread appends into a chunk it owns
//! (`shm-layout.md`, 7.1 to 7.5).
//!
//! A thread keeps, per ring, a *writer*: its number, its next `seq`, its
//! drop count and the chunk it owns. An append reads the clock, writes the
//! record into that chunk and publishes it with one release store; only
//! when the chunk is full does it touch shared state (seal, claim). A thread
//! that exits seals its chunks. An append that finds the thread's writer in
//! use (a panic hook that runs inside an append) appends as a one-record
//! writer of its own, which is also what the fatal-signal handler does.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Weak;

use crate::claim::{claim, own, seal, Claimed};
use crate::error::AppendError;
use crate::layout::*;
use crate::mapping::ChunkCursor;
use crate::payload::{write_record, Payload};
use crate::shared::Shared;
use crate::sys;

/// Where a record went: its writer, and its `seq` in that writer's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) writer: u32,
    pub(crate) seq: u64,
}

thread_local! {
    /// This thread's writers, one per ring it appended to. The RefCell is
    /// the "busy" mark of `shm-layout.md`, 8.6: an append that cannot
    /// borrow it runs inside another append on this thread.
    static LOCAL: RefCell<Writers> = const {
        RefCell::new(Writers {
            slots: Vec::new(),
            alt_stack: None,
            alt_stack_tried: false,
        })
    };
}

struct Writers {
    slots: Vec<Writer>,
    /// A roomy alternate signal stack for this thread's crash handlers,
    /// installed at its first append (dropped, and unmapped, last).
    alt_stack: Option<crate::crash::AltStack>,
    alt_stack_tried: bool,
}

impl Drop for Writers {
    /// Thread exit: give the chunks back (seal them) so others reuse them.
    fn drop(&mut self) {
        for writer in &mut self.slots {
            writer.release();
        }
    }
}

/// One thread's writer into one ring.
struct Writer {
    /// [`Shared::id`] of the ring.
    ring: u64,
    shared: Weak<Shared>,
    number: u32,
    thread_id: u32,
    thread_name: [u8; THREAD_NAME_LEN],
    next_seq: u64,
    dropped: u64,
    chunk: Option<Owned>,
}

/// A chunk this writer claimed and has not sealed.
struct Owned {
    cursor: ChunkCursor,
    /// The claim's ticket.
    gen: u64,
    /// CRC-32C of the nonce and this chunk's header.
    seed: u32,
}

/// Appends one record of `payload`, which must fit the ring's limit.
#[inline]
pub(crate) fn publish(
    shared: &Shared,
    kind: u16,
    payload: &impl Payload,
) -> Result<Published, AppendError> {
    let len = RECORD_HEADER_LEN + payload.len();
    debug_assert!(len <= shared.max_record_len);
    let ts = shared.clock.now();
    let local = LOCAL.try_with(|cell| {
        let mut writers = cell.try_borrow_mut().ok()?;
        Some(writers.append(shared, kind, len, ts, payload))
    });
    match local {
        Ok(Some(result)) => result,
        // Busy (re-entered from a hook inside an append) or torn down
        // (a destructor at thread exit): a writer of its own.
        _ => append_alone(shared, kind, len, ts, payload),
    }
}

impl Writers {
    #[inline]
    fn append(
        &mut self,
        shared: &Shared,
        kind: u16,
        len: usize,
        ts: u64,
        payload: &impl Payload,
    ) -> Result<Published, AppendError> {
        let writer = match self.slots.iter().position(|w| w.ring == shared.id) {
            Some(i) => &mut self.slots[i],
            None => self.register(shared),
        };
        writer.append(shared, kind, len, ts, payload)
    }

    /// The first append of this thread to this ring: a writer number, the
    /// thread's id and name, and (once per thread) an alternate signal
    /// stack: the only system calls of the append path, once.
    #[cold]
    fn register(&mut self, shared: &Shared) -> &mut Writer {
        // A thread that appends may crash: give it stack for the handlers.
        if !self.alt_stack_tried {
            self.alt_stack_tried = true;
            self.alt_stack = crate::crash::AltStack::ensure();
            crate::crash::learn_stack_bounds();
        }
        // Forget writers of rings that were closed since.
        self.slots.retain(|w| w.shared.strong_count() > 0);
        let (thread_id, thread_name) = this_thread();
        self.slots.push(Writer {
            ring: shared.id,
            shared: shared.weak(),
            number: new_writer_number(shared),
            thread_id,
            thread_name,
            next_seq: 0,
            dropped: 0,
            chunk: None,
        });
        self.slots.last_mut().expect("just pushed")
    }
}

impl Writer {
    #[inline]
    fn append(
        &mut self,
        shared: &Shared,
        kind: u16,
        len: usize,
        ts: u64,
        payload: &impl Payload,
    ) -> Result<Published, AppendError> {
        let seq = self.next_seq;
        let hardware_crc = shared.hardware_crc;
        // Into the chunk this writer owns, if the record fits there (the
        // one check of the fit is in the record writer's `begin`).
        let written = self
            .chunk
            .as_mut()
            .is_some_and(|owned| owned.write(hardware_crc, seq, kind, len, ts, payload));
        if !written {
            // A record within MAX_RECORD_LEN (CHUNK_SIZE - CHUNK_HEADER_LEN,
            // shm-layout.md) fits an empty chunk, so this cannot fail; were
            // it to, the record is dropped and counted, never a panic.
            let owned = self.next_chunk(shared)?;
            if !owned.write(hardware_crc, seq, kind, len, ts, payload) {
                debug_assert!(false, "a record within the limit fits an empty chunk");
                self.dropped += 1;
                count_drop(shared);
                return Err(AppendError::Dropped);
            }
        }
        self.next_seq += 1;
        Ok(Published {
            writer: self.number,
            seq,
        })
    }

    /// Seals the full chunk and claims another; when none can be claimed
    /// the record is dropped and counted.
    #[cold]
    fn next_chunk(&mut self, shared: &Shared) -> Result<&mut Owned, AppendError> {
        if let Some(full) = self.chunk.take() {
            seal(&shared.map.table()[full.cursor.index() as usize]);
        }
        let Some(claimed) = claim_chunk(shared) else {
            self.dropped += 1;
            count_drop(shared);
            return Err(AppendError::Dropped);
        };
        let header = chunk_header(
            claimed.gen,
            self.next_seq,
            self.dropped,
            self.number,
            self.thread_id,
            &self.thread_name,
        );
        Ok(self.chunk.insert(start_chunk(shared, claimed, &header)))
    }

    /// Thread exit: seal the chunk, if the ring is still open.
    fn release(&mut self) {
        if let Some(owned) = self.chunk.take() {
            if let Some(shared) = self.shared.upgrade() {
                seal(&shared.map.table()[owned.cursor.index() as usize]);
            }
        }
    }
}

impl Owned {
    /// Writes and publishes record `seq` after this chunk's last one, if it
    /// fits there ([`write_record`]).
    #[inline(always)]
    fn write(
        &mut self,
        hardware_crc: bool,
        seq: u64,
        kind: u16,
        len: usize,
        ts: u64,
        payload: &impl Payload,
    ) -> bool {
        write_record(
            hardware_crc,
            &mut self.cursor,
            self.seed,
            seq,
            kind,
            len,
            ts,
            payload,
        )
    }
}

/// Appends one record as a writer of its own (`shm-layout.md`, 8.6): a
/// new writer number, a chunk of its own, sealed right after.
/// Async-signal-safe: atomics, stores into the claimed chunk, `gettid`,
/// `prctl`; no lock, no allocation.
pub(crate) fn append_alone(
    shared: &Shared,
    kind: u16,
    len: usize,
    ts: u64,
    payload: &impl Payload,
) -> Result<Published, AppendError> {
    let number = new_writer_number(shared);
    let Some(claimed) = claim_chunk(shared) else {
        count_drop(shared);
        return Err(AppendError::Dropped);
    };
    let (thread_id, thread_name) = this_thread();
    let header = chunk_header(claimed.gen, 0, 0, number, thread_id, &thread_name);
    let mut owned = start_chunk(shared, claimed, &header);
    let written = owned.write(shared.hardware_crc, 0, kind, len, ts, payload);
    seal(&shared.map.table()[claimed.index as usize]);
    // A record within MAX_RECORD_LEN fits an empty chunk (as above); were
    // it not to, it is dropped and counted (the chunk, sealed empty, is
    // reused).
    if !written {
        debug_assert!(false, "a record within the limit fits an empty chunk");
        count_drop(shared);
        return Err(AppendError::Dropped);
    }
    Ok(Published {
        writer: number,
        seq: 0,
    })
}

fn new_writer_number(shared: &Shared) -> u32 {
    // Relaxed: only uniqueness matters (the add is atomic).
    shared
        .map
        .header_u32(H_WRITERS)
        .fetch_add(1, Ordering::Relaxed)
}

fn claim_chunk(shared: &Shared) -> Option<Claimed> {
    claim(
        shared.map.header_u64(H_NEXT_TICKET),
        shared.map.table(),
        shared.claim_budget,
    )
}

#[cold]
fn count_drop(shared: &Shared) {
    // Relaxed: a counter for the reader, ordered with nothing.
    shared
        .map
        .header_u64(H_DROPPED)
        .fetch_add(1, Ordering::Relaxed);
}

/// Writes the header of a chunk just claimed and computes its seed.
#[allow(unsafe_code)]
fn start_chunk(shared: &Shared, claimed: Claimed, header: &[u8; CHUNK_HEADER_LEN]) -> Owned {
    // The cursor stays with one writer on one thread (a thread-local
    // writer, or the caller's stack), which uses it only while `shared`,
    // and so the mapping, is alive.
    // SAFETY: `claimed` comes from a successful claim of ticket `gen` that nobody sealed yet.
    let mut cursor = unsafe { shared.map.owned_chunk(claimed.index, claimed.gen) };
    cursor.write_header(header);
    // The header is this claim's now: readers may look at the chunk.
    own(&shared.map.table()[claimed.index as usize]);
    Owned {
        cursor,
        gen: claimed.gen,
        seed: crc_seed(shared.nonce, header),
    }
}

/// The 64 bytes of a chunk header (`shm-layout.md`, 4.2).
fn chunk_header(
    gen: u64,
    first_seq: u64,
    dropped: u64,
    writer: u32,
    thread_id: u32,
    thread_name: &[u8; THREAD_NAME_LEN],
) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[C_GEN..C_GEN + 8].copy_from_slice(&gen.to_le_bytes());
    h[C_FIRST_SEQ..C_FIRST_SEQ + 8].copy_from_slice(&first_seq.to_le_bytes());
    h[C_WRITER_DROPPED..C_WRITER_DROPPED + 8].copy_from_slice(&dropped.to_le_bytes());
    h[C_WRITER..C_WRITER + 4].copy_from_slice(&writer.to_le_bytes());
    h[C_THREAD_ID..C_THREAD_ID + 4].copy_from_slice(&thread_id.to_le_bytes());
    h[C_THREAD_NAME..C_THREAD_NAME + THREAD_NAME_LEN].copy_from_slice(thread_name);
    h
}

/// The calling thread's id and kernel name (`main` for the main thread).
fn this_thread() -> (u32, [u8; THREAD_NAME_LEN]) {
    let tid = sys::thread_id();
    let name = if tid == std::process::id() {
        let mut main = [0u8; THREAD_NAME_LEN];
        main[..4].copy_from_slice(b"main");
        main
    } else {
        sys::thread_name()
    };
    (tid, name)
}

/// Test hook (`Recorder::log_unpublished_for_test`): begins an event in
/// this thread's chunk, marks it as being written and fills it, never
/// publishes it, and leaves the chunk as a writer killed at that moment
/// would (owned, never sealed); the thread's next record goes to a new
/// chunk. Returns the `seq` the event would have had (the next record
/// takes it).
pub(crate) fn mark_only_for_test(shared: &Shared, message: &str) -> u64 {
    use crate::event::Level;
    use crate::payload::EventPayload;
    let event = EventPayload::fit(shared.max_record_len, Level::Info, "", message, &[]);
    let len = RECORD_HEADER_LEN + event.len();
    LOCAL.with(|cell| {
        let mut writers = cell.borrow_mut();
        let writer = match writers.slots.iter().position(|w| w.ring == shared.id) {
            Some(i) => &mut writers.slots[i],
            None => writers.register(shared),
        };
        let stride = stride(len);
        let owned = match &mut writer.chunk {
            Some(owned) if owned.cursor.fits(stride) => owned,
            _ => writer
                .next_chunk(shared)
                .expect("a chunk for the test record"),
        };
        // Begun (marked) and filled with zeros, never published.
        let mut record = owned.cursor.begin(stride).expect("checked to fit");
        record.u32_at(R_KIND, u32::from(KIND_EVENT));
        for at in (RECORD_HEADER_LEN..stride).step_by(8) {
            record.u64_at(at, 0);
        }
        // Abandon the chunk without sealing it: it stays owned, as a dead
        // writer's would.
        writer.chunk = None;
        writer.next_seq
    })
}

/// How many of the calling thread's appends to `shared` were dropped
/// because no chunk was free (0 before its first append).
pub(crate) fn dropped_on_this_thread(shared: &Shared) -> u64 {
    LOCAL
        .try_with(|cell| {
            let writers = cell.try_borrow().ok()?;
            writers
                .slots
                .iter()
                .find(|w| w.ring == shared.id)
                .map(|w| w.dropped)
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// The ticket (`GEN`) of the chunk the calling thread owns in `shared`, if
/// it owns one: changes exactly when the thread claims a chunk.
pub(crate) fn chunk_of_this_thread(shared: &Shared) -> Option<u64> {
    LOCAL
        .try_with(|cell| {
            let writers = cell.try_borrow().ok()?;
            let writer = writers.slots.iter().find(|w| w.ring == shared.id)?;
            writer.chunk.as_ref().map(|owned| owned.gen)
        })
        .ok()
        .flatten()
}
