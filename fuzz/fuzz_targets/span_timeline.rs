//! The span decoder and the timeline export on hostile span records.
//!
//! Setup (once per process) writes a ring with the recorder: three writers
//! taking turns (so the chunks they claim do not depend on thread timing),
//! each appending raw records of 40 bytes of payload, and fixes what
//! differs between runs (the nonce, the thread ids). The input then
//! rewrites every record, 8 input bytes per record while they last
//! `[kind, a, b, c, d, e, f, g]`:
//! - `kind % 8`: 0 a step (`a % 8` the span id, 0 included; `b % 5` the
//!   step, 0 and 4 unknown; `c % 12` the name length, past the payload when
//!   large), 1 a creation (`a % 8` id, `b % 9` parent, `c` the event's
//!   level, `d % 4` its field count), 2 recorded values, 3 a follows-from
//!   link, 4 an event with `spans` and `span_id` = `a % 8`, 5..7 a span
//!   kind (4 + `kind % 4`) over the input's own bytes;
//! - `e`: the time step to the next record (0 makes equal times), `f`, `g`:
//!   more payload bytes.
//!
//! Then every record gets its checksum back, and the file is read as
//! `blackbox export` reads it. Checks: no panic; the export is valid JSON;
//! its slices nest on every track; it has at most one slice per step record
//! and one instant per other record (plus the markers); memory stays
//! bounded (`-rss_limit_mb`); decoding each span record returns.
#![no_main]

use std::sync::OnceLock;

use blackbox_reader::span::{decode_span, is_span_kind};
use blackbox_reader::trace_event::write_trace_event;
use blackbox_reader::{Ring, State};
use blackbox_recorder::layout::*;
use blackbox_recorder::{Clock, Recorder};
use libfuzzer_sys::fuzz_target;

const PAYLOAD: usize = 40;
const PER_WRITER: usize = 150;

struct Template {
    file: Vec<u8>,
    /// (record offset, chunk offset, seq), in writer then seq order.
    records: Vec<(usize, usize, u64)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bbx-fuzz-spans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.ring");
        let rec = std::sync::Arc::new(
            Recorder::builder(&path)
                .capacity(64 << 10)
                .chunk_size(4096)
                .heartbeat(None)
                .clock(Clock::Realtime)
                .create()
                .unwrap(),
        );
        for _ in 0..3 {
            let rec = std::sync::Arc::clone(&rec);
            std::thread::spawn(move || {
                for _ in 0..PER_WRITER {
                    rec.append(&[0u8; PAYLOAD]).unwrap();
                }
            })
            .join()
            .unwrap();
        }
        std::sync::Arc::try_unwrap(rec).ok().unwrap().close();
        let mut file = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        file[H_NONCE..H_NONCE + 8].copy_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes());
        let chunk_size = u32_at(&file, H_CHUNK_SIZE) as usize;
        let count = u32_at(&file, H_CHUNK_COUNT) as usize;
        let data = u64_at(&file, H_DATA_OFFSET) as usize;
        let mut records = Vec::new();
        for i in 0..count {
            let state = table_state(u64_at(&file, HEADER_LEN + 8 * i));
            if state != CHUNK_OWNED && state != CHUNK_SEALED {
                continue;
            }
            let chunk_at = data + i * chunk_size;
            let writer = u32_at(&file, chunk_at + C_WRITER);
            // The same thread ids in every run.
            file[chunk_at + C_THREAD_ID..chunk_at + C_THREAD_ID + 4]
                .copy_from_slice(&(1000 + writer).to_le_bytes());
            let gen = u64_at(&file, chunk_at + C_GEN);
            let first_seq = u64_at(&file, chunk_at + C_FIRST_SEQ);
            let mut offset = CHUNK_HEADER_LEN;
            let mut k = 0;
            while offset + RECORD_HEADER_LEN <= chunk_size {
                let commit = u64_at(&file, chunk_at + offset);
                let len = (commit & 0xffff) as usize;
                if commit >> COMMIT_LEN_BITS != commit_tag(gen) || len < RECORD_HEADER_LEN {
                    break;
                }
                records.push((writer, first_seq + k, chunk_at + offset, chunk_at));
                offset += stride(len);
                k += 1;
            }
        }
        records.sort();
        Template {
            file,
            records: records.into_iter().map(|(_, seq, at, chunk)| (at, chunk, seq)).collect(),
        }
    })
}

fn step_payload(out: &mut [u8], id: u64, op: u8, name_len: u8) {
    out[SP_ID..SP_ID + 8].copy_from_slice(&id.to_le_bytes());
    out[SP_OP] = op;
    out[SP_NAME_LEN] = name_len;
    for (i, b) in out[SPAN_STEP_FIXED_LEN..].iter_mut().enumerate() {
        *b = b'a' + (i % 3) as u8;
    }
}

