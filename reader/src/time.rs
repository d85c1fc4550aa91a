//! Times as the reader shows them.

use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-23T19:49:29.123456789Z`.
pub fn rfc3339(unix_ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}
