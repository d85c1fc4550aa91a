//! Typed records (`KIND_TYPED`, `shm-layout.md` "Typed payload"): parse
//! the payload, decode the value back into the writer's type, or render it
//! as JSON through a table of known types.
//!
//! # Examples
//!
//! ```
//! use reader::typed::{parse_typed, Typed};
//! use recorder::layout::{TYPED_CODEC_BINCODE, TYPED_FIXED_LEN};
//! use recorder::typed::codec;
//!
//! // A payload as a writer lays it out: fixed part, type name, value.
//! let name = "app::Reading";
//! let mut payload = vec![name.len() as u8, 0, TYPED_CODEC_BINCODE, 0];
//! payload.extend_from_slice(name.as_bytes());
//! payload.extend_from_slice(&codec::encode_to_vec(&(21.5f64, true)).unwrap());
//!
//! let typed: Typed<'_> = parse_typed(&payload).unwrap();
//! assert_eq!(typed.type_name, "app::Reading");
//! let (celsius, ok): (f64, bool) = typed.decode_as().unwrap();
//! assert_eq!((celsius, ok), (21.5, true));
//! # assert_eq!(payload.len(), TYPED_FIXED_LEN + name.len() + 9);
//! ```

use std::borrow::Cow;
use std::collections::HashMap;

use recorder::layout::{KIND_TYPED, TYPED_CODEC_BINCODE, TYPED_FIXED_LEN, T_CODEC, T_NAME_LEN};
use recorder::typed::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::DecodeError;
use crate::{Record, Snapshot};

/// A parsed typed payload, borrowing from the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed<'a> {
    /// The type name the writer stored (by default Rust's
    /// `std::any::type_name` of the value's type).
    pub type_name: Cow<'a, str>,
    /// The value's codec (`TYPED_CODEC_*`).
    pub codec: u8,
    /// The encoded value.
    pub bytes: &'a [u8],
}

/// Why a typed value could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypedError {
    /// The record is not a typed record.
    NotTyped {
        /// The record's kind.
        kind: u16,
    },
    /// The payload is malformed.
    Malformed(DecodeError),
    /// The record holds another type than the one asked for.
    OtherType {
        /// The type name in the record.
        found: String,
        /// The type name asked for.
        wanted: String,
    },
    /// The value's codec is unknown to this reader.
    UnknownCodec(u8),
    /// The bytes do not decode as the type asked for.
    Decode(String),
}

impl std::fmt::Display for TypedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypedError::NotTyped { kind } => {
                write!(f, "record of kind {kind} is not a typed record")
            }
            TypedError::Malformed(e) => write!(f, "malformed typed record: {e}"),
            TypedError::OtherType { found, wanted } => {
                write!(f, "the record holds a {found}, not a {wanted}")
            }
            TypedError::UnknownCodec(c) => write!(f, "unknown value codec {c}"),
            TypedError::Decode(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for TypedError {}

/// Parses the payload of a `KIND_TYPED` record. Every length is checked
/// against the payload.
///
/// # Errors
///
/// A payload shorter than the fixed part, or a type name that runs past it.
pub fn parse_typed(payload: &[u8]) -> Result<Typed<'_>, DecodeError> {
    let fixed = payload
        .get(..TYPED_FIXED_LEN)
        .ok_or(DecodeError("typed payload ends early"))?;
    let name_len = u16::from_le_bytes([fixed[T_NAME_LEN], fixed[T_NAME_LEN + 1]]) as usize;
    let codec = fixed[T_CODEC];
    let name = payload
        .get(TYPED_FIXED_LEN..TYPED_FIXED_LEN + name_len)
        .ok_or(DecodeError("typed payload's type name runs past its end"))?;
    Ok(Typed {
        type_name: String::from_utf8_lossy(name),
        codec,
        bytes: &payload[TYPED_FIXED_LEN + name_len..],
    })
}

