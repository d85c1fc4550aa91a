//! Deployment: `blackbox on-failure` (the systemd OnFailure collector's
//! command) driven by the variables systemd sets, against rings that real
//! `blackbox demo` writers left behind; `systemd-analyze verify` over every
//! unit file in systemd/; the Kubernetes manifests against the Kubernetes
//! schema (scripts/check-kubernetes.sh).
//!
//! The end-to-end run under a real systemd is scripts/e2e-systemd.sh (it
//! boots a container and takes minutes; CI runs it where it can).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{blackbox, stderr, stdout, TempDir};
use serde_json::Value;

const ID_A: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ID_B: &str = "ffeeddccbbaa99887766554433221100";
const ID_C: &str = "1234567890abcdef1234567890abcdef";

/// Every variable `on-failure` reads, so the test's own environment (a CI
/// runner under systemd has INVOCATION_ID) cannot leak in.
const ENV: [&str; 9] = [
    "MONITOR_UNIT",
    "MONITOR_INVOCATION_ID",
    "MONITOR_SERVICE_RESULT",
    "MONITOR_EXIT_CODE",
    "MONITOR_EXIT_STATUS",
    "BLACKBOX_DIR",
    "BLACKBOX_TO",
    "BLACKBOX_FORMAT",
    "INVOCATION_ID",
];

fn clean(mut cmd: Command) -> Command {
    for var in ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A demo writer as a unit with `invocation_id` would run it: 200 records
/// into `ring`, then it dies as `die` says.
fn demo(ring: &Path, invocation_id: Option<&str>, die: &str) {
    let mut cmd = clean(blackbox());
    cmd.args([
        "demo",
        "--ring",
        ring.to_str().unwrap(),
        "--capacity",
        "64KiB",
    ])
    .args(["--records", "200", "--die", die]);
    if let Some(id) = invocation_id {
        cmd.env("INVOCATION_ID", id);
    }
    let out = cmd.output().expect("run blackbox demo");
    assert!(
        out.stdout.is_empty() || die != "exit",
        "demo printed: {}",
        stdout(&out)
    );
    assert_eq!(
        out.status.success(),
        die == "exit",
        "demo --die {die}: {:?} {}",
        out.status,
        stderr(&out)
    );
}

/// `blackbox on-failure --json` with systemd's variables
/// `(result, exit code, exit status)`.
fn on_failure(dir: &Path, id: Option<&str>, verdict: (&str, &str, &str), extra: &[&str]) -> Output {
    let mut cmd = clean(blackbox());
    cmd.arg("on-failure")
        .args(extra)
        .env("BLACKBOX_DIR", dir)
        .env("MONITOR_UNIT", "app.service")
        .env("MONITOR_SERVICE_RESULT", verdict.0)
        .env("MONITOR_EXIT_CODE", verdict.1)
        .env("MONITOR_EXIT_STATUS", verdict.2);
    if let Some(id) = id {
        cmd.env("MONITOR_INVOCATION_ID", id);
    }
    cmd.output().expect("run blackbox on-failure")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "on-failure failed: {:?} {}",
        out.status,
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).expect("on-failure --json prints one JSON object")
}

/// The demo's last records are in the report: its `about to die` event
/// after the last `demo record` (n = 199).
fn assert_last_records(r: &Value, how: &str) {
    let records = r["records"].as_array().expect("records");
    assert!(!records.is_empty() && records.len() <= 20, "{r}");
    let last_demo = records
        .iter()
        .rev()
        .find(|x| x["message"] == "demo record")
        .expect("a demo record in the report");
    assert_eq!(last_demo["fields"]["n"], 199, "{last_demo}");
    assert!(
        records
            .iter()
            .any(|x| x["message"] == "demo: about to die" && x["fields"]["how"] == how),
        "no `about to die` event with how={how}: {r}"
    );
}

