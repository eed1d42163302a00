//! Builds the eBPF probes (`tracer-ebpf`) with the nightly toolchain and bpf-linker through
//! aya-build, and places the object in OUT_DIR for `include_bytes!`.
use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../tracer-ebpf").canonicalize()?;
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path to tracer-ebpf")?;
    let package = aya_build::Package {
        name: "tracer-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).context(
        "building the eBPF probes failed; `cargo xtask setup` installs the nightly rust-src \
         and bpf-linker they need",
    )
}
