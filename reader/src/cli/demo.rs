//! `blackbox demo`: a writer for trying the pipeline and for tests.
//!
//! Thread `t` writes `records` events (INFO, target `blackbox::demo`,
//! message `demo record`, fields `t` and `n`), then the process ends as
//! `--die` says.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use recorder::{Field, Level, Recorder};

use super::{Die, Failure};

pub struct Options {
    pub ring: PathBuf,
    pub capacity: u64,
    pub records: u64,
    pub threads: u64,
    pub rate: f64,
    pub die: Die,
    pub report_every: Option<u64>,
}

pub fn run(opts: Options) -> Result<i32, Failure> {
    if !matches!(opts.die, Die::Exit | Die::Kill) {
        return Err(Failure::error(format!(
            "--die {} is not available yet: this build supports exit and kill \
             (panic, abort, segv and oom come with cause-of-death capture)",
            format!("{:?}", opts.die).to_lowercase()
        )));
    }
    if !(opts.rate >= 0.0 && opts.rate.is_finite()) {
        return Err(Failure::error(format!(
            "--rate {} is not a number of records per second (use 0 for no limit)",
            opts.rate
        )));
    }
    let rec = Recorder::builder(&opts.ring)
        .capacity(opts.capacity)
        .program("blackbox-demo")
        .app_version(env!("CARGO_PKG_VERSION"))
        .create()
        .map_err(|e| Failure::error(e.to_string()))?;
    let interval = (opts.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / opts.rate));
    std::thread::scope(|s| {
        for t in 0..opts.threads {
            let rec = &rec;
            let opts = &opts;
            std::thread::Builder::new()
                .name(format!("demo-{t}"))
                .spawn_scoped(s, move || write_thread(rec, opts, t, interval))
                .expect("spawn demo thread");
        }
    });
    match opts.die {
        Die::Kill => {
            // Nothing is closed or flushed: the ring is all that remains.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            unreachable!("SIGKILL cannot be caught");
        }
        _ => {
            let path = rec.path().display().to_string();
            rec.close();
            eprintln!(
                "blackbox demo: wrote {} records to {path}",
                opts.records * opts.threads
            );
            Ok(0)
        }
    }
}

fn write_thread(rec: &Recorder, opts: &Options, t: u64, interval: Option<Duration>) {
    let start = Instant::now();
    for n in 0..opts.records {
        if let Some(every) = interval {
            let due = start + every.mul_f64(n as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let fields = [Field::new("t", t), Field::new("n", n)];
        let appended = rec.log(Level::Info, "blackbox::demo", "demo record", &fields);
        if let (Some(k), Ok(_)) = (opts.report_every, appended) {
            if k > 0 && n % k == 0 {
                // One write(2) per report, after the append returned: what
                // the test reads here must be in the ring.
                let _ = std::io::stdout()
                    .lock()
                    .write_all(format!("{t} {n}\n").as_bytes());
            }
        }
    }
}
