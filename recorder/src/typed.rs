//! Typed records: any `T: Serialize`, stored as its type name and its
//! CBOR encoding (RFC 8949) in a `KIND_TYPED` record. Any reader shows the
//! value (`blackbox read` as JSON), and the reader library decodes it back
//! into `T`.
//!
//! ```text
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Order { id: u64, items: Vec<String>, total: f64 }
//!
//! rec.record(&Order { id: 7, items: vec!["tea".into()], total: 3.5 })?;
//! // later, in another process (the reader library):
//! let order: Order = blackbox_reader::typed::decode_record(&snap, record)?;
//! ```
//!
//! `Recorder::record` and `Recorder::record_as` come with the `typed`
//! feature; the [`codec`] (all a reader needs) with `typed-codec`.
//!
//! # The bytes
//!
//! The payload is `shm-layout.md`'s typed payload: a 4-byte fixed part (the
//! type name's length and the codec), the type name
//! ([`std::any::type_name`] unless given, at most [`MAX_TYPE_NAME`] bytes),
//! then the value as [`codec`] encodes it, up to the end of the payload.
//!
//! The codec is CBOR as serde's data model maps onto it (the `ciborium`
//! crate): self-describing, so a reader needs no schema and no Rust. A
//! struct is a map from field names to values, a sequence an array, an
//! enum variant its name (unit) or a one-entry map from its name to its
//! content, `None` null. Every record carries its field names: larger
//! records than a schema-less binary codec, traded for records that any
//! reader, in any language, can show.
//!
//! # Cost
//!
//! No allocation: the value is serialized twice, once to count its bytes
//! (so the record can be reserved at its exact size) and once straight into
//! the ring. A record larger than [`Recorder::max_record_len`] is refused
//! (and counted in the ring's header, like [`Recorder::append`]).
//!
//! [`Recorder::max_record_len`]: crate::Recorder::max_record_len
//! [`Recorder::append`]: crate::Recorder::append

use crate::layout::MAX_TYPE_NAME;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// The value codec: the one place that names the CBOR crate.
pub mod codec {
    use std::io;

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::CodecError;

    /// Deepest nesting a decode follows; deeper input is refused rather
    /// than exhausting the stack.
    pub const DECODE_DEPTH: usize = 128;

    /// Counts the bytes written to it.
    struct Count(usize);

    impl io::Write for Count {
        #[inline]
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Bytes `value` encodes to.
    ///
    /// # Errors
    ///
    /// The value's `Serialize` fails.
    pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
        let mut count = Count(0);
        ciborium::ser::into_writer(value, &mut count)
            .map_err(|e| CodecError(format!("cannot encode the value: {e}")))?;
        Ok(count.0)
    }

    /// Encodes `value`, handing its bytes to `out` in order; at most
    /// `limit` bytes are handed over, the rest is dropped (a value whose
    /// `Serialize` is not deterministic cannot overrun its reservation).
    /// Returns the bytes handed over.
    pub fn encode_to<T: Serialize + ?Sized>(
        value: &T,
        limit: usize,
        out: &mut impl FnMut(&[u8]),
    ) -> usize {
        struct To<'o, F> {
            out: &'o mut F,
            left: usize,
        }
        impl<F: FnMut(&[u8])> io::Write for To<'_, F> {
            #[inline]
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                let n = bytes.len().min(self.left);
                (self.out)(&bytes[..n]);
                self.left -= n;
                if n < bytes.len() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut to = To { out, left: limit };
        let _ = ciborium::ser::into_writer(value, &mut to);
        limit - to.left
    }

    /// Encodes `value` into a new vector (for tests and tools; the
    /// recorder does not allocate).
    ///
    /// # Errors
    ///
    /// As [`encoded_len`].
    pub fn encode_to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out)
            .map_err(|e| CodecError(format!("cannot encode the value: {e}")))?;
        Ok(out)
    }

    /// Decodes a `T` from exactly `bytes`.
    ///
    /// Bounded: nesting deeper than [`DECODE_DEPTH`] is refused, and no
    /// length in the input is trusted beyond the bytes that are there.
    ///
    /// # Errors
    ///
    /// The bytes end early, hold an invalid value for `T`, nest too deep,
    /// or have bytes left over after the value (not a `T`).
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let mut rest = bytes;
        let value = ciborium::de::from_reader_with_recursion_limit(&mut rest, DECODE_DEPTH)
            .map_err(|e| CodecError(format!("cannot decode the value: {e}")))?;
        if !rest.is_empty() {
            return Err(CodecError(format!(
                "cannot decode the value: {} of its {} bytes are left over (another type?)",
                rest.len(),
                bytes.len()
            )));
        }
        Ok(value)
    }
}

