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
//! The event is encoded as it is visited, straight into its payload bytes,
//! in a buffer each thread allocates once (8 KiB, on its first event) and
//! then reuses: `on_event` allocates nothing after that, and each field is
//! visited (each `Debug` impl called) once. The message is cut at
//! [`MESSAGE_CAP`] bytes, the field text (strings, `Debug` values, the span
//! path and the thread's name), all together, at [`TEXT_CAP`] bytes; a cut
//! is on a character boundary and ends in `…`. Fields beyond the first
//! [`MAX_EVENT_FIELDS`] are counted in `dropped_fields`. Anything cut or
//! dropped sets the event's `EVENT_FLAG_TRUNCATED`. The span lookup reads
//! the registry's span data and allocates nothing either.
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
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::event::Level;
use crate::event_buf::{with_scratch, EventBuf};
pub use crate::event_buf::{MESSAGE_CAP, TEXT_CAP};
use crate::exit_guard::ExitGuard;
use crate::recorder::Recorder;

/// Most fields of an event kept (besides `spans`, `thread` and
/// `dropped_fields`); more are dropped and counted in `dropped_fields`.
pub const MAX_EVENT_FIELDS: usize = 16;

/// Deepest span nesting named in `spans`; deeper spans keep the innermost
/// names, after a leading `…`.
pub const MAX_SPAN_DEPTH: usize = 16;

/// Separator of the span names in the `spans` field.
pub const SPAN_SEPARATOR: char = ':';

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

/// Encodes the event's fields as they are visited.
struct Collect<'e, 'b>(&'e mut EventBuf<'b>);

#[inline]
fn is_message(field: &TField) -> bool {
    field.name() == "message"
}

impl Visit for Collect<'_, '_> {
    fn record_f64(&mut self, field: &TField, value: f64) {
        self.0.f64(field.name(), value);
    }

    fn record_i64(&mut self, field: &TField, value: i64) {
        self.0.i64(field.name(), value);
    }

    fn record_u64(&mut self, field: &TField, value: u64) {
        self.0.u64(field.name(), value);
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
        self.0.bool(field.name(), value);
    }

    fn record_str(&mut self, field: &TField, value: &str) {
        if is_message(field) {
            self.0.message(|c| c.write_str(value));
        } else {
            self.0.text(field.name(), false, |c| c.write_str(value));
        }
    }

    fn record_debug(&mut self, field: &TField, value: &dyn fmt::Debug) {
        if is_message(field) {
            self.0.message(|c| write!(c, "{value:?}"));
        } else {
            self.0.text(field.name(), true, |c| write!(c, "{value:?}"));
        }
    }
}

/// Adds the names of the spans around the event, outermost first.
fn span_path<S>(ctx: &Context<'_, S>, event: &Event<'_>, e: &mut EventBuf<'_>)
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
    for span in scope {
        if depth == MAX_SPAN_DEPTH {
            deeper = true;
            break;
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
                span_path(&ctx, event, &mut e);
            }
            if self.thread_names {
                let current = std::thread::current();
                let name = current.name().unwrap_or("");
                e.own_text("thread", |f| f.write_str(name));
            }
            event.record(&mut Collect(&mut e));
            // A dropped append is counted in the ring itself; nothing to
            // do here.
            let _ = self.rec.shared().log_encoded(level, e.finish());
        });
    }
}
