//! The cause of death in words and as the `cause` JSON object.

use recorder::layout::{DEATH_PANIC, DEATH_SIGNAL};
use serde_json::{json, Value};

use crate::render::rfc3339;
use crate::{Header, State};

/// Memory at or above this fraction of the cgroup limit at the last sample
/// makes a silent death a likely OOM kill.
const OOM_FRACTION: f64 = 0.9;

/// `SIGSEGV`, `SIGKILL`, ... or `signal N`.
pub fn signal_name(signo: u32) -> String {
    let name = match signo {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return format!("signal {signo}"),
    };
    name.to_string()
}

/// The symbolic name of a `si_code` for a signal, where it has one.
pub fn si_code_name(signo: u32, code: i32) -> Option<&'static str> {
    Some(match (signo, code) {
        (_, 0) => "SI_USER",
        (_, -6) => "SI_TKILL",
        (_, -1) => "SI_QUEUE",
        (_, 128) => "SI_KERNEL",
        (11, 1) => "SEGV_MAPERR",
        (11, 2) => "SEGV_ACCERR",
        (7, 1) => "BUS_ADRALN",
        (7, 2) => "BUS_ADRERR",
        (7, 3) => "BUS_OBJERR",
        (8, 1) => "FPE_INTDIV",
        (8, 2) => "FPE_INTOVF",
        (4, 1) => "ILL_ILLOPC",
        (4, 2) => "ILL_ILLOPN",
        _ => return None,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

fn likely_oom(header: &Header) -> bool {
    header
        .memory
        .and_then(|m| m.cgroup_fraction())
        .is_some_and(|f| f >= OOM_FRACTION)
}

/// One sentence: how the writer ended (or that it runs).
pub fn text(state: State, header: &Header) -> String {
    match (state, &header.death) {
        (State::Running, _) => "running (a live process holds the ring's lock)".into(),
        (State::Exited, _) => "exited (closed cleanly)".into(),
        (State::Crashed, Some(d)) if d.kind == DEATH_PANIC => {
            let mut s = format!("panicked at {}: {}", d.location, d.message);
            if !d.thread_name.is_empty() {
                s.push_str(&format!(" (thread '{}')", d.thread_name));
            }
            if d.signal != 0 {
                s.push_str(&format!(", then {}", signal_name(d.signal)));
            }
            s
        }
        (State::Crashed, Some(d)) if d.kind == DEATH_SIGNAL => {
            let mut s = format!("crashed: {}", signal_name(d.signal));
            if let Some(addr) = d.fault_addr {
                s.push_str(&format!(" at {addr:#x}"));
            }
            s.push_str(&format!(" in thread '{}'", d.thread_name));
            if d.likely_stack_overflow() {
                s.push_str(": likely a stack overflow");
            }
            s
        }
        (State::Crashed, _) => "crashed (the writer recorded a crash, without details)".into(),
        (State::Killed, _) => {
            let mut s = String::from(
                "killed without a word (SIGKILL, an OOM kill, or an exit that skipped closing the ring)",
            );
            if let Some(m) = header.memory {
                match m.cgroup_fraction() {
                    Some(f) => {
                        s.push_str(&format!(
                            "; memory at {:.0}% of its {} cgroup limit",
                            f * 100.0,
                            mib(m.cgroup_limit)
                        ));
                        if f >= OOM_FRACTION {
                            s.push_str(": likely an OOM kill");
                        }
                    }
                    None if m.rss_bytes > 0 => {
                        s.push_str(&format!("; resident memory {}", mib(m.rss_bytes)));
                    }
                    None => {}
                }
            }
            s
        }
    }
}

/// The `cause` object of `info --json` (null while running or after a clean exit).
pub fn json(state: State, header: &Header) -> Value {
    let message = text(state, header);
    match (state, &header.death) {
        (State::Running | State::Exited, _) => Value::Null,
        (State::Crashed, Some(d)) if d.kind == DEATH_PANIC => json!({
            "kind": "panic",
            "message": d.message,
            "location": d.location,
            "thread": d.thread_name,
            "thread_id": d.thread_id,
            "time": (d.unix_ns != 0).then(|| rfc3339(d.unix_ns)),
            "signal": (d.signal != 0).then(|| signal_name(d.signal)),
            "text": message,
        }),
        (State::Crashed, Some(d)) if d.kind == DEATH_SIGNAL => json!({
            "kind": "signal",
            "signal": signal_name(d.signal),
            "signo": d.signal,
            "code": si_code_name(d.signal, d.si_code),
            "si_code": d.si_code,
            "fault_address": d.fault_addr.map(|a| format!("{a:#x}")),
            "thread": d.thread_name,
            "thread_id": d.thread_id,
            "time": (d.unix_ns != 0).then(|| rfc3339(d.unix_ns)),
            "likely_stack_overflow": d.likely_stack_overflow(),
            "message": message,
        }),
        (State::Crashed, _) => json!({ "kind": "crashed", "message": message }),
        (State::Killed, _) => json!({
            "kind": "killed",
            "message": message,
            "likely_oom": likely_oom(header),
            "memory": header.memory.map(|m| json!({
                "sampled": rfc3339(m.sampled_unix_ns),
                "rss_bytes": m.rss_bytes,
                "cgroup_usage_bytes": (m.cgroup_usage != 0).then_some(m.cgroup_usage),
                "cgroup_limit_bytes": (m.cgroup_limit != 0).then_some(m.cgroup_limit),
                "cgroup_percent": m.cgroup_fraction().map(|f| (f * 1000.0).round() / 10.0),
            })),
        }),
    }
}
