//! The writer side of blackbox: a flight recorder whose window survives the
//! death of the process that writes it.
//!
//! A [`Recorder`] appends records to a file-backed shared mapping laid out as
//! a ring of chunks (`shm-layout.md` at the repository root has every byte).
//! Each thread appends into a chunk it owns: a copy and one release store,
//! no lock, no allocation, and no system call once the thread has appended
//! before (its first append makes a few, once: its id and name, an
//! alternate signal stack). The pages belong to the kernel's page cache, so when the process
//! dies (panic, abort, segfault, SIGKILL, OOM kill) the records stay, and
//! the `blackbox` reader recovers them from another process.
//!
//! # Examples
//!
//! ```
//! use blackbox_recorder::{Field, Level, Recorder};
//!
//! let dir = std::env::temp_dir().join(format!("lib-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let rec = Recorder::builder(dir.join("app.ring"))
//!     .capacity(1 << 20)
//!     .app_version("1.4.2")
//!     .create()
//!     .expect("create ring");
//! rec.log(Level::Warn, "app::db", "slow query", &[Field::new("ms", 250u64)]).unwrap();
//! rec.close(); // or drop it: the ring is marked "exited"
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! # What it guarantees
//!
//! A record whose append returned `Ok` is in the ring until its chunk is
//! reused for newer records (chunks are reused oldest first), whatever
//! happens to the process afterwards. No thread, however long it is
//! stalled, ever writes over another thread's records: when no chunk is
//! free, the new record is dropped and counted instead. A record whose
//! writer died before publishing it is recognised as torn and skipped; it
//! costs that record only.
//!
//! # Unsafe code
//!
//! `unsafe` is denied in the crate and allowed only where it is needed,
//! each block with a `SAFETY:` comment: in the modules `mapping` (raw
//! pointers into the shared mapping), `clock` (`rdtsc`), `sys` (libc
//! calls), `checksum` (the CRC instruction), `crash` (signal handlers) and
//! `modules` (`dl_iterate_phdr` and the notes it points at);
//! and on single items of `append` (one claim-to-cursor step). The
//! `loom` model in `claim`'s tests reads through loom's cells. A test
//! (`unsafe_code_stays_where_the_docs_say`) fails when another module
//! allows it.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
mod unsafe_places {
    /// Modules that allow `unsafe` throughout, and modules that allow it on
    /// single items: the list in the crate docs.
    const WHOLE: [&str; 6] = ["checksum", "clock", "crash", "mapping", "sys", "modules"];
    const ITEMS: [&str; 2] = ["append", "claim"];

    #[test]
    fn unsafe_code_stays_where_the_docs_say() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if name == "lib" {
                continue; // this test names the attributes
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let whole = text.contains("#![allow(unsafe_code)]");
            let items = text.contains("#[allow(unsafe_code");
            assert_eq!(
                whole,
                WHOLE.contains(&name.as_str()),
                "{name}: #![allow(unsafe_code)]"
            );
            assert_eq!(
                items,
                ITEMS.contains(&name.as_str()),
                "{name}: #[allow(unsafe_code)]"
            );
        }
    }
}

// `checksum`, `layout` and `lock` are public for the reader crate
// (blackbox-reader) and the tests, which read and check ring files; they are
// not part of the recorder's API, so the docs leave them out.

mod append;
mod builder;
#[doc(hidden)]
pub mod checksum;
mod claim;
mod clock;
pub mod crash;
mod create;
mod error;
mod event;
#[cfg(any(feature = "log", feature = "tracing"))]
mod event_buf;
mod exit_guard;
mod heartbeat;
#[doc(hidden)]
pub mod layout;
#[doc(hidden)]
pub mod lock;
#[cfg(feature = "log")]
pub mod log_adapter;
mod mapping;
mod memory;
mod modules;
mod payload;
mod recorder;
mod ring_dir;
mod shared;
mod sys;
#[cfg(feature = "tracing")]
pub mod tracing_layer;
#[cfg(feature = "typed-codec")]
pub mod typed;

pub use builder::DEFAULT_KEEP_DEAD_RINGS;
pub use clock::Clock;
pub use error::{AppendError, CreateError, CreateErrorKind};
pub use event::{Field, Level, Value, EVENT_FLAG_TRUNCATED};
pub use exit_guard::ExitGuard;
pub use recorder::{
    Recorder, RecorderBuilder, Seq, DEFAULT_CAPACITY, DEFAULT_HEARTBEAT, ENV_DIR, ENV_KEEP,
    SNAPSHOT_TARGET,
};
pub use sys::realtime_ns;

#[cfg(feature = "log")]
pub use log_adapter::BlackboxLogger;
#[cfg(feature = "tracing")]
pub use tracing_layer::BlackboxLayer;

/// The README's Rust examples, compiled as this crate's doctests
/// (`cargo test --workspace`), so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
