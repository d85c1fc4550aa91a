//! Recovery from mutations of valid rings.
//!
//! Setup (once per process) writes three rings with the recorder, wrapping
//! them, with events, raw records from 1 byte to more than a page, an
//! unpublished (torn) record, a lap log entry, and a writer state of
//! exited or killed; it keeps every record the writer appended, by
//! sequence number.
//!
//! Input: byte 0 picks the ring; then 4-byte operations
//! `[op | offset_hi << 2, offset_lo (u16 LE), value]` on the file's bytes,
//! offset taken modulo the file's length:
//! - 0: set the byte to `value`;
//! - 1: xor the byte with `value` (0 means 0x80);
//! - 2: add `(value as i8) * 8` to the aligned u64 there (TAIL, COMMIT
//!   lengths and tags, POS stamps, lap log positions);
//! - 3: swap the aligned u64 there with the one `value` words further on
//!   (COMMIT words and stamps moved to other positions), or, when `value`
//!   is 0, cut the file at that offset.
//!
//! Checks: everything `check.rs` asserts, plus
//! - nothing false: a returned record none of whose bytes was mutated is
//!   one the writer appended at that sequence number, byte for byte;
//! - nothing lost: when no header field the walk depends on was mutated
//!   and no returned record overlaps a mutation, every record of the
//!   original window none of whose bytes was mutated is returned
//!   (damage costs the damaged records only).
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reader::Ring;
use recorder::layout::*;
use recorder::{Field, Level, Recorder, Value};

mod check;

/// One record as the writer appended it.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    kind: u16,
    flags: u16,
    ts: u64,
    payload: Vec<u8>,
}

struct Base {
    file: Vec<u8>,
    capacity: u64,
    /// Every record the writer appended, by seq (overwritten ones too).
    written: HashMap<u64, Written>,
    /// `(seq, stride)` of the records of the unmutated window.
    window: Vec<(u64, u64)>,
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bbx-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create fuzz scratch dir");
        let bases = vec![
            build(&dir.join("a.ring"), 8192, Shape::Mixed),
            build(&dir.join("b.ring"), 4096, Shape::RawKilled),
            build(&dir.join("c.ring"), 16384, Shape::LappedLog),
        ];
        let _ = std::fs::remove_dir_all(&dir);
        bases
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Events of every field type and raw records, wrapped three times,
    /// one unpublished event in the last lap; closed cleanly.
    Mixed,
    /// Raw records of awkward sizes around 8 and up to the limit, wrapped;
    /// a torn record at the end; the state word left `running` (killed).
    RawKilled,
    /// Events, wrapped once, with a lap log entry that explains damage
    /// to one record.
    LappedLog,
}

/// Reads back the record the writer just appended at `seq`.
fn capture(path: &std::path::Path, seq: u64) -> Written {
    let ring = Ring::open(path).expect("open the ring being built");
    let snap = ring.snapshot_from(seq << 3).expect("snapshot");
    let r = snap
        .records
        .iter()
        .find(|r| r.seq == seq)
        .expect("the record just appended is in the window");
    Written {
        kind: r.kind,
        flags: r.flags,
        ts: r.ts_unix_ns,
        payload: snap.payload(r).to_vec(),
    }
}

