//! Parsing sizes (`64KiB`), durations (`30s`) and levels for the flags.

use std::time::Duration;

/// Parses a byte size with an optional binary unit: `4096`, `64K`, `64KiB`,
/// `16M`, `16MiB`, `1G`, `1GiB` (K, M and G are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?} (use e.g. 64KiB or 16MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses `--max-body`: a size of at least [`crate::ship::MIN_MAX_BODY`].
pub fn parse_max_body(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    let min = crate::ship::MIN_MAX_BODY;
    if size < min {
        return Err(format!(
            "{text:?} is too small for a body (use at least {}KiB)",
            min >> 10
        ));
    }
    Ok(size)
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. 30s, 5m or 1h)"))
}

/// `read --last`: a number of records, or a span of time at the end of the
/// window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Last {
    /// The last N records.
    Records(usize),
    /// The records of the window's last DURATION.
    Window(Duration),
}

/// Parses `--last`: a bare number is a count of records (`100`), a number
/// with a unit is a duration (`5s`, `500ms`, `2m`).
pub fn parse_last(text: &str) -> Result<Last, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<usize>() {
        return Ok(Last::Records(n));
    }
    humantime::parse_duration(t).map(Last::Window).map_err(|_| {
        format!(
            "invalid --last {text:?}: give a number of records (100) or a duration with its unit (5s, 2m, 1h)"
        )
    })
}

/// Parses a level name.
pub fn parse_level(text: &str) -> Result<blackbox_recorder::Level, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn last_is_a_count_or_a_duration() {
        assert_eq!(parse_last("100"), Ok(Last::Records(100)));
        assert_eq!(parse_last("0"), Ok(Last::Records(0)));
        assert_eq!(parse_last("5s"), Ok(Last::Window(Duration::from_secs(5))));
        assert_eq!(
            parse_last("1m 30s"),
            Ok(Last::Window(Duration::from_secs(90)))
        );
        assert_eq!(
            parse_last("250ms"),
            Ok(Last::Window(Duration::from_millis(250)))
        );
        assert!(parse_last("many").unwrap_err().contains("many"));
        assert!(parse_last("-3").is_err());
    }

    #[test]
    fn max_body_is_at_least_4kib() {
        assert_eq!(parse_max_body("4KiB"), Ok(4096));
        assert_eq!(parse_max_body("16MiB"), Ok(16 << 20));
        assert!(parse_max_body("4095").is_err());
        assert!(parse_max_body("0").is_err());
    }

    #[test]
    fn durations_and_levels_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_level("WARN"), Ok(blackbox_recorder::Level::Warn));
        assert!(parse_level("loud").is_err());
    }
}

/// The shipment format, for `ship --format` and `on-failure --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShipFormat {
    /// One JSON object per line.
    Ndjson,
    /// OTLP/HTTP JSON logs.
    Otlp,
}

impl From<ShipFormat> for crate::ship::Format {
    fn from(f: ShipFormat) -> crate::ship::Format {
        match f {
            ShipFormat::Ndjson => crate::ship::Format::Ndjson,
            ShipFormat::Otlp => crate::ship::Format::Otlp,
        }
    }
}

/// A file shipped next to the body, for `ship --attach` and `watch
/// --attach`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// The window as Trace Event Format JSON (as `export --format
    /// trace-event` writes it).
    TraceEvent,
}

impl From<AttachKind> for crate::ship::Attachment {
    fn from(a: AttachKind) -> crate::ship::Attachment {
        match a {
            AttachKind::TraceEvent => crate::ship::Attachment::TraceEvent,
        }
    }
}

/// `--attach` with a destination: stdout carries the body alone.
pub fn check_attach(
    attach: Option<AttachKind>,
    to: &crate::ship::Destination,
) -> Result<(), crate::failure::Failure> {
    if attach.is_some() && *to == crate::ship::Destination::Stdout {
        return Err(crate::failure::Failure::error(
            "--attach needs a file or http(s) destination (--to -, stdout, carries the body alone)",
        ));
    }
    Ok(())
}

/// Which files of a shared directory a collector reads (`watch`,
/// `on-failure`): the flags of [`blackbox_reader::dir::Policy`].
#[derive(clap::Args, Debug, Clone)]
pub struct FileRules {
    /// Skip (unread) files larger than a ring of SIZE (its data region) can be.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_ring_size: u64,
    /// Also read files owned by UID (repeatable).
    #[arg(long, value_name = "UID")]
    pub owner: Vec<u32>,
    /// Read files of any owner.
    #[arg(long)]
    pub any_owner: bool,
}

impl FileRules {
    /// The scanner's policy.
    pub fn policy(&self) -> blackbox_reader::dir::Policy {
        use blackbox_recorder::layout::{data_offset, pm_len, MAX_STACK_DUMP, MIN_CHUNK_SIZE};
        // The file of a ring of this capacity is at most its data region
        // plus the header and the largest chunk table it can have (with
        // the smallest chunks), and the largest postmortem area.
        let chunks =
            (self.max_ring_size / u64::from(MIN_CHUNK_SIZE)).min(u64::from(u32::MAX)) as u32;
        blackbox_reader::dir::Policy {
            max_ring_size: self
                .max_ring_size
                .saturating_add(data_offset(chunks))
                .saturating_add(pm_len(MAX_STACK_DUMP)),
            owners: self.owner.clone(),
            any_owner: self.any_owner,
        }
    }
}
