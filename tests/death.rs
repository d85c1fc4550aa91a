//! Cause of death (issue 3): real writer processes that die by a clean exit,
//! a panic, abort, SIGSEGV, SIGBUS, a stack overflow, SIGKILL and a kernel
//! OOM kill in a memory cgroup, each read back by other processes (the
//! `blackbox` binary): invariant 4 (death is known, not guessed: state and
//! cause), with invariant 1 (the window survives) checked on the way.
//!
//! Every child is `blackbox demo ... --die HOW`, which installs the crash
//! handlers, writes its records, writes a last WARN event "demo: about to
//! die" (field `how`), and dies as HOW says. The exit status must be the
//! one the process would have without blackbox (the handlers re-raise), and
//! no case may hang: each child has a deadline, after which the test kills
//! it and fails.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{run, stderr, stdout, TempDir};
use serde_json::Value;

/// Deadline for a child that writes a few records and dies.
const PATIENCE: Duration = Duration::from_secs(30);
/// Deadline for a child that crashes while other threads log and allocate.
const HEAVY_PATIENCE: Duration = Duration::from_secs(20);

const SIGABRT: i32 = 6;
const SIGBUS: i32 = 7;
const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;

/// Threads and records per thread of the matrix cases: 2 x 400 demo records
/// (~100 bytes each) fit a 1 MiB ring many times, so nothing is overwritten
/// and every record must be recovered.
const THREADS: u64 = 2;
const RECORDS: u64 = 400;

/// How the parent sees a child end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Code(i32),
    Signal(i32),
}

impl End {
    fn of(status: ExitStatus) -> Option<End> {
        match (status.code(), status.signal()) {
            (Some(c), _) => Some(End::Code(c)),
            (None, Some(s)) => Some(End::Signal(s)),
            _ => None,
        }
    }

    /// What a process dying as `how` ends with, without blackbox.
    fn expected(how: &str) -> End {
        match how {
            "exit" => End::Code(0),
            "panic" => End::Code(101),
            "abort" | "stack-overflow" => End::Signal(SIGABRT),
            "segv" | "null" => End::Signal(SIGSEGV),
            "bus" => End::Signal(SIGBUS),
            "kill" | "oom" => End::Signal(SIGKILL),
            _ => panic!("no expectation for --die {how}"),
        }
    }
}

/// A demo child that ended.
struct Death {
    /// Names the case in messages (also the temp dir suffix).
    label: String,
    args: Vec<String>,
    pid: u32,
    status: ExitStatus,
    stderr: String,
    took: Duration,
}

