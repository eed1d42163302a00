//! `cargo xtask setup`: installs what the build and the tests need on a fresh Debian machine.
//!
//! Every step checks first and only installs what is missing, so running it again is cheap and
//! the other subcommands can run it unconditionally.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{capture, find_in_path, home_dir, is_root, run, say};

#[cfg(test)]
mod tests;

/// Debian packages the build and the tests need, each with who needs it (printed when the
/// package is missing, so that whoever is asked to install it knows why).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("gcc", "compiles the C workloads the tests trace"),
    (
        "libc6-dev",
        "libc headers and static libc for the C workloads",
    ),
    (
        "util-linux",
        "setpriv, which drops capabilities for the missing-capability test",
    ),
    (
        "mount",
        "mounts a procfs with hidepid= in a mount namespace for the API access test",
    ),
    ("python3", "a real interpreter traced by the tests"),
    (
        "libjemalloc2",
        "jemalloc, preloaded into a traced workload by the model tests",
    ),
    (
        "libtcmalloc-minimal4",
        "tcmalloc, preloaded by the allocator-comparison tests",
    ),
    (
        "libmimalloc2.0",
        "mimalloc, preloaded by the allocator-comparison tests",
    ),
    (
        "python3-junitparser",
        "a real JUnit consumer that parses the tracer's --junit output in the tests",
    ),
    ("strace", "a peer the benchmark compares against"),
    ("bpftrace", "a peer the benchmark compares against"),
    (
        "bpftool",
        "reads the probes' BPF run-time statistics for the benchmark's cost table",
    ),
    (
        "linux-perf",
        "`perf trace` and `perf stat`, peers the benchmark compares against",
    ),
    (
        "qemu-system-x86",
        "boots the kernel matrix of `cargo xtask vmtest`",
    ),
    (
        "golang-go",
        "`go tool pprof`, which reads the call-site profiles in the tests",
    ),
    (
        "qemu-system-arm",
        "boots the arm64 kernels of `cargo xtask vmtest --arch arm64`",
    ),
    (
        "gcc-aarch64-linux-gnu",
        "links the arm64 tracer and compiles its C workloads (`--target aarch64-unknown-linux-gnu`)",
    ),
    (
        "busybox-static",
        "the shell and tools inside the vmtest initramfs",
    ),
    ("cpio", "packs the vmtest initramfs"),
    (
        "openssl",
        "makes the TLS certificates of the --web-config test",
    ),
    (
        "chromium",
        "a real browser that renders the live page and the --html file in the tests",
    ),
    (
        "fonts-dejavu-core",
        "a font for the browser test's screenshots",
    ),
    (
        "redis-server",
        "a real multi-threaded server (and redis-benchmark, from redis-tools) traced by the attach differential test",
    ),
    (
        "prometheus",
        "promtool and the Prometheus server the exporter deployment tests run",
    ),
    // Essential on Debian, listed because the tests run them: setup is the one list of what
    // the tests need (setup/tests.rs checks every program the tests start against it).
    ("coreutils", "true, env and seq, run by the tests"),
    ("dash", "/bin/sh, the shell of the test scripts"),
    ("bash", "a shell the exporter tests run"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Skip the Debian packages (the only step that needs root).
    #[arg(long)]
    pub no_apt: bool,
}

pub fn main(args: &Args) -> Result<()> {
    setup(!args.no_apt)
}

/// Runs every step; `apt` selects whether Debian packages are checked and installed.
pub fn setup(apt: bool) -> Result<()> {
    say("setup: checking what the build and the tests need");
    if find_in_path("rustup").is_none() {
        bail!("rustup is not on PATH; install it from https://rustup.rs, then rerun");
    }
    nightly_toolchain()?;
    rust_src()?;
    arm64_target()?;
    bpf_linker()?;
    cargo_fuzz()?;
    if apt {
        debian_packages()?;
    } else {
        say("debian packages: skipped (--no-apt)");
    }
    say("setup: done");
    Ok(())
}

/// The probes are built with nightly: bpfel-unknown-none needs `-Z build-std`.
fn nightly_toolchain() -> Result<()> {
    let list = capture(Command::new("rustup").args(["toolchain", "list"]))?;
    if list.lines().any(|line| line.starts_with("nightly")) {
        say("nightly toolchain: already there");
        return Ok(());
    }
    say("nightly toolchain: missing, installing it");
    run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

/// `-Z build-std=core` compiles core for the BPF target from the nightly's own sources.
fn rust_src() -> Result<()> {
    let installed = capture(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        say("rust-src for nightly: already there");
        return Ok(());
    }
    say("rust-src for nightly: missing, adding it");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The arm64 standard library, for `cargo xtask build --target aarch64-unknown-linux-gnu` and
/// the arm64 kernel matrix.
fn arm64_target() -> Result<()> {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    let installed = capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == TARGET) {
        say(format_args!("rust target {TARGET}: already there"));
        return Ok(());
    }
    say(format_args!("rust target {TARGET}: missing, adding it"));
    run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// bpf-linker turns the bitcode rustc emits for the probes into BPF objects. It must use the
/// same LLVM as the nightly that emits that bitcode, so it is built against the nightly's own
/// libLLVM: a plain `cargo install bpf-linker` looks for a system LLVM this machine lacks.
fn bpf_linker() -> Result<()> {
    match bpf_linker_version() {
        Ok(version) => {
            say(format_args!("bpf-linker: already there ({version})"));
            return Ok(());
        }
        Err(err) => say(format_args!(
            "bpf-linker: missing or broken ({err:#}), building it"
        )),
    }

    let sysroot =
        capture(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let major = llvm_major(&capture(
        Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]),
    )?)?;
    let libllvm = find_libllvm(&lib_dir, major)?;

    // bpf-linker's build script links `<LLVM_PREFIX>/lib/libLLVM.so`, a name the rust
    // toolchain does not ship: a private prefix holding only that symlink provides it.
    let prefix = home_dir()?.join(".cache/tracer/llvm-prefix");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("could not create {}", prefix_lib.display()))?;
    link_libllvm(&prefix_lib.join("libLLVM.so"), &libllvm)?;

    let mut install = Command::new("cargo");
    install
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        // A broken bpf-linker is usually one whose nightly moved to a new libLLVM; without
        // --force cargo calls that same version "already installed" and keeps it.
        .arg("--force")
        .env("LLVM_PREFIX", &prefix)
        // The rpath lets bpf-linker find libLLVM under its real name in the nightly's sysroot.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib_dir.display()),
        )
        // CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // bpf-linker is ordinary host code: build it with the default (stable) toolchain even
        // when xtask itself was started through another one.
        .env_remove("RUSTUP_TOOLCHAIN");
    run(&mut install)?;

    let version = bpf_linker_version()
        .context("bpf-linker was installed but still does not run; see the errors above")?;
    say(format_args!("bpf-linker: installed ({version})"));
    Ok(())
}

