//! The memory cgroup `blackbox demo --die oom` puts itself in, made the way
//! the kernel and systemd allow:
//!
//! - cgroup v1: a child of the process's memory cgroup, limited, entered.
//! - cgroup v2, the root cgroup: a child, limited, entered (the root is
//!   exempt from the no-internal-processes rule).
//! - cgroup v2 elsewhere, in a subtree delegated to us (systemd's
//!   `Delegate=yes`, or no systemd at all): as systemd's delegation
//!   documentation says, move into a leaf cgroup of our own first, enable
//!   `+memory` for the children, make a limited sibling of that leaf and
//!   move into it. A cgroup that still holds processes cannot hand the
//!   memory controller to its children, so this is the only order that
//!   works.
//!
//! Every step is checked; a refusal names the rule that stopped it and what
//! to run instead. What was made is undone on every path: right away when a
//! step fails, and after an OOM kill by a small helper process (this binary,
//! `demo --oom-cleanup`) that waits for the writer's death and then removes
//! the cgroups and gives the controller back.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run instead, where the demo cannot make its cgroup.
pub const INSTEAD: &str =
    "run it in a unit of its own with the controllers delegated: systemd-run -p Delegate=yes --wait blackbox demo --die oom --ring PATH";

/// The process's place in the cgroup hierarchies, from `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// cgroup v1 with the memory controller: the path in its hierarchy.
    V1Memory(String),
    /// cgroup v2 (the `0::` line): the path in the unified hierarchy.
    V2(String),
}

/// Where the process's memory controller is, v1 first (on hybrid hosts
/// the unified hierarchy has no memory controller).
pub fn membership(proc_self_cgroup: &str) -> Option<Membership> {
    let v1 = proc_self_cgroup.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    });
    v1.map(Membership::V1Memory).or_else(|| {
        proc_self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| Membership::V2(p.to_string()))
    })
}

/// Whether a whitespace-separated controller list (`cgroup.controllers`,
/// `cgroup.subtree_control`) names `memory`.
pub fn lists_memory(list: &str) -> bool {
    list.split_whitespace().any(|c| c == "memory")
}

/// One step the helper undoes, in the order they were done; the helper
/// undoes them last to first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A cgroup directory we made.
    Made(PathBuf),
    /// We wrote `+memory` to this cgroup's `cgroup.subtree_control`.
    Enabled(PathBuf),
    /// The cgroup the process started in (the first step).
    Home(PathBuf),
    /// We moved the process (or the helper) into this cgroup; undone by
    /// moving back to the cgroup of the step's previous `Entered` or `Home`.
    Entered(PathBuf),
    /// Another process of our delegated cgroup that we moved into our leaf
    /// with us (moved back with us).
    Moved(u32),
}

impl Step {
    /// The line the writer sends the helper.
    pub fn line(&self) -> String {
        match self {
            Step::Made(p) => format!("made {}\n", p.display()),
            Step::Enabled(p) => format!("enabled {}\n", p.display()),
            Step::Home(p) => format!("home {}\n", p.display()),
            Step::Entered(p) => format!("entered {}\n", p.display()),
            Step::Moved(pid) => format!("moved {pid}\n"),
        }
    }

