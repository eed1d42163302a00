//! `tracer`: live allocation tracer daemon and CLI.

use std::process::ExitCode;

use clap::Parser;

use tracer::cli::exit;
use tracer::cli::{Cli, Command};
use tracer::kernel::preflight;
use tracer::launch::{self, watchdog};
use tracer::{commands, error_chain};

fn main() -> ExitCode {
    // Before anything installs a handler: CMD of `tracer run` inherits what was ignored.
    launch::note_inherited_dispositions();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();

    // Before any descriptor is opened: the API's connections must not starve the tracer of
    // descriptors for /proc and perf events (CMD gets the original limit back).
    preflight::raise_nofile_limit();
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
    // A panic unwinds out of block_on, dropping the session (which detaches the probes); the
    // processes its exec stops left stopped are then resumed here, since nobody else will.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            match cli.command {
                Command::Run(args) => commands::run::run(args).await,
                Command::Attach(args) => commands::attach::attach(args).await,
                Command::Diff(args) => commands::ci::diff(args),
                Command::CheckReport(args) => commands::ci::check_report(args),
                Command::ResumeOnDeath { cmd } => Ok(watchdog::guard(cmd)),
            }
        })
    }));
    let Ok(result) = result else {
        let resumed = launch::resume_stopped_descendants(std::process::id());
        eprintln!(
            "tracer: internal error (the panic above is a bug); resumed {resumed} stopped \
             process(es); exit status {}",
            exit::EXIT_INTERNAL_ERROR
        );
        return ExitCode::from(exit::EXIT_INTERNAL_ERROR as u8);
    };
    match result {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("tracer: {}", error_chain(&err));
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
