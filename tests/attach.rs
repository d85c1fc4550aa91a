//! `ship --attach trace-event` and `watch --attach trace-event`: the
//! window also ships as Trace Event Format JSON, from the same snapshot,
//! next to the NDJSON or OTLP body: beside a file destination as
//! `FILE.KEY.trace.json`, or POSTed to an HTTP destination with
//! `Idempotency-Key: KEY/trace-event`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;

use common::{run, stderr, TempDir};
use serde_json::Value;

/// A ring of a demo that wrote through `tracing` (one event in spans) and
/// was SIGKILLed.
fn killed_ring(dir: &TempDir) -> std::path::PathBuf {
    let ring = dir.path("app.ring");
    let o = run(&[
        "demo",
        "--ring",
        ring.to_str().unwrap(),
        "--records",
        "50",
        "--via",
        "tracing",
        "--every-type",
        "--die",
        "kill",
    ]);
    assert!(!o.status.success(), "the demo should have died");
    ring
}

fn check_trace(text: &[u8]) {
    let trace: Value = serde_json::from_slice(text).expect("the attachment parses");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    assert!(events.iter().any(|e| e["ph"] == "X"), "slices");
    assert!(
        events
            .iter()
            .any(|e| e["s"] == "g" && e["args"]["cause"]["kind"] == "killed"),
        "the death marker"
    );
}

#[test]
fn ship_to_a_file_writes_the_trace_beside_it() {
    let dir = TempDir::new("attach-file");
    let ring = killed_ring(&dir);
    let out = dir.path("shipments.ndjson");
    let o = run(&[
        "ship",
        ring.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
        "--attach",
        "trace-event",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let key = first["key"].as_str().unwrap();
    // The body's lines are what `read --spans --json` prints: span records
    // decoded, an event in spans with their fields joined.
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "span-step" && l["step"] == "enter" && l["name"] == "inner"),
        "span records decoded in the shipment"
    );
    let typed = lines
        .iter()
        .find(|l| l["message"] == "every field type")
        .expect("the event in spans");
    assert_eq!(typed["spans"][1]["name"], "inner", "{typed}");
    assert_eq!(
        typed["spans"][1]["fields"],
        serde_json::json!({}),
        "{typed}"
    );
    let attached = dir.path(&format!("shipments.ndjson.{key}.trace.json"));
    check_trace(&std::fs::read(&attached).expect("the attachment beside the body"));
    assert!(
        stderr(&o).contains(&format!("trace-event -> {}", attached.display())),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn attach_to_stdout_is_a_one_line_error() {
    let dir = TempDir::new("attach-stdout");
    let ring = killed_ring(&dir);
    for cmd in [
        vec!["ship", ring.to_str().unwrap()],
        vec!["watch", dir.0.to_str().unwrap(), "--once"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--to", "-", "--attach", "trace-event"]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("--attach"), "{}", stderr(&o));
    }
}

/// A request as the receiver saw it: path, headers, body.
type Received = (String, Vec<String>, Vec<u8>);

/// An HTTP receiver that answers 200 to each request and hands it over.
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end().to_string();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                headers.push(h);
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((path, headers, body));
        }
    });
    (url, rx)
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn ship_and_watch_to_http_post_the_trace_after_the_body() {
    let dir = TempDir::new("attach-http");
    let ring = killed_ring(&dir);
    let (url, rx) = receiver();
    let o = run(&[
        "ship",
        ring.to_str().unwrap(),
        "--to",
        &url,
        "--format",
        "otlp",
        "--attach",
        "trace-event",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wait = std::time::Duration::from_secs(60);
    let (body_path, body_headers, _) = rx.recv_timeout(wait).unwrap();
    assert_eq!(body_path, "/ingest/v1/logs");
    let key = header(&body_headers, "idempotency-key")
        .unwrap()
        .to_string();
    let (path, headers, body) = rx.recv_timeout(wait).unwrap();
    assert_eq!(path, "/ingest", "the attachment goes to the URL as given");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        header(&headers, "idempotency-key"),
        Some(format!("{key}/trace-event").as_str())
    );
    check_trace(&body);

    // watch ships the dead ring once, with its attachment.
    let state = dir.path("state");
    let o = run(&[
        "watch",
        dir.0.to_str().unwrap(),
        "--to",
        &url,
        "--once",
        "--state-dir",
        state.to_str().unwrap(),
        "--attach",
        "trace-event",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, _, ndjson) = rx.recv_timeout(wait).unwrap();
    assert!(String::from_utf8_lossy(&ndjson).contains("\"shipment\""));
    let (_, headers, body) = rx.recv_timeout(wait).unwrap();
    assert!(header(&headers, "idempotency-key")
        .unwrap()
        .ends_with("/trace-event"));
    check_trace(&body);
    assert!(
        stderr(&o).contains("attached trace-event of app.ring"),
        "{}",
        stderr(&o)
    );
    let _ = Path::new(&state);
}
