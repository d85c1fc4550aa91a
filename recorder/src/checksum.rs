//! The record checksum, computed fast: CRC-32C over `nonce ‖ chunk header
//! ‖ len ‖ seq ‖ record bytes [12, stride)`, as `shm-layout.md` defines it
//! (the nonce and the chunk header are the claim's seed).
//!
//! The part after the seed, `len (4 bytes) ‖ seq (8 bytes) ‖ [12, stride)`,
//! is `stride` bytes: a whole number of 8-byte words, the first of which is
//! `len | seq << 32`. So the whole checksum is one chain of the SSE 4.2
//! `crc32` instruction on 64-bit words, with no byte-wise head or tail and
//! one CPU-feature check per process. Machines without SSE 4.2 use the
//! `crc32c` crate's portable code (same result).
//!
//! This module uses `unsafe` only to call the intrinsic, behind a runtime
//! check of the CPU feature.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};

/// The checksum of one record.
///
/// `seed` is [`crate::layout::crc_seed`] of the file's nonce and the
/// record's chunk header, `len` the record's length, `seq` its sequence
/// number in its writer's run, and `body` the record's bytes from offset 12
/// to its stride (`stride(len) - 12` bytes, padding included).
///
/// # Panics
///
/// If `body.len() + 4` is not a multiple of 8 (the caller passed a body that
/// does not end on the record's stride).
///
/// # Examples
///
/// ```
/// use recorder::{checksum::record_crc, layout::crc_seed};
/// let seed = crc_seed(7, &[0u8; 64]);
/// let body = [0u8; 12]; // a 24-byte record without payload: bytes 12..24
/// let fast = record_crc(seed, 24, 5, &body);
/// let head = crc32c::crc32c_append(seed, &24u32.to_le_bytes());
/// let plain = crc32c::crc32c_append(crc32c::crc32c_append(head, &5u64.to_le_bytes()), &body);
/// assert_eq!(fast, plain);
/// ```
#[inline]
pub fn record_crc(seed: u32, len: u32, seq: u64, body: &[u8]) -> u32 {
    assert!(
        body.len() % 8 == 4,
        "record body must end on the 8-byte stride"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if has_sse42() {
            // SAFETY: the CPU supports SSE 4.2 (checked just above).
            return unsafe { record_crc_sse42(seed, len, seq, body) };
        }
    }
    portable(seed, len, seq, body)
}

fn portable(seed: u32, len: u32, seq: u64, body: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(seed, &len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c_append(crc, &seq.to_le_bytes()), body)
}

/// 0 unknown, 1 absent, 2 present.
static SSE42: AtomicU8 = AtomicU8::new(0);

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_sse42() -> bool {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn record_crc_sse42(seed: u32, len: u32, seq: u64, body: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    // CRC-32C keeps its register inverted between the initial and final
    // xor: continue from the seed's finished value by undoing the final xor.
    let mut crc = u64::from(!seed);
    // The byte stream len (4) ‖ seq (8) ‖ body, as little-endian words.
    crc = _mm_crc32_u64(crc, u64::from(len) | seq << 32);
    let second =
        seq >> 32 | u64::from(u32::from_le_bytes(body[..4].try_into().expect("4 bytes"))) << 32;
    crc = _mm_crc32_u64(crc, second);
    for chunk in body[4..].chunks_exact(8) {
        crc = _mm_crc32_u64(crc, word(chunk));
    }
    !(crc as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_portable_agree() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
        for body_len in (4..1000).step_by(8) {
            let body = &data[..body_len];
            for seq in [0, 7, u64::MAX - 3] {
                assert_eq!(
                    record_crc(0x1234_5678, 99, seq, body),
                    portable(0x1234_5678, 99, seq, body),
                    "body of {body_len} bytes, seq {seq}"
                );
            }
        }
    }
}
