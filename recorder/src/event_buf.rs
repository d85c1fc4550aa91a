//! An event encoded straight into its payload bytes (`shm-layout.md`,
//! section 6) while the `tracing` and `log` adapters visit it, in a buffer
//! that each thread reuses.
//!
//! The adapters get their fields one at a time, with text that lives only
//! as long as the visit call. Encoding each field as it comes, into the
//! buffer the record is copied from, means one copy of every byte and no
//! second pass: the record's writer then checksums and copies the payload
//! as one piece, as it does raw bytes.
//!
//! The caps, each cut on a character boundary and marked with `…` where
//! text is cut: the message to [`MESSAGE_CAP`] bytes, all field text
//! together (strings, `Debug` values, the span path, the thread's name) to
//! [`TEXT_CAP`] bytes, field names to 255 bytes, and the fields to the
//! adapter's maximum, the rest counted in a trailing `dropped_fields`
//! field. Then the record limit applies as `shm-layout.md` says for every
//! writer ([`EventBuf::finish`]). Anything cut or dropped sets
//! [`EVENT_FLAG_TRUNCATED`].

use std::cell::RefCell;
use std::fmt;

use crate::event::{truncate_str, Level, EVENT_FLAG_TRUNCATED, MAX_NAME, MAX_TARGET};
use crate::layout::*;

/// Most bytes of an event's message; a longer message is cut (ending in
/// `…`).
pub const MESSAGE_CAP: usize = 512;

/// Most bytes of an event's field text, all fields together (values
/// rendered with `Debug`, strings, the span path, the thread's name).
/// Longer text is cut (ending in `…`), and text fields after the cut are
/// empty.
pub const TEXT_CAP: usize = 1024;

/// Marks text that was cut to fit.
const ELLIPSIS: &str = "…";

/// Most fields of its own an adapter asks for (both keep 16).
pub(crate) const MAX_ADAPTER_FIELDS: usize = 16;

/// Room for the largest event the caps allow: the fixed part, the target,
/// the message, the adapter's two fields and its maximum of the event's
/// own (each with a 255-byte name and a value of up to 8 bytes besides
/// text), all the text, and `dropped_fields`.
const SCRATCH_CAPACITY: usize = 8 << 10;

/// Longest fixed part a record puts in front of its event payload (a span
/// record's ids).
const PREFIX_CAP: usize = 16;
const _: () = assert!(
    PREFIX_CAP
        + EVENT_FIXED_LEN
        + MAX_TARGET
        + MESSAGE_CAP
        + (MAX_ADAPTER_FIELDS + 2) * (2 + MAX_NAME + 8)
        + TEXT_CAP
        + 2
        + 14
        + 8
        + (2 + 7 + 8)
        <= SCRATCH_CAPACITY
);

/// A thread's buffer for encoding events: fixed size, so that appending
/// needs no capacity check or growth, only a bounds check.
pub(crate) struct Scratch {
    bytes: Box<[u8; SCRATCH_CAPACITY]>,
    len: usize,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            bytes: Box::new([0; SCRATCH_CAPACITY]),
            len: 0,
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    /// Appends `src`.
    #[inline(always)]
    fn put(&mut self, src: &[u8]) {
        let at = self.len;
        copy_small(&mut self.bytes[at..at + src.len()], src);
        self.len = at + src.len();
    }

    /// Appends a field's head (its type code, its name's length and its
    /// name, at most 255 bytes) and then `value`, with one bounds check.
    #[inline(always)]
    fn put_field(&mut self, code: u8, name: &[u8], value: &[u8]) {
        let at = self.len;
        let value_at = 2 + name.len();
        let end = value_at + value.len();
        let dst = &mut self.bytes[at..at + end];
        dst[0] = code;
        dst[1] = name.len() as u8;
        copy_small(&mut dst[2..value_at], name);
        copy_small(&mut dst[value_at..], value);
        self.len = at + end;
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Removes `at..end`, moving what follows down.
    fn remove(&mut self, at: usize, end: usize) {
        self.bytes.copy_within(end..self.len, at);
        self.len -= end - at;
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// Copies `src` into `dst`, of the same length. Small pieces (names,
/// lengths, values) take a few fixed-size moves instead of a call to
/// `memcpy`.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's event buffer (made on the thread's first
/// event). An event visited while another is (a `Debug` impl that logs)
/// or during the thread's exit gets a buffer of its own.
#[inline]
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut f = Some(f);
    let done = SCRATCH.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let scratch = slot.get_or_insert_with(Scratch::new);
        let f = f.take().expect("called once");
        Some(f(scratch))
    });
    match done {
        Ok(Some(r)) => r,
        _ => with_own_scratch(f.take().expect("not called yet")),
    }
}

