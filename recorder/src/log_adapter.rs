//! A [`log::Log`] implementation that writes every record into a ring, and
//! the stack buffers it shares with [`crate::tracing_layer`].
//!
//! One line for a program that logs through the `log` crate:
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("log-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::sync::Arc;
//! use recorder::{BlackboxLogger, Recorder};
//!
//! let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
//! BlackboxLogger::new(Arc::clone(&rec)).init().unwrap();
//!
//! log::warn!(target: "app::db", ms = 250u64, table = "users"; "slow query");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! # What a record becomes
//!
//! One standard event (`KIND_EVENT`): the record's level (log's levels map
//! one to one), its target, its message (the formatted `args`) and its
//! key-values as typed fields: `i64`, `u64`, `f64`, `bool` and strings keep
//! their type; anything else captured by `Display`, `Debug` or as an error
//! is stored as a `Debug` field with its text. The thread id is in the event
//! header.
//!
//! # Allocation and cuts
//!
//! Nothing is allocated: a message with no arguments is used as it is, any
//! other is formatted into a [`MESSAGE_CAP`]-byte stack buffer; key-values
//! go into a fixed array of [`MAX_KV_FIELDS`] fields, and the text of those
//! that must be formatted (or whose key or string is not borrowed for the
//! record's lifetime) into a [`TEXT_CAP`]-byte stack buffer. Text that does
//! not fit is cut on a character boundary and ends in `…`; key-values
//! beyond the array are dropped, and a `u64` field `dropped_fields` says how
//! many.
//!
//! # Closing the ring
//!
//! `log` keeps its logger for the life of the process, so the `Arc` inside
//! the installed logger is never dropped and the ring is not closed when the
//! program returns from `main`: the reader then reports the writer as
//! `killed` (an exit that skipped the close). A program that wants `exited`
//! calls [`Recorder::mark_clean_exit`](crate::Recorder::mark_clean_exit) as
//! it ends, or installs the logger with a scope of its own (for example a forwarding
//! logger that it can empty), drops every other handle, and closes the
//! [`Recorder`](crate::Recorder) it gets back from `Arc::try_unwrap`.

use std::fmt;

use crate::event::truncate_str;

/// Size of the stack buffer a formatted message is built in; a longer
/// message is cut (ending in `…`).
pub const MESSAGE_CAP: usize = 512;

/// Size of the stack buffer for field text that must be copied or
/// formatted (values rendered with `Debug`, strings and keys that are not
/// borrowed long enough, the span path). Longer text is cut (ending in `…`).
pub const TEXT_CAP: usize = 1024;

/// Most key-values kept per `log` record; more are dropped and counted in a
/// `dropped_fields` field.
pub const MAX_KV_FIELDS: usize = 16;

/// Marks text that was cut to fit.
const ELLIPSIS: &str = "…";

/// A `fmt::Write` into a fixed byte slice that cuts, on a character
/// boundary, what does not fit, ends the text with [`ELLIPSIS`], and then
/// refuses more (`fmt::Error`, which ends the formatting early).
///
/// The last `ELLIPSIS.len()` bytes are kept free for the mark, so text
/// that fills the slice exactly is already cut.
pub(crate) struct Fill<'b> {
    buf: &'b mut [u8],
    len: usize,
    cut: bool,
}

impl<'b> Fill<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Fill<'b> {
        Fill {
            buf,
            len: 0,
            cut: false,
        }
    }

    /// Bytes written so far (the mark included).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether something was cut.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

impl fmt::Write for Fill<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Err(fmt::Error);
        }
        let room = self.buf.len().saturating_sub(self.len + ELLIPSIS.len());
        if s.len() <= room {
            self.put(s.as_bytes());
            return Ok(());
        }
        self.put(truncate_str(s, room).as_bytes());
        if self.buf.len() - self.len >= ELLIPSIS.len() {
            self.put(ELLIPSIS.as_bytes());
        }
        self.cut = true;
        Err(fmt::Error)
    }
}

