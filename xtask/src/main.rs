//! Developer tasks for the tracer workspace, run as `cargo xtask <task>` (an alias in
//! .cargo/config.toml), so that setting up, building, running and testing need nothing beyond
//! cargo and are the same on a laptop and in CI.

mod bench;
mod build;
mod fuzz;
mod run;
mod setup;
mod test;
mod util;
mod vmtest;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    // Usage lines should show how it is actually invoked, through the cargo alias.
    bin_name = "cargo xtask",
    about = "Developer tasks for the tracer workspace"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (idempotent; Debian packages need root).
    Setup(setup::Args),
    /// Build the tracer, its eBPF probes included.
    Build(build::Args),
    /// Build the tracer and run it as root, on ARGS or on the demo workload.
    Run(run::Args),
    /// Build the tracer and run the test suite against it.
    Test(test::Args),
    /// Measure the tracer's overhead beside bpftrace, perf and strace; write BENCHMARKS.md.
    Bench(bench::Args),
    /// Run every fuzz target (cargo-fuzz, nightly) for a bounded time, as CI does.
    Fuzz(fuzz::Args),
    /// Run the kernel-facing tests on a matrix of kernels under QEMU, and on the host kernel.
    Vmtest(vmtest::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(args) => setup::main(&args).map(|()| 0),
        Task::Build(args) => build::main(&args).map(|()| 0),
        Task::Run(args) => run::main(args).map(|never| match never {}),
        Task::Test(args) => test::main(&args),
        Task::Bench(args) => bench::main(&args).map(|()| 0),
        Task::Vmtest(args) => vmtest::main(&args),
        Task::Fuzz(args) => fuzz::main(&args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed, then why.
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
