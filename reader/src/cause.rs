//! The cause of death: a type, in words, and as the `cause` JSON object.

use blackbox_recorder::layout::{DEATH_PANIC, DEATH_SIGNAL, KIND_EVENT};
use serde::Serialize;
use serde_json::Value;

use crate::event::{decode_event, FieldValue};
use crate::header::Header;
use crate::oom::Verdict;
use crate::ring::{Snapshot, State};
use crate::time::rfc3339;

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

fn likely_oom(header: &Header) -> bool {
    Verdict::of(header).is_some_and(|v| v.likely_oom)
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
            if let Some(v) = Verdict::of(header) {
                s.push_str("; ");
                s.push_str(&v.text());
            }
            s
        }
    }
}

/// The backtrace that belongs to the cause of death, if it has one: the
/// panic hook's crash event for the very panic the death area records
/// (same location, message and thread). A fatal signal's cause has none
/// (its handler records no backtrace), so an earlier panic that was caught
/// and survived never lends its backtrace to a later death.
pub fn backtrace(state: State, snap: &Snapshot) -> Option<String> {
    let death = snap.header.death.as_ref()?;
    if state != State::Crashed || death.kind != DEATH_PANIC {
        return None;
    }
    // The death area keeps a cut of the message, the event another: one
    // is a prefix of the other.
    let agree = |a: &str, b: &str| a.starts_with(b) || b.starts_with(a);
    let head = format!("panicked at {}: ", death.location);
    snap.records.iter().rev().find_map(|r| {
        if r.kind != KIND_EVENT {
            return None;
        }
        let e = decode_event(snap.payload(r)).ok()?;
        let message = e.message.strip_prefix(head.as_str())?;
        if e.target != "blackbox::crash" || !agree(message, &death.message) {
            return None;
        }
        let field = |want: &str| {
            e.fields.iter().find_map(|(name, value)| match value {
                FieldValue::Str(s) if name == want => Some(s.to_string()),
                _ => None,
            })
        };
        if !agree(&field("thread")?, &death.thread_name) {
            return None;
        }
        field("backtrace")
    })
}

/// How a writer died, as the ring records it: the `cause` object of
/// `info --json` (serialized with its `kind`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// A Rust panic, recorded by the panic hook.
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column`.
        location: String,
        /// The panicking thread's name.
        thread: String,
        /// Its Linux thread id.
        thread_id: u32,
        /// When (RFC 3339), if recorded.
        time: Option<String>,
        /// The signal that ended the process after the panic (an abort), if any.
        signal: Option<String>,
        /// One sentence.
        text: String,
    },
    /// A fatal signal, recorded by the signal handler.
    Signal {
        /// `SIGSEGV`, ...
        signal: String,
        /// Its number.
        signo: u32,
        /// The `si_code`'s name, where it has one.
        code: Option<&'static str>,
        /// The raw `si_code`.
        si_code: i32,
        /// The faulting address (`0x...`), for the signals that have one.
        fault_address: Option<String>,
        /// The thread's name.
        thread: String,
        /// Its Linux thread id.
        thread_id: u32,
        /// When (RFC 3339), if recorded.
        time: Option<String>,
        /// The faulting address was near the stack pointer.
        likely_stack_overflow: bool,
        /// One sentence.
        message: String,
    },
    /// The writer marked a crash without details.
    Crashed {
        /// One sentence.
        message: String,
    },
    /// The ring was left open with no word: SIGKILL, an OOM kill, or an
    /// exit that skipped closing it.
    Killed {
        /// One sentence.
        message: String,
        /// The memory evidence makes an OOM kill likely (`shm-layout.md`,
        /// 9.3: the cgroup's OOM killer seen, its limit reached, or the
        /// last sample at 90% of the limit or more).
        likely_oom: bool,
        /// The last memory sample, if the writer took one.
        memory: Option<Memory>,
    },
}

/// The last memory sample a writer recorded, as `info --json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    /// When (RFC 3339).
    pub sampled: String,
    /// Resident set size.
    pub rss_bytes: u64,
    /// The cgroup's usage, if known.
    pub cgroup_usage_bytes: Option<u64>,
    /// The cgroup's limit, if it has one.
    pub cgroup_limit_bytes: Option<u64>,
    /// Usage in percent of the limit (one decimal).
    pub cgroup_percent: Option<f64>,
    /// What the verdict rests on: `oom_killer`, `limit_hit`, `sample` or
    /// `resident`.
    pub basis: Option<&'static str>,
    /// Milliseconds from that evidence to the newest record (negative: the
    /// evidence is newer), if the window has a record.
    pub before_last_record_ms: Option<f64>,
    /// When the writer last saw its cgroup reach its limit (RFC 3339).
    pub limit_hit: Option<String>,
    /// When the writer last saw its cgroup's OOM killer run (RFC 3339).
    pub oom_killer: Option<String>,
    /// The cgroup's peak usage, if known.
    pub peak_bytes: Option<u64>,
    /// The rises of the cgroup's `max`, `oom` and `oom_kill` counters
    /// while the writer watched.
    pub events: Option<MemoryEvents>,
    /// The writer's memory cgroup (`/proc/self/cgroup`'s path).
    pub cgroup: Option<String>,
}

