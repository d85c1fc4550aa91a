//! A [`tracing_subscriber::Layer`] that writes every event into a ring.
//!
//! One line for a program that uses `tracing`:
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("layer-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::sync::Arc;
//! use recorder::{BlackboxLayer, Recorder};
//! use tracing_subscriber::prelude::*;
//!
//! let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
//! let subscriber = tracing_subscriber::registry().with(BlackboxLayer::new(rec));
//! # let _guard = tracing::subscriber::set_default(subscriber);
//! // or: subscriber.init();
//!
//! let span = tracing::info_span!("request", id = 7);
//! let _entered = span.enter();
//! tracing::warn!(ms = 250u64, table = "users", "slow query");
//! // one event: WARN, target of this module, "slow query",
//! // fields spans = "request", ms = 250, table = "users"
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! # What an event becomes
//!
//! One standard event record (`KIND_EVENT`, `shm-layout.md` section 5):
//!
//! - time: the record's timestamp, taken by the ring at the append;
//! - level: tracing's five levels map one to one;
//! - target: the event's target (by default its module path);
//! - message: the event's `message` field, formatted;
//! - fields, in this order:
//!   - `spans` (string): the names of the spans the event is in, from the
//!     outermost to the innermost, joined by `:` (e.g. `"request:db"`);
//!     absent when the event is in no span. Only names: span *fields* are
//!     not copied into every event;
//!   - `thread` (string): the thread's name, only with
//!     [`BlackboxLayer::with_thread_names`];
//!   - the event's own fields, typed: `i64`, `u64`, `f64`, `bool` and
//!     strings keep their type (`i128`/`u128` too when they fit in 64
//!     bits); anything else (`?x`, `%x`, errors, byte slices) is stored as a
//!     `Debug` field with its text;
//!   - `dropped_fields` (`u64`): only when the event had more fields than
//!     [`MAX_EVENT_FIELDS`], how many were left out.
//! - the thread: its Linux thread id is in every event's header.
//!
//! # Allocation and cuts
//!
//! `on_event` allocates nothing. An event is collected on the stack: its
//! fields straight into the fixed array handed to the recorder, its
//! message formatted into a byte buffer, and the text that must be copied
//! or formatted (string and `Debug` values, the span path) into a text
//! buffer. It is first collected with small buffers (8 fields, 128 bytes
//! of message, 256 bytes of text), cheap to set up; an event that does not
//! fit is collected again (its fields visited, and `Debug` impls called, a
//! second time) with the full ones: [`MAX_EVENT_FIELDS`] fields,
//! [`MESSAGE_CAP`] and [`TEXT_CAP`] bytes. What still does not fit is cut
//! on a character boundary and ends in `…`; fields beyond the array are
//! counted in `dropped_fields`. The span lookup reads the registry's span
//! data and allocates nothing either.
//!
//! # Closing the ring
//!
//! The layer holds an `Arc<Recorder>`. A subscriber installed with
//! `init()` / `set_global_default` lives until the process ends, so its
//! ring is never closed and the reader reports the writer as `killed` after
//! a normal exit, unless the program calls
//! [`Recorder::mark_clean_exit`](crate::Recorder::mark_clean_exit) (on any
//! handle) as it ends. Alternatively scope the subscriber
//! (`tracing::subscriber::with_default`, or a `Dispatch` per thread), drop
//! it, and close the `Recorder` that `Arc::try_unwrap` returns.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing_core::field::{Field as TField, Visit};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::log_adapter::{text_of, Arena, Fill, Span};
pub use crate::log_adapter::{MESSAGE_CAP, TEXT_CAP};
use crate::{Field, Level, Recorder, Value};

/// Most fields of an event kept (besides `spans`, `thread` and
/// `dropped_fields`); more are dropped and counted in `dropped_fields`.
pub const MAX_EVENT_FIELDS: usize = 16;

/// Deepest span nesting named in `spans`; deeper spans keep the innermost
/// names, after a leading `…`.
pub const MAX_SPAN_DEPTH: usize = 16;

/// Separator of the span names in the `spans` field.
pub const SPAN_SEPARATOR: char = ':';

/// The fields the layer adds: `spans`, `thread`, `dropped_fields`.
const EXTRA_FIELDS: usize = 3;

/// A [`Layer`] that appends every event to a [`Recorder`]; see the
/// [module documentation](self).
///
/// # Examples
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("layer-doc2-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use std::sync::Arc;
/// use recorder::{BlackboxLayer, Recorder};
/// use tracing_subscriber::prelude::*;
///
/// let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
/// let layer = BlackboxLayer::new(Arc::clone(&rec)).with_thread_names(true);
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info!(port = 8080u64, "listening");
/// });
/// // The subscriber is gone: this is the last handle, close the ring.
/// Arc::try_unwrap(rec).ok().expect("last handle").close();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct BlackboxLayer {
    rec: Arc<Recorder>,
    spans: bool,
    thread_names: bool,
}

impl fmt::Debug for BlackboxLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlackboxLayer")
            .field("ring", &self.rec.path())
            .field("spans", &self.spans)
            .field("thread_names", &self.thread_names)
            .finish()
    }
}

