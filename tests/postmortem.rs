//! The postmortem dump's crash matrix: real `blackbox demo` children die of
//! real faults with the crash handlers installed; another process reads
//! the ring and unwinds the dump offline. Each case checks the exit status
//! (unchanged by blackbox) and that `info --json`'s backtrace holds the
//! crashing frames' names in call order, with file:line for Rust frames.
//! Then: a stripped copy of the binary plus `--symbols DIR` gives the same
//! names; a binary that cannot be found gives module + offset + build id
//! and no name at all.
//!
//! Runs in the profile the tests are built with (`cargo test` is debug,
//! `.ci/run` also runs it with `--release`).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use common::{blackbox, run, stderr, TempDir};
use serde_json::Value;

/// Runs `BIN demo --die HOW` to its death; returns the signal it died of
/// and its stderr.
fn die(bin: &Path, ring: &Path, how: &str) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(["demo", "--ring", ring.to_str().unwrap(), "--die", how])
        .args(["--threads", "1", "--records", "10"])
        .output()
        .expect("run the demo");
    (
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn info(ring: &Path, symbols: Option<&Path>) -> Value {
    let mut args = vec!["info", ring.to_str().unwrap(), "--json"];
    if let Some(dir) = symbols {
        args.extend(["--symbols", dir.to_str().unwrap()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "info failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("info --json is JSON")
}

fn functions(info: &Value) -> Vec<String> {
    info["backtrace"]
        .as_array()
        .expect("a backtrace array")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// `names` appear in the backtrace in this order (innermost first), each
/// with file:line when it is a Rust frame of this repository.
fn assert_in_order(info: &Value, names: &[&str]) {
    let frames = info["backtrace"].as_array().expect("backtrace");
    let mut at = 0;
    for name in names {
        let found = frames[at..]
            .iter()
            .position(|f| f["function"].as_str().is_some_and(|s| s.ends_with(name)));
        let Some(i) = found else {
            panic!("`{name}` not found (in order) in {:#?}", functions(info));
        };
        let f = &frames[at + i];
        assert!(
            f["file"].as_str().is_some_and(|s| s.ends_with(".rs")) && f["line"].as_u64().is_some(),
            "`{name}` has no file:line: {f}"
        );
        at += i + 1;
    }
    for f in frames {
        for key in [
            "pc", "module", "build_id", "function", "file", "line", "inlined", "trust",
        ] {
            assert!(f.get(key).is_some(), "frame without `{key}`: {f}");
        }
    }
}

struct Case {
    how: &'static str,
    signal: i32,
    frames: &'static [&'static str],
}

const MATRIX: &[Case] = &[
    Case {
        how: "segv-thread",
        signal: libc::SIGSEGV,
        frames: &[
            "crash::fault_null_for_test",
            "demo::crash_inner",
            "demo::crash_outer",
        ],
    },
    Case {
        how: "abort",
        signal: libc::SIGABRT,
        frames: &["std::process::abort", "demo::die", "demo::run"],
    },
    Case {
        how: "bus",
        signal: libc::SIGBUS,
        frames: &["crash::fault_sigbus_for_test", "demo::die"],
    },
    Case {
        how: "ill",
        signal: libc::SIGILL,
        frames: &["crash::fault_sigill_for_test", "demo::die"],
    },
];

#[test]
fn the_crash_matrix_unwinds_to_named_frames() {
    let dir = TempDir::new("postmortem-matrix");
    let bin = Path::new(env!("CARGO_BIN_EXE_blackbox"));
    for case in MATRIX {
        let ring = dir.path(&format!("{}.ring", case.how));
        let (signal, _) = die(bin, &ring, case.how);
        assert_eq!(signal, Some(case.signal), "{}: exit signal", case.how);
        let info = info(&ring, None);
        assert_eq!(info["state"], "crashed", "{}", case.how);
        assert_in_order(&info, case.frames);
        assert_eq!(info["backtrace"][0]["trust"], "context", "{}", case.how);
        assert!(
            info["build_id"].as_str().is_some_and(|s| s.len() >= 16),
            "{}: build id {}",
            case.how,
            info["build_id"]
        );
        let dump = &info["crash_dump"];
        assert_eq!(dump["complete"], true, "{}", case.how);
        assert!(dump["stack_bytes"].as_u64().unwrap() > 0, "{}", case.how);
        // The text shows the same frames under the cause.
        let text = run(&["info", ring.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("backtrace (from the crash dump"), "{text}");
        assert!(text.contains(case.frames[0]), "{text}");
        // So does the on-failure report.
        let report = run(&["on-failure", "--ring", ring.to_str().unwrap()]);
        let report = String::from_utf8_lossy(&report.stdout);
        assert!(
            report.contains("backtrace  (from the crash dump"),
            "{report}"
        );
        assert!(report.contains(case.frames[1]), "{report}");
    }
}

#[test]
fn a_stack_overflow_unwinds_through_the_recursive_function() {
    let dir = TempDir::new("postmortem-overflow");
    let ring = dir.path("overflow.ring");
    let (signal, stderr) = die(
        Path::new(env!("CARGO_BIN_EXE_blackbox")),
        &ring,
        "stack-overflow",
    );
    // Rust's own handler still runs: its message, then SIGABRT.
    assert_eq!(signal, Some(libc::SIGABRT));
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    let info = info(&ring, None);
    let names = functions(&info);
    assert!(
        names
            .iter()
            .filter(|n| n.ends_with("demo::recurse"))
            .count()
            >= 8,
        "{names:#?}"
    );
    assert_eq!(
        info["crash_dump"]["stack_overflow"], true,
        "{}",
        info["crash_dump"]
    );
}

#[test]
fn a_stripped_binary_with_symbols_names_the_same_frames_and_a_missing_one_none() {
    let dir = TempDir::new("postmortem-stripped");
    let symbols = dir.path("symbols");
    std::fs::create_dir_all(&symbols).unwrap();
    let original = Path::new(env!("CARGO_BIN_EXE_blackbox"));
    let unstripped = symbols.join("blackbox");
    std::fs::copy(original, &unstripped).unwrap();
    let stripped = dir.path("blackbox-stripped");
    let strip = Command::new("objcopy")
        .args([
            "--strip-all",
            unstripped.to_str().unwrap(),
            stripped.to_str().unwrap(),
        ])
        .status();
    match strip {
        Ok(s) if s.success() => {}
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "objcopy is needed (scripts/apt-install.sh installs binutils)"
            );
            eprintln!("skipped: objcopy is not installed");
            return;
        }
    }
    // The whole matrix from the stripped binary: --symbols gives the same
    // names as the unstripped run.
    for case in &MATRIX[1..] {
        let ring = dir.path(&format!("stripped-{}.ring", case.how));
        let (signal, _) = die(&stripped, &ring, case.how);
        assert_eq!(signal, Some(case.signal), "{}: exit signal", case.how);
        assert_in_order(&info(&ring, Some(&symbols)), case.frames);
    }
    let ring = dir.path("stripped-overflow.ring");
    let (signal, stderr) = die(&stripped, &ring, "stack-overflow");
    assert_eq!(signal, Some(libc::SIGABRT), "stack overflow: exit signal");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    let recursions = functions(&info(&ring, Some(&symbols)))
        .iter()
        .filter(|n| n.ends_with("demo::recurse"))
        .count();
    assert!(
        recursions >= 8,
        "stripped + --symbols: {recursions} recurse frames"
    );

    let ring = dir.path("segv.ring");
    let (signal, _) = die(&stripped, &ring, "segv-thread");
    assert_eq!(signal, Some(libc::SIGSEGV));

    // The stripped file alone: unwinding works (its .eh_frame stays), but
    // it has no names of its own.
    let plain = info(&ring, None);
    let with_symbols = info(&ring, Some(&symbols));
    assert_in_order(&with_symbols, MATRIX[0].frames);

    // The binary gone, no symbols: module + offset + build id, no name.
    std::fs::remove_file(&stripped).unwrap();
    let gone = info(&ring, None);
    let main_module = stripped.to_str().unwrap();
    let mut seen = 0;
    for f in gone["backtrace"].as_array().unwrap() {
        if f["module"] == main_module {
            seen += 1;
            assert!(f["function"].is_null(), "a name from nowhere: {f}");
            assert!(f["build_id"].is_string() && f["pc"].is_u64(), "{f}");
        }
    }
    assert!(seen >= 1, "{gone:#}");
    let text = run(&["info", ring.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("blackbox-stripped+0x") && text.contains("build id"),
        "{text}"
    );
    // Never a wrong name: whatever the stripped file named is a subset of
    // the names the symbols give at the same pcs.
    let by_pc = |v: &Value| -> Vec<(u64, Option<String>)> {
        v["backtrace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["pc"].as_u64().unwrap(),
                    f["function"].as_str().map(String::from),
                )
            })
            .collect()
    };
    for (pc, name) in by_pc(&plain) {
        if let Some(name) = name {
            assert!(
                by_pc(&with_symbols)
                    .iter()
                    .any(|(p, n)| *p == pc && n.as_deref() == Some(&name)),
                "the stripped binary named {pc:#x} `{name}`, the symbols do not"
            );
        }
    }
}

#[test]
fn hostile_postmortem_bytes_give_no_panic() {
    use blackbox_recorder::layout::*;
    let dir = TempDir::new("postmortem-hostile");
    let ring = dir.path("base.ring");
    let (signal, _) = die(Path::new(env!("CARGO_BIN_EXE_blackbox")), &ring, "segv");
    assert_eq!(signal, Some(libc::SIGSEGV));
    let base = std::fs::read(&ring).unwrap();
    let pm = u64::from_le_bytes(base[H_PM_OFFSET..H_PM_OFFSET + 8].try_into().unwrap()) as usize;
    let mut rng = common::Rng(0x5eed);
    type Mutation = Box<dyn Fn(&mut Vec<u8>, &mut common::Rng)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "area of 0xff",
            Box::new(move |b, _| b[pm..pm + 65536].fill(0xff)),
        ),
        (
            "random area",
            Box::new(move |b, r| {
                b[pm..pm + 65536]
                    .iter_mut()
                    .for_each(|x| *x = r.next() as u8)
            }),
        ),
        (
            "random dump header",
            Box::new(|b, r| {
                b[H_DUMP..HEADER_LEN]
                    .iter_mut()
                    .for_each(|x| *x = r.next() as u8)
            }),
        ),
        (
            "absurd sizes",
            Box::new(|b, _| {
                for at in [
                    H_PM_LEN,
                    H_PM_STACK_MAX,
                    H_MODULE_COUNT,
                    H_MODULE_SLOTS,
                    H_DUMP_STACK_LEN,
                    H_DUMP_REG_COUNT,
                    H_DUMP_CODE_LEN,
                    H_BUILD_ID_LEN,
                ] {
                    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                }
            }),
        ),
        (
            "postmortem area over the data",
            Box::new(|b, _| {
                b[H_PM_OFFSET..H_PM_OFFSET + 8]
                    .copy_from_slice(&(HEADER_LEN as u64 + 8).to_le_bytes())
            }),
        ),
        (
            "a stack pointing at itself",
            Box::new(move |b, _| {
                // Every stack word and register the same address: a cycle.
                let sp =
                    u64::from_le_bytes(b[H_DUMP_REGS + 56..H_DUMP_REGS + 64].try_into().unwrap());
                let slots = MODULE_SLOTS as usize * MODULE_ENTRY_LEN;
                for w in b[pm + slots..pm + slots + 65536].chunks_mut(8) {
                    w.copy_from_slice(&sp.to_le_bytes());
                }
                for i in 0..17 {
                    b[H_DUMP_REGS + 8 * i..H_DUMP_REGS + 8 * i + 8]
                        .copy_from_slice(&sp.to_le_bytes());
                }
            }),
        ),
    ];
    // Module paths that must never be opened as files: a FIFO (whose
    // open would block) and a device.
    let fifo = dir.path("a-fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let specials = [fifo.to_str().unwrap(), "/dev/zero"];
    for (i, (target, keep_id)) in specials
        .iter()
        .flat_map(|t| [(*t, true), (*t, false)])
        .enumerate()
    {
        let mut bytes = base.clone();
        let entry = pm;
        bytes[entry + M_PATH..entry + M_PATH + MODULE_PATH_MAX].fill(0);
        bytes[entry + M_PATH..entry + M_PATH + target.len()].copy_from_slice(target.as_bytes());
        bytes[entry + M_PATH_LEN..entry + M_PATH_LEN + 4]
            .copy_from_slice(&(target.len() as u32).to_le_bytes());
        // With a build id the file's id is checked; without one the
        // recorded path is all there is.
        if !keep_id {
            bytes[entry + M_BUILD_ID_LEN..entry + M_BUILD_ID_LEN + 4].fill(0);
        }
        let path = dir.path(&format!("special-path-{i}.ring"));
        std::fs::write(&path, &bytes).unwrap();
        let mut child = blackbox()
            .args(["info", path.to_str().unwrap(), "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = common::wait_or_fail(
            &mut child,
            std::time::Duration::from_secs(120),
            &format!("info with a module path {target}"),
        );
        assert_eq!(status.code(), Some(0), "{target}");
    }
    for (name, mutate) in &cases {
        let mut bytes = base.clone();
        mutate(&mut bytes, &mut rng);
        let path = dir.path(&format!("{}.ring", name.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        for json in [false, true] {
            let mut cmd = blackbox();
            cmd.args(["info", path.to_str().unwrap()]);
            if json {
                cmd.arg("--json");
            }
            let o = cmd.output().unwrap();
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(o.status.code().is_some(), "{name}: killed by a signal");
        }
    }
}

/// Shipments carry the dump: NDJSON's first line has `build_id` and the
/// `backtrace`; OTLP names the build id in the resource and puts
/// `exception.type`, `exception.message` and `exception.stacktrace` on the
/// crash event's logRecord, and still parses strictly with the official
/// protobuf definitions (scripts/check-otlp.sh).
#[test]
fn shipments_carry_the_backtrace_and_otlp_stays_strict() {
    let dir = TempDir::new("postmortem-ship");
    let ring = dir.path("segv.ring");
    let log = dir.path("termination-log");
    let out = blackbox()
        .args([
            "demo",
            "--ring",
            ring.to_str().unwrap(),
            "--die",
            "segv-thread",
        ])
        .args(["--threads", "1", "--records", "10"])
        .args(["--termination-log", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV));
    let info = info(&ring, None);

    // The termination log names the top frame's module and offset: the
    // same as frame 0 of the offline backtrace.
    let line = std::fs::read_to_string(&log).unwrap();
    let top = &info["backtrace"][0];
    let module = Path::new(top["module"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let want = format!(
        ", pc {module}+{:#x}",
        top["module_offset"].as_u64().unwrap()
    );
    assert!(line.contains(&want), "{line:?} lacks {want:?}");

    let o = run(&[
        "ship",
        ring.to_str().unwrap(),
        "--to",
        "-",
        "--format",
        "ndjson",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let head: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(head["build_id"], info["build_id"]);
    assert_eq!(head["backtrace"], info["backtrace"]);

    let o = run(&[
        "ship",
        ring.to_str().unwrap(),
        "--to",
        "-",
        "--format",
        "otlp",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rl = &body["resourceLogs"][0];
    let attr = |attrs: &Value, key: &str| -> Option<String> {
        attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["stringValue"]
            .as_str()
            .map(String::from)
    };
    assert_eq!(
        attr(
            &rl["resource"]["attributes"],
            "process.executable.build_id.gnu"
        )
        .as_deref(),
        info["build_id"].as_str()
    );
    let records = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
    let crash: Vec<&Value> = records
        .iter()
        .filter(|r| attr(&r["attributes"], "exception.type").is_some())
        .collect();
    assert_eq!(crash.len(), 1, "one logRecord carries the exception");
    let a = &crash[0]["attributes"];
    assert_eq!(attr(a, "exception.type").as_deref(), Some("SIGSEGV"));
    assert!(attr(a, "exception.message")
        .unwrap()
        .starts_with("fatal signal SIGSEGV"));
    let trace = attr(a, "exception.stacktrace").unwrap();
    let inner = trace
        .find("crash_inner")
        .expect("crash_inner in the stacktrace");
    let outer = trace
        .find("crash_outer")
        .expect("crash_outer in the stacktrace");
    assert!(inner < outer, "innermost first: {trace}");

    let file = dir.path("otlp.json");
    std::fs::write(&file, &o.stdout).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-otlp.sh");
    let check = Command::new("bash")
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    if out.contains("otlp: skipped:") {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OTLP checker must run under CI: {out}"
        );
        eprintln!("{}", out.trim());
    } else {
        assert!(
            check.status.success(),
            "not an ExportLogsServiceRequest: {out}"
        );
    }
}

/// A panic's backtrace is captured as raw return addresses and symbolized
/// offline: `read` prints it as indented lines that start at the function
/// that panicked (the hook's and std's panic frames are gone), `read
/// --json` as an array of frames.
#[test]
fn a_panic_backtrace_is_symbolized_offline_without_the_hook_frames() {
    let dir = TempDir::new("postmortem-panic");
    let ring = dir.path("panic.ring");
    let out = blackbox()
        .args(["demo", "--ring", ring.to_str().unwrap(), "--die", "panic"])
        .args(["--threads", "1", "--records", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    let o = run(&[
        "read",
        ring.to_str().unwrap(),
        "--target",
        "blackbox::crash",
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "backtrace:")
        .expect(&text);
    assert!(
        !lines[at - 1].contains("0x"),
        "no raw addresses on the event line: {text}"
    );
    let frames: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .copied()
        .collect();
    // The panicking function first (in a release build its return
    // address may fall past the call's line table row: a name without a
    // line), then its callers with file:line.
    assert!(
        frames[0]
            .trim_start()
            .starts_with("blackbox::cmd::demo::die"),
        "{text}"
    );
    assert!(
        frames[1]
            .trim_start()
            .starts_with("blackbox::cmd::demo::run at "),
        "{text}"
    );
    for f in &frames {
        assert!(
            !f.contains("blackbox_recorder::crash")
                && !f.contains("std::panicking::begin_panic")
                && !f.contains("rust_begin_unwind"),
            "hook frame left: {f}"
        );
    }

    let o = run(&[
        "read",
        ring.to_str().unwrap(),
        "--json",
        "--target",
        "blackbox::crash",
    ]);
    let event: Value = serde_json::from_slice(&o.stdout).unwrap();
    let bt = event["fields"]["backtrace"].as_array().expect("an array");
    assert!(
        bt[0]["function"].as_str().unwrap().ends_with("demo::die"),
        "{}",
        bt[0]
    );
    assert!(bt[1]["line"].is_u64(), "{}", bt[1]);

    // A shipment says what `info --json` says: the panic's frames, and its
    // cause's backtrace as text, never raw addresses.
    let o = run(&["ship", ring.to_str().unwrap(), "--to", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let head: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let info = info(&ring, None);
    assert_eq!(head["cause"]["backtrace"], info["cause"]["backtrace"]);
    assert_eq!(head["backtrace"], info["backtrace"]);
    let cause_bt = head["cause"]["backtrace"]
        .as_str()
        .expect("a text backtrace");
    assert!(
        cause_bt.starts_with("blackbox::cmd::demo::die"),
        "{cause_bt}"
    );
}

/// The module table: written with the main program first and its build
/// id in the header; `refresh_modules` after `dlopen` adds the new object
/// and moves the generation on (even: whole).
#[test]
fn the_module_table_follows_dlopen() {
    let dir = TempDir::new("postmortem-modules");
    let path = dir.path("modules.ring");
    let rec = blackbox_recorder::Recorder::builder(&path)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    let ring = blackbox_reader::Ring::open(&path).unwrap();
    assert_eq!(
        ring.postmortem().unwrap().modules_generation,
        0,
        "not written yet"
    );
    rec.refresh_modules();
    let pm = ring.postmortem().unwrap();
    assert_eq!(pm.modules_generation, 2);
    let exe = std::env::current_exe().unwrap();
    assert_eq!(Path::new(&pm.modules[0].path), exe.as_path());
    assert!(!pm.build_id.is_empty() && pm.build_id == pm.modules[0].build_id);
    assert!(
        pm.modules.iter().any(|m| m.path.contains("libc.so")),
        "{:?}",
        pm.modules
    );

    let lib = c"libresolv.so.2";
    if pm.modules.iter().any(|m| m.path.contains("libresolv")) {
        eprintln!("skipped the dlopen half: libresolv is already loaded");
        return;
    }
    // SAFETY: dlopen of a system library with a valid C string; the handle
    // is kept open for the rest of the test process.
    let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        assert!(
            std::env::var_os("CI").is_none(),
            "libresolv.so.2 cannot be loaded"
        );
        eprintln!("skipped the dlopen half: libresolv.so.2 is not installed");
        return;
    }
    rec.refresh_modules();
    let after = ring.postmortem().unwrap();
    assert_eq!(after.modules_generation, 4);
    let resolv = after
        .modules
        .iter()
        .find(|m| m.path.contains("libresolv"))
        .expect("the dlopen'd library is in the table");
    assert!(
        !resolv.ranges.is_empty() && !resolv.build_id.is_empty(),
        "{resolv:?}"
    );
}

/// Two threads fault at the same moment: one dump, and it belongs to the
/// thread whose cause the ring records (never one thread's cause with the
/// other's registers).
#[test]
fn two_threads_crashing_at_once_leave_one_consistent_dump() {
    let dir = TempDir::new("postmortem-two");
    for round in 0..5 {
        let ring = dir.path(&format!("two-{round}.ring"));
        let (signal, _) = die(
            Path::new(env!("CARGO_BIN_EXE_blackbox")),
            &ring,
            "segv-two-threads",
        );
        assert_eq!(signal, Some(libc::SIGSEGV));
        let info = info(&ring, None);
        let cause_tid = &info["cause"]["thread_id"];
        assert_eq!(
            &info["crash_dump"]["thread_id"], cause_tid,
            "{}",
            info["cause"]
        );
        assert_eq!(info["crash_dump"]["complete"], true);
        assert_in_order(&info, MATRIX[0].frames);
    }
}

/// Inputs the fuzzer found (`fuzz/regressions/postmortem/`), replayed the
/// way the `postmortem` fuzz target feeds them: the header, then the
/// postmortem area, module slots and stack bound cut as the target cuts
/// them. None may panic. The first one made the stack scan overflow
/// `sp + 8` at the top of the address space.
#[test]
fn postmortem_fuzz_findings_replay_without_panic() {
    use blackbox_reader::backtrace::{backtrace, Options};
    use blackbox_reader::postmortem::decode;
    use blackbox_recorder::layout::{HEADER_LEN, H_MODULE_SLOTS, H_PM_STACK_MAX};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/postmortem");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/postmortem") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut header = vec![0u8; HEADER_LEN];
        let n = data.len().min(HEADER_LEN);
        header[..n].copy_from_slice(&data[..n]);
        let u32_at = |h: &[u8], at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
        let slots = u32_at(&header, H_MODULE_SLOTS) % 9;
        header[H_MODULE_SLOTS..H_MODULE_SLOTS + 4].copy_from_slice(&slots.to_le_bytes());
        let stack = u32_at(&header, H_PM_STACK_MAX) % 4097;
        header[H_PM_STACK_MAX..H_PM_STACK_MAX + 4].copy_from_slice(&stack.to_le_bytes());
        let pm = decode(&header, &data[n..]);
        let frames = backtrace(&pm, &Options::default());
        assert!(
            frames.iter().all(|f| f.function.is_none()),
            "no file, no name"
        );
        replayed += 1;
    }
    assert!(replayed >= 1);
}
