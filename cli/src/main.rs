//! `fraudlake`: the one binary. It parses the command line, loads configuration, sets up
//! logging, and hands each subcommand to the library crates; no business logic lives here.
//!
//! Guide: docs/operations.md in the repository.

mod commands;
mod config;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Command;

/// mimalloc: the online engine allocates many small Arrow arrays per transaction, and
/// glibc's malloc/free were the top of the profile (see docs/features.md, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::GlobalArgs;

/// Real-time fraud detection on a Delta lakehouse.
#[derive(Debug, Parser)]
#[command(name = "fraudlake", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command failed (I/O, lake, query error).
    pub const FAILURE: u8 = 1;
    /// Bad input: arguments, files or SQL the user gave (clap also exits 2 on usage errors).
    pub const BAD_INPUT: u8 = 2;
    /// A check ran and found a problem (e.g. online/offline parity mismatches).
    pub const CHECK_FAILED: u8 = 3;
}

/// A mistake in what the user asked for (as opposed to a failure while doing it): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Shorthand for returning a [`BadInput`] from a command.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    BadInput(msg.into()).into()
}

/// Async worker threads: `FRAUDLAKE_WORKER_THREADS`, else all cores, except for `serve`, which
/// leaves one core to its lake writer thread (the online state is one lock, so more request
/// threads mostly add context switches: measured 32k req/s with one worker vs 26k with two on
/// 2 cores).
fn worker_threads(command: &commands::Command) -> usize {
    if let Some(n) = std::env::var("FRAUDLAKE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if commands::is_serve(command) {
        (cores - 1).clamp(1, 8)
    } else {
        cores
    }
}

/// Whether one error of a chain is the user's to fix (exit 2): each crate's error type says so
/// of itself, this is the one place that asks them all.
fn is_bad_input(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<BadInput>()
        || e.downcast_ref::<fraudlake_pipeline::Error>()
            .is_some_and(|e| e.is_bad_input())
        || e.downcast_ref::<fraudlake_model::Error>()
            .is_some_and(|e| e.is_bad_input())
        || e.downcast_ref::<fraudlake_drift::Error>()
            .is_some_and(|e| e.is_bad_input())
        || e.downcast_ref::<fraudlake_serving::Error>()
            .is_some_and(|e| e.is_bad_input())
        || e.downcast_ref::<fraudlake_dag::Error>()
            .is_some_and(|e| e.is_bad_input())
        || e.downcast_ref::<fraudlake_stream::Error>()
            .is_some_and(|e| e.is_bad_input())
}

/// A command whose output goes to a pipe that closes early (`fraudlake sql ... | head`) ends
/// quietly, as Unix tools do, instead of panicking on the write (Rust ignores SIGPIPE).
fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !commands::is_service(&cli.command) {
        default_sigpipe();
    }
    let settings = match config::Settings::resolve(&cli.global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::BAD_INPUT);
        }
    };
    config::init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(&cli.command))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli.command, &settings)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_input = e.chain().any(is_bad_input);
            ExitCode::from(if bad_input {
                exit::BAD_INPUT
            } else {
                exit::FAILURE
            })
        }
    }
}
