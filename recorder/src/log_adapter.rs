//! A [`log::Log`](https://docs.rs/log/0.4/log/trait.Log.html) implementation that writes every record into a ring.
//!
//! One line for a program that logs through the `log` crate; it returns the
//! [`ExitGuard`](crate::ExitGuard) that marks the ring `exited` when `main`
//! returns (see [Closing the ring](#closing-the-ring)):
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("log-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::sync::Arc;
//! use blackbox_recorder::{BlackboxLogger, Recorder};
//!
//! let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
//! let _guard = BlackboxLogger::new(Arc::clone(&rec)).init().unwrap(); // keep to the end of main
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
//! The record is encoded as it is visited, straight into its payload
//! bytes, in a buffer each thread allocates once (8 KiB, on its first
//! record) and then reuses: logging allocates nothing after that. The
//! message is cut at [`MESSAGE_CAP`] bytes, the key-values' text (strings
//! and values rendered with `Display`), all together, at [`TEXT_CAP`]
//! bytes; a cut is on a character boundary and ends in `…`. Key-values
//! beyond the first [`MAX_KV_FIELDS`] are dropped, and a `u64` field
//! `dropped_fields` says how many. Anything cut or dropped sets the
//! event's `EVENT_FLAG_TRUNCATED`.
//!
//! # Closing the ring
//!
//! `log` keeps its logger for the life of the process, so the `Arc` inside
//! the installed logger is never dropped and the ring is not closed when the
//! program returns from `main`: without more, the reader reports the writer
//! as `killed` (an exit that skipped the close). So
//! [`BlackboxLogger::init`] returns an [`ExitGuard`](crate::ExitGuard), as
//! `tracing_appender::non_blocking` returns its `WorkerGuard`: keep it in
//! `main` (`let _guard = ...`, not `let _ =`, which drops it at once), and
//! when `main` returns it is dropped and marks the ring `exited`
//! ([`Recorder::mark_clean_exit`](crate::Recorder::mark_clean_exit)). It
//! does nothing while unwinding from a panic: that is no clean exit (the
//! crash handlers, if installed, record a panic in `main` as a crash).
//! Alternatively install the logger with a scope of your
//! own (for example a forwarding logger that you can empty), drop every
//! other handle, and close the [`Recorder`](crate::Recorder) you get back
//! from `Arc::try_unwrap`.

pub use crate::event_buf::{MESSAGE_CAP, TEXT_CAP};

/// Most key-values kept per `log` record; more are dropped and counted in a
/// `dropped_fields` field.
pub const MAX_KV_FIELDS: usize = 16;

pub use adapter::BlackboxLogger;

mod adapter {
    use std::fmt::{self, Write as _};
    use std::sync::Arc;

    use log::kv::{self, Key, VisitSource, VisitValue};

    use super::MAX_KV_FIELDS;
    use crate::event::Level;
    use crate::event_buf::{with_scratch, EventBuf};
    use crate::exit_guard::ExitGuard;
    use crate::recorder::Recorder;

    /// A [`log::Log`](https://docs.rs/log/0.4/log/trait.Log.html) that appends every record to a [`Recorder`] as a
    /// standard event; see the [module documentation](super).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("logger-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use std::sync::Arc;
    /// use blackbox_recorder::{BlackboxLogger, Recorder};
    ///
    /// let rec = Arc::new(Recorder::create(dir.join("app.ring"), 1 << 20).unwrap());
    /// let _guard = BlackboxLogger::new(rec)
    ///     .with_max_level(log::LevelFilter::Info)
    ///     .init()
    ///     .unwrap();
    /// log::info!(attempt = 3; "connected");
    /// // ... main returns: `_guard` is dropped, the ring says "exited".
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

        /// Installs this logger as the process's `log` logger, sets
        /// `log::max_level` to its maximum level, and returns an
        /// [`ExitGuard`] for the ring: `log` never drops its logger, so keep
        /// the guard in `main` (`let _guard = ...`) until it returns, and
        /// dropping it marks the ring `exited` (not while unwinding from a
        /// panic). Without it the ring reads `killed` after a normal exit.
        ///
        /// # Errors
        ///
        /// [`log::SetLoggerError`](https://docs.rs/log/0.4/log/struct.SetLoggerError.html) if a logger is installed already (then
        /// no guard is made).
        pub fn init(self) -> Result<ExitGuard, log::SetLoggerError> {
            let level = self.max_level;
            let rec = Arc::clone(&self.rec);
            log::set_boxed_logger(Box::new(self))?;
            log::set_max_level(level);
            Ok(ExitGuard::new(&rec))
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

    /// Encodes one key-value's value.
    struct OneValue<'e, 'b, 'k> {
        event: &'e mut EventBuf<'b>,
        name: &'k str,
    }

    impl<'k> VisitValue<'k> for OneValue<'_, '_, '_> {
        fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
            self.event.text(self.name, true, |f| write!(f, "{value}"));
            Ok(())
        }
        fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
            self.event.u64(self.name, value);
            Ok(())
        }
        fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
            self.event.i64(self.name, value);
            Ok(())
        }
        fn visit_u128(&mut self, value: u128) -> Result<(), kv::Error> {
            match u64::try_from(value) {
                Ok(v) => self.event.u64(self.name, v),
                Err(_) => self.event.text(self.name, true, |f| write!(f, "{value}")),
            }
            Ok(())
        }
        fn visit_i128(&mut self, value: i128) -> Result<(), kv::Error> {
            match i64::try_from(value) {
                Ok(v) => self.event.i64(self.name, v),
                Err(_) => self.event.text(self.name, true, |f| write!(f, "{value}")),
            }
            Ok(())
        }
        fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
            self.event.f64(self.name, value);
            Ok(())
        }
        fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
            self.event.bool(self.name, value);
            Ok(())
        }
        fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
            self.event.str(self.name, value);
            Ok(())
        }
    }

    /// Encodes the key-values as they are visited.
    struct Collect<'e, 'b>(&'e mut EventBuf<'b>);

    impl<'k> VisitSource<'k> for Collect<'_, '_> {
        fn visit_pair(&mut self, key: Key<'k>, value: kv::Value<'k>) -> Result<(), kv::Error> {
            let mut one = OneValue {
                event: self.0,
                name: key.as_str(),
            };
            value.visit(&mut one)
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
            let level = level(record.level());
            with_scratch(|buf| {
                let mut e = EventBuf::start(
                    buf,
                    self.rec.max_record_len(),
                    level,
                    record.target(),
                    MAX_KV_FIELDS,
                );
                let args = record.args();
                match args.as_str() {
                    Some(s) => e.message(|f| f.write_str(s)),
                    None => e.message(|f| f.write_fmt(*args)),
                }
                let _ = record.key_values().visit(&mut Collect(&mut e));
                // A dropped append is counted in the ring itself.
                let _ = self.rec.shared().log_encoded(level, e.finish());
            });
        }

        fn flush(&self) {}
    }
}
