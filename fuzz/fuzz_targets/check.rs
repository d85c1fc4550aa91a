//! The oracle both targets share: recover a ring from bytes the way
//! `blackbox` does, and check the result against a model of the spec
//! (`shm-layout.md`, the header checks of section 3 and the reader's walk
//! of section 11) written here, independently of the reader.
//!
//! What it asserts (a failed assertion is a crash for libFuzzer):
//! - the reader never panics or overflows (libFuzzer catches that by
//!   itself: the targets are built with overflow checks) and its memory
//!   stays bounded (`-rss_limit_mb`, `-malloc_limit_mb`);
//! - it accepts exactly the files whose header passes the nine checks of
//!   section 3, and reads the geometry they give;
//! - nothing false: every record it returns is one the walk of section 11
//!   finds valid (COMMIT with its chunk's tag, a length the header allows,
//!   a matching CRC over its nonce, chunk header, length, `seq` and bytes),
//!   with exactly those bytes and fields; each writer's `seq`s increase;
//! - bounded work: every record the walk examines is counted once as
//!   valid, corrupt or torn (a claim that loses an overlap counts its
//!   records once more), and each takes at least 24 bytes of its chunk;
//! - where no two chunks of one writer overlap (so step 6 keeps every
//!   chunk), the window is exactly the model's, in the order of step 7,
//!   and the torn, corrupt and missing counts are the model's;
//! - decoding every payload (event, typed record) returns, whatever it
//!   holds.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use blackbox_reader::{decode_event, Record, Ring, Snapshot};
use blackbox_recorder::layout::*;

/// Largest `FIRST_SEQ` the reader takes; a larger one makes the chunk
/// corrupt. (The reader's bound, so that `FIRST_SEQ + k` cannot overflow;
/// section 11 does not name it.)
const MAX_SEQ: u64 = 1 << 62;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A record's CRC as section 5 defines it, computed from the definition:
/// CRC-32C over the nonce, the chunk header, `len`, `seq`, the record's
/// bytes from 24 to its stride, then its bytes 12 to 24. `record` is the
/// record's bytes from its start to its stride.
pub fn spec_crc(nonce: u64, head: &[u8], len: usize, seq: u64, record: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&nonce.to_le_bytes());
    c = crc32c::crc32c_append(c, head);
    c = crc32c::crc32c_append(c, &(len as u32).to_le_bytes());
    c = crc32c::crc32c_append(c, &seq.to_le_bytes());
    c = crc32c::crc32c_append(c, &record[RECORD_HEADER_LEN..stride(len)]);
    crc32c::crc32c_append(c, &record[R_CRC_START..RECORD_HEADER_LEN])
}

/// A header that passed the checks of section 3, and what section 11,
/// step 2 keeps of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geo {
    pub capacity: u64,
    pub chunk_size: usize,
    pub chunk_count: usize,
    pub data_offset: usize,
    pub nonce: u64,
    /// `min(CHUNK_SIZE - 64, max(MAX_RECORD_LEN, 24))`.
    pub max_len: usize,
    /// `(BASE_TICKS, BASE_NS, MULT)` of a `CLOCK_TSC` ring's current slot,
    /// when it has a usable one.
    pub calibration: Option<(u64, u64, u64)>,
}

impl Geo {
    /// File offset of chunk `i`.
    pub fn chunk(&self, i: usize) -> usize {
        self.data_offset + i * self.chunk_size
    }

    /// File offset of chunk `i`'s table word.
    pub fn table(&self, i: usize) -> usize {
        HEADER_LEN + 8 * i
    }

    /// A record's `TS` as Unix nanoseconds (section 8.5).
    pub fn unix_ns(&self, ts: u64) -> u64 {
        match self.calibration {
            Some((ticks, ns, mult)) => tsc_to_unix_ns(ts, ticks, ns, mult),
            None => ts,
        }
    }
}