/// The cargo-fuzz that `cargo xtask fuzz` and CI run the fuzz targets with. Pinned: a newer
/// release may need a newer stable than this machine's to build (`cargo install` ignores the
/// lock file's constraints otherwise; --locked keeps the versions its authors tested).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if let Some(version) = &installed
        && version.split_whitespace().last() == Some(CARGO_FUZZ_VERSION)
    {
        say(format_args!("cargo-fuzz: already there ({version})"));
        return Ok(());
    }
    say(format_args!(
        "cargo-fuzz: {}, installing {CARGO_FUZZ_VERSION}",
        installed.as_deref().unwrap_or("missing")
    ));
    run(Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked", "--force", "--version"])
        .arg(CARGO_FUZZ_VERSION)
        // Host code: the default (stable) toolchain, whichever started xtask.
        .env_remove("RUSTUP_TOOLCHAIN"))
}

/// `bpf-linker --version`: succeeds only when the binary exists and its libLLVM loads.
fn bpf_linker_version() -> Result<String> {
    if find_in_path("bpf-linker").is_some() {
        return Ok(capture(Command::new("bpf-linker").arg("--version"))?
            .trim()
            .to_owned());
    }
    // Installed but not on PATH: rustc looks the linker up on PATH, so the build would fail.
    let cargo_home = match env::var_os("CARGO_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => home_dir()?.join(".cargo"),
    };
    let installed = cargo_home.join("bin/bpf-linker");
    if installed.exists() {
        bail!(
            "{} exists but {} is not on PATH; add it to PATH",
            installed.display(),
            cargo_home.join("bin").display()
        );
    }
    bail!("bpf-linker is not on PATH")
}

/// The LLVM major version from `rustc -vV` (line `LLVM version: 22.1.4` gives 22).
fn llvm_major(version_info: &str) -> Result<u32> {
    let version = version_info
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .context("`rustup run nightly rustc -vV` prints no `LLVM version:` line")?
        .trim();
    let major = version.split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("cannot read the LLVM major version from `{version}`"))
}

/// The nightly's libLLVM, named like `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn find_libllvm(lib_dir: &Path, major: u32) -> Result<PathBuf> {
    let prefix = format!("libLLVM.so.{major}.");
    let entries = fs::read_dir(lib_dir)
        .with_context(|| format!("could not list the nightly's {}", lib_dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("could not list {}", lib_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.contains("-rust-") && name.ends_with("-nightly") {
            found.push(entry.path());
        }
    }
    // Sorted so the choice is stable should a toolchain ever ship two.
    found.sort();
    found.pop().with_context(|| {
        format!(
            "no {prefix}*-rust-*-nightly in {}; is the nightly toolchain complete?",
            lib_dir.display()
        )
    })
}

/// Points `link` at `target`, replacing whatever stale link or file a previous nightly left.
fn link_libllvm(link: &Path, target: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|current| current == target) {
        say(format_args!(
            "{} already points to {}",
            link.display(),
            target.display()
        ));
        return Ok(());
    }
    // symlink_metadata also sees dangling links, which `exists()` reports as absent.
    if link.symlink_metadata().is_ok() {
        say(format_args!("replacing stale {}", link.display()));
        fs::remove_file(link).with_context(|| format!("could not remove {}", link.display()))?;
    }
    say(format_args!(
        "linking {} -> {}",
        link.display(),
        target.display()
    ));
    symlink(target, link).with_context(|| format!("could not create {}", link.display()))
}

/// Installs the missing Debian packages with apt-get, in one go.
fn debian_packages() -> Result<()> {
    if find_in_path("dpkg-query").is_none() {
        bail!("dpkg-query is not on PATH: this step needs Debian (pass --no-apt to skip it)");
    }
    let mut missing = Vec::new();
    for &(package, why) in DEBIAN_PACKAGES {
        if package_installed(package) {
            say(format_args!("debian package {package}: already there"));
        } else {
            say(format_args!("debian package {package}: missing ({why})"));
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root()? {
        bail!(
            "installing Debian packages requires root; missing: {}. Rerun `cargo xtask setup` \
             as root, or install them yourself and pass --no-apt",
            missing.join(" ")
        );
    }
    // Fresh images often ship without package lists; one update serves every install.
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))
}

/// dpkg knows a package it once saw even after removal, so only the status line counts.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}