impl BlackboxLayer {
    /// A layer that writes every event into `rec`, with span names and
    /// without thread names.
    pub fn new(rec: Arc<Recorder>) -> BlackboxLayer {
        BlackboxLayer {
            rec,
            spans: true,
            thread_names: false,
        }
    }

    /// Whether to add the `spans` field (the names of the spans the event
    /// is in). Default `true`.
    #[must_use]
    pub fn with_spans(mut self, spans: bool) -> BlackboxLayer {
        self.spans = spans;
        self
    }

    /// Whether to add a `thread` field with the thread's name (the thread
    /// id is always in the event). Default `false`: it costs a reference
    /// count on the thread handle per event.
    #[must_use]
    pub fn with_thread_names(mut self, names: bool) -> BlackboxLayer {
        self.thread_names = names;
        self
    }

    /// The ring this layer writes to.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.rec
    }
}

fn level(level: &tracing_core::Level) -> Level {
    match *level {
        tracing_core::Level::ERROR => Level::Error,
        tracing_core::Level::WARN => Level::Warn,
        tracing_core::Level::INFO => Level::Info,
        tracing_core::Level::DEBUG => Level::Debug,
        _ => Level::Trace,
    }
}

/// Collects an event's message and fields into stack buffers of `M`
/// bytes (message) and `A` bytes (text), and at most `N` fields, the
/// layer's own included.
///
/// Fields go straight into the array that is handed to the recorder. Text
/// values cannot point into the arena while it is still written, so they
/// are stored as empty placeholders, with their range in `text`, and
/// filled in once the event has been visited (in
/// [`BlackboxLayer::write_event`]). The buffers live in the caller's frame,
/// so nothing is moved or copied afterwards.
struct Collect<'c, 'f, const N: usize, const A: usize> {
    message: Fill<'c>,
    arena: &'c mut Arena<A>,
    fields: &'c mut [Field<'f>; N],
    text: &'c mut [Span; N],
    count: usize,
    /// Fields the layer added (they come first).
    own: usize,
    dropped: u64,
    /// Some text was cut to fit the arena.
    cut: bool,
}

