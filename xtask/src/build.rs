//! `cargo xtask build`: builds the tracer, probes included.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::setup;
use crate::util::{cargo, run, say, target_dir, workspace_root};

#[derive(clap::Args)]
pub struct Args {
    /// Build with the release profile instead of the debug one.
    #[arg(long)]
    pub release: bool,
}

pub fn main(args: &Args) -> Result<()> {
    // Building needs only the toolchain pieces, not the Debian packages the tests use, so it
    // skips apt and works without root.
    setup::setup(false)?;
    build_tracer(args.release)?;
    Ok(())
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
