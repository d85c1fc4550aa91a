//! Hostile ring files: the reader trusts nothing, never panics, never
//! loops, never allocates what a header claims, and never shows a damaged
//! record as valid (`shm-layout.md`, section 1's general rules, the header
//! checks of section 3 and the reader's algorithm of section 11).
//!
//! Every file is run through every subcommand of the real `blackbox` binary
//! (`info`, `info --json`, `read`, `read --json`, `verify`) under a timeout:
//! a file that cannot be read is refused with one line on stderr and exit
//! status 2; damage inside a readable ring shows only records that were
//! written and makes `verify` fail (exit 1) with one line. Valid rings are
//! made with the recorder library and then patched at the offsets of
//! `blackbox_recorder::layout`; where a case needs a record the CRC accepts (forged
//! chunk headers, the crafted ring), the test writes the checksums itself,
//! as anyone who can write the file can.
//!
//! The tests walk the files themselves as section 11 says ([`walk`]), to
//! find chunks and records to damage, independently of the reader.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use blackbox_reader::{decode_event, FieldValue, Gap, Ring, Snapshot};
use blackbox_recorder::layout::*;
use blackbox_recorder::{Clock, Field, Level, Recorder};
use common::TempDir;
use serde_json::{json, Value};

/// A hostile file must never keep `blackbox` busy this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Every way of looking at a ring.
const SUBCOMMANDS: [&[&str]; 5] = [
    &["info"],
    &["info", "--json"],
    &["read"],
    &["read", "--json"],
    &["verify"],
];

/// The refusal of a version 1 file (`shm-layout.md`, section 3, check 4).
const VERSION_1_REFUSAL: &str =
    "ring layout version 1 is not supported (this blackbox reads version 2; use a matching blackbox)";

// ---------------------------------------------------------------------------
// Heap use per thread, for the memory bounds.

/// The system allocator, counting each thread's live heap bytes and their
/// peak: the reader allocates on the calling thread, so a test measures
/// what one call of the library costs without the other tests' noise.
/// (Large snapshot buffers are anonymous mappings, not heap; their size is
/// the validated capacity.)
struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

thread_local! {
    /// (live bytes, peak live bytes) allocated by this thread. Const
    /// initialised, without a destructor: safe to touch from the allocator.
    static HEAP: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
}

fn heap_note(delta: isize) {
    let _ = HEAP.try_with(|h| {
        let (now, peak) = h.get();
        let now = now + delta;
        h.set((now, peak.max(now)));
    });
}

// SAFETY: every call goes to `System` unchanged; the bookkeeping touches
// only a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            heap_note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(p, layout) };
        heap_note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            heap_note(new_size as isize - layout.size() as isize);
        }
        q
    }
}

/// Runs `f` and returns its result with the most heap bytes it held at
/// once on this thread (beyond what was live when it started).
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HEAP.with(|h| {
        let (now, _) = h.get();
        h.set((now, now));
        now
    });
    let out = f();
    let peak = HEAP.with(|h| h.get().1);
    (out, (peak - start).max(0) as usize)
}

// ---------------------------------------------------------------------------
// Running the binary.

/// Runs `cmd` to completion; kills it and fails if it runs past [`TIMEOUT`].
fn run_bounded(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn blackbox");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let mut nap = Duration::from_micros(500);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for blackbox") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {TIMEOUT:?}, killed \
                 (a hostile file must not make blackbox block or loop)"
            );
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `blackbox SUB PATH FLAGS...` under the timeout.
fn run_sub(sub: &[&str], path: &Path) -> Output {
    let mut cmd = common::blackbox();
    cmd.arg(sub[0]).arg(path).args(&sub[1..]);
    run_bounded(
        cmd,
        &format!("blackbox {} {}", sub.join(" "), path.display()),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Human summary of a run for assertion messages.
fn describe(o: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        o.status.signal(),
        text(&o.stdout).chars().take(2000).collect::<String>(),
        text(&o.stderr)
    )
}

/// No panic, no backtrace, whatever the outcome.
fn assert_no_panic(o: &Output, ctx: &str) {
    let err = text(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("backtrace"),
        "{ctx}: blackbox panicked\n{}",
        describe(o)
    );
    assert!(
        o.status.signal().is_none(),
        "{ctx}: blackbox died by a signal\n{}",
        describe(o)
    );
}

/// Exactly one non-empty line on stderr, starting `blackbox: `.
fn assert_one_error_line(o: &Output, ctx: &str) {
    assert_no_panic(o, ctx);
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("blackbox: ")
            && lines[0].len() > "blackbox: ".len()
            && err.ends_with('\n'),
        "{ctx}: expected exactly one line `blackbox: ...` on stderr\n{}",
        describe(o)
    );
}

/// The run failed as an error: status 2, one line on stderr, nothing on stdout.
fn assert_refused(o: &Output, ctx: &str) {
    assert_one_error_line(o, ctx);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{ctx}: exit status\n{}",
        describe(o)
    );
    assert!(
        o.stdout.is_empty(),
        "{ctx}: printed output\n{}",
        describe(o)
    );
}

/// Every subcommand refuses the file.
fn expect_refused(path: &Path, ctx: &str) {
    for sub in SUBCOMMANDS {
        let o = run_sub(sub, path);
        assert_refused(&o, &format!("{ctx}: blackbox {}", sub.join(" ")));
    }
}

/// Every subcommand refuses the file, and the reason mentions `needle`.
fn expect_refused_saying(path: &Path, ctx: &str, needle: &str) {
    for sub in SUBCOMMANDS {
        let o = run_sub(sub, path);
        let ctx = format!("{ctx}: blackbox {}", sub.join(" "));
        assert_refused(&o, &ctx);
        assert!(
            text(&o.stderr).contains(needle),
            "{ctx}: the error should mention {needle:?}\n{}",
            describe(&o)
        );
    }
}

/// What `info --json`, `read --json` and `verify` made of a readable ring.
struct Seen {
    records: Vec<Value>,
    info: Value,
    verify: Output,
}

/// A ring the reader must read: `info` and `read` succeed quietly and show
/// only records that were written; `verify` says one line (exit 0 or 1).
fn expect_readable(path: &Path, ctx: &str, written: &[Ev]) -> Seen {
    let mut records = Vec::new();
    let mut info = Value::Null;
    let mut verify = None;
    for sub in SUBCOMMANDS {
        let o = run_sub(sub, path);
        let ctx = format!("{ctx}: blackbox {}", sub.join(" "));
        if sub[0] == "verify" {
            assert_no_panic(&o, &ctx);
            match o.status.code() {
                Some(0) => assert!(o.stderr.is_empty(), "{ctx}: {}", describe(&o)),
                Some(1) => assert_one_error_line(&o, &ctx),
                _ => panic!("{ctx}: verify must exit 0 or 1\n{}", describe(&o)),
            }
            verify = Some(o);
            continue;
        }
        assert_no_panic(&o, &ctx);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{ctx}: expected success with nothing on stderr\n{}",
            describe(&o)
        );
        match sub {
            ["read", "--json"] => records = only_written_records(&o, &ctx, written),
            ["info", "--json"] => {
                info = serde_json::from_slice(&o.stdout)
                    .unwrap_or_else(|e| panic!("{ctx}: not JSON ({e})\n{}", describe(&o)))
            }
            _ => {}
        }
    }
    Seen {
        records,
        info,
        verify: verify.expect("verify ran"),
    }
}

/// Damage the reader tolerates: as [`expect_readable`], and `verify` must
/// report the damage (exit 1).
fn expect_flagged(path: &Path, ctx: &str, written: &[Ev]) -> Seen {
    let seen = expect_readable(path, ctx, written);
    assert_eq!(
        seen.verify.status.code(),
        Some(1),
        "{ctx}: verify must report the damage (exit 1)\n{}",
        describe(&seen.verify)
    );
    seen
}

/// A ring that is consistent: as [`expect_readable`], and `verify` passes.
fn expect_consistent(path: &Path, ctx: &str, written: &[Ev]) -> Seen {
    let seen = expect_readable(path, ctx, written);
    assert_eq!(
        seen.verify.status.code(),
        Some(0),
        "{ctx}: verify must pass\n{}",
        describe(&seen.verify)
    );
    seen
}

/// Parses `read --json` output and checks every record is one that was
/// written, and that each writer's `seq` increases.
fn only_written_records(o: &Output, ctx: &str, written: &[Ev]) -> Vec<Value> {
    let records: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{ctx}: line is not JSON ({e}): {l}"))
        })
        .collect();
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        assert!(
            written.iter().any(|ev| ev.matches_json(r)),
            "{ctx}: read shows a record that was never written: {r}"
        );
        let (w, seq) = json_key(r);
        if let Some(prev) = last.insert(w, seq) {
            assert!(prev < seq, "{ctx}: writer {w}: seq {prev} before {seq}");
        }
    }
    records
}

/// `(writer, seq)` of a `read --json` record.
fn json_key(r: &Value) -> (u64, u64) {
    (
        r["writer"].as_u64().expect("writer"),
        r["seq"].as_u64().expect("seq"),
    )
}

/// A `read --json` record without its `gap_before` (which moves with damage
/// elsewhere in its writer's run).
fn strip_gap(r: &Value) -> Value {
    let mut r = r.clone();
    r.as_object_mut().expect("object").remove("gap_before");
    r
}

/// The records of `got` are exactly those of `clean` less `lost` (by
/// `(writer, seq)`), each exactly as it was.
fn assert_window(got: &[Value], clean: &[Value], lost: &HashSet<(u64, u64)>, ctx: &str) {
    let want: Vec<Value> = clean
        .iter()
        .filter(|r| !lost.contains(&json_key(r)))
        .map(strip_gap)
        .collect();
    let got: Vec<Value> = got.iter().map(strip_gap).collect();
    if got != want {
        let keys = |v: &[Value]| v.iter().map(json_key).collect::<Vec<_>>();
        panic!(
            "{ctx}: window differs\n  expected {:?}\n  got      {:?}",
            keys(&want),
            keys(&got)
        );
    }
}

/// The counts `info --json` reports: (corrupt, torn, missing).
fn losses(info: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        info[k]
            .as_u64()
            .unwrap_or_else(|| panic!("info --json has no {k}: {info}"))
    };
    (n("corrupt"), n("torn"), n("missing"))
}

/// Runs `check`, turning a failed assertion into its message.
fn soft(check: impl FnOnce()) -> Option<String> {
    std::panic::catch_unwind(AssertUnwindSafe(check))
        .err()
        .map(|e| panic_text(e.as_ref()))
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".to_string())
}

/// Fails with every message in `failures`, if there is any.
fn assert_no_failures(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} of the {what} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------
// Rings with known content.

/// One event as written, to compare with what is read back.
#[derive(Clone, Debug)]
struct Ev {
    level: Level,
    message: String,
    i: u64,
    neg: i64,
    ok: bool,
    name: String,
    ratio: f64,
}

const TARGET: &str = "hostile::test";

impl Ev {
    fn new(k: u64) -> Ev {
        let levels = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ];
        Ev {
            level: levels[k as usize % levels.len()],
            message: format!("event number {k}"),
            i: k,
            neg: -(k as i64) * 1000 - 7,
            ok: k % 2 == 0,
            name: format!("name-{k}"),
            ratio: k as f64 + 0.25,
        }
    }

    fn log(&self, rec: &Recorder) -> u64 {
        rec.log(
            self.level,
            TARGET,
            &self.message,
            &[
                Field::new("i", self.i),
                Field::new("neg", self.neg),
                Field::new("ok", self.ok),
                Field::new("name", self.name.as_str()),
                Field::new("ratio", self.ratio),
            ],
        )
        .expect("log")
    }

    fn matches_event(&self, e: &blackbox_reader::Event<'_>) -> bool {
        let fields: Vec<(&str, FieldValue<'_>)> = e
            .fields
            .iter()
            .map(|(n, v)| (n.as_ref(), v.clone()))
            .collect();
        e.level() == Some(self.level)
            && e.flags == 0
            && e.target == TARGET
            && e.message == self.message
            && fields
                == [
                    ("i", FieldValue::U64(self.i)),
                    ("neg", FieldValue::I64(self.neg)),
                    ("ok", FieldValue::Bool(self.ok)),
                    ("name", FieldValue::Str(self.name.as_str().into())),
                    ("ratio", FieldValue::F64(self.ratio)),
                ]
    }

    fn matches_json(&self, r: &Value) -> bool {
        r["kind"] == "event"
            && r.get("decode_error").is_none()
            && r.get("truncated").is_none()
            && r["level"] == self.level.as_str()
            && r["target"] == TARGET
            && r["message"] == self.message.as_str()
            && r["fields"]
                == json!({
                    "i": self.i,
                    "neg": self.neg,
                    "ok": self.ok,
                    "name": self.name,
                    "ratio": self.ratio,
                })
    }
}

/// Thread `t`'s `k`-th event carries `i = t * THREAD_STRIDE + k`, so a
/// record read back names the thread and the `seq` it must have.
const THREAD_STRIDE: u64 = 1_000_000;

