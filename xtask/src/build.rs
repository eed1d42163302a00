//! `cargo xtask build`: builds the tracer, probes included, for this machine or, with
//! `--target`, for another architecture (arm64 from x86-64).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::setup;
use crate::util::{cargo, run, say, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Build with the release profile instead of the debug one.
    #[arg(long)]
    pub release: bool,
    /// Cross-build for this Rust target, e.g. `aarch64-unknown-linux-gnu` (needs
    /// `rustup target add` of it and the Debian cross compiler `gcc-aarch64-linux-gnu`).
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
}

pub fn main(args: &Args) -> Result<()> {
    // Building needs only the toolchain pieces, not the Debian packages the tests use, so it
    // skips apt and works without root.
    setup::setup(false)?;
    match &args.target {
        Some(target) => build_tracer_for(target, args.release).map(|_| ()),
        None => build_tracer(args.release).map(|_| ()),
    }
}

/// Builds the tracer and returns the path of its binary. tracer/build.rs compiles the eBPF crate
/// through aya-build and embeds the probes, so xtask never compiles probes itself.
pub fn build_tracer(release: bool) -> Result<PathBuf> {
    let root = workspace_root()?;
    let mut cmd = cargo(&root);
    cmd.args(["build", "--package", "tracer"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let binary = target_dir(&root).join(profile).join("tracer");
    if !binary.is_file() {
        bail!("cargo built tracer but {} does not exist", binary.display());
    }
    say(format_args!("built {}", binary.display()));
    Ok(binary)
}

/// Cross-builds the tracer for `target` and returns the path of its binary
/// (`target/<triple>/<profile>/tracer`). The probes are the same BPF bytecode on every
/// architecture (little-endian on x86-64 and arm64); aya-build builds them with
/// `bpf_target_arch` set to the target's architecture, for its `pt_regs` layout.
pub fn build_tracer_for(target: &str, release: bool) -> Result<PathBuf> {
    let root = workspace_root()?;
    let mut cmd = cargo(&root);
    cmd.args(["build", "--package", "tracer", "--target", target]);
    if release {
        cmd.arg("--release");
    }
    cross_env(&mut cmd, target);
    run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let binary = target_dir(&root).join(target).join(profile).join("tracer");
    if !binary.is_file() {
        bail!("cargo built tracer but {} does not exist", binary.display());
    }
    say(format_args!("built {}", binary.display()));
    Ok(binary)
}

/// The Debian cross compiler of a Rust target (`gcc-<prefix>` package), if xtask knows it.
pub fn cross_gcc(target: &str) -> Option<String> {
    let prefix = match target {
        "aarch64-unknown-linux-gnu" => "aarch64-linux-gnu",
        "x86_64-unknown-linux-gnu" => "x86_64-linux-gnu",
        _ => return None,
    };
    Some(format!("{prefix}-gcc"))
}

/// Points cargo's linker and the `cc` crate (ring, bcrypt's C parts) at the Debian cross
/// compiler, unless the caller set them already.
pub fn cross_env(cmd: &mut Command, target: &str) {
    let Some(gcc) = cross_gcc(target) else {
        return;
    };
    let upper = target.to_uppercase().replace('-', "_");
    let linker = format!("CARGO_TARGET_{upper}_LINKER");
    if std::env::var_os(&linker).is_none() {
        cmd.env(linker, &gcc);
    }
    let cc = format!("CC_{}", target.replace('-', "_"));
    if std::env::var_os(&cc).is_none() {
        cmd.env(cc, &gcc);
    }
}