/// Three rings of three runs (and a ring without an id): the report is of
/// the run systemd names, and systemd's `signal` names the SIGKILL the ring
/// could only call "killed without a word".
#[test]
fn picks_the_ring_of_the_failed_invocation() {
    let dir = TempDir::new("deploy-pick");
    demo(&dir.path("a.ring"), Some(ID_A), "kill");
    demo(&dir.path("b.ring"), Some(ID_B), "kill");
    // Named like no ring, yet a ring: known by its magic.
    demo(&dir.path("c.data"), Some(ID_C), "exit");
    demo(&dir.path("none.ring"), None, "kill");
    // Things that are not rings, or not to be followed.
    std::fs::write(dir.path("notes.ring"), b"not a ring at all").unwrap();
    std::os::unix::fs::symlink(dir.path("a.ring"), dir.path("link.ring")).unwrap();

    let out = on_failure(
        &dir.0,
        Some(ID_A),
        ("signal", "killed", "KILL"),
        &["--json"],
    );
    let r = report(&out);
    assert_eq!(r["ring"], dir.path("a.ring").display().to_string(), "{r}");
    assert_eq!(r["info"]["invocation_id"], ID_A);
    assert_eq!(r["unit"], "app.service");
    assert_eq!(r["systemd"]["result"], "signal");
    assert_eq!(r["state"], "killed");
    assert_eq!(r["cause"]["kind"], "signal");
    assert_eq!(r["cause"]["signal"], "SIGKILL");
    assert_eq!(r["cause"]["source"], "ring+systemd");
    assert!(
        r["cause"]["text"]
            .as_str()
            .unwrap()
            .starts_with("killed by SIGKILL (systemd: result=signal"),
        "{r}"
    );
    assert_last_records(&r, "kill");

    let out = on_failure(
        &dir.0,
        Some(ID_B),
        ("signal", "killed", "KILL"),
        &["--json"],
    );
    assert_eq!(
        report(&out)["ring"],
        dir.path("b.ring").display().to_string()
    );

    // The ring of a clean close that the app followed with exit(3).
    let out = on_failure(
        &dir.0,
        Some(ID_C),
        ("exit-code", "exited", "3"),
        &["--json"],
    );
    let r = report(&out);
    assert_eq!(r["ring"], dir.path("c.data").display().to_string());
    assert_eq!(r["state"], "exited");
    assert_eq!(r["cause"]["kind"], "exit");
    assert!(
        r["cause"]["text"]
            .as_str()
            .unwrap()
            .starts_with("exited with status 3 after closing the ring cleanly"),
        "{r}"
    );
    assert_last_records(&r, "exit");
}

