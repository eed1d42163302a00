//! `cargo xtask test`: runs the test suite against a freshly built tracer.

use std::ffi::OsString;

use anyhow::Result;

use crate::util::{cargo, describe_status, exit_code, run_status, say, workspace_root};
use crate::{build, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for `cargo test`; put a second `--` before those meant for the test binaries.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

/// Returns the exit code of `cargo test`, so that callers such as CI see its failure as is.
pub fn main(args: &Args) -> Result<u8> {
    // Full setup: the tests need the Debian packages (C compiler, setpriv, python3).
    setup::setup(true)?;
    // The integration tests drive the real binary, found through TRACER_BIN, rather than
    // building it themselves.
    let tracer = build::build_tracer(false)?;

    let root = workspace_root()?;
    let mut cmd = cargo(&root);
    // No --workspace: the default members leave out tracer-ebpf, which builds only for the BPF
    // target. TRACER_REQUIRE_KERNEL and the rest of the environment pass through untouched.
    cmd.arg("test").args(&args.args).env("TRACER_BIN", &tracer);
    let status = run_status(&mut cmd)?;
    if status.success() {
        say("tests passed");
    } else {
        say(format_args!(
            "error: cargo test failed ({})",
            describe_status(status)
        ));
    }
    Ok(exit_code(status))
}
