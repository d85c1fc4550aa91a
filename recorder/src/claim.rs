//! Claiming and sealing chunks: the only place where writers meet
//! (`shm-layout.md`, section 4.1, and 7.3).
//!
//! The cursor `NEXT_TICKET` hands out tickets; ticket `t` is a visit of
//! chunk `t % count` in lap `t / count`. A chunk's table word is
//! `VISITS << 2 | STATE`:
//!
//! ```text
//!   claim:  {FREE | SEALED, VISITS = lap}   -> {CLAIMED, lap + 1}  any writer, CAS
//!   skip:   {CLAIMED | OWNED, VISITS = lap} -> {same, lap + 1}     any writer, CAS
//!   own:    {CLAIMED, v}                    -> {OWNED, v}          the owner, CAS loop
//!   seal:   {OWNED, v}                      -> {SEALED, v}         the owner, CAS loop
//!   cursor: t -> t + 1                                             whoever saw the visit, CAS
//! ```
//!
//! `CLAIMED` says "taken, its header not yet written": a chunk left so by a
//! claimer that stalls or dies before writing its header still holds the
//! previous claim's header and records, which a reader must not show (they
//! left the window with the claim).
//!
//! The CAS of a claim or a skip expects `VISITS` to be the lap of its
//! ticket, so it succeeds only if nobody visited the chunk for that ticket
//! yet; the cursor moves past a ticket only after its visit. So a writer
//! whose ticket went stale (it was preempted after reading the cursor) fails
//! and takes a new one, claims happen in ticket order, and a chunk that is
//! `OWNED` is never taken from its owner: only the owner changes its state.
//!
//! The protocol is generic over the atomic type so that the loom model in
//! this module's tests runs the same code as the recorder.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::{
    table_state, table_visits, table_word, CHUNK_CLAIMED, CHUNK_FREE, CHUNK_OWNED, CHUNK_SEALED,
};

/// The atomic operations the protocol uses on a 64-bit word.
pub(crate) trait Word {
    fn load(&self, order: Ordering) -> u64;
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

impl Word for AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    #[inline]
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        AtomicU64::compare_exchange(self, current, new, success, failure)
    }
}

/// A chunk that a claim made ours: its index and the ticket (`GEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub(crate) index: u32,
    pub(crate) gen: u64,
}

/// How many tickets a claim may go through before it gives up and the
/// append is dropped (`shm-layout.md`, 7.4): twice the chunks it could
/// find, at most 128.
pub(crate) fn claim_budget(chunk_count: u32) -> usize {
    2 * (chunk_count as usize).min(64)
}