/// Runs `blackbox demo --ring RING ARGS...` until it ends; kills it and
/// fails if it is still running after `limit`.
fn run_demo(label: &str, ring: &Path, args: &[&str], limit: Duration) -> Death {
    let mut cmd = common::blackbox();
    cmd.arg("demo")
        .arg("--ring")
        .arg(ring)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn blackbox demo");
    let pid = child.id();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!(
                "{label}: expected `blackbox demo {}` to die within {limit:?}; it was still \
                 running (a hang or deadlock in the crash path?), so the test killed it. \
                 Its stderr:\n{text}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let stderr = reader.join().unwrap_or_default();
    Death {
        label: label.to_string(),
        args: args.iter().map(ToString::to_string).collect(),
        pid,
        status,
        stderr,
        took,
    }
}

/// A dead child and what the reader makes of its ring.
struct Seen {
    death: Death,
    ring: PathBuf,
    info: Value,
    info_text: String,
    records: Vec<Value>,
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut at = text.len() - max;
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

impl Seen {
    fn load(death: Death, ring: &Path) -> Seen {
        let path = ring.to_str().unwrap();
        let must = |args: &[&str]| {
            let o = run(args);
            if !o.status.success() {
                panic!(
                    "{}: expected `blackbox {}` to succeed, it exited {:?}: {}{}\n\
                     the demo (`{}`) ended {:?}; its stderr:\n{}",
                    death.label,
                    args.join(" "),
                    o.status,
                    stdout(&o),
                    stderr(&o),
                    death.args.join(" "),
                    death.status,
                    death.stderr
                );
            }
            o
        };
        let info_out = must(&["info", path, "--json"]);
        let info: Value = serde_json::from_slice(&info_out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: `info --json` printed no JSON ({e}): {}",
                death.label,
                stdout(&info_out)
            )
        });
        let info_text = stdout(&must(&["info", path]));
        let read_out = stdout(&must(&["read", path, "--json"]));
        let records = read_out
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "{}: a `read --json` line is not JSON ({e}): {l}",
                        death.label
                    )
                })
            })
            .collect();
        Seen {
            death,
            ring: ring.to_path_buf(),
            info,
            info_text,
            records,
        }
    }

    /// Everything a reader of a failure needs: the child, its stderr, info
    /// (JSON and text) and the end of the window.
    fn context(&self) -> String {
        let d = &self.death;
        let last: Vec<String> = self
            .records
            .iter()
            .rev()
            .take(6)
            .rev()
            .map(|r| r.to_string())
            .collect();
        format!(
            "--- case {}: `blackbox demo --ring {} {}` (pid {}) ended {:?} after {:?}\n\
             --- its stderr:\n{}\n--- info --json:\n{}\n--- info:\n{}\n\
             --- read --json: {} records; the last ones:\n{}",
            d.label,
            self.ring.display(),
            d.args.join(" "),
            d.pid,
            d.status,
            d.took,
            tail(&d.stderr, 6000),
            serde_json::to_string_pretty(&self.info).unwrap(),
            self.info_text,
            self.records.len(),
            last.join("\n")
        )
    }

    fn fail(&self, what: String) -> ! {
        panic!("{}: {what}\n{}", self.death.label, self.context())
    }

    fn ensure(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    /// `info --json` at a JSON pointer (`/cause/kind`) equals `want`.
    fn info_is(&self, pointer: &str, want: Value) {
        let got = self.info.pointer(pointer).cloned().unwrap_or(Value::Null);
        self.ensure(got == want, || {
            format!("expected info {pointer} = {want}, got {got}")
        });
    }

    fn end_is(&self, want: End) {
        let got = End::of(self.death.status);
        self.ensure(got == Some(want), || {
            format!(
                "expected the child to end with {want:?} (as without blackbox), got {:?}",
                self.death.status
            )
        });
    }

    fn stderr_has(&self, needle: &str) {
        self.ensure(self.death.stderr.contains(needle), || {
            format!("expected {needle:?} on the child's stderr")
        });
    }

    fn text_has(&self, needle: &str) {
        self.ensure(self.info_text.contains(needle), || {
            format!("expected `blackbox info` (text) to contain {needle:?}")
        });
    }

    fn seq(&self, i: usize) -> u64 {
        self.records[i]["seq"]
            .as_u64()
            .unwrap_or_else(|| self.fail(format!("record #{i} has no integer seq")))
    }

    fn check_seq_increasing(&self) {
        let mut last = std::collections::BTreeMap::new();
        for i in 0..self.records.len() {
            let writer = self.records[i]["writer"].as_u64().unwrap_or(u64::MAX);
            let b = self.seq(i);
            let Some(a) = last.insert(writer, b) else {
                continue;
            };
            self.ensure(a < b, || {
                format!("expected each writer's seq to increase along the window; writer {writer}: seq {a} is followed by {b}")
            });
        }
    }

    /// Each thread's demo records as (window index, n), in window order;
    /// checks each is a well-formed demo record.
    fn demo_runs(&self) -> BTreeMap<u64, Vec<(usize, u64)>> {
        let mut runs: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
        for (i, r) in self.records.iter().enumerate() {
            if r["message"] != "demo record" {
                continue;
            }
            let t = r["fields"]["t"].as_u64();
            let n = r["fields"]["n"].as_u64();
            self.ensure(
                r["level"] == "INFO"
                    && r["target"] == "blackbox::demo"
                    && t.is_some()
                    && n.is_some(),
                || {
                    format!(
                        "expected a demo record (INFO, blackbox::demo, integer fields t and n), \
                         got {r}"
                    )
                },
            );
            runs.entry(t.unwrap()).or_default().push((i, n.unwrap()));
        }
        runs
    }

    /// Every thread below `threads` wrote exactly 0..records, all recovered
    /// in order, and no other thread appears.
    fn check_complete(&self, threads: u64, records: u64) -> usize {
        let runs = self.demo_runs();
        let got: Vec<u64> = runs.keys().copied().collect();
        let want: Vec<u64> = (0..threads).collect();
        self.ensure(got == want, || {
            format!("expected demo records of threads {want:?}, got threads {got:?}")
        });
        let mut last_index = 0;
        for (t, run) in &runs {
            let ns: Vec<u64> = run.iter().map(|&(_, n)| n).collect();
            let want: Vec<u64> = (0..records).collect();
            if ns != want {
                let first_bad = ns
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(ns.len().min(want.len()));
                self.fail(format!(
                    "thread {t}: expected demo records 0..{records} (the last one, {}, \
                     included), got {} records, first difference at position {first_bad}, \
                     last recovered {:?}",
                    records - 1,
                    ns.len(),
                    ns.last()
                ));
            }
            last_index = last_index.max(run.last().unwrap().0);
        }
        last_index
    }

    /// Each thread's counters are one contiguous run: a record is missing
    /// only where the writer counted it as dropped (no chunk could be
    /// claimed), which the demo's `dropped` field shows: a jump of k in `n`
    /// must come with a rise of k in `dropped`. Returns the number of demo
    /// records.
    fn check_contiguous(&self) -> usize {
        let runs = self.demo_runs();
        let mut total = 0;
        for (t, run) in &runs {
            total += run.len();
            for w in run.windows(2) {
                let ((i, m), (j, n)) = (w[0], w[1]);
                self.ensure(n > m, || {
                    format!(
                        "thread {t}: expected its counters to increase, got {m} (seq {}) \
                         followed by {n} (seq {})",
                        self.seq(i),
                        self.seq(j)
                    )
                });
                if n == m + 1 {
                    continue;
                }
                let dropped = |k: usize| self.records[k]["fields"]["dropped"].as_u64();
                let rise = dropped(j).zip(dropped(i)).map(|(b, a)| b.saturating_sub(a));
                self.ensure(rise == Some(n - m - 1), || {
                    format!(
                        "thread {t}: {m} (seq {}) is followed by {n} (seq {}), but the writer \
                         counted {rise:?} drops between them: committed records destroyed",
                        self.seq(i),
                        self.seq(j)
                    )
                });
                eprintln!(
                    "{}: thread {t} dropped {}..={} (counted: no chunk could be claimed)",
                    self.death.label,
                    m + 1,
                    n - 1
                );
            }
        }
        total
    }

    /// Whether the window still holds the "demo: about to die" event.
    fn has_about_to_die(&self) -> bool {
        self.records
            .iter()
            .any(|r| r["message"] == "demo: about to die")
    }

    /// The one "demo: about to die" event; returns its window index.
    fn about_to_die(&self, how: &str) -> usize {
        let found: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i]["message"] == "demo: about to die")
            .collect();
        self.ensure(found.len() == 1, || {
            format!(
                "expected exactly one \"demo: about to die\" event in the window, found {}",
                found.len()
            )
        });
        let r = &self.records[found[0]];
        self.ensure(
            r["level"] == "WARN" && r["target"] == "blackbox::demo" && r["fields"]["how"] == how,
            || format!("expected \"demo: about to die\" at WARN, target blackbox::demo, how = {how:?}; got {r}"),
        );
        found[0]
    }

    /// Window indexes of the crash events (target `blackbox::crash`).
    fn crash_events(&self) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i]["target"] == "blackbox::crash")
            .collect()
    }

    /// State and cause in `info --json` and `info` (text) for a death by
    /// `how`.
    fn check_cause(&self, how: &str) {
        let cause = &self.info["cause"];
        match how {
            "exit" => {
                self.info_is("/state", "exited".into());
                self.ensure(cause.is_null(), || {
                    format!("expected cause null after a clean exit, got {cause}")
                });
                self.text_has("exited");
            }
            "panic" => {
                self.info_is("/state", "crashed".into());
                self.info_is("/cause/kind", "panic".into());
                self.info_is("/cause/thread", "main".into());
                let message = cause["message"].as_str().unwrap_or("");
                self.ensure(!message.is_empty(), || {
                    format!(
                        "expected cause.message to be the panic message, got {}",
                        cause["message"]
                    )
                });
                let location = cause["location"].as_str().unwrap_or("");
                self.ensure(looks_like_location(location), || {
                    format!(
                        "expected cause.location as FILE:LINE:COL, got {}",
                        cause["location"]
                    )
                });
                self.text_has("panicked at");
                self.text_has(location);
            }
            "kill" | "oom" => {
                self.info_is("/state", "killed".into());
                self.info_is("/cause/kind", "killed".into());
                self.ensure(cause["message"].is_string(), || {
                    format!("expected a string cause.message, got {}", cause["message"])
                });
                self.text_has("killed without a word");
                if how == "oom" {
                    self.info_is("/cause/likely_oom", true.into());
                    self.ensure(cause["memory"].is_object(), || {
                        format!(
                            "expected the memory evidence object cause.memory, got {}",
                            cause["memory"]
                        )
                    });
                    self.text_has("likely an OOM kill");
                } else {
                    self.info_is("/cause/likely_oom", false.into());
                    self.ensure(!self.info_text.contains("likely an OOM kill"), || {
                        "expected no \"likely an OOM kill\" for a plain SIGKILL".to_string()
                    });
                }
            }
            _ => {
                let (name, signo) = signal_of(how);
                self.info_is("/state", "crashed".into());
                self.info_is("/cause/kind", "signal".into());
                self.info_is("/cause/signal", name.into());
                self.info_is("/cause/signo", signo.into());
                self.info_is("/cause/thread", "main".into());
                self.info_is(
                    "/cause/likely_stack_overflow",
                    (how == "stack-overflow").into(),
                );
                let addr = &cause["fault_address"];
                let hex = addr.as_str().is_some_and(|a| a.starts_with("0x"));
                match how {
                    "segv" => {
                        self.info_is("/cause/code", "SEGV_MAPERR".into());
                        self.info_is("/cause/fault_address", "0x10".into());
                        self.text_has("crashed: SIGSEGV at 0x10 in thread 'main'");
                    }
                    "null" => {
                        // Address 0 is the most common fault of all: it is
                        // an address, not "none".
                        self.info_is("/cause/code", "SEGV_MAPERR".into());
                        self.info_is("/cause/fault_address", "0x0".into());
                        self.text_has("crashed: SIGSEGV at 0x0 in thread 'main'");
                    }
                    "abort" => {
                        self.info_is("/cause/fault_address", Value::Null);
                        self.text_has("SIGABRT");
                        self.text_has("thread 'main'");
                    }
                    "bus" => {
                        // The kernel's code for an access past the end of a
                        // mapped file.
                        self.info_is("/cause/code", "BUS_ADRERR".into());
                        self.ensure(hex, || {
                            format!("expected a hex cause.fault_address, got {addr}")
                        });
                        self.text_has("crashed: SIGBUS at 0x");
                    }
                    "stack-overflow" => {
                        self.ensure(hex, || {
                            format!("expected a hex cause.fault_address, got {addr}")
                        });
                        self.text_has("SIGSEGV");
                        self.ensure(
                            self.info_text.to_lowercase().contains("stack overflow"),
                            || "expected `blackbox info` (text) to say \"stack overflow\"".into(),
                        );
                    }
                    _ => unreachable!(),
                }
            }
        }
    }

    /// The crash event(s) for a death by `how`, after the "about to die"
    /// event at index `after`.
    fn check_crash_event(&self, how: &str, after: usize) {
        let events = self.crash_events();
        let expected_events = match how {
            "exit" | "kill" | "oom" => 0,
            _ => 1,
        };
        // A stack overflow is a SIGSEGV, then Rust's runtime aborts: the
        // SIGABRT may add an event of its own, but must not come first.
        let ok_count = if how == "stack-overflow" {
            (1..=2).contains(&events.len())
        } else {
            events.len() == expected_events
        };
        self.ensure(ok_count, || {
            format!(
                "expected {} crash event(s) (target blackbox::crash), found {}",
                if how == "stack-overflow" {
                    "1 or 2".to_string()
                } else {
                    expected_events.to_string()
                },
                events.len()
            )
        });
        let Some(&first) = events.first() else { return };
        let r = &self.records[first];
        self.ensure(first > after, || {
            format!("expected the crash event after \"demo: about to die\" (#{after}), it is #{first}: {r}")
        });
        self.ensure(r["level"] == "ERROR", || {
            format!("expected the crash event at level ERROR, got {r}")
        });
        let message = r["message"].as_str().unwrap_or("");
        if how == "panic" {
            let want = format!(
                "panicked at {}: {}",
                self.info["cause"]["location"].as_str().unwrap_or("?"),
                self.info["cause"]["message"].as_str().unwrap_or("?")
            );
            self.ensure(message == want, || {
                format!("expected the crash event's message {want:?}, got {r}")
            });
            self.ensure(r["fields"]["thread"] == "main", || {
                format!("expected the crash event's field thread = \"main\", got {r}")
            });
            // The hook records raw return addresses; `read --json` shows
            // them symbolized, as an array of frames.
            self.ensure(
                r["fields"]["backtrace"]
                    .as_array()
                    .is_some_and(|frames| !frames.is_empty()),
                || format!("expected a backtrace array in the crash event, got {r}"),
            );
        } else {
            // Like "fatal signal SIGSEGV (SEGV_MAPERR) at 0x10 in thread
            // 'main'": the signal first, the address (where there is one)
            // and the thread; the rest of the wording is free.
            let (name, _) = signal_of(how);
            let want = format!("fatal signal {name}");
            let at = match how {
                "segv" => " at 0x10 ",
                // A null pointer: address 0 is an address, and is said.
                "null" => " at 0x0 ",
                _ => "",
            };
            self.ensure(
                message.starts_with(&want)
                    && message.contains(at)
                    && message.contains("in thread 'main'"),
                || {
                    format!(
                        "expected the crash event's message to start with {want:?}, contain \
                         {at:?} and name thread 'main', got {r}"
                    )
                },
            );
        }
    }

    fn check_identity(&self) {
        self.info_is("/pid", self.death.pid.into());
        self.info_is("/program", "blackbox-demo".into());
    }

    fn verify_ok(&self) {
        let o = run(&["verify", self.ring.to_str().unwrap()]);
        self.ensure(o.status.success(), || {
            format!(
                "expected `blackbox verify` to exit 0, it exited {:?}: {}{}",
                o.status,
                stdout(&o),
                stderr(&o)
            )
        });
    }
}

