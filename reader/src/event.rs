//! Decoding the standard event payload (`shm-layout.md`, "Standard event
//! payload"). Every length is checked against the bytes that are there.

use std::borrow::Cow;

use blackbox_recorder::layout::*;
use blackbox_recorder::Level;

/// A decoded event, borrowing from the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Level code as stored (see [`Event::level`]).
    pub level_code: u8,
    /// Event flags (`EVENT_FLAG_*`).
    pub flags: u16,
    /// Target (module path or component).
    pub target: Cow<'a, str>,
    /// Message.
    pub message: Cow<'a, str>,
    /// Typed fields, in the order they were written.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
}

/// A decoded field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Signed integer.
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(Cow<'a, str>),
    /// A value rendered with `Debug`.
    Debug(Cow<'a, str>),
}

impl Event<'_> {
    /// The level, if the code is a known one.
    pub fn level(&self) -> Option<Level> {
        Level::from_code(self.level_code)
    }

    /// Whether the writer cut something to fit.
    pub fn truncated(&self) -> bool {
        self.flags & blackbox_recorder::EVENT_FLAG_TRUNCATED != 0
    }
}

/// Why a payload is not a well-formed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError("event payload ends early"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn text(&mut self, n: usize) -> Result<Cow<'a, str>, DecodeError> {
        Ok(String::from_utf8_lossy(self.take(n)?))
    }
}

/// A level code as text: its name (`INFO`), or the number for a code the
/// layout does not define (`shm-layout.md`, 6).
pub fn level_text(code: u8) -> String {
    match Level::from_code(code) {
        Some(level) => level.as_str().to_string(),
        None => code.to_string(),
    }
}

/// Decodes the payload of a `KIND_EVENT` record.
///
/// # Errors
///
/// A length that runs past the payload, or an unknown field type.
pub fn decode_event(payload: &[u8]) -> Result<Event<'_>, DecodeError> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let fixed = c.take(EVENT_FIXED_LEN)?;
    let level_code = fixed[E_LEVEL];
    let field_count = fixed[E_FIELD_COUNT];
    let target_len = u16::from_le_bytes([fixed[E_TARGET_LEN], fixed[E_TARGET_LEN + 1]]);
    let message_len = u16::from_le_bytes([fixed[E_MESSAGE_LEN], fixed[E_MESSAGE_LEN + 1]]);
    let flags = u16::from_le_bytes([fixed[E_FLAGS], fixed[E_FLAGS + 1]]);
    let target = c.text(target_len as usize)?;
    let message = c.text(message_len as usize)?;
    let mut fields = Vec::with_capacity(field_count as usize);
    for _ in 0..field_count {
        let code = c.u8()?;
        let name_len = c.u8()?;
        let name = c.text(name_len as usize)?;
        let value = match code {
            FIELD_I64 => FieldValue::I64(c.u64()? as i64),
            FIELD_U64 => FieldValue::U64(c.u64()?),
            FIELD_F64 => FieldValue::F64(f64::from_bits(c.u64()?)),
            FIELD_BOOL => FieldValue::Bool(c.u8()? != 0),
            FIELD_STR => {
                let n = c.u16()?;
                FieldValue::Str(c.text(n as usize)?)
            }
            FIELD_DEBUG => {
                let n = c.u16()?;
                FieldValue::Debug(c.text(n as usize)?)
            }
            _ => return Err(DecodeError("unknown field type")),
        };
        fields.push((name, value));
    }
    Ok(Event {
        level_code,
        flags,
        target,
        message,
        fields,
    })
}