/// The checks of section 3, in order; `None` when one fails.
pub fn parse_header(file: &[u8]) -> Option<Geo> {
    if file.len() < HEADER_LEN
        || file[..8] != MAGIC
        || u32_at(file, H_ENDIAN) != ENDIAN_CHECK
        || u32_at(file, H_VERSION) != VERSION
        || u32_at(file, H_HEADER_LEN) as usize != HEADER_LEN
        || u32_at(file, H_RECORD_HEADER_LEN) as usize != RECORD_HEADER_LEN
        || u32_at(file, H_CHUNK_HEADER_LEN) as usize != CHUNK_HEADER_LEN
        || u64_at(file, H_CHUNK_TABLE_OFFSET) != HEADER_LEN as u64
        || u32_at(file, H_INCOMPAT_FLAGS) != 0
    {
        return None;
    }
    let capacity = u64_at(file, H_CAPACITY);
    let chunk_size = u32_at(file, H_CHUNK_SIZE);
    let chunk_count = u32_at(file, H_CHUNK_COUNT);
    if !capacity.is_power_of_two()
        || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
        || !chunk_size.is_power_of_two()
        || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        || !(MIN_CHUNKS..=MAX_CHUNKS).contains(&chunk_count)
        || u64::from(chunk_size) * u64::from(chunk_count) != capacity
    {
        return None;
    }
    let data_offset = u64_at(file, H_DATA_OFFSET);
    if !data_offset.is_multiple_of(4096)
        || data_offset < HEADER_LEN as u64 + 8 * u64::from(chunk_count)
        || data_offset > 1 << 40
        || (file.len() as u64) < data_offset + capacity
    {
        return None;
    }
    let clock = u32_at(file, H_CLOCK);
    if clock != CLOCK_REALTIME_NS && clock != CLOCK_TSC {
        return None;
    }
    let calibration = if clock == CLOCK_TSC {
        let count = u64_at(file, H_CLOCK_CAL_COUNT);
        count.checked_sub(1).and_then(|c| {
            let slot = H_CLOCK_BASE_TICKS + (c % CLOCK_SLOTS as u64) as usize * CLOCK_SLOT_LEN;
            let cal = (
                u64_at(file, slot),
                u64_at(file, slot + 8),
                u64_at(file, slot + 16),
            );
            (cal.2 != 0).then_some(cal)
        })
    } else {
        None
    };
    let stated = u32_at(file, H_MAX_RECORD_LEN) as usize;
    Some(Geo {
        capacity,
        chunk_size: chunk_size as usize,
        chunk_count: chunk_count as usize,
        data_offset: data_offset as usize,
        nonce: u64_at(file, H_NONCE),
        max_len: max_record_len(chunk_size).min(stated.max(RECORD_HEADER_LEN)),
        calibration,
    })
}

/// A record the walk of section 11 finds valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub chunk: usize,
    /// File offset of the record.
    pub at: usize,
    pub len: usize,
    pub writer: u32,
    pub seq: u64,
    pub thread_id: u32,
    pub kind: u16,
    pub flags: u16,
    pub ts_unix_ns: u64,
}

/// A chunk whose table word and header passed their checks.
#[derive(Clone, Debug)]
pub struct Claim {
    pub chunk: usize,
    pub writer: u32,
    pub gen: u64,
    pub first_seq: u64,
    /// Records walked, valid or corrupt: the `seq`s the claim holds.
    pub used: u64,
    pub records: Vec<Found>,
}

/// What section 11, step 5 makes of a file.
pub struct Model {
    pub geo: Geo,
    pub claims: Vec<Claim>,
    /// Chunks and records counted corrupt by the walk.
    pub corrupt: u64,
    pub torn: u64,
    /// Records the walk examined (valid, corrupt or torn).
    pub examined: u64,
    /// Where each valid `(writer, seq)` is: (claim, record) indexes.
    index: HashMap<(u32, u64), Vec<(usize, usize)>>,
}