fn signal_of(how: &str) -> (&'static str, i32) {
    match how {
        "segv" | "null" | "stack-overflow" => ("SIGSEGV", SIGSEGV),
        "abort" => ("SIGABRT", SIGABRT),
        "bus" => ("SIGBUS", SIGBUS),
        _ => panic!("--die {how} is not a fatal signal"),
    }
}

/// "FILE:LINE:COL".
fn looks_like_location(s: &str) -> bool {
    let mut parts = s.rsplitn(3, ':');
    let col = parts.next().unwrap_or("");
    let line = parts.next().unwrap_or("");
    let file = parts.next().unwrap_or("");
    !file.is_empty() && col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok()
}

/// One matrix-style case: `--die how` plus `extra` flags, 2 threads x
/// RECORDS records; checks everything the child and the reader show.
fn full_case(label: &str, how: &str, extra: &[&str]) -> Seen {
    let dir = TempDir::new(label);
    let ring = dir.path("death.ring");
    let threads = THREADS.to_string();
    let records = RECORDS.to_string();
    let mut args = vec![
        "--capacity",
        "1MiB",
        "--threads",
        &threads,
        "--records",
        &records,
        "--die",
        how,
    ];
    args.extend_from_slice(extra);
    let death = run_demo(label, &ring, &args, PATIENCE);
    let seen = Seen::load(death, &ring);
    seen.end_is(End::expected(how));
    seen.check_seq_increasing();
    let last_demo = seen.check_complete(THREADS, RECORDS);
    let about = seen.about_to_die(how);
    seen.ensure(about > last_demo, || {
        format!("expected \"demo: about to die\" (#{about}) after every demo record (the last is #{last_demo})")
    });
    seen.check_crash_event(how, about);
    seen.check_cause(how);
    seen.check_identity();
    seen.info_is("/records", seen.records.len().into());
    seen.info_is("/torn", 0.into());
    seen.info_is("/corrupt", 0.into());
    match how {
        "panic" if !extra.contains(&"--foreign-handlers") => {
            // The hook that was there before (Rust's default) still runs.
            seen.stderr_has("panicked at");
        }
        "stack-overflow" => seen.stderr_has("has overflowed its stack"),
        _ => {}
    }
    seen.verify_ok();
    seen
}