/// Creates a cleanly closed ring of `capacity` bytes (1 KiB chunks up to
/// 128 KiB) with CLOCK_REALTIME timestamps, into which each of `threads`
/// threads logs `per_thread` events ([`THREAD_STRIDE`]); returns them all.
/// With one thread the events are `Ev::new(0..per_thread)`, written by
/// writer 0 with `seq` = `i`.
fn make_ring_threads(path: &Path, capacity: u64, threads: u64, per_thread: u64) -> Vec<Ev> {
    let rec = Recorder::builder(path)
        .capacity(capacity)
        .clock(Clock::Realtime)
        .heartbeat(None)
        .create()
        .expect("create ring");
    let evs: Vec<Vec<Ev>> = (0..threads)
        .map(|t| {
            (0..per_thread)
                .map(|k| Ev::new(t * THREAD_STRIDE + k))
                .collect()
        })
        .collect();
    if threads == 1 {
        for (k, ev) in evs[0].iter().enumerate() {
            assert_eq!(ev.log(&rec), k as u64, "seq of event {k}");
        }
    } else {
        std::thread::scope(|s| {
            for evs in &evs {
                let rec = &rec;
                s.spawn(move || {
                    for (k, ev) in evs.iter().enumerate() {
                        assert_eq!(ev.log(rec), k as u64, "seq of event {k}");
                    }
                });
            }
        });
    }
    rec.close();
    evs.into_iter().flatten().collect()
}

/// [`make_ring_threads`] with one thread.
fn make_ring(path: &Path, capacity: u64, n: u64) -> Vec<Ev> {
    make_ring_threads(path, capacity, 1, n)
}

/// A copy of `src` at `dst` with `edit` applied to its bytes.
fn variant(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs::read(src).expect("read ring");
    edit(&mut bytes);
    fs::write(dst, &bytes).expect("write variant");
    dst.to_path_buf()
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The seed of the randomized tests: `BLACKBOX_FUZZ_SEED` or a fixed default.
fn seed(default: u64) -> u64 {
    std::env::var("BLACKBOX_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .max(1)
}

// ---------------------------------------------------------------------------
// The file's structure, read as section 11 reads it (for valid rings).

/// Where things are in a ring file, from its (valid) header.
#[derive(Clone, Copy, Debug)]
struct Geo {
    chunk_size: usize,
    chunk_count: usize,
    data_offset: usize,
    nonce: u64,
    /// The effective largest record (section 11, step 2).
    max_len: usize,
}

impl Geo {
    fn of(b: &[u8]) -> Geo {
        let chunk_size = get_u32(b, H_CHUNK_SIZE);
        let stated = get_u32(b, H_MAX_RECORD_LEN) as usize;
        Geo {
            chunk_size: chunk_size as usize,
            chunk_count: get_u32(b, H_CHUNK_COUNT) as usize,
            data_offset: get_u64(b, H_DATA_OFFSET) as usize,
            nonce: get_u64(b, H_NONCE),
            max_len: max_record_len(chunk_size).min(stated.max(RECORD_HEADER_LEN)),
        }
    }

    /// File offset of chunk `i`.
    fn chunk(&self, i: usize) -> usize {
        self.data_offset + i * self.chunk_size
    }

    /// File offset of chunk `i`'s table word.
    fn table(&self, i: usize) -> usize {
        HEADER_LEN + 8 * i
    }

    fn file_len(&self) -> usize {
        self.data_offset + self.chunk_size * self.chunk_count
    }
}

/// A valid record found in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    chunk: usize,
    /// File offset of the record.
    at: usize,
    len: usize,
    writer: u32,
    seq: u64,
}

impl Slot {
    fn key(&self) -> (u64, u64) {
        (u64::from(self.writer), self.seq)
    }
}

/// The records chunk `i`'s claim framed, `(file offset, len)`, until the
/// walk of section 11 would stop (CRCs not checked).
fn framed(b: &[u8], g: &Geo, i: usize) -> Vec<(usize, usize)> {
    let base = g.chunk(i);
    let tag = commit_tag(get_u64(b, base + C_GEN));
    let mut out = Vec::new();
    let mut off = CHUNK_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= g.chunk_size {
        let c = get_u64(b, base + off + R_COMMIT);
        let len = (c & 0xffff) as usize;
        if c >> COMMIT_LEN_BITS != tag
            || len < RECORD_HEADER_LEN
            || len > g.max_len
            || off + stride(len) > g.chunk_size
        {
            break;
        }
        out.push((base + off, len));
        off += stride(len);
    }
    out
}

/// The chunk header of chunk `i`.
fn chunk_header(b: &[u8], g: &Geo, i: usize) -> [u8; CHUNK_HEADER_LEN] {
    let base = g.chunk(i);
    b[base..base + CHUNK_HEADER_LEN].try_into().unwrap()
}

/// A record's CRC as section 5 defines it, computed from the definition:
/// CRC-32C over the nonce, the chunk header, `len`, `seq`, the record's
/// bytes from 24 to its stride, then its bytes 12 to 24. `record` is the
/// record's bytes from its start to its stride.
fn spec_crc(nonce: u64, head: &[u8], len: usize, seq: u64, record: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&nonce.to_le_bytes());
    c = crc32c::crc32c_append(c, head);
    c = crc32c::crc32c_append(c, &(len as u32).to_le_bytes());
    c = crc32c::crc32c_append(c, &seq.to_le_bytes());
    c = crc32c::crc32c_append(c, &record[RECORD_HEADER_LEN..stride(len)]);
    crc32c::crc32c_append(c, &record[R_CRC_START..RECORD_HEADER_LEN])
}

/// Whether the record at `at` passes its CRC as record `seq` under chunk
/// `i`'s header.
fn crc_ok(b: &[u8], g: &Geo, i: usize, at: usize, len: usize, seq: u64) -> bool {
    let head = chunk_header(b, g, i);
    get_u32(b, at + R_CRC) == spec_crc(g.nonce, &head, len, seq, &b[at..at + stride(len)])
}

/// Every valid record of a valid ring, chunk by chunk (section 11, step 5,
/// for the files the tests make: no damaged chunk is expected).
fn walk(b: &[u8]) -> Vec<Slot> {
    let g = Geo::of(b);
    let mut out = Vec::new();
    for i in 0..g.chunk_count {
        let word = get_u64(b, g.table(i));
        let (state, visits) = (table_state(word), table_visits(word));
        if state != CHUNK_OWNED && state != CHUNK_SEALED {
            continue;
        }
        let head = chunk_header(b, &g, i);
        let gen = get_u64(&head, C_GEN);
        if gen % g.chunk_count as u64 != i as u64 || gen / g.chunk_count as u64 >= visits {
            continue;
        }
        let writer = get_u32(&head, C_WRITER);
        let first_seq = get_u64(&head, C_FIRST_SEQ);
        for (k, (at, len)) in framed(b, &g, i).into_iter().enumerate() {
            let seq = first_seq + k as u64;
            if crc_ok(b, &g, i, at, len, seq) {
                out.push(Slot {
                    chunk: i,
                    at,
                    len,
                    writer,
                    seq,
                });
            }
        }
    }
    out
}

/// The chunks holding records, each writer's in `seq` order: `[(writer,
/// [chunk...])]`.
fn chunks_by_writer(slots: &[Slot]) -> BTreeMap<u32, Vec<usize>> {
    let mut first: BTreeMap<(u32, usize), u64> = BTreeMap::new();
    for s in slots {
        let e = first.entry((s.writer, s.chunk)).or_insert(s.seq);
        *e = (*e).min(s.seq);
    }
    let mut by: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
    for ((w, c), seq) in first {
        by.entry(w).or_default().push((seq, c));
    }
    by.into_iter()
        .map(|(w, mut v)| {
            v.sort_unstable();
            (w, v.into_iter().map(|(_, c)| c).collect())
        })
        .collect()
}

/// A chunk of writer `w` from the middle of its run (neither its oldest nor
/// its newest in the window), so that losing it leaves a hole.
fn middle_chunk(slots: &[Slot], w: u32) -> usize {
    let chunks = &chunks_by_writer(slots)[&w];
    assert!(chunks.len() >= 3, "writer {w} has only {chunks:?}");
    chunks[chunks.len() / 2]
}

/// The `(writer, seq)` keys of the records in chunk `i`.
fn keys_of_chunk(slots: &[Slot], i: usize) -> HashSet<(u64, u64)> {
    slots
        .iter()
        .filter(|s| s.chunk == i)
        .map(Slot::key)
        .collect()
}

/// Rewrites chunk `i` as a writer whose chunk header is `edit`ed would have
/// written it: the header, then every record its claim framed gets the new
/// claim's COMMIT tag and a CRC that matches. (The table word is left.)
fn forge_chunk(b: &mut [u8], g: &Geo, i: usize, edit: impl FnOnce(&mut [u8])) {
    let records = framed(b, g, i);
    let base = g.chunk(i);
    edit(&mut b[base..base + CHUNK_HEADER_LEN]);
    let head = chunk_header(b, g, i);
    let gen = get_u64(&head, C_GEN);
    let first_seq = get_u64(&head, C_FIRST_SEQ);
    for (k, (at, len)) in records.into_iter().enumerate() {
        put_u64(b, at + R_COMMIT, commit_word(gen, len as u16));
        let seq = first_seq.wrapping_add(k as u64);
        let crc = spec_crc(g.nonce, &head, len, seq, &b[at..at + stride(len)]);
        put_u32(b, at + R_CRC, crc);
    }
}

/// The reader library's snapshot of a ring in memory.
fn recover(bytes: &[u8]) -> Result<Snapshot, blackbox_reader::Error> {
    Ring::from_bytes(bytes.to_vec())?.snapshot()
}

/// `(writer, seq)` of a snapshot's records, in window order.
fn snap_keys(snap: &Snapshot) -> Vec<(u64, u64)> {
    snap.records
        .iter()
        .map(|r| (u64::from(r.writer), r.seq))
        .collect()
}

/// A valid ring: the library's window is exactly the records [`walk`]
/// finds, and the CLI reads them all and verifies the ring. Returns the
/// file's bytes, its records and `read --json`'s lines.
fn checked_clean(path: &Path, evs: &[Ev]) -> (Vec<u8>, Vec<Slot>, Vec<Value>) {
    let bytes = fs::read(path).unwrap();
    let slots = walk(&bytes);
    let snap = recover(&bytes).expect("valid ring");
    let mut mine: Vec<(u64, u64)> = slots.iter().map(Slot::key).collect();
    let mut theirs = snap_keys(&snap);
    mine.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(mine, theirs, "the test's walk and the reader disagree");
    assert_eq!(
        snap.totals,
        blackbox_reader::Totals::default(),
        "clean ring"
    );
    let seen = expect_consistent(path, "clean ring", evs);
    assert_eq!(seen.records.len(), slots.len());
    (bytes, slots, seen.records)
}

// ---------------------------------------------------------------------------
// Files that are not rings, or not rings this reader may read.

#[test]
fn empty_random_and_foreign_files_are_refused() {
    let dir = TempDir::new("hostile-foreign");
    let valid = dir.path("valid.ring");
    make_ring(&valid, MIN_CAPACITY, 10);
    let full = fs::metadata(&valid).unwrap().len() as usize;

    let empty = dir.path("empty");
    fs::write(&empty, b"").unwrap();
    expect_refused(&empty, "empty file");

    let seed = seed(0x5eed_0001);
    println!("random files: seed {seed}");
    let mut rng = Rng(seed);
    for size in [1usize, 100, 4095, 4096, 8192, 12345, full, full + 4096] {
        let p = dir.path(&format!("random-{size}"));
        fs::write(&p, rng.bytes(size)).unwrap();
        expect_refused(&p, &format!("{size} random bytes"));
    }

    // The magic alone does not make a ring: the rest of the header is random.
    let p = dir.path("magic-then-random");
    let mut bytes = rng.bytes(full);
    bytes[..8].copy_from_slice(&MAGIC);
    fs::write(&p, bytes).unwrap();
    expect_refused(&p, "magic followed by random bytes");

    for (name, magic) in [
        ("zero-magic", [0u8; 8]),
        ("near-magic", *b"BBOXRINH"),
        ("lower-magic", *b"bboxring"),
    ] {
        let p = variant(&valid, &dir.path(name), |b| {
            b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&magic)
        });
        expect_refused_saying(&p, &format!("wrong magic {magic:?}"), "magic");
    }

    for version in [0u32, VERSION + 1, 0x0200_0000, u32::MAX] {
        let p = variant(&valid, &dir.path(&format!("version-{version}")), |b| {
            put_u32(b, H_VERSION, version)
        });
        expect_refused_saying(
            &p,
            &format!("layout version {version}"),
            &format!("ring layout version {version} is not supported"),
        );
    }

    for flags in [1u32, 0x8000_0000, u32::MAX] {
        let p = variant(&valid, &dir.path(&format!("incompat-{flags:x}")), |b| {
            put_u32(b, H_INCOMPAT_FLAGS, flags)
        });
        expect_refused_saying(
            &p,
            &format!("incompatible flags {flags:#x}"),
            "incompatible",
        );
    }

    let p = variant(&valid, &dir.path("big-endian"), |b| {
        b[H_ENDIAN..H_ENDIAN + 4].copy_from_slice(&ENDIAN_CHECK.to_be_bytes())
    });
    expect_refused_saying(&p, "byte-swapped endianness mark", "byte order");

    // The sizes version 2 fixes (check 5).
    for (name, off, value) in [
        ("header-len", H_HEADER_LEN, 8192u64),
        ("header-len-0", H_HEADER_LEN, 0),
        ("record-header-len-v1", H_RECORD_HEADER_LEN, 32),
        ("record-header-len", H_RECORD_HEADER_LEN, 16),
        ("chunk-header-len", H_CHUNK_HEADER_LEN, 128),
        ("chunk-header-len-0", H_CHUNK_HEADER_LEN, 0),
        ("chunk-table-offset-0", H_CHUNK_TABLE_OFFSET, 0),
        ("chunk-table-offset", H_CHUNK_TABLE_OFFSET, 8192),
        ("chunk-table-offset-max", H_CHUNK_TABLE_OFFSET, u64::MAX),
    ] {
        let p = variant(&valid, &dir.path(name), |b| {
            if off == H_CHUNK_TABLE_OFFSET {
                put_u64(b, off, value)
            } else {
                put_u32(b, off, value as u32)
            }
        });
        expect_refused_saying(&p, &format!("damaged {name} field ({value})"), "damaged");
    }

    // Bytes a writer keeps zero and a later minor version may use are
    // ignored, and so is the minor version itself.
    let p = variant(&valid, &dir.path("reserved-and-minor"), |b| {
        put_u32(b, H_MINOR_VERSION, u32::MAX);
        put_u32(b, H_COMPAT_FLAGS, u32::MAX);
        for r in [116..128, 832..1024, 1032..1088, 1188..1280, 3456..4096] {
            b[r].fill(0xa5);
        }
    });
    let evs: Vec<Ev> = (0..10).map(Ev::new).collect();
    let seen = expect_consistent(&p, "reserved bytes and minor version set", &evs);
    assert_eq!(seen.records.len(), 10);

    // The unmodified ring passes, so the refusals above are about the damage.
    expect_consistent(&valid, "valid ring", &evs);
}

