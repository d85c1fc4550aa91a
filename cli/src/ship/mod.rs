//! Shipping a ring's window somewhere: stdout, a file, or an HTTP endpoint,
//! as NDJSON or OTLP/HTTP JSON. Used by `blackbox ship`, `blackbox watch`
//! and `blackbox on-failure`.
//!
//! [`ship_ring`] takes one snapshot of the ring (dead or alive: a live
//! ring's current window ships too) and ships it in parts of at most
//! [`ShipOptions::max_body`] bytes (see [Parts](#parts)): to stdout or a
//! file all parts in one `write_all`, to an HTTP endpoint one POST per
//! part, in order. Nothing is streamed within a body, so a failure is never
//! a silent half body.
//!
//! # What a shipment carries
//!
//! Every shipment carries the writer's identity (program, pid, host, start
//! time, app version, systemd invocation id, Kubernetes pod fields), its
//! state and cause of death, the reason (a snapshot's, or on-failure's
//! verdict) and an idempotency key.
//!
//! - **NDJSON** ([`Format::Ndjson`], `application/x-ndjson`): the first line
//!   is the shipment object, `{"kind": "shipment", "key", "reason",
//!   "shipped_at", "blackbox_version", "part", "parts", ...}` plus every member of
//!   `blackbox info --json` (`state`, `cause`, `program`, `pid`, `hostname`,
//!   `start_time`, `app_version`, `invocation_id`, `pod`, `records`, `gaps`,
//!   ...). Then one line per record, exactly as `blackbox read --spans
//!   --json` prints it (its `kind` is `event`, `typed`, `raw` or a span
//!   record's `span-new`, `span-record`, `span-step`, `span-follows`; an
//!   event in spans has their fields in `spans`), plus `"key"`.
//! - **OTLP** ([`Format::Otlp`], `application/json`): an
//!   `ExportLogsServiceRequest` in the OTLP/HTTP JSON mapping, POSTed to
//!   `URL/v1/logs` (unless the URL already ends in `/v1/logs`), which is
//!   what the OpenTelemetry Collector's `otlp` receiver takes. One
//!   `resourceLogs` whose resource attributes are the identity:
//!   `service.name` (program), `process.pid`, `host.name`, `service.version`,
//!   `k8s.pod.name`, `k8s.namespace.name`, `k8s.pod.uid`,
//!   `k8s.container.name` (where set), `blackbox.state`, `blackbox.cause.*`
//!   (`kind`, `message`, `signal`, `location`, ... as the cause has them),
//!   `blackbox.shipment.key`, `blackbox.shipment.part` and
//!   `blackbox.shipment.parts`, `blackbox.reason` (when set), and a few more
//!   `blackbox.*`. One `scopeLogs` (scope `blackbox`) with one `logRecord`
//!   per ring record, oldest first: `timeUnixNano`, `severityNumber` and
//!   `severityText` from the level, `body` the message (a typed record's
//!   decoded value, or nothing for raw bytes), the fields as attributes
//!   under their own names, and `blackbox.seq`, `blackbox.target`,
//!   `blackbox.thread_id`, `blackbox.kind` and whatever else `read --json`
//!   shows for the record (`blackbox.type`, `blackbox.bytes_hex`,
//!   `blackbox.gap_before`, ...). Field types follow the JSON mapping:
//!   integers as `intValue` strings (a `u64` above `i64::MAX` as a
//!   `stringValue`), floats as `doubleValue`.
//!
//! # Delivery and retries
//!
//! - `-`: standard output, one `write_all`.
//! - a path: appended with `O_APPEND` in one `write_all` of the prepared
//!   buffer, then `fdatasync`; created with mode 0640 if new.
//! - `http://` / `https://`: one POST per part with `Content-Type` and an
//!   `Idempotency-Key` header (the part's key, see [Parts](#parts)), each
//!   with the whole retry policy of its own. Network errors, timeouts,
//!   408, 429 and 5xx are retried up to [`ShipOptions::attempts`] tries in
//!   all, waiting [`ShipOptions::backoff`] before the first retry and twice
//!   as long before each next one (capped at 30 s; a `Retry-After` in
//!   seconds is honoured up to the same cap). Any other status that is not
//!   2xx (4xx, and 3xx: redirects are not followed) fails at once. After
//!   the last try, [`ShipError`] says what the last failure was. The
//!   usual proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) apply.
//!   A receiver's size limit (the OpenTelemetry Collector's
//!   `max_request_body_size`, 20 MiB by default) answers a larger body
//!   with 413, which fails at once: keep [`ShipOptions::max_body`] below it.
//!
//! # Parts
//!
//! A window is split into parts of at most [`ShipOptions::max_body`] bytes
//! ([`options::DEFAULT_MAX_BODY`]), records in order; each part is a whole body on
//! its own: the NDJSON shipment line then that part's record lines, or a
//! whole `ExportLogsServiceRequest` with the same resource attributes and
//! that part's `logRecords`. The shipment line says `"part": I, "parts": N`
//! (1-based), the OTLP resource `blackbox.shipment.part` and
//! `blackbox.shipment.parts`. A record whose own body is larger than the
//! limit goes alone in a part, whole (never dropped, never cut). A part is
//! built, sent and dropped before the next is built, so memory holds the
//! snapshot and one part.
//!
//! The shipment key is the same in every part, so a consumer sees one
//! shipment; the `Idempotency-Key` of a shipment of N > 1 parts is
//! `KEY/I-of-N` (e.g. `9f3c0e1d2b4a5968-1048576-killed/2-of-5`), one per
//! part, so a receiver drops repeats part by part (a shipment of one part
//! keeps `KEY`). Parts are POSTed in order; when one fails for good the
//! shipment fails, its [`ShipError`] names it (`part 3 of 5: ...`) and
//! says that the parts before it were delivered. Shipping the window again
//! sends every part again with the same keys: at least once per part.
//!
//! # Attachments
//!
//! With [`ShipOptions::attach`] ([`Attachment::TraceEvent`]: `--attach
//! trace-event`), the same snapshot also ships as Trace Event Format JSON
//! (what `blackbox export --format trace-event` writes), after the body:
//! for a file destination to `FILE.KEY.trace.json` beside it (written to a
//! temporary name, synced, renamed: [`attachment_target`]), for a URL as
//! one POST to the URL as given (not `/v1/logs`), `Content-Type:
//! application/json`, `Idempotency-Key: KEY/trace-event`, with the body's
//! retry policy. Stdout takes no attachment. An attachment that fails
//! fails the shipment, saying that the body was delivered.
//!
//! # Repeats
//!
//! Exactly-once cannot be had across a collector that crashes between a
//! receiver's acknowledgement and its own record of it, so delivery is at
//! least once, and a repeat is recognisable: the key ([`default_key`]) is
//! derived from the ring's nonce (random per ring), the end of its window
//! (bytes written) and its state, so shipping the same window twice gives
//! the same key, in the `Idempotency-Key` header, on every NDJSON line and
//! as the OTLP resource attribute `blackbox.shipment.key`.
//!
//! # Examples
//!
//! ```no_run
//! use blackbox_reader::ship::{ship_ring, Destination, Format, ShipOptions};
//! use blackbox_reader::Ring;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::path::Path::new("/dev/shm/app.ring");
//! let ring = Ring::open(path)?;
//! let opts = ShipOptions::new(Destination::parse("http://collector:4318")?, Format::Otlp);
//! let shipped = ship_ring(&ring, path, &opts).await?;
//! println!("{} records, key {}", shipped.records, shipped.key);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blackbox_reader::{Ring, Snapshot, State};

