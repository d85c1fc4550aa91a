//! What a record carries, and how its bytes reach a chunk: the payload
//! kinds (raw bytes, events) and the writer of one record (steps 4 to 6 of
//! `shm-layout.md`, 7.2).

use crate::checksum::{Engine, Portable, Running};
use crate::event::{
    encode_field, field_is_cut, field_len, truncate_str, Field, Level, Sink, EVENT_FLAG_TRUNCATED,
    MAX_FIELDS, MAX_TARGET,
};
use crate::layout::*;
use crate::mapping::{ChunkCursor, RecordWriter};

/// A record's payload: its length, and how to write it.
pub(crate) trait Payload {
    fn len(&self) -> usize;
    fn write(&self, sink: &mut impl Sink);
    /// The payload as one piece, where it is one (raw bytes): written and
    /// checksummed straight from the caller's bytes.
    #[inline(always)]
    fn as_bytes(&self) -> Option<&[u8]> {
        None
    }
}

/// Opaque bytes (`KIND_RAW`).
pub(crate) struct RawPayload<'a>(pub(crate) &'a [u8]);

impl Payload for RawPayload<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn write(&self, sink: &mut impl Sink) {
        sink.put(self.0);
    }

    #[inline(always)]
    fn as_bytes(&self) -> Option<&[u8]> {
        Some(self.0)
    }
}

/// An event cut to fit a ring's record limit (`KIND_EVENT`).
pub(crate) struct EventPayload<'a, 'f> {
    level: Level,
    flags: u16,
    target: &'a str,
    message: &'a str,
    fields: &'a [Field<'f>],
    fields_len: usize,
}

impl<'a, 'f> EventPayload<'a, 'f> {
    /// Fits the event into `max` bytes of record: the target is capped, then
    /// trailing fields are dropped, then the message is cut (at a character
    /// boundary); anything cut sets [`EVENT_FLAG_TRUNCATED`].
    #[inline]
    pub(crate) fn fit(
        max: usize,
        level: Level,
        target: &'a str,
        message: &'a str,
        fields: &'a [Field<'f>],
    ) -> Self {
        let capped_target = truncate_str(target, MAX_TARGET.min(max / 4));
        let given = fields.len();
        let mut fields = &fields[..given.min(MAX_FIELDS)];
        let mut flags = if capped_target.len() < target.len()
            || given > MAX_FIELDS
            || fields.iter().any(field_is_cut)
        {
            EVENT_FLAG_TRUNCATED
        } else {
            0
        };
        let fixed = RECORD_HEADER_LEN + EVENT_FIXED_LEN + capped_target.len();
        let mut fields_len: usize = fields.iter().map(field_len).sum();
        while fixed + fields_len > max {
            // The fixed part alone always fits: max >= 960 > 32 + max / 4.
            let (last, rest) = fields.split_last().expect("the fixed part fits");
            fields_len -= field_len(last);
            fields = rest;
            flags |= EVENT_FLAG_TRUNCATED;
        }
        let room = (max - fixed - fields_len).min(u16::MAX as usize);
        let cut_message = truncate_str(message, room);
        if cut_message.len() < message.len() {
            flags |= EVENT_FLAG_TRUNCATED;
        }
        EventPayload {
            level,
            flags,
            target: capped_target,
            message: cut_message,
            fields,
            fields_len,
        }
    }
}

impl Payload for EventPayload<'_, '_> {
    fn len(&self) -> usize {
        EVENT_FIXED_LEN + self.target.len() + self.message.len() + self.fields_len
    }

    #[inline]
    fn write(&self, sink: &mut impl Sink) {
        let mut fixed = [0u8; EVENT_FIXED_LEN];
        fixed[E_LEVEL] = self.level.code();
        fixed[E_FIELD_COUNT] = self.fields.len() as u8;
        fixed[E_TARGET_LEN..E_TARGET_LEN + 2]
            .copy_from_slice(&(self.target.len() as u16).to_le_bytes());
        fixed[E_MESSAGE_LEN..E_MESSAGE_LEN + 2]
            .copy_from_slice(&(self.message.len() as u16).to_le_bytes());
        fixed[E_FLAGS..E_FLAGS + 2].copy_from_slice(&self.flags.to_le_bytes());
        sink.put(&fixed);
        sink.put(self.target.as_bytes());
        sink.put(self.message.as_bytes());
        for field in self.fields {
            encode_field(sink, field);
        }
    }
}

/// Copies a payload's pieces into the record, one after the other.
struct PieceSink<'r, 'a> {
    record: &'r mut RecordWriter<'a>,
    /// Offset in the record of the next byte.
    at: usize,
}

impl Sink for PieceSink<'_, '_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.record.bytes_at(self.at, bytes);
        self.at += bytes.len();
    }
}

/// Writes one record at the chunk's cursor and publishes it
/// (`shm-layout.md`, 7.2): the "being written" mark, the payload and its
/// zero padding straight into the chunk, KIND, FLAGS and TS, the checksum,
/// then COMMIT (release). `seed` is the claim's checksum seed and `seq` the
/// record's number in its writer's run. Returns whether it was written:
/// `false` when it does not fit after the chunk's last record (nothing
/// was written then). `hardware_crc` must be the ring's
/// [`Shared::hardware_crc`](crate::shared::Shared): true only on a CPU
/// with the `crc32` instruction, which the hardware engine then runs.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_record(
    hardware_crc: bool,
    chunk: &mut ChunkCursor,
    seed: u32,
    seq: u64,
    kind: u16,
    len: usize,
    ts: u64,
    payload: &impl Payload,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if hardware_crc {
        return write_record_with::<crate::checksum::Hardware>(
            chunk, seed, seq, kind, len, ts, payload,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = hardware_crc;
    write_record_with::<Portable>(chunk, seed, seq, kind, len, ts, payload)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_record_with<E: Engine>(
    chunk: &mut ChunkCursor,
    seed: u32,
    seq: u64,
    kind: u16,
    len: usize,
    ts: u64,
    payload: &impl Payload,
) -> bool {
    let stride = stride(len);
    let Some(mut record) = chunk.begin(stride) else {
        return false;
    };
    let mut crc = Running::<E>::start(seed, len as u32, seq);
    if let Some(bytes) = payload.as_bytes() {
        // One piece: its words go from where the caller has it into the
        // record and into the checksum, in one pass; the tail word padded.
        record.words_at(RECORD_HEADER_LEN, bytes, |w| crc.word(w));
    } else {
        // Many pieces (an event): the record's last word zero first (the
        // padding, less than 8 bytes, lies in it), the pieces copied in
        // after it, then the checksum over the words as stored. Only this
        // thread writes them, and they are still in its cache.
        record.u64_at(stride - 8, 0);
        let mut sink = PieceSink {
            record: &mut record,
            at: RECORD_HEADER_LEN,
        };
        payload.write(&mut sink);
        debug_assert_eq!(sink.at, len, "payload length differs from its len()");
        for at in (RECORD_HEADER_LEN..stride).step_by(8) {
            crc.word(record.read_u64(at));
        }
    }
    // KIND and FLAGS (zero) as one little-endian u32, then TS: last into
    // the checksum, so the clock read overlaps the chain over the payload.
    let kind_flags = u32::from(kind);
    record.u32_at(R_KIND, kind_flags);
    record.u64_at(R_TS, ts);
    record.u32_at(R_CRC, crc.finish(kind_flags, ts));
    record.publish(len);
    true
}