/// The cgroup's memory event counters while the writer watched them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEvents {
    /// How it watched: `memory.events` (v2), `eventfd` (v1), `sampled`.
    pub watch: &'static str,
    /// Times the cgroup reached its limit.
    pub max: u64,
    /// Times its OOM killer was invoked.
    pub oom: u64,
    /// Processes it killed.
    pub oom_kill: u64,
}

impl Cause {
    /// The cause of death of a writer in `state` (none while it runs or
    /// after a clean exit).
    pub fn of(state: State, header: &Header) -> Option<Cause> {
        let message = text(state, header);
        let time = |ns: u64| (ns != 0).then(|| rfc3339(ns));
        Some(match (state, &header.death) {
            (State::Running | State::Exited, _) => return None,
            (State::Crashed, Some(d)) if d.kind == DEATH_PANIC => Cause::Panic {
                message: d.message.clone(),
                location: d.location.clone(),
                thread: d.thread_name.clone(),
                thread_id: d.thread_id,
                time: time(d.unix_ns),
                signal: (d.signal != 0).then(|| signal_name(d.signal)),
                text: message,
            },
            (State::Crashed, Some(d)) if d.kind == DEATH_SIGNAL => Cause::Signal {
                signal: signal_name(d.signal),
                signo: d.signal,
                code: si_code_name(d.signal, d.si_code),
                si_code: d.si_code,
                fault_address: d.fault_addr.map(|a| format!("{a:#x}")),
                thread: d.thread_name.clone(),
                thread_id: d.thread_id,
                time: time(d.unix_ns),
                likely_stack_overflow: d.likely_stack_overflow(),
                message,
            },
            (State::Crashed, _) => Cause::Crashed { message },
            (State::Killed, _) => Cause::Killed {
                message,
                likely_oom: likely_oom(header),
                memory: header.memory.map(|m| Memory {
                    sampled: rfc3339(m.sampled_unix_ns),
                    rss_bytes: m.rss_bytes,
                    cgroup_usage_bytes: (m.cgroup_usage != 0).then_some(m.cgroup_usage),
                    cgroup_limit_bytes: (m.cgroup_limit != 0).then_some(m.cgroup_limit),
                    cgroup_percent: m.cgroup_fraction().map(|f| (f * 1000.0).round() / 10.0),
                    basis: Verdict::of(header).map(|v| v.basis_name()),
                    before_last_record_ms: Verdict::of(header)
                        .and_then(|v| v.before_last_record_ns())
                        .map(|ns| (ns as f64 / 1e5).round() / 10.0),
                    limit_hit: time(m.limit_hit_unix_ns),
                    oom_killer: time(m.oom_unix_ns),
                    peak_bytes: (m.peak != 0).then_some(m.peak),
                    events: crate::oom::watch_name(m.watch).map(|watch| MemoryEvents {
                        watch,
                        max: m.max_events,
                        oom: m.oom_events,
                        oom_kill: m.oom_kill_events,
                    }),
                    cgroup: header.cgroup.as_ref().map(|c| c.1.clone()),
                }),
            },
        })
    }

    /// `panic`, `signal`, `crashed` or `killed`: the JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Panic { .. } => "panic",
            Cause::Signal { .. } => "signal",
            Cause::Crashed { .. } => "crashed",
            Cause::Killed { .. } => "killed",
        }
    }

    /// The cause in one sentence.
    pub fn text(&self) -> &str {
        match self {
            Cause::Panic { text, .. } => text,
            Cause::Signal { message, .. }
            | Cause::Crashed { message }
            | Cause::Killed { message, .. } => message,
        }
    }

    /// The `cause` object of `info --json`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
