//! A [`tracing_subscriber::Layer`](https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/layer/trait.Layer.html) that writes every event into a ring.
//!
//! Two lines for a program that uses `tracing`: the layer, with the
//! [`ExitGuard`] that marks the ring `exited` when `main` returns (see
//! [Closing the ring](#closing-the-ring)), and the subscriber:
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("layer-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::sync::Arc;
//! use blackbox_recorder::{BlackboxLayer, Recorder};
//! use tracing_subscriber::prelude::*;
//!
//! let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
//! let (layer, _guard) = BlackboxLayer::new(rec).with_guard(); // keep `_guard` to the end of main
//! let subscriber = tracing_subscriber::registry().with(layer);
//! # let _default = tracing::subscriber::set_default(subscriber);
//! // in a program: subscriber.init();
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
//!     not copied into every event (see [Spans](#spans));
//!   - `span_id` (`u64`): the innermost span's id, right after `spans`,
//!     when the timeline is on (the default);
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
//! # Spans
//!
//! With the timeline on ([`BlackboxLayer::with_timeline`], the default),
//! each span is recorded as it lives (`shm-layout.md`, section 6b): its
//! creation with its id, parent, level, target, name and fields; values
//! given later with `Span::record`; each enter and exit, on the thread
//! that does it; its close; and `follows_from` links. An enter or exit is
//! one small record (id, step, name), appended like an event. `blackbox
//! export` draws them as a timeline; `blackbox read` joins a span's fields
//! into every event inside it (`req{id=7}:db`), through `span_id`, so the
//! fields are written once per span, not once per event.
//!
//! # Allocation and cuts
//!
//! The event is encoded as it is visited, straight into its payload bytes,
//! in a buffer each thread allocates once (8 KiB, on its first event) and
//! then reuses: `on_event` allocates nothing after that, and each field is
//! visited (each `Debug` impl called) once. The message is cut at
//! [`MESSAGE_CAP`] bytes, the field text (strings, `Debug` values, the span
//! path and the thread's name), all together, at [`TEXT_CAP`] bytes; a cut
//! is on a character boundary and ends in `…`. Fields beyond the first
//! [`MAX_EVENT_FIELDS`] are counted in `dropped_fields`. Anything cut or
//! dropped sets the event's `EVENT_FLAG_TRUNCATED`. The span lookup reads
//! the registry's span data and allocates nothing either; nor do the span
//! records (a creation is encoded in the same buffer, a step on the stack).
//!
//! # Closing the ring
//!
//! The layer holds an `Arc<Recorder>`. A subscriber installed with
//! `init()` / `set_global_default` lives until the process ends, so its
//! ring is never closed: without more, the reader reports the writer of a
//! program that returned from `main` as `killed`.
//! [`BlackboxLayer::with_guard`] returns the layer with an [`ExitGuard`],
//! as `tracing_appender::non_blocking` returns its `WorkerGuard`: keep it
//! in `main` (`let (layer, _guard) = ...`, not `_`, which drops it at
//! once), and when `main` returns it is dropped and marks the ring `exited`
//! ([`Recorder::mark_clean_exit`](crate::Recorder::mark_clean_exit)). It
//! does nothing while unwinding from a panic: that is no clean exit (the
//! crash handlers, if installed, record a panic in `main` as a crash).
//! Alternatively scope the subscriber
//! (`tracing::subscriber::with_default`, or a `Dispatch` per thread), drop
//! it, and close the `Recorder` that `Arc::try_unwrap` returns.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing_core::field::{Field as TField, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::event::Level;
use crate::event_buf::{with_scratch, EventBuf};
pub use crate::event_buf::{MESSAGE_CAP, TEXT_CAP};
use crate::exit_guard::ExitGuard;
use crate::layout::{
    KIND_SPAN_FOLLOWS, KIND_SPAN_NEW, KIND_SPAN_RECORD, KIND_SPAN_STEP, SPAN_FOLLOWS_LEN,
    SPAN_NEW_FIXED_LEN, SPAN_OP_CLOSE, SPAN_OP_ENTER, SPAN_OP_EXIT, SPAN_STEP_FIXED_LEN,
    SP_FOLLOWS, SP_ID, SP_NAME_LEN, SP_OP, SP_PARENT,
};
use crate::recorder::Recorder;

/// Most fields of an event kept (besides `spans`, `thread` and
/// `dropped_fields`); more are dropped and counted in `dropped_fields`.
pub const MAX_EVENT_FIELDS: usize = 16;

/// Deepest span nesting named in `spans`; deeper spans keep the innermost
/// names, after a leading `…`.
pub const MAX_SPAN_DEPTH: usize = 16;

/// Separator of the span names in the `spans` field.
pub const SPAN_SEPARATOR: char = ':';

/// Name of the field, right after `spans`, that holds the id of the
/// innermost span (with the timeline on): the reader finds the spans'
/// fields through it.
pub const SPAN_ID_FIELD: &str = "span_id";

/// A [`Layer`](https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/layer/trait.Layer.html) that appends every event to a [`Recorder`]; see the
/// [module documentation](self).
///
/// # Examples
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("layer-doc2-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use std::sync::Arc;
/// use blackbox_recorder::{BlackboxLayer, Recorder};
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
    timeline: bool,
    thread_names: bool,
}

impl fmt::Debug for BlackboxLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlackboxLayer")
            .field("ring", &self.rec.path())
            .field("spans", &self.spans)
            .field("timeline", &self.timeline)
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
            timeline: true,
            thread_names: false,
        }
    }

    /// Whether to record the spans themselves (creation with their fields,
    /// values recorded later, enter, exit, close, follows-from) as span
    /// records, for `blackbox export`'s timeline and for the span fields
    /// `blackbox read` joins into events. Default `true`. Without it, an
    /// event carries only its spans' names.
    #[must_use]
    pub fn with_timeline(mut self, timeline: bool) -> BlackboxLayer {
        self.timeline = timeline;
        self
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

    /// This layer and an [`ExitGuard`] for its ring: for a layer that goes
    /// into a global subscriber (`init()`), which is never dropped. Keep
    /// the guard in `main` until it returns; dropping it marks the ring
    /// `exited` (not while unwinding from a panic). Call it last, after the
    /// other settings.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("layer-guard-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use std::sync::Arc;
    /// use blackbox_recorder::{BlackboxLayer, Recorder};
    /// use tracing_subscriber::prelude::*;
    ///
    /// let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
    /// let (layer, _guard) = BlackboxLayer::new(Arc::clone(&rec))
    ///     .with_thread_names(true)
    ///     .with_guard();
    /// tracing_subscriber::registry().with(layer).init();
    /// tracing::info!(port = 8080u64, "listening");
    /// // ... main returns: `_guard` is dropped, the ring says "exited".
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[must_use = "the guard marks the ring `exited` when dropped: keep it (`let (layer, _guard) = ...`) until `main` returns"]
    pub fn with_guard(self) -> (BlackboxLayer, ExitGuard) {
        let guard = ExitGuard::new(&self.rec);
        (self, guard)
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

/// Encodes the event's fields as they are visited. A span's fields are all
/// fields (its `message` field too: a span's name is its message).
struct Collect<'e, 'b> {
    e: &'e mut EventBuf<'b>,
    span: bool,
}

impl Collect<'_, '_> {
    #[inline]
    fn is_message(&self, field: &TField) -> bool {
        !self.span && field.name() == "message"
    }
}

impl Visit for Collect<'_, '_> {
    fn record_f64(&mut self, field: &TField, value: f64) {
        self.e.f64(field.name(), value);
    }

    fn record_i64(&mut self, field: &TField, value: i64) {
        self.e.i64(field.name(), value);
    }

    fn record_u64(&mut self, field: &TField, value: u64) {
        self.e.u64(field.name(), value);
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
        self.e.bool(field.name(), value);
    }

    fn record_str(&mut self, field: &TField, value: &str) {
        if self.is_message(field) {
            self.e.message(|c| c.write_str(value));
        } else {
            self.e.str(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &TField, value: &dyn fmt::Debug) {
        if self.is_message(field) {
            self.e.message(|c| write!(c, "{value:?}"));
        } else {
            self.e.text(field.name(), true, |c| write!(c, "{value:?}"));
        }
    }
}

/// Adds the names of the spans around the event, outermost first, and with
/// `span_id` the innermost span's id (the reader joins the spans' fields
/// through it).
fn span_path<S>(ctx: &Context<'_, S>, event: &Event<'_>, e: &mut EventBuf<'_>, span_id: bool)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(scope) = ctx.event_scope(event) else {
        return;
    };
    // The scope runs from the innermost span out.
    let mut names = [""; MAX_SPAN_DEPTH];
    let mut depth = 0;
    let mut deeper = false;
    let mut innermost = 0;
    for span in scope {
        if depth == MAX_SPAN_DEPTH {
            deeper = true;
            break;
        }
        if depth == 0 {
            innermost = span.id().into_u64();
        }
        names[depth] = span.name();
        depth += 1;
    }
    e.own_text("spans", |f| {
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
    if span_id {
        e.own_u64(SPAN_ID_FIELD, innermost);
    }
}

/// A span step record's payload (`KIND_SPAN_STEP`): id, step, name (cut to
/// 255 bytes on a character boundary), built on the stack.
struct StepPayload {
    bytes: [u8; SPAN_STEP_FIXED_LEN + 255],
    len: usize,
}

impl StepPayload {
    #[inline]
    fn new(id: u64, op: u8, name: &str) -> StepPayload {
        let name = crate::event::truncate_str(name, 255);
        let mut bytes = [0u8; SPAN_STEP_FIXED_LEN + 255];
        bytes[SP_ID..SP_ID + 8].copy_from_slice(&id.to_le_bytes());
        bytes[SP_OP] = op;
        bytes[SP_NAME_LEN] = name.len() as u8;
        let len = SPAN_STEP_FIXED_LEN + name.len();
        bytes[SPAN_STEP_FIXED_LEN..len].copy_from_slice(name.as_bytes());
        StepPayload { bytes, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl BlackboxLayer {
    /// Appends a span step; a dropped append is counted in the ring.
    #[inline]
    fn step<S>(&self, id: &Id, op: u8, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let name = ctx.metadata(id).map_or("", |m| m.name());
        let payload = StepPayload::new(id.into_u64(), op, name);
        let _ = self
            .rec
            .shared()
            .append_encoded(KIND_SPAN_STEP, payload.bytes());
    }
}

impl<S> Layer<S> for BlackboxLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = level(meta.level());
        with_scratch(|buf| {
            let mut e = EventBuf::start(
                buf,
                self.rec.max_record_len(),
                level,
                meta.target(),
                MAX_EVENT_FIELDS,
            );
            // The layer's fields first: the span path, the thread's name.
            if self.spans {
                span_path(&ctx, event, &mut e, self.timeline);
            }
            if self.thread_names {
                let current = std::thread::current();
                let name = current.name().unwrap_or("");
                e.own_text("thread", |f| f.write_str(name));
            }
            event.record(&mut Collect {
                e: &mut e,
                span: false,
            });
            // A dropped append is counted in the ring itself; nothing to
            // do here.
            let _ = self.rec.shared().log_encoded(level, e.finish());
        });
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.timeline {
            return;
        }
        let meta = attrs.metadata();
        // The registry resolved the parent (explicit, or the current span).
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.id().into_u64()))
            .unwrap_or(0);
        let mut prefix = [0u8; SPAN_NEW_FIXED_LEN];
        prefix[SP_ID..SP_ID + 8].copy_from_slice(&id.into_u64().to_le_bytes());
        prefix[SP_PARENT..SP_PARENT + 8].copy_from_slice(&parent.to_le_bytes());
        with_scratch(|buf| {
            let mut e = EventBuf::start_after(
                buf,
                &prefix,
                self.rec.max_record_len(),
                level(meta.level()),
                meta.target(),
                MAX_EVENT_FIELDS,
            );
            e.message(|c| c.write_str(meta.name()));
            attrs.record(&mut Collect {
                e: &mut e,
                span: true,
            });
            let _ = self.rec.shared().append_encoded(KIND_SPAN_NEW, e.finish());
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.timeline {
            return;
        }
        let span_level = ctx.metadata(id).map_or(Level::Trace, |m| level(m.level()));
        with_scratch(|buf| {
            let mut e = EventBuf::start_after(
                buf,
                &id.into_u64().to_le_bytes(),
                self.rec.max_record_len(),
                span_level,
                "",
                MAX_EVENT_FIELDS,
            );
            values.record(&mut Collect {
                e: &mut e,
                span: true,
            });
            let _ = self
                .rec
                .shared()
                .append_encoded(KIND_SPAN_RECORD, e.finish());
        });
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _ctx: Context<'_, S>) {
        if !self.timeline {
            return;
        }
        let mut payload = [0u8; SPAN_FOLLOWS_LEN];
        payload[SP_ID..SP_ID + 8].copy_from_slice(&id.into_u64().to_le_bytes());
        payload[SP_FOLLOWS..SP_FOLLOWS + 8].copy_from_slice(&follows.into_u64().to_le_bytes());
        let _ = self
            .rec
            .shared()
            .append_encoded(KIND_SPAN_FOLLOWS, &payload);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.timeline {
            self.step(id, SPAN_OP_ENTER, &ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.timeline {
            self.step(id, SPAN_OP_EXIT, &ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.timeline {
            self.step(&id, SPAN_OP_CLOSE, &ctx);
        }
    }
}