/// Version 1 (one shared write position, `TAIL` and the lap log, 32-byte
/// record headers, data right after the header) shares nothing with version
/// 2 past byte 12: a version 2 reader names the version in one line and
/// reads nothing else, whatever the rest says.
#[test]
fn a_version_1_file_is_refused_in_one_line_naming_the_version() {
    // Version 1's header offsets (its spec, section 2).
    const V1_DATA_OFFSET: usize = 32;
    const V1_CAPACITY: usize = 40;
    const V1_NONCE: usize = 48;
    const V1_MAX_RECORD_LEN: usize = 68;
    const V1_TAIL: usize = 1024;
    const V1_STATE: usize = 1088;
    const V1_LAPPED_WRITES: usize = 1152;
    const V1_RECORD_HEADER_LEN: u32 = 32;

    let dir = TempDir::new("hostile-v1");
    let v1 = |capacity: u64, tail: u64, file_len: usize| {
        let mut b = vec![0u8; file_len];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, H_VERSION, 1);
        put_u32(&mut b, H_ENDIAN, ENDIAN_CHECK);
        put_u32(&mut b, H_HEADER_LEN, HEADER_LEN as u32);
        put_u32(&mut b, H_RECORD_HEADER_LEN, V1_RECORD_HEADER_LEN);
        put_u64(&mut b, V1_DATA_OFFSET, HEADER_LEN as u64);
        put_u64(&mut b, V1_CAPACITY, capacity);
        put_u64(&mut b, V1_NONCE, 0x0123_4567_89ab_cdef);
        put_u32(&mut b, V1_MAX_RECORD_LEN, (capacity / 2) as u32);
        put_u64(&mut b, V1_TAIL, tail);
        put_u32(&mut b, V1_STATE, STATE_EXITED);
        put_u64(&mut b, V1_LAPPED_WRITES, 3);
        b[H_PROGRAM..H_PROGRAM + 7].copy_from_slice(b"old-app");
        // A version 1 record at position 0: COMMIT = len << 32 | !pos, POS.
        if file_len >= HEADER_LEN + 64 {
            put_u64(&mut b, HEADER_LEN, 40u64 << 32 | u64::from(u32::MAX));
            put_u64(&mut b, HEADER_LEN + 8, 0);
        }
        b
    };
    let mut cases = vec![
        ("v1-4k", v1(4096, 4096 + 40, HEADER_LEN + 4096)),
        ("v1-64k", v1(65536, 3 << 20, HEADER_LEN + 65536)),
        // Claims 4 GiB on a short file: still the version, not the size.
        ("v1-huge", v1(1 << 32, u64::MAX, HEADER_LEN + 4096)),
        // Only the header.
        ("v1-header-only", v1(4096, 0, HEADER_LEN)),
    ];
    // A version 2 ring marked version 1.
    let valid = dir.path("valid.ring");
    make_ring(&valid, MIN_CAPACITY, 10);
    let mut marked = fs::read(&valid).unwrap();
    put_u32(&mut marked, H_VERSION, 1);
    cases.push(("v2-marked-v1", marked));

    for (name, bytes) in cases {
        let p = dir.path(name);
        fs::write(&p, &bytes).unwrap();
        for sub in SUBCOMMANDS {
            let o = run_sub(sub, &p);
            let ctx = format!("{name}: blackbox {}", sub.join(" "));
            assert_refused(&o, &ctx);
            let line = text(&o.stderr);
            assert!(
                line.trim_end().ends_with(VERSION_1_REFUSAL),
                "{ctx}: expected the version refusal\n{}",
                describe(&o)
            );
        }
        let err = Ring::from_bytes(bytes).unwrap_err();
        assert_eq!(
            err.kind(),
            blackbox_reader::ErrorKind::Unsupported,
            "{name}"
        );
        assert_eq!(err.to_string(), VERSION_1_REFUSAL, "{name}");
    }
}

#[test]
fn truncated_rings_are_refused() {
    let dir = TempDir::new("hostile-truncated");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    let evs = make_ring(&valid, capacity, 40);
    let g = Geo::of(&fs::read(&valid).unwrap());
    let full = g.file_len() as u64;
    assert_eq!(fs::metadata(&valid).unwrap().len(), full);
    // Inside the header.
    for len in [1u64, 8, 100, 1024, 1100, 4095] {
        let p = variant(&valid, &dir.path(&format!("cut-{len}")), |b| {
            b.truncate(len as usize)
        });
        expect_refused_saying(
            &p,
            &format!("ring cut to {len} bytes (in the header)"),
            "4096",
        );
    }
    // Header complete; chunk table or data region short or missing.
    let data = g.data_offset as u64;
    for len in [
        4096u64,
        4097,
        4096 + 8,
        data - 1,
        data,
        data + 64,
        data + capacity / 2,
        full - 1,
    ] {
        let p = variant(&valid, &dir.path(&format!("cut-{len}")), |b| {
            b.truncate(len as usize)
        });
        expect_refused_saying(
            &p,
            &format!("ring cut to {len} of {full} bytes"),
            "truncated",
        );
    }
    // A longer file is a ring with bytes after it (section 1): read as if
    // they were not there.
    let seed = seed(0x5eed_0004);
    let mut rng = Rng(seed);
    let p = variant(&valid, &dir.path("longer"), |b| {
        b.extend(rng.bytes(1 << 20))
    });
    let seen = expect_consistent(&p, "ring followed by 1 MiB of random bytes", &evs);
    assert_eq!(seen.records.len(), evs.len());
}

#[test]
fn damaged_geometry_fields_are_refused() {
    let dir = TempDir::new("hostile-geometry");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    let evs = make_ring(&valid, capacity, 20);
    let g = Geo::of(&fs::read(&valid).unwrap());
    assert_eq!((g.chunk_size, g.chunk_count), (1024, 64), "geometry");

    let mut failures = Vec::new();
    let mut case = |name: String, edit: &dyn Fn(&mut Vec<u8>), needle: &str| {
        let p = variant(&valid, &dir.path(&name), edit);
        if let Some(why) = soft(|| expect_refused_saying(&p, &name, needle)) {
            failures.push(why);
        }
    };
    for cap in [
        0u64,
        3 * 4096,
        capacity + 8,
        8192,
        MIN_CAPACITY / 2,
        1 << 40,
        MAX_CAPACITY * 2,
        u64::MAX,
    ] {
        case(
            format!("capacity {cap}"),
            &|b| put_u64(b, H_CAPACITY, cap),
            "capacity",
        );
    }
    for size in [0u32, 512, 1000, 2048, 1 << 17, u32::MAX] {
        case(
            format!("chunk size {size}"),
            &|b| put_u32(b, H_CHUNK_SIZE, size),
            "do not make the capacity",
        );
    }
    for count in [0u32, 1, 15, 63, 65, 1 << 21, u32::MAX] {
        case(
            format!("chunk count {count}"),
            &|b| put_u32(b, H_CHUNK_COUNT, count),
            "do not make the capacity",
        );
    }
    // Fewer chunks than MIN_CHUNKS, though size times count is the capacity.
    case(
        "8 chunks of 8 KiB".into(),
        &|b| {
            put_u32(b, H_CHUNK_SIZE, 8192);
            put_u32(b, H_CHUNK_COUNT, 8);
        },
        "do not make the capacity",
    );
    for offset in [
        0u64,
        4096,
        g.data_offset as u64 + 8,
        g.data_offset as u64 - 1,
        1 << 41,
        u64::MAX - 4095,
    ] {
        case(
            format!("data offset {offset}"),
            &|b| put_u64(b, H_DATA_OFFSET, offset),
            "data offset",
        );
    }
    for clock in [0u32, 3, u32::MAX] {
        case(
            format!("clock {clock}"),
            &|b| put_u32(b, H_CLOCK, clock),
            "clock",
        );
    }
    // Geometries that hold together but need more than the file has.
    for (cap, size, count) in [
        (262144u64, 1024u32, 256u32),
        (MAX_CAPACITY, MAX_CHUNK_SIZE, (MAX_CAPACITY / 65536) as u32),
        (1 << 30, MIN_CHUNK_SIZE, MAX_CHUNKS),
    ] {
        case(
            format!("{count} chunks of {size}"),
            &|b| {
                put_u64(b, H_CAPACITY, cap);
                put_u32(b, H_CHUNK_SIZE, size);
                put_u32(b, H_CHUNK_COUNT, count);
                put_u64(b, H_DATA_OFFSET, data_offset(count));
            },
            "truncated",
        );
    }
    case(
        "data offset a page further".into(),
        &|b| put_u64(b, H_DATA_OFFSET, g.data_offset as u64 + 4096),
        "truncated",
    );
    assert_no_failures(&failures, "geometry cases");

    // A data offset one page further on a file one page longer: a valid
    // geometry over the wrong bytes. Every chunk header is another chunk's.
    let p = variant(&valid, &dir.path("shifted"), |b| {
        put_u64(b, H_DATA_OFFSET, g.data_offset as u64 + 4096);
        b.extend(vec![0u8; 4096]);
    });
    let seen = expect_flagged(&p, "data region read a page too late", &evs);
    assert!(seen.records.is_empty(), "{:?}", seen.records);
    assert!(losses(&seen.info).0 >= 1, "{}", seen.info);
}

/// A header that claims a huge ring (4 GiB of data, or the largest chunk
/// table) on a short file must fail on the size check, before anything the
/// size of the claim is allocated: the CLI runs under a 256 MiB
/// address-space limit, and in this process the reader's heap use is
/// counted.
#[test]
fn a_short_file_claiming_a_huge_ring_allocates_nothing() {
    let dir = TempDir::new("hostile-memory");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, 65536, 20);
    let claims: [(&str, u64, u32, u32); 2] = [
        ("4 GiB", MAX_CAPACITY, MAX_CHUNK_SIZE, 65536),
        ("2^20 chunks", 1 << 30, MIN_CHUNK_SIZE, MAX_CHUNKS),
    ];
    let limit_kib = 256 * 1024;
    let limited = |sub: &[&str], path: &Path| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_blackbox"))
            .arg(sub[0])
            .arg(path)
            .args(&sub[1..]);
        run_bounded(cmd, &format!("limited blackbox {}", sub.join(" ")))
    };
    // The limit is in force, and a normal read works under it.
    let o = run_bounded(
        {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {limit_kib} && ulimit -v"));
            c
        },
        "ulimit probe",
    );
    assert_eq!(
        text(&o.stdout).trim(),
        limit_kib.to_string(),
        "{}",
        describe(&o)
    );
    let o = limited(&["read", "--json"], &valid);
    assert!(
        o.status.success(),
        "valid ring under the limit: {}",
        describe(&o)
    );
    assert_eq!(
        only_written_records(&o, "valid ring", &evs).len(),
        evs.len()
    );

    for (name, cap, size, count) in claims {
        let huge = variant(&valid, &dir.path(name), |b| {
            put_u64(b, H_CAPACITY, cap);
            put_u32(b, H_CHUNK_SIZE, size);
            put_u32(b, H_CHUNK_COUNT, count);
            put_u64(b, H_DATA_OFFSET, data_offset(count));
            put_u64(b, H_NEXT_TICKET, u64::MAX);
            put_u32(b, H_WRITERS, u32::MAX);
        });
        for sub in SUBCOMMANDS {
            let o = limited(sub, &huge);
            let ctx = format!("{name} claimed on a short file: blackbox {}", sub.join(" "));
            assert_refused(&o, &ctx);
            assert!(
                text(&o.stderr).contains("truncated"),
                "{ctx}: must fail on the size check\n{}",
                describe(&o)
            );
        }
        let bytes = fs::read(&huge).unwrap();
        let (result, peak) = peak_heap(|| Ring::from_bytes(bytes).map(|_| ()));
        assert!(result.is_err(), "{name}: accepted");
        assert!(
            peak < 64 * 1024,
            "{name}: the refusal allocated {peak} bytes"
        );
    }
}

