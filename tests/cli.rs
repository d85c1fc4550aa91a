//! The `blackbox` command line as users and scripts see it (its outside
//! interface: command names, flags, JSON keys): help, usage errors as one line with exit status 2,
//! `read` filters and output formats, `info` text, a broken pipe, and the
//! demo writer's ways to end.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use blackbox_reader::Ring;
use blackbox_recorder::{Clock, Field, Level, Recorder, Value as FieldVal};
use common::{read_json, run, stderr, stdout, TempDir};
use serde_json::{json, Value};

fn describe(o: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        o.status.signal(),
        stdout(o).chars().take(2000).collect::<String>(),
        stderr(o)
    )
}

/// A usage or input error: status 2, nothing on stdout, exactly one line
/// `blackbox: ...` on stderr, no panic.
fn assert_usage_error(o: &Output, ctx: &str) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{ctx}: panicked\n{}",
        describe(o)
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{ctx}: exit status\n{}",
        describe(o)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("blackbox: ") && lines[0].len() > 10,
        "{ctx}: expected exactly one line `blackbox: ...` on stderr\n{}",
        describe(o)
    );
    assert!(
        o.stdout.is_empty(),
        "{ctx}: printed on stdout\n{}",
        describe(o)
    );
}

/// A closed ring holding `events` (level, message), target `cli::test`.
fn ring_with(path: &Path, events: &[(Level, &str)]) {
    let rec = Recorder::builder(path)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .expect("create ring");
    for (k, (level, message)) in events.iter().enumerate() {
        rec.log(*level, "cli::test", message, &[Field::new("k", k as u64)])
            .expect("log");
    }
    rec.close();
}

fn messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["message"].as_str().expect("message").to_string())
        .collect()
}

