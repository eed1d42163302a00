//! `cargo xtask fuzz`: runs every cargo-fuzz target in `fuzz/` for a bounded time, the way CI
//! does (`.ci/run`). A crash fails the task; libFuzzer writes the input to
//! `fuzz/artifacts/TARGET/`, and `cargo +nightly fuzz run TARGET FILE` replays it.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::setup;
use crate::util::{capture, run, say, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub secs: u64,
    /// Only these targets (default: every target of `cargo fuzz list`).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// cargo-fuzz through the nightly toolchain (it builds with -Z sanitizer flags). `rustup run`
/// rather than `cargo +nightly`: xtask may run under a cargo that is not rustup's proxy, and the
/// variables that `cargo run` set for xtask would otherwise send nested cargos to stable.
fn cargo_fuzz() -> Result<Command> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(workspace_root()?.join("fuzz"))
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    Ok(cmd)
}

pub fn main(args: &Args) -> Result<()> {
    // Nightly and cargo-fuzz; not the Debian packages (fuzzing needs none).
    setup::setup(false)?;
    let targets = if args.targets.is_empty() {
        capture(cargo_fuzz()?.arg("list"))?
            .lines()
            .map(str::to_owned)
            .collect()
    } else {
        args.targets.clone()
    };
    let started = Instant::now();
    run(cargo_fuzz()?.arg("build"))?;
    say(format_args!(
        "fuzz: targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let root = workspace_root()?;
    let mut failed = Vec::new();
    for target in &targets {
        // New inputs go to fuzz/corpus (ignored by git, kept between local runs); the seeds in
        // the repository are read only.
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/seeds").join(target);
        let mut cmd = cargo_fuzz()?;
        cmd.args(["run", target]).arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", args.secs))
            // One slow input is a hang worth reporting, not something to wait for.
            .arg("-timeout=10")
            .arg("-print_final_stats=1");
        let at = Instant::now();
        let outcome = run(&mut cmd);
        say(format_args!(
            "fuzz: {target}: {} after {:.0} s",
            if outcome.is_ok() {
                "no crash"
            } else {
                "FAILED"
            },
            at.elapsed().as_secs_f64()
        ));
        if outcome.is_err() {
            failed.push(target.as_str());
        }
    }
    say(format_args!(
        "fuzz: {} targets in {:.0} s (build included)",
        targets.len(),
        started.elapsed().as_secs_f64()
    ));
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs in fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    Ok(())
}
