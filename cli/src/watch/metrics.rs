//! The collector's counters, and a minimal HTTP responder that serves them
//! in the Prometheus text format (`GET /metrics`) on a loopback address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the collector did since it started. Every field is only ever read
/// for display: Relaxed loads and stores throughout (no other memory is
/// published through them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Shipments that succeeded (deaths and snapshots).
    pub shipped: AtomicU64,
    /// Shipments that failed (after their retries).
    pub failed: AtomicU64,
    /// Retries: inside a shipment, and shipments tried again after a failure.
    pub retried: AtomicU64,
    /// Snapshot shipments of live rings that succeeded (also in `shipped`).
    pub snapshots: AtomicU64,
    /// Shipped dead rings removed by retention.
    pub removed: AtomicU64,
    /// Directory scans.
    pub scans: AtomicU64,
    /// Files skipped by the file-safety rules (distinct path and reason).
    pub skipped_files: AtomicU64,
    /// Rings with a live writer at the last scan.
    pub rings_live: AtomicU64,
    /// Rings without a live writer at the last scan (shipped or not).
    pub rings_dead: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 9] = [
            (
                "shipped_total",
                "counter",
                "Shipments that succeeded (deaths and snapshots).",
                &self.shipped,
            ),
            (
                "failed_total",
                "counter",
                "Shipments that failed after their retries.",
                &self.failed,
            ),
            (
                "retried_total",
                "counter",
                "Retries of shipments.",
                &self.retried,
            ),
            (
                "snapshots_total",
                "counter",
                "Snapshot shipments of live rings that succeeded.",
                &self.snapshots,
            ),
            (
                "rings_removed_total",
                "counter",
                "Shipped dead rings removed by retention.",
                &self.removed,
            ),
            ("scans_total", "counter", "Directory scans.", &self.scans),
            (
                "skipped_files",
                "gauge",
                "Files skipped by the file-safety rules (distinct path and reason).",
                &self.skipped_files,
            ),
            (
                "rings_live",
                "gauge",
                "Rings whose writer was alive at the last scan.",
                &self.rings_live,
            ),
            (
                "rings_dead",
                "gauge",
                "Rings whose writer was gone at the last scan.",
                &self.rings_dead,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP blackbox_watch_{name} {help}\n# TYPE blackbox_watch_{name} {kind}\nblackbox_watch_{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Parses `--metrics ADDR`: an IP address and port on the loopback
/// interface (the counters are not for the network at large).
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid --metrics address {text:?} (use e.g. 127.0.0.1:9464)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--metrics {text} is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT; expose it through a sidecar proxy if needed)"
        ));
    }
    Ok(addr)
}

/// Binds `addr` and serves the counters until the runtime stops.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, counters: Arc<Counters>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on --metrics {addr}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let counters = counters.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), respond(stream, &counters)).await;
            });
        }
    });
    Ok(())
}

/// Answers one request: `GET /metrics` gets the counters, anything else 404.
async fn respond(mut stream: TcpStream, counters: &Counters) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read the request head (at most 8 KiB; the body, if any, is ignored).
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (target == "/metrics" || target == "/") {
        ("200 OK", counters.render())
    } else {
        (
            "404 Not Found",
            "not found; the counters are at GET /metrics\n".to_string(),
        )
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses() {
        assert!(parse_metrics_addr("127.0.0.1:9464").is_ok());
        assert!(parse_metrics_addr("[::1]:9464").is_ok());
        let err = parse_metrics_addr("0.0.0.0:9464").unwrap_err();
        assert!(err.contains("not a loopback"), "{err}");
        assert!(parse_metrics_addr("localhost").is_err());
    }

    #[test]
    fn renders_prometheus_text() {
        let c = Counters::default();
        Counters::bump(&c.shipped);
        let text = c.render();
        assert!(text.contains(
            "# TYPE blackbox_watch_shipped_total counter\nblackbox_watch_shipped_total 1\n"
        ));
        assert!(text.contains("blackbox_watch_failed_total 0\n"));
    }
}