/// The index of a snapshot takes memory for the records a ring holds, not
/// for the most its size allows (one per 24 bytes, 40 bytes each: 1.67x
/// the capacity). A full 256 MiB ring of 1 KiB records (a 10 MiB index)
/// is read under an address-space limit with room for its copy, 0.8x its
/// size besides and 200 MiB for the program: the reader that reserved the
/// densest index there aborted. It must give what it gives unlimited.
#[test]
fn a_large_ring_is_read_under_a_limit_its_densest_index_would_exceed() {
    let dir = TempDir::new("hostile-limit");
    let path = dir.path("large.ring");
    let capacity: u64 = 256 << 20;
    let rec = Recorder::builder(&path)
        .capacity(capacity)
        .clock(Clock::Realtime)
        .heartbeat(None)
        .create()
        .expect("create ring");
    // 1000-byte payloads, each with its number: 1024-byte records; a lap
    // and a quarter.
    let mut payload = [0x5Au8; 1000];
    for k in 0..capacity / 1024 * 5 / 4 {
        payload[..8].copy_from_slice(&k.to_le_bytes());
        rec.append(&payload).expect("append");
    }
    rec.close();
    let limit_kib = (capacity + capacity * 4 / 5 + (200 << 20)) / 1024;
    let run = |sub: &[&str], limited: bool| {
        let mut cmd = Command::new("sh");
        let ulimit = if limited {
            format!("ulimit -v {limit_kib} && ")
        } else {
            String::new()
        };
        cmd.arg("-c")
            .arg(format!("{ulimit}exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_blackbox"))
            .args(sub)
            .arg(&path);
        let what = format!("blackbox {} (limited: {limited})", sub.join(" "));
        let o = run_bounded(cmd, &what);
        assert!(o.status.success(), "{what}: {}", describe(&o));
        o
    };
    let free = run(&["info", "--json"], false);
    let info: Value = serde_json::from_slice(&free.stdout).expect("info --json");
    assert!(
        info["records"].as_u64().unwrap() >= capacity / 1024 * 9 / 10,
        "the ring is full: {info}"
    );
    for sub in [
        &["info", "--json"][..],
        &["read", "--json", "--last", "3000"],
    ] {
        assert_eq!(
            text(&run(sub, true).stdout),
            text(&run(sub, false).stdout),
            "blackbox {}: the same under the limit",
            sub.join(" ")
        );
    }
    run(&["verify"], true);
}

// ---------------------------------------------------------------------------
// Header fields a valid ring may carry any value in.

/// A calibration slot: `(BASE_TICKS, BASE_NS, MULT)`.
type Slot3 = (u64, u64, u64);

