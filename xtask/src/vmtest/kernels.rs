//! The kernel matrix and its cache: Debian's cloud kernels, fetched with `apt-get download`
//! from the suite that ships them, without touching the system's apt configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{capture, run, say};

/// One kernel of the matrix.
pub struct Kernel {
    /// What `--kernel` accepts.
    pub name: &'static str,
    /// The Debian suite that ships it.
    suite: &'static str,
    /// Whether the suite has a `-security` companion (backports have none).
    security: bool,
    /// The package the matrix is pinned to: a known-good build, so that runs are repeatable.
    package: &'static str,
    /// vCPUs unless `--cpus` says otherwise.
    pub cpus: u32,
    /// Debian's name of the architecture: `amd64` or `arm64`.
    pub arch: &'static str,
}

/// The default matrix, oldest first: the kernels of Debian's three supported releases. The pins
/// are Debian's `-cloud-amd64` builds (virtio, serial console, BTF, tracefs and the x86
/// exception tracepoints built in), whose images boot under TCG in seconds.
pub const MATRIX: [Kernel; 3] = [
    Kernel {
        name: "5.10",
        suite: "bullseye",
        security: true,
        package: "linux-image-5.10.0-32-cloud-amd64-unsigned",
        cpus: 2,
        arch: "amd64",
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        security: true,
        package: "linux-image-6.1.0-50-cloud-amd64-unsigned",
        cpus: 2,
        arch: "amd64",
    },
    Kernel {
        name: "6.12",
        suite: "trixie",
        security: true,
        package: "linux-image-6.12.107+deb13-cloud-amd64-unsigned",
        cpus: 2,
        arch: "amd64",
    },
];

/// Kernels run only on request (`--kernel`): the releases where a behaviour the tracer adapts to
/// changed (6.16: `sched_process_exit.group_dead`; 6.17: mremap checks before it unmaps).
/// One vCPU: with two, these kernels' text patching (tracepoints switched on and off while
/// another CPU runs the patched code) meets a stale translation in QEMU 7.2's multi-threaded
/// TCG and dies with "Oops: int3" in about two runs in three; with one vCPU, never in 3 runs.
pub const EXTRA: [Kernel; 2] = [
    Kernel {
        name: "6.16",
        suite: "trixie-backports",
        security: false,
        package: "linux-image-6.16.12+deb13-cloud-amd64",
        cpus: 1,
        arch: "amd64",
    },
    Kernel {
        name: "6.17",
        suite: "trixie-backports",
        security: false,
        package: "linux-image-6.17.13+deb13-cloud-amd64",
        cpus: 1,
        arch: "amd64",
    },
];

/// The arm64 matrix (`--arch arm64`): Debian's `-cloud-arm64` builds of the two releases
/// whose 6.x kernels the x86-64 matrix boots (BTF, tracefs and the PL011 console built in; no
/// `exceptions:*` tracepoints, so faults come from the perf events). The same builds as the
/// x86-64 pins.
pub const ARM64: [Kernel; 2] = [
    Kernel {
        name: "6.1",
        suite: "bookworm",
        security: true,
        package: "linux-image-6.1.0-50-cloud-arm64-unsigned",
        cpus: 2,
        arch: "arm64",
    },
    Kernel {
        name: "6.12",
        suite: "trixie",
        security: true,
        package: "linux-image-6.12.107+deb13-cloud-arm64-unsigned",
        cpus: 2,
        arch: "arm64",
    },
];

/// The kernel `--kernel name` means on `arch` (`amd64` or `arm64`).
pub fn find(arch: &str, name: &str) -> Option<&'static Kernel> {
    MATRIX
        .iter()
        .chain(&EXTRA)
        .chain(&ARM64)
        .find(|k| k.arch == arch && k.name == name)
}

/// Every name `--kernel` accepts on `arch`.
pub fn names(arch: &str) -> Vec<&'static str> {
    MATRIX
        .iter()
        .chain(&EXTRA)
        .chain(&ARM64)
        .filter(|k| k.arch == arch)
        .map(|k| k.name)
        .collect()
}

/// A kernel image ready to boot.
pub struct Image {
    pub vmlinuz: PathBuf,
    /// The package it came from, for the report.
    pub package: String,
}

impl Kernel {
    /// Its name in the table and the logs: `6.1` (x86-64), `arm64-6.1`.
    pub fn label(&self) -> String {
        match self.arch {
            "amd64" => self.name.to_owned(),
            arch => format!("{arch}-{}", self.name),
        }
    }

    /// The cached image, downloading and extracting it first if needed.
    pub fn image(&self, cache: &Path) -> Result<Image> {
        let dir = cache.join("kernels").join(self.label());
        let vmlinuz = dir.join("vmlinuz");
        let package_file = dir.join("package");
        if vmlinuz.is_file()
            && let Ok(package) = fs::read_to_string(&package_file)
        {
            say(format_args!(
                "vmtest: kernel {}: cached ({})",
                self.label(),
                package.trim()
            ));
            return Ok(Image {
                vmlinuz,
                package: package.trim().to_owned(),
            });
        }
        let apt = Apt::new(cache, self.suite, self.security, self.arch)?;
        apt.update()?;
        let package = if apt.has(self.package)? {
            self.package.to_owned()
        } else {
            // Debian dropped the pinned build: take the newest build of the same series.
            let current = apt.newest_of_series(self.name, self.arch)?;
            say(format_args!(
                "vmtest: kernel {}: {} is no longer in {}; using {current}",
                self.label(),
                self.package,
                self.suite
            ));
            current
        };
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let deb = apt.download(&package, &dir)?;
        extract_vmlinuz(&deb, &vmlinuz)?;
        fs::remove_file(&deb).with_context(|| format!("cannot remove {}", deb.display()))?;
        fs::write(&package_file, format!("{package}\n"))?;
        say(format_args!(
            "vmtest: kernel {}: fetched {package}",
            self.label()
        ));
        Ok(Image { vmlinuz, package })
    }
}

