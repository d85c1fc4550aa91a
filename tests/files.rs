//! The ring file as a file: its mode (0600, or 0640 for a collector's
//! group), creating it where that cannot work (a read-only or full file
//! system) and the optional periodic `msync` for disk-backed rings.
//!
//! `hostile.rs` checks a ring larger than its tmpfs; here the tmpfs is full
//! of other files, or read-only. Those tests need root and `unshare
//! --mount`; the group test needs `setpriv`, the msync test `strace`.
//! Where the machine lacks them the test prints "skipped: why" and passes.

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use blackbox_recorder::{CreateErrorKind, Field, Level, Recorder};
use common::{stderr, stdout, TempDir};

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Lists the directory: what creating a ring left behind.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether the effective user is root (the second `Uid:` of
/// /proc/self/status).
fn root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// A new ring is 0600 by default and 0640 with `.mode(0o640)`, exactly,
/// even under a umask of 077; modes that let others write, or carry
/// execute or special bits, are refused with a clear error and leave no
/// file behind.
#[test]
fn ring_mode_is_0600_or_exactly_as_asked() {
    let dir = TempDir::new("files-mode");
    // The umask is per process; no other test of this binary creates files
    // with a mode it could change (the others use 0600, or run children).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let default = Recorder::create(dir.path("default.ring"), 64 << 10);
    let group = Recorder::builder(dir.path("group.ring"))
        .capacity(64 << 10)
        .mode(0o640)
        .create();
    nix::sys::stat::umask(old);
    let (default, group) = (default.expect("create"), group.expect("create"));
    assert_eq!(mode_of(default.path()), 0o600);
    assert_eq!(mode_of(group.path()), 0o640);
    drop((default, group));

    for bad in [0o666, 0o660, 0o602, 0o700, 0o4600, 0o1644] {
        let path = dir.path("bad.ring");
        let err = Recorder::builder(&path)
            .capacity(64 << 10)
            .mode(bad)
            .create()
            .err()
            .unwrap_or_else(|| panic!("mode {bad:#o} was accepted"));
        assert!(
            matches!(err.kind(), CreateErrorKind::BadMode(m) if *m == bad),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("{bad:#o}")) && text.contains("bad.ring"),
            "{text}"
        );
        assert!(!path.exists(), "a refused ring left a file");
    }
    assert_eq!(names_in(&dir.0), ["default.ring", "group.ring"]);
}

/// The point of 0640: a collector that runs as another user in the ring's
/// group can read it, and one that is not in a 0600 ring's group cannot
/// (and says why). The ring takes the group of its directory, which has
/// the set-group-ID bit.
#[test]
fn a_collector_in_the_rings_group_reads_a_0640_ring() {
    if !root() {
        println!("skipped: not root (running the reader as another user needs root)");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("skipped: no setpriv (util-linux) to run the reader as another user");
        return;
    }
    let (collector_uid, group) = (4343u32, 4242u32);
    let dir = TempDir::new("files-group");
    std::os::unix::fs::chown(&dir.0, None, Some(group)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let shared = Recorder::builder(dir.path("shared.ring"))
        .capacity(64 << 10)
        .mode(0o640)
        .create()
        .expect("create");
    let private = Recorder::create(dir.path("private.ring"), 64 << 10).expect("create");
    for rec in [&shared, &private] {
        rec.log(Level::Info, "files", "hello", &[Field::new("n", 1u64)])
            .unwrap();
        let meta = std::fs::metadata(rec.path()).unwrap();
        assert_eq!(
            meta.gid(),
            group,
            "the ring should take its directory's group"
        );
    }
    let as_collector = |ring: &Path| {
        Command::new("setpriv")
            .arg(format!("--reuid={collector_uid}"))
            .arg(format!("--regid={group}"))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_blackbox"))
            .args([OsStr::new("info"), ring.as_os_str(), OsStr::new("--json")])
            .output()
            .expect("run setpriv")
    };
    let o = as_collector(shared.path());
    assert!(
        o.status.success(),
        "the collector's group cannot read a 0640 ring: {}",
        stderr(&o)
    );
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(info["records"], 1, "{info}");

    let o = as_collector(private.path());
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("private.ring") && err.contains("ermission denied"),
        "{err}"
    );
}

