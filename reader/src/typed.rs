//! Typed records (`KIND_TYPED`, `shm-layout.md` "Typed payload"): parse
//! the payload, decode the value back into the writer's type, or show any
//! value as JSON (the codec is self-describing CBOR).
//!
//! # Examples
//!
//! ```
//! use blackbox_reader::typed::{parse_typed, Typed};
//! use blackbox_recorder::layout::{TYPED_CODEC_CBOR, TYPED_FIXED_LEN};
//! use blackbox_recorder::typed::codec;
//!
//! // A payload as a writer lays it out: fixed part, type name, value.
//! let name = "app::Reading";
//! let mut payload = vec![name.len() as u8, 0, TYPED_CODEC_CBOR, 0];
//! payload.extend_from_slice(name.as_bytes());
//! payload.extend_from_slice(&codec::encode_to_vec(&(21.5f64, true)).unwrap());
//!
//! let typed: Typed<'_> = parse_typed(&payload).unwrap();
//! assert_eq!(typed.type_name, "app::Reading");
//! let (celsius, ok): (f64, bool) = typed.decode_as().unwrap();
//! assert_eq!((celsius, ok), (21.5, true));
//! assert_eq!(typed.to_json().unwrap(), serde_json::json!([21.5, true]));
//! # assert_eq!(payload.len(), TYPED_FIXED_LEN + name.len() + 5);
//! ```

use std::borrow::Cow;

use blackbox_recorder::layout::{
    KIND_TYPED, TYPED_CODEC_CBOR, TYPED_FIXED_LEN, T_CODEC, T_NAME_LEN,
};
use blackbox_recorder::typed::codec;
use serde::de::DeserializeOwned;

use crate::event::DecodeError;
use crate::ring::{Record, Snapshot};

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
        if self.codec != TYPED_CODEC_CBOR {
            return Err(TypedError::UnknownCodec(self.codec));
        }
        codec::decode(self.bytes).map_err(|e| TypedError::Decode(e.to_string()))
    }

    /// Decodes the value as a `T` if the record names `T`
    /// (`std::any::type_name::<T>()`, as `blackbox_recorder::Recorder::record`
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
        let wanted = blackbox_recorder::typed::stored_type_name(name);
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
    let wanted = blackbox_recorder::typed::stored_type_name(std::any::type_name::<T>());
    snap.records.iter().filter_map(move |r| {
        let typed = typed_record(snap, r).ok()?;
        (typed.type_name == wanted).then(|| (r, typed.decode_as()))
    })
}

impl Typed<'_> {
    /// The value as JSON, whatever its type: what `serde_json` would make
    /// of the writer's value, read from the CBOR alone. Map keys that are
    /// not text become their JSON text (as `serde_json` writes integer
    /// keys); byte strings become arrays of numbers; integers beyond 64
    /// bits and CBOR bignums become decimal strings; non-finite floats and
    /// CBOR `undefined` become null; tags are dropped (their content kept).
    ///
    /// # Errors
    ///
    /// An unknown codec, or bytes that are not one well-formed CBOR value.
    pub fn to_json(&self) -> Result<serde_json::Value, TypedError> {
        if self.codec != TYPED_CODEC_CBOR {
            return Err(TypedError::UnknownCodec(self.codec));
        }
        let value: ciborium::Value =
            codec::decode(self.bytes).map_err(|e| TypedError::Decode(e.to_string()))?;
        Ok(cbor_to_json(value))
    }
}

