//! The record checksum, computed fast: CRC-32C over `nonce ‖ chunk header
//! ‖ len ‖ seq ‖ payload ‖ KIND, FLAGS, TS`, as `shm-layout.md` defines it
//! (the nonce and the chunk header are the claim's seed).
//!
//! The header's KIND, FLAGS and TS come last so that the timestamp, read
//! just before, enters the checksum's dependency chain at its end: the CPU
//! runs the chain over the payload while the clock read completes. On
//! x86_64 with SSE 4.2 the whole checksum is a chain of the `crc32`
//! instruction on 32- and 64-bit words (the payload with its padding is a
//! whole number of 8-byte words). The CPU is asked once per process; each
//! record checks the cached answer. Machines without SSE 4.2 use the
//! `crc32c` crate's portable code (same result).
//!
//! The instruction is written as inline assembly rather than as the
//! `_mm_crc32_u64` intrinsic. An intrinsic needs a function compiled with
//! SSE 4.2, which cannot be inlined into code compiled without it, so the
//! append path paid a call into its record writer, with everything it had
//! computed spilled around it; inline assembly inlines anywhere. With the
//! word copy's single bounds check (`RecordWriter::words_at`), a 64-byte
//! append went from 231 to 209 instructions (callgrind, `--bench append`).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