/// [`with_scratch`]'s rare case, out of line: `f` is then called from one
/// place on the hot path, where it can be inlined.
#[cold]
#[inline(never)]
fn with_own_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    f(&mut Scratch::new())
}

/// A `fmt::Write` that appends to the buffer up to `end` (a buffer
/// length), cuts what does not fit on a character boundary, ends the text
/// with [`ELLIPSIS`], and then refuses more (`fmt::Error`, which ends the
/// formatting early). The mark's bytes are kept free, so text that reaches
/// `end` exactly is already cut.
pub(crate) struct Capped<'v> {
    buf: &'v mut Scratch,
    end: usize,
    cut: bool,
}

impl fmt::Write for Capped<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Once cut, `end` is 0 and only the cold path runs.
        if self.buf.len() + s.len() + ELLIPSIS.len() <= self.end {
            self.buf.put(s.as_bytes());
            return Ok(());
        }
        self.cut_or_refuse(s)
    }
}

impl Capped<'_> {
    /// The text that does not fit: what fits of it and the mark, then
    /// [`fmt::Error`] for this and every later piece.
    #[cold]
    fn cut_or_refuse(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Err(fmt::Error);
        }
        if s.is_empty() {
            // Nothing to cut, even with no room left.
            return Ok(());
        }
        let room = self.end.saturating_sub(self.buf.len() + ELLIPSIS.len());
        self.buf.put(truncate_str(s, room).as_bytes());
        if self.end.saturating_sub(self.buf.len()) >= ELLIPSIS.len() {
            self.buf.put(ELLIPSIS.as_bytes());
        }
        self.cut = true;
        self.end = 0;
        Err(fmt::Error)
    }
}

/// One event being encoded: the fixed part and the target first, then the
/// message, then the fields, as they arrive.
pub(crate) struct EventBuf<'b> {
    buf: &'b mut Scratch,
    max_record_len: usize,
    /// Where the event payload starts in `buf`: after a record's own fixed
    /// part (a span record's id), 0 for an event record.
    base: usize,
    /// The message is `buf[message_start..message_end]`; fields follow it.
    message_start: usize,
    message_end: usize,
    fields: usize,
    /// Fields the adapter added itself (they come first, and do not count
    /// against `max_fields`).
    own: usize,
    max_fields: usize,
    dropped: u64,
    text_left: usize,
    cut: bool,
}