fn cbor_to_json(value: ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match value {
        C::Integer(i) => {
            let i = i128::from(i);
            if let Ok(v) = i64::try_from(i) {
                J::from(v)
            } else if let Ok(v) = u64::try_from(i) {
                J::from(v)
            } else {
                J::from(i.to_string())
            }
        }
        C::Bytes(b) => J::Array(b.into_iter().map(J::from).collect()),
        C::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        C::Text(t) => J::String(t),
        C::Bool(b) => J::Bool(b),
        C::Null => J::Null,
        // Tags 2 and 3: a bignum, its magnitude big-endian (RFC 8949,
        // 3.4.3); ciborium writes u128/i128 beyond 64 bits so.
        C::Tag(tag @ (2 | 3), inner) => match *inner {
            C::Bytes(b) if b.len() <= 16 => {
                let magnitude = b.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x));
                if tag == 2 {
                    J::from(magnitude.to_string())
                } else {
                    J::from(bignum_negative(magnitude))
                }
            }
            other => cbor_to_json(other),
        },
        C::Tag(_, inner) => cbor_to_json(*inner),
        C::Array(items) => J::Array(items.into_iter().map(cbor_to_json).collect()),
        C::Map(pairs) => J::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let key = match cbor_to_json(k) {
                        J::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

/// The decimal text of the CBOR negative bignum with `magnitude`: the
/// value is -1 - magnitude.
fn bignum_negative(magnitude: u128) -> String {
    match magnitude.checked_add(1) {
        Some(m) => format!("-{m}"),
        // -1 - (2^128 - 1) = -2^128.
        None => "-340282366920938463463374607431768211456".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let p = payload("x::Y", TYPED_CODEC_CBOR, &[1, 2, 3]);
        let t = parse_typed(&p).unwrap();
        assert_eq!(
            (t.type_name.as_ref(), t.codec, t.bytes),
            ("x::Y", TYPED_CODEC_CBOR, &[1u8, 2, 3][..])
        );
        assert!(parse_typed(&p[..3]).is_err());
        let mut long = p.clone();
        long[0] = 200;
        assert!(parse_typed(&long).is_err());
        assert!(parse_typed(&payload("", 1, &[])).is_ok());
    }

    /// The worked example of the typed payload in `shm-layout.md`:
    /// `app::Reading` holding `(21.5f64, true)`.
    #[test]
    fn the_worked_example_decodes() {
        let example: [u8; 21] = [
            0x0c, 0x00, 0x02, 0x00, 0x61, 0x70, 0x70, 0x3a, // name length 12, codec 2, "app:"
            0x3a, 0x52, 0x65, 0x61, 0x64, 0x69, 0x6e, 0x67, // ":Reading"
            0x82, 0xf9, 0x4d, 0x60, 0xf5, // [21.5 as a half float, true]
        ];
        let t = parse_typed(&example).unwrap();
        assert_eq!(t.type_name, "app::Reading");
        assert_eq!(t.codec, TYPED_CODEC_CBOR);
        assert_eq!(t.decode_as::<(f64, bool)>(), Ok((21.5, true)));
        assert_eq!(t.to_json(), Ok(json!([21.5, true])));
        let bytes = codec::encode_to_vec(&(21.5f64, true)).unwrap();
        assert_eq!(payload("app::Reading", TYPED_CODEC_CBOR, &bytes), example);
    }

    #[test]
    fn decode_checks_the_name_and_the_codec() {
        let bytes = codec::encode_to_vec(&42u64).unwrap();
        let p = payload(std::any::type_name::<u64>(), TYPED_CODEC_CBOR, &bytes);
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
        assert_eq!(t.to_json(), Err(TypedError::UnknownCodec(9)));
    }

    #[test]
    fn any_value_shows_as_serde_json_would_show_it() {
        use std::collections::BTreeMap;

        #[derive(serde::Serialize)]
        enum Shape {
            Dot,
            Circle { r: f32 },
            Pair(i8, i8),
        }
        #[derive(serde::Serialize)]
        struct Inner {
            name: &'static str,
            tags: Vec<String>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            id: u64,
            neg: i64,
            inner: Inner,
            shapes: Vec<Shape>,
            missing: Option<bool>,
            by_id: BTreeMap<u32, String>,
            unit: (),
        }
        let value = Outer {
            id: u64::MAX,
            neg: i64::MIN,
            inner: Inner {
                name: "x",
                tags: vec!["a".into(), "b".into()],
            },
            shapes: vec![Shape::Dot, Shape::Circle { r: 1.5 }, Shape::Pair(-1, 2)],
            missing: None,
            by_id: BTreeMap::from([(7, "seven".to_string())]),
            unit: (),
        };
        let p = payload(
            "t",
            TYPED_CODEC_CBOR,
            &codec::encode_to_vec(&value).unwrap(),
        );
        let shown = parse_typed(&p).unwrap().to_json().unwrap();
        assert_eq!(shown, serde_json::to_value(&value).unwrap());
    }

    #[test]
    fn what_json_has_no_place_for_is_shown_plainly() {
        let show = |bytes: &[u8]| {
            let p = payload("t", TYPED_CODEC_CBOR, bytes);
            parse_typed(&p).unwrap().to_json()
        };
        // u128::MAX: a positive bignum; i128::MIN: a negative one.
        let big = codec::encode_to_vec(&u128::MAX).unwrap();
        assert_eq!(show(&big), Ok(json!(u128::MAX.to_string())));
        let small = codec::encode_to_vec(&i128::MIN).unwrap();
        assert_eq!(show(&small), Ok(json!(i128::MIN.to_string())));
        // A byte string, NaN, a map with an array key, a tagged value.
        assert_eq!(show(&[0x42, 1, 2]), Ok(json!([1, 2])));
        assert_eq!(show(&[0xf9, 0x7e, 0x00]), Ok(json!(null)));
        assert_eq!(show(&[0xa1, 0x81, 0x01, 0x02]), Ok(json!({"[1]": 2})));
        assert_eq!(show(&[0xc1, 0x01]), Ok(json!(1)));
        // Not CBOR, or a value with bytes left over.
        assert!(show(&[0xff]).is_err());
        assert!(show(&[0x01, 0x02]).is_err());
    }
}
