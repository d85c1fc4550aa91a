//! `blackbox ship`: the real binary ships a real demo writer's ring to a
//! real HTTP/1.1 server on 127.0.0.1 (written here with std::net: it
//! records every request and answers with the statuses it is told), to a
//! file and to stdout. The OTLP body is checked against the official
//! protobuf definitions by scripts/check-otlp.sh (Python's
//! opentelemetry-proto and json_format.Parse, strict about field names and
//! types); where that checker cannot be had it says "skipped", except
//! under CI, where that is a failure.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    assert_contiguous, demo_counters, info_json, read_json, run, stderr, stdout, Reaper, TempDir,
};
use serde_json::Value;

/// One request the server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn lines(&self) -> Vec<Value> {
        std::str::from_utf8(&self.body)
            .expect("UTF-8 body")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1: one request per connection, the
/// i-th answered with `statuses[i]` (200 once they run out). It stops when
/// dropped, or by itself after a minute.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(statuses: &[u16]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = statuses.to_vec();
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && served < 100 {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let status = statuses.get(served).copied().unwrap_or(200);
                            served += 1;
                            handle(conn, status, &requests);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Server {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers, then Content-Length bytes), keeps it in
/// `requests`, then answers it: kept first, so a client that has its answer
/// finds its request already counted.
fn handle(mut conn: TcpStream, status: u16, requests: &Mutex<Vec<Request>>) -> Option<()> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let text = if status == 200 {
        "{}"
    } else {
        "busy, try later"
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let _ = conn.write_all(answer.as_bytes());
    Some(())
}

/// A dead demo ring: `threads` x `records`, then `--die how`.
fn dead_ring(
    dir: &TempDir,
    name: &str,
    threads: u64,
    records: u64,
    how: &str,
    extra: &[&str],
) -> std::path::PathBuf {
    let ring = dir.path(name);
    let (t, r) = (threads.to_string(), records.to_string());
    let mut args = vec![
        "demo",
        "--ring",
        ring.to_str().unwrap(),
        "--threads",
        &t,
        "--records",
        &r,
        "--die",
        how,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        !o.status.success() || how == "exit",
        "demo should have died: {}",
        stderr(&o)
    );
    ring
}

fn ship(ring: &Path, args: &[&str]) -> Output {
    let mut all = vec!["ship", ring.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

/// The one line `ship` prints on stderr.
fn one_line(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(
        err.lines().count(),
        1,
        "expected one line on stderr, got: {err:?}"
    );
    err.trim_end().to_string()
}

/// Checks every record line against `read --json` of the same ring, the
/// key on every line, and the demo's counters: all of each thread's
/// `records` counters, in order.
fn check_ndjson(lines: &[Value], ring: &Path, threads: u64, records: u64) -> String {
    let head = &lines[0];
    assert_eq!(head["kind"], "shipment", "{head}");
    let key = head["key"].as_str().expect("a key").to_string();
    let body = &lines[1..];
    for l in body {
        assert_eq!(l["key"], key.as_str(), "every line carries the key: {l}");
    }
    let read = read_json(ring, &[]);
    assert_eq!(body.len(), read.len(), "every record arrives");
    assert_eq!(head["records"], read.len());
    for (shipped, read) in body.iter().zip(&read) {
        let mut shipped = shipped.clone();
        shipped.as_object_mut().unwrap().remove("key");
        assert_eq!(&shipped, read, "a record line is what read --json prints");
    }
    let last = assert_contiguous(&demo_counters(body));
    assert_eq!(last.len() as u64, threads, "every thread's records arrive");
    for (t, n) in last {
        assert_eq!(n, records - 1, "thread {t}: all {records} counters");
    }
    for t in 0..threads {
        let first = demo_counters(body).iter().find(|c| c.0 == t).unwrap().1;
        assert_eq!(first, 0, "thread {t} starts at 0");
    }
    key
}

#[test]
fn ndjson_over_http_every_record_arrives_with_identity_cause_and_key() {
    let dir = TempDir::new("ship-ndjson");
    let ring = dead_ring(&dir, "a.ring", 3, 500, "kill", &[]);
    let server = Server::start(&[]);
    let url = format!("{}/ingest", server.url);
    let o = ship(&ring, &["--to", &url]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let line = one_line(&o);
    assert!(line.starts_with("blackbox: shipped "), "{line}");
    assert!(
        line.contains("1501 records") && line.contains(&url),
        "{line}"
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "one POST");
    let req = &reqs[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/ingest")
    );
    assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
    let lines = req.lines();
    let key = check_ndjson(&lines, &ring, 3, 500);
    assert_eq!(req.header("idempotency-key"), Some(key.as_str()));

    let head = &lines[0];
    let info = info_json(&ring);
    for field in [
        "program",
        "pid",
        "hostname",
        "start_time",
        "app_version",
        "state",
        "cause",
        "invocation_id",
        "pod",
        "gaps",
    ] {
        assert_eq!(head[field], info[field], "shipment {field} is info's");
    }
    assert_eq!(head["state"], "killed");
    assert_eq!(head["cause"]["kind"], "killed");
    assert!(head["reason"].is_null());
}

/// Runs scripts/check-otlp.sh on `body`: Some(output) when it checked,
/// None when it skipped (a failure under CI).
fn official_check(dir: &TempDir, name: &str, body: &[u8]) -> Option<(bool, String)> {
    let file = dir.path(name);
    std::fs::write(&file, body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-otlp.sh");
    let o = Command::new("bash")
        .arg(script)
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/check-otlp.sh");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    if out.contains("otlp: skipped:") {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OTLP checker must run under CI: {out}"
        );
        eprintln!("{}", out.trim());
        return None;
    }
    Some((o.status.success(), out))
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn otlp_over_http_is_an_export_logs_service_request_with_one_log_record_per_record() {
    let dir = TempDir::new("ship-otlp");
    let ring = dead_ring(&dir, "b.ring", 2, 200, "segv", &["--every-type"]);
    let info = info_json(&ring);
    let records = info["records"].as_u64().unwrap();
    let server = Server::start(&[]);
    let o = ship(
        &ring,
        &[
            "--to",
            &server.url,
            "--format",
            "otlp",
            "--reason",
            "test run",
        ],
    );
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    one_line(&o);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/logs")
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    let key = req
        .header("idempotency-key")
        .expect("Idempotency-Key")
        .to_string();

    // The official definitions, strictly.
    if let Some((ok, out)) = official_check(&dir, "otlp.json", &req.body) {
        assert!(ok, "not an ExportLogsServiceRequest: {out}");
        assert!(
            out.contains(&format!("ok, 1 resourceLogs, {records} logRecords")),
            "one logRecord per ring record ({records}): {out}"
        );
        // ... and the checker is strict: a misspelled field fails it.
        let bad =
            String::from_utf8(req.body.clone())
                .unwrap()
                .replacen("logRecords", "logRecord", 1);
        let (ok, out) = official_check(&dir, "bad.json", bad.as_bytes()).unwrap();
        assert!(
            !ok && out.contains("logRecord"),
            "the checker took a bad body: {out}"
        );
    }

    // What the body says, read as plain JSON.
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let rl = &body["resourceLogs"][0];
    let res = &rl["resource"]["attributes"];
    let s = |k: &str| attr(res, k).map(|v| v["stringValue"].clone());
    assert_eq!(s("service.name"), Some(info["program"].clone()));
    assert_eq!(
        attr(res, "process.pid").unwrap()["intValue"],
        info["pid"].to_string()
    );
    assert_eq!(s("host.name"), Some(info["hostname"].clone()));
    assert_eq!(s("service.version"), Some(info["app_version"].clone()));
    assert_eq!(s("blackbox.state").unwrap(), "crashed");
    assert_eq!(s("blackbox.cause.kind").unwrap(), "signal");
    assert_eq!(s("blackbox.cause.signal").unwrap(), "SIGSEGV");
    assert_eq!(s("blackbox.shipment.key").unwrap(), key.as_str());
    assert_eq!(s("blackbox.reason").unwrap(), "test run");

    let logs = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
    assert_eq!(logs.len() as u64, records, "one logRecord per ring record");
    let read = read_json(&ring, &[]);
    for (log, r) in logs.iter().zip(&read) {
        let seq = attr(&log["attributes"], "blackbox.seq").unwrap();
        assert_eq!(seq["intValue"], r["seq"].to_string());
        assert!(log["timeUnixNano"].is_string());
        if r["kind"] == "event" {
            assert_eq!(log["body"]["stringValue"], r["message"]);
            assert_eq!(log["severityText"], r["level"]);
        }
    }
    // The demo's counters arrive as integer attributes, all of them.
    let counters: Vec<(u64, u64)> = logs
        .iter()
        .filter(|l| l["body"]["stringValue"] == "demo record")
        .map(|l| {
            let n = |k| {
                attr(&l["attributes"], k).unwrap()["intValue"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            (n("t"), n("n"))
        })
        .collect();
    assert_eq!(counters.len(), 400);
    assert_eq!(
        assert_contiguous(&counters)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [199, 199]
    );
    // Typed records ship too.
    assert!(
        logs.iter().any(|l| attr(&l["attributes"], "blackbox.type")
            .is_some_and(|t| t["stringValue"] == "blackbox::demo::Sample")),
        "the typed record ships"
    );
}

#[test]
fn a_file_destination_gets_whole_shipments_appended_with_the_same_key() {
    let dir = TempDir::new("ship-file");
    let ring = dead_ring(&dir, "c.ring", 2, 100, "abort", &[]);
    let out = dir.path("out.ndjson");
    for _ in 0..2 {
        let o = ship(&ring, &["--to", out.to_str().unwrap()]);
        assert!(o.status.success(), "ship failed: {}", stderr(&o));
        one_line(&o);
    }
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & !0o640,
        0,
        "created with mode 0640 (less the umask): {mode:o}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = lines.len() / 2;
    assert_eq!(lines.len(), 2 * n);
    let k1 = check_ndjson(&lines[..n], &ring, 2, 100);
    let k2 = check_ndjson(&lines[n..], &ring, 2, 100);
    assert_eq!(k1, k2, "a repeat carries the same key");
    assert_eq!(lines[0]["state"], "crashed");
    assert_eq!(lines[0]["cause"]["signal"], "SIGABRT");
}

#[test]
fn stdout_gets_the_shipment_and_stderr_one_line() {
    let dir = TempDir::new("ship-stdout");
    let ring = dead_ring(&dir, "d.ring", 1, 50, "exit", &[]);
    let o = ship(&ring, &["--to", "-"]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let line = one_line(&o);
    assert!(line.contains("-> -"), "{line}");
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check_ndjson(&lines, &ring, 1, 50);
    assert_eq!(lines[0]["state"], "exited");
    assert!(lines[0]["cause"].is_null());
}

#[test]
fn a_5xx_is_retried_with_the_same_key_until_it_succeeds() {
    let dir = TempDir::new("ship-retry");
    let ring = dead_ring(&dir, "e.ring", 1, 20, "kill", &[]);
    let server = Server::start(&[503, 503]);
    let o = ship(&ring, &["--to", &server.url, "--backoff", "20ms"]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let line = one_line(&o);
    assert!(line.contains("after 2 retries"), "{line}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "two 503s, then 200");
    let keys: Vec<_> = reqs
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "every try sends the same body"
    );
}

#[test]
fn a_4xx_fails_at_once_with_one_line() {
    let dir = TempDir::new("ship-4xx");
    let ring = dead_ring(&dir, "f.ring", 1, 20, "kill", &[]);
    let server = Server::start(&[400, 400, 400]);
    let o = ship(&ring, &["--to", &server.url, "--backoff", "10ms"]);
    assert_eq!(o.status.code(), Some(2));
    let line = one_line(&o);
    assert!(
        line.starts_with("blackbox: cannot ship ") && line.contains("400"),
        "{line}"
    );
    assert_eq!(server.requests().len(), 1, "no retry of a 400");
}

#[test]
fn an_unreachable_endpoint_fails_after_the_last_try_with_one_line() {
    let dir = TempDir::new("ship-unreachable");
    let ring = dead_ring(&dir, "g.ring", 1, 20, "kill", &[]);
    // A port that was free a moment ago: connection refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = ship(
        &ring,
        &["--to", &url, "--attempts", "3", "--backoff", "10ms"],
    );
    assert_eq!(o.status.code(), Some(2));
    let line = one_line(&o);
    assert!(
        line.contains("gave up after 3 tries") && line.contains("refused"),
        "{line}"
    );

    // A listener that never accepts: every try times out. Without the
    // timeout each try would wait for ever, so that ship ends at all (with
    // a generous deadline for a hang, not a bound on its time) and says it
    // gave up is what shows the timeouts hold.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut child = common::blackbox()
        .arg("ship")
        .arg(&ring)
        .args(["--to", &url, "--attempts", "2", "--backoff", "10ms"])
        .args(["--timeout", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blackbox ship");
    common::wait_or_fail(
        &mut child,
        Duration::from_secs(60),
        "ship to a listener that never answers (do its timeouts hold?)",
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let line = one_line(&o);
    assert!(
        line.contains("gave up after 2 tries") && line.contains("timed out"),
        "{line}"
    );
}

#[test]
fn bad_destinations_are_one_line_errors() {
    let dir = TempDir::new("ship-bad");
    let ring = dead_ring(&dir, "h.ring", 1, 5, "exit", &[]);
    for to in ["ftp://host/x", "http://", ""] {
        let o = ship(&ring, &["--to", to]);
        assert_eq!(o.status.code(), Some(2), "{to:?}");
        one_line(&o);
    }
    let o = ship(&dir.path("missing.ring"), &["--to", "-"]);
    assert_eq!(o.status.code(), Some(2));
    one_line(&o);
    assert!(o.stdout.is_empty());
}

#[test]
fn a_live_ring_ships_its_current_window() {
    let dir = TempDir::new("ship-live");
    let ring = dir.path("live.ring");
    let child = common::blackbox()
        .args([
            "demo",
            "--ring",
            ring.to_str().unwrap(),
            "--threads",
            "2",
            "--records",
            "100000",
        ])
        .args(["--rate", "200", "--capacity", "4MiB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let _reaper = Reaper(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(ring.exists() && info_json(&ring)["records"].as_u64().unwrap_or(0) >= 40) {
        assert!(Instant::now() < deadline, "the demo wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = Server::start(&[]);
    let o = ship(&ring, &["--to", &server.url]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    assert!(one_line(&o).contains("running"));
    let reqs = server.requests();
    let lines = reqs[0].lines();
    assert_eq!(lines[0]["state"], "running");
    assert!(lines[0]["cause"].is_null());
    let body = &lines[1..];
    assert!(body.len() >= 40);
    assert_eq!(lines[0]["records"], body.len());
    // The window so far, from each thread's first record on, without holes.
    let counters = demo_counters(body);
    assert_contiguous(&counters);
    for t in 0..2 {
        assert_eq!(
            counters.iter().find(|c| c.0 == t).map(|c| c.1),
            Some(0),
            "thread {t}"
        );
    }
    assert!(body.iter().all(|l| l["key"] == lines[0]["key"]));
}

/// The parts tests' ring: 3 threads x 1000 records, about 300 KiB as NDJSON.
fn parts_ring(dir: &TempDir) -> std::path::PathBuf {
    dead_ring(dir, "parts.ring", 3, 1000, "kill", &["--capacity", "4MiB"])
}

/// Each request's `Idempotency-Key`, in the order they came.
fn idempotency_keys(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .map(|r| r.header("idempotency-key").expect("a key").to_string())
        .collect()
}

/// Checks the NDJSON parts `reqs` (all answered 200, in order): each is a
/// shipment line with `part`/`parts` and the one key, then its records, at
/// most `max` bytes; the records together are the ring's, each once.
/// Returns the shipment key.
fn check_ndjson_parts(reqs: &[Request], ring: &Path, max: usize) -> String {
    let n = reqs.len();
    assert!(n >= 3, "several parts, got {n}");
    let mut all = Vec::new();
    let mut key = None::<String>;
    for (i, req) in reqs.iter().enumerate() {
        let lines = req.lines();
        let head = &lines[0];
        assert_eq!(
            head["kind"],
            "shipment",
            "part {} begins with the shipment",
            i + 1
        );
        assert_eq!(head["part"], i + 1, "{head}");
        assert_eq!(head["parts"], n, "{head}");
        let k = head["key"].as_str().unwrap().to_string();
        assert_eq!(
            req.header("idempotency-key"),
            Some(format!("{k}/{}-of-{n}", i + 1).as_str()),
            "a key per part"
        );
        assert_eq!(*key.get_or_insert(k.clone()), k, "one shipment key");
        assert!(lines.len() > 1, "part {} carries records", i + 1);
        assert!(
            req.body.len() <= max || lines.len() == 2,
            "part {} is {} bytes, over {max} with {} records",
            i + 1,
            req.body.len(),
            lines.len() - 1
        );
        all.extend_from_slice(&lines);
    }
    // The parts' record lines, in order, are exactly one shipment's.
    let mut one = vec![reqs[0].lines()[0].clone()];
    one.extend(all.into_iter().filter(|l| l["kind"] != "shipment"));
    check_ndjson(&one, ring, 3, 1000)
}

#[test]
fn ndjson_ships_in_parts_of_at_most_max_body_each_whole_with_a_key_per_part() {
    let dir = TempDir::new("ship-parts-ndjson");
    let ring = parts_ring(&dir);
    let server = Server::start(&[]);
    let o = ship(&ring, &["--to", &server.url, "--max-body", "64KiB"]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let line = one_line(&o);
    let reqs = server.requests();
    let n = reqs.len();
    assert!(line.contains(&format!("in {n} parts")), "{line}");
    check_ndjson_parts(&reqs, &ring, 64 << 10);
    let keys = idempotency_keys(&reqs);
    let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), n, "distinct keys per part: {keys:?}");

    // A repeat sends the same parts with the same keys.
    let again = Server::start(&[]);
    let o = ship(&ring, &["--to", &again.url, "--max-body", "64KiB"]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    assert_eq!(idempotency_keys(&again.requests()), keys);

    // A file gets every part, appended whole.
    let out = dir.path("parts.ndjson");
    let o = ship(
        &ring,
        &["--to", out.to_str().unwrap(), "--max-body", "64KiB"],
    );
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let heads = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["kind"] == "shipment")
        .count();
    assert_eq!(heads, n, "one shipment line per part");

    // Without --max-body (4 MiB), the same window is one part.
    let whole = Server::start(&[]);
    let o = ship(&ring, &["--to", &whole.url]);
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let reqs = whole.requests();
    assert_eq!(reqs.len(), 1);
    let head = &reqs[0].lines()[0];
    assert_eq!(
        (head["part"].clone(), head["parts"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(reqs[0].header("idempotency-key"), head["key"].as_str());
}

#[test]
fn otlp_ships_in_parts_each_a_whole_export_logs_service_request() {
    let dir = TempDir::new("ship-parts-otlp");
    let ring = parts_ring(&dir);
    let server = Server::start(&[]);
    let o = ship(
        &ring,
        &[
            "--to",
            &server.url,
            "--format",
            "otlp",
            "--max-body",
            "64KiB",
        ],
    );
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    one_line(&o);
    let reqs = server.requests();
    let n = reqs.len();
    assert!(n >= 3, "several parts, got {n}");

    // Every part, strictly.
    let files: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = dir.path(&format!("part-{}.json", i + 1));
            std::fs::write(&f, &r.body).unwrap();
            f
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-otlp.sh");
    let o = Command::new("bash")
        .arg(script)
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/check-otlp.sh");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    if out.contains("otlp: skipped:") {
        assert!(std::env::var_os("CI").is_none(), "{out}");
    } else {
        assert!(
            o.status.success(),
            "a part is not an ExportLogsServiceRequest: {out}"
        );
        assert_eq!(out.matches(": ok, 1 resourceLogs, ").count(), n, "{out}");
    }

    let mut seqs = Vec::new();
    let mut counters = Vec::new();
    let mut key = None::<String>;
    for (i, req) in reqs.iter().enumerate() {
        assert_eq!(req.path, "/v1/logs");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let rl = &body["resourceLogs"][0];
        let res = &rl["resource"]["attributes"];
        let int = |k: &str| attr(res, k).map(|v| v["intValue"].clone());
        assert_eq!(
            int("blackbox.shipment.part"),
            Some((i + 1).to_string().into())
        );
        assert_eq!(int("blackbox.shipment.parts"), Some(n.to_string().into()));
        assert_eq!(
            attr(res, "blackbox.state").unwrap()["stringValue"],
            "killed"
        );
        let k = attr(res, "blackbox.shipment.key").unwrap()["stringValue"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(*key.get_or_insert(k.clone()), k, "one shipment key");
        assert_eq!(
            req.header("idempotency-key"),
            Some(format!("{k}/{}-of-{n}", i + 1).as_str())
        );
        let logs = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
        assert!(!logs.is_empty());
        assert!(
            req.body.len() <= 64 << 10 || logs.len() == 1,
            "part {} is {} bytes",
            i + 1,
            req.body.len()
        );
        for l in logs {
            let a = |k| attr(&l["attributes"], k).map(|v| v["intValue"].clone());
            seqs.push(a("blackbox.seq").unwrap());
            if l["body"]["stringValue"] == "demo record" {
                let n = |k| a(k).unwrap().as_str().unwrap().parse::<u64>().unwrap();
                counters.push((n("t"), n("n")));
            }
        }
    }
    let read: Vec<Value> = read_json(&ring, &[])
        .iter()
        .map(|r| r["seq"].to_string().into())
        .collect();
    assert_eq!(seqs, read, "every record once, in order");
    assert_eq!(counters.len(), 3000);
    assert_eq!(
        assert_contiguous(&counters)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [999, 999, 999]
    );
}

#[test]
fn a_503_on_part_2_is_retried_and_every_part_arrives() {
    let dir = TempDir::new("ship-parts-retry");
    let ring = parts_ring(&dir);
    let server = Server::start(&[200, 503]);
    let o = ship(
        &ring,
        &[
            "--to",
            &server.url,
            "--max-body",
            "64KiB",
            "--backoff",
            "20ms",
        ],
    );
    assert!(o.status.success(), "ship failed: {}", stderr(&o));
    let line = one_line(&o);
    assert!(line.contains("after 1 retries"), "{line}");
    let mut reqs = server.requests();
    assert_eq!(
        reqs[1].header("idempotency-key"),
        reqs[2].header("idempotency-key")
    );
    assert_eq!(reqs[1].body, reqs[2].body, "the retry sends the same part");
    reqs.remove(1);
    check_ndjson_parts(&reqs, &ring, 64 << 10);
}

#[test]
fn a_part_that_fails_for_good_fails_the_shipment_naming_it() {
    let dir = TempDir::new("ship-parts-fail");
    let ring = parts_ring(&dir);
    let server = Server::start(&[200, 200, 400]);
    let o = ship(
        &ring,
        &[
            "--to",
            &server.url,
            "--max-body",
            "64KiB",
            "--backoff",
            "10ms",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let line = one_line(&o);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "no part after the failed one");
    let n = reqs[0].lines()[0]["parts"].as_u64().unwrap();
    assert!(
        line.contains(&format!("part 3 of {n}: "))
            && line.contains("400")
            && line.contains("parts 1-2 were delivered"),
        "{line}"
    );
}

#[test]
fn max_body_below_4kib_is_a_one_line_error() {
    let dir = TempDir::new("ship-parts-min");
    let ring = dead_ring(&dir, "m.ring", 1, 5, "exit", &[]);
    for bad in ["1KiB", "0", "lots"] {
        let o = ship(&ring, &["--to", "-", "--max-body", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(one_line(&o).contains("max-body"), "{bad}");
        assert!(o.stdout.is_empty());
    }
}
