//! `blackbox`: recover, inspect and ship the last window of a process that
//! died, from its ring file. The reading itself is the `blackbox-reader`
//! library; this binary is its command line, the shipper, the `watch`
//! collector, the `on-failure` reporter and the demo writer.

mod cmd;
mod failure;
mod ship;
mod watch;

use std::io::{self, Write};

use clap::{Parser, Subcommand};

use crate::cmd::{
    demo, export, info, on_failure, read, ship as ship_cmd, verify, watch as watch_cmd,
};
use crate::failure::EXIT_ERROR;

/// blackbox: recover the last window of a process that died, from its ring file.
#[derive(Parser, Debug)]
#[command(name = "blackbox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the writer's identity, its state or cause of death, and the window's extent.
    Info(info::InfoArgs),
    /// Print the window's records, oldest first.
    Read(read::ReadArgs),
    /// Check that the ring is consistent (exit 0) or say what is damaged (exit 1).
    Verify(verify::VerifyArgs),
    /// Ship the window (dead or alive) to stdout, a file or an HTTP endpoint, as NDJSON or OTLP.
    Ship(ship_cmd::ShipArgs),
    /// Run a demo writer that records, then dies as asked (for trying the pipeline and for tests).
    Demo(demo::DemoArgs),
    /// Report (and ship) the ring of a unit that failed: the command a systemd OnFailure= unit runs.
    #[command(long_about = on_failure::ON_FAILURE_ABOUT)]
    OnFailure(on_failure::OnFailureArgs),
    /// Collect from a directory of rings: ship each dead writer's window once, and live writers' snapshots.
    #[command(long_about = watch_cmd::WATCH_ABOUT)]
    Watch(watch_cmd::WatchArgs),
    /// Write the window as a timeline (Trace Event Format JSON: Perfetto's UI, chrome://tracing, speedscope).
    Export(export::ExportArgs),
}

fn main() {
    std::process::exit(run());
}

/// Runs the command line and returns the process exit status.
fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_failure(err),
    };
    let result = match cli.command {
        Command::Info(a) => info::run(&a),
        Command::Read(a) => read::run(a),
        Command::Verify(a) => verify::run(&a),
        Command::Ship(a) => ship_cmd::run(a),
        Command::Demo(a) => demo::run(a),
        Command::OnFailure(a) => on_failure::run(a),
        Command::Watch(a) => watch_cmd::run(a),
        Command::Export(a) => export::run(a),
    };
    match result {
        Ok(code) => code,
        Err(f) if f.is_broken_pipe() => 0,
        Err(f) => {
            let _ = writeln!(io::stderr(), "blackbox: {}", f.message);
            f.code
        }
    }
}

/// Help and version go to stdout as usual; a usage error becomes one line.
fn clap_failure(err: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_ERROR
            } else {
                0
            }
        }
        _ => {
            // clap's message is a paragraph (for a missing argument the
            // names are on the lines after the first): join it into one line.
            let text = err.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = paragraph.join(" ");
            let line = line.trim_start_matches("error: ");
            let _ = writeln!(io::stderr(), "blackbox: {line} (see blackbox --help)");
            EXIT_ERROR
        }
    }
}