/// A `CLOCK_TSC` ring's calibration can be missing, zero or absurd: the
/// reader converts in 128-bit arithmetic, cuts to 64 bits, says when there
/// is no calibration, and shows every record.
#[test]
fn any_clock_calibration_is_read_without_harm() {
    let dir = TempDir::new("hostile-clock");
    let valid = dir.path("valid.ring");
    let evs = make_ring_threads(&valid, MIN_CAPACITY, 3, 12);
    let (_, slots, clean) = checked_clean(&valid, &evs);
    let slot1 = H_CLOCK_SLOT_1 - H_CLOCK_BASE_TICKS;
    // (name, CLOCK_CAL_COUNT, slot 0 and slot 1, whether the reader must
    // say there is no calibration)
    let one = 1u64 << CLOCK_SHIFT;
    let cases: [(&str, u64, [Slot3; 2], bool); 9] = [
        ("no calibration", 0, [(0, 0, 0); 2], true),
        ("mult 0", 1, [(5, 5, 0), (0, 0, 0)], true),
        (
            "mult 0 in the current slot",
            2,
            [(0, 0, one), (7, 7, 0)],
            true,
        ),
        ("identity", 1, [(0, 0, one), (0, 0, 0)], false),
        ("mult max", 1, [(0, 0, u64::MAX), (0, 0, 0)], false),
        (
            "base ns max",
            1,
            [(0, u64::MAX, u64::MAX), (0, 0, 0)],
            false,
        ),
        (
            "base ticks max",
            1,
            [(u64::MAX, 0, u64::MAX), (0, 0, 0)],
            false,
        ),
        (
            "all max",
            u64::MAX,
            [(u64::MAX, u64::MAX, u64::MAX); 2],
            false,
        ),
        (
            "count max, slot 1 absurd",
            u64::MAX - 1,
            [(0, 0, 0), (1, u64::MAX / 3, 3)],
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (name, count, slots_cal, uncalibrated) in cases {
        let p = variant(&valid, &dir.path(name), |b| {
            put_u32(b, H_CLOCK, CLOCK_TSC);
            put_u64(b, H_CLOCK_CAL_COUNT, count);
            for (k, (ticks, ns, mult)) in slots_cal.into_iter().enumerate() {
                let at = H_CLOCK_BASE_TICKS + k * slot1;
                put_u64(b, at, ticks);
                put_u64(b, at + 8, ns);
                put_u64(b, at + 16, mult);
            }
        });
        let r = soft(|| {
            let seen = expect_consistent(&p, name, &evs);
            // Every record, each writer's in seq order; times aside.
            let mut got: Vec<(u64, u64)> = seen.records.iter().map(json_key).collect();
            let mut want: Vec<(u64, u64)> = clean.iter().map(json_key).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: records");
            assert_eq!(seen.records.len(), slots.len());
            let o = run_sub(&["info"], &p);
            assert_eq!(
                text(&o.stdout).contains("no calibration"),
                uncalibrated,
                "{name}: info must say whether the clock is calibrated\n{}",
                describe(&o)
            );
        });
        failures.extend(r);
    }
    assert_no_failures(&failures, "calibration cases");
}

/// `SNAPSHOT_WRITER` and `SNAPSHOT_SEQ` may name any record or none: the
/// reason is shown when the record is in the window, else said to be gone.
#[test]
fn snapshot_fields_pointing_nowhere_are_harmless() {
    let dir = TempDir::new("hostile-snapshot");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 10);
    let mut failures = Vec::new();
    for (trigger, writer, seq_plus_one, reason) in [
        (
            1u64,
            0u32,
            1u64,
            Some("TRACE hostile::test: event number 0"),
        ),
        (u64::MAX, 0, 4, Some("WARN hostile::test: event number 3")),
        (1, 0, 0, None),
        (1, 0, 11, None),
        (1, 0, u64::MAX, None),
        (1, 0, 1 << 62, None),
        (1, 7, 1, None),
        (u64::MAX, u32::MAX, u64::MAX, None),
        (0, u32::MAX, u64::MAX, None),
    ] {
        let name = format!("trigger {trigger}, record ({writer}, {seq_plus_one} - 1)");
        let p = variant(
            &valid,
            &dir.path(&format!("snap-{trigger}-{writer}-{seq_plus_one}")),
            |b| {
                put_u64(b, H_SNAPSHOT_TRIGGER, trigger);
                put_u32(b, H_SNAPSHOT_WRITER, writer);
                put_u64(b, H_SNAPSHOT_SEQ, seq_plus_one);
            },
        );
        failures.extend(soft(|| {
            let seen = expect_consistent(&p, &name, &evs);
            assert_eq!(seen.records.len(), evs.len(), "{name}");
            assert_eq!(seen.info["snapshot_requests"], trigger, "{name}");
            assert_eq!(seen.info["snapshot_reason"], json!(reason), "{name}");
            let o = run_sub(&["info"], &p);
            let out = text(&o.stdout);
            if trigger > 0 {
                let line = out
                    .lines()
                    .find(|l| l.starts_with("snapshots"))
                    .unwrap_or_default();
                match reason {
                    Some(r) => assert!(line.contains(r), "{name}: {out}"),
                    None => assert!(line.contains("left the window"), "{name}: {out}"),
                }
            }
        }));
    }
    assert_no_failures(&failures, "snapshot cases");
}

// ---------------------------------------------------------------------------
// The chunk table and the chunk headers.

/// A table word no writer makes (`FREE` with visits, visits too few for
/// the chunk's header) costs its chunk only, counted corrupt; a word that
/// says never claimed, or `CLAIMED` (taken, header not written yet), hides
/// the chunk's records, which the writer's run then misses. Absurd visits
/// are not damage a reader can tell: the chunk reads as before.
#[test]
fn damaged_chunk_table_words_cost_only_their_chunk() {
    let dir = TempDir::new("hostile-table");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200); // wraps the 16 chunks
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let m = middle_chunk(&slots, 0);
    let lost = keys_of_chunk(&slots, m);
    let n = lost.len() as u64;
    let word = get_u64(&bytes, g.table(m));
    let (state, visits) = (table_state(word), table_visits(word));
    let gen = get_u64(&bytes, g.chunk(m) + C_GEN);
    assert!(visits >= 2, "chunk {m} was claimed in the second lap");
    assert_eq!(visits, gen / g.chunk_count as u64 + 1);

    let mut failures = Vec::new();
    // (name, word, corrupt, missing)
    for (name, w, corrupt, missing) in [
        ("free with visits", table_word(CHUNK_FREE, visits), 1, n),
        ("free with one visit", table_word(CHUNK_FREE, 1), 1, n),
        ("never claimed", 0u64, 0, n),
        ("claimed", table_word(CHUNK_CLAIMED, visits), 0, n),
        ("claimed, absurd visits", u64::MAX, 0, n),
        ("no visits", table_word(state, 0), 1, n),
        ("one visit too few", table_word(state, visits - 1), 1, n),
    ] {
        let p = variant(&valid, &dir.path(name), |b| put_u64(b, g.table(m), w));
        failures.extend(soft(|| {
            let ctx = format!("chunk {m}'s table word {w:#x} ({name})");
            let seen = expect_flagged(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            assert_eq!(
                losses(&seen.info),
                (corrupt, 0, missing),
                "{ctx}: {}",
                seen.info
            );
        }));
    }
    // Visits the cursor cannot have made yet, and a sealed chunk marked
    // owned: nothing to tell from a working writer's file.
    for (name, w) in [
        ("absurd visits", table_word(state, (1 << 62) - 1)),
        ("owned", table_word(CHUNK_OWNED, visits)),
    ] {
        let p = variant(&valid, &dir.path(name), |b| put_u64(b, g.table(m), w));
        failures.extend(soft(|| {
            let ctx = format!("chunk {m}'s table word {w:#x} ({name})");
            let seen = expect_consistent(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &HashSet::new(), &ctx);
        }));
    }
    // Every word damaged: nothing to show, every chunk corrupt.
    let p = variant(&valid, &dir.path("all-free-visited"), |b| {
        for i in 0..g.chunk_count {
            put_u64(b, g.table(i), table_word(CHUNK_FREE, visits));
        }
    });
    failures.extend(soft(|| {
        let seen = expect_flagged(&p, "every table word free with visits", &evs);
        assert!(seen.records.is_empty());
        assert_eq!(
            losses(&seen.info),
            (g.chunk_count as u64, 0, 0),
            "{}",
            seen.info
        );
    }));
    // Every chunk just claimed: the window is empty, which a working
    // writer's file can be for an instant.
    let p = variant(&valid, &dir.path("all-claimed"), |b| {
        for i in 0..g.chunk_count {
            put_u64(b, g.table(i), table_word(CHUNK_CLAIMED, visits));
        }
    });
    failures.extend(soft(|| {
        let seen = expect_consistent(&p, "every chunk claimed", &evs);
        assert!(seen.records.is_empty());
        assert_eq!(losses(&seen.info), (0, 0, 0), "{}", seen.info);
        assert_eq!(seen.info["chunks_owned"], g.chunk_count, "{}", seen.info);
    }));
    assert_no_failures(&failures, "table word cases");

    // A ring that did not wrap: a chunk never claimed (zero header) marked
    // sealed or owned is corrupt, marked claimed is skipped; neither costs
    // anything else.
    let young = dir.path("young.ring");
    let evs = make_ring(&young, MIN_CAPACITY, 10);
    let (ybytes, yslots, yclean) = checked_clean(&young, &evs);
    let used: HashSet<usize> = yslots.iter().map(|s| s.chunk).collect();
    let free = (0..g.chunk_count)
        .find(|i| *i != 0 && !used.contains(i))
        .unwrap();
    assert_eq!(get_u64(&ybytes, g.table(free)), 0);
    for (name, w, corrupt) in [
        ("sealed", table_word(CHUNK_SEALED, 1), 1),
        ("owned", table_word(CHUNK_OWNED, 1), 1),
        ("free with a visit", table_word(CHUNK_FREE, 1), 1),
        ("claimed", table_word(CHUNK_CLAIMED, 1), 0),
    ] {
        let p = variant(&young, &dir.path(&format!("young-{name}")), |b| {
            put_u64(b, g.table(free), w)
        });
        let ctx = format!("never-claimed chunk {free} marked {name}");
        let seen = if corrupt > 0 {
            expect_flagged(&p, &ctx, &evs)
        } else {
            expect_consistent(&p, &ctx, &evs)
        };
        assert_window(&seen.records, &yclean, &HashSet::new(), &ctx);
        assert_eq!(losses(&seen.info), (corrupt, 0, 0), "{ctx}: {}", seen.info);
    }
}

/// A chunk header that fails its checks (`GEN` of another chunk, or of a
/// claim the table word has not seen) is one corrupt chunk; one that passes
/// them but was changed fails the CRC of each of its records, since every
/// record's checksum covers its chunk's header. Either way only that
/// chunk's records are lost, and `verify` says so.
#[test]
fn damaged_chunk_headers_cost_only_their_chunk() {
    let dir = TempDir::new("hostile-chunk-header");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let count = g.chunk_count as u64;
    let m = middle_chunk(&slots, 0);
    let lost = keys_of_chunk(&slots, m);
    let n = lost.len() as u64;
    let base = g.chunk(m);
    let gen = get_u64(&bytes, base + C_GEN);
    let visits = table_visits(get_u64(&bytes, g.table(m)));
    let first_seq = get_u64(&bytes, base + C_FIRST_SEQ);
    assert!(gen >= count, "chunk {m} was claimed in the second lap");

    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let set_u64 = |off: usize, v: u64| -> Edit { Box::new(move |b| put_u64(b, base + off, v)) };
    let xor = |off: usize, x: u8| -> Edit { Box::new(move |b| b[base + off] ^= x) };
    // (name, edit, corrupt, missing)
    let cases: Vec<(&str, Edit, u64, u64)> = vec![
        ("GEN of the next chunk", set_u64(C_GEN, gen + 1), 1, n),
        (
            "GEN not yet visited",
            set_u64(C_GEN, gen + count * visits),
            1,
            n,
        ),
        (
            "GEN max for this chunk",
            set_u64(C_GEN, u64::MAX - u64::MAX % count + m as u64 - count),
            1,
            n,
        ),
        // The header of the claim before: valid, but no record carries its
        // tag (a writer that died between its claim and its header leaves
        // this): the chunk shows nothing, the run misses its records.
        ("GEN of the claim before", set_u64(C_GEN, gen - count), 0, n),
        (
            "FIRST_SEQ beyond 2^62",
            set_u64(C_FIRST_SEQ, u64::MAX - 1),
            1,
            n,
        ),
        // Changed under the CRC: every record fails its checksum (its seq
        // stays accounted for, as a corrupt one).
        ("WRITER_DROPPED + 1", xor(C_WRITER_DROPPED, 1), n, 0),
        ("thread id", xor(C_THREAD_ID + 1, 0x40), n, 0),
        ("thread name", xor(C_THREAD_NAME, 0x20), n, 0),
        ("reserved", xor(CHUNK_HEADER_LEN - 1, 0x01), n, 0),
    ];
    let mut failures = Vec::new();
    for (name, edit, corrupt, missing) in cases {
        let p = variant(&valid, &dir.path(name), |b| edit(b));
        failures.extend(soft(|| {
            let ctx = format!("chunk {m}'s header: {name}");
            let seen = expect_flagged(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            assert_eq!(
                losses(&seen.info),
                (corrupt, 0, missing),
                "{ctx}: {}",
                seen.info
            );
        }));
    }
    // A changed WRITER or FIRST_SEQ also fails every CRC of the chunk; the
    // chunk still claims its seq range, so the counts depend on what it
    // then overlaps. Only its own records may go.
    for (name, edit) in [
        ("WRITER + 1", xor(C_WRITER, 1)),
        (
            "WRITER max",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, base + C_WRITER, u32::MAX)) as Edit,
        ),
        // Up by one: over the first seq of the next, newer chunk, which
        // keeps it (section 11, step 6).
        ("FIRST_SEQ + 1", set_u64(C_FIRST_SEQ, first_seq + 1)),
        ("FIRST_SEQ 2^62", set_u64(C_FIRST_SEQ, 1 << 62)),
    ] {
        let p = variant(&valid, &dir.path(name), |b| edit(b));
        failures.extend(soft(|| {
            let ctx = format!("chunk {m}'s header: {name}");
            let seen = expect_flagged(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            assert!(losses(&seen.info).0 >= n, "{ctx}: {}", seen.info);
        }));
    }
    assert_no_failures(&failures, "chunk header cases");
}

/// A chunk header rewritten with CRCs to match (anyone who can write the
/// file can forge records): extreme numbers are read without overflow,
/// and records are shown as the file says, but no writer's `seq` twice.
#[test]
fn forged_chunk_headers_with_extreme_numbers_are_read() {
    let dir = TempDir::new("hostile-forged");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let count = g.chunk_count as u64;
    let m = middle_chunk(&slots, 0);
    let lost = keys_of_chunk(&slots, m);
    let n = lost.len() as u64;
    let visits = table_visits(get_u64(&bytes, g.table(m)));

    let forged = |name: &str, edit: &dyn Fn(&mut [u8]), word: Option<u64>| {
        variant(&valid, &dir.path(name), |b| {
            forge_chunk(b, &g, m, edit);
            if let Some(w) = word {
                put_u64(b, g.table(m), w);
            }
        })
    };
    let mut failures = Vec::new();

    // The largest FIRST_SEQ the reader takes: the records move there.
    let p = forged(
        "first-seq-2^62",
        &|h| put_u64(h, C_FIRST_SEQ, 1 << 62),
        None,
    );
    failures.extend(soft(|| {
        let ctx = "chunk forged to FIRST_SEQ 2^62";
        let seen = expect_flagged(&p, ctx, &evs);
        let (moved, kept): (Vec<Value>, Vec<Value>) = seen
            .records
            .iter()
            .cloned()
            .partition(|r| json_key(r).1 >= 1 << 62);
        assert_window(&kept, &clean, &lost, ctx);
        assert_eq!(moved.len() as u64, n, "{ctx}: the forged chunk's records");
        let (corrupt, torn, missing) = losses(&seen.info);
        assert_eq!((corrupt, torn), (0, 0), "{ctx}: {}", seen.info);
        assert!(missing >= (1 << 62) - 200, "{ctx}: {}", seen.info);
    }));
    // Beyond it, and at the end of the u64 range: corrupt, no overflow.
    for seq in [(1u64 << 62) + 1, u64::MAX - 8, u64::MAX] {
        let p = forged(
            &format!("first-seq-{seq}"),
            &|h| put_u64(h, C_FIRST_SEQ, seq),
            None,
        );
        failures.extend(soft(|| {
            let ctx = format!("chunk forged to FIRST_SEQ {seq}");
            let seen = expect_flagged(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            assert_eq!(losses(&seen.info), (1, 0, n), "{ctx}: {}", seen.info);
        }));
    }
    // The largest writer number.
    let p = forged("writer-max", &|h| put_u32(h, C_WRITER, u32::MAX), None);
    failures.extend(soft(|| {
        let ctx = "chunk forged to writer u32::MAX";
        let seen = expect_flagged(&p, ctx, &evs);
        let (other, kept): (Vec<Value>, Vec<Value>) = seen
            .records
            .iter()
            .cloned()
            .partition(|r| json_key(r).0 == u64::from(u32::MAX));
        assert_window(&kept, &clean, &lost, ctx);
        let mut moved: Vec<u64> = other.iter().map(|r| json_key(r).1).collect();
        let mut was: Vec<u64> = lost.iter().map(|k| k.1).collect();
        moved.sort_unstable();
        was.sort_unstable();
        assert_eq!(moved, was, "{ctx}: same seqs under the other writer");
        assert_eq!(losses(&seen.info), (0, 0, n), "{ctx}: {}", seen.info);
        let writers = seen.info["writers"].as_array().unwrap();
        assert!(
            writers.iter().any(|w| w["writer"] == u32::MAX),
            "{ctx}: {}",
            seen.info
        );
    }));
    // GENs whose tags wrap at 2^48, and the largest GEN of this chunk, with
    // the visits to match: valid claims, read as before.
    // (A lap no claim of this file reached, so no stale COMMIT word in
    // the chunk carries the wrapped tag.)
    let wrap = m as u64 + count * ((1 << 48) + 1000);
    let top = u64::MAX - u64::MAX % count + m as u64 - count;
    for (name, gen) in [("gen-tag-wraps", wrap), ("gen-max", top)] {
        let p = forged(
            name,
            &|h| put_u64(h, C_GEN, gen),
            Some(table_word(CHUNK_SEALED, gen / count + 1)),
        );
        failures.extend(soft(|| {
            let ctx = format!("chunk forged to GEN {gen:#x} ({name})");
            let seen = expect_consistent(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &HashSet::new(), &ctx);
        }));
    }
    // The same GENs without the visits: not claimed yet, corrupt.
    let p = forged(
        "gen-max-unvisited",
        &|h| put_u64(h, C_GEN, top),
        Some(table_word(CHUNK_SEALED, visits)),
    );
    failures.extend(soft(|| {
        let ctx = "chunk forged to a GEN its table word has not seen";
        let seen = expect_flagged(&p, ctx, &evs);
        assert_window(&seen.records, &clean, &lost, ctx);
        assert_eq!(losses(&seen.info), (1, 0, n), "{ctx}: {}", seen.info);
    }));
    assert_no_failures(&failures, "forged header cases");
}

/// Two chunks of one writer whose `seq` ranges overlap: the newer claim
/// (larger `GEN`) is kept, the other's records are counted corrupt, and no
/// `seq` is shown twice.
#[test]
fn overlapping_runs_of_one_writer_keep_the_newer_claim() {
    let dir = TempDir::new("hostile-overlap");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let chunks = &chunks_by_writer(&slots)[&0];
    let gen = |i: usize| get_u64(&bytes, g.chunk(i) + C_GEN);
    let first_seq = |i: usize| get_u64(&bytes, g.chunk(i) + C_FIRST_SEQ);
    let (a, b) = (chunks[1], chunks[chunks.len() - 2]);
    assert!(gen(a) < gen(b));
    let half = keys_of_chunk(&slots, b).len() as u64 / 2;
    let mut failures = Vec::new();
    // (name, chunk forged, its new FIRST_SEQ, the claims that lose)
    for (name, forged, seq, losers) in [
        ("older onto newer", a, first_seq(b), vec![a]),
        ("older half over newer", a, first_seq(b) + half, vec![a]),
        ("newer onto older", b, first_seq(a), vec![a]),
        // Over the end of the chunk before `a` and the start of `a`: both
        // lose to the newer claim.
        (
            "newer half under older",
            b,
            first_seq(a) - half,
            vec![chunks[0], a],
        ),
    ] {
        let p = variant(&valid, &dir.path(name), |bytes| {
            forge_chunk(bytes, &g, forged, |h| put_u64(h, C_FIRST_SEQ, seq))
        });
        failures.extend(soft(|| {
            let ctx = format!("chunk {forged} forged to FIRST_SEQ {seq} ({name})");
            let seen = expect_flagged(&p, &ctx, &evs);
            // The clean window less the losing claim, with the forged
            // chunk's records moved to their new seqs, in seq order.
            let dropped: HashSet<(u64, u64)> = losers
                .iter()
                .flat_map(|&c| keys_of_chunk(&slots, c))
                .collect();
            let old = first_seq(forged);
            let mut want: Vec<Value> = clean
                .iter()
                .filter(|r| !dropped.contains(&json_key(r)))
                .map(|r| {
                    let mut r = strip_gap(r);
                    let s = json_key(&r).1;
                    if keys_of_chunk(&slots, forged).contains(&(0, s)) {
                        r["seq"] = json!(s - old + seq);
                    }
                    r
                })
                .collect();
            want.sort_by_key(json_key);
            let got: Vec<Value> = seen.records.iter().map(strip_gap).collect();
            assert_eq!(got, want, "{ctx}: window");
            assert_eq!(
                losses(&seen.info).0,
                dropped.len() as u64,
                "{ctx}: the dropped claim's records are corrupt, once: {}",
                seen.info
            );
        }));
    }
    assert_no_failures(&failures, "overlap cases");
}

/// A record whose checksum fails is one corrupt record, however many
/// times its chunk's claim is involved: a chunk whose every record failed
/// its CRC and that then loses an overlap is not counted twice.
#[test]
fn a_record_is_counted_corrupt_once() {
    let dir = TempDir::new("hostile-count-once");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let m = middle_chunk(&slots, 0);
    let lost = keys_of_chunk(&slots, m);
    // FIRST_SEQ + 1 without new CRCs: every record of the chunk fails its
    // checksum, and its range now overlaps the next (newer) chunk's by one,
    // which wins.
    let p = variant(&valid, &dir.path("first-seq-plus-1"), |b| {
        let at = g.chunk(m) + C_FIRST_SEQ;
        let v = get_u64(b, at) + 1;
        put_u64(b, at, v);
    });
    let ctx = format!("chunk {m}: FIRST_SEQ + 1, unsigned");
    let seen = expect_flagged(&p, &ctx, &evs);
    assert_window(&seen.records, &clean, &lost, &ctx);
    assert_eq!(
        losses(&seen.info).0,
        lost.len() as u64,
        "{ctx}: {} records failed their checksum: {}",
        lost.len(),
        seen.info
    );
}

/// A chunk that holds no valid record has a header nothing vouches for:
/// it must not win an overlap (section 11, step 6) and take a valid chunk
/// with it. Two ways to get one: a header damaged under the CRC (here
/// `FIRST_SEQ` - 1, over the end of the older chunk before it), which makes
/// every record of the chunk fail; and a newer chunk whose first COMMIT is
/// gone (no record at all, an empty `seq` range, which overlaps nothing)
/// with a `FIRST_SEQ` inside an older chunk's range. Either costs its own
/// chunk only.
#[test]
fn a_chunk_without_valid_records_evicts_no_other() {
    let dir = TempDir::new("hostile-evicts");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let chunks = &chunks_by_writer(&slots)[&0];
    let m = middle_chunk(&slots, 0);
    let (older, newest) = (chunks[1], *chunks.last().unwrap());
    let first_seq = |i: usize| get_u64(&bytes, g.chunk(i) + C_FIRST_SEQ);
    let mut failures = Vec::new();
    for (name, damaged, seq, empty) in [
        ("every record fails its CRC", m, first_seq(m) - 1, false),
        (
            "no record, FIRST_SEQ inside an older chunk",
            newest,
            first_seq(older) + 1,
            true,
        ),
    ] {
        let p = variant(&valid, &dir.path(name), |b| {
            put_u64(b, g.chunk(damaged) + C_FIRST_SEQ, seq);
            if empty {
                put_u64(b, g.chunk(damaged) + CHUNK_HEADER_LEN, 0);
            }
        });
        failures.extend(soft(|| {
            let ctx = format!("chunk {damaged}: FIRST_SEQ {seq} ({name})");
            // (A newest chunk gone without a trace leaves nothing for
            // `verify` to see; the failed checksums do.)
            let seen = if empty {
                expect_readable(&p, &ctx, &evs)
            } else {
                expect_flagged(&p, &ctx, &evs)
            };
            assert_window(&seen.records, &clean, &keys_of_chunk(&slots, damaged), &ctx);
        }));
    }
    assert_no_failures(&failures, "eviction cases");
}

/// Forged drop counts and holes as large as the header fields allow: the
/// reader's sums never overflow (no panic, and no wrap-around to a count
/// that makes a damaged ring look consistent).
#[test]
fn forged_drop_counts_and_holes_never_overflow() {
    let dir = TempDir::new("hostile-overflow");
    let valid = dir.path("valid.ring");
    let evs = make_ring_threads(&valid, MIN_CAPACITY, 5, 18);
    let (bytes, slots, _) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let by = chunks_by_writer(&slots);
    assert_eq!(by.len(), 5, "five writers: {by:?}");
    assert!(by.values().all(|c| c.len() >= 3), "{by:?}");

    // Each writer's drop count before its chunks alternates 0 and u64::MAX:
    // every other chunk says u64::MAX appends were dropped.
    let drops = variant(&valid, &dir.path("drops"), |b| {
        for chunks in by.values() {
            for (k, &c) in chunks.iter().enumerate() {
                let d = if k % 2 == 1 { u64::MAX } else { 0 };
                forge_chunk(b, &g, c, |h| put_u64(h, C_WRITER_DROPPED, d));
            }
        }
    });
    // Each writer's newest chunk forged so far ahead that the holes add up
    // to exactly 2^64: a sum that wraps would say nothing is missing.
    let holes = variant(&valid, &dir.path("holes"), |b| {
        let mut left: u128 = 1 << 64;
        let writers: Vec<&Vec<usize>> = by.values().collect();
        for (k, chunks) in writers.iter().enumerate() {
            let (prev, last) = (chunks[chunks.len() - 2], chunks[chunks.len() - 1]);
            let prev_end = u128::from(get_u64(b, g.chunk(prev) + C_FIRST_SEQ))
                + framed(b, &g, prev).len() as u128;
            let hole = if k + 1 < writers.len() {
                ((1u128 << 62) - prev_end).min(left)
            } else {
                left
            };
            left -= hole;
            let seq = (prev_end + hole) as u64;
            assert!(seq <= 1 << 62, "writer {k}: FIRST_SEQ {seq}");
            forge_chunk(b, &g, last, |h| put_u64(h, C_FIRST_SEQ, seq));
        }
        assert_eq!(left, 0);
    });
    let mut failures = Vec::new();
    for (name, p, flagged) in [("drop counts", &drops, false), ("holes", &holes, true)] {
        failures.extend(soft(|| {
            let ctx = format!("forged {name}");
            let seen = expect_readable(p, &ctx, &evs);
            assert_eq!(seen.records.len(), slots.len(), "{ctx}");
            if flagged {
                assert_eq!(
                    seen.verify.status.code(),
                    Some(1),
                    "{ctx}: 2^64 records are missing\n{}",
                    describe(&seen.verify)
                );
            }
        }));
    }
    assert_no_failures(&failures, "overflow cases");
}

// ---------------------------------------------------------------------------
// COMMIT words and record bodies.

/// A damaged COMMIT word ends its chunk's walk: a tag of another claim or
/// of none hides the rest of the chunk; `len` 0 is a torn record, an
/// impossible `len` a corrupt one; a plausible wrong `len` fails the CRC
/// (which covers it). The chunk's records before it and every other
/// chunk's survive, and `verify` reports the loss.
#[test]
fn damaged_commit_words_cost_the_rest_of_their_chunk() {
    let dir = TempDir::new("hostile-commit");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let count = g.chunk_count as u64;
    let m = middle_chunk(&slots, 0);
    let in_chunk: Vec<&Slot> = slots.iter().filter(|s| s.chunk == m).collect();
    assert!(in_chunk.len() >= 4, "{in_chunk:?}");
    let victim = *in_chunk[1];
    let gen = get_u64(&bytes, g.chunk(m) + C_GEN);
    let other_gen = get_u64(&bytes, g.chunk((m + 1) % g.chunk_count) + C_GEN);
    let offset = victim.at - g.chunk(m);
    let past_end = (g.chunk_size - offset + 8).min(g.max_len) as u16;
    assert!(offset + stride(past_end as usize) > g.chunk_size);
    // Lost: the victim and what follows it in the chunk.
    let lost: HashSet<(u64, u64)> = in_chunk[1..].iter().map(|s| s.key()).collect();
    let rest = lost.len() as u64;
    let len = victim.len as u16;
    // (name, COMMIT, corrupt, torn)
    let cases: Vec<(&str, u64, u64, u64)> = vec![
        (
            "tag of the claim before",
            commit_word(gen - count, len),
            0,
            0,
        ),
        (
            "tag of the claim after",
            commit_word(gen + count, len),
            0,
            0,
        ),
        ("tag of another chunk", commit_word(other_gen, len), 0, 0),
        ("tag zero", u64::from(len), 0, 0),
        ("zero word", 0, 0, 0),
        ("all ones", u64::MAX, 0, 0),
        ("len 0: torn", commit_word(gen, 0), 0, 1),
        ("len 1", commit_word(gen, 1), 1, 0),
        ("len 8", commit_word(gen, 8), 1, 0),
        ("len 23", commit_word(gen, 23), 1, 0),
        (
            "len past the max",
            commit_word(gen, (g.max_len + 8) as u16),
            1,
            0,
        ),
        ("len 65535", commit_word(gen, u16::MAX), 1, 0),
        ("len past the chunk end", commit_word(gen, past_end), 1, 0),
    ];
    let mut failures = Vec::new();
    for (name, word, corrupt, torn) in cases {
        let p = variant(&valid, &dir.path(name), |b| put_u64(b, victim.at, word));
        failures.extend(soft(|| {
            let ctx = format!("COMMIT {word:#x} ({name}) on record {:?}", victim.key());
            let seen = expect_flagged(&p, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            // Missing: every seq the chunk no longer accounts for (the
            // walk stopped at the victim).
            assert_eq!(
                losses(&seen.info),
                (corrupt, torn, rest),
                "{ctx}: {}",
                seen.info
            );
        }));
    }
    // A plausible length, 8 more or less: the CRC fails; the next COMMIT is
    // then looked for in the wrong place.
    for delta in [-8i32, 8] {
        let l = (i32::from(len) + delta) as u16;
        let p = variant(&valid, &dir.path(&format!("len{delta:+}")), |b| {
            put_u64(b, victim.at, commit_word(gen, l))
        });
        failures.extend(soft(|| {
            let ctx = format!("COMMIT len {l} instead of {len}");
            let seen = expect_flagged(&p, &ctx, &evs);
            let kept: Vec<Value> = seen.records.clone();
            let shown: HashSet<(u64, u64)> = kept.iter().map(json_key).collect();
            assert!(!shown.contains(&victim.key()), "{ctx}: the victim is shown");
            let mut after: HashSet<(u64, u64)> = lost.clone();
            after.retain(|k| !shown.contains(k));
            assert_window(&kept, &clean, &after, &ctx);
            assert!(losses(&seen.info).0 >= 1, "{ctx}: {}", seen.info);
        }));
    }
    assert_no_failures(&failures, "COMMIT cases");

    // The writer's newest chunk: a tag of another claim on its second
    // record hides the rest of the run's end. No false record, the records
    // before it survive. (No newer chunk of the writer follows, so no hole
    // shows and `verify` cannot tell this from a run that ended there; the
    // hole of section 12 needs a newer chunk after the damaged one.)
    let newest = *chunks_by_writer(&slots)[&0].last().unwrap();
    let last: Vec<&Slot> = slots.iter().filter(|s| s.chunk == newest).collect();
    if last.len() >= 2 {
        let v = last[1];
        let lost: HashSet<(u64, u64)> = last[1..].iter().map(|s| s.key()).collect();
        let p = variant(&valid, &dir.path("newest-stale-tag"), |b| {
            put_u64(b, v.at, commit_word(gen - count, v.len as u16))
        });
        let seen = expect_readable(&p, "stale tag in the newest chunk", &evs);
        assert_window(
            &seen.records,
            &clean,
            &lost,
            "stale tag in the newest chunk",
        );
    }
}

/// Every bit under a record's CRC (CRC, KIND, FLAGS, TS, payload, padding)
/// flipped, one at a time: the record is counted corrupt and never shown,
/// its `seq` shows as a corrupt gap, and every other record survives as it
/// was. Flips in the COMMIT word or the chunk header never show anything
/// false either, and always leave the ring inconsistent. Checked in this
/// process for every bit of one chunk, through the CLI for every byte of
/// one record.
#[test]
fn every_flipped_bit_under_the_crc_costs_only_its_record() {
    let dir = TempDir::new("hostile-flips");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, MIN_CAPACITY, 200);
    let (bytes, slots, clean) = checked_clean(&valid, &evs);
    let g = Geo::of(&bytes);
    let m = middle_chunk(&slots, 0);
    let clean_snap = recover(&bytes).unwrap();
    let payloads: BTreeMap<(u64, u64), Vec<u8>> = clean_snap
        .records
        .iter()
        .map(|r| ((u64::from(r.writer), r.seq), clean_snap.payload(r).to_vec()))
        .collect();
    let all: Vec<(u64, u64)> = snap_keys(&clean_snap);

    // Nothing false: every record shown is one of the clean window's,
    // byte for byte, and each writer's seqs increase.
    let nothing_false = |snap: &Snapshot, ctx: &str| {
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &snap.records {
            let key = (u64::from(r.writer), r.seq);
            let was = payloads.get(&key);
            assert_eq!(
                was.map(Vec::as_slice),
                Some(snap.payload(r)),
                "{ctx}: {key:?} shown altered"
            );
            let orig = clean_snap.record(r.writer, r.seq).unwrap();
            assert_eq!(r, orig, "{ctx}: {key:?}'s header fields changed");
            if let Some(prev) = last.insert(r.writer, r.seq) {
                assert!(prev < r.seq, "{ctx}");
            }
        }
    };
    let inconsistent =
        |snap: &Snapshot| snap.totals.corrupt > 0 || snap.totals.holes > 0 || snap.totals.torn > 0;

    let mut flips = 0usize;
    let in_chunk: Vec<Slot> = slots.iter().filter(|s| s.chunk == m).copied().collect();
    for (n, victim) in in_chunk.iter().enumerate() {
        let next = in_chunk.get(n + 1).map(Slot::key).or_else(|| {
            let i = all.iter().position(|k| *k == victim.key()).unwrap();
            all.get(i + 1).copied()
        });
        for byte in R_CRC..stride(victim.len) {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[victim.at + byte] ^= 1 << bit;
                let ctx = format!("record {:?} byte {byte} bit {bit}", victim.key());
                let snap = recover(&b).unwrap();
                nothing_false(&snap, &ctx);
                let keys = snap_keys(&snap);
                let want: Vec<(u64, u64)> =
                    all.iter().copied().filter(|k| *k != victim.key()).collect();
                assert_eq!(keys, want, "{ctx}: window");
                assert_eq!(
                    snap.totals,
                    blackbox_reader::Totals {
                        corrupt: 1,
                        ..Default::default()
                    },
                    "{ctx}"
                );
                if let Some(next) = next {
                    let r = snap.record(next.0 as u32, next.1).unwrap();
                    assert_eq!(
                        snap.gap_before(r),
                        Some(&Gap {
                            missing: 1,
                            corrupt: 1,
                            dropped: 0
                        }),
                        "{ctx}: the gap before {next:?}"
                    );
                }
                flips += 1;
            }
        }
        // The COMMIT word: its len is under the CRC, its tag ends the walk.
        for bit in 0..64 {
            let mut b = bytes.clone();
            b[victim.at + bit / 8] ^= 1 << (bit % 8);
            let ctx = format!("record {:?} COMMIT bit {bit}", victim.key());
            let snap = recover(&b).unwrap();
            nothing_false(&snap, &ctx);
            assert!(snap.record(victim.writer, victim.seq).is_none(), "{ctx}");
            assert!(inconsistent(&snap), "{ctx}: {:?}", snap.totals);
            flips += 1;
        }
    }
    // The chunk header: the whole chunk goes, never a false record.
    let lost = keys_of_chunk(&slots, m);
    let mut others_lost = 0usize;
    for byte in 0..CHUNK_HEADER_LEN {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[g.chunk(m) + byte] ^= 1 << bit;
            let ctx = format!("chunk {m} header byte {byte} bit {bit}");
            let snap = recover(&b).unwrap();
            nothing_false(&snap, &ctx);
            let keys: HashSet<(u64, u64)> = snap_keys(&snap).into_iter().collect();
            assert!(keys.is_disjoint(&lost), "{ctx}");
            assert!(inconsistent(&snap), "{ctx}: {:?}", snap.totals);
            if keys.len() + lost.len() < all.len() {
                // A FIRST_SEQ moved over another chunk's range: the newer
                // claim wins the overlap (section 11, step 6).
                others_lost += 1;
            }
            flips += 1;
        }
    }
    println!("{flips} single-bit flips in chunk {m}; {others_lost} header flips also cost an overlapped chunk");

    // Through the CLI: every byte under one record's CRC, inverted.
    let victim = in_chunk[in_chunk.len() / 2];
    let lost: HashSet<(u64, u64)> = [victim.key()].into();
    let span: Vec<usize> = (R_CRC..stride(victim.len)).collect();
    let worker = |part: &[usize], w: usize| {
        let file = dir.path(&format!("flip-{w}.ring"));
        for &i in part {
            let mut b = bytes.clone();
            b[victim.at + i] ^= 0xff;
            fs::write(&file, &b).unwrap();
            let ctx = format!("record {:?} byte {i} inverted", victim.key());
            let seen = expect_flagged(&file, &ctx, &evs);
            assert_window(&seen.records, &clean, &lost, &ctx);
            assert_eq!(losses(&seen.info), (1, 0, 0), "{ctx}: {}", seen.info);
            let o = &seen.verify;
            assert!(
                text(&o.stderr).contains("1 record(s) or chunk(s) fail"),
                "{ctx}: {}",
                describe(o)
            );
        }
    };
    let half = span.len() / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| worker(&span[..half], 0));
        let b = s.spawn(|| worker(&span[half..], 1));
        let ra = a.join();
        let rb = b.join();
        if let Err(e) = ra.and(rb) {
            std::panic::resume_unwind(e);
        }
    });
}