    /// A line the helper received.
    pub fn parse(line: &str) -> Option<Step> {
        let (what, path) = line.trim_end_matches('\n').split_once(' ')?;
        if what == "moved" {
            return path.parse().ok().map(Step::Moved);
        }
        let path = PathBuf::from(path);
        // Only ever touch cgroup files.
        if !path.starts_with("/sys/fs/cgroup/") {
            return None;
        }
        match what {
            "made" => Some(Step::Made(path)),
            "enabled" => Some(Step::Enabled(path)),
            "home" => Some(Step::Home(path)),
            "entered" => Some(Step::Entered(path)),
            _ => None,
        }
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), std::io::Error> {
    std::fs::write(path, value)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The cgroup the demo made and entered, with its helper.
pub struct OomCgroup {
    /// The limited cgroup the process now runs in.
    pub path: PathBuf,
    setup: Setup,
}

impl OomCgroup {
    /// Undoes every step now, from this (living) process: its limit did
    /// not hold. Returns what could not be undone.
    pub fn undo(self) -> Vec<String> {
        self.setup.undo_alive()
    }
}

/// What has been done so far, and the helper that undoes it after a death.
struct Setup {
    steps: Vec<Step>,
    helper: Option<(Child, ChildStdin)>,
}

impl Setup {
    fn new(home: &Path) -> Result<Setup, String> {
        let mut setup = Setup {
            steps: Vec::new(),
            helper: Some(spawn_helper()?),
        };
        setup.did(Step::Home(home.to_path_buf()));
        Ok(setup)
    }

    fn helper_pid(&self) -> Option<u32> {
        self.helper.as_ref().map(|(c, _)| c.id())
    }

    fn did(&mut self, step: Step) {
        if let Some((_, stdin)) = self.helper.as_mut() {
            let _ = stdin.write_all(step.line().as_bytes());
            let _ = stdin.flush();
        }
        self.steps.push(step);
    }

    /// Undoes every step from this process (moving itself and the helper
    /// back), then lets the helper go with nothing left to do.
    fn undo_alive(mut self) -> Vec<String> {
        let mut movers = vec![std::process::id()];
        movers.extend(self.helper_pid());
        let failures = undo_collect(&self.steps, &movers);
        if let Some((mut child, mut stdin)) = self.helper.take() {
            let _ = stdin.write_all(b"cancel\n");
            drop(stdin);
            let _ = child.wait();
        }
        failures
    }

    /// Undoes what was done and returns `why` (with what could not be
    /// undone).
    fn fail(self, why: String) -> String {
        let failures = self.undo_alive();
        if failures.is_empty() {
            why
        } else {
            format!("{why}; and then: {}", failures.join("; "))
        }
    }
}

/// Moves the whole process into a new memory cgroup limited to `limit`
/// bytes (no swap), as the module docs say, or says why it cannot.
pub fn enter(limit: u64) -> Result<OomCgroup, String> {
    let table = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let pid = std::process::id();
    let name = format!("blackbox-demo-oom-{pid}");
    match membership(&table).ok_or("the process has no cgroup (no /proc/self/cgroup line)")? {
        Membership::V1Memory(rel) => {
            let home = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
            let mut setup = Setup::new(&home)?;
            let dir = home.join(&name);
            if let Err(e) = std::fs::create_dir(&dir) {
                return Err(setup.fail(format!(
                    "cannot create the memory cgroup {}: {e} (the v1 memory hierarchy is not writable here); {INSTEAD}",
                    dir.display()
                )));
            }
            setup.did(Step::Made(dir.clone()));
            if let Err(e) = limit_v1(&dir, limit) {
                return Err(setup.fail(e));
            }
            setup.did(Step::Entered(dir.clone()));
            if let Err(e) = write_file(&dir.join("cgroup.procs"), &pid.to_string()) {
                return Err(setup.fail(format!("cannot move into {}: {e}", dir.display())));
            }
            Ok(OomCgroup { path: dir, setup })
        }
        Membership::V2(rel) => enter_v2(&rel, &name, limit),
    }
}

fn limit_v1(dir: &Path, limit: u64) -> Result<(), String> {
    let file = dir.join("memory.limit_in_bytes");
    write_file(&file, &limit.to_string())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        write_file(&memsw, &limit.to_string())
            .map_err(|e| format!("cannot write {}: {e}", memsw.display()))?;
    }
    match read_u64(&file) {
        Some(set) if set <= limit => Ok(()),
        Some(set) => Err(format!("{} reads {set}, above {limit}", file.display())),
        None => Err(format!("{} did not take the limit", file.display())),
    }
}

fn enter_v2(rel: &str, name: &str, limit: u64) -> Result<OomCgroup, String> {
    let base = Path::new("/sys/fs/cgroup");
    if !base.join("cgroup.controllers").exists() {
        return Err(
            "no cgroup v2 hierarchy at /sys/fs/cgroup and no v1 memory controller: the kernel gives this process no memory cgroup".into(),
        );
    }
    let rel = rel.trim_start_matches('/');
    let home = base.join(rel);
    let controllers = std::fs::read_to_string(home.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cannot read {}: {e} (is the cgroup2 file system mounted at /sys/fs/cgroup in this mount namespace?)",
            home.join("cgroup.controllers").display()
        )
    })?;
    if !lists_memory(&controllers) {
        return Err(format!(
            "the memory controller is not delegated to the cgroup {} (its parent's cgroup.subtree_control lacks memory); {INSTEAD}",
            home.display()
        ));
    }
    // The root cgroup (which has no cgroup.events) is exempt from the
    // no-internal-processes rule; the root of a cgroup namespace is not.
    let at_root = !home.join("cgroup.events").exists();
    if !at_root && under_systemd() && !delegated(base, &home) {
        return Err(format!(
            "the cgroup {} is systemd's and not delegated to this process (systemd's rule: only a unit with Delegate=yes may make cgroups below its own); {INSTEAD}",
            home.display()
        ));
    }
    let pid = std::process::id();
    let mut setup = Setup::new(&home)?;
    if !at_root {
        // Our own leaf first: the cgroup we are in must hold no process
        // before it can give its children the memory controller.
        let leaf = home.join(format!("{name}-leaf"));
        if let Err(e) = std::fs::create_dir(&leaf) {
            return Err(setup.fail(format!("cannot create {}: {e}", leaf.display())));
        }
        setup.did(Step::Made(leaf.clone()));
        setup.did(Step::Entered(leaf.clone()));
        let movers: Vec<u32> = [Some(pid), setup.helper_pid()]
            .into_iter()
            .flatten()
            .collect();
        for &p in &movers {
            if let Err(e) = write_file(&leaf.join("cgroup.procs"), &p.to_string()) {
                return Err(setup.fail(format!(
                    "cannot move process {p} into {}: {e}",
                    leaf.display()
                )));
            }
        }
        // The other processes of the delegated cgroup (a test harness, the
        // shell that started us) come along into the leaf, as systemd's
        // delegation documentation has a unit's processes do; they stay
        // under the unit's limits and are moved back afterwards.
        let others: Vec<u32> = std::fs::read_to_string(home.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| !movers.contains(p))
            .collect();
        for p in others {
            setup.did(Step::Moved(p));
            match write_file(&leaf.join("cgroup.procs"), &p.to_string()) {
                // It exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    return Err(setup.fail(format!(
                        "cannot move process {p} of {} into {}: {e}",
                        home.display(),
                        leaf.display()
                    )))
                }
                Ok(()) => {}
            }
        }
    }
    let subtree = home.join("cgroup.subtree_control");
    let enabled = match std::fs::read_to_string(&subtree) {
        Ok(s) => lists_memory(&s),
        Err(e) => return Err(setup.fail(format!("cannot read {}: {e}", subtree.display()))),
    };
    if !enabled {
        if let Err(e) = write_file(&subtree, "+memory") {
            let why = if e.raw_os_error() == Some(libc::EBUSY) {
                let others = std::fs::read_to_string(home.join("cgroup.procs"))
                    .map(|s| s.lines().count())
                    .unwrap_or(0);
                format!(
                    "cannot write +memory to {}: {e}: cgroup v2's no-internal-processes rule (a cgroup that holds processes cannot give its children the memory controller, and {others} other processes are still in {}); {INSTEAD}",
                    subtree.display(),
                    home.display()
                )
            } else {
                format!(
                    "cannot write +memory to {}: {e}; {INSTEAD}",
                    subtree.display()
                )
            };
            return Err(setup.fail(why));
        }
        setup.did(Step::Enabled(home.clone()));
    }
    let dir = home.join(name);
    if let Err(e) = std::fs::create_dir(&dir) {
        return Err(setup.fail(format!("cannot create {}: {e}", dir.display())));
    }
    setup.did(Step::Made(dir.clone()));
    let max = dir.join("memory.max");
    if let Err(e) = write_file(&max, &limit.to_string()) {
        return Err(setup.fail(format!("cannot write {}: {e}", max.display())));
    }
    // Without swap accounting the file is absent: then there is no swap
    // to escape to either.
    let swap = dir.join("memory.swap.max");
    if let Err(e) = write_file(&swap, "0") {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(setup.fail(format!("cannot write {}: {e}", swap.display())));
        }
    }
    match read_u64(&max) {
        Some(set) if set <= limit => {}
        Some(set) => {
            return Err(setup.fail(format!("{} reads {set}, above {limit}", max.display())))
        }
        None => return Err(setup.fail(format!("{} did not take the limit", max.display()))),
    }
    setup.did(Step::Entered(dir.clone()));
    if let Err(e) = write_file(&dir.join("cgroup.procs"), &pid.to_string()) {
        return Err(setup.fail(format!("cannot move into {}: {e}", dir.display())));
    }
    Ok(OomCgroup { path: dir, setup })
}