fn build(path: &std::path::Path, capacity: u64, shape: Shape) -> Base {
    let rec = Recorder::builder(path)
        .capacity(capacity)
        .heartbeat(None)
        .program("fuzz")
        .create()
        .expect("create base ring");
    let mut written = HashMap::new();
    let max_payload = rec.max_record_len() - RECORD_HEADER_LEN;
    let mut n = 0u64;
    let mut torn_seq = None;
    while rec_tail(path)
        < match shape {
            Shape::Mixed => 3 * capacity + capacity / 2,
            Shape::RawKilled => 2 * capacity + capacity / 3,
            Shape::LappedLog => capacity * 7 / 4,
        }
    {
        let seq = match shape {
            Shape::Mixed if n % 3 == 2 => {
                let size = [1, 7, 8, 9, 100, 1500, max_payload][(n / 3 % 7) as usize];
                rec.append(&vec![n as u8 | 1; size]).expect("append")
            }
            Shape::RawKilled => {
                let sizes = [1, 2, 7, 8, 9, 15, 16, 17, 63, 500, max_payload];
                let size = sizes[(n % sizes.len() as u64) as usize];
                let payload: Vec<u8> = (0..size).map(|i| (i as u64 ^ n) as u8).collect();
                rec.append(&payload).expect("append")
            }
            _ => {
                let message = "m".repeat((n * 37 % 300) as usize);
                let debug = format!("{:?}", (n, "x"));
                rec.log(
                    [
                        Level::Trace,
                        Level::Debug,
                        Level::Info,
                        Level::Warn,
                        Level::Error,
                    ][(n % 5) as usize],
                    "fuzz::base",
                    &message,
                    &[
                        Field::new("n", n),
                        Field::new("i", -(n as i64)),
                        Field::new("f", n as f64 / 3.0),
                        Field::new("b", n.is_multiple_of(2)),
                        Field::new("s", "text"),
                        Field {
                            name: "d",
                            value: Value::Debug(&debug),
                        },
                    ],
                )
                .expect("log")
            }
        };
        written.insert(seq, capture(path, seq));
        n += 1;
        if shape == Shape::Mixed && torn_seq.is_none() && rec_tail(path) > 3 * capacity {
            torn_seq = Some(rec.log_unpublished_for_test("never published"));
        }
    }
    if shape == Shape::RawKilled {
        rec.log_unpublished_for_test("cut short by the kill");
    }
    drop(rec);
    let mut file = std::fs::read(path).expect("read base ring");
    let put_u64 = |file: &mut Vec<u8>, at: usize, v: u64| {
        file[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    match shape {
        Shape::RawKilled => {
            file[H_STATE..H_STATE + 4].copy_from_slice(&STATE_RUNNING.to_le_bytes());
        }
        Shape::LappedLog => {
            // A lapped append of the previous lap whose late bytes hit a
            // record in the middle of the window: damage the fuzzer makes
            // there counts as overwritten, not corrupt.
            let snap = Ring::from_bytes(file.clone())
                .and_then(|r| r.snapshot())
                .expect("base snapshot");
            let middle = snap.records[snap.records.len() / 2].pos();
            put_u64(&mut file, H_LAPPED_WRITES, 1);
            put_u64(&mut file, H_LAP_LOG, middle - capacity + 8);
            put_u64(&mut file, H_LAP_LOG + 8, 64);
        }
        Shape::Mixed => {}
    }
    let ring = Ring::from_bytes(file.clone()).expect("base ring is valid");
    let snap = ring.snapshot().expect("base snapshot");
    assert_eq!(snap.corrupt(), 0);
    let window = snap
        .records
        .iter()
        .map(|r| (r.seq, stride(r.len as usize) as u64))
        .collect();
    Base {
        file,
        capacity,
        written,
        window,
    }
}

fn rec_tail(path: &std::path::Path) -> u64 {
    Ring::open(path).expect("open").header().tail
}

/// Applies the operations of `ops`; returns which file bytes they touched.
fn mutate(file: &mut Vec<u8>, ops: &[u8]) -> Vec<bool> {
    let mut touched = vec![false; file.len()];
    for op in ops.chunks_exact(4) {
        if file.len() < 16 {
            break;
        }
        let kind = op[0] & 3;
        let offset = (usize::from(op[0] >> 2) << 16
            | usize::from(u16::from_le_bytes([op[1], op[2]])))
            % file.len();
        let value = op[3];
        let word = (offset & !7).min(file.len() - 8);
        match kind {
            0 => {
                file[offset] = value;
                touched[offset] = true;
            }
            1 => {
                file[offset] ^= if value == 0 { 0x80 } else { value };
                touched[offset] = true;
            }
            2 => {
                let old = u64::from_le_bytes(file[word..word + 8].try_into().unwrap());
                let new = old.wrapping_add((i64::from(value as i8) * 8) as u64);
                file[word..word + 8].copy_from_slice(&new.to_le_bytes());
                touched[word..word + 8].fill(true);
            }
            _ if value == 0 => {
                file.truncate(offset);
                touched.truncate(offset);
            }
            _ => {
                let other = ((word + usize::from(value) * 8) % (file.len() - 7)) & !7;
                for i in 0..8 {
                    file.swap(word + i, other + i);
                }
                touched[word..word + 8].fill(true);
                touched[other..other + 8].fill(true);
            }
        }
    }
    touched
}

/// Whether any byte of the ring positions `[pos, pos + len)` was touched.
fn span_touched(touched: &[bool], capacity: u64, pos: u64, len: u64) -> bool {
    (0..len).any(|i| {
        let at = HEADER_LEN + ((pos + i) & (capacity - 1)) as usize;
        touched.get(at).copied().unwrap_or(true)
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, ops)) = input.split_first() else {
        return;
    };
    let base = &bases()[usize::from(pick) % bases().len()];
    let mut file = base.file.clone();
    let touched = mutate(&mut file, ops);
    let Some(snap) = check::recover_and_check(&file) else {
        return;
    };
    let capacity = snap.header.capacity;
    let nonce_touched = touched
        .get(H_NONCE..H_NONCE + 8)
        .is_none_or(|t| t.contains(&true));
    let mut returned_touched = false;
    for r in &snap.records {
        let s = stride(r.len as usize) as u64;
        if span_touched(&touched, capacity, r.pos(), s) || nonce_touched {
            returned_touched = true;
            continue;
        }
        // Nothing false: untouched bytes that pass are what was written.
        let w = base.written.get(&r.seq).unwrap_or_else(|| {
            panic!(
                "record at seq {} was never written, and no mutation touched it",
                r.seq
            )
        });
        let got = Written {
            kind: r.kind,
            flags: r.flags,
            ts: r.ts_unix_ns,
            payload: snap.payload(r).to_vec(),
        };
        assert_eq!(
            &got, w,
            "record at seq {} differs from what was written",
            r.seq
        );
    }
    // Nothing lost: damage costs the damaged records only.
    let header_touched =
        touched[..128].contains(&true) || touched[H_TAIL..H_TAIL + 8].contains(&true);
    if header_touched || returned_touched || file.len() != base.file.len() {
        return;
    }
    let returned: std::collections::HashSet<u64> = snap.records.iter().map(|r| r.seq).collect();
    for &(seq, s) in &base.window {
        if !span_touched(&touched, base.capacity, seq << 3, s) {
            assert!(
                returned.contains(&seq),
                "record at seq {seq} was intact but is not returned ({} returned)",
                returned.len()
            );
        }
    }
});