/// apt-get and apt-cache on one suite's package lists, kept in the cache: the system's sources,
/// lists and package cache are never read or written. Another architecture than the host's
/// (arm64) gets lists of its own and is apt's only architecture there.
pub struct Apt {
    dir: PathBuf,
    /// Set for a foreign architecture.
    foreign: Option<String>,
}

impl Apt {
    pub fn new(cache: &Path, suite: &str, security: bool, arch: &str) -> Result<Apt> {
        let foreign = (arch != "amd64").then(|| arch.to_owned());
        let dir = match &foreign {
            None => cache.join("apt").join(suite),
            Some(arch) => cache.join("apt").join(format!("{suite}-{arch}")),
        };
        fs::create_dir_all(dir.join("lists/partial"))
            .and_then(|()| fs::create_dir_all(dir.join("cache/archives/partial")))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let options = match &foreign {
            None => format!("signed-by={keyring}"),
            Some(arch) => format!("arch={arch} signed-by={keyring}"),
        };
        let mut sources = format!("deb [{options}] http://deb.debian.org/debian {suite} main\n");
        if security {
            sources.push_str(&format!(
                "deb [{options}] http://deb.debian.org/debian-security {suite}-security main\n"
            ));
        }
        fs::write(dir.join("sources.list"), sources)?;
        Ok(Apt { dir, foreign })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let opt = |key: &str, value: &Path| format!("{key}={}", value.display());
        cmd.arg("-o")
            .arg(opt("Dir::Etc::sourcelist", &self.dir.join("sources.list")))
            .args(["-o", "Dir::Etc::sourceparts=-"])
            .arg("-o")
            .arg(opt("Dir::State::Lists", &self.dir.join("lists")))
            .arg("-o")
            .arg(opt("Dir::Cache", &self.dir.join("cache")))
            // Downloads land in our own directories; apt's unprivileged sandbox user could not
            // write there.
            .args(["-o", "APT::Sandbox::User=root"])
            .args(["-o", "APT::Get::List-Cleanup=0"]);
        if let Some(arch) = &self.foreign {
            // The host's dpkg status lists amd64 packages, which mean nothing here.
            cmd.arg("-o")
                .arg(format!("APT::Architecture={arch}"))
                .arg("-o")
                .arg(format!("APT::Architectures={arch}"))
                .args(["-o", "Dir::State::status=/dev/null"]);
        }
        cmd
    }

    pub fn update(&self) -> Result<()> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        run(&mut cmd).context("apt-get update of the kernel suite failed (network?)")
    }

    fn has(&self, package: &str) -> Result<bool> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["policy", package]);
        let out = capture(&mut cmd)?;
        Ok(out
            .lines()
            .any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)")))
    }

    /// The newest `linux-image-<series>.*-cloud-<arch>[-unsigned]` the suite has.
    fn newest_of_series(&self, series: &str, arch: &str) -> Result<String> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["pkgnames", &format!("linux-image-{series}.")]);
        let out = capture(&mut cmd)?;
        let flavour = format!("-cloud-{arch}");
        out.lines()
            .map(str::trim)
            .filter(|p| p.ends_with(&flavour) || p.ends_with(&format!("{flavour}-unsigned")))
            .max_by_key(|p| version_key(p))
            .map(str::to_owned)
            .with_context(|| format!("no linux-image-{series}.*{flavour} package"))
    }

    pub fn download(&self, package: &str, into: &Path) -> Result<PathBuf> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "download", package]).current_dir(into);
        run(&mut cmd)?;
        let prefix = format!("{package}_");
        fs::read_dir(into)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download left no {package}_*.deb"))
    }
}

/// The numbers in a package name, to order builds: `linux-image-6.1.0-50-...` -> [6, 1, 0, 50].
fn version_key(package: &str) -> Vec<u64> {
    package
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Takes `boot/vmlinuz-*` out of a kernel package (the modules are not needed: everything the
/// tests use is built in).
fn extract_vmlinuz(deb: &Path, vmlinuz: &Path) -> Result<()> {
    let tmp = vmlinuz.with_extension("extract");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards './boot/vmlinuz-*'";
    run(Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(deb)
        .arg(&tmp))?;
    let boot = tmp.join("boot");
    let image = fs::read_dir(&boot)
        .with_context(|| format!("{} has no boot/ directory", deb.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next();
    let Some(image) = image else {
        bail!("{} holds no boot/vmlinuz-*", deb.display());
    };
    fs::rename(&image, vmlinuz)?;
    fs::remove_dir_all(&tmp)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_builds_order_after_older_ones() {
        assert!(
            version_key("linux-image-6.1.0-56-cloud-amd64")
                > version_key("linux-image-6.1.0-50-cloud-amd64-unsigned")
        );
        assert!(
            version_key("linux-image-6.12.117+deb13-cloud-amd64")
                > version_key("linux-image-6.12.94+deb13-cloud-amd64")
        );
        assert!(find("amd64", "5.10").is_some() && find("amd64", "6.17").is_some());
        assert!(find("amd64", "4.19").is_none() && find("arm64", "5.10").is_none());
        assert_eq!(
            find("arm64", "6.12").map(Kernel::label).as_deref(),
            Some("arm64-6.12")
        );
    }
}