impl Typed<'_> {
    /// Decodes the value as a `T`, whatever type name the record carries.
    ///
    /// # Errors
    ///
    /// An unknown codec, or bytes that are not a `T`.
    pub fn decode_as<T: DeserializeOwned>(&self) -> Result<T, TypedError> {
        if self.codec != TYPED_CODEC_BINCODE {
            return Err(TypedError::UnknownCodec(self.codec));
        }
        codec::decode(self.bytes).map_err(|e| TypedError::Decode(e.to_string()))
    }

    /// Decodes the value as a `T` if the record names `T`
    /// (`std::any::type_name::<T>()`, as `recorder::Recorder::record`
    /// stores it).
    ///
    /// # Errors
    ///
    /// [`TypedError::OtherType`] if the record names another type; else as
    /// [`Typed::decode_as`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, TypedError> {
        self.decode_named(std::any::type_name::<T>())
    }

    /// Decodes the value as a `T` if the record's type name is `name` (for
    /// values written with `record_as`).
    ///
    /// # Errors
    ///
    /// As [`Typed::decode`].
    pub fn decode_named<T: DeserializeOwned>(&self, name: &str) -> Result<T, TypedError> {
        let wanted = recorder::typed::stored_type_name(name);
        if self.type_name != wanted {
            return Err(TypedError::OtherType {
                found: self.type_name.to_string(),
                wanted: wanted.to_string(),
            });
        }
        self.decode_as()
    }
}

/// Parses `record` of `snap` as a typed record.
///
/// # Errors
///
/// [`TypedError::NotTyped`] for another kind; [`TypedError::Malformed`].
pub fn typed_record<'a>(snap: &'a Snapshot, record: &Record) -> Result<Typed<'a>, TypedError> {
    if record.kind != KIND_TYPED {
        return Err(TypedError::NotTyped { kind: record.kind });
    }
    parse_typed(snap.payload(record)).map_err(TypedError::Malformed)
}

/// Decodes `record` of `snap` as a `T` (checking the type name).
///
/// # Errors
///
/// As [`typed_record`] and [`Typed::decode`].
pub fn decode_record<T: DeserializeOwned>(
    snap: &Snapshot,
    record: &Record,
) -> Result<T, TypedError> {
    typed_record(snap, record)?.decode()
}