/// Runs `f` for each item in a thread of its own; fails with every
/// failure's message once all ended.
fn in_parallel(items: &[&str], f: impl Fn(&str) + Sync) {
    let f = &f;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .iter()
            .map(|&item| (item, s.spawn(move || f(item))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(item, h)| {
                h.join().err().map(|p| {
                    let text = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(non-text panic)".into());
                    format!("===== {item} =====\n{text}")
                })
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        items.len(),
        failures.join("\n")
    );
}

/// The crash matrix: each way to die, a real child process; exit status as
/// without blackbox, state and cause, the whole window, the crash event.
#[test]
fn crash_matrix() {
    let started = Instant::now();
    in_parallel(
        &[
            "exit",
            "panic",
            "abort",
            "segv",
            "null",
            "bus",
            "stack-overflow",
            "kill",
        ],
        |how| {
            let seen = full_case(&format!("death-matrix-{how}"), how, &[]);
            eprintln!(
                "{how}: ended {:?} in {:?}; cause {}",
                seen.death.status, seen.death.took, seen.info["cause"]
            );
        },
    );
    eprintln!("crash matrix took {:?}", started.elapsed());
}

/// Installing the handlers twice: still one cause, one crash event, the
/// same exit status.
#[test]
fn handlers_installed_twice() {
    in_parallel(&["segv", "panic"], |how| {
        full_case(&format!("death-twice-{how}"), how, &["--install-twice"]);
    });
}

/// Another crash handler (SIGSEGV/SIGABRT handler and panic hook) installed
/// before blackbox's: blackbox records the cause and chains to it.
#[test]
fn foreign_handlers_are_chained() {
    in_parallel(&["segv", "panic", "abort"], |how| {
        let seen = full_case(
            &format!("death-foreign-{how}"),
            how,
            &["--foreign-handlers"],
        );
        seen.stderr_has("foreign handler ran");
    });
}

/// The main thread dies (`how`) after 300 ms while four threads append and
/// allocate as fast as they can: the allocator or the ring may be
/// mid-update. The child must die promptly (no deadlock), the crash event
/// and the cause must be recorded, the window must be consistent.
fn crash_under_load(how: &str) {
    let label = format!("death-heavy-{how}");
    let dir = TempDir::new(&label);
    let ring = dir.path("heavy.ring");
    let args = [
        "--capacity",
        "1MiB",
        "--threads",
        "4",
        "--records",
        "1000000000",
        "--die-after-ms",
        "300",
        "--die",
        how,
    ];
    let death = run_demo(&label, &ring, &args, HEAVY_PATIENCE);
    let seen = Seen::load(death, &ring);
    seen.end_is(End::expected(how));
    seen.check_seq_increasing();
    let demo_records = seen.check_contiguous();
    seen.ensure(demo_records >= 100, || {
        format!("expected the window to be full of demo records, found {demo_records}")
    });
    // The panic hook captures a backtrace (milliseconds) while the other
    // threads keep appending at full speed: in a 1 MiB ring the "about to
    // die" event may be overwritten before the crash event is written. The
    // window moving on is correct; the crash event must still be there.
    // So may the crash event itself: after the hook, Rust's default hook
    // symbolizes and prints a backtrace (hundreds of ms in a debug build)
    // while the writers go on. The cause in the header stays (checked
    // below); the event is checked whenever it is still in the window.
    let about = if how == "panic" && !seen.has_about_to_die() {
        0
    } else {
        seen.about_to_die(how)
    };
    if how != "panic" || !seen.crash_events().is_empty() {
        seen.check_crash_event(how, about);
    }
    seen.check_cause(how);
    seen.check_identity();
    seen.verify_ok();
    eprintln!(
        "{label}: ended {:?} in {:?}, {demo_records} demo records in the window, torn {}, \
         overwritten {}",
        seen.death.status, seen.death.took, seen.info["torn"], seen.info["overwritten"]
    );
}

#[test]
fn segv_while_threads_log_and_allocate() {
    crash_under_load("segv");
}

#[test]
fn abort_while_threads_log_and_allocate() {
    crash_under_load("abort");
}

#[test]
fn panic_while_threads_log_and_allocate() {
    crash_under_load("panic");
}

/// Removes the memory cgroup the demo made, once it is empty.
struct Cgroup(Option<PathBuf>);

impl Cgroup {
    fn remove(&mut self) -> Result<(), String> {
        let Some(path) = self.0.take() else {
            return Ok(());
        };
        let mut last = None;
        // The dead child may take a moment to leave cgroup.procs.
        for _ in 0..100 {
            match std::fs::remove_dir(&path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "could not remove the demo's memory cgroup {}: {:?}",
            path.display(),
            last
        ))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("{e}");
        }
    }
}

/// A real kernel OOM kill in a memory cgroup the demo creates (v2, or v1 on
/// a hybrid host). Where none can be made the demo refuses (exit 2, one
/// line) and the test says "skipped: ..." in its output.
#[test]
fn oom_kill_in_a_memory_cgroup() {
    let label = "death-oom";
    let dir = TempDir::new(label);
    let ring = dir.path("oom.ring");
    let threads = THREADS.to_string();
    let records = RECORDS.to_string();
    let args = [
        "--capacity",
        "1MiB",
        "--threads",
        &threads,
        "--records",
        &records,
        "--die",
        "oom",
    ];
    let death = run_demo(label, &ring, &args, PATIENCE);
    const PREFIX: &str = "blackbox demo: memory cgroup ";
    let cgroup_line = death.stderr.lines().find(|l| l.starts_with(PREFIX));
    let mut cgroup = Cgroup(cgroup_line.map(|l| {
        let rest = &l[PREFIX.len()..];
        let path = rest.rsplit_once(" limit ").map_or(rest, |(p, _)| p);
        PathBuf::from(path)
    }));
    if let Some(path) = &cgroup.0 {
        // Only ever rmdir what is a cgroup.
        assert!(
            path.starts_with("/sys/fs/cgroup/"),
            "expected the demo's cgroup under /sys/fs/cgroup, got line {:?}",
            cgroup_line
        );
    }
    if death.status.code() == Some(2) && cgroup.0.is_none() {
        let line = death.stderr.lines().last().unwrap_or("").trim();
        assert!(
            line.to_lowercase().contains("cgroup"),
            "expected demo --die oom to exit 2 only when no memory cgroup can be made, with \
             a line saying so; its stderr:\n{}",
            death.stderr
        );
        // Straight to the file descriptor: libtest captures println! and
        // eprintln! of a passing test, and a skip must never be silent.
        let _ = writeln!(std::io::stderr().lock(), "skipped: {line}");
        println!("skipped: {line}");
        return;
    }
    assert!(
        cgroup.0.is_some(),
        "expected the line \"{PREFIX}<PATH> limit <N> bytes\" on stderr before the demo \
         allocates; the demo ended {:?}, stderr:\n{}",
        death.status,
        death.stderr
    );
    let seen = Seen::load(death, &ring);
    // The demo's helper removes what it made once the writer is dead; the
    // test removes it only if that did not happen (and then fails).
    let made = cgroup.0.clone().expect("checked above");
    let deadline = Instant::now() + PATIENCE;
    while made.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left_behind = made.exists();
    let removed = cgroup.remove();
    seen.end_is(End::Signal(SIGKILL));
    seen.check_seq_increasing();
    let last_demo = seen.check_complete(THREADS, RECORDS);
    let about = seen.about_to_die("oom");
    seen.ensure(about > last_demo, || {
        format!("expected \"demo: about to die\" (#{about}) after every demo record (the last is #{last_demo})")
    });
    seen.check_crash_event("oom", about);
    seen.check_cause("oom");
    seen.check_identity();
    seen.verify_ok();
    if let Err(e) = removed {
        seen.fail(e);
    }
    if left_behind {
        seen.fail(format!(
            "the demo left its cgroup {} behind (its clean-up helper did not remove it within {PATIENCE:?})",
            made.display()
        ));
    }
    eprintln!(
        "oom: ended {:?} in {:?}; cause {}",
        seen.death.status, seen.death.took, seen.info["cause"]
    );
}

/// With a termination log (as `/dev/termination-log` on Kubernetes), the
/// crash handlers also write the one-line cause there, and nothing more:
/// a panic, a fatal signal, and a clean exit (which leaves it empty).
#[test]
fn termination_log_gets_the_cause_in_one_line() {
    let dir = TempDir::new("death-termlog");
    let cases = [
        ("panic", Some(101), "panicked at "),
        (
            "segv",
            None,
            "fatal signal SIGSEGV at 0x10 in thread 'main'",
        ),
        ("abort", None, "fatal signal SIGABRT in thread 'main'"),
        ("exit", Some(0), ""),
    ];
    for (how, code, want) in cases {
        let ring = dir.path(&format!("{how}.ring"));
        let log = dir.path(&format!("{how}.termination-log"));
        let o = common::blackbox()
            .args(["demo", "--ring", ring.to_str().unwrap(), "--records", "10"])
            .args(["--die", how, "--termination-log", log.to_str().unwrap()])
            .output()
            .expect("run demo");
        assert_eq!(
            o.status.code(),
            code,
            "{how}: {:?}\n{}",
            o.status,
            stderr(&o)
        );
        let text = std::fs::read_to_string(&log).expect("termination log exists");
        if want.is_empty() {
            assert_eq!(text, "", "{how}: a clean exit writes nothing");
        } else {
            assert!(
                text.starts_with(want) && text.ends_with('\n') && text.lines().count() == 1,
                "{how}: expected one line starting {want:?}, got {text:?}"
            );
        }
    }
}

/// The lines `info` (text) prints under "backtrace", without their indent.
fn text_backtrace(info_text: &str) -> Option<Vec<String>> {
    let mut lines = info_text.lines().skip_while(|l| *l != "backtrace");
    lines.next()?;
    Some(
        lines
            .take_while(|l| l.starts_with("  "))
            .map(|l| l[2..].to_string())
            .collect(),
    )
}

/// A caught panic's crash event (thread `caught`), with its backtrace: the
/// evidence a later death must not borrow.
fn caught_panic_event(seen: &Seen) -> &Value {
    let caught = seen
        .records
        .iter()
        .find(|r| r["target"] == "blackbox::crash" && r["fields"]["thread"] == "caught");
    match caught {
        // `read --json` symbolizes the hook's raw return addresses into an
        // array of frames.
        Some(r)
            if r["fields"]["backtrace"]
                .as_array()
                .is_some_and(|f| !f.is_empty()) =>
        {
            r
        }
        _ => seen.fail("expected the caught panic's crash event with a backtrace".into()),
    }
}

/// A server survives a caught panic (thread `caught`), then dies of
/// SIGSEGV on the main thread: `info` and `info --json` show the SIGSEGV's
/// own evidence only (no backtrace: its handler records none), and agree.
#[test]
fn caught_panic_then_segv_shows_only_the_signal() {
    let dir = TempDir::new("death-caught-then-segv");
    let ring = dir.path("death.ring");
    let args = ["--records", "20", "--caught-panic", "--die", "segv"];
    let seen = Seen::load(run_demo("caught-then-segv", &ring, &args, PATIENCE), &ring);
    seen.end_is(End::Signal(SIGSEGV));
    caught_panic_event(&seen);
    seen.info_is("/cause/kind", "signal".into());
    seen.info_is("/cause/signal", "SIGSEGV".into());
    seen.info_is("/cause/thread", "main".into());
    seen.info_is("/cause/fault_address", "0x10".into());
    seen.text_has("state     crashed: SIGSEGV at 0x10 in thread 'main'\n");
    seen.ensure(seen.info["cause"].get("backtrace").is_none(), || {
        "expected no backtrace under a SIGSEGV's cause in info --json".into()
    });
    seen.ensure(text_backtrace(&seen.info_text).is_none(), || {
        "expected no backtrace under a SIGSEGV's cause in info (text): it is the caught panic's"
            .into()
    });
}

/// A caught panic, then a panic on the main thread that ends the process:
/// the backtrace under the cause is the main thread's own, the same in
/// `info` and `info --json`, never the caught one's.
#[test]
fn caught_panic_then_panic_shows_its_own_backtrace() {
    let dir = TempDir::new("death-caught-then-panic");
    let ring = dir.path("death.ring");
    let args = ["--records", "20", "--caught-panic", "--die", "panic"];
    let seen = Seen::load(run_demo("caught-then-panic", &ring, &args, PATIENCE), &ring);
    seen.end_is(End::Code(101));
    let caught = caught_panic_event(&seen)["fields"]["backtrace"].clone();
    seen.info_is("/cause/kind", "panic".into());
    seen.info_is("/cause/thread", "main".into());
    seen.info_is("/cause/message", "demo panic".into());
    let own = seen
        .records
        .iter()
        .rev()
        .find(|r| r["target"] == "blackbox::crash" && r["fields"]["thread"] == "main")
        .map(|r| r["fields"]["backtrace"].clone())
        .unwrap_or_else(|| seen.fail("expected the main thread's panic event".into()));
    let own = own.as_array().cloned().unwrap_or_default();
    seen.ensure(
        !own.is_empty() && Value::from(own.clone()) != caught,
        || {
            format!(
                "expected the main thread's own backtrace, distinct from the caught one's: {own:?}"
            )
        },
    );
    let cause_bt = seen.info["cause"]["backtrace"].as_str().unwrap_or_else(|| {
        seen.fail("expected a backtrace (text) under the panic's cause in info --json".into())
    });
    let json_lines: Vec<String> = cause_bt.lines().map(String::from).collect();
    // The cause's backtrace is the main thread's own: its frames, in order.
    let own_functions: Vec<&str> = own.iter().filter_map(|f| f["function"].as_str()).collect();
    let shown_functions = json_lines
        .iter()
        .filter(|l| own_functions.iter().any(|f| l.starts_with(f)))
        .count();
    seen.ensure(json_lines.len() == own.len() && shown_functions == own_functions.len(), || {
        format!("expected the cause's backtrace to be the main thread's frames {own_functions:?}: {cause_bt}")
    });
    seen.ensure(text_backtrace(&seen.info_text) == Some(json_lines), || {
        "expected info (text) to print the same backtrace as info --json".into()
    });
}