// ---------------------------------------------------------------------------
// Random damage.

/// Applies one random mutation to a ring of geometry `g`; returns a
/// description.
fn mutate(rng: &mut Rng, b: &mut [u8], g: &Geo) -> String {
    let count = g.chunk_count as u64;
    let chunk = rng.below(count) as usize;
    // Where: the ABI block, the counters and the calibration, the chunk
    // table, a chunk header, or anywhere in the data region.
    let off = match rng.below(12) {
        0 => rng.below(128) as usize,
        1 => 1024 + rng.below(512) as usize,
        2 | 3 => g.table(chunk) + rng.below(8) as usize,
        4 | 5 => g.chunk(chunk) + rng.below(CHUNK_HEADER_LEN as u64) as usize,
        _ => g.data_offset + rng.below((g.chunk_size * g.chunk_count) as u64) as usize,
    };
    let off = off.min(b.len() - 8);
    let aligned = off & !7;
    let gen = get_u64(b, g.chunk(chunk) + C_GEN);
    match rng.below(7) {
        0 | 1 => {
            let x = 1u8 << rng.below(8);
            b[off] ^= x;
            format!("flip bit {x:#04x} of byte {off}")
        }
        2 => {
            let x = (rng.below(255) + 1) as u8;
            b[off] ^= x;
            format!("xor byte {off} with {x:#04x}")
        }
        3 => {
            let v = rng.next();
            put_u64(b, aligned, v);
            format!("u64 {v:#x} at {aligned}")
        }
        4 => {
            let interesting = [
                0,
                u64::MAX,
                1 << 62,
                (1 << 62) + 1,
                gen,
                gen + 1,
                gen.wrapping_sub(count),
                gen + count,
                table_word(3, rng.below(8)),
                table_word(CHUNK_FREE, rng.below(8)),
                table_word(CHUNK_OWNED, rng.below(8)),
                table_word(CHUNK_SEALED, rng.below(8)),
                u64::from(u32::MAX),
            ];
            let v = interesting[rng.below(interesting.len() as u64) as usize];
            put_u64(b, aligned, v);
            format!("u64 {v:#x} at {aligned}")
        }
        5 => {
            // A COMMIT word with the tag of this chunk's claim (or a
            // neighbour's) and a random or absurd length, at a record
            // boundary of the chunk.
            let at = g.chunk(chunk)
                + CHUNK_HEADER_LEN
                + 8 * rng.below((g.chunk_size - CHUNK_HEADER_LEN) as u64 / 8) as usize;
            let lens = [
                0u16,
                1,
                23,
                24,
                32,
                120,
                (g.max_len) as u16,
                (g.max_len + 8) as u16,
                u16::MAX,
                rng.next() as u16,
            ];
            let len = lens[rng.below(lens.len() as u64) as usize];
            let tag_gen = [gen, gen.wrapping_sub(count), gen + 1][rng.below(3) as usize];
            put_u64(b, at, commit_word(tag_gen, len));
            format!("COMMIT(gen {tag_gen}, len {len}) at {at}")
        }
        _ => {
            // Two aligned words swapped (COMMIT words and headers moved).
            let other = (g.data_offset
                + 8 * rng.below((g.chunk_size * g.chunk_count) as u64 / 8) as usize)
                .min(b.len() - 8);
            for i in 0..8 {
                b.swap(aligned + i, other + i);
            }
            format!("swap the words at {aligned} and {other}")
        }
    }
}