impl Model {
    /// Walks every chunk of `file` once (section 11, step 5).
    pub fn walk(file: &[u8], geo: Geo) -> Model {
        let mut model = Model {
            geo,
            claims: Vec::new(),
            corrupt: 0,
            torn: 0,
            examined: 0,
            index: HashMap::new(),
        };
        let count = geo.chunk_count as u64;
        for i in 0..geo.chunk_count {
            let word = u64_at(file, geo.table(i));
            let (state, visits) = (table_state(word), table_visits(word));
            if state == CHUNK_CLAIMED || (state == CHUNK_FREE && visits == 0) {
                continue;
            }
            if state == CHUNK_FREE {
                model.corrupt += 1;
                continue;
            }
            let base = geo.chunk(i);
            let head: [u8; CHUNK_HEADER_LEN] =
                file[base..base + CHUNK_HEADER_LEN].try_into().unwrap();
            let gen = u64_at(&head, C_GEN);
            let first_seq = u64_at(&head, C_FIRST_SEQ);
            if gen % count != i as u64 || gen / count >= visits || first_seq > MAX_SEQ {
                model.corrupt += 1;
                continue;
            }
            let writer = u32_at(&head, C_WRITER);
            let thread_id = u32_at(&head, C_THREAD_ID);
            let tag = commit_tag(gen);
            let mut claim = Claim {
                chunk: i,
                writer,
                gen,
                first_seq,
                used: 0,
                records: Vec::new(),
            };
            let mut off = CHUNK_HEADER_LEN;
            while off + RECORD_HEADER_LEN <= geo.chunk_size {
                let at = base + off;
                let c = u64_at(file, at + R_COMMIT);
                if c >> COMMIT_LEN_BITS != tag {
                    break;
                }
                let len = (c & 0xffff) as usize;
                model.examined += 1;
                if len == 0 {
                    model.torn += 1;
                    break;
                }
                if len < RECORD_HEADER_LEN
                    || len > geo.max_len
                    || off + stride(len) > geo.chunk_size
                {
                    model.corrupt += 1;
                    break;
                }
                let seq = first_seq + claim.used;
                let record = &file[at..at + stride(len)];
                if u32_at(file, at + R_CRC) == spec_crc(geo.nonce, &head, len, seq, record) {
                    claim.records.push(Found {
                        chunk: i,
                        at,
                        len,
                        writer,
                        seq,
                        thread_id,
                        kind: u16_at(file, at + R_KIND),
                        flags: u16_at(file, at + R_FLAGS),
                        ts_unix_ns: geo.unix_ns(u64_at(file, at + R_TS)),
                    });
                } else {
                    model.corrupt += 1;
                }
                claim.used += 1;
                off += stride(len);
            }
            model.claims.push(claim);
        }
        for (c, claim) in model.claims.iter().enumerate() {
            for (r, f) in claim.records.iter().enumerate() {
                model
                    .index
                    .entry((f.writer, f.seq))
                    .or_default()
                    .push((c, r));
            }
        }
        model
    }

    /// The claims of each writer, in the order of step 6: by `FIRST_SEQ`,
    /// then `GEN`.
    fn runs(&self) -> BTreeMap<u32, Vec<&Claim>> {
        let mut by: BTreeMap<u32, Vec<&Claim>> = BTreeMap::new();
        for c in &self.claims {
            by.entry(c.writer).or_default().push(c);
        }
        for runs in by.values_mut() {
            runs.sort_by_key(|c| (c.first_seq, c.gen));
        }
        by
    }

    /// Whether two claims of one writer may count as overlapping: ranges
    /// that share a `seq`, or an empty range that starts inside another
    /// (a comparison of starts and ends that a reader may make either
    /// way). Step 6 then drops one of them.
    pub fn overlaps(&self) -> bool {
        self.runs().values().any(|runs| {
            runs.windows(2)
                .any(|w| w[1].first_seq < w[0].first_seq + w[0].used)
        })
    }

    /// Without overlaps: the window in the order of step 7 (each writer's
    /// records in `seq` order, merged by time, ties by writer and `seq`),
    /// and the `seq`s missing from the middle of the writers' runs.
    pub fn window(&self) -> (Vec<&Found>, u128) {
        let mut holes = 0u128;
        let mut streams: Vec<Vec<&Found>> = Vec::new();
        for runs in self.runs().values() {
            for w in runs.windows(2) {
                holes += u128::from(w[1].first_seq - (w[0].first_seq + w[0].used));
            }
            let stream: Vec<&Found> = runs.iter().flat_map(|c| c.records.iter()).collect();
            if !stream.is_empty() {
                streams.push(stream);
            }
        }
        let mut heads = vec![0usize; streams.len()];
        let mut heap: BinaryHeap<Reverse<(u64, u32, u64, usize)>> = streams
            .iter()
            .enumerate()
            .map(|(k, s)| Reverse((s[0].ts_unix_ns, s[0].writer, s[0].seq, k)))
            .collect();
        let mut out = Vec::new();
        while let Some(Reverse((_, _, _, k))) = heap.pop() {
            out.push(streams[k][heads[k]]);
            heads[k] += 1;
            if let Some(r) = streams[k].get(heads[k]) {
                heap.push(Reverse((r.ts_unix_ns, r.writer, r.seq, k)));
            }
        }
        (out, holes)
    }

    /// The valid record the walk found that `record` (whose payload is
    /// `payload`) is: one with its writer, `seq` and bytes, and of those
    /// the one with its length, kind, flags, time and thread, if any. Two
    /// claims of one writer that overlap can each hold a valid record of
    /// the same `seq` and bytes with another time; the reader keeps one.
    pub fn find(&self, file: &[u8], record: &Record, payload: &[u8]) -> Option<&Found> {
        let fields = |f: &Found| (f.len, f.kind, f.flags, f.ts_unix_ns, f.thread_id);
        let want = (
            record.len as usize,
            record.kind,
            record.flags,
            record.ts_unix_ns,
            record.thread_id,
        );
        let mut same_bytes = self
            .index
            .get(&(record.writer, record.seq))?
            .iter()
            .map(|&(c, r)| &self.claims[c].records[r])
            .filter(|f| &file[f.at + RECORD_HEADER_LEN..f.at + f.len] == payload);
        let first = same_bytes.next()?;
        if fields(first) == want {
            return Some(first);
        }
        Some(same_bytes.find(|f| fields(f) == want).unwrap_or(first))
    }
}

