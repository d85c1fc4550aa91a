//! The subcommands: each module has its flags (a clap `Args` struct) and
//! its `run`.

pub mod demo;
pub mod export;
pub mod info;
pub mod kernel_oom;
pub mod on_failure;
pub mod oom_cgroup;
pub mod read;
pub mod scenario;
pub mod ship;
pub mod units;
pub mod verify;
pub mod watch;