fuzz_target!(|input: &[u8]| {
    let t = template();
    let mut file = t.file.clone();
    let nonce = u64_at(&file, H_NONCE);
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut steps = 0usize;
    for (i, &(at, chunk_at, seq)) in t.records.iter().enumerate() {
        // Past the input: a follows-from link, which adds nothing to the
        // export (keeps the target fast on short inputs).
        let op = input.get(i * 8..i * 8 + 8).unwrap_or(&[3, 1, 0, 0, 1, 0, 0, 0]);
        let [sel, a, b, c, d, e, f, g] = op.try_into().unwrap();
        let p = &mut file[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + PAYLOAD];
        p.fill(0);
        let id = u64::from(a % 8);
        let kind = match sel % 8 {
            0 => {
                step_payload(p, id, b % 5, c % 12);
                steps += 1;
                KIND_SPAN_STEP
            }
            1 => {
                p[SP_ID..SP_ID + 8].copy_from_slice(&id.to_le_bytes());
                p[SP_PARENT..SP_PARENT + 8].copy_from_slice(&u64::from(b % 9).to_le_bytes());
                let ev = &mut p[SPAN_NEW_FIXED_LEN..];
                ev[E_LEVEL] = c;
                ev[E_FIELD_COUNT] = d % 4;
                ev[E_MESSAGE_LEN] = 2;
                ev[EVENT_FIXED_LEN] = b's';
                ev[EVENT_FIXED_LEN + 1] = b'0' + a % 8;
                ev[EVENT_FIXED_LEN + 2] = FIELD_BOOL;
                ev[EVENT_FIXED_LEN + 3] = 1;
                ev[EVENT_FIXED_LEN + 4] = b'x';
                ev[EVENT_FIXED_LEN + 5] = f;
                ev[EVENT_FIXED_LEN + 6] = g;
                KIND_SPAN_NEW
            }
            2 => {
                p[SP_ID..SP_ID + 8].copy_from_slice(&id.to_le_bytes());
                let ev = &mut p[SPAN_RECORD_FIXED_LEN..];
                ev[E_FIELD_COUNT] = d % 3;
                ev[EVENT_FIXED_LEN] = FIELD_U64;
                ev[EVENT_FIXED_LEN + 1] = 1;
                ev[EVENT_FIXED_LEN + 2] = b'n';
                ev[EVENT_FIXED_LEN + 3] = f;
                KIND_SPAN_RECORD
            }
            3 => {
                p[SP_ID..SP_ID + 8].copy_from_slice(&id.to_le_bytes());
                p[SP_FOLLOWS..SP_FOLLOWS + 8].copy_from_slice(&u64::from(b % 9).to_le_bytes());
                KIND_SPAN_FOLLOWS
            }
            4 => {
                // An event: "spans" = "s0:s1", span_id = id.
                let mut ev = vec![LEVEL_INFO, 2, 0, 0, 0, 0, 0, 0];
                ev.extend_from_slice(&[FIELD_STR, 5, b's', b'p', b'a', b'n', b's', 5, 0]);
                ev.extend_from_slice(b"s0:s1");
                ev.extend_from_slice(&[FIELD_U64, 7]);
                ev.extend_from_slice(b"span_id");
                ev.extend_from_slice(&id.to_le_bytes());
                let n = ev.len().min(PAYLOAD);
                p[..n].copy_from_slice(&ev[..n]);
                KIND_EVENT
            }
            k => {
                // Hostile bytes from the input itself.
                let rest = input.get(i * 8 + 1..).unwrap_or(&[]);
                let n = rest.len().min(PAYLOAD);
                p[..n].copy_from_slice(&rest[..n]);
                if u16::from(k) % 4 + KIND_SPAN_NEW == KIND_SPAN_STEP {
                    steps += 1;
                }
                u16::from(k) % 4 + KIND_SPAN_NEW
            }
        };
        ts += u64::from(e) * 1000;
        file[at + R_KIND..at + R_KIND + 2].copy_from_slice(&kind.to_le_bytes());
        file[at + R_TS..at + R_TS + 8].copy_from_slice(&ts.to_le_bytes());
        let len = RECORD_HEADER_LEN + PAYLOAD;
        let header: [u8; CHUNK_HEADER_LEN] =
            file[chunk_at..chunk_at + CHUNK_HEADER_LEN].try_into().unwrap();
        let crc = record_crc_of(crc_seed(nonce, &header), seq, &file[at..at + stride(len)]);
        file[at + R_CRC..at + R_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    let ring = Ring::from_bytes(file).expect("the template is a valid ring");
    let snap = ring.snapshot().expect("a snapshot");
    assert_eq!(snap.records.len(), t.records.len(), "every record is valid");
    for r in &snap.records {
        if is_span_kind(r.kind) {
            let _ = decode_span(r.kind, snap.payload(r));
        }
    }
    let state = ring.state().unwrap_or(State::Exited);
    let mut out = Vec::new();
    let stats = write_trace_event(&snap, state, &mut out).expect("writing to memory");
    assert!(stats.slices <= steps, "{} slices from {steps} steps", stats.slices);
    let trace: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let mut tracks: std::collections::BTreeMap<u64, Vec<(u64, u64)>> = Default::default();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        // Back to whole nanoseconds: the export writes three decimals.
        let start = (e["ts"].as_f64().unwrap() * 1e3).round() as u64;
        let end = start + (e["dur"].as_f64().unwrap() * 1e3).round() as u64;
        tracks.entry(e["tid"].as_u64().unwrap()).or_default().push((start, end));
    }
    for (tid, mut slices) in tracks {
        slices.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut stack: Vec<u64> = Vec::new();
        // JSON numbers are doubles: far from the window's start (a close
        // time long after the records) they keep fewer nanosecond digits.
        let slack = |ns: u64| ns >> 50;
        for (start, end) in slices {
            while stack.last().is_some_and(|&e| e <= start + slack(start)) {
                stack.pop();
            }
            if let Some(&outer) = stack.last() {
                assert!(
                    end <= outer + slack(outer),
                    "track {tid}: {start}..{end} overlaps ..{outer}"
                );
            }
            stack.push(end);
        }
    }
});