/// The checksum of one record.
///
/// `seed` is [`crate::layout::crc_seed`] of the file's nonce and the
/// record's chunk header, `len` the record's length, `seq` its sequence
/// number in its writer's run, `payload` its bytes from offset 24 to its
/// stride (padding included), `kind_flags` its bytes 12..16 as a
/// little-endian `u32` (KIND, FLAGS) and `ts` its TS.
///
/// # Panics
///
/// If `payload.len()` is not a multiple of 8 (the caller passed a payload
/// that does not end on the record's stride).
///
/// # Examples
///
/// ```
/// use blackbox_recorder::{checksum::record_crc, layout::crc_seed};
/// let seed = crc_seed(7, &[0u8; 64]);
/// let payload = [0xa5u8; 8];
/// let fast = record_crc(seed, 32, 5, &payload, 2, 99);
/// let mut plain = crc32c::crc32c_append(seed, &32u32.to_le_bytes());
/// plain = crc32c::crc32c_append(plain, &5u64.to_le_bytes());
/// plain = crc32c::crc32c_append(plain, &payload);
/// plain = crc32c::crc32c_append(plain, &2u32.to_le_bytes());
/// plain = crc32c::crc32c_append(plain, &99u64.to_le_bytes());
/// assert_eq!(fast, plain);
/// ```
#[inline]
pub fn record_crc(seed: u32, len: u32, seq: u64, payload: &[u8], kind_flags: u32, ts: u64) -> u32 {
    assert!(
        payload.len() % 8 == 0,
        "record payload must end on the 8-byte stride"
    );
    #[cfg(target_arch = "x86_64")]
    if has_sse42() {
        let mut crc = Running::<Hardware>::start(seed, len, seq);
        for word in payload.chunks_exact(8) {
            crc.word(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        return crc.finish(kind_flags, ts);
    }
    portable(seed, len, seq, payload, kind_flags, ts)
}

fn portable(seed: u32, len: u32, seq: u64, payload: &[u8], kind_flags: u32, ts: u64) -> u32 {
    let mut crc = crc32c::crc32c_append(seed, &len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    crc = crc32c::crc32c_append(crc, &kind_flags.to_le_bytes());
    crc32c::crc32c_append(crc, &ts.to_le_bytes())
}

/// 0 unknown, 1 absent, 2 present.
static SSE42: AtomicU8 = AtomicU8::new(0);

/// One step of CRC-32C on a little-endian word, on the inverted register
/// (the state between the initial and the final xor). The register is
/// kept in a `u64` whose high half is zero: the `crc32` instruction writes
/// it so, and a `u32` would cost a zero extension before every step.
pub(crate) trait Engine {
    fn word(reg: u64, w: u64) -> u64;
    fn half(reg: u64, w: u32) -> u64;
}

/// The `crc32` instruction, as inline assembly. Only for code that runs
/// after [`has_sse42`] said yes (or [`hardware_crc`], which asks it).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Hardware;

#[cfg(target_arch = "x86_64")]
impl Engine for Hardware {
    #[inline(always)]
    fn word(reg: u64, w: u64) -> u64 {
        let mut r = reg;
        // SAFETY: only reached on a CPU with SSE 4.2 (the type's docs); it
        // reads two registers (the first's low half), writes the first
        // zero-extended, and touches no memory, stack or flags (the options).
        unsafe {
            std::arch::asm!("crc32 {r}, {w}", r = inout(reg) r, w = in(reg) w,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    #[inline(always)]
    fn half(reg: u64, w: u32) -> u64 {
        let mut r = reg;
        // SAFETY: as in `word`.
        unsafe {
            std::arch::asm!("crc32 {r:e}, {w:e}", r = inout(reg) r, w = in(reg) w,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
}

/// The `crc32c` crate's portable code (same results).
pub(crate) struct Portable;

impl Engine for Portable {
    #[inline]
    fn word(reg: u64, w: u64) -> u64 {
        u64::from(!crc32c::crc32c_append(!(reg as u32), &w.to_le_bytes()))
    }

    #[inline]
    fn half(reg: u64, w: u32) -> u64 {
        u64::from(!crc32c::crc32c_append(!(reg as u32), &w.to_le_bytes()))
    }
}

/// A record checksum computed as its bytes are produced, word by word:
/// start with the seed, `len` and `seq`, feed the payload's 8-byte words,
/// finish with KIND, FLAGS and TS.
pub(crate) struct Running<E> {
    reg: u64,
    engine: std::marker::PhantomData<E>,
}

impl<E: Engine> Running<E> {
    #[inline(always)]
    pub(crate) fn start(seed: u32, len: u32, seq: u64) -> Self {
        Running {
            reg: E::word(E::half(u64::from(!seed), len), seq),
            engine: std::marker::PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn word(&mut self, w: u64) {
        self.reg = E::word(self.reg, w);
    }

    #[inline(always)]
    pub(crate) fn finish(self, kind_flags: u32, ts: u64) -> u32 {
        !(E::word(E::half(self.reg, kind_flags), ts) as u32)
    }
}

/// Whether the [`Hardware`] engine may run here: [`has_sse42`] on x86_64.
pub(crate) fn hardware_crc() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_sse42()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has the `crc32` instruction (SSE 4.2); detected once.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_sse42() -> bool {
    // Relaxed: a cache of a fact that never changes; a race only repeats
    // the detection.
    match SSE42.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            let present = std::arch::is_x86_feature_detected!("sse4.2");
            SSE42.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running<E: Engine>(len: u32, seq: u64, payload: &[u8], kf: u32, ts: u64) -> u32 {
        let mut r = Running::<E>::start(0x1234_5678, len, seq);
        for w in payload.chunks_exact(8) {
            r.word(u64::from_le_bytes(w.try_into().unwrap()));
        }
        r.finish(kf, ts)
    }

    #[test]
    fn the_running_checksum_is_the_record_checksum() {
        let data: Vec<u8> = (0..256u32).map(|i| (i * 13 + 1) as u8).collect();
        for n in (0..256).step_by(8) {
            let want = portable(0x1234_5678, 99, 42, &data[..n], 7, 1 << 40);
            assert_eq!(running::<Portable>(99, 42, &data[..n], 7, 1 << 40), want);
            #[cfg(target_arch = "x86_64")]
            if has_sse42() {
                assert_eq!(running::<Hardware>(99, 42, &data[..n], 7, 1 << 40), want);
            }
        }
    }

    #[test]
    fn fast_and_portable_agree() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
        for payload_len in (0..1000).step_by(8) {
            let payload = &data[..payload_len];
            for seq in [0, 7, u64::MAX - 3] {
                assert_eq!(
                    record_crc(0x1234_5678, 99, seq, payload, 0x0001_0002, seq ^ 0x55),
                    portable(0x1234_5678, 99, seq, payload, 0x0001_0002, seq ^ 0x55),
                    "payload of {payload_len} bytes, seq {seq}"
                );
            }
        }
    }
}