/// Every typed record of `snap` that names `T`, decoded, oldest first,
/// with the record it came from. Records that name `T` but do not decode
/// are returned with their error.
pub fn records_of<'s, T: DeserializeOwned>(
    snap: &'s Snapshot,
) -> impl Iterator<Item = (&'s Record, Result<T, TypedError>)> + 's {
    let wanted = recorder::typed::stored_type_name(std::any::type_name::<T>());
    snap.records.iter().filter_map(move |r| {
        let typed = typed_record(snap, r).ok()?;
        (typed.type_name == wanted).then(|| (r, typed.decode_as()))
    })
}

/// Renders a typed value as JSON.
type ToJson = fn(&[u8]) -> Result<serde_json::Value, TypedError>;

/// Known types by name, for showing typed records as JSON. A program that
/// embeds the reader registers its own types; the `blackbox` CLI knows only
/// its demo's and shows every other typed record as its type name and hex
/// bytes.
///
/// # Examples
///
/// ```
/// use reader::typed::{parse_typed, JsonTypes};
/// # use recorder::layout::TYPED_CODEC_BINCODE;
/// # let name = std::any::type_name::<(u64, String)>();
/// # let mut payload = vec![name.len() as u8, 0, TYPED_CODEC_BINCODE, 0];
/// # payload.extend_from_slice(name.as_bytes());
/// # payload.extend(recorder::typed::codec::encode_to_vec(&(7u64, "x")).unwrap());
///
/// let mut types = JsonTypes::new();
/// types.register::<(u64, String)>();
/// let json = types.to_json(&parse_typed(&payload).unwrap()).unwrap().unwrap();
/// assert_eq!(json, serde_json::json!([7, "x"]));
/// ```
#[derive(Default, Clone)]
pub struct JsonTypes {
    by_name: HashMap<String, ToJson>,
}

impl std::fmt::Debug for JsonTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl JsonTypes {
    /// An empty table.
    pub fn new() -> JsonTypes {
        JsonTypes::default()
    }

    /// Knows `T` by `std::any::type_name::<T>()`.
    pub fn register<T: DeserializeOwned + Serialize + 'static>(&mut self) -> &mut Self {
        self.register_as::<T>(std::any::type_name::<T>())
    }

    /// Knows `T` by `name` (for values written with `record_as`).
    pub fn register_as<T: DeserializeOwned + Serialize + 'static>(
        &mut self,
        name: &str,
    ) -> &mut Self {
        fn to_json<T: DeserializeOwned + Serialize>(
            bytes: &[u8],
        ) -> Result<serde_json::Value, TypedError> {
            let value: T = codec::decode(bytes).map_err(|e| TypedError::Decode(e.to_string()))?;
            serde_json::to_value(&value).map_err(|e| TypedError::Decode(e.to_string()))
        }
        self.by_name.insert(
            recorder::typed::stored_type_name(name).to_string(),
            to_json::<T>,
        );
        self
    }

    /// The value as JSON: `None` if the type is not in the table (or its
    /// codec is unknown), else the decoded value or why it did not decode.
    pub fn to_json(&self, typed: &Typed<'_>) -> Option<Result<serde_json::Value, TypedError>> {
        if typed.codec != TYPED_CODEC_BINCODE {
            return None;
        }
        let to_json = self.by_name.get(typed.type_name.as_ref())?;
        Some(to_json(typed.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(name: &str, codec_id: u8, value: &[u8]) -> Vec<u8> {
        let mut p = (name.len() as u16).to_le_bytes().to_vec();
        p.extend_from_slice(&[codec_id, 0]);
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(value);
        p
    }

    #[test]
    fn parses_and_checks_every_length() {
        let p = payload("x::Y", TYPED_CODEC_BINCODE, &[1, 2, 3]);
        let t = parse_typed(&p).unwrap();
        assert_eq!(
            (t.type_name.as_ref(), t.codec, t.bytes),
            ("x::Y", 1, &[1u8, 2, 3][..])
        );
        assert!(parse_typed(&p[..3]).is_err());
        let mut long = p.clone();
        long[0] = 200;
        assert!(parse_typed(&long).is_err());
        assert!(parse_typed(&payload("", 1, &[])).is_ok());
    }

    /// The worked example of the typed payload (the spec text handed to
    /// `shm-layout.md`): `app::Reading` holding `(21.5f64, true)`.
    #[test]
    fn the_worked_example_decodes() {
        let example: [u8; 25] = [
            0x0c, 0x00, 0x01, 0x00, 0x61, 0x70, 0x70,
            0x3a, // name length 12, codec 1, reserved, "app:"
            0x3a, 0x52, 0x65, 0x61, 0x64, 0x69, 0x6e, 0x67, // ":Reading"
            0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x35, 0x40, // 21.5 as f64 bits, LE
            0x01, // true
        ];
        let t = parse_typed(&example).unwrap();
        assert_eq!(t.type_name, "app::Reading");
        assert_eq!(t.codec, TYPED_CODEC_BINCODE);
        assert_eq!(t.decode_as::<(f64, bool)>(), Ok((21.5, true)));
        let bytes = codec::encode_to_vec(&(21.5f64, true)).unwrap();
        assert_eq!(
            payload("app::Reading", TYPED_CODEC_BINCODE, &bytes),
            example
        );
    }

    #[test]
    fn decode_checks_the_name_and_the_codec() {
        let bytes = codec::encode_to_vec(&42u64).unwrap();
        let p = payload(std::any::type_name::<u64>(), TYPED_CODEC_BINCODE, &bytes);
        let t = parse_typed(&p).unwrap();
        assert_eq!(t.decode::<u64>(), Ok(42));
        assert!(matches!(
            t.decode::<i64>(),
            Err(TypedError::OtherType { .. })
        ));
        assert_eq!(t.decode_as::<i64>(), Ok(42));
        let p = payload("u64", 9, &bytes);
        let t = parse_typed(&p).unwrap();
        assert_eq!(t.decode_as::<u64>(), Err(TypedError::UnknownCodec(9)));
        assert!(JsonTypes::new().to_json(&t).is_none());
    }
}
