//! What a record carries, and how its bytes reach a chunk: the payload
//! kinds (raw bytes, events) and the writer of one record (steps 4 to 6 of
//! `shm-layout.md`, 7.2).

use crate::checksum::record_crc;
use crate::event::{
    encode_field, field_is_cut, field_len, truncate_str, Field, Level, Sink, EVENT_FLAG_TRUNCATED,
    MAX_FIELDS, MAX_TARGET,
};
use crate::layout::*;
use crate::mapping::ChunkCursor;

/// A record's payload: its length, and how to write it.
pub(crate) trait Payload {
    fn len(&self) -> usize;
    fn write(&self, sink: &mut impl Sink);
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

/// Records up to this stride are built on the stack and copied once.
const INLINE_MAX: usize = 128;

/// A whole record (from offset 0) assembled on the stack.
struct InlineRecord {
    buf: [u8; INLINE_MAX],
    used: usize,
}

impl Sink for InlineRecord {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }
}

/// Writes one record at the chunk's cursor and publishes it: the "being
/// written" mark, the bytes after the CRC, the CRC, then COMMIT (release).
/// `seed` is the claim's checksum seed and `seq` the record's number in its
/// writer's run; the record must fit the chunk.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_record(
    chunk: &mut ChunkCursor,
    seed: u32,
    seq: u64,
    kind: u16,
    len: usize,
    ts: u64,
    payload: &impl Payload,
) {
    let stride = stride(len);
    debug_assert!(chunk.fits(stride));
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[R_KIND..R_KIND + 2].copy_from_slice(&kind.to_le_bytes());
    head[R_TS..R_TS + 8].copy_from_slice(&ts.to_le_bytes());
    chunk.mark();
    if stride <= INLINE_MAX {
        // Common case: build the whole record on the stack, checksum it in
        // one pass of 8-byte words, copy it into the chunk once.
        let mut rec = InlineRecord {
            buf: [0; INLINE_MAX],
            used: 0,
        };
        rec.put(&head);
        payload.write(&mut rec);
        debug_assert_eq!(rec.used, len, "payload length differs from its len()");
        // Copy first, checksum second: the two are independent, so the CPU
        // overlaps the copy with the checksum's dependency chain.
        let body = &rec.buf[R_CRC_START..stride];
        chunk.write(R_CRC_START, body);
        let crc = record_crc(seed, len as u32, seq, body);
        chunk.write(R_CRC, &crc.to_le_bytes());
    } else {
        // Large record: stream it through a small buffer, checksumming
        // chunk by chunk (same checksum, computed incrementally).
        let mut sink = RecordSink::new(chunk, crc_start(seed, len as u32, seq));
        sink.put(&head[R_CRC_START..]);
        payload.write(&mut sink);
        debug_assert_eq!(sink.written(), len - R_CRC_START);
        sink.put(&[0u8; RECORD_ALIGN][..stride - len]);
        let crc = sink.finish();
        chunk.write(R_CRC, &crc.to_le_bytes());
    }
    chunk.publish(len, stride);
}

const SINK_BUF: usize = 256;

/// Streams a record's bytes after its CRC into the chunk through a small
/// stack buffer, so the checksum and the copy run over a few large pieces
/// instead of many small ones, with bounded stack use (safe on a signal
/// stack).
struct RecordSink<'a> {
    chunk: &'a mut ChunkCursor,
    /// Offset in the record of the next byte to copy.
    at: usize,
    crc: u32,
    used: usize,
    buf: [u8; SINK_BUF],
}

impl<'a> RecordSink<'a> {
    fn new(chunk: &'a mut ChunkCursor, crc: u32) -> Self {
        RecordSink {
            chunk,
            at: R_CRC_START,
            crc,
            used: 0,
            buf: [0; SINK_BUF],
        }
    }

    fn written(&self) -> usize {
        self.at + self.used - R_CRC_START
    }

    fn flush(&mut self) {
        if self.used > 0 {
            let piece = &self.buf[..self.used];
            self.crc = crc32c::crc32c_append(self.crc, piece);
            self.chunk.write(self.at, piece);
            self.at += self.used;
            self.used = 0;
        }
    }

    fn finish(mut self) -> u32 {
        self.flush();
        self.crc
    }
}

impl Sink for RecordSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.used + bytes.len() <= SINK_BUF {
            self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.used += bytes.len();
            return;
        }
        self.flush();
        if bytes.len() <= SINK_BUF / 2 {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.used = bytes.len();
        } else {
            self.crc = crc32c::crc32c_append(self.crc, bytes);
            self.chunk.write(self.at, bytes);
            self.at += bytes.len();
        }
    }
}
