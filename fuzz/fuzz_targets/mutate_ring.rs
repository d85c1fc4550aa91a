//! Recovery from mutations of valid rings.
//!
//! Setup (once per process) writes three rings with the recorder, each with
//! several writers taking turns (so the chunks they claim do not depend on
//! thread timing), then makes them the same in every process: a fixed
//! nonce, identity, clock calibration and thread ids, each record's time
//! stamp a function of its writer and `seq`, and the checksums to match.
//! - `a`: 16 KiB in 1 KiB chunks, three writers of events with every field
//!   type and raw records from 1 byte to the largest, wrapped more than
//!   twice, one record left unpublished (torn); closed cleanly; `CLOCK_TSC`
//!   with a calibration.
//! - `b`: 16 KiB, two writers of raw records of awkward sizes, wrapped, a
//!   torn record at the end; the state word left `running` (killed).
//! - `c`: 32 KiB in 2 KiB chunks, not wrapped (free chunks left), typed
//!   records and events, a writer whose thread ended (its chunk sealed)
//!   and one that came after; `CLOCK_TSC` without a calibration.
//!
//! Input: byte 0 picks the ring; then 4-byte operations
//! `[op | offset_hi << 2, offset_lo (u16 LE), value]` on the file's bytes,
//! offset taken modulo the file's length:
//! - 0: set the byte to `value`;
//! - 1: xor the byte with `value` (0 means 0x80);
//! - 2: add `(value as i8) * 8` to the aligned u64 there (COMMIT lengths
//!   and tags, table words, `GEN`, `FIRST_SEQ`, header fields);
//! - 3: with `value` 0, cut the file at that offset; with `value` 1, sign
//!   the chunk there again: every record its claim frames gets the CRC its
//!   current header, length, `seq` and bytes give (what anyone who can
//!   write the file can do, so that damaged headers reach the reader with
//!   valid records); otherwise swap the aligned u64 there with the one
//!   `value` words further on.
//!
//! Checks: everything `check.rs` asserts, plus
//! - nothing false: a returned record none of whose bytes (nor its chunk's
//!   header, nor the nonce) was mutated is one a writer appended at that
//!   writer and `seq`, byte for byte;
//! - nothing lost: when neither the header, nor the chunk table, nor a
//!   chunk header was mutated, the length is the same and no two chunks of
//!   a writer overlap, every record of the original window none of whose
//!   chunk's bytes up to its end was mutated is returned (damage costs the
//!   damaged records and what follows them in their chunk, nothing else).
#![no_main]

use std::collections::HashMap;
use std::sync::{mpsc, Arc, OnceLock};

use blackbox_recorder::layout::*;
use blackbox_recorder::{Clock, Field, Level, Recorder, Value};
use libfuzzer_sys::fuzz_target;

mod check;

/// One record as its writer appended it.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    kind: u16,
    flags: u16,
    ts_unix_ns: u64,
    payload: Vec<u8>,
}

struct Base {
    file: Vec<u8>,
    /// Every record of the window, by `(writer, seq)`.
    written: HashMap<(u32, u64), Written>,
    /// The window's records: `(writer, seq, chunk start, record end)`.
    window: Vec<(u32, u64, usize, usize)>,
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bbx-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create fuzz scratch dir");
        let bases = vec![
            build(&dir.join("a.ring"), Shape::Mixed),
            build(&dir.join("b.ring"), Shape::RawKilled),
            build(&dir.join("c.ring"), Shape::TypedYoung),
        ];
        let _ = std::fs::remove_dir_all(&dir);
        bases
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Mixed,
    RawKilled,
    TypedYoung,
}

/// Threads that run what they are given one at a time, in turn: each is
/// its own writer, and the order of their appends is the order of calls.
struct Turns {
    work: Vec<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Turns {
    fn new(n: usize) -> Turns {
        let (done_tx, done) = mpsc::channel();
        let mut work = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
            let done_tx = done_tx.clone();
            threads.push(std::thread::spawn(move || {
                for f in rx {
                    f();
                    done_tx.send(()).expect("report");
                }
            }));
            work.push(tx);
        }
        Turns {
            work,
            done,
            threads,
        }
    }

    /// Runs `f` on thread `t` and waits for it.
    fn run(&self, t: usize, f: impl FnOnce() + Send + 'static) {
        self.work[t].send(Box::new(f)).expect("send work");
        self.done.recv().expect("work done");
    }

