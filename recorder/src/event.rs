//! The standard event payload: level, target, message and typed fields,
//! encoded byte for byte as `shm-layout.md` ("Standard event payload") says.

use crate::layout::{
    FIELD_BOOL, FIELD_DEBUG, FIELD_F64, FIELD_I64, FIELD_STR, FIELD_U64, LEVEL_DEBUG, LEVEL_ERROR,
    LEVEL_INFO, LEVEL_TRACE, LEVEL_WARN,
};

/// Severity of an event, from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very verbose detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the program handled.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The level's code on disk (`LEVEL_*` in the layout).
    pub const fn code(self) -> u8 {
        match self {
            Level::Trace => LEVEL_TRACE,
            Level::Debug => LEVEL_DEBUG,
            Level::Info => LEVEL_INFO,
            Level::Warn => LEVEL_WARN,
            Level::Error => LEVEL_ERROR,
        }
    }

    /// The level for a code on disk, if the code is known.
    pub const fn from_code(code: u8) -> Option<Level> {
        match code {
            LEVEL_TRACE => Some(Level::Trace),
            LEVEL_DEBUG => Some(Level::Debug),
            LEVEL_INFO => Some(Level::Info),
            LEVEL_WARN => Some(Level::Warn),
            LEVEL_ERROR => Some(Level::Error),
            _ => None,
        }
    }

    /// Upper-case name: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    /// Parses a level name in any case (`info`, `WARN`, `warning`).
    fn from_str(s: &str) -> Result<Level, String> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(format!(
                "unknown level {s:?} (use trace, debug, info, warn or error)"
            )),
        }
    }
}

/// A typed field value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
    /// A value rendered with its `Debug` implementation.
    Debug(&'a str),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<u64> for Value<'_> {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}

/// A named field of an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field<'a> {
    /// The field's name (at most 255 bytes are kept).
    pub name: &'a str,
    /// The field's value.
    pub value: Value<'a>,
}

impl<'a> Field<'a> {
    /// A field named `name` with `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use blackbox_recorder::{Field, Value};
    /// let f = Field::new("attempt", 3u64);
    /// assert_eq!(f.value, Value::U64(3));
    /// ```
    pub fn new(name: &'a str, value: impl Into<Value<'a>>) -> Field<'a> {
        Field {
            name,
            value: value.into(),
        }
    }
}

/// Longest target kept.
pub(crate) const MAX_TARGET: usize = 1024;
/// Longest field name kept.
pub(crate) const MAX_NAME: usize = 255;
/// Longest string field value kept.
pub(crate) const MAX_STR_VALUE: usize = 4096;
/// Most fields kept.
pub(crate) const MAX_FIELDS: usize = 64;

/// Event flag: something (message, a string, fields) was cut to fit.
pub const EVENT_FLAG_TRUNCATED: u16 = 1;

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary. Inlined: on the append path the text almost always fits.
#[inline]
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    cut_str(s, max)
}

#[cold]
fn cut_str(s: &str, max: usize) -> &str {
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Encoded size of a value, after the same cut that [`encode_field`] makes.
pub(crate) fn value_len(value: &Value<'_>) -> usize {
    match value {
        Value::I64(_) | Value::U64(_) | Value::F64(_) => 8,
        Value::Bool(_) => 1,
        Value::Str(s) | Value::Debug(s) => 2 + truncate_str(s, MAX_STR_VALUE).len(),
    }
}

/// Encoded size of a field, after the same cuts that [`encode_field`] makes.
pub(crate) fn field_len(field: &Field<'_>) -> usize {
    2 + truncate_str(field.name, MAX_NAME).len() + value_len(&field.value)
}

/// Whether [`encode_field`] cuts something of this field.
pub(crate) fn field_is_cut(field: &Field<'_>) -> bool {
    field.name.len() > MAX_NAME
        || matches!(field.value, Value::Str(s) | Value::Debug(s) if s.len() > MAX_STR_VALUE)
}

/// Receives the bytes of a record in order.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

pub(crate) fn encode_field(sink: &mut impl Sink, field: &Field<'_>) {
    let name = truncate_str(field.name, MAX_NAME);
    let code = match field.value {
        Value::I64(_) => FIELD_I64,
        Value::U64(_) => FIELD_U64,
        Value::F64(_) => FIELD_F64,
        Value::Bool(_) => FIELD_BOOL,
        Value::Str(_) => FIELD_STR,
        Value::Debug(_) => FIELD_DEBUG,
    };
    sink.put(&[code, name.len() as u8]);
    sink.put(name.as_bytes());
    match field.value {
        Value::I64(v) => sink.put(&v.to_le_bytes()),
        Value::U64(v) => sink.put(&v.to_le_bytes()),
        Value::F64(v) => sink.put(&v.to_bits().to_le_bytes()),
        Value::Bool(v) => sink.put(&[v as u8]),
        Value::Str(s) | Value::Debug(s) => {
            let s = truncate_str(s, MAX_STR_VALUE);
            sink.put(&(s.len() as u16).to_le_bytes());
            sink.put(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_whole() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
    }

    #[test]
    fn levels_round_trip_and_order() {
        for level in [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ] {
            assert_eq!(Level::from_code(level.code()), Some(level));
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
        }
        assert!(Level::Warn > Level::Info);
        assert_eq!(Level::from_code(0), None);
    }
}