/// RFC 3339 in UTC with nanoseconds, computed independently of the product
/// (days to civil date, after H. Hinnant).
fn rfc3339_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let z = (secs / 86_400) as i64 + 719_468;
    let rem = secs % 86_400;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn looks_like_rfc3339_nanos(ts: &str) -> bool {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddddddddZ";
    ts.len() == pattern.len()
        && ts.chars().zip(pattern.chars()).all(|(c, p)| match p {
            'd' => c.is_ascii_digit(),
            p => c == p,
        })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------

#[test]
fn help_for_every_subcommand_exits_zero() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["info", "read", "verify", "demo"]),
        (&["-h"], &["info", "read", "verify", "demo"]),
        (&["help"], &["info", "read", "verify", "demo"]),
        (&["info", "--help"], &["RING", "--json"]),
        (
            &["read", "--help"],
            &["RING", "--json", "--last", "--since", "--level", "--follow"],
        ),
        // --since counts back from now (journalctl's meaning); --last
        // DURATION from the window's end.
        (
            &["read", "--help"],
            &["before now", "journalctl", "N|DURATION"],
        ),
        (&["help", "read"], &["--since"]),
        (&["verify", "--help"], &["RING"]),
        (
            &["demo", "--help"],
            &[
                "--ring",
                "--capacity",
                "--records",
                "--threads",
                "--rate",
                "--die",
            ],
        ),
        (&["--version"], &[env!("CARGO_PKG_VERSION")]),
    ];
    for (args, mentions) in cases {
        let o = run(args);
        let ctx = format!("blackbox {}", args.join(" "));
        assert!(o.status.success(), "{ctx}: {}", describe(&o));
        assert!(
            o.stderr.is_empty(),
            "{ctx}: wrote to stderr\n{}",
            describe(&o)
        );
        let out = stdout(&o);
        for m in *mentions {
            assert!(out.contains(m), "{ctx}: help does not mention {m}\n{out}");
        }
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let dir = TempDir::new("cli-usage");
    let ring = dir.path("ok.ring");
    ring_with(&ring, &[(Level::Info, "hello")]);
    let r = ring.to_str().unwrap();
    let fresh = dir.path("never.ring");
    let f = fresh.to_str().unwrap();
    // (arguments, what the one line must mention)
    let cases: &[(&[&str], &str)] = &[
        (&["info", r, "--bogus"], "--bogus"),
        (&["read", "--colour", r], "--colour"),
        (&["read", r, "-x"], "-x"),
        (&["frobnicate", r], "frobnicate"),
        (&["info", r, "extra"], "extra"),
        // Missing arguments: the line must say which one.
        (&["info"], "RING"),
        (&["read", "--json"], "RING"),
        (&["verify"], "RING"),
        (&["demo"], "--ring"),
        (&["read", r, "--last"], "--last"),
        (&["read", r, "--last", "many"], "many"),
        (&["demo", "--ring", f, "--capacity", "3KiB"], "power of two"),
        (&["demo", "--ring", f, "--capacity", "0"], "power of two"),
        (&["demo", "--ring", f, "--capacity", "8GiB"], "power of two"),
        (
            &["demo", "--ring", f, "--capacity", "12parsecs"],
            "12parsecs",
        ),
        (&["demo", "--ring", f, "--threads", "0"], "--threads"),
        (&["demo", "--ring", f, "--rate", "NaN"], "rate"),
        (&["read", r, "--level", "loud"], "loud"),
        (&["read", r, "--since", "soon"], "soon"),
        (&["demo", "--ring", f, "--die", "explode"], "explode"),
    ];
    let mut failures = Vec::new();
    for (args, needle) in cases {
        let o = run(args);
        let ctx = format!("blackbox {}", args.join(" "));
        let check = std::panic::catch_unwind(|| {
            assert_usage_error(&o, &ctx);
            assert!(
                stderr(&o).contains(needle),
                "{ctx}: the error line should mention {needle:?}\n{}",
                describe(&o)
            );
            assert!(!fresh.exists(), "{ctx}: created the ring anyway");
        });
        if let Err(e) = check {
            failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| format!("{ctx}: failed")),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} usage errors are wrong:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn read_filters_by_level_and_count() {
    let dir = TempDir::new("cli-filters");
    let ring = dir.path("levels.ring");
    let events = [
        (Level::Trace, "t0"),
        (Level::Debug, "d1"),
        (Level::Info, "i2"),
        (Level::Warn, "w3"),
        (Level::Error, "e4"),
        (Level::Info, "i5"),
        (Level::Warn, "w6"),
        (Level::Debug, "d7"),
        (Level::Error, "e8"),
        (Level::Info, "i9"),
    ];
    ring_with(&ring, &events);
    let all: Vec<String> = events.iter().map(|e| e.1.to_string()).collect();
    let pick = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    assert_eq!(messages(&read_json(&ring, &[])), all);
    assert_eq!(
        messages(&read_json(&ring, &["--level", "warn"])),
        pick(&["w3", "e4", "w6", "e8"])
    );
    let warn = read_json(&ring, &["--level", "WARN"]);
    assert!(warn
        .iter()
        .all(|r| r["level"] == "WARN" || r["level"] == "ERROR"));
    assert_eq!(
        messages(&read_json(&ring, &["--level", "warning"])),
        pick(&["w3", "e4", "w6", "e8"])
    );
    assert_eq!(
        messages(&read_json(&ring, &["--level", "error"])),
        pick(&["e4", "e8"])
    );
    assert_eq!(messages(&read_json(&ring, &["--level", "trace"])), all);
    assert_eq!(
        messages(&read_json(&ring, &["--level", "info"])),
        pick(&["i2", "w3", "e4", "i5", "w6", "e8", "i9"])
    );

    assert_eq!(
        messages(&read_json(&ring, &["--last", "3"])),
        pick(&["d7", "e8", "i9"])
    );
    assert_eq!(messages(&read_json(&ring, &["--last", "1"])), pick(&["i9"]));
    assert!(read_json(&ring, &["--last", "0"]).is_empty());
    assert_eq!(messages(&read_json(&ring, &["--last", "100"])), all);
    // --last applies after the other filters.
    assert_eq!(
        messages(&read_json(&ring, &["--level", "warn", "--last", "2"])),
        pick(&["w6", "e8"])
    );
    assert_eq!(messages(&read_json(&ring, &["--since", "1h"])), all);
    assert_eq!(
        messages(&read_json(&ring, &["--since", "1h", "--level", "error"])),
        pick(&["e4", "e8"])
    );

    // The text output obeys the same filters.
    let o = run(&["read", ring.to_str().unwrap(), "--level", "error"]);
    assert!(o.status.success(), "{}", describe(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("e4") && lines[1].contains("e8"),
        "{lines:?}"
    );
}

/// `--since D` keeps records written within D before now. Whose
/// timestamps the test controls: three records are moved two hours into
/// the past (their `ts` rewritten in the file, their checksums resealed),
/// three keep the time they were appended at. `--since 1h` then keeps
/// exactly the three recent ones and `--since 3h` all six, however long the
/// machine takes: the recent records would have to wait an hour before
/// the read for either to fail (no sleep, no bound on the read's time).
#[test]
fn read_since_drops_older_records() {
    use blackbox_recorder::layout::R_TS;
    const TWO_HOURS_NS: u64 = 2 * 3600 * 1_000_000_000;

    let dir = TempDir::new("cli-since");
    let ring = dir.path("since.ring");
    // CLOCK_REALTIME timestamps: a record's `ts` is its time in ns.
    let rec = Recorder::builder(&ring)
        .capacity(64 << 10)
        .heartbeat(None)
        .clock(Clock::Realtime)
        .create()
        .expect("create ring");
    for k in 0..3u64 {
        rec.log(Level::Info, "cli::test", &format!("old {k}"), &[])
            .unwrap();
    }
    for k in 0..3u64 {
        rec.log(Level::Info, "cli::test", &format!("new {k}"), &[])
            .unwrap();
    }
    rec.close();

    let mut file = std::fs::read(&ring).unwrap();
    let mut records = common::file_records(&file);
    records.sort_by_key(|r| r.seq);
    assert_eq!(records.len(), 6, "{records:?}");
    for r in &records[..3] {
        let at = r.at + R_TS;
        let ts = u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
        file[at..at + 8].copy_from_slice(&(ts - TWO_HOURS_NS).to_le_bytes());
        common::reseal_record(&mut file, r);
    }
    std::fs::write(&ring, &file).unwrap();
    common::verify_ok(&ring);

    let all = read_json(&ring, &[]);
    assert_eq!(
        messages(&all),
        ["old 0", "old 1", "old 2", "new 0", "new 1", "new 2"]
    );
    assert_eq!(
        messages(&read_json(&ring, &["--since", "1h"])),
        ["new 0", "new 1", "new 2"],
        "--since 1h keeps the recent records, drops those two hours old"
    );
    assert_eq!(read_json(&ring, &["--since", "3h"]), all, "--since 3h");
}

/// `--last DURATION` counts back from the newest record, not from now: a
/// writer (a real child, `demo --die kill`) whose last record is two hours
/// old, as if it died two hours before the read. Its 11 records are
/// retimed one second apart (their `ts` rewritten, checksums resealed), the
/// newest two hours ago; `--last 3500ms` prints exactly the last four
/// (3, 2, 1 and 0 s before the death), in JSON and text, while `--since 5s`
/// (relative to now, as journalctl's) prints nothing.
#[test]
fn read_last_duration_counts_back_from_the_death() {
    use blackbox_recorder::layout::R_TS;
    const SECOND_NS: u64 = 1_000_000_000;
    const TWO_HOURS_NS: u64 = 2 * 3600 * SECOND_NS;

    let dir = TempDir::new("cli-last-window");
    let ring = dir.path("dead.ring");
    let r = ring.to_str().unwrap();
    let o = run(&[
        "demo",
        "--ring",
        r,
        "--records",
        "10",
        "--clock",
        "realtime",
        "--die",
        "kill",
    ]);
    assert_eq!(o.status.signal(), Some(9), "{}", describe(&o));

    let mut file = std::fs::read(&ring).unwrap();
    let mut records = common::file_records(&file);
    let ts_of = |file: &[u8], at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    records.sort_by_key(|rec| (ts_of(&file, rec.at + R_TS), rec.writer, rec.seq));
    assert_eq!(records.len(), 11, "10 demo records and the epilogue");
    let newest = now_ns() - TWO_HOURS_NS;
    for (k, rec) in records.iter().enumerate() {
        let ts = newest - (records.len() - 1 - k) as u64 * SECOND_NS;
        let at = rec.at + R_TS;
        file[at..at + 8].copy_from_slice(&ts.to_le_bytes());
        common::reseal_record(&mut file, rec);
    }
    std::fs::write(&ring, &file).unwrap();
    common::verify_ok(&ring);

    let all = read_json(&ring, &[]);
    assert_eq!(all.len(), 11, "{all:?}");
    let last = read_json(&ring, &["--last", "3500ms"]);
    assert_eq!(last, all[7..], "--last 3500ms: the last four records");
    assert_eq!(last[3]["message"], "demo: about to die", "{last:?}");
    assert_eq!(
        common::demo_counters(&last),
        [(0, 7), (0, 8), (0, 9)],
        "{last:?}"
    );
    assert!(
        read_json(&ring, &["--since", "5s"]).is_empty(),
        "--since counts back from now: nothing in the last 5 s"
    );
    assert_eq!(read_json(&ring, &["--last", "1h"]), all, "--last 1h");
    // With --level, the window is still the window's last seconds.
    assert_eq!(
        read_json(&ring, &["--last", "3500ms", "--level", "warn"]),
        all[10..],
        "--last 3500ms --level warn"
    );

    let o = run(&["read", r, "--last", "3500ms"]);
    assert!(o.status.success(), "{}", describe(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[3].contains("demo: about to die"), "{lines:?}");
}

#[test]
fn read_json_lines_have_typed_fields_and_rfc3339_times() {
    let dir = TempDir::new("cli-json");
    let ring = dir.path("json.ring");
    let before = now_ns();
    let rec = Recorder::builder(&ring)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .expect("create ring");
    rec.log(
        Level::Warn,
        "cli::json",
        "typed fields",
        &[
            Field::new("count", 42u64),
            Field::new("big", u64::MAX),
            Field::new("neg", -5i64),
            Field::new("ok", true),
            Field::new("off", false),
            Field::new("user", "alice \"quoted\""),
            Field::new("ratio", 2.5f64),
            Field {
                name: "dbg",
                value: FieldVal::Debug("Some(3)"),
            },
        ],
    )
    .unwrap();
    for (k, level) in [Level::Trace, Level::Debug, Level::Info, Level::Error]
        .into_iter()
        .enumerate()
    {
        rec.log(level, "cli::json", "plain", &[Field::new("k", k as u64)])
            .unwrap();
    }
    rec.close();
    let after = now_ns();
    // The writer may read the clock differently (vDSO, TSC): allow 100 ms.
    const SLACK: u64 = 100_000_000;

    let records = read_json(&ring, &[]);
    assert_eq!(records.len(), 5);
    let snap = Ring::open(&ring).unwrap().snapshot().unwrap();
    assert_eq!(snap.records.len(), 5);
    for (r, rec) in records.iter().zip(&snap.records) {
        let o = r.as_object().expect("each line is an object");
        for key in ["seq", "ts", "level", "target", "message", "fields"] {
            assert!(o.contains_key(key), "missing {key}: {r}");
        }
        assert_eq!(r["seq"].as_u64(), Some(rec.seq), "{r}");
        let ts = r["ts"].as_str().expect("ts is a string");
        assert!(
            looks_like_rfc3339_nanos(ts),
            "ts {ts:?} is not RFC 3339 UTC with ns"
        );
        assert_eq!(ts, rfc3339_utc(rec.ts_unix_ns), "{r}");
        assert!(
            (before - SLACK..=after + SLACK).contains(&rec.ts_unix_ns),
            "record time {} is not the wall clock at write ({before}..{after})",
            rec.ts_unix_ns
        );
        assert!(r["fields"].is_object(), "{r}");
        assert!(r["target"] == "cli::json", "{r}");
    }
    let levels: Vec<&str> = records
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["WARN", "TRACE", "DEBUG", "INFO", "ERROR"]);
    let mut stamps: Vec<&str> = records.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    let in_order = stamps.clone();
    stamps.sort();
    assert_eq!(stamps, in_order, "timestamps go backwards");

    let typed = &records[0];
    assert_eq!(typed["message"], "typed fields");
    let f = &typed["fields"];
    assert!(f["count"].is_u64() && f["count"] == json!(42), "{f}");
    assert_eq!(f["big"].as_u64(), Some(u64::MAX), "{f}");
    assert!(f["neg"].is_i64() && f["neg"].as_i64() == Some(-5), "{f}");
    assert_eq!(f["ok"], json!(true), "{f}");
    assert_eq!(f["off"], json!(false), "{f}");
    assert_eq!(f["user"], json!("alice \"quoted\""), "{f}");
    assert!(
        f["ratio"].is_f64() && f["ratio"].as_f64() == Some(2.5),
        "{f}"
    );
    assert_eq!(f["dbg"], json!("Some(3)"), "{f}");
    assert_eq!(f.as_object().unwrap().len(), 8, "{f}");
    assert_eq!(records[4]["fields"], json!({ "k": 3 }));
}

#[test]
fn text_output_shows_fields_and_info_shows_the_state() {
    let dir = TempDir::new("cli-text");
    let ring = dir.path("text.ring");
    let r = ring.to_str().unwrap();
    let rec = Recorder::builder(&ring)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .expect("create ring");
    rec.log(
        Level::Warn,
        "cli::text",
        "disk nearly full",
        &[
            Field::new("count", 42u64),
            Field::new("neg", -5i64),
            Field::new("ok", true),
            Field::new("ratio", 2.5f64),
            Field::new("user", "alice"),
        ],
    )
    .unwrap();

    // While the writer lives (this process holds the lock).
    let o = run(&["info", r]);
    assert!(o.status.success(), "{}", describe(&o));
    let state = stdout(&o)
        .lines()
        .find(|l| l.starts_with("state"))
        .map(String::from)
        .unwrap_or_default();
    assert!(state.contains("running"), "live writer: {}", stdout(&o));
    assert_eq!(common::info_json(&ring)["state"], "running");
    rec.close();

    let o = run(&["read", r]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        describe(&o)
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let line = lines[0];
    for part in [
        "WARN",
        "cli::text",
        "disk nearly full",
        " count=42",
        " neg=-5",
        " ok=true",
        " ratio=2.5",
        " user=",
        "alice",
    ] {
        assert!(line.contains(part), "text line lacks {part:?}: {line}");
    }
    let ts = line.split_whitespace().next().unwrap();
    assert!(
        looks_like_rfc3339_nanos(ts),
        "line should start with the time: {line}"
    );

    let o = run(&["info", r]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        describe(&o)
    );
    let out = stdout(&o);
    let state = out.lines().find(|l| l.starts_with("state")).unwrap_or("");
    assert!(state.contains("exited"), "closed ring: {out}");
    assert!(out.contains("records"), "{out}");
    assert!(out.contains(r), "info should name the ring: {out}");

    let o = run(&["verify", r]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("ok"), "{}", describe(&o));
}

/// `blackbox read RING | head -1`: stdout goes away early; blackbox stops
/// quietly with status 0.
#[test]
fn read_into_a_closed_pipe_is_quiet() {
    let dir = TempDir::new("cli-pipe");
    let ring = dir.path("many.ring");
    let rec = Recorder::builder(&ring)
        .capacity(1 << 20)
        .heartbeat(None)
        .create()
        .expect("create ring");
    for n in 0..20_000u64 {
        rec.log(
            Level::Info,
            "cli::pipe",
            "a record long enough to fill the pipe quickly",
            &[Field::new("n", n)],
        )
        .unwrap();
    }
    rec.close();
    for extra in ["", "--json"] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{{ \"$0\" read \"$1\" {extra}; echo \"rc=$?\" >&2; }} | head -1"
            ))
            .arg(env!("CARGO_BIN_EXE_blackbox"))
            .arg(&ring)
            .output()
            .expect("run sh");
        let ctx = format!("blackbox read RING {extra} | head -1");
        assert!(o.status.success(), "{ctx}: {}", describe(&o));
        assert_eq!(stdout(&o).lines().count(), 1, "{ctx}: {}", describe(&o));
        assert_eq!(
            stderr(&o),
            "rc=0\n",
            "{ctx}: expected exit 0 and nothing on stderr"
        );
    }
}

#[test]
fn demo_dies_as_asked() {
    let dir = TempDir::new("cli-demo");
    let killed = dir.path("killed.ring");
    let o = run(&[
        "demo",
        "--ring",
        killed.to_str().unwrap(),
        "--capacity",
        "64KiB",
        "--records",
        "50",
        "--die",
        "kill",
    ]);
    assert_eq!(
        o.status.signal(),
        Some(9),
        "--die kill must end by SIGKILL\n{}",
        describe(&o)
    );
    let info = common::info_json(&killed);
    assert_eq!(info["state"], "killed", "{info}");
    assert_eq!(info["cause"]["kind"], "killed", "{info}");
    // 50 counter records, then the demo's "about to die" event.
    assert_eq!(info["records"], 51, "{info}");
    let counters = common::demo_counters(&read_json(&killed, &[]));
    assert_eq!(counters, (0..50).map(|n| (0, n)).collect::<Vec<_>>());

    let exited = dir.path("exited.ring");
    let o = run(&[
        "demo",
        "--ring",
        exited.to_str().unwrap(),
        "--capacity",
        "64KiB",
        "--records",
        "30",
        "--threads",
        "2",
        "--die",
        "exit",
    ]);
    assert_eq!(o.status.code(), Some(0), "--die exit\n{}", describe(&o));
    let info = common::info_json(&exited);
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["cause"], Value::Null, "{info}");
    assert_eq!(info["records"], 61, "{info}");
    let counters = common::demo_counters(&read_json(&exited, &[]));
    let last = common::assert_contiguous(&counters);
    assert_eq!(last.into_iter().collect::<Vec<_>>(), [(0, 29), (1, 29)]);
    let o = run(&["verify", exited.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));

    // The default is a clean exit.
    let default = dir.path("default.ring");
    let o = run(&[
        "demo",
        "--ring",
        default.to_str().unwrap(),
        "--records",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(common::info_json(&default)["state"], "exited");
}