mod body;
mod deliver;
mod options;

pub use options::{
    Attachment, Destination, Format, ShipError, ShipOptions, Shipped, DEFAULT_ATTEMPTS,
    MIN_MAX_BODY,
};

/// The idempotency key of a shipment of `snap` taken in `state`:
/// `NONCE-CLAIMS-APPENDED-STATE`, e.g. `9f3c0e1d2b4a5968-37-4210-killed`
/// (the chunk cursor and [`Snapshot::appended`]). The same window of the
/// same ring always gives the same key.
pub fn default_key(snap: &Snapshot, state: State) -> String {
    format!(
        "{:016x}-{}-{}-{}",
        snap.header.nonce,
        snap.header.next_ticket,
        snap.appended(),
        state.as_str()
    )
}

/// The `Idempotency-Key` of part `index` of `count` of the shipment `key`:
/// `KEY/INDEX-of-COUNT`, or `KEY` itself when there is one part.
///
/// # Examples
///
/// ```
/// use blackbox_reader::ship::part_key;
///
/// assert_eq!(part_key("9f3c-1048576-killed", 2, 5), "9f3c-1048576-killed/2-of-5");
/// assert_eq!(part_key("9f3c-1048576-killed", 1, 1), "9f3c-1048576-killed");
/// ```
pub fn part_key(key: &str, index: u32, count: u32) -> String {
    if count > 1 {
        format!("{key}/{index}-of-{count}")
    } else {
        key.to_string()
    }
}