impl<'b> EventBuf<'b> {
    /// Starts an event of `level` and `target` in `buf` (emptied first),
    /// for a ring whose records are at most `max_record_len` bytes, with at
    /// most `max_fields` fields of the event's own.
    #[inline]
    pub(crate) fn start(
        buf: &'b mut Scratch,
        max_record_len: usize,
        level: Level,
        target: &str,
        max_fields: usize,
    ) -> EventBuf<'b> {
        EventBuf::start_after(buf, &[], max_record_len, level, target, max_fields)
    }

    /// Starts an event payload after `prefix` (a span record's fixed part,
    /// at most 16 bytes), which [`EventBuf::finish`] returns in front of it.
    #[inline]
    pub(crate) fn start_after(
        buf: &'b mut Scratch,
        prefix: &[u8],
        max_record_len: usize,
        level: Level,
        target: &str,
        max_fields: usize,
    ) -> EventBuf<'b> {
        assert!(max_fields <= MAX_ADAPTER_FIELDS);
        assert!(prefix.len() <= PREFIX_CAP);
        buf.len = 0;
        buf.put(prefix);
        let base = buf.len();
        let capped = truncate_str(target, MAX_TARGET.min(max_record_len / 4));
        let mut fixed = [0u8; EVENT_FIXED_LEN];
        fixed[E_LEVEL] = level.code();
        fixed[E_TARGET_LEN..E_TARGET_LEN + 2].copy_from_slice(&(capped.len() as u16).to_le_bytes());
        buf.put(&fixed);
        buf.put(capped.as_bytes());
        let message_start = buf.len();
        EventBuf {
            buf,
            max_record_len,
            base,
            message_start,
            message_end: message_start,
            fields: 0,
            own: 0,
            max_fields,
            dropped: 0,
            text_left: TEXT_CAP,
            cut: capped.len() < target.len(),
        }
    }

    /// Appends text made by `write` to the message (the whole message at
    /// most [`MESSAGE_CAP`] bytes).
    #[inline]
    pub(crate) fn message(&mut self, write: impl FnOnce(&mut Capped<'_>) -> fmt::Result) {
        let had = self.message_end - self.message_start;
        let at = self.buf.len();
        let mut capped = Capped {
            end: at + MESSAGE_CAP.saturating_sub(had),
            buf: self.buf,
            cut: false,
        };
        let _ = write(&mut capped);
        self.cut |= capped.cut;
        let added = self.buf.len() - at;
        if at != self.message_end {
            // Fields came first (rare: the `tracing` macros and `log` put
            // the message first): move the text in front of them.
            self.buf.bytes_mut()[self.message_end..].rotate_right(added);
        }
        self.message_end += added;
    }

    /// Room for one more field of the event's own; one that has none is
    /// counted in `dropped_fields`.
    #[inline]
    fn has_room(&mut self) -> bool {
        if self.fields - self.own < self.max_fields {
            return true;
        }
        self.dropped += 1;
        false
    }

    /// Adds a field: its head, then `value` (a fixed-size value, or a
    /// text's length).
    #[inline(always)]
    fn field(&mut self, code: u8, name: &str, value: &[u8]) {
        let whole = name;
        let name = truncate_str(whole, MAX_NAME);
        self.cut |= name.len() < whole.len();
        self.buf.put_field(code, name.as_bytes(), value);
        self.fields += 1;
    }

    /// Adds a field with a fixed-size value (inlined, so that the value's
    /// size is a constant).
    #[inline(always)]
    fn fixed(&mut self, code: u8, name: &str, value: &[u8]) {
        if self.has_room() {
            self.field(code, name, value);
        }
    }

    #[inline]
    pub(crate) fn u64(&mut self, name: &str, value: u64) {
        self.fixed(FIELD_U64, name, &value.to_le_bytes());
    }

    #[inline]
    pub(crate) fn i64(&mut self, name: &str, value: i64) {
        self.fixed(FIELD_I64, name, &value.to_le_bytes());
    }

    #[inline]
    pub(crate) fn f64(&mut self, name: &str, value: f64) {
        self.fixed(FIELD_F64, name, &value.to_bits().to_le_bytes());
    }

    #[inline]
    pub(crate) fn bool(&mut self, name: &str, value: bool) {
        self.fixed(FIELD_BOOL, name, &[value as u8]);
    }

    /// Adds a string field: as [`EventBuf::text`] with the whole of
    /// `value`, without a formatter when it fits what is left of
    /// [`TEXT_CAP`] (it usually does).
    #[inline]
    pub(crate) fn str(&mut self, name: &str, value: &str) {
        if value.len() + ELLIPSIS.len() > self.text_left {
            return self.text(name, false, |c| fmt::Write::write_str(c, value));
        }
        if self.has_room() {
            // At most TEXT_CAP bytes: the length fits in a u16.
            self.field(FIELD_STR, name, &(value.len() as u16).to_le_bytes());
            self.buf.put(value.as_bytes());
            self.text_left -= value.len();
        }
    }

    /// Adds a text field (`FIELD_STR`, or `FIELD_DEBUG` if `debug`) whose
    /// text `write` makes, within what is left of [`TEXT_CAP`].
    #[inline]
    pub(crate) fn text(
        &mut self,
        name: &str,
        debug: bool,
        write: impl FnOnce(&mut Capped<'_>) -> fmt::Result,
    ) {
        if !self.has_room() {
            return;
        }
        self.field(if debug { FIELD_DEBUG } else { FIELD_STR }, name, &[0, 0]);
        let at = self.buf.len();
        let len_at = at - 2;
        let mut capped = Capped {
            end: at + self.text_left,
            buf: self.buf,
            cut: false,
        };
        let _ = write(&mut capped);
        self.cut |= capped.cut;
        let len = self.buf.len() - at;
        self.text_left -= len;
        self.buf.bytes_mut()[len_at..at].copy_from_slice(&(len as u16).to_le_bytes());
    }

    /// Adds one of the adapter's own fields (before any of the event's).
    #[cfg(feature = "tracing")]
    pub(crate) fn own_text(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut Capped<'_>) -> fmt::Result,
    ) {
        debug_assert_eq!(self.fields, self.own, "the adapter's fields come first");
        self.text(name, false, write);
        self.own = self.fields;
    }

    /// Adds one of the adapter's own `u64` fields (before any of the
    /// event's).
    #[cfg(feature = "tracing")]
    pub(crate) fn own_u64(&mut self, name: &str, value: u64) {
        debug_assert_eq!(self.fields, self.own, "the adapter's fields come first");
        self.u64(name, value);
        self.own = self.fields;
    }

    /// The payload: the dropped fields counted, then cut to the record
    /// limit (trailing fields first, then the message), with the fixed
    /// part filled in.
    pub(crate) fn finish(&mut self) -> &[u8] {
        let buf = &mut *self.buf;
        let (max_record_len, base, message_start, dropped) = (
            self.max_record_len,
            self.base,
            self.message_start,
            self.dropped,
        );
        let (mut message_end, mut fields, mut cut) = (self.message_end, self.fields, self.cut);
        if dropped > 0 {
            // Counted here, never itself dropped for the field cap.
            buf.put(&[FIELD_U64, 14]);
            buf.put(b"dropped_fields");
            buf.put(&dropped.to_le_bytes());
            fields += 1;
            cut = true;
        }
        let fixed = RECORD_HEADER_LEN + message_start;
        while fixed + (buf.len() - message_end) > max_record_len {
            let last = last_field_start(&buf.bytes()[message_end..]) + message_end;
            buf.truncate(last);
            fields -= 1;
            cut = true;
        }
        let room = (max_record_len - fixed - (buf.len() - message_end)).min(u16::MAX as usize);
        let message_len = message_end - message_start;
        if message_len > room {
            let mut keep = room;
            // The message is UTF-8: back off to a character's first byte.
            while keep > 0 && (buf.bytes()[message_start + keep] & 0xC0) == 0x80 {
                keep -= 1;
            }
            buf.remove(message_start + keep, message_end);
            message_end = message_start + keep;
            cut = true;
        }
        let bytes = buf.bytes_mut();
        let event = &mut bytes[base..];
        event[E_FIELD_COUNT] = fields as u8;
        event[E_MESSAGE_LEN..E_MESSAGE_LEN + 2]
            .copy_from_slice(&((message_end - message_start) as u16).to_le_bytes());
        let flags = if cut { EVENT_FLAG_TRUNCATED } else { 0 };
        event[E_FLAGS..E_FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
        bytes
    }
}

/// Where the last of the encoded fields in `fields` starts (there is one).
fn last_field_start(fields: &[u8]) -> usize {
    let mut at = 0;
    let mut last = 0;
    while at < fields.len() {
        last = at;
        let name_len = fields[at + 1] as usize;
        let value_at = at + 2 + name_len;
        at = value_at
            + match fields[at] {
                FIELD_BOOL => 1,
                FIELD_STR | FIELD_DEBUG => {
                    2 + u16::from_le_bytes([fields[value_at], fields[value_at + 1]]) as usize
                }
                _ => 8,
            };
    }
    last
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn decode(payload: &[u8]) -> (u8, u16, String, String, usize) {
        let target_len = u16::from_le_bytes([payload[2], payload[3]]) as usize;
        let message_len = u16::from_le_bytes([payload[4], payload[5]]) as usize;
        let flags = u16::from_le_bytes([payload[6], payload[7]]);
        let target = String::from_utf8(payload[8..8 + target_len].to_vec()).unwrap();
        let m = 8 + target_len;
        let message = String::from_utf8(payload[m..m + message_len].to_vec()).unwrap();
        (payload[1], flags, target, message, m + message_len)
    }

    /// Text into `buf` that may reach buffer length `end`.
    fn capped(buf: &mut Scratch, end: usize) -> Capped<'_> {
        Capped {
            buf,
            end,
            cut: false,
        }
    }

    #[test]
    fn put_copies_pieces_of_every_small_size() {
        let src: Vec<u8> = (1..=40).collect();
        let mut buf = Scratch::new();
        let mut want = Vec::new();
        for n in 0..=40 {
            buf.put(&src[..n]);
            want.extend_from_slice(&src[..n]);
        }
        assert_eq!(buf.bytes(), &want[..]);
        buf.remove(1, 3);
        want.drain(1..3);
        assert_eq!(buf.bytes(), &want[..]);
    }

    /// An event encoded while another is (a `Debug` impl that logs) gets
    /// a buffer of its own, and neither disturbs the other.
    #[test]
    fn a_nested_event_gets_a_buffer_of_its_own() {
        let (outer, inner) = with_scratch(|buf| {
            let mut e = EventBuf::start(buf, 4096, Level::Info, "outer", 16);
            e.message(|c| c.write_str("before"));
            let inner = with_scratch(|buf| {
                let mut e = EventBuf::start(buf, 4096, Level::Warn, "inner", 16);
                e.message(|c| c.write_str("nested"));
                e.finish().to_vec()
            });
            e.u64("n", 1);
            (e.finish().to_vec(), inner)
        });
        let (count, flags, target, message, _) = decode(&outer);
        assert_eq!(
            (count, flags, &*target, &*message),
            (1, 0, "outer", "before")
        );
        let (count, flags, target, message, _) = decode(&inner);
        assert_eq!(
            (count, flags, &*target, &*message),
            (0, 0, "inner", "nested")
        );
        assert_eq!(inner[0], Level::Warn.code());
        // The thread's own buffer is back for the next event.
        let again = with_scratch(|buf| {
            let mut e = EventBuf::start(buf, 4096, Level::Info, "next", 16);
            e.finish().to_vec()
        });
        assert_eq!(decode(&again).2, "next");
    }

    #[test]
    fn capped_cuts_on_a_char_boundary_and_marks_the_cut() {
        let mut buf = Scratch::new();
        let mut c = capped(&mut buf, 10);
        assert!(write!(c, "héllo wörld").is_err());
        assert!(c.cut);
        assert_eq!(std::str::from_utf8(buf.bytes()).unwrap(), "héllo …");

        let mut buf = Scratch::new();
        let mut c = capped(&mut buf, 10);
        assert!(write!(c, "{}-{}", 12, 34).is_ok());
        assert!(!c.cut);
        assert_eq!(buf.bytes(), b"12-34");
    }

    #[test]
    fn capped_refuses_everything_after_a_cut() {
        let mut buf = Scratch::new();
        let mut c = capped(&mut buf, 8);
        assert!(c.write_str("abcdefgh").is_err());
        for more in ["", "x", "yz"] {
            assert!(c.write_str(more).is_err(), "{more:?} after the cut");
        }
        assert_eq!(std::str::from_utf8(buf.bytes()).unwrap(), "abcde…");
    }

    /// Text that starts with less room than the cut mark (the text budget
    /// nearly spent) takes an empty piece, as when it has room, and is cut
    /// only by a piece with bytes.
    #[test]
    fn capped_takes_an_empty_piece_with_no_room_left_without_a_cut() {
        let mut buf = Scratch::new();
        let mut c = capped(&mut buf, ELLIPSIS.len() - 1);
        assert!(c.write_str("").is_ok());
        assert!(!c.cut);
        assert!(c.write_str("b").is_err());
        assert!(c.cut);
        assert!(buf.bytes().is_empty(), "no room for the mark either");
    }

    /// A string field, put without the formatter, encodes byte for byte
    /// as the formatter path does: at, just under and just over what is
    /// left of the text budget, with a name over 255 bytes, and past the
    /// field cap.
    #[test]
    fn a_str_field_encodes_as_formatted_text_does() {
        let long_name = "n".repeat(300);
        for first in [TEXT_CAP - 40, TEXT_CAP - 3, TEXT_CAP - 2, TEXT_CAP] {
            for second in 0..=40 {
                let first_text = "a".repeat(first);
                let second_text = "é".repeat(second / 2) + &"b".repeat(second % 2);
                let strs: [(&str, &str); 3] = [
                    ("first", &first_text),
                    (&long_name, &second_text),
                    ("third", "c"),
                ];
                let mut fast = Scratch::new();
                let mut e = EventBuf::start(&mut fast, 64 << 10, Level::Info, "t", 2);
                for (name, value) in strs {
                    e.str(name, value);
                }
                let fast = e.finish().to_vec();
                let mut formatted = Scratch::new();
                let mut e = EventBuf::start(&mut formatted, 64 << 10, Level::Info, "t", 2);
                for (name, value) in strs {
                    e.text(name, false, |c| c.write_str(value));
                }
                assert_eq!(fast, e.finish(), "first {first}, second {second}");
            }
        }
    }

    #[test]
    fn encodes_the_worked_example_of_the_layout() {
        // shm-layout.md, section 6: INFO, "app", "hi", n = 7 (u64).
        let mut buf = Scratch::new();
        let mut e = EventBuf::start(&mut buf, 4096, Level::Info, "app", 16);
        e.message(|c| c.write_str("hi"));
        e.u64("n", 7);
        let payload = e.finish();
        let mut want = vec![3, 1, 3, 0, 2, 0, 0, 0];
        want.extend_from_slice(b"apphi");
        want.extend_from_slice(&[2, 1, b'n', 7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(payload, &want[..]);
    }

    #[test]
    fn a_message_after_fields_is_moved_in_front_of_them() {
        let mut buf = Scratch::new();
        let mut e = EventBuf::start(&mut buf, 4096, Level::Warn, "t", 16);
        e.bool("ok", true);
        e.text("s", false, |c| c.write_str("abc"));
        e.message(|c| write!(c, "late {}", 1));
        let payload = e.finish().to_vec();
        let (count, flags, target, message, fields_at) = decode(&payload);
        assert_eq!((count, flags, &*target, &*message), (2, 0, "t", "late 1"));
        assert_eq!(
            &payload[fields_at..],
            &[4, 2, b'o', b'k', 1, 5, 1, b's', 3, 0, b'a', b'b', b'c']
        );
    }

    #[test]
    #[cfg(feature = "tracing")]
    fn fields_beyond_the_cap_are_counted_and_text_shares_one_budget() {
        let mut buf = Scratch::new();
        let mut e = EventBuf::start(&mut buf, 64 << 10, Level::Info, "t", 2);
        e.own_text("spans", |c| c.write_str("a:b"));
        e.u64("x", 1);
        e.text("long", true, |c| c.write_str(&"z".repeat(2 * TEXT_CAP)));
        e.u64("y", 2);
        e.text("after", false, |c| c.write_str("gone"));
        let payload = e.finish().to_vec();
        let (count, flags, ..) = decode(&payload);
        assert_eq!(count, 4, "spans, x, long, dropped_fields");
        assert_eq!(flags, EVENT_FLAG_TRUNCATED);
        let text = String::from_utf8_lossy(&payload);
        assert!(text.contains("z…"), "the long value ends with the mark");
        assert!(text.contains("dropped_fields"));
        assert_eq!(
            &payload[payload.len() - 8..],
            &2u64.to_le_bytes(),
            "y and after"
        );
    }

    #[test]
    fn the_record_limit_drops_trailing_fields_then_cuts_the_message() {
        let max = 128;
        let mut buf = Scratch::new();
        let mut e = EventBuf::start(&mut buf, max, Level::Info, "t", 16);
        e.message(|c| c.write_str(&"é".repeat(100)));
        for name in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            e.u64(name, 1);
        }
        let payload = e.finish().to_vec();
        assert!(RECORD_HEADER_LEN + payload.len() <= max);
        let (count, flags, _, message, fields_at) = decode(&payload);
        assert_eq!(flags, EVENT_FLAG_TRUNCATED);
        assert_eq!(payload.len() - fields_at, count as usize * 11);
        assert!(message.chars().all(|c| c == 'é'));
        // Fields fill what the header, fixed part and target leave; the
        // message gets what is left after them.
        assert_eq!(count, ((max - RECORD_HEADER_LEN - 9) / 11) as u8);
    }
}
