//! The reader side of blackbox: open a ring file that another process wrote
//! (alive, or dead by any cause), recover its last window, and tell how its
//! writer ended.
//!
//! The reader trusts nothing in the file: every offset, length and count is
//! checked, memory use is bounded by the ring's capacity, and the file is
//! read with `pread`, never mapped, so a file truncated under the reader
//! gives an error, not SIGBUS.
//!
//! # Examples
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("reader-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("app.ring");
//! # let rec = blackbox_recorder::Recorder::create(&path, 64 << 10).unwrap();
//! # rec.log(blackbox_recorder::Level::Info, "app", "hello", &[]).unwrap();
//! # drop(rec);
//! use blackbox_reader::{decode_event, Ring, State};
//!
//! let ring = Ring::open(&path)?;
//! assert_eq!(ring.state()?, State::Exited);
//! let snap = ring.snapshot()?;
//! for record in &snap.records {
//!     let event = decode_event(snap.payload(record)).unwrap();
//!     println!("{} {}", record.seq, event.message);
//! }
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), blackbox_reader::Error>(())
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "symbolize")]
pub mod backtrace;
pub mod cause;
pub mod dir;
mod error;
mod event;
mod header;
pub mod oom;
pub mod postmortem;
mod records;
pub mod render;
mod ring;
pub mod span;
mod time;
pub mod trace_event;
pub mod typed;

pub use cause::Cause;
pub use error::{Error, ErrorKind};
pub use event::{decode_event, level_text, DecodeError, Event, FieldValue};
pub use header::{Calibration, Death, Header, MemoryEvidence};
pub use ring::{Gap, Record, Records, Ring, Snapshot, State, Totals, WriterRun};