/// An invocation with no ring of its own is an error, never another run's
/// ring; a ring that records no id is the fallback, and the report says so.
#[test]
fn another_runs_ring_is_never_reported() {
    let dir = TempDir::new("deploy-other");
    demo(&dir.path("b.ring"), Some(ID_B), "kill");
    let out = on_failure(&dir.0, Some(ID_A), ("signal", "killed", "KILL"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("blackbox: no ring in ") && err.contains(ID_A),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    demo(&dir.path("old.ring"), None, "kill");
    let r = report(&on_failure(
        &dir.0,
        Some(ID_A),
        ("signal", "killed", "KILL"),
        &["--json"],
    ));
    assert_eq!(r["ring"], dir.path("old.ring").display().to_string());
    assert!(
        r["picked"]
            .as_str()
            .unwrap()
            .contains("records no invocation id"),
        "{r}"
    );

    // Without any id (run by hand): the newest dead ring.
    let r = report(&on_failure(
        &dir.0,
        None,
        ("signal", "killed", "KILL"),
        &["--json"],
    ));
    assert_eq!(r["ring"], dir.path("old.ring").display().to_string());

    let empty = TempDir::new("deploy-empty");
    let out = on_failure(&empty.0, Some(ID_A), ("signal", "killed", "KILL"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// A silent death that systemd saw as an OOM kill is reported as one.
#[test]
fn systemd_oom_kill_becomes_the_cause() {
    let dir = TempDir::new("deploy-oom");
    demo(&dir.path("app.ring"), Some(ID_A), "kill");
    let r = report(&on_failure(
        &dir.0,
        Some(ID_A),
        ("oom-kill", "killed", "KILL"),
        &["--json"],
    ));
    assert_eq!(r["cause"]["kind"], "oom");
    assert!(
        r["cause"]["text"]
            .as_str()
            .unwrap()
            .starts_with("OOM-killed (systemd: result=oom-kill"),
        "{r}"
    );
    // The ring's own account is kept beside it.
    assert_eq!(r["cause"]["ring"]["kind"], "killed");

    // And in the text report (what the journal shows).
    let out = on_failure(&dir.0, Some(ID_A), ("oom-kill", "killed", "KILL"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("blackbox: app.service failed: OOM-killed (systemd: result=oom-kill"),
        "{text}"
    );
    assert!(text.contains("demo: about to die"), "{text}");
}

/// A ring that knows its cause (the crash handler caught SIGSEGV) keeps it.
#[test]
fn the_rings_own_cause_is_kept_for_a_segfault() {
    let dir = TempDir::new("deploy-segv");
    demo(&dir.path("app.ring"), Some(ID_A), "segv");
    let r = report(&on_failure(
        &dir.0,
        Some(ID_A),
        ("core-dump", "dumped", "SEGV"),
        &["--json"],
    ));
    assert_eq!(r["state"], "crashed");
    assert_eq!(r["cause"]["source"], "ring");
    assert_eq!(r["cause"]["kind"], "signal");
    assert_eq!(r["cause"]["ring"]["signal"], "SIGSEGV");
    assert!(
        r["cause"]["text"]
            .as_str()
            .unwrap()
            .starts_with("crashed: SIGSEGV"),
        "{r}"
    );
    assert_last_records(&r, "segv");

    let out = on_failure(
        &dir.0,
        Some(ID_A),
        ("core-dump", "dumped", "SEGV"),
        &["--last", "3"],
    );
    let text = stdout(&out);
    assert!(text.contains("cause      crashed: SIGSEGV"), "{text}");
    assert!(text.contains("the last 3:"), "{text}");
}

/// `--keep K` removes the oldest dead rings beyond K, never the reported
/// one; files that are not rings are left alone.
#[test]
fn keep_prunes_old_dead_rings() {
    let dir = TempDir::new("deploy-keep");
    for (i, id) in [ID_B, ID_C, ID_A].iter().enumerate() {
        demo(&dir.path(&format!("r{i}.ring")), Some(id), "kill");
    }
    std::fs::write(dir.path("other.txt"), b"keep me").unwrap();
    // Report the oldest, keep one: the newest and the reported stay.
    let out = on_failure(
        &dir.0,
        Some(ID_B),
        ("signal", "killed", "KILL"),
        &["--keep", "1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["other.txt", "r0.ring", "r2.ring"]);
}

/// `on-failure --dir` reads the directory with `blackbox watch`'s file
/// rules: a symlink, a file of a foreign owner and a hard-linked file are
/// never reported, even when they carry the failed run's invocation id, and
/// each is named on stderr. A plain ring of the same run next to them is.
#[test]
fn on_failure_refuses_symlinks_foreign_owners_and_hard_links() {
    let dir = TempDir::new("deploy-unsafe");
    let rings = dir.path("rings");
    let outside = dir.path("outside");
    std::fs::create_dir_all(&rings).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let ids = [ID_A, ID_B, ID_C];

    // A symlink to a ring outside the directory.
    demo(&outside.join("target.ring"), Some(ID_A), "kill");
    std::os::unix::fs::symlink(outside.join("target.ring"), rings.join("link.ring")).unwrap();
    // A hard link to a ring outside the directory.
    demo(&outside.join("linked.ring"), Some(ID_B), "kill");
    std::fs::hard_link(outside.join("linked.ring"), rings.join("linked.ring")).unwrap();
    // A ring owned by another user (root can hand it over; a test run by
    // another user cannot, and says so).
    demo(&rings.join("foreign.ring"), Some(ID_C), "kill");
    let foreign = rings.join("foreign.ring");
    let handed_over = nix::unistd::chown(
        &foreign,
        Some(nix::unistd::Uid::from_raw(54321)),
        Some(nix::unistd::Gid::from_raw(54321)),
    )
    .is_ok();
    if !handed_over {
        eprintln!("not root: the foreign-owner case is not exercised");
    }

    let expected = [
        ("link.ring", "a symlink"),
        ("linked.ring", "hard links"),
        ("foreign.ring", "owned by uid 54321"),
    ];
    for (i, (name, why)) in expected.iter().enumerate() {
        if *name == "foreign.ring" && !handed_over {
            continue;
        }
        let out = on_failure(&rings, Some(ids[i]), ("signal", "killed", "KILL"), &[]);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{name} must not be reported: {}",
            stdout(&out)
        );
        assert!(
            err.contains(&format!(
                "no ring in {} belongs to invocation {}",
                rings.display(),
                ids[i]
            )),
            "{name}: {err}"
        );
        assert!(
            err.contains(&format!("skipping {}: ", rings.join(name).display()))
                && err.contains(why),
            "{name} is named with its reason ({why}): {err}"
        );
    }

    // The same run's ring as a plain file is reported.
    demo(&rings.join("plain.ring"), Some(ID_A), "kill");
    let r = report(&on_failure(
        &rings,
        Some(ID_A),
        ("signal", "killed", "KILL"),
        &["--json"],
    ));
    assert_eq!(
        r["ring"].as_str().map(|p| p.ends_with("plain.ring")),
        Some(true),
        "{r}"
    );
    // --any-owner takes the foreign file.
    if handed_over {
        let r = report(&on_failure(
            &rings,
            Some(ID_C),
            ("signal", "killed", "KILL"),
            &["--json", "--any-owner"],
        ));
        assert_eq!(
            r["ring"].as_str().map(|p| p.ends_with("foreign.ring")),
            Some(true),
            "{r}"
        );
    }
}

/// `--to FILE` ships the window as well as printing the report.
#[test]
fn ships_where_asked() {
    let dir = TempDir::new("deploy-ship");
    demo(&dir.path("app.ring"), Some(ID_A), "kill");
    let sink = dir.path("shipped.ndjson");
    let out = on_failure(
        &dir.0,
        Some(ID_A),
        ("signal", "killed", "KILL"),
        &["--to", sink.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("killed by SIGKILL"));
    let body = std::fs::read_to_string(&sink).expect("the shipment file");
    assert!(body.contains("demo: about to die"), "{body}");
    assert!(
        body.contains("systemd OnFailure: app.service result=signal"),
        "{body}"
    );

    // --max-body splits the same window into parts, none lost.
    let parts_sink = dir.path("parts.ndjson");
    let out = on_failure(
        &dir.0,
        Some(ID_A),
        ("signal", "killed", "KILL"),
        &["--to", parts_sink.to_str().unwrap(), "--max-body", "4KiB"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let parts = std::fs::read_to_string(&parts_sink).expect("the parts file");
    let lines = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON"))
            .collect()
    };
    let is_head = |v: &Value| v["kind"] == "shipment";
    let (whole, split) = (lines(&body), lines(&parts));
    let heads = split.iter().filter(|v| is_head(v)).count();
    assert!(heads > 1, "expected several parts, got {heads}");
    let records = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .filter(|v| !is_head(v))
            .map(|v| v["seq"].clone())
            .collect()
    };
    assert_eq!(records(&whole), records(&split));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every unit file in systemd/ (and the drop-in, on a stand-in unit) passes
/// `systemd-analyze verify` without a warning. The units name
/// /usr/local/bin/blackbox, which verify requires to exist: copies with the
/// built binary's path are verified instead.
#[test]
fn systemd_units_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!(
            "skipped: systemd-analyze is not installed (apt-get install systemd; .ci/run does)"
        );
        return;
    };
    assert!(version.status.success());
    let src = repo().join("systemd");
    let tmp = TempDir::new("deploy-units");
    let bin = env!("CARGO_BIN_EXE_blackbox");
    let mut units = Vec::new();
    let mut drop_ins = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".service") || name.ends_with(".timer") || name.ends_with(".path") {
            units.push(name);
        } else if path.is_dir() {
            for d in std::fs::read_dir(&path).unwrap() {
                drop_ins.push(d.unwrap().path());
            }
        }
    }
    assert!(units.len() >= 3, "units in systemd/: {units:?}");
    assert!(!drop_ins.is_empty(), "no drop-in in systemd/drop-in/");
    for name in &units {
        let text = std::fs::read_to_string(src.join(name)).unwrap();
        assert!(text.contains("/usr/local/bin/blackbox"), "{name}");
        std::fs::write(tmp.path(name), text.replace("/usr/local/bin/blackbox", bin)).unwrap();
    }
    // The drop-in, on an existing unit that knows nothing of blackbox.
    std::fs::write(
        tmp.path("existing.service"),
        "[Unit]\nDescription=an existing service\n[Service]\nExecStart=/bin/sleep 1\n",
    )
    .unwrap();
    let d = tmp.path("existing.service.d");
    std::fs::create_dir(&d).unwrap();
    for drop_in in &drop_ins {
        std::fs::copy(drop_in, d.join(drop_in.file_name().unwrap())).unwrap();
    }
    units.push("existing.service".into());

    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| tmp.path(u)))
        // Units named by OnFailure= are looked up here first (the trailing
        // colon keeps the built-in search path after it).
        .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.0.display()))
        .output()
        .expect("run systemd-analyze verify");
    let err = stderr(&out);
    assert!(
        out.status.success() && err.trim().is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {units:?}: {:?}\n{err}{}",
        out.status,
        stdout(&out)
    );
    // Verify really read the drop-in and the template: a bad key in either
    // is reported.
    std::fs::write(d.join("zz-bad.conf"), "[Service]\nNoSuchKey=1\n").unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(tmp.path("existing.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.0.display()))
        .output()
        .unwrap();
    assert!(stderr(&out).contains("NoSuchKey"), "{}", stderr(&out));
}

/// The Kubernetes manifests validate against the Kubernetes schema in
/// strict mode, offline (scripts/check-kubernetes.sh; it prints "skipped:
/// why" where it cannot install its validator).
#[test]
fn kubernetes_manifests_validate() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/check-kubernetes.sh"))
        .output()
        .expect("run scripts/check-kubernetes.sh");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "check-kubernetes.sh failed:\n{text}");
    if text.contains("skipped:") {
        println!("{text}");
        return;
    }
    assert!(
        text.contains("kubernetes: ") && text.contains(" valid"),
        "{text}"
    );
}

/// Outside systemd (none of its variables), `blackbox on-failure --dir
/// DIR` is the quick "how did my last run die" report the README shows:
/// the newest dead ring (a segfault after an older SIGKILL; a live writer
/// beside them is not taken), its cause and its last records.
#[test]
fn on_failure_dir_reports_the_last_run_outside_systemd() {
    let dir = TempDir::new("deploy-last-run");
    let run_demo = |die: &str| {
        let o = clean(blackbox())
            .args(["demo", "--dir", dir.0.to_str().unwrap(), "--records", "5"])
            .args(["--capacity", "64KiB", "--die", die])
            .output()
            .unwrap();
        assert!(!o.status.success(), "demo --die {die}: {}", stderr(&o));
    };
    run_demo("kill");
    run_demo("segv");
    let mut live = clean(blackbox())
        .args([
            "demo",
            "--dir",
            dir.0.to_str().unwrap(),
            "--records",
            "100000000",
        ])
        .args(["--capacity", "64KiB", "--rate", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The live demo's ring exists once it says where it records.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(live.stderr.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("recording to"), "{line}");

    let o = clean(blackbox())
        .args(["on-failure", "--dir", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    live.kill().unwrap();
    live.wait().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("state      crashed: SIGSEGV at 0x10 in thread 'main'"),
        "the newest dead ring, the segfault: {out}"
    );
    assert!(out.contains("demo: about to die how=\"segv\""), "{out}");
    assert!(out.contains("newest ring no live writer holds"), "{out}");
}