/// The type name a writer stores for `name`: cut to [`MAX_TYPE_NAME`]
/// bytes on a character boundary.
pub fn stored_type_name(name: &str) -> &str {
    crate::event::truncate_str(name, MAX_TYPE_NAME)
}

#[cfg(feature = "typed")]
mod writer {
    use serde::Serialize;

    use super::{codec, stored_type_name, CodecError};
    use crate::error::AppendError;
    use crate::event::Sink;
    use crate::layout::{KIND_TYPED, TYPED_CODEC_CBOR, TYPED_FIXED_LEN};
    use crate::payload::Payload;
    use crate::recorder::{Recorder, Seq};

    /// Why [`Recorder::record`] did not store a value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum RecordError {
        /// The value could not be encoded (nothing was reserved).
        Encode(CodecError),
        /// The append failed (too large for the ring, or lapped); counted in
        /// the ring.
        Append(AppendError),
    }

    impl std::fmt::Display for RecordError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                RecordError::Encode(e) => e.fmt(f),
                RecordError::Append(e) => e.fmt(f),
            }
        }
    }

    impl std::error::Error for RecordError {}

    /// A typed payload: the fixed part, the name, the encoded value.
    struct TypedPayload<'a, T: ?Sized> {
        name: &'a str,
        value: &'a T,
        value_len: usize,
    }

    impl<T: Serialize + ?Sized> Payload for TypedPayload<'_, T> {
        fn len(&self) -> usize {
            TYPED_FIXED_LEN + self.name.len() + self.value_len
        }

        fn write(&self, sink: &mut impl Sink) {
            let mut fixed = [0u8; TYPED_FIXED_LEN];
            fixed[..2].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
            fixed[2] = TYPED_CODEC_CBOR;
            sink.put(&fixed);
            sink.put(self.name.as_bytes());
            let written = codec::encode_to(self.value, self.value_len, &mut |b| sink.put(b));
            // A Serialize that wrote less the second time: zeros keep the
            // record at its reserved length (the reader fails to decode it).
            let mut short = self.value_len - written;
            while short > 0 {
                let n = short.min(16);
                sink.put(&[0u8; 16][..n]);
                short -= n;
            }
        }
    }

    impl Recorder {
        /// Appends `value` as a typed record named by its type
        /// ([`std::any::type_name`]), encoded with [`codec`].
        ///
        /// No allocation, no lock, and no system call once the thread has
        /// appended before (as [`Recorder::log`]); the value is serialized
        /// twice: once to size the record, once into the ring.
        ///
        /// # Examples
        ///
        /// ```
        /// # let dir = std::env::temp_dir().join(format!("record-doc-{}", std::process::id()));
        /// # std::fs::create_dir_all(&dir).unwrap();
        /// use blackbox_recorder::Recorder;
        ///
        /// #[derive(serde::Serialize)]
        /// struct Order {
        ///     id: u64,
        ///     items: Vec<&'static str>,
        ///     total: f64,
        /// }
        ///
        /// let rec = Recorder::create(dir.join("app.ring"), 1 << 20).unwrap();
        /// rec.record(&Order { id: 7, items: vec!["tea"], total: 3.5 }).unwrap();
        /// # std::fs::remove_dir_all(&dir).unwrap();
        /// ```
        ///
        /// # Errors
        ///
        /// [`RecordError::Encode`] if the value's `Serialize` fails;
        /// [`RecordError::Append`] with [`AppendError::TooLarge`] if the
        /// record exceeds [`Recorder::max_record_len`], or
        /// [`AppendError::Dropped`] as for [`Recorder::log`].
        pub fn record<T: Serialize + ?Sized>(&self, value: &T) -> Result<Seq, RecordError> {
            self.record_as(std::any::type_name::<T>(), value)
        }

        /// Appends `value` as a typed record named `type_name` (a stable
        /// name of your choosing, instead of the compiler's
        /// [`std::any::type_name`], which may change between compiler
        /// versions). Names longer than `MAX_TYPE_NAME` are cut.
        ///
        /// # Errors
        ///
        /// As [`Recorder::record`].
        pub fn record_as<T: Serialize + ?Sized>(
            &self,
            type_name: &str,
            value: &T,
        ) -> Result<Seq, RecordError> {
            let value_len = codec::encoded_len(value).map_err(RecordError::Encode)?;
            let payload = TypedPayload {
                name: stored_type_name(type_name),
                value,
                value_len,
            };
            self.shared()
                .append_payload(KIND_TYPED, &payload)
                .map_err(RecordError::Append)
        }
    }
}