/// Ships the current window of `ring` (opened from `path`).
///
/// Takes the ring's state, then one snapshot (a live ring's current window),
/// and delivers it to `opts.to` in `opts.format`, in parts of at most
/// `opts.max_body` bytes (module docs, [Parts](#parts)), retrying each
/// part sent over the network as [`ShipOptions`] says.
///
/// # Errors
///
/// The ring cannot be read, the body cannot be written (stdout closed, the
/// file cannot be opened or written), or the HTTP endpoint failed every try
/// or refused a part (4xx): [`ShipError`] says which, in one line, with the
/// retries made; for a shipment of several parts it names the part that
/// failed and says that the ones before it were delivered.
pub async fn ship_ring(ring: &Ring, path: &Path, opts: &ShipOptions) -> Result<Shipped, ShipError> {
    let ring_error = |e: blackbox_reader::Error| ShipError::new(format!("{}: {e}", path.display()));
    // Reading the window (up to a ring's size) and serialising it are the
    // heavy part: they run on the runtime's blocking pool, so a collector's
    // signal handling and /metrics keep answering meanwhile.
    let window = {
        let ring = ring.try_clone().map_err(ring_error)?;
        let path = path.to_path_buf();
        let opts = opts.clone();
        off_thread(move || Window::take(&ring, path, &opts)).await??
    };
    let window = Arc::new(window);
    let format = opts.format;
    let count = window.parts();
    let mut bytes = 0u64;
    let mut retries = 0u32;
    match &opts.to {
        Destination::Http(url) => {
            let client = deliver::client(opts)?;
            let url = options::http_target(url, format);
            for index in 1..=count {
                // Built, sent, dropped: one part in memory at a time.
                let w = Arc::clone(&window);
                let (part, body) = off_thread(move || w.part_body(format, index)).await?;
                bytes += body.len() as u64;
                let part_key = part_key(&window.key, part.index, part.count);
                match deliver::post(&client, &url, opts, &part_key, body).await {
                    Ok(r) => retries += r,
                    Err(e) => return Err(part_failed(e, part, retries)),
                }
            }
        }
        Destination::Stdout | Destination::File(_) => {
            // All parts in one write_all: the total is bounded by the ring.
            let w = Arc::clone(&window);
            let body = off_thread(move || {
                let mut body = Vec::new();
                for index in 1..=count {
                    body.extend_from_slice(&w.part_body(format, index).1);
                }
                body
            })
            .await?;
            bytes = body.len() as u64;
            if let Destination::File(p) = &opts.to {
                deliver::to_file(p.clone(), body).await?;
            } else {
                deliver::to_stdout(body).await?;
            }
        }
    }
    let attachment = match opts.attach {
        Some(kind) => {
            let (target, r) = attach(&window, opts, kind).await?;
            retries += r;
            Some(target)
        }
        None => None,
    };
    let h = &window.snap.header;
    Ok(Shipped {
        records: window.snap.records.len(),
        bytes,
        parts: count,
        retries,
        key: window.key.clone(),
        writer: format!("{} pid {} on {}", h.program, h.pid, h.hostname),
        cause: blackbox_reader::cause::text(window.state, h),
        target: opts.to.target(opts.format),
        attachment,
    })
}

/// Where the attachment of the shipment `key` goes: for a file
/// destination, `FILE.KEY.trace.json` beside it (the key's characters other
/// than letters, digits, `-`, `_` and `.` as `_`); for a URL, the URL as
/// given.
pub fn attachment_target(to: &Destination, key: &str) -> Option<String> {
    match to {
        Destination::Stdout => None,
        Destination::File(p) => {
            let safe: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut name = p.as_os_str().to_owned();
            name.push(format!(".{safe}.trace.json"));
            Some(PathBuf::from(name).display().to_string())
        }
        Destination::Http(url) => Some(url.clone()),
    }
}

/// Ships the attachment of `window`; returns where it went and the
/// retries it took.
async fn attach(
    window: &Arc<Window>,
    opts: &ShipOptions,
    kind: Attachment,
) -> Result<(String, u32), ShipError> {
    let Attachment::TraceEvent = kind;
    let target = attachment_target(&opts.to, &window.key).ok_or_else(|| {
        ShipError::new("an attachment needs a file or http(s) destination, not stdout")
    })?;
    let w = Arc::clone(window);
    let body = off_thread(move || {
        let mut out = Vec::new();
        blackbox_reader::trace_event::write_trace_event(&w.snap, w.state, &mut out)
            .map(|_| out)
            .map_err(|e| ShipError::new(format!("cannot build the trace-event export: {e}")))
    })
    .await??;
    match &opts.to {
        Destination::Http(url) => {
            let client = deliver::client(opts)?;
            let key = format!("{}/{}", window.key, kind.name());
            let retries = deliver::post_as(&client, url, opts, "application/json", &key, body)
                .await
                .map_err(|e| ShipError {
                    message: format!(
                        "the {} attachment (the body was delivered): {}",
                        kind.name(),
                        e.message
                    ),
                    ..e
                })?;
            Ok((target, retries))
        }
        _ => {
            deliver::replace_file(PathBuf::from(&target), body).await?;
            Ok((target, 0))
        }
    }
}

