//! Delivering prepared bodies: to stdout or a file in one `write_all`, or
//! one HTTP POST per part, each retried with exponential backoff (policy in
//! the module docs of [`crate::ship`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;

use super::options::{ShipError, ShipOptions};

/// No wait between tries is longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The mode of a destination file that `ship` creates.
const FILE_MODE: u32 = 0o640;
/// How much of a refusing answer's body goes into the error line.
const ANSWER_EXCERPT: usize = 200;

/// Writes `body` to standard output in one `write_all`.
pub(super) async fn to_stdout(body: Vec<u8>) -> Result<(), ShipError> {
    blocking(move || write_stdout(&body)).await
}

/// Appends `body` to the file at `path` in one `write_all`, then syncs it.
pub(super) async fn to_file(path: PathBuf, body: Vec<u8>) -> Result<(), ShipError> {
    blocking(move || append_file(path, &body)).await
}

/// Runs a blocking write off the async executor (the runtime's blocking
/// pool), so a slow disk does not stall a collector's other work.
async fn blocking(
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), ShipError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ShipError::new),
        Err(e) => Err(ShipError::new(format!("the writing task failed: {e}"))),
    }
}

fn write_stdout(body: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(body)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Appends `body` to `path` with `O_APPEND` in one `write_all`, then
/// `fdatasync`: a shipment is on disk, whole, when this returns.
fn append_file(path: PathBuf, body: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))?;
    file.write_all(body)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

/// Writes `body` to `path` whole: to a temporary file next to it, synced,
/// then renamed over it.
pub(super) async fn replace_file(path: PathBuf, body: Vec<u8>) -> Result<(), ShipError> {
    blocking(move || {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&body).and_then(|()| f.sync_data()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    })
    .await
}

/// One failed try: what happened, and whether another try may help.
struct Failed {
    message: String,
    retry: bool,
    /// The server's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
}

/// The HTTP client for one shipment's POSTs (its parts share connections).
pub(super) fn client(opts: &ShipOptions) -> Result<reqwest::Client, ShipError> {
    reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ShipError::new(format!("cannot set up the HTTP client: {}", chain(&e))))
}

/// POSTs `body` to `url` with `client`, up to `opts.attempts` tries;
/// returns the retries it took.
pub(super) async fn post(
    client: &reqwest::Client,
    url: &str,
    opts: &ShipOptions,
    key: &str,
    body: Vec<u8>,
) -> Result<u32, ShipError> {
    post_as(client, url, opts, opts.format.content_type(), key, body).await
}

/// [`post`] with a `Content-Type` of its own (an attachment's).
pub(super) async fn post_as(
    client: &reqwest::Client,
    url: &str,
    opts: &ShipOptions,
    content_type: &'static str,
    key: &str,
    body: Vec<u8>,
) -> Result<u32, ShipError> {
    let key_header = HeaderValue::from_str(key)
        .map_err(|_| ShipError::new(format!("the key {key:?} cannot be an HTTP header value")))?;
    let attempts = opts.attempts.max(1);
    let started = Instant::now();
    let mut delay = opts.backoff;
    let mut retries = 0;
    loop {
        let failed = match try_post(client, url, content_type, &key_header, body.clone()).await {
            Ok(()) => return Ok(retries),
            Err(failed) => failed,
        };
        if !failed.retry || retries + 1 >= attempts {
            let tries = retries + 1;
            let message = if failed.retry {
                format!(
                    "{url}: {} (gave up after {tries} tries in {:.1} s)",
                    failed.message,
                    started.elapsed().as_secs_f64()
                )
            } else {
                format!("{url}: {}", failed.message)
            };
            return Err(ShipError { message, retries });
        }
        let wait = failed.retry_after.map_or(delay, |after| after.max(delay));
        tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
        delay = delay.saturating_mul(2).min(MAX_BACKOFF);
        retries += 1;
    }
}

async fn try_post(
    client: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    key: &HeaderValue,
    body: Vec<u8>,
) -> Result<(), Failed> {
    let answer = client
        .post(url)
        .header(CONTENT_TYPE, content_type)
        .header("Idempotency-Key", key.clone())
        .header(USER_AGENT, concat!("blackbox/", env!("CARGO_PKG_VERSION")))
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            return Err(Failed {
                // A request that cannot even be built will not get better.
                retry: !e.is_builder(),
                message: chain(&e.without_url()),
                retry_after: None,
            });
        }
    };
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let retry = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = answer.text().await.unwrap_or_default();
    let mut message = format!("answered HTTP {status}");
    if let Some(location) = location.filter(|_| status.is_redirection()) {
        message.push_str(&format!(
            " (redirect to {location} not followed: ship to that URL)"
        ));
    }
    let excerpt = one_line(&text, ANSWER_EXCERPT);
    if !excerpt.is_empty() {
        message.push_str(&format!(": {excerpt}"));
    }
    Err(Failed {
        message,
        retry,
        retry_after,
    })
}

/// An error and its sources, `a: b: c`, with repeats dropped (reqwest's
/// top error only says "error sending request"; the cause is below).
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `text` on one line, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > max {
        let cut: String = joined.chars().take(max).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_one_short_line() {
        assert_eq!(one_line("bad\n  body\r\n", 10), "bad body");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