/// Opens `file` as a ring and takes a snapshot, and checks both against
/// the model. `None` if the header is refused (which the model must agree
/// with); else the snapshot and the model, for the caller's own checks.
pub fn recover_and_check(file: &[u8]) -> Option<(Snapshot, Model)> {
    let geo = parse_header(file);
    let ring = match Ring::from_bytes(file.to_vec()) {
        Ok(ring) => ring,
        Err(e) => {
            assert!(geo.is_none(), "the reader refused a valid header: {e}");
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "error is not one line: {msg:?}"
            );
            return None;
        }
    };
    let geo = geo.expect("the reader accepted a header that fails the checks of section 3");
    let _ = ring.state();
    let snap = ring.snapshot().expect("a snapshot of bytes in memory");
    let h = &snap.header;
    assert_eq!(
        (h.capacity, h.chunk_size as usize, h.chunk_count as usize),
        (geo.capacity, geo.chunk_size, geo.chunk_count)
    );
    assert_eq!(
        (h.data_offset as usize, h.nonce),
        (geo.data_offset, geo.nonce)
    );
    assert_eq!(h.max_record_len, geo.max_len);
    let model = Model::walk(file, geo);
    check_snapshot(file, &snap, &model);
    Some((snap, model))
}

fn check_snapshot(file: &[u8], snap: &Snapshot, model: &Model) {
    let geo = &model.geo;
    let t = snap.totals;
    // Bounded work and memory: one count per record examined (twice for a
    // claim that lost an overlap), at least 24 bytes each.
    let bound = geo.capacity / RECORD_HEADER_LEN as u64 + geo.chunk_count as u64;
    assert!(model.examined <= bound);
    assert!(snap.records.len() as u64 + t.torn <= model.examined);
    assert!(
        t.corrupt <= 2 * bound,
        "corrupt {} for {bound} records",
        t.corrupt
    );

    // Nothing false.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &snap.records {
        let found = model.find(file, r, snap.payload(r)).unwrap_or_else(|| {
            panic!(
                "record ({}, {}) of {} bytes is not a valid record of the file",
                r.writer, r.seq, r.len
            )
        });
        assert_eq!(
            (r.len as usize, r.kind, r.flags, r.ts_unix_ns, r.thread_id),
            (
                found.len,
                found.kind,
                found.flags,
                found.ts_unix_ns,
                found.thread_id
            ),
            "fields of record ({}, {})",
            r.writer,
            r.seq
        );
        if let Some(prev) = last.insert(r.writer, r.seq) {
            assert!(
                prev < r.seq,
                "writer {}: seq {} after {prev}",
                r.writer,
                r.seq
            );
        }
        decode(r.kind, snap.payload(r));
        let _ = snap.gap_before(r);
    }
    let _ = snap.snapshot_reason(&snap.header);
    let _ = (snap.complete_from_unix_ns(), snap.appended());

    // Exactly the model's window, where step 6 keeps every chunk.
    if !model.overlaps() {
        let (window, holes) = model.window();
        let got: Vec<(u32, u64, usize)> = snap
            .records
            .iter()
            .map(|r| (r.writer, r.seq, r.len as usize))
            .collect();
        let want: Vec<(u32, u64, usize)> =
            window.iter().map(|f| (f.writer, f.seq, f.len)).collect();
        assert_eq!(got, want, "the window");
        assert_eq!(
            (t.corrupt, t.torn),
            (model.corrupt, model.torn),
            "corrupt, torn"
        );
        assert_eq!(u128::from(t.holes), holes, "missing");
    }
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
            if let Ok(t) = blackbox_reader::typed::parse_typed(payload) {
                // Any value as JSON (what `read` shows), then a few shapes,
                // so the CBOR decoder meets lengths, strings and options.
                let _ = t.to_json();
                let _ = t.decode_as::<(u32, String)>();
                let _ = t.decode_as::<Vec<String>>();
                let _ = t.decode_as::<(i64, Option<bool>, Vec<u64>)>();
            }
        }
        _ => {}
    }
}