/// Claims the next chunk that is not owned, or `None` after `budget`
/// steps (every chunk it met was owned, or other writers kept winning).
pub(crate) fn claim<W: Word>(next: &W, table: &[W], budget: usize) -> Option<Claimed> {
    let count = table.len() as u64;
    for _ in 0..budget {
        // Acquire: pairs with the AcqRel advance below, so the visits of all
        // earlier tickets (and the seals they saw) happen before ours.
        let t = next.load(Ordering::Acquire);
        let index = (t % count) as usize;
        let lap = t / count;
        let slot = &table[index];
        // Acquire: pairs with the owner's Release seal; the CAS below reads
        // the latest value anyway, this load only picks what to try.
        let word = slot.load(Ordering::Acquire);
        let visits = table_visits(word);
        if visits > lap {
            // Ticket t was visited already (we were slow): help the cursor
            // on and take a fresh ticket.
            advance(next, t);
            continue;
        }
        if visits < lap {
            // The cursor never passes an unvisited ticket, so only a damaged
            // file gets here; try again with a fresh ticket.
            continue;
        }
        let state = table_state(word);
        let free = state == CHUNK_FREE || state == CHUNK_SEALED;
        // A claim makes it CLAIMED; a skip keeps the state (CLAIMED or
        // OWNED: someone holds it) and only counts the visit.
        let new_state = if free { CHUNK_CLAIMED } else { state };
        // AcqRel on success: Acquire pairs with the previous owner's seal
        // (its writes to the chunk happen before ours); Release lets a
        // helper that sees this visit (Acquire load) advance the cursor
        // after it. Acquire on failure: we go round again with what we saw.
        let visited = slot.compare_exchange(
            word,
            table_word(new_state, lap + 1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if visited.is_err() {
            // Someone else visited it for this ticket, or its owner sealed
            // it meanwhile: look again.
            continue;
        }
        advance(next, t);
        if free {
            return Some(Claimed {
                index: index as u32,
                gen: t,
            });
        }
        // Skipped: the owner keeps its chunk (our CAS kept OWNED).
    }
    None
}

/// Moves the cursor from `t` to `t + 1`, unless someone already did.
#[inline]
fn advance<W: Word>(next: &W, t: u64) {
    // AcqRel: the cursor's values form one release sequence, so whoever
    // reads t + 1 or later (Acquire) sees the visit of t; Relaxed on
    // failure: someone else moved it, nothing to learn.
    let _ = next.compare_exchange(t, t + 1, Ordering::AcqRel, Ordering::Relaxed);
}

/// Marks a chunk its caller claimed as owned, once its header is written:
/// `{CLAIMED, v}` to `{OWNED, v}`, keeping the visit count that skips may
/// have advanced meanwhile.
pub(crate) fn own<W: Word>(slot: &W) {
    // Release: the header written before is ordered before the state that
    // says it is this claim's.
    change_state(slot, CHUNK_CLAIMED, CHUNK_OWNED, Ordering::Release);
}

/// Seals a chunk its caller owns: `{OWNED, v}` to `{SEALED, v}`, keeping
/// the visit count that skips may have advanced meanwhile.
pub(crate) fn seal<W: Word>(slot: &W) {
    // Release: everything the owner wrote into the chunk happens before the
    // next owner's claim (its Acquire CAS).
    change_state(slot, CHUNK_OWNED, CHUNK_SEALED, Ordering::Release);
}

/// The owner's own transitions: `from` to `to`, keeping `VISITS`. Only the
/// owner changes the state of a chunk it holds; skips change only `VISITS`,
/// so the loop ends as soon as no skip comes between its load and its CAS.
fn change_state<W: Word>(slot: &W, from: u64, to: u64, order: Ordering) {
    // Relaxed: the CAS below re-reads the word; this is only its guess.
    let mut word = slot.load(Ordering::Relaxed);
    loop {
        debug_assert_eq!(table_state(word), from, "a chunk we do not hold");
        // Relaxed on failure: a skip changed VISITS, retry with what it left.
        match slot.compare_exchange(
            word,
            table_word(to, table_visits(word)),
            order,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => word = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn claims_go_round_in_ticket_order_and_skip_owned_chunks() {
        let next = AtomicU64::new(0);
        let t = table(4);
        let a = claim(&next, &t, 8).unwrap();
        assert_eq!(a, Claimed { index: 0, gen: 0 });
        assert_eq!(table_state(t[0].load(Ordering::Relaxed)), CHUNK_CLAIMED);
        own(&t[0]);
        let b = claim(&next, &t, 8).unwrap();
        assert_eq!(b, Claimed { index: 1, gen: 1 });
        own(&t[1]);
        seal(&t[1]);
        let c = claim(&next, &t, 8).unwrap();
        let d = claim(&next, &t, 8).unwrap();
        assert_eq!((c.index, d.index), (2, 3));
        // Lap 1: chunk 0 is still owned (skipped), chunk 1 is sealed;
        // chunks 2 and 3 are still only claimed (skipped too).
        let e = claim(&next, &t, 8).unwrap();
        assert_eq!(e, Claimed { index: 1, gen: 5 });
        assert_eq!(table_visits(t[0].load(Ordering::Relaxed)), 2);
        assert_eq!(table_state(t[0].load(Ordering::Relaxed)), CHUNK_OWNED);
        // Everything owned: the claim gives up.
        assert_eq!(claim(&next, &t, 8), None);
    }

    #[test]
    fn a_stale_ticket_never_claims() {
        let next = AtomicU64::new(0);
        let t = table(2);
        // A writer reads ticket 0 and the chunk's word, then stalls...
        let stale_word = t[0].load(Ordering::Relaxed);
        // ...while others claim it for ticket 0 and seal it.
        let a = claim(&next, &t, 4).unwrap();
        own(&t[a.index as usize]);
        seal(&t[a.index as usize]);
        // The stalled writer's CAS, as `claim` would make it, fails.
        let late = t[0].compare_exchange(
            stale_word,
            table_word(CHUNK_CLAIMED, 1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        assert!(late.is_err());
    }

    #[test]
    fn seal_keeps_the_visits_a_skip_added() {
        let next = AtomicU64::new(0);
        let t = table(2);
        let a = claim(&next, &t, 4).unwrap();
        let _b = claim(&next, &t, 4).unwrap();
        // Ticket 2 skips chunk 0 (claimed), ticket 3 skips chunk 1.
        assert_eq!(claim(&next, &t, 2), None);
        own(&t[a.index as usize]);
        seal(&t[a.index as usize]);
        let w = t[0].load(Ordering::Relaxed);
        assert_eq!((table_state(w), table_visits(w)), (CHUNK_SEALED, 2));
    }

    /// Model checks of the protocol with loom: every interleaving (within a
    /// preemption bound) of writers that claim, fill, seal and reclaim a
    /// small ring, including a writer preempted anywhere inside its claim.
    #[allow(unsafe_code)] // loom's UnsafeCell hands out raw pointers
    mod model {
        use super::super::*;
        use loom::cell::UnsafeCell;
        use loom::sync::atomic::AtomicU64 as LoomU64;
        use loom::sync::Arc;

        impl Word for LoomU64 {
            fn load(&self, order: Ordering) -> u64 {
                LoomU64::load(self, order)
            }

            fn compare_exchange(
                &self,
                current: u64,
                new: u64,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u64, u64> {
                LoomU64::compare_exchange(self, current, new, success, failure)
            }
        }

        /// A ring of `chunks` chunks whose "bytes" are one cell each: the
        /// writer and its chunk number. loom reports any two threads that
        /// touch a chunk's cell without an order between them: a writer
        /// writing a chunk it does not own.
        struct Ring {
            next: LoomU64,
            table: Vec<LoomU64>,
            data: Vec<UnsafeCell<(u64, u64)>>,
        }

        /// A reclaim seen by a writer: its ticket, and whose chunk (writer,
        /// that writer's chunk number) it took over.
        type Reclaim = (u64, u64, u64);

        fn writer(ring: &Ring, me: u64, chunks: u64) -> Vec<Reclaim> {
            let mut seen = Vec::new();
            for k in 0..chunks {
                let Some(c) = claim(&ring.next, &ring.table, 4) else {
                    continue;
                };
                own(&ring.table[c.index as usize]);
                // Fill: the chunk is ours, nobody else may touch its bytes.
                // SAFETY: what the model checks: loom reports an access to
                // the cell without an order to another thread's access.
                let previous = ring.data[c.index as usize].with_mut(|cell| unsafe {
                    let old = *cell;
                    *cell = (me, k + 1);
                    old
                });
                if previous.1 != 0 {
                    seen.push((c.gen, previous.0, previous.1));
                }
                seal(&ring.table[c.index as usize]);
            }
            seen
        }

        fn check(threads: u64, chunks_per_thread: u64, ring_chunks: usize, bound: usize) {
            let mut builder = loom::model::Builder::new();
            builder.preemption_bound = Some(bound);
            builder.check(move || {
                let ring = Arc::new(Ring {
                    next: LoomU64::new(0),
                    table: (0..ring_chunks).map(|_| LoomU64::new(0)).collect(),
                    data: (0..ring_chunks).map(|_| UnsafeCell::new((0, 0))).collect(),
                });
                let handles: Vec<_> = (0..threads)
                    .map(|me| {
                        let ring = Arc::clone(&ring);
                        loom::thread::spawn(move || writer(&ring, me, chunks_per_thread))
                    })
                    .collect();
                let mut reclaims: Vec<Reclaim> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                // Claims happen in ticket order, so sorted by ticket each
                // writer's chunks are reclaimed in the order it filled them:
                // no writer ever loses a newer chunk before an older one.
                reclaims.sort();
                for w in 0..threads {
                    let order: Vec<u64> =
                        reclaims.iter().filter(|r| r.1 == w).map(|r| r.2).collect();
                    assert!(
                        order.windows(2).all(|p| p[0] < p[1]),
                        "writer {w}'s chunks reclaimed out of order: {order:?}"
                    );
                }
                // Every ticket below the cursor was visited once: the chunk
                // words' visits add up to the cursor.
                let visits: u64 = ring
                    .table
                    .iter()
                    .map(|w| table_visits(w.load(Ordering::SeqCst)))
                    .sum();
                assert_eq!(visits, ring.next.load(Ordering::SeqCst));
            });
        }

        #[test]
        fn two_writers_wrapping_two_chunks() {
            check(2, 2, 2, 2);
        }

        #[test]
        fn three_writers_on_two_chunks_with_a_preemption() {
            check(3, 1, 2, 1);
        }
    }
}