/// Runs `sh -c SCRIPT sh ARGS...` in a private mount namespace (`unshare
/// --mount`), where the script may mount file systems that vanish with it.
/// `Err(why)` where this machine cannot.
fn in_mount_namespace(script: &str, args: &[&OsStr]) -> Result<Output, String> {
    if !root() {
        return Err("not root (mounting a tmpfs needs root)".into());
    }
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", script, "sh"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no unshare ({e})"))?;
    match out.status.code() {
        Some(97) => Err(format!(
            "cannot mount a tmpfs here ({})",
            stderr(&out).trim()
        )),
        _ => Ok(out),
    }
}

/// Creating a ring where the file system is read-only, or full of other
/// files, fails at once with one clear line and exit status 2, and leaves
/// no file behind; the same ring fits once there is room.
#[test]
fn read_only_or_full_file_systems_fail_at_create_with_a_clear_error() {
    let dir = TempDir::new("files-fs");
    let mnt = dir.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // $1 mount point, $2 blackbox. Prints each attempt's exit status and
    // what it left ("ro: rc=2 left=[]"); blackbox's stderr passes through.
    // 97: no tmpfs could be mounted.
    let script = r#"set -u
mnt=$1 bbx=$2
try() { "$bbx" demo --ring "$mnt/$2.ring" --capacity 256KiB --records 10 >/dev/null
        echo "$1: rc=$? left=[$(ls -A "$mnt" | tr '\n' ' ')]"; }
mount -t tmpfs -o size=1m none "$mnt" || exit 97
mount -o remount,ro "$mnt" || exit 97
try ro x
mount -o remount,rw "$mnt"
head -c 900K /dev/zero > "$mnt/filler"
try full x
rm "$mnt/filler"
try room x"#;
    let o = match in_mount_namespace(script, &[mnt.as_os_str(), bbx()]) {
        Ok(o) => o,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "script failed: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "ro: rc=2 left=[]",
            "full: rc=2 left=[filler ]",
            "room: rc=0 left=[x.ring ]"
        ],
        "stderr: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("blackbox:")).collect();
    assert_eq!(errors.len(), 2, "one line per failure: {err}");
    for (line, needle) in errors.iter().zip(["read-only", "cannot reserve"]) {
        assert!(
            line.contains("x.ring") && line.contains(needle),
            "expected a line naming the ring and saying {needle:?}: {line}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn bbx() -> &'static OsStr {
    OsStr::new(env!("CARGO_BIN_EXE_blackbox"))
}

const MSYNC_WRITER_ENV: &str = "BLACKBOX_MSYNC_WRITER";

/// The writer of the msync test, when this binary runs as it (see
/// [`periodic_msync_runs_on_the_heartbeat_thread`]); a no-op otherwise.
/// The value of `BLACKBOX_MSYNC_WRITER` is `PATH|PERIOD_MS` (0: no msync).
#[test]
fn msync_writer_process() {
    let Ok(spec) = std::env::var(MSYNC_WRITER_ENV) else {
        return;
    };
    let (path, ms) = spec.split_once('|').expect("PATH|PERIOD_MS");
    let ms: u64 = ms.parse().unwrap();
    let rec = Recorder::builder(path)
        .capacity(1 << 20)
        .heartbeat(Some(Duration::from_millis(10)))
        .msync((ms > 0).then(|| Duration::from_millis(ms)))
        .create()
        .expect("create ring");
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("appender".into())
            .spawn_scoped(s, || {
                println!("appender {}", nix::unistd::gettid());
                for n in 0..20_000u64 {
                    rec.log(Level::Info, "files", "msync", &[Field::new("n", n)])
                        .unwrap();
                    if n % 1000 == 0 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
            .unwrap();
    });
    // Idle, so the write-back catches up with every record.
    std::thread::sleep(Duration::from_millis(5 * ms.max(10)));
}

/// `.msync(Some(period))` writes the whole mapping back (`msync(MS_SYNC)`)
/// again and again, from the heartbeat thread and never from an appending
/// thread; without it the recorder makes no msync call at all. Seen with
/// strace on a disk-backed ring (under `CARGO_TARGET_TMPDIR`).
#[test]
fn periodic_msync_runs_on_the_heartbeat_thread() {
    if Command::new("strace").arg("-V").output().is_err() {
        // CI installs strace (.ci/run): there, its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is missing under CI (scripts/apt-install.sh strace)"
        );
        println!("skipped: no strace to watch the msync calls");
        return;
    }
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("files-msync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |period_ms: u64| {
        let log = dir.join(format!("strace-{period_ms}.log"));
        let ring = dir.join(format!("msync-{period_ms}.ring"));
        let o = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=msync", "-o"])
            .arg(&log)
            .arg(std::env::current_exe().unwrap())
            .args(["msync_writer_process", "--exact", "--nocapture", "--quiet"])
            .env(MSYNC_WRITER_ENV, format!("{}|{period_ms}", ring.display()))
            .output()
            .expect("run strace");
        assert!(o.status.success(), "writer: {}{}", stdout(&o), stderr(&o));
        let appender = stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix("appender "))
            .map(|tid| tid.trim().to_string())
            .expect("the writer names its appending thread");
        let trace = std::fs::read_to_string(&log).unwrap();
        // "TID msync(ADDR, LEN, MS_SYNC) = 0"
        let calls: Vec<(String, String)> = trace
            .lines()
            .filter(|l| l.contains("msync("))
            .map(|l| {
                let (tid, call) = l.split_once(' ').unwrap();
                (tid.to_string(), call.trim().to_string())
            })
            .collect();
        let records = blackbox_reader::Ring::open(&ring)
            .unwrap()
            .snapshot()
            .unwrap()
            .records
            .len();
        (appender, calls, records)
    };

    let (_, calls, records) = run(0);
    assert!(calls.is_empty(), "msync without the option: {calls:?}");
    assert!(records > 0);

    let (appender, calls, records) = run(20);
    assert!(records > 0);
    // The whole file: header, chunk table (128 chunks of 8 KiB), the
    // postmortem area (default stack copy), data.
    let whole = format!(
        ", {}, MS_SYNC) = 0",
        blackbox_recorder::layout::data_offset(128)
            + blackbox_recorder::layout::pm_len(blackbox_recorder::layout::DEFAULT_STACK_DUMP)
            + (1 << 20)
    );
    assert!(
        calls.len() >= 2,
        "expected repeated msync calls of the ring: {calls:?}"
    );
    for (tid, call) in &calls {
        assert!(
            call.ends_with(&whole),
            "not an msync of the whole ring: {call}"
        );
        assert_ne!(tid, &appender, "msync on the appending thread: {call}");
    }
    eprintln!(
        "msync: {} calls of the whole 1 MiB ring, none on the appender",
        calls.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A ring made in a directory is named after its program, start time and
/// pid, and never replaces a file: a restarted app leaves its dead
/// predecessor's ring in place for the collector.
#[test]
fn rings_in_a_directory_are_named_per_run_and_never_replaced() {
    let dir = TempDir::new("files-naming");
    let first = Recorder::builder_in_dir(&dir.0)
        .program("my app/1")
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    first.log(Level::Info, "t", "first run", &[]).unwrap();
    let first_path = first.path().to_path_buf();
    // Dies without a close: the lock goes, the file stays.
    std::mem::forget(first);
    let second = Recorder::builder_in_dir(&dir.0)
        .program("my app/1")
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    assert_ne!(first_path, second.path());
    for path in [first_path.as_path(), second.path()] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let stem = name.strip_suffix(".ring").unwrap();
        // Both runs may start within one millisecond: the second then
        // takes the suffix "-1".
        let first_stem = first_path.file_stem().unwrap().to_str().unwrap();
        let stem = if stem == format!("{first_stem}-1") {
            first_stem
        } else {
            stem
        };
        let parts: Vec<&str> = stem.rsplitn(3, '-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!(parts[0], std::process::id().to_string(), "{name}");
        let ms: u64 = parts[1].parse().unwrap();
        let now_ms = blackbox_recorder::realtime_ns() / 1_000_000;
        assert!(now_ms - ms < 60_000, "{name}");
        assert_eq!(parts[2], "my_app_1", "{name}");
    }
    let ring = blackbox_reader::Ring::open(&first_path).unwrap();
    let snap = ring.snapshot().unwrap();
    assert_eq!(snap.records.len(), 1, "the first run's ring is intact");
    assert_eq!(ring.header().program, "my app/1");
    drop(second);
    assert_eq!(names_in(&dir.0).len(), 2, "{:?}", names_in(&dir.0));
}

/// BLACKBOX_DIR moves a service's rings without a code change; the demo
/// follows it when given neither --ring nor --dir.
#[test]
fn blackbox_dir_names_where_rings_go() {
    let dir = TempDir::new("files-env-dir");
    let out = Command::new(bbx())
        .args(["demo", "--records", "5", "--capacity", "64KiB"])
        .env("BLACKBOX_DIR", &dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names = names_in(&dir.0);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("blackbox-demo-") && names[0].ends_with(".ring"));
    assert!(
        stderr(&out).contains(&format!("recording to {}", dir.path(&names[0]).display())),
        "{}",
        stderr(&out)
    );
    let out = Command::new(bbx())
        .args(["demo", "--records", "5"])
        .env_remove("BLACKBOX_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--ring PATH or --dir DIR"),
        "{}",
        stderr(&out)
    );
}

/// A missing rings' directory is created, with its missing parents, each
/// owner-only (`0o700`) whatever the umask: a real writer process (the
/// demo, under `umask 277`, which would leave `0o500`) records into
/// `DIR/deep/er`. A `0o640` ring's directory gets `0o750`, so its group's
/// collector can reach it.
#[test]
fn a_missing_directory_is_created_owner_only() {
    let dir = TempDir::new("files-mkdir");
    let deep = dir.path("deep");
    let er = deep.join("er");
    let o = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 277 && exec "$0" demo --dir "$1" --records 3 --capacity 64KiB"#)
        .arg(bbx())
        .arg(&er)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(mode_of(&deep), 0o700, "created parent");
    assert_eq!(mode_of(&er), 0o700, "created rings' directory");
    let names = names_in(&er);
    assert_eq!(names.len(), 1, "{names:?}");
    let ring = blackbox_reader::Ring::open(er.join(&names[0])).unwrap();
    assert_eq!(
        ring.snapshot().unwrap().records.len(),
        4,
        "3 records and the epilogue"
    );

    let shared = dir.path("shared");
    let rec = Recorder::builder(shared.join("app.ring"))
        .capacity(64 << 10)
        .heartbeat(None)
        .mode(0o640)
        .create()
        .unwrap();
    assert_eq!(mode_of(&shared), 0o750, "a 0o640 ring's directory");
    assert_eq!(mode_of(rec.path()), 0o640);
    // An existing directory is used as it is.
    let open = dir.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    Recorder::builder_in_dir(&open)
        .capacity(64 << 10)
        .heartbeat(None)
        .create()
        .unwrap();
    assert_eq!(
        mode_of(&open),
        0o755,
        "an existing directory's mode is left alone"
    );
}

/// Where the directory cannot be made (a dangling symlink in its place, a
/// file in its path), creating fails with one sentence naming the ring,
/// also in `Debug` (what `?` in `main` prints), and nothing is created at
/// the symlink's target.
#[test]
fn a_directory_that_cannot_be_made_is_a_readable_error() {
    let dir = TempDir::new("files-mkdir-fail");
    let target = dir.path("target");
    let link = dir.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let file = dir.path("file");
    std::fs::write(&file, b"not a directory").unwrap();
    for (at, needle) in [
        (link.join("rings"), "No such file"),
        (link.clone(), "No such file"),
        (file.join("rings"), "Not a directory"),
    ] {
        let err = Recorder::builder_in_dir(&at)
            .capacity(64 << 10)
            .heartbeat(None)
            .create()
            .err()
            .unwrap_or_else(|| panic!("{}: expected an error", at.display()));
        let (shown, debug) = (err.to_string(), format!("{err:?}"));
        assert_eq!(debug, shown, "Debug is the Display text");
        assert!(
            shown.starts_with(&format!("cannot create ring {}", at.display()))
                && shown.contains("create the directory")
                && shown.contains(needle),
            "{shown}"
        );
        assert!(
            format!("{err:#?}").contains("CreateError"),
            "{{:#?}} shows the fields"
        );
    }
    assert!(!target.exists(), "nothing created through the symlink");

    // The other kinds read the same in Debug.
    let err = Recorder::builder(dir.path("x.ring"))
        .capacity(1000)
        .create()
        .err()
        .unwrap();
    assert!(matches!(err.kind(), CreateErrorKind::BadCapacity(1000)));
    assert_eq!(format!("{err:?}"), err.to_string());
    assert!(format!("{err:?}").contains("not a power of two"));
}

/// `blackbox demo --dir DIR ARGS...` to its end; the ring it made.
fn demo_in_dir(dir: &Path, args: &[&str]) -> std::path::PathBuf {
    let o = Command::new(bbx())
        .args(["demo", "--dir"])
        .arg(dir)
        .args(["--records", "2", "--capacity", "64KiB"])
        .args(args)
        .output()
        .unwrap();
    ring_named_in(&stderr(&o)).unwrap_or_else(|| panic!("no ring named: {}", stderr(&o)))
}

/// The path in the demo's "recording to PATH" line.
fn ring_named_in(err: &str) -> Option<std::path::PathBuf> {
    err.lines()
        .find_map(|l| l.strip_prefix("blackbox demo: recording to "))
        .map(std::path::PathBuf::from)
}

/// Retention at create: each new ring of a program in a directory of
/// rings removes that program's dead rings beyond the newest K (default
/// 3), never a live one (a real writer process, the oldest of all), never
/// another program's ring, a file whose header names another program, a
/// file of another user, or a symlink (nor its target). Dead writers are
/// real processes too (SIGKILLed, or exited).
#[test]
fn retention_keeps_the_newest_dead_rings_of_this_program() {
    let tmp = TempDir::new("files-retention");
    let dir = tmp.path("rings");
    let outside = tmp.path("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let closed = |b: blackbox_recorder::RecorderBuilder| {
        let rec = b.capacity(64 << 10).heartbeat(None).create().unwrap();
        let path = rec.path().to_path_buf();
        rec.close();
        path
    };
    // Others' files, all older than every demo run.
    let other = closed(Recorder::builder_in_dir(&dir).program("other"));
    let impostor =
        closed(Recorder::builder(dir.join("blackbox-demo-1-1.ring")).program("impostor"));
    let foreign =
        closed(Recorder::builder(dir.join("blackbox-demo-2-2.ring")).program("blackbox-demo"));
    let foreign_owned = root();
    if foreign_owned {
        std::os::unix::fs::chown(&foreign, Some(4242), Some(4242)).unwrap();
    } else {
        println!("skipped: the file of another user (needs root to chown)");
    }
    let target =
        closed(Recorder::builder(outside.join("blackbox-demo-3-3.ring")).program("blackbox-demo"));
    let link = dir.join("blackbox-demo-4-4.ring");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    // A live writer, older than every dead demo ring.
    let mut live = Command::new(bbx())
        .args(["demo", "--dir"])
        .arg(&dir)
        .args([
            "--records",
            "100000000",
            "--rate",
            "2",
            "--capacity",
            "64KiB",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(live.stderr.as_mut().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let live_ring = ring_named_in(&first_line).expect("the live demo names its ring");

    let runs: Vec<_> = (0..5)
        .map(|_| demo_in_dir(&dir, &["--die", "kill"]))
        .collect();
    let others = [&other, &impostor, &foreign, &link, &live_ring];
    let present = |paths: &[&std::path::PathBuf]| {
        let mut names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // Run 5's create removed run 1: runs 2..=4 were the newest three dead.
    let want: Vec<_> = others.iter().copied().chain(&runs[1..]).collect();
    assert_eq!(names_in(&dir), present(&want), "after five killed runs");

    let sixth = demo_in_dir(&dir, &["--keep-dead-rings", "1"]);
    let want: Vec<_> = others.iter().copied().chain([&runs[4], &sixth]).collect();
    assert_eq!(names_in(&dir), present(&want), "keep 1");

    let seventh = demo_in_dir(&dir, &["--keep-dead-rings", "all"]);
    let want: Vec<_> = others
        .iter()
        .copied()
        .chain([&runs[4], &sixth, &seventh])
        .collect();
    assert_eq!(names_in(&dir), present(&want), "keep all");

    // The live writer was never touched: still running, still locked.
    assert!(live.try_wait().unwrap().is_none(), "the live writer runs");
    assert!(blackbox_reader::Ring::open(&live_ring)
        .unwrap()
        .is_locked()
        .unwrap());
    live.kill().unwrap();
    live.wait().unwrap();

    // Once dead, it is a dead ring like the others: keep 0 removes every
    // dead ring of the program but the new one, and nothing else.
    let eighth = demo_in_dir(&dir, &["--keep-dead-rings", "0"]);
    let want = [&other, &impostor, &foreign, &link, &eighth];
    assert_eq!(
        names_in(&dir),
        present(&want),
        "keep 0 after the live one died"
    );
    assert!(target.exists(), "a symlink's target is never touched");
    if foreign_owned {
        assert_eq!(std::fs::metadata(&foreign).unwrap().uid(), 4242);
    }
}

/// `BLACKBOX_KEEP` sets the retention of a ring named by
/// `builder_from_env` (deployment configuration, like `BLACKBOX_DIR`):
/// `1` keeps one dead ring of the program, `all` every one.
#[test]
fn blackbox_keep_sets_retention_from_the_environment() {
    let dir = TempDir::new("files-env-keep");
    let demo = |keep: &str| {
        let o = Command::new(bbx())
            .args(["demo", "--records", "2", "--capacity", "64KiB"])
            .env("BLACKBOX_DIR", &dir.0)
            .env("BLACKBOX_KEEP", keep)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    for _ in 0..4 {
        demo("all");
    }
    assert_eq!(names_in(&dir.0).len(), 4, "all: {:?}", names_in(&dir.0));
    demo("1");
    assert_eq!(names_in(&dir.0).len(), 2, "1: {:?}", names_in(&dir.0));
}

/// Past a chunk's last record lie the bytes of the claim before, and a
/// payload word there can carry the current claim's tag. Lap 0 fills every
/// chunk with records whose payload words are exactly the COMMIT word a
/// 24-byte record of the chunk's next claim would have; lap 1 writes one
/// short record into chunk 0, which ends right where such a word lies. The
/// writer clears the word after each record, so the reader finds the
/// chunk's end there: nothing stale is read as a (corrupt) record.
#[test]
fn stale_words_with_the_claims_tag_past_the_last_record_are_not_records() {
    use blackbox_recorder::layout::commit_word;
    const CHUNKS: u64 = 16;
    const PER_CHUNK: u64 = 15; // (1024 - 64) / 64
    let dir = TempDir::new("stale-tag");
    let path = dir.path("stale.ring");
    let rec = Recorder::builder(&path)
        .capacity(CHUNKS * 1024)
        .chunk_size(1024)
        .heartbeat(None)
        .create()
        .expect("create");
    for k in 0..CHUNKS * PER_CHUNK {
        // Record k lands in chunk k / 15 (one writer, claims in order),
        // whose next claim has ticket chunk + CHUNKS.
        let word = commit_word(k / PER_CHUNK + CHUNKS, 24).to_le_bytes();
        let payload: Vec<u8> = word.iter().copied().cycle().take(40).collect();
        rec.append(&payload).expect("append");
    }
    assert_eq!(rec.tickets(), CHUNKS, "lap 0 filled every chunk once");
    // Stride 32: it ends at chunk offset 96, where lap 0's first record has
    // a payload word (record offset 32).
    rec.append(&[7u8; 8]).expect("append");
    assert_eq!(rec.chunk_of_this_thread().map(|t| t % CHUNKS), Some(0));
    drop(rec);
    let ring = blackbox_reader::Ring::open(&path).expect("open");
    let snap = ring.snapshot().expect("snapshot");
    assert_eq!(snap.totals.corrupt, 0, "a stale word read as a record");
    assert_eq!(
        snap.records.last().map(|r| r.seq),
        Some(CHUNKS * PER_CHUNK),
        "the short record is the newest"
    );
}
