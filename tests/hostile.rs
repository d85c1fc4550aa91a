//! Hostile ring files (DESIGN.md invariants 2 and 5): the reader trusts
//! nothing, never panics, never loops, never allocates what a header claims,
//! and never shows a damaged record as valid.
//!
//! Every file is run through every subcommand of the real `blackbox` binary
//! (`info`, `info --json`, `read`, `read --json`, `verify`) under a timeout.
//! Valid rings are made with the recorder library and then patched at the
//! offsets of `recorder::layout`.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use reader::{decode_event, FieldValue, Ring};
use recorder::layout::*;
use recorder::{Field, Level, Recorder};
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

/// Damage the reader may tolerate: `info` and `read` succeed quietly and
/// show only records that were written, `verify` fails with one line.
/// Returns the records of `read --json` and the `info --json` object.
fn expect_flagged(path: &Path, ctx: &str, written: &[Ev]) -> (Vec<Value>, Value) {
    let mut records = Vec::new();
    let mut info = Value::Null;
    for sub in SUBCOMMANDS {
        let o = run_sub(sub, path);
        let ctx = format!("{ctx}: blackbox {}", sub.join(" "));
        if sub[0] == "verify" {
            assert_one_error_line(&o, &ctx);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{ctx}: verify must report the damage (exit 1)\n{}",
                describe(&o)
            );
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
    (records, info)
}

/// Either refused by every subcommand, or tolerated as in [`expect_flagged`]
/// (`verify` must fail in both cases).
fn expect_refused_or_flagged(path: &Path, ctx: &str, written: &[Ev]) {
    let probe = run_sub(&["info"], path);
    assert_no_panic(&probe, &format!("{ctx}: blackbox info"));
    if probe.status.success() {
        expect_flagged(path, ctx, written);
    } else {
        expect_refused(path, ctx);
    }
}

/// Parses `read --json` output and checks every record is one that was written.
fn only_written_records(o: &Output, ctx: &str, written: &[Ev]) -> Vec<Value> {
    let records: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{ctx}: line is not JSON ({e}): {l}"))
        })
        .collect();
    for r in &records {
        assert!(
            written.iter().any(|ev| ev.matches_json(r)),
            "{ctx}: read shows a record that was never written: {r}"
        );
    }
    records
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

    fn log(&self, rec: &Recorder) {
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
        .expect("log");
    }

    fn matches_event(&self, e: &reader::Event<'_>) -> bool {
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

/// Creates a cleanly closed ring holding events `0..n`; returns them.
fn make_ring(path: &Path, capacity: u64, n: u64) -> Vec<Ev> {
    let rec = Recorder::builder(path)
        .capacity(capacity)
        .heartbeat(None)
        .create()
        .expect("create ring");
    let evs: Vec<Ev> = (0..n).map(Ev::new).collect();
    for ev in &evs {
        ev.log(&rec);
    }
    rec.close();
    evs
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
// Files that are not rings, or not rings this reader may read.

#[test]
fn empty_random_and_foreign_files_are_refused() {
    let dir = TempDir::new("hostile-foreign");
    let valid = dir.path("valid.ring");
    make_ring(&valid, 4096, 10);

    let empty = dir.path("empty");
    fs::write(&empty, b"").unwrap();
    expect_refused(&empty, "empty file");

    let seed = seed(0x5eed_0001);
    println!("random files: seed {seed}");
    let mut rng = Rng(seed);
    for size in [1usize, 100, 4095, 4096, 4096 + 4096, 4096 + 65536, 12345] {
        let p = dir.path(&format!("random-{size}"));
        fs::write(&p, rng.bytes(size)).unwrap();
        expect_refused(&p, &format!("{size} random bytes"));
    }

    // The magic alone does not make a ring: the rest of the header is random.
    let p = dir.path("magic-then-random");
    let mut bytes = rng.bytes(4096 + 4096);
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

    for version in [0u32, VERSION + 1, u32::MAX] {
        let p = variant(&valid, &dir.path(&format!("version-{version}")), |b| {
            put_u32(b, H_VERSION, version)
        });
        expect_refused_saying(&p, &format!("layout version {version}"), "version");
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
    expect_refused(&p, "byte-swapped endianness mark");

    for (name, off, value) in [
        ("header-len", H_HEADER_LEN, 8192u64),
        ("record-header-len", H_RECORD_HEADER_LEN, 16),
        ("data-offset", H_DATA_OFFSET, 0),
        ("data-offset-huge", H_DATA_OFFSET, u64::MAX - 4095),
    ] {
        let p = variant(&valid, &dir.path(name), |b| {
            if off == H_DATA_OFFSET {
                put_u64(b, off, value)
            } else {
                put_u32(b, off, value as u32)
            }
        });
        expect_refused(&p, &format!("damaged {name} field ({value})"));
    }

    // The unmodified ring passes, so the refusals above are about the damage.
    let o = run_sub(&["verify"], &valid);
    assert!(o.status.success(), "valid ring: {}", describe(&o));
}

#[test]
fn truncated_rings_are_refused() {
    let dir = TempDir::new("hostile-truncated");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    make_ring(&valid, capacity, 40);
    let full = HEADER_LEN as u64 + capacity;
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
    // Header complete, data region short or missing.
    for len in [4096u64, 4097, 4096 + 4096, 4096 + capacity / 2, full - 1] {
        let p = variant(&valid, &dir.path(&format!("cut-{len}")), |b| {
            b.truncate(len as usize)
        });
        expect_refused_saying(
            &p,
            &format!("ring cut to {len} of {full} bytes (in the data region)"),
            "truncated",
        );
    }
}

#[test]
fn bad_capacity_fields_are_refused() {
    let dir = TempDir::new("hostile-capacity");
    let valid = dir.path("valid.ring");
    make_ring(&valid, 65536, 20);
    for capacity in [
        0u64,
        3 * 4096,
        65536 + 8,
        2048,
        MIN_CAPACITY / 2,
        1 << 40,
        MAX_CAPACITY * 2,
        u64::MAX,
    ] {
        let p = variant(&valid, &dir.path(&format!("cap-{capacity}")), |b| {
            put_u64(b, H_CAPACITY, capacity)
        });
        expect_refused_saying(&p, &format!("capacity field {capacity}"), "capacity");
    }
    // Valid powers of two, but more than the file holds.
    for capacity in [131072u64, 1 << 20, MAX_CAPACITY] {
        let p = variant(&valid, &dir.path(&format!("cap-big-{capacity}")), |b| {
            put_u64(b, H_CAPACITY, capacity)
        });
        expect_refused_saying(
            &p,
            &format!("capacity {capacity} larger than the file"),
            "truncated",
        );
    }
}

/// A header that claims 4 GiB (and a TAIL to match) on a 68 KiB file must
/// fail on the size check, before anything the size of the claim is
/// allocated: run under a 256 MiB address-space limit.
#[test]
fn a_short_file_claiming_a_huge_capacity_allocates_nothing() {
    let dir = TempDir::new("hostile-memory");
    let valid = dir.path("valid.ring");
    let evs = make_ring(&valid, 65536, 20);
    let huge = variant(&valid, &dir.path("huge.ring"), |b| {
        put_u64(b, H_CAPACITY, MAX_CAPACITY);
        put_u64(b, H_TAIL, MAX_CAPACITY);
    });
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

    for sub in SUBCOMMANDS {
        let o = limited(sub, &huge);
        let ctx = format!("4 GiB claim on a short file: blackbox {}", sub.join(" "));
        assert_refused(&o, &ctx);
        assert!(
            text(&o.stderr).contains("truncated"),
            "{ctx}: must fail on the size check\n{}",
            describe(&o)
        );
    }
}

#[test]
fn absurd_tail_values_are_refused_or_flagged() {
    let dir = TempDir::new("hostile-tail");
    let valid = dir.path("valid.ring");
    let capacity = 4096u64;
    let evs = make_ring(&valid, capacity, 60); // wraps the 4 KiB ring
    let real_tail = get_u64(&fs::read(&valid).unwrap(), H_TAIL);
    assert!(real_tail > capacity, "the ring should have wrapped");

    let p = variant(&valid, &dir.path("tail-unaligned"), |b| {
        put_u64(b, H_TAIL, real_tail + 3)
    });
    expect_refused_saying(&p, "TAIL not a multiple of 8", "multiple of 8");
    let p = variant(&valid, &dir.path("tail-max-unaligned"), |b| {
        put_u64(b, H_TAIL, u64::MAX)
    });
    expect_refused(&p, "TAIL u64::MAX");

    // Positions a writer cannot have reached, or that do not match the data:
    // refusing is fine, so is showing nothing false, but verify must fail.
    // Every case runs; the failures are reported together.
    let mut failures = Vec::new();
    for (name, tail) in [
        ("tail-max", !7u64), // u64::MAX rounded down to 8
        ("tail-max-minus-capacity", (u64::MAX - capacity) & !7),
        ("tail-2-pow-63", 1 << 63),
        ("tail-far", 1 << 50),
        ("tail-laps-ahead", real_tail + 1000 * capacity),
        ("tail-inside-first-record", 64),
    ] {
        let p = variant(&valid, &dir.path(name), |b| put_u64(b, H_TAIL, tail));
        let ctx = format!("{name}: TAIL {tail} (real {real_tail})");
        if let Some(why) = soft(|| expect_refused_or_flagged(&p, &ctx, &evs)) {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the TAIL cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn valid_header_over_random_data_is_flagged() {
    let dir = TempDir::new("hostile-random-data");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    let evs = make_ring(&valid, capacity, 30);
    let seed = seed(0x5eed_0002);
    println!("random data region: seed {seed}");
    let mut rng = Rng(seed);
    let p = variant(&valid, &dir.path("random-data.ring"), |b| {
        let noise = rng.bytes(capacity as usize);
        b[HEADER_LEN..].copy_from_slice(&noise);
    });
    let (records, _) = expect_flagged(&p, "cleanly closed ring whose data region is random", &evs);
    assert!(
        records.is_empty(),
        "records out of random bytes: {records:?}"
    );
}

/// A COMMIT word with the right tag but an absurd length is damage the
/// reader steps over: it costs that record, the others are recovered.
#[test]
fn absurd_record_lengths_cost_only_that_record() {
    let dir = TempDir::new("hostile-lengths");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    let evs = make_ring(&valid, capacity, 10);
    let snap = Ring::open(&valid).unwrap().snapshot().unwrap();
    assert_eq!(snap.records.len(), evs.len());
    let victim = &snap.records[4];
    let at = HEADER_LEN + (victim.pos() % capacity) as usize;
    let max_len = max_record_len(capacity) as u32;
    for len in [
        0u32,
        7,
        8,
        RECORD_HEADER_LEN as u32 - 1,
        max_len + 8,
        capacity as u32,
        capacity as u32 + 8,
        u32::MAX,
        !7u32, // u32::MAX rounded down to 8
    ] {
        let p = variant(&valid, &dir.path(&format!("len-{len}")), |b| {
            put_u64(b, at + R_COMMIT, commit_word(len, victim.pos()))
        });
        let ctx = format!("record 4 (seq {}) with COMMIT length {len}", victim.seq);
        let (records, info) = expect_flagged(&p, &ctx, &evs);
        let messages: Vec<&str> = records
            .iter()
            .map(|r| r["message"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = evs
            .iter()
            .filter(|e| e.i != 4)
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(messages, expected, "{ctx}: the other records must survive");
        let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        let orig: Vec<u64> = snap
            .records
            .iter()
            .filter(|r| r.seq != victim.seq)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, orig, "{ctx}: sequence numbers changed");
        assert!(
            info["corrupt"].as_u64().unwrap() + info["torn"].as_u64().unwrap() >= 1,
            "{ctx}: info must count the damage: {info}"
        );
        assert_eq!(info["records"], 9, "{ctx}: {info}");
    }
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
// Random damage.

/// Applies one random mutation; returns a description.
fn mutate(rng: &mut Rng, b: &mut [u8], capacity: u64, tail: u64) -> String {
    let data = HEADER_LEN as u64;
    // Where: the ABI block, the counters and lap log, or the data region.
    let off = match rng.below(10) {
        0 | 1 => rng.below(128) as usize,
        2 | 3 => 1024 + rng.below(512) as usize,
        _ => (data + rng.below(capacity)) as usize,
    };
    let off = off.min(b.len() - 8);
    match rng.below(6) {
        0 | 1 => {
            let x = (rng.below(255) + 1) as u8;
            b[off] ^= x;
            format!("xor byte {off} with {x:#04x}")
        }
        2 => {
            let v = rng.next();
            put_u64(b, off, v);
            format!("u64 {v:#x} at {off}")
        }
        3 => {
            let interesting = [
                0,
                u64::MAX,
                !7u64,
                1 << 32,
                capacity,
                capacity - 8,
                tail,
                tail + 8,
                tail.wrapping_sub(capacity),
                (u32::MAX as u64) << 32,
            ];
            let v = interesting[rng.below(interesting.len() as u64) as usize];
            let off = off & !7;
            put_u64(b, off, v);
            format!("u64 {v:#x} at {off}")
        }
        4 => {
            // A COMMIT word with the right tag for an aligned position in
            // the window, and a random or absurd length.
            let pos = (tail.saturating_sub(capacity) + rng.below(capacity.min(tail).max(8))) & !7;
            let lens = [
                0u32,
                7,
                32,
                40,
                129,
                136,
                4096,
                65536,
                u32::MAX,
                rng.next() as u32,
            ];
            let len = lens[rng.below(lens.len() as u64) as usize];
            let at = (data + pos % capacity) as usize;
            put_u64(b, at, commit_word(len, pos));
            format!("COMMIT(len {len}, pos {pos}) at {at}")
        }
        _ => {
            // Claim lapped writes with arbitrary lap log entries.
            let k = rng.below(LAP_LOG_ENTRIES as u64) as usize;
            let n = rng.below(40);
            let p = if rng.below(2) == 0 {
                rng.next()
            } else {
                tail.wrapping_sub(rng.below(capacity))
            };
            let s = if rng.below(2) == 0 {
                rng.next()
            } else {
                rng.below(512)
            };
            put_u64(b, H_LAPPED_WRITES, n);
            put_u64(b, H_LAP_LOG + k * 16, p);
            put_u64(b, H_LAP_LOG + k * 16 + 8, s);
            format!("lapped_writes {n}, lap log [{k}] = ({p:#x}, {s:#x})")
        }
    }
}

/// Opens and recovers `path` in this process, checking that every record
/// returned is one of `evs`. Returns a description of what is wrong.
fn check_in_process(path: &Path, evs: &[Ev]) -> Result<usize, String> {
    let ring = match Ring::open(path) {
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
    let snap = match ring.snapshot() {
        Ok(s) => s,
        Err(_) => return Ok(0),
    };
    let mut last_seq = None;
    for r in &snap.records {
        if last_seq.is_some_and(|s| r.seq <= s) {
            return Err(format!("seq {} after {:?}", r.seq, last_seq));
        }
        last_seq = Some(r.seq);
        if r.kind != KIND_EVENT {
            return Err(format!(
                "record {} of kind {} was never written",
                r.seq, r.kind
            ));
        }
        let e = decode_event(snap.payload(r))
            .map_err(|e| format!("record {} does not decode: {e}", r.seq))?;
        if !evs.iter().any(|ev| ev.matches_event(&e)) {
            return Err(format!("record {} was never written: {e:?}", r.seq));
        }
    }
    Ok(snap.records.len())
}

/// Random bytes flipped and random words written at random places, a few
/// hundred times: the reader never panics, never prints more than one error
/// line, and never shows a record that was not written.
#[test]
fn random_mutations_never_show_false_records() {
    let dir = TempDir::new("hostile-mutations");
    let valid = dir.path("valid.ring");
    let capacity = 4096u64;
    let evs = make_ring(&valid, capacity, 50); // wraps: the oldest are overwritten
    let original = fs::read(&valid).unwrap();
    let tail = get_u64(&original, H_TAIL);
    let baseline = check_in_process(&valid, &evs).expect("valid ring");
    assert!(baseline >= 20, "only {baseline} records in the valid ring");

    let seed = seed(0x5eed_0003);
    println!("mutations: seed {seed} (set BLACKBOX_FUZZ_SEED to repeat with another)");
    let mut rng = Rng(seed);
    let iterations = 400;
    let mut failures = Vec::new();
    let mut recovered = 0usize;
    let mut refused = 0usize;
    let file = dir.path("mutant.ring");
    for iter in 0..iterations {
        let mut bytes = original.clone();
        let steps: Vec<String> = (0..1 + rng.below(4))
            .map(|_| mutate(&mut rng, &mut bytes, capacity, tail))
            .collect();
        fs::write(&file, &bytes).unwrap();
        let ctx = format!("seed {seed} iteration {iter}: {}", steps.join("; "));
        match std::panic::catch_unwind(AssertUnwindSafe(|| check_in_process(&file, &evs))) {
            Ok(Ok(n)) if n > 0 => recovered += 1,
            Ok(Ok(_)) => refused += 1,
            Ok(Err(why)) => failures.push(format!("{ctx}: {why}")),
            Err(e) => failures.push(format!(
                "{ctx}: the reader library panicked: {}",
                panic_text(e.as_ref())
            )),
        }
        // The real binary for a sample (it costs a process per run).
        if iter % 4 == 0 {
            let o = run_sub(&["read", "--json"], &file);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
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
            }));
            if let Err(e) = r {
                failures.push(panic_text(e.as_ref()));
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    println!("mutations: {recovered} recovered records, {refused} refused or empty");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every single flipped byte of a record (header, payload, padding) is
/// detected: the record disappears (never shown altered), its neighbours
/// survive, `info` counts the damage and `verify` fails.
///
/// In a cleanly closed ring a flip in COMMIT's tag makes the record look
/// unpublished (torn); `verify` fails on it because a clean ring has no
/// torn records (the layout's documented limit).
#[test]
fn every_flipped_byte_of_a_record_is_detected() {
    let dir = TempDir::new("hostile-flips");
    let valid = dir.path("valid.ring");
    let capacity = 65536u64;
    let evs = make_ring(&valid, capacity, 5);
    let original = fs::read(&valid).unwrap();
    let clean = run_sub(&["read", "--json"], &valid);
    assert!(clean.status.success(), "{}", describe(&clean));
    let clean_records = only_written_records(&clean, "clean ring", &evs);
    assert_eq!(clean_records.len(), 5);
    let o = run_sub(&["verify"], &valid);
    assert!(
        o.status.success(),
        "clean ring must verify: {}",
        describe(&o)
    );

    let snap = Ring::open(&valid).unwrap().snapshot().unwrap();
    let victim = snap.records[2].clone();
    assert_eq!(victim.seq, clean_records[2]["seq"].as_u64().unwrap());
    let start = HEADER_LEN + victim.pos() as usize;
    let span = stride(victim.len as usize);
    assert!(span > victim.len as usize, "pick a record with padding");

    let cases: Vec<(usize, u8)> = (0..span).flat_map(|i| [(i, 0xFFu8), (i, 0x01u8)]).collect();
    let worker = |part: &[(usize, u8)], w: usize| {
        let file = dir.path(&format!("flip-{w}.ring"));
        for &(i, x) in part {
            let mut bytes = original.clone();
            bytes[start + i] ^= x;
            fs::write(&file, &bytes).unwrap();
            let ctx = format!(
                "record seq {} ({} bytes, stride {span}): byte {i} xor {x:#04x}",
                victim.seq, victim.len
            );

            let o = run_sub(&["read", "--json"], &file);
            let c = format!("{ctx}: read --json");
            assert_no_panic(&o, &c);
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "{c}: {}",
                describe(&o)
            );
            let got = only_written_records(&o, &c, &evs);
            for (k, orig) in clean_records.iter().enumerate() {
                let found: Vec<&Value> = got.iter().filter(|r| r["seq"] == orig["seq"]).collect();
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    v.as_object_mut().unwrap().remove("gap_before");
                    v
                };
                if k == 2 {
                    // Missing, or exactly as written.
                    for r in &found {
                        assert_eq!(strip(r), strip(orig), "{c}: damaged record shown altered");
                    }
                } else {
                    assert_eq!(found.len(), 1, "{c}: record {k} lost: {got:?}");
                    assert_eq!(strip(found[0]), strip(orig), "{c}: record {k} changed");
                }
            }
            assert!(got.len() <= 5, "{c}: extra records: {got:?}");

            let o = run_sub(&["info", "--json"], &file);
            let c = format!("{ctx}: info --json");
            assert_no_panic(&o, &c);
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "{c}: {}",
                describe(&o)
            );
            let info: Value = serde_json::from_slice(&o.stdout).expect("info JSON");
            let damage = info["torn"].as_u64().unwrap() + info["corrupt"].as_u64().unwrap();
            assert!(damage >= 1, "{c}: damage not counted: {info}");

            let o = run_sub(&["verify"], &file);
            let c = format!("{ctx}: verify");
            assert_one_error_line(&o, &c);
            assert_eq!(o.status.code(), Some(1), "{c}: {}", describe(&o));
        }
    };
    let half = cases.len() / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| worker(&cases[..half], 0));
        let b = s.spawn(|| worker(&cases[half..], 1));
        let ra = a.join();
        let rb = b.join();
        if let Err(e) = ra.and(rb) {
            std::panic::resume_unwind(e);
        }
    });
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
