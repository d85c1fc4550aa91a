//! What a shipment is told (destination, format, retries) and what it
//! reports back.

use std::path::PathBuf;
use std::time::Duration;

/// Tries in all for a network destination, by default.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// The first retry's delay, by default; it doubles each retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
/// The per-request timeout, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body of one part, by default: 4 MiB, well under the
/// OpenTelemetry Collector's 20 MiB default `max_request_body_size`.
pub const DEFAULT_MAX_BODY: u64 = 4 << 20;
/// The least [`ShipOptions::max_body`]: a smaller one counts as this.
pub const MIN_MAX_BODY: u64 = 4 << 10;

/// The body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: a shipment line, then one line per record.
    Ndjson,
    /// OTLP/HTTP JSON (`ExportLogsServiceRequest`), POSTed to `URL/v1/logs`.
    Otlp,
}

impl Format {
    /// The body's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Otlp => "application/json",
        }
    }
}

/// A file shipped next to the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// The window as Trace Event Format JSON (`blackbox export --format
    /// trace-event`), which a browser opens in Perfetto's UI or speedscope.
    TraceEvent,
}

impl Attachment {
    /// `trace-event`.
    pub fn name(self) -> &'static str {
        match self {
            Attachment::TraceEvent => "trace-event",
        }
    }
}

/// Where a shipment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`: standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Http(String),
}

impl Destination {
    /// Parses `-`, a path, or an `http(s)://` URL.
    ///
    /// # Errors
    ///
    /// An empty text, a URL with another scheme (`ftp://...`) or without a
    /// host, or a URL that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use blackbox_reader::ship::Destination;
    ///
    /// assert_eq!(Destination::parse("-"), Ok(Destination::Stdout));
    /// assert!(matches!(Destination::parse("http://127.0.0.1:4318"), Ok(Destination::Http(_))));
    /// assert!(matches!(Destination::parse("/var/log/bb.ndjson"), Ok(Destination::File(_))));
    /// assert!(Destination::parse("ftp://host/x").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Destination, String> {
        if text.is_empty() {
            return Err("empty destination (use -, a file path, or an http(s):// URL)".into());
        }
        if text == "-" {
            return Ok(Destination::Stdout);
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url =
                reqwest::Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("invalid URL {text:?}: no host"));
            }
            return Ok(Destination::Http(text.to_string()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(format!(
                    "unsupported destination {text:?}: only http:// and https:// URLs (or -, or a file path)"
                ));
            }
        }
        Ok(Destination::File(PathBuf::from(text)))
    }

    /// Where a body in `format` actually goes: for [`Format::Otlp`] to an
    /// HTTP URL, the URL with `/v1/logs` appended (unless it ends in it).
    pub fn target(&self, format: Format) -> String {
        match self {
            Destination::Stdout => "-".into(),
            Destination::File(p) => p.display().to_string(),
            Destination::Http(url) => http_target(url, format),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("-"),
            Destination::File(p) => write!(f, "{}", p.display()),
            Destination::Http(url) => f.write_str(url),
        }
    }
}

/// How to ship.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// Where to.
    pub to: Destination,
    /// In what format.
    pub format: Format,
    /// Why this shipment happens (a snapshot's reason), if not a death.
    pub reason: Option<String>,
    /// Idempotency key; derived from the ring's nonce and window end if None
    /// ([`super::default_key`]).
    pub key: Option<String>,
    /// Tries in all for a network destination (>= 1; 0 counts as 1).
    pub attempts: u32,
    /// First retry delay; doubles each retry (capped at 30 s).
    pub backoff: Duration,
    /// Per-request timeout (connect, send, and the answer).
    pub timeout: Duration,
    /// The largest body of one part, in bytes (at least [`MIN_MAX_BODY`];
    /// a smaller value counts as that). A record larger than this on its
    /// own goes alone in a part.
    pub max_body: u64,
    /// Test aid: hold each shipment, once it started, until this file
    /// exists (see `hold_for_test` in the ship module).
    pub hold_for_test: Option<PathBuf>,
    /// A file shipped after the body, from the same snapshot (module docs,
    /// [Attachments](super#attachments)).
    pub attach: Option<Attachment>,
}

impl ShipOptions {
    /// Options with the defaults: no reason, the derived key,
    /// [`DEFAULT_ATTEMPTS`], [`DEFAULT_BACKOFF`], [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_BODY`].
    pub fn new(to: Destination, format: Format) -> ShipOptions {
        ShipOptions {
            to,
            format,
            reason: None,
            key: None,
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            hold_for_test: None,
            attach: None,
        }
    }
}

/// What a successful shipment carried.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// Records shipped.
    pub records: usize,
    /// Body bytes sent, all parts together.
    pub bytes: u64,
    /// The parts it was sent in (1 for a window that fits one body).
    pub parts: u32,
    /// Retries it took, all parts together (0: each part on its first try).
    pub retries: u32,
    /// The shipment key it carried (each part's `Idempotency-Key` is
    /// [`super::part_key`] of it).
    pub key: String,
    /// One-line writer identity (program, pid, host).
    pub writer: String,
    /// One-line cause / state (as `blackbox info` says it).
    pub cause: String,
    /// Where the body went (for OTLP over HTTP, the `/v1/logs` URL).
    pub target: String,
    /// Where the attachment went, if one was asked for.
    pub attachment: Option<String>,
}

/// A failed shipment: one line, and how many retries were made (all parts
/// together).
#[derive(Debug, Clone)]
pub struct ShipError {
    /// What went wrong, one line.
    pub message: String,
    /// Retries made before giving up.
    pub retries: u32,
}

impl ShipError {
    pub(super) fn new(message: impl Into<String>) -> ShipError {
        ShipError {
            message: message.into(),
            retries: 0,
        }
    }
}

impl std::fmt::Display for ShipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShipError {}

/// Where an HTTP body in `format` goes: an OTLP body to `URL/v1/logs`.
pub(super) fn http_target(url: &str, format: Format) -> String {
    match format {
        Format::Ndjson => url.to_string(),
        Format::Otlp => {
            let base = url.trim_end_matches('/');
            if base.ends_with("/v1/logs") {
                base.to_string()
            } else {
                format!("{base}/v1/logs")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_goes_to_v1_logs_once() {
        assert_eq!(
            http_target("http://h:4318", Format::Otlp),
            "http://h:4318/v1/logs"
        );
        assert_eq!(
            http_target("http://h:4318/", Format::Otlp),
            "http://h:4318/v1/logs"
        );
        assert_eq!(
            http_target("http://h/otel/v1/logs", Format::Otlp),
            "http://h/otel/v1/logs"
        );
        assert_eq!(http_target("http://h/in", Format::Ndjson), "http://h/in");
    }
}