/// The text of a buffer that only [`Fill`] wrote: always UTF-8, since it
/// copies whole `&str` pieces cut on character boundaries.
#[inline]
pub(crate) fn text_of(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// A stack arena for field text: each piece of text is appended and named
/// by its byte range, to be turned into `&str` once the arena is no longer
/// written (see [`Arena::get`]).
/// `N` is at most `u16::MAX` (checked when the arena is made).
pub(crate) struct Arena<const N: usize = TEXT_CAP> {
    buf: [u8; N],
    used: usize,
}

impl<const N: usize> Arena<N> {
    const FITS_U16: () = assert!(N <= u16::MAX as usize);

    #[inline]
    pub(crate) fn new() -> Arena<N> {
        let () = Self::FITS_U16;
        Arena {
            buf: [0; N],
            used: 0,
        }
    }

    /// Appends text made by `write` (cut to fit what is left) and returns
    /// its range and whether it was cut.
    #[inline]
    pub(crate) fn push(
        &mut self,
        write: impl FnOnce(&mut Fill<'_>) -> fmt::Result,
    ) -> (Span, bool) {
        let start = self.used;
        let mut fill = Fill::new(&mut self.buf[start..]);
        let _ = write(&mut fill);
        let (len, cut) = (fill.len(), fill.was_cut());
        self.used += len;
        (
            Span {
                start: start as u16,
                end: (start + len) as u16,
            },
            cut,
        )
    }

    /// Appends `s` (cut to fit).
    #[inline]
    #[cfg_attr(not(feature = "log"), allow(dead_code))]
    pub(crate) fn push_str(&mut self, s: &str) -> (Span, bool) {
        self.push(|f| fmt::Write::write_str(f, s))
    }

    /// The text at `span`.
    #[inline]
    pub(crate) fn get(&self, span: Span) -> &str {
        text_of(&self.buf[span.start as usize..span.end as usize])
    }
}

/// A byte range of an [`Arena`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Span {
    start: u16,
    end: u16,
}

#[cfg(feature = "log")]
pub use adapter::BlackboxLogger;

#[cfg(feature = "log")]
mod adapter {
    use std::fmt::{self, Write as _};
    use std::sync::Arc;

    use log::kv::{self, Key, VisitSource, VisitValue};

    use super::{text_of, Arena, Fill, Span, MAX_KV_FIELDS, MESSAGE_CAP, TEXT_CAP};
    use crate::{Field, Level, Recorder, Value};

    /// A [`log::Log`] that appends every record to a [`Recorder`] as a
    /// standard event; see the [module documentation](super).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("logger-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use std::sync::Arc;
    /// use recorder::{BlackboxLogger, Recorder};
    ///
    /// let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
    /// BlackboxLogger::new(rec)
    ///     .with_max_level(log::LevelFilter::Info)
    ///     .init()
    ///     .unwrap();
    /// log::info!(attempt = 3; "connected");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub struct BlackboxLogger {
        rec: Arc<Recorder>,
        max_level: log::LevelFilter,
    }

    impl fmt::Debug for BlackboxLogger {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("BlackboxLogger")
                .field("ring", &self.rec.path())
                .field("max_level", &self.max_level)
                .finish()
        }
    }

    impl BlackboxLogger {
        /// A logger that writes into `rec`, every level (the default
        /// maximum level is `Trace`).
        pub fn new(rec: Arc<Recorder>) -> BlackboxLogger {
            BlackboxLogger {
                rec,
                max_level: log::LevelFilter::Trace,
            }
        }

        /// Keeps records at `level` or more severe. Default `Trace` (all).
        #[must_use]
        pub fn with_max_level(mut self, level: log::LevelFilter) -> BlackboxLogger {
            self.max_level = level;
            self
        }

        /// The ring this logger writes to.
        pub fn recorder(&self) -> &Arc<Recorder> {
            &self.rec
        }

        /// Installs this logger as the process's `log` logger and sets
        /// `log::max_level` to its maximum level.
        ///
        /// # Errors
        ///
        /// [`log::SetLoggerError`] if a logger is installed already.
        pub fn init(self) -> Result<(), log::SetLoggerError> {
            let level = self.max_level;
            log::set_boxed_logger(Box::new(self))?;
            log::set_max_level(level);
            Ok(())
        }
    }

    fn level(level: log::Level) -> Level {
        match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        }
    }

    /// A value as collected: numbers and borrowed strings as they are, text
    /// that had to be copied or formatted as a range of the arena.
    #[derive(Clone, Copy)]
    enum Got<'k> {
        Value(Value<'k>),
        Str(Span),
        Debug(Span),
    }

    #[derive(Clone, Copy)]
    enum Name<'k> {
        Borrowed(&'k str),
        Copied(Span),
    }

    struct Collect<'k> {
        slots: [(Name<'k>, Got<'k>); MAX_KV_FIELDS],
        count: usize,
        dropped: u64,
        arena: Arena,
    }

    /// Visits one value into `Got`.
    struct OneValue<'a, 'k> {
        arena: &'a mut Arena,
        got: Got<'k>,
    }

    impl<'k> VisitValue<'k> for OneValue<'_, 'k> {
        fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
            let (span, _) = self.arena.push(|f| write!(f, "{value}"));
            self.got = Got::Debug(span);
            Ok(())
        }
        fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
            self.got = Got::Value(Value::U64(value));
            Ok(())
        }
        fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
            self.got = Got::Value(Value::I64(value));
            Ok(())
        }
        fn visit_u128(&mut self, value: u128) -> Result<(), kv::Error> {
            self.got = match u64::try_from(value) {
                Ok(v) => Got::Value(Value::U64(v)),
                Err(_) => Got::Debug(self.arena.push(|f| write!(f, "{value}")).0),
            };
            Ok(())
        }
        fn visit_i128(&mut self, value: i128) -> Result<(), kv::Error> {
            self.got = match i64::try_from(value) {
                Ok(v) => Got::Value(Value::I64(v)),
                Err(_) => Got::Debug(self.arena.push(|f| write!(f, "{value}")).0),
            };
            Ok(())
        }
        fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
            self.got = Got::Value(Value::F64(value));
            Ok(())
        }
        fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
            self.got = Got::Value(Value::Bool(value));
            Ok(())
        }
        fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
            self.got = Got::Str(self.arena.push_str(value).0);
            Ok(())
        }
        fn visit_borrowed_str(&mut self, value: &'k str) -> Result<(), kv::Error> {
            self.got = Got::Value(Value::Str(value));
            Ok(())
        }
    }

    impl<'k> VisitSource<'k> for Collect<'k> {
        fn visit_pair(&mut self, key: Key<'k>, value: kv::Value<'k>) -> Result<(), kv::Error> {
            if self.count == MAX_KV_FIELDS {
                self.dropped += 1;
                return Ok(());
            }
            let name = match key.to_borrowed_str() {
                Some(k) => Name::Borrowed(k),
                None => Name::Copied(self.arena.push_str(key.as_str()).0),
            };
            let mut one = OneValue {
                arena: &mut self.arena,
                got: Got::Value(Value::Bool(false)),
            };
            let _ = value.visit(&mut one);
            self.slots[self.count] = (name, one.got);
            self.count += 1;
            Ok(())
        }
    }

    impl log::Log for BlackboxLogger {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= self.max_level
        }

        fn log(&self, record: &log::Record<'_>) {
            if record.level() > self.max_level {
                return;
            }
            let mut message_buf = [0u8; MESSAGE_CAP];
            let args = record.args();
            let message = match args.as_str() {
                Some(s) => s,
                None => {
                    let mut fill = Fill::new(&mut message_buf);
                    let _ = fill.write_fmt(*args);
                    let len = fill.len();
                    text_of(&message_buf[..len])
                }
            };
            let kvs = record.key_values();
            if kvs.count() == 0 {
                let _ = self
                    .rec
                    .log(level(record.level()), record.target(), message, &[]);
                return;
            }
            let mut c = Collect {
                slots: [(Name::Borrowed(""), Got::Value(Value::Bool(false))); MAX_KV_FIELDS],
                count: 0,
                dropped: 0,
                arena: Arena::<TEXT_CAP>::new(),
            };
            let _ = kvs.visit(&mut c);
            let mut fields = [Field::new("", false); MAX_KV_FIELDS + 1];
            let arena = &c.arena;
            for (slot, field) in c.slots[..c.count].iter().zip(fields.iter_mut()) {
                field.name = match slot.0 {
                    Name::Borrowed(k) => k,
                    Name::Copied(span) => arena.get(span),
                };
                field.value = match slot.1 {
                    Got::Value(v) => v,
                    Got::Str(span) => Value::Str(arena.get(span)),
                    Got::Debug(span) => Value::Debug(arena.get(span)),
                };
            }
            let mut n = c.count;
            if c.dropped > 0 {
                fields[n] = Field::new("dropped_fields", c.dropped);
                n += 1;
            }
            let _ = self.rec.log(
                level(record.level()),
                record.target(),
                message,
                &fields[..n],
            );
        }

        fn flush(&self) {}
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn fill_cuts_on_a_char_boundary_and_marks_the_cut() {
        let mut buf = [0u8; 10];
        let mut f = Fill::new(&mut buf);
        assert!(write!(f, "héllo wörld").is_err());
        assert!(f.was_cut());
        let len = f.len();
        assert_eq!(text_of(&buf[..len]), "héllo …");

        let mut buf = [0u8; 10];
        let mut f = Fill::new(&mut buf);
        assert!(write!(f, "{}-{}", 12, 34).is_ok());
        assert!(!f.was_cut());
        let len = f.len();
        assert_eq!(text_of(&buf[..len]), "12-34");
    }

    #[test]
    fn arena_hands_out_ranges_until_full() {
        let mut a = Arena::<TEXT_CAP>::new();
        let (x, cut_x) = a.push_str("abc");
        let (y, _) = a.push(|f| write!(f, "{:?}", [1, 2]));
        assert!(!cut_x);
        assert_eq!(a.get(x), "abc");
        assert_eq!(a.get(y), "[1, 2]");
        let long = "z".repeat(TEXT_CAP * 2);
        let (z, cut_z) = a.push_str(&long);
        assert!(cut_z);
        assert!(a.get(z).ends_with('…'));
        let (w, cut_w) = a.push_str("more");
        assert!(cut_w);
        assert_eq!(a.get(w), "");
    }
}