    /// Ends thread `t` (its writer seals its chunk) and waits for it.
    fn end(&mut self, t: usize) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.work[t], tx));
        self.threads.remove(t).join().expect("thread ends");
        self.work.remove(t);
    }
}

fn event(rec: &Recorder, n: u64) {
    let message = "m".repeat((n * 37 % 200) as usize);
    let debug = format!("{:?}", (n, "x"));
    let _ = rec.log(
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
    );
}

fn build(path: &std::path::Path, shape: Shape) -> Base {
    let (capacity, chunk_size, writers) = match shape {
        Shape::Mixed => (16384, 1024, 3),
        Shape::RawKilled => (16384, 1024, 2),
        Shape::TypedYoung => (32768, 2048, 3),
    };
    let rec = Arc::new(
        Recorder::builder(path)
            .capacity(capacity)
            .chunk_size(chunk_size)
            .clock(Clock::Realtime)
            .heartbeat(None)
            .program("fuzz")
            .create()
            .expect("create base ring"),
    );
    let max_payload = rec.max_record_len() - RECORD_HEADER_LEN;
    let mut turns = Turns::new(writers);
    let appends = match shape {
        Shape::Mixed => 420u64,
        Shape::RawKilled => 160,
        Shape::TypedYoung => 40,
    };
    for n in 0..appends {
        let t = match shape {
            // Two writers at a time: threads 0 and 1, then (thread 0
            // ended) threads 1 and 2.
            Shape::TypedYoung => (n % 2) as usize,
            _ => (n % writers as u64) as usize,
        };
        let r = Arc::clone(&rec);
        match shape {
            Shape::Mixed => turns.run(t, move || {
                if n == 300 {
                    r.log_unpublished_for_test("never published");
                } else if n % 3 == 2 {
                    let size = [1, 7, 8, 9, 100, 500, max_payload][(n / 3 % 7) as usize];
                    let _ = r.append(&vec![n as u8 | 1; size]);
                } else {
                    event(&r, n);
                }
            }),
            Shape::RawKilled => turns.run(t, move || {
                let sizes = [1, 2, 7, 8, 9, 15, 16, 17, 63, 500, max_payload];
                let size = sizes[(n % sizes.len() as u64) as usize];
                let payload: Vec<u8> = (0..size).map(|i| (i as u64 ^ n) as u8).collect();
                let _ = r.append(&payload);
            }),
            Shape::TypedYoung => {
                if n == 20 {
                    // Thread 0 ends: its writer seals its chunk; thread 2
                    // appends from now on, a new writer.
                    turns.end(0);
                }
                turns.run(t, move || {
                    if n % 2 == 0 {
                        let _ = r.record(&(n, format!("typed {n}"), Some(n % 3 == 0)));
                    } else {
                        event(&r, n);
                    }
                });
            }
        }
        if shape == Shape::RawKilled && n == appends - 1 {
            let r = Arc::clone(&rec);
            turns.run(1, move || {
                r.log_unpublished_for_test("cut short by the kill");
            });
        }
    }
    // Closed (or, for `b`, left as if killed) while the writers' threads
    // still hold their last chunks, which stay owned.
    let rec = Arc::into_inner(rec).expect("the threads let go of the recorder");
    rec.close();
    drop(turns);
    let mut file = std::fs::read(path).expect("read base ring");
    normalize(&mut file, shape);
    let ring = blackbox_reader::Ring::from_bytes(file.clone()).expect("base ring is valid");
    let snap = ring.snapshot().expect("base snapshot");
    assert_eq!(snap.totals.corrupt, 0, "base ring");
    let (snap, model) = check::recover_and_check(&file).expect("base ring");
    assert!(!model.overlaps(), "base ring");
    let mut written = HashMap::new();
    let mut window = Vec::new();
    for r in &snap.records {
        let f = model.find(&file, r, snap.payload(r)).expect("in the model");
        written.insert(
            (r.writer, r.seq),
            Written {
                kind: r.kind,
                flags: r.flags,
                ts_unix_ns: r.ts_unix_ns,
                payload: snap.payload(r).to_vec(),
            },
        );
        window.push((
            r.writer,
            r.seq,
            model.geo.chunk(f.chunk),
            f.at + stride(f.len),
        ));
    }
    assert!(written.len() > 20, "base ring {} records", written.len());
    Base {
        file,
        written,
        window,
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Makes a base ring the same in every process: fixed header values and
/// thread ids, record times from writer and `seq`, checksums to match.
fn normalize(file: &mut [u8], shape: Shape) {
    put_u64(file, H_NONCE, 0x0123_4567_89ab_cdef);
    put_u64(file, H_START_UNIX_NS, 1_700_000_000_000_000_000);
    put_u32(file, H_PID, 4242);
    file[H_BOOT_ID..H_BOOT_ID + 16].fill(0x42);
    file[H_HOSTNAME..H_HOSTNAME + SHORT_STR_LEN].fill(0);
    file[H_HOSTNAME..H_HOSTNAME + 4].copy_from_slice(b"fuzz");
    put_u64(file, H_HEARTBEAT_UNIX_NS, 1_700_000_001_000_000_000);
    let close = if shape == Shape::RawKilled {
        0
    } else {
        1_700_000_002_000_000_000
    };
    put_u64(file, H_CLOSE_UNIX_NS, close);
    let state = if shape == Shape::RawKilled {
        STATE_RUNNING
    } else {
        STATE_EXITED
    };
    put_u32(file, H_STATE, state);
    match shape {
        Shape::Mixed => {
            put_u32(file, H_CLOCK, CLOCK_TSC);
            put_u64(file, H_CLOCK_CAL_COUNT, 3);
            // Slot 0: 0.4 ns per tick from 10^9 ticks at the start time.
            put_u64(file, H_CLOCK_BASE_TICKS, 1_000_000_000);
            put_u64(file, H_CLOCK_BASE_NS, 1_700_000_000_000_000_000);
            put_u64(file, H_CLOCK_MULT, (2u64 << CLOCK_SHIFT) / 5);
        }
        Shape::TypedYoung => {
            put_u32(file, H_CLOCK, CLOCK_TSC);
            put_u64(file, H_CLOCK_CAL_COUNT, 1);
        }
        Shape::RawKilled => {}
    }
    let geo = check::parse_header(file).expect("base header");
    let model = check::Model::walk(file, geo);
    for claim in &model.claims {
        let base = geo.chunk(claim.chunk);
        put_u32(file, base + C_THREAD_ID, 1000 + claim.writer);
        file[base + C_THREAD_NAME..base + C_THREAD_NAME + THREAD_NAME_LEN].fill(0);
        let name = format!("w{}", claim.writer);
        file[base + C_THREAD_NAME..base + C_THREAD_NAME + name.len()]
            .copy_from_slice(name.as_bytes());
        for r in &claim.records {
            let ts = 1_000_000_000 + r.seq * 10_000 + u64::from(r.writer);
            put_u64(file, r.at + R_TS, ts);
        }
        sign(file, &geo, claim.chunk);
    }
}

/// Gives every record chunk `i`'s claim frames the CRC of its current
/// header, length, `seq` and bytes.
fn sign(file: &mut [u8], geo: &check::Geo, i: usize) {
    let base = geo.chunk(i);
    let head: [u8; CHUNK_HEADER_LEN] = file[base..base + CHUNK_HEADER_LEN].try_into().unwrap();
    let gen = u64::from_le_bytes(head[C_GEN..C_GEN + 8].try_into().unwrap());
    let first_seq = u64::from_le_bytes(head[C_FIRST_SEQ..C_FIRST_SEQ + 8].try_into().unwrap());
    let mut off = CHUNK_HEADER_LEN;
    let mut k = 0u64;
    while off + RECORD_HEADER_LEN <= geo.chunk_size {
        let at = base + off;
        let c = u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
        let len = (c & 0xffff) as usize;
        if c >> COMMIT_LEN_BITS != commit_tag(gen)
            || len < RECORD_HEADER_LEN
            || len > geo.max_len
            || off + stride(len) > geo.chunk_size
        {
            break;
        }
        let seq = first_seq.wrapping_add(k);
        let crc = check::spec_crc(geo.nonce, &head, len, seq, &file[at..at + stride(len)]);
        put_u32(file, at + R_CRC, crc);
        off += stride(len);
        k += 1;
    }
}

/// The byte ranges the operations touched, and the file's length after
/// them (bytes cut off count as touched).
struct Touched {
    ranges: Vec<std::ops::Range<usize>>,
    len: usize,
}

impl Touched {
    fn note(&mut self, from: usize, to: usize) {
        self.ranges.push(from..to);
    }

    /// Whether any byte of `[from, to)` was touched.
    fn any(&self, from: usize, to: usize) -> bool {
        to > self.len || self.ranges.iter().any(|r| r.start < to && from < r.end)
    }
}

/// Applies the operations of `ops`; returns which file bytes they touched.
fn mutate(file: &mut Vec<u8>, ops: &[u8]) -> Touched {
    let mut touched = Touched {
        ranges: Vec::new(),
        len: file.len(),
    };
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
                touched.note(offset, offset + 1);
            }
            1 => {
                file[offset] ^= if value == 0 { 0x80 } else { value };
                touched.note(offset, offset + 1);
            }
            2 => {
                let old = u64::from_le_bytes(file[word..word + 8].try_into().unwrap());
                let new = old.wrapping_add((i64::from(value as i8) * 8) as u64);
                file[word..word + 8].copy_from_slice(&new.to_le_bytes());
                touched.note(word, word + 8);
            }
            _ if value == 0 => {
                file.truncate(offset);
                touched.len = touched.len.min(offset);
            }
            _ if value == 1 => {
                if let Some(geo) = check::parse_header(file) {
                    if (geo.data_offset..geo.data_offset + geo.capacity as usize).contains(&offset)
                    {
                        let i = (offset - geo.data_offset) / geo.chunk_size;
                        sign(file, &geo, i);
                        touched.note(geo.chunk(i), geo.chunk(i) + geo.chunk_size);
                    }
                }
            }
            _ => {
                let other = ((word + usize::from(value) * 8) % (file.len() - 7)) & !7;
                for i in 0..8 {
                    file.swap(word + i, other + i);
                }
                touched.note(word, word + 8);
                touched.note(other, other + 8);
            }
        }
    }
    touched
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, ops)) = input.split_first() else {
        return;
    };
    let base = &bases()[usize::from(pick) % bases().len()];
    let mut file = base.file.clone();
    let touched = mutate(&mut file, ops);
    let Some((snap, model)) = check::recover_and_check(&file) else {
        return;
    };
    let geo = model.geo;
    let nonce_touched = touched.any(H_NONCE, H_NONCE + 8);
    let header_touched = touched.any(0, HEADER_LEN);
    // Nothing false: untouched bytes that pass are what was written.
    for r in &snap.records {
        let f = model
            .find(&file, r, snap.payload(r))
            .expect("check.rs found it");
        let chunk = geo.chunk(f.chunk);
        if nonce_touched
            || touched.any(chunk, chunk + CHUNK_HEADER_LEN)
            || touched.any(f.at, f.at + stride(f.len))
        {
            continue;
        }
        let w = base.written.get(&(r.writer, r.seq)).unwrap_or_else(|| {
            panic!(
                "record ({}, {}) was never written, and no mutation touched it",
                r.writer, r.seq
            )
        });
        let got = Written {
            kind: r.kind,
            flags: r.flags,
            ts_unix_ns: if header_touched {
                w.ts_unix_ns
            } else {
                r.ts_unix_ns
            },
            payload: snap.payload(r).to_vec(),
        };
        assert_eq!(
            &got, w,
            "record ({}, {}) differs from what was written",
            r.writer, r.seq
        );
    }
    // Nothing lost: damage costs the damaged records and the rest of their
    // chunk only.
    let chunk_header_touched = (0..geo.chunk_count).any(|i| {
        let c = geo.chunk(i);
        touched.any(c, c + CHUNK_HEADER_LEN)
    });
    if touched.any(0, geo.data_offset)
        || chunk_header_touched
        || file.len() != base.file.len()
        || model.overlaps()
    {
        return;
    }
    let returned: std::collections::HashSet<(u32, u64)> =
        snap.records.iter().map(|r| (r.writer, r.seq)).collect();
    for &(writer, seq, chunk, end) in &base.window {
        if !touched.any(chunk, end) {
            assert!(
                returned.contains(&(writer, seq)),
                "record ({writer}, {seq}) was intact but is not returned ({} returned)",
                returned.len()
            );
        }
    }
});