#[cfg(feature = "typed")]
pub use writer::RecordError;

#[cfg(test)]
mod tests {
    use super::codec;

    #[test]
    fn the_codec_is_cbor_as_serde_maps_onto_it() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum E {
            A,
            B(u8),
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct S {
            n: u32,
            s: String,
            o: Option<u8>,
            e: Vec<E>,
        }
        let value = S {
            n: 7,
            s: "hi".into(),
            o: None,
            e: vec![E::A, E::B(5)],
        };
        let bytes = codec::encode_to_vec(&value).unwrap();
        // RFC 8949: a map of 4 pairs; "n": 7; "s": "hi"; "o": null;
        // "e": [ "A", { "B": 5 } ].
        assert_eq!(
            bytes,
            [
                0xa4, 0x61, b'n', 0x07, 0x61, b's', 0x62, b'h', b'i', 0x61, b'o', 0xf6, 0x61, b'e',
                0x82, 0x61, b'A', 0xa1, 0x61, b'B', 0x05
            ]
        );
        assert_eq!(codec::encoded_len(&value).unwrap(), bytes.len());
        assert_eq!(codec::decode::<S>(&bytes).unwrap(), value);
    }

    #[test]
    fn decode_refuses_leftovers_short_input_huge_lengths_and_deep_nesting() {
        let bytes = codec::encode_to_vec(&(1u64, 2u64)).unwrap();
        assert!(codec::decode::<(u64, u64)>(&[bytes.clone(), vec![0]].concat()).is_err());
        assert!(codec::decode::<(u64, u64)>(&bytes[..2]).is_err(), "short");
        // A text string claiming 2^40 bytes, with three: refused, not
        // allocated.
        let hostile = [0x7b, 0, 0, 1, 0, 0, 0, 0, 0, b'a', b'b', b'c'];
        let err = codec::decode::<String>(&hostile).unwrap_err();
        assert!(err.to_string().contains("decode"), "{err}");
        // Arrays nested 10,000 deep.
        let deep = vec![0x81u8; 10_000];
        assert!(codec::decode::<serde_json::Value>(&deep).is_err());
    }

    #[test]
    fn encode_to_stops_at_its_limit() {
        let mut got = Vec::new();
        let n = codec::encode_to(&[1u64 << 40, 2, 3], 5, &mut |b| got.extend_from_slice(b));
        assert_eq!(n, 5);
        assert_eq!(got.len(), 5);
    }
}
