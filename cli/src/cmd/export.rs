//! `blackbox export RING --format trace-event [-o FILE]`: the window as a
//! timeline that Perfetto's UI, Chrome's tracing and speedscope open.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use blackbox_reader::trace_event::{write_trace_event, ExportStats};
use blackbox_reader::Ring;
use clap::{Args, ValueEnum};

use crate::failure::Failure;

/// What `export` writes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Trace Event Format JSON: one track per thread, spans as nested
    /// slices, events as instants, markers for the death and snapshots.
    TraceEvent,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The ring file.
    pub ring: PathBuf,
    /// The output format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout (replaced whole: written next to it,
    /// then renamed).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Writes the export of the ring at `path` to `out`.
pub fn export_to(path: &Path, out: &mut impl Write) -> Result<ExportStats, Failure> {
    let ring = Ring::open(path).map_err(|e| Failure::ring(path, &e))?;
    let state = ring.state().map_err(|e| Failure::ring(path, &e))?;
    let snap = ring.snapshot().map_err(|e| Failure::ring(path, &e))?;
    Ok(write_trace_event(&snap, state, out)?)
}

pub fn run(opts: ExportArgs) -> Result<i32, Failure> {
    let ExportFormat::TraceEvent = opts.format;
    match &opts.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            export_to(&opts.ring, &mut out)?;
            out.flush()?;
        }
        Some(file) => {
            let name = file
                .file_name()
                .ok_or_else(|| Failure::error(format!("{}: not a file name", file.display())))?;
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{}.tmp", std::process::id()));
            let tmp = file.with_file_name(tmp_name);
            let cannot = |e: std::io::Error| {
                Failure::error(format!("{}: cannot write: {e}", file.display()))
            };
            let result = (|| {
                let mut out = BufWriter::new(File::create(&tmp).map_err(cannot)?);
                export_to(&opts.ring, &mut out)?;
                out.into_inner()
                    .map_err(|e| cannot(e.into_error()))?
                    .sync_all()
                    .map_err(cannot)?;
                std::fs::rename(&tmp, file).map_err(cannot)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
    }
    Ok(0)
}
