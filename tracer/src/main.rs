//! `tracer`: live allocation tracer daemon and CLI.

mod api;
mod cgroup;
mod check;
mod cli;
mod commands;
mod diff;
mod events;
mod exit;
mod fault_regions;
mod figures;
mod groups;
mod http;
mod jsonl;
mod launch;
mod layout;
mod metrics;
mod model;
mod openmetrics;
mod preflight;
mod probes;
mod process;
mod procfs;
mod reconcile;
mod report;
mod session;
mod sizes;
mod summary;
mod syscalls;
mod tracefs;
mod units;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();

    // One thread: the reader is not CPU-bound, and a single-threaded parent keeps the fork in
    // `tracer run` simple.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tracer: cannot start the async runtime: {err}");
            return ExitCode::from(exit::EXIT_TRACING_FAILED as u8);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Attach(args) => commands::attach::attach(args).await,
            Command::Diff(args) => commands::ci::diff(args),
            Command::CheckReport(args) => commands::ci::check_report(args),
        }
    });
    match result {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("tracer: {}", error_chain(&err));
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// The error and its sources, joined, so the kernel's own reason is not lost.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
