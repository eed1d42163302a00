//! `cargo xtask run`: builds the tracer and runs it, as root, on the given arguments or on the
//! demo workload.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{
    compile_workload, describe, find_in_path, is_root, say, target_dir, workspace_root,
};
use crate::{build, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Build and run the release profile (the default).
    #[arg(long, conflicts_with = "debug")]
    release: bool,
    /// Build and run the debug profile.
    #[arg(long)]
    debug: bool,
    /// Arguments for the tracer; without any, it traces the demo workload
    /// tests/workloads/seed_demo.c.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

/// Only returns on failure: on success the tracer replaces this process.
pub fn main(args: Args) -> Result<Infallible> {
    // Decided before the long setup and build so that a machine where the tracer cannot run
    // fails at once.
    let sudo = if is_root()? {
        None
    } else if let Some(sudo) = find_in_path("sudo") {
        say("not root: loading BPF programs needs root, so the tracer will run under sudo");
        Some(sudo)
    } else {
        bail!(
            "the tracer must run as root (it loads BPF programs) and sudo is not installed; \
             rerun `cargo xtask run` as root"
        );
    };

    setup::setup(true)?;
    // `--release` only documents the default; `--debug` is the one switch that matters.
    let tracer = build::build_tracer(!args.debug)?;

    let tracer_args = if args.args.is_empty() {
        let demo = compile_demo()?;
        vec!["run".into(), "--".into(), demo.into_os_string()]
    } else {
        args.args
    };

    let mut cmd = match &sudo {
        Some(sudo) => {
            let mut cmd = Command::new(sudo);
            cmd.arg("--").arg(&tracer);
            cmd
        }
        None => Command::new(&tracer),
    };
    cmd.args(&tracer_args);

    // exec instead of spawn-and-wait: the tracer takes over this process, so Ctrl-C reaches only
    // the tracer (which then prints its summary) rather than also killing xtask, and whoever
    // started `cargo xtask run` sees the tracer's exact exit status, signals included.
    say(format_args!("running: {}", describe(&cmd)));
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not start {}", cmd.get_program().to_string_lossy()))
}

/// Compiles the demo workload into target/workloads and returns the binary's path.
fn compile_demo() -> Result<PathBuf> {
    let root = workspace_root()?;
    let source = root.join("tests/workloads/seed_demo.c");
    if !source.is_file() {
        bail!("the demo workload {} does not exist", source.display());
    }
    let out_dir = target_dir(&root).join("workloads");
    fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let binary = out_dir.join("seed_demo");
    compile_workload(&source, &binary)?;
    Ok(binary)
}