/// Recovers `bytes` in this process and checks that every record returned
/// is an event that was written, under the writer and `seq` it was written
/// with. Returns how many records were returned, or what is wrong.
fn check_in_process(bytes: &[u8], threads: u64) -> Result<usize, String> {
    let ring = match Ring::from_bytes(bytes.to_vec()) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            return if msg.is_empty() || msg.contains('\n') {
                Err(format!("open error is not one line: {msg:?}"))
            } else {
                Ok(0)
            };
        }
    };
    let _ = ring.state();
    let snap = ring
        .snapshot()
        .map_err(|e| format!("snapshot failed: {e}"))?;
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut thread_of: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &snap.records {
        if let Some(prev) = last.insert(r.writer, r.seq) {
            if r.seq <= prev {
                return Err(format!("writer {}: seq {} after {prev}", r.writer, r.seq));
            }
        }
        if r.kind != KIND_EVENT {
            return Err(format!(
                "record {} of kind {} was never written",
                r.seq, r.kind
            ));
        }
        let e = decode_event(snap.payload(r))
            .map_err(|e| format!("record ({}, {}) does not decode: {e}", r.writer, r.seq))?;
        let i = match e.fields.first() {
            Some((_, FieldValue::U64(i))) => *i,
            _ => {
                return Err(format!(
                    "record ({}, {}) was never written: {e:?}",
                    r.writer, r.seq
                ))
            }
        };
        let (t, k) = (i / THREAD_STRIDE, i % THREAD_STRIDE);
        if t >= threads || !Ev::new(i).matches_event(&e) {
            return Err(format!(
                "record ({}, {}) was never written: {e:?}",
                r.writer, r.seq
            ));
        }
        if k != r.seq || *thread_of.entry(r.writer).or_insert(t) != t {
            return Err(format!(
                "event {i} (thread {t}, seq {k}) shown as writer {} seq {}",
                r.writer, r.seq
            ));
        }
    }
    Ok(snap.records.len())
}

/// Random bit flips, bytes, words (table words, GENs, COMMIT words with
/// the right tag) and swaps at random places of a valid ring, 600 rounds
/// of one to four: the reader never panics, never prints more than one
/// error line, and never shows a record that was not written, or under
/// another writer or `seq`.
#[test]
fn random_mutations_never_show_false_records() {
    let dir = TempDir::new("hostile-mutations");
    let valid = dir.path("valid.ring");
    let threads = 3;
    let evs = make_ring_threads(&valid, MIN_CAPACITY, threads, 60); // wraps
    let original = fs::read(&valid).unwrap();
    let g = Geo::of(&original);
    let baseline = check_in_process(&original, threads).expect("valid ring");
    assert!(baseline >= 60, "only {baseline} records in the valid ring");

    let seed = seed(0x5eed_0003);
    println!("mutations: seed {seed} (set BLACKBOX_FUZZ_SEED to repeat with another)");
    let mut rng = Rng(seed);
    let iterations = 600;
    let mut failures = Vec::new();
    let (mut recovered, mut refused) = (0usize, 0usize);
    let file = dir.path("mutant.ring");
    for iter in 0..iterations {
        let mut bytes = original.clone();
        let steps: Vec<String> = (0..1 + rng.below(4))
            .map(|_| mutate(&mut rng, &mut bytes, &g))
            .collect();
        let ctx = format!("seed {seed} iteration {iter}: {}", steps.join("; "));
        match std::panic::catch_unwind(AssertUnwindSafe(|| check_in_process(&bytes, threads))) {
            Ok(Ok(n)) if n > 0 => recovered += 1,
            Ok(Ok(_)) => refused += 1,
            Ok(Err(why)) => failures.push(format!("{ctx}: {why}")),
            Err(e) => failures.push(format!(
                "{ctx}: the reader library panicked: {}",
                panic_text(e.as_ref())
            )),
        }
        // The real binary for a sample (it costs a process per run).
        if iter % 6 == 0 {
            fs::write(&file, &bytes).unwrap();
            let r = soft(|| {
                let o = run_sub(&["read", "--json"], &file);
                let c = format!("{ctx}: read --json");
                assert_no_panic(&o, &c);
                if o.status.success() {
                    assert!(o.stderr.is_empty(), "{c}: {}", describe(&o));
                    only_written_records(&o, &c, &evs);
                } else {
                    assert_refused(&o, &c);
                }
                let o = run_sub(&["verify"], &file);
                let c = format!("{ctx}: verify");
                assert_no_panic(&o, &c);
                if o.status.success() {
                    assert!(o.stderr.is_empty(), "{c}: {}", describe(&o));
                } else {
                    assert_one_error_line(&o, &c);
                    assert!(
                        matches!(o.status.code(), Some(1 | 2)),
                        "{c}: {}",
                        describe(&o)
                    );
                }
            });
            failures.extend(r);
        }
        if failures.len() >= 5 {
            break;
        }
    }
    println!("mutations: {recovered} rounds with records, {refused} refused or empty");
    assert_no_failures(&failures, "mutation rounds");
}

/// A valid header over random chunk contents, over a random chunk table, or
/// both: nothing is shown, the damage is counted, `verify` fails.
#[test]
fn valid_header_over_random_chunks_is_flagged() {
    let dir = TempDir::new("hostile-random-data");
    let valid = dir.path("valid.ring");
    let evs = make_ring_threads(&valid, 65536, 2, 200);
    let g = Geo::of(&fs::read(&valid).unwrap());
    let seed = seed(0x5eed_0002);
    println!("random chunks: seed {seed}");
    let mut rng = Rng(seed);
    let table = g.table(0)..g.table(g.chunk_count);
    let data = g.data_offset..g.file_len();
    let p = variant(&valid, &dir.path("random-data"), |b| {
        let noise = rng.bytes(data.len());
        b[data.clone()].copy_from_slice(&noise);
    });
    let seen = expect_flagged(&p, "random data region", &evs);
    assert!(
        seen.records.is_empty(),
        "records out of random bytes: {:?}",
        seen.records
    );
    let p = variant(&valid, &dir.path("random-all"), |b| {
        let noise = rng.bytes(g.file_len() - table.start);
        b[table.start..].copy_from_slice(&noise);
    });
    let seen = expect_flagged(&p, "random chunk table and data region", &evs);
    assert!(
        seen.records.is_empty(),
        "records out of random bytes: {:?}",
        seen.records
    );
    // A random table over real chunks: some words pass (any visits above
    // the claim's), and those chunks' records are real.
    let p = variant(&valid, &dir.path("random-table"), |b| {
        let noise = rng.bytes(table.len());
        b[table.clone()].copy_from_slice(&noise);
    });
    expect_flagged(&p, "random chunk table", &evs);
}