impl<'c, 'f, const N: usize, const A: usize> Collect<'c, 'f, N, A> {
    #[inline]
    fn new(
        message_buf: &'c mut [u8],
        arena: &'c mut Arena<A>,
        fields: &'c mut [Field<'f>; N],
        text: &'c mut [Span; N],
    ) -> Self {
        Collect {
            message: Fill::new(message_buf),
            arena,
            fields,
            text,
            count: 0,
            own: 0,
            dropped: 0,
            cut: false,
        }
    }

    /// Room for one more of the event's fields: `N - EXTRA_FIELDS` of
    /// them, besides the layer's own.
    #[inline]
    fn has_room(&mut self) -> bool {
        if self.count - self.own < N - EXTRA_FIELDS {
            return true;
        }
        self.dropped += 1;
        false
    }

    /// Adds one of the layer's fields (before the event's own).
    fn add_own_text(
        &mut self,
        name: &'static str,
        write: impl FnOnce(&mut Fill<'_>) -> fmt::Result,
    ) {
        debug_assert_eq!(self.count, self.own, "the layer's fields come first");
        self.add_text(name, false, write);
        self.own = self.count;
    }

    #[inline]
    fn add(&mut self, name: &'static str, value: Value<'static>) {
        if self.has_room() {
            self.fields[self.count] = Field { name, value };
            self.count += 1;
        }
    }

    /// Adds a text field whose text `write` puts into the arena.
    #[inline]
    fn add_text(
        &mut self,
        name: &'static str,
        debug: bool,
        write: impl FnOnce(&mut Fill<'_>) -> fmt::Result,
    ) {
        if self.has_room() {
            let (span, cut) = self.arena.push(write);
            self.cut |= cut;
            self.text[self.count] = span;
            let value = if debug {
                Value::Debug("")
            } else {
                Value::Str("")
            };
            self.fields[self.count] = Field { name, value };
            self.count += 1;
        }
    }

    /// Whether anything was cut or dropped.
    fn overflowed(&self) -> bool {
        self.cut || self.dropped > 0 || self.message.was_cut()
    }
}

#[inline]
fn is_message(field: &TField) -> bool {
    field.name() == "message"
}

impl<const N: usize, const A: usize> Visit for Collect<'_, '_, N, A> {
    fn record_f64(&mut self, field: &TField, value: f64) {
        self.add(field.name(), Value::F64(value));
    }

    fn record_i64(&mut self, field: &TField, value: i64) {
        self.add(field.name(), Value::I64(value));
    }

    fn record_u64(&mut self, field: &TField, value: u64) {
        self.add(field.name(), Value::U64(value));
    }

    fn record_i128(&mut self, field: &TField, value: i128) {
        match i64::try_from(value) {
            Ok(v) => self.record_i64(field, v),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_u128(&mut self, field: &TField, value: u128) {
        match u64::try_from(value) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_bool(&mut self, field: &TField, value: bool) {
        self.add(field.name(), Value::Bool(value));
    }

    fn record_str(&mut self, field: &TField, value: &str) {
        if is_message(field) {
            let _ = self.message.write_str(value);
        } else {
            self.add_text(field.name(), false, |f| f.write_str(value));
        }
    }

    fn record_debug(&mut self, field: &TField, value: &dyn fmt::Debug) {
        if is_message(field) {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.add_text(field.name(), true, |f| write!(f, "{value:?}"));
        }
    }
}

/// Writes the names of the spans around the event, outermost first, into
/// the arena.
fn span_path<S, const N: usize, const A: usize>(
    ctx: &Context<'_, S>,
    event: &Event<'_>,
    c: &mut Collect<'_, '_, N, A>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(scope) = ctx.event_scope(event) else {
        return;
    };
    // The scope runs from the innermost span out.
    let mut names = [""; MAX_SPAN_DEPTH];
    let mut depth = 0;
    let mut deeper = false;
    for span in scope {
        if depth == MAX_SPAN_DEPTH {
            deeper = true;
            break;
        }
        names[depth] = span.name();
        depth += 1;
    }
    c.add_own_text("spans", |f| {
        if deeper {
            f.write_str("…")?;
            f.write_char(SPAN_SEPARATOR)?;
        }
        for (i, name) in names[..depth].iter().rev().enumerate() {
            if i > 0 {
                f.write_char(SPAN_SEPARATOR)?;
            }
            f.write_str(name)?;
        }
        Ok(())
    });
}

/// The fast path's buffers: most events fit, and small buffers are cheap
/// to set up. An event that does not fit is written again with the full
/// buffers ([`MAX_EVENT_FIELDS`], [`MESSAGE_CAP`], [`TEXT_CAP`]).
const SMALL_FIELDS: usize = 8;
const SMALL_MESSAGE: usize = 128;
const SMALL_TEXT: usize = 256;

impl BlackboxLayer {
    /// Collects and appends the event with buffers of the given sizes.
    /// Returns `false`, having appended nothing, if `retry` and something
    /// did not fit.
    #[inline(always)]
    fn write_event<S, const N: usize, const M: usize, const A: usize>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        retry: bool,
    ) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut message_buf = [0u8; M];
        let mut arena = Arena::<A>::new();
        let mut fields = [Field::new("", false); N];
        let mut text = [Span::default(); N];
        let mut c = Collect::new(&mut message_buf, &mut arena, &mut fields, &mut text);
        // The layer's fields first: the span path, the thread's name.
        if self.spans {
            span_path(ctx, event, &mut c);
        }
        if self.thread_names {
            let current = std::thread::current();
            let name = current.name().unwrap_or("");
            c.add_own_text("thread", |f| f.write_str(name));
        }
        event.record(&mut c);
        if retry && c.overflowed() {
            return false;
        }
        let mut count = c.count;
        let message_len = c.message.len();
        if c.dropped > 0 {
            fields[count] = Field::new("dropped_fields", c.dropped);
            count += 1;
        }
        // Fill in the text values, now that the arena is only read.
        for (field, &span) in fields[..count].iter_mut().zip(text.iter()) {
            match field.value {
                Value::Str(_) => field.value = Value::Str(arena.get(span)),
                Value::Debug(_) => field.value = Value::Debug(arena.get(span)),
                _ => {}
            }
        }
        let message = text_of(&message_buf[..message_len]);
        let meta = event.metadata();
        // A lapped append is counted in the ring itself; nothing to do here.
        let _ = self.rec.log(
            level(meta.level()),
            meta.target(),
            message,
            &fields[..count],
        );
        true
    }

    /// The slow path: an event that did not fit the small buffers.
    #[cold]
    #[inline(never)]
    fn write_large_event<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.write_event::<S, { MAX_EVENT_FIELDS + EXTRA_FIELDS }, MESSAGE_CAP, TEXT_CAP>(
            event, ctx, false,
        );
    }
}

impl<S> Layer<S> for BlackboxLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.write_event::<S, { SMALL_FIELDS + EXTRA_FIELDS }, SMALL_MESSAGE, SMALL_TEXT>(
            event, &ctx, true,
        ) {
            self.write_large_event(event, &ctx);
        }
    }
}