/// systemd runs the machine (its documented test).
fn under_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// systemd marks a cgroup it delegated with the extended attribute
/// `trusted.delegate` (and `user.delegate`) set to `1`; everything below it
/// is delegated too.
fn delegated(base: &Path, dir: &Path) -> bool {
    dir.ancestors()
        .take_while(|d| d.starts_with(base) && *d != base)
        .any(|d| {
            ["trusted.delegate", "user.delegate"]
                .iter()
                .any(|name| xattr(d, name).is_some_and(|v| v == b"1"))
        })
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and live across the call;
    // the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

/// Starts the helper: this binary, `demo --oom-cleanup`, reading the steps
/// on its stdin.
fn spawn_helper() -> Result<(Child, ChildStdin), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut child = Command::new(exe)
        .args(["demo", "--oom-cleanup"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cgroup clean-up helper: {e}"))?;
    let stdin = child.stdin.take().ok_or("the helper has no stdin")?;
    Ok((child, stdin))
}

/// `demo --oom-cleanup`: reads steps until the writer's end of the pipe
/// closes (it was killed), then undoes them; `cancel` means the writer
/// undid them itself.
pub fn cleanup_helper() -> i32 {
    let mut steps = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "cancel" {
            return 0;
        }
        match Step::parse(&line) {
            Some(step) => steps.push(step),
            None => {
                eprintln!(
                    "blackbox demo: the clean-up helper got {line:?}; it undoes what it knows"
                );
                break;
            }
        }
    }
    let failures = undo_collect(&steps, &[std::process::id()]);
    for f in &failures {
        eprintln!("blackbox demo: {f}");
    }
    i32::from(!failures.is_empty())
}

/// Undoes `steps` last to first, moving `movers` back out of each cgroup
/// they entered; returns what failed.
fn undo_collect(steps: &[Step], movers: &[u32]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, step) in steps.iter().enumerate().rev() {
        match step {
            Step::Made(dir) => {
                // A killed writer's cgroup empties once the kernel has
                // reaped it: wait for that, with a generous deadline.
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match std::fs::remove_dir(dir) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e)
                            if Instant::now() < deadline
                                && e.raw_os_error() == Some(libc::EBUSY) =>
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            failures
                                .push(format!("cannot remove the cgroup {}: {e}", dir.display()));
                            break;
                        }
                    }
                }
            }
            Step::Enabled(dir) => {
                let file = dir.join("cgroup.subtree_control");
                if let Err(e) = write_file(&file, "-memory") {
                    failures.push(format!("cannot write -memory to {}: {e}", file.display()));
                }
            }
            Step::Entered(_) => {
                let back = steps[..i].iter().rev().find_map(|s| match s {
                    Step::Entered(p) | Step::Home(p) => Some(p),
                    _ => None,
                });
                // The processes that came along go back with the movers.
                let moved = steps[i + 1..]
                    .iter()
                    .take_while(|s| !matches!(s, Step::Entered(_)))
                    .filter_map(|s| match s {
                        Step::Moved(p) => Some(*p),
                        _ => None,
                    });
                if let Some(back) = back {
                    for p in movers.iter().copied().chain(moved) {
                        match write_file(&back.join("cgroup.procs"), &p.to_string()) {
                            // It exited meanwhile.
                            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                            Err(e) => failures.push(format!(
                                "cannot move process {p} back into {}: {e}",
                                back.display()
                            )),
                            Ok(()) => {}
                        }
                    }
                }
            }
            Step::Home(_) | Step::Moved(_) => {}
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_prefers_the_v1_memory_controller() {
        let hybrid = "12:memory:/user.slice/x\n5:cpu,cpuacct:/\n0::/user.slice/x\n";
        assert_eq!(
            membership(hybrid),
            Some(Membership::V1Memory("/user.slice/x".into()))
        );
        let pure = "0::/system.slice/app.service\n";
        assert_eq!(
            membership(pure),
            Some(Membership::V2("/system.slice/app.service".into()))
        );
        assert_eq!(membership("3:cpu:/\n"), None);
    }

    #[test]
    fn controller_lists() {
        assert!(lists_memory("cpuset cpu io memory pids\n"));
        assert!(!lists_memory("cpu io pids\n"));
        assert!(!lists_memory("memoryx\n"));
    }

    #[test]
    fn steps_round_trip_and_only_name_cgroups() {
        for step in [
            Step::Made("/sys/fs/cgroup/a/b".into()),
            Step::Enabled("/sys/fs/cgroup/a".into()),
            Step::Home("/sys/fs/cgroup/a".into()),
            Step::Entered("/sys/fs/cgroup/a/leaf".into()),
            Step::Moved(42),
        ] {
            assert_eq!(Step::parse(&step.line()), Some(step));
        }
        assert_eq!(Step::parse("made /home/user\n"), None);
        assert_eq!(Step::parse("rm /sys/fs/cgroup/a\n"), None);
    }

    #[test]
    fn undo_runs_last_to_first_and_reports_failures() {
        // Directories that are not there count as removed; a subtree_control
        // that cannot be written is reported.
        let gone = PathBuf::from("/sys/fs/cgroup/blackbox-no-such-cgroup-for-test");
        let steps = vec![Step::Enabled(gone.clone()), Step::Made(gone.join("x"))];
        let failures = undo_collect(&steps, &[]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("-memory"), "{failures:?}");
    }
}
