//! The oracle both targets share: recover a ring from bytes the way
//! `blackbox` does, then check every record it returns against the bytes
//! themselves, independently of the reader's walk.
//!
//! What it asserts (a failed assertion is a crash for libFuzzer):
//! - the reader never panics (libFuzzer catches that by itself) and its
//!   memory stays bounded (`-rss_limit_mb`, `-malloc_limit_mb`);
//! - each returned record lies inside the window, in strictly increasing
//!   order, with a length the header allows;
//! - re-read from the input bytes at its position, each record carries its
//!   own COMMIT word and POS stamp and passes its CRC-32C, and the reader's
//!   copy of its header fields and payload is exactly those bytes;
//! - decoding its payload (event, typed record) returns, whatever it holds.

use reader::{decode_event, Ring, Snapshot};
use recorder::checksum::record_crc;
use recorder::layout::*;

/// Copies the `n` ring bytes from absolute position `pos`, wrapping at the
/// end of the data region (`n` is at most the capacity).
pub fn ring_bytes(file: &[u8], capacity: u64, pos: u64, n: usize) -> Vec<u8> {
    let data = &file[HEADER_LEN..HEADER_LEN + capacity as usize];
    let at = (pos & (capacity - 1)) as usize;
    let first = n.min(data.len() - at);
    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(&data[at..at + first]);
    out.extend_from_slice(&data[..n - first]);
    out
}

/// Opens `file` as a ring, takes a snapshot (and a follow-style snapshot
/// from the second record on), and checks both. `None` if the reader
/// refused the bytes, which is a fine answer for arbitrary input; else the
/// snapshot of the whole window, for the caller's own checks.
pub fn recover_and_check(file: &[u8]) -> Option<Snapshot> {
    let ring = Ring::from_bytes(file.to_vec()).ok()?;
    let _ = ring.state();
    let snap = ring.snapshot().ok()?;
    check_snapshot(file, &snap);
    if let Some(second) = snap.records.get(1) {
        if let Ok(later) = ring.snapshot_from(second.pos()) {
            check_snapshot(file, &later);
            assert!(
                later
                    .records
                    .first()
                    .is_none_or(|r| r.pos() >= second.pos()),
                "snapshot_from({}) returned an older record",
                second.pos()
            );
        }
    }
    Some(snap)
}

fn check_snapshot(file: &[u8], snap: &Snapshot) {
    let h = &snap.header;
    let capacity = h.capacity;
    assert!(capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity));
    assert!(
        file.len() as u64 >= HEADER_LEN as u64 + capacity,
        "a file shorter than its data region was accepted"
    );
    assert!(h.max_record_len >= RECORD_HEADER_LEN && h.max_record_len <= max_record_len(capacity));
    // Memory: at most one record per 32 bytes of the window.
    let window = snap.tail.saturating_sub(snap.window_start);
    assert!(snap.records.len() as u64 <= window / RECORD_HEADER_LEN as u64 + 1);
    let seed = crc_seed(h.nonce);
    let mut last_end = snap.window_start;
    for r in &snap.records {
        let pos = r.pos();
        let len = r.len as usize;
        let stride = stride(len);
        assert!(
            pos >= last_end,
            "record at {pos} overlaps the one before (ends {last_end})"
        );
        assert!(
            r.end() <= snap.tail,
            "record at {pos} runs past TAIL {}",
            snap.tail
        );
        assert!((RECORD_HEADER_LEN..=h.max_record_len).contains(&len));
        last_end = r.end();

        let rec = ring_bytes(file, capacity, pos, stride);
        let u64_at = |o: usize| u64::from_le_bytes(rec[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(rec[o..o + 2].try_into().unwrap());
        assert_eq!(u64_at(R_COMMIT), commit_word(r.len, pos), "COMMIT of {pos}");
        assert_eq!(u64_at(R_POS), pos, "POS stamp of {pos}");
        assert_eq!(
            u32_at(R_CRC),
            record_crc(seed, r.len, &rec[R_CRC_START..stride]),
            "CRC of the record at {pos}"
        );
        assert_eq!(u16_at(R_KIND), r.kind);
        assert_eq!(u16_at(R_FLAGS), r.flags);
        assert_eq!(u64_at(R_TS), r.ts_unix_ns);
        assert_eq!(
            snap.payload(r),
            &rec[RECORD_HEADER_LEN..len],
            "payload of {pos}"
        );
        decode(r.kind, snap.payload(r));
        let _ = snap.gap_before(r);
    }
    let _ = (snap.torn(), snap.corrupt(), &snap.trailing);
}

/// Decodes a payload as the CLI would; only a panic can fail here.
fn decode(kind: u16, payload: &[u8]) {
    match kind {
        KIND_EVENT => {
            if let Ok(e) = decode_event(payload) {
                let _ = (e.level(), e.truncated());
                for (name, value) in &e.fields {
                    std::hint::black_box((name.len(), value));
                }
            }
        }
        KIND_TYPED => {
            if let Ok(t) = reader::typed::parse_typed(payload) {
                // A few shapes, so bincode meets lengths, strings and options.
                let _ = t.decode_as::<(u32, String)>();
                let _ = t.decode_as::<Vec<String>>();
                let _ = t.decode_as::<(i64, Option<bool>, Vec<u64>)>();
            }
        }
        _ => {}
    }
}