// ---------------------------------------------------------------------------
// The crafted ring of the issue: every slot looks published.

/// Builds, from the spec alone, a ring of `capacity` bytes in chunks of
/// `chunk_size` whose every chunk is claimed (sealed, one visit, `GEN` its
/// index, one writer per chunk, consecutive `seq` ranges) and whose records
/// are all `len` bytes long. With `sign` false, every 8-byte slot after
/// each chunk header holds a COMMIT word with the chunk's tag, so every
/// place a walk can land looks published, and no CRC matches. With `sign`
/// true, the records are raw records with valid CRCs: the most records a
/// ring of that size can hold, all of them to index and merge.
fn crafted_ring(capacity: u64, chunk_size: u32, len: u16, sign: bool) -> Vec<u8> {
    let count = (capacity / u64::from(chunk_size)) as u32;
    let data = data_offset(count) as usize;
    let mut b = vec![0u8; data + capacity as usize];
    b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
    put_u32(&mut b, H_VERSION, VERSION);
    put_u32(&mut b, H_ENDIAN, ENDIAN_CHECK);
    put_u32(&mut b, H_HEADER_LEN, HEADER_LEN as u32);
    put_u32(&mut b, H_RECORD_HEADER_LEN, RECORD_HEADER_LEN as u32);
    put_u64(&mut b, H_DATA_OFFSET, data as u64);
    put_u64(&mut b, H_CAPACITY, capacity);
    put_u64(&mut b, H_NONCE, 0x5eed_cafe_f00d_0001);
    put_u64(&mut b, H_START_UNIX_NS, 1_700_000_000_000_000_000);
    put_u32(&mut b, H_MAX_RECORD_LEN, max_record_len(chunk_size) as u32);
    put_u32(&mut b, H_CHUNK_SIZE, chunk_size);
    put_u32(&mut b, H_CHUNK_COUNT, count);
    put_u32(&mut b, H_CHUNK_HEADER_LEN, CHUNK_HEADER_LEN as u32);
    put_u64(&mut b, H_CHUNK_TABLE_OFFSET, HEADER_LEN as u64);
    put_u32(&mut b, H_CLOCK, CLOCK_REALTIME_NS);
    put_u64(&mut b, H_NEXT_TICKET, u64::from(count));
    put_u32(&mut b, H_WRITERS, count);
    put_u32(&mut b, H_STATE, STATE_EXITED);
    b[H_PROGRAM..H_PROGRAM + 7].copy_from_slice(b"crafted");
    let g = Geo::of(&b);
    let per_chunk = (chunk_size as usize - CHUNK_HEADER_LEN) / stride(len as usize);
    for i in 0..count as usize {
        put_u64(&mut b, g.table(i), table_word(CHUNK_SEALED, 1));
        let base = g.chunk(i);
        let gen = i as u64;
        put_u64(&mut b, base + C_GEN, gen);
        put_u64(&mut b, base + C_FIRST_SEQ, (i * per_chunk) as u64);
        put_u32(&mut b, base + C_WRITER, i as u32);
        put_u32(&mut b, base + C_THREAD_ID, 1000 + i as u32);
        let word = commit_word(gen, len);
        if !sign {
            for slot in (base + CHUNK_HEADER_LEN..base + chunk_size as usize).step_by(8) {
                put_u64(&mut b, slot, word);
            }
            continue;
        }
        let head = chunk_header(&b, &g, i);
        for k in 0..per_chunk {
            let at = base + CHUNK_HEADER_LEN + k * stride(len as usize);
            put_u64(&mut b, at + R_COMMIT, word);
            b[at + R_KIND..at + R_KIND + 2].copy_from_slice(&KIND_RAW.to_le_bytes());
            put_u64(&mut b, at + R_TS, 1_700_000_000_000_000_000 + k as u64);
            let seq = (i * per_chunk + k) as u64;
            let record = &b[at..at + stride(len as usize)];
            let crc = spec_crc(g.nonce, &head, len as usize, seq, record);
            put_u32(&mut b, at + R_CRC, crc);
        }
    }
    b
}

/// The issue's crafted ring: 16 MiB, every chunk claimed, every 8-byte
/// slot a COMMIT word with its chunk's tag and a plausible length. It is
/// rejected (`verify` fails, every record counted corrupt), and the work
/// is bounded by structure, not by a clock: each record the walk examines
/// is counted exactly once (valid, corrupt or torn) and takes at least 24
/// bytes of its chunk, so the walk examines at most `capacity / 24`
/// records plus one stop per chunk, and checksums each byte at most once;
/// its heap stays within a small multiple of the file. The same holds for
/// the ring crafted to hold the most valid records (the worst case for the
/// index and the merge by time) and for a valid 16 MiB ring written by the
/// recorder; the test prints how many records each walk examined. (The
/// timing of the same three rings is in `reader/benches/recover.rs`.)
#[test]
fn a_ring_whose_every_slot_looks_published_is_read_in_linear_work() {
    const CAPACITY: u64 = 16 << 20;
    let dir = TempDir::new("hostile-crafted");

    // A valid 16 MiB ring, filled past full by the recorder.
    let valid = dir.path("valid.ring");
    let rec = Recorder::builder(&valid)
        .capacity(CAPACITY)
        .heartbeat(None)
        .create()
        .expect("create ring");
    let chunk_size = rec.chunk_size();
    let mut n = 0u64;
    while n < CAPACITY / 48 {
        rec.log(Level::Info, "crafted", "msg", &[Field::new("n", n)])
            .expect("log");
        n += 1;
    }
    rec.close();

    let mut rings: Vec<(&str, Vec<u8>, bool)> = vec![(
        "valid, written by the recorder",
        fs::read(&valid).unwrap(),
        false,
    )];
    for (name, size, len, sign) in [
        (
            "every slot published, no CRC matches",
            chunk_size,
            24u16,
            false,
        ),
        (
            "every slot published, longest records",
            chunk_size,
            max_record_len(chunk_size) as u16,
            false,
        ),
        (
            "every slot published, 1 KiB chunks",
            MIN_CHUNK_SIZE,
            24,
            false,
        ),
        (
            "all the valid 24-byte records 1 KiB chunks hold",
            MIN_CHUNK_SIZE,
            24,
            true,
        ),
    ] {
        rings.push((name, crafted_ring(CAPACITY, size, len, sign), !sign));
    }
    let mut failures = Vec::new();
    let mut examined_valid = 0u64;
    for (name, bytes, rejected) in &rings {
        let g = Geo::of(bytes);
        let file_len = bytes.len();
        let copy = bytes.clone();
        let (snap, heap) = peak_heap(|| {
            Ring::from_bytes(copy)
                .and_then(|r| r.snapshot())
                .expect("a valid header")
        });
        let t = snap.totals;
        let examined = snap.records.len() as u64 + t.corrupt + t.torn;
        let bound = CAPACITY / RECORD_HEADER_LEN as u64 + g.chunk_count as u64;
        if examined_valid == 0 {
            examined_valid = examined;
        }
        println!(
            "{name}: {} chunks of {} B; {} records, {} corrupt, {} torn: {examined} examined \
             ({:.2}x the valid ring's; bound {bound}); peak heap {:.1} MiB ({:.2}x the file)",
            g.chunk_count,
            g.chunk_size,
            snap.records.len(),
            t.corrupt,
            t.torn,
            examined as f64 / examined_valid as f64,
            heap as f64 / (1 << 20) as f64,
            heap as f64 / file_len as f64,
        );
        failures.extend(soft(|| {
            assert!(
                examined <= bound,
                "{name}: {examined} records examined, bound {bound}"
            );
            assert!(
                heap <= 6 * file_len,
                "{name}: {heap} heap bytes for a {file_len}-byte file"
            );
            if *rejected {
                assert!(snap.records.is_empty(), "{name}");
                assert_eq!(
                    t.corrupt, examined,
                    "{name}: every record examined is corrupt"
                );
            } else {
                assert_eq!(t, blackbox_reader::Totals::default(), "{name}");
            }
        }));
        // The CLI finishes and reports.
        let p = dir.path("ring");
        fs::write(&p, bytes).unwrap();
        failures.extend(soft(|| {
            let ctx = format!("crafted ring: {name}");
            let o = run_sub(&["verify"], &p);
            assert_no_panic(&o, &ctx);
            if *rejected {
                assert_one_error_line(&o, &ctx);
                assert_eq!(o.status.code(), Some(1), "{ctx}: {}", describe(&o));
                assert!(
                    text(&o.stderr).contains("fail their checksum"),
                    "{ctx}: {}",
                    describe(&o)
                );
                let o = run_sub(&["read", "--json"], &p);
                assert!(
                    o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
                    "{ctx}: {}",
                    describe(&o)
                );
            } else {
                assert_eq!(o.status.code(), Some(0), "{ctx}: {}", describe(&o));
            }
            let o = run_sub(&["info", "--json"], &p);
            assert!(o.status.success(), "{ctx}: {}", describe(&o));
            let info: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(info["records"], snap.records.len(), "{ctx}");
            assert_eq!(info["corrupt"], t.corrupt, "{ctx}");
        }));
    }
    assert_no_failures(&failures, "crafted rings");
}

// ---------------------------------------------------------------------------
// Paths that are not regular files.

#[test]
fn directories_missing_paths_and_devices_are_refused() {
    let dir = TempDir::new("hostile-paths");
    expect_refused_saying(&dir.0, "a directory", "not a regular file");
    expect_refused_saying(
        &dir.path("no-such.ring"),
        "a missing path",
        "check the path",
    );
    expect_refused(
        &dir.path("no-such-dir/x.ring"),
        "a path under a missing directory",
    );
    expect_refused_saying(Path::new("/dev/null"), "/dev/null", "not a regular file");
    if Path::new("/dev/zero").exists() {
        expect_refused(Path::new("/dev/zero"), "/dev/zero");
    }
}

/// A FIFO nobody writes to: opening it for reading blocks, unless the
/// reader opens non-blocking or checks the file type first.
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = TempDir::new("hostile-fifo");
    let fifo = dir.path("ring.fifo");
    if let Err(e) = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        println!("skipped: cannot make a FIFO here ({e})");
        return;
    }
    expect_refused_saying(&fifo, "a FIFO", "not a regular file");
}

// ---------------------------------------------------------------------------
// Reserving the pages at create.

/// A ring bigger than the free space of its file system fails at create
/// with one clear line and exit status 2, never SIGBUS later, and leaves no
/// file behind. Runs the demo writer in a private mount namespace on a
/// 256 KiB tmpfs (needs root and `unshare`).
#[test]
fn creating_a_ring_larger_than_a_tmpfs_fails_at_create() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not root (mounting a small tmpfs needs root)");
        return;
    }
    let probe = Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "skipped: unshare --mount fails here ({})",
                text(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: no unshare ({e})");
            return;
        }
    }
    let dir = TempDir::new("hostile-nospace");
    let mnt = dir.path("mnt");
    fs::create_dir(&mnt).unwrap();
    // Prints "rc=<status> left=[<files>]" on stdout; blackbox's stderr passes
    // through. 97: the tmpfs could not be mounted.
    let script = r#"mount -t tmpfs -o size=256k none "$1" || exit 97
"$2" demo --ring "$1/x.ring" --capacity "$3" --records 10
rc=$?
echo "rc=$rc left=[$(ls -A "$1")]"
exit $rc"#;
    let in_namespace = |capacity: &str| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "sh", "-c", script, "sh"])
            .arg(&mnt)
            .arg(env!("CARGO_BIN_EXE_blackbox"))
            .arg(capacity);
        run_bounded(
            cmd,
            &format!("demo --capacity {capacity} on a 256 KiB tmpfs"),
        )
    };

    // Control: a ring that fits is created (so the failure below is the size).
    let o = in_namespace("64KiB");
    if o.status.code() == Some(97) {
        println!(
            "skipped: cannot mount a tmpfs here ({})",
            text(&o.stderr).trim()
        );
        return;
    }
    assert_eq!(
        o.status.code(),
        Some(0),
        "64KiB ring on 256 KiB: {}",
        describe(&o)
    );
    assert_eq!(
        text(&o.stdout).trim(),
        "rc=0 left=[x.ring]",
        "{}",
        describe(&o)
    );

    let o = in_namespace("1MiB");
    let ctx = "1 MiB ring on a 256 KiB tmpfs";
    assert_one_error_line(&o, ctx);
    let err = text(&o.stderr);
    assert!(err.contains("cannot reserve"), "{ctx}: {}", describe(&o));
    assert!(
        err.contains("x.ring"),
        "{ctx}: the error should name the ring: {err}"
    );
    assert_eq!(
        text(&o.stdout).trim(),
        "rc=2 left=[]",
        "{ctx}: expected exit status 2 (not SIGBUS = 135) and no file left\n{}",
        describe(&o)
    );
    assert_eq!(o.status.code(), Some(2), "{ctx}: {}", describe(&o));
    // The mount was private to the namespace.
    assert_eq!(
        fs::read_dir(&mnt).unwrap().count(),
        0,
        "the tmpfs leaked out"
    );
}