/// Runs `f` on the runtime's blocking pool.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ShipError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ShipError::new(format!("the shipment's reading task failed: {e}")))
}

/// A window taken for shipping: the snapshot, and how it splits into parts.
struct Window {
    path: PathBuf,
    state: State,
    snap: Snapshot,
    key: String,
    reason: Option<String>,
    shipped_unix_ns: u64,
    plan: Vec<std::ops::Range<usize>>,
    postmortem: body::Postmortem,
}

impl Window {
    /// Takes the ring's state, then one snapshot (blocking: `pread` of the
    /// whole ring).
    fn take(ring: &Ring, path: PathBuf, opts: &ShipOptions) -> Result<Window, ShipError> {
        let ring_error =
            |e: blackbox_reader::Error| ShipError::new(format!("{}: {e}", path.display()));
        if let Some(gate) = &opts.hold_for_test {
            hold_for_test(gate);
        }
        let state = ring.state().map_err(ring_error)?;
        let snap = ring.snapshot().map_err(ring_error)?;
        let key = opts
            .key
            .clone()
            .unwrap_or_else(|| default_key(&snap, state));
        let postmortem = body::Postmortem::of(ring, state, &snap);
        let mut window = Window {
            path,
            state,
            snap,
            key,
            reason: opts.reason.clone(),
            shipped_unix_ns: body::now_unix_ns(),
            plan: Vec::new(),
            postmortem,
        };
        let max_body = usize::try_from(opts.max_body.max(MIN_MAX_BODY)).unwrap_or(usize::MAX);
        window.plan = window.shipment().plan(opts.format, max_body);
        Ok(window)
    }

    fn shipment(&self) -> body::Shipment<'_> {
        body::Shipment {
            path: &self.path,
            state: self.state,
            snap: &self.snap,
            key: &self.key,
            reason: self.reason.as_deref(),
            shipped_unix_ns: self.shipped_unix_ns,
            postmortem: &self.postmortem,
        }
    }

    /// How many parts: at least one, no more than records (a u32 holds
    /// them: a record takes at least 8 bytes of a ring of at most 4 GiB).
    fn parts(&self) -> u32 {
        u32::try_from(self.plan.len()).unwrap_or(u32::MAX)
    }

    /// The body of part `index` (from 1).
    fn part_body(&self, format: Format, index: u32) -> (body::Part, Vec<u8>) {
        let part = body::Part {
            index,
            count: self.parts(),
        };
        let records = self.plan[index as usize - 1].clone();
        let mut out = Vec::new();
        self.shipment().write_part(format, records, part, &mut out);
        (part, out)
    }
}

/// Test aid (`blackbox watch --hold-shipments-for-test GATE`): a shipment
/// that starts reading its ring creates `GATE.entered`, then waits, on the
/// blocking pool, until the file `GATE` exists. A test then knows a
/// shipment is in progress, and what the collector does meanwhile.
fn hold_for_test(gate: &Path) {
    let mut entered = gate.as_os_str().to_owned();
    entered.push(".entered");
    let _ = std::fs::write(&entered, b"");
    while !gate.exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The error of a shipment whose `part` failed as `err` says, after
/// `retries` retries of the parts before it.
fn part_failed(err: ShipError, part: body::Part, retries: u32) -> ShipError {
    let retries = retries + err.retries;
    if part.count == 1 {
        return ShipError { retries, ..err };
    }
    let mut message = format!("part {} of {}: {}", part.index, part.count, err.message);
    let before = match part.index {
        1 => None,
        2 => Some("part 1 was delivered".to_string()),
        i => Some(format!("parts 1-{} were delivered", i - 1)),
    };
    if let Some(before) = before {
        message.push_str(&format!(
            " ({before}; shipping again sends every part again, with the same keys)"
        ));
    }
    ShipError { message, retries }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector may `tokio::spawn` shipments: the future must be Send.
    #[allow(dead_code)]
    fn ship_ring_is_send(ring: &Ring, opts: &ShipOptions) {
        fn send<T: Send>(_: T) {}
        send(ship_ring(ring, Path::new("x"), opts));
    }

    #[test]
    fn destinations_parse() {
        assert_eq!(Destination::parse("-"), Ok(Destination::Stdout));
        assert_eq!(
            Destination::parse("HTTPS://h:4318/x"),
            Ok(Destination::Http("HTTPS://h:4318/x".into()))
        );
        assert_eq!(
            Destination::parse("out.ndjson"),
            Ok(Destination::File("out.ndjson".into()))
        );
        for bad in ["", "http://", "ftp://h/x", "http://exa mple.com"] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
    }
}
