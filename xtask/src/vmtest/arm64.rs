//! What `cargo xtask vmtest --arch arm64` needs beyond the x86-64 matrix: the Rust target it
//! cross-builds for, and a Debian arm64 root (bookworm's packages, fetched once into
//! `target/vmtest/arm64/root/` the way the kernels are) from which the initramfs takes
//! busybox, the C library, the allocators, `setpriv` and `promtool`, with the shared libraries
//! each binary needs found from its ELF `NEEDED` entries (`ldd` cannot run arm64 binaries).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::kernels::Apt;
use crate::util::{run, say};

/// The Rust target the tracer and the tests are cross-built for.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";

/// The Debian suite of the root (the same glibc, 2.36, as the cross toolchain links against).
const SUITE: &str = "bookworm";

/// Packages of the root: busybox and glibc for everything, the rest for what the tests run.
/// Their dependencies are listed by hand (apt does not resolve them for `download`); a missing
/// library is named by `needed_libraries`.
const PACKAGES: &[&str] = &[
    "busybox-static",
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "libjemalloc2",
    "libtcmalloc-minimal4",
    "libmimalloc2.0",
    "util-linux",
    "libcap-ng0",
    "libselinux1",
    "libpcre2-8-0",
    "prometheus",
];

/// Where the guest's libraries are, in the root and in the VM.
pub const LIB_DIR: &str = "/usr/lib/aarch64-linux-gnu";
const LIB_DIRS: &[&str] = &["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib"];

/// The arm64 root, fetched and unpacked if it is not cached yet.
pub fn root(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("arm64");
    let root = dir.join("root");
    let stamp = dir.join("packages");
    let want = PACKAGES.join("\n") + "\n";
    if root.is_dir() && fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
        say(format_args!(
            "vmtest: arm64 root: cached ({})",
            root.display()
        ));
        return Ok(root);
    }
    let _ = fs::remove_dir_all(&root);
    let debs = dir.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    fs::create_dir_all(&root)?;
    let apt = Apt::new(cache, SUITE, true, "arm64")?;
    apt.update()?;
    for package in PACKAGES {
        let deb = apt.download(package, &debs)?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    fs::remove_dir_all(&debs)?;
    fs::write(&stamp, want)?;
    say(format_args!(
        "vmtest: arm64 root: {} packages from {SUITE} in {}",
        PACKAGES.len(),
        root.display()
    ));
    Ok(root)
}

/// The host file behind `path` of the root (absolute in the guest), symbolic links followed
/// inside the root (an absolute link points into the root, not into the host).
pub fn resolve(root: &Path, path: &str) -> Result<PathBuf> {
    let mut current = root.join(path.trim_start_matches('/'));
    for _ in 0..16 {
        let Ok(target) = fs::read_link(&current) else {
            if current.exists() {
                return Ok(current);
            }
            bail!("{path} is not in the arm64 root ({})", root.display());
        };
        current = if target.is_absolute() {
            root.join(target.strip_prefix("/").unwrap_or(&target))
        } else {
            current.parent().unwrap_or(root).join(target)
        };
    }
    bail!("{path}: too many symbolic links in the arm64 root")
}

/// The guest paths of every shared library `binary` loads, directly or through another one,
/// and of its program interpreter; empty for a static binary.
pub fn needed_libraries(root: &Path, binary: &Path) -> Result<Vec<String>> {
    let mut found = BTreeSet::new();
    let mut todo = vec![binary.to_path_buf()];
    while let Some(file) = todo.pop() {
        let (interp, needed) = dynamic_section(&file)?;
        let mut paths: Vec<String> = interp.into_iter().collect();
        for name in needed {
            let guest = LIB_DIRS
                .iter()
                .map(|dir| format!("/{dir}/{name}"))
                .find(|p| resolve(root, p).is_ok())
                .with_context(|| {
                    format!(
                        "{} needs {name}, which no package of the arm64 root holds (add its \
                         package to PACKAGES in xtask/src/vmtest/arm64.rs)",
                        file.display()
                    )
                })?;
            paths.push(guest);
        }
        for path in paths {
            if found.insert(path.clone()) {
                todo.push(resolve(root, &path)?);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// The program interpreter and the `NEEDED` names of an ELF file (`readelf`, which reads any
/// architecture).
fn dynamic_section(file: &Path) -> Result<(Option<String>, Vec<String>)> {
    let out = Command::new("readelf")
        .args(["-W", "-l", "-d"])
        .arg(file)
        .output()
        .context("cannot run readelf (binutils)")?;
    if !out.status.success() {
        bail!(
            "readelf {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_readelf(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_readelf(text: &str) -> (Option<String>, Vec<String>) {
    let bracketed = |line: &str, after: &str| -> Option<String> {
        let rest = &line[line.find(after)? + after.len()..];
        Some(rest[..rest.find(']')?].trim().to_owned())
    };
    let interp = text
        .lines()
        .find_map(|l| bracketed(l, "[Requesting program interpreter:"));
    let needed = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| bracketed(l, "Shared library: ["))
        .collect();
    (interp, needed)
}

/// QEMU for an arm64 guest: the `virt` board (its PL011 UART is the console, `ttyAMA0`) and a
/// Cortex-A57, the plainest ARMv8.0 core: `-cpu max` adds pointer authentication, SVE and
/// more that TCG emulates slowly and that nothing the tests look at needs.
pub fn qemu_command() -> Command {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-machine", "virt", "-cpu", "cortex-a57"]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_output_gives_the_interpreter_and_the_needed_libraries() {
        let text = "Program Headers:\n  INTERP 0x000238 0x0000000000000238 \
                    0x0000000000000238 0x00001b 0x00001b R   0x1\n      \
                    [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]\n\
                    Dynamic section at offset 0x1e0d88 contains 30 entries:\n  \
                    Tag        Type                         Name/Value\n \
                    0x0000000000000001 (NEEDED)             Shared library: [libgcc_s.so.1]\n \
                    0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n \
                    0x000000000000000c (INIT)               0x1f000\n";
        assert_eq!(
            parse_readelf(text),
            (
                Some("/lib/ld-linux-aarch64.so.1".to_owned()),
                vec!["libgcc_s.so.1".to_owned(), "libc.so.6".to_owned()]
            )
        );
        assert_eq!(
            parse_readelf("There is no dynamic section in this file.\n"),
            (None, vec![])
        );
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let root = std::env::temp_dir().join(format!("xtask-arm64-root-{}", std::process::id()));
        let lib = root.join("lib/aarch64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("ld-linux-aarch64.so.1"), b"loader").unwrap();
        // Absolute inside the root, as Debian packages ship them.
        std::os::unix::fs::symlink(
            "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
            root.join("lib/ld-linux-aarch64.so.1"),
        )
        .unwrap();
        let found = resolve(&root, "/lib/ld-linux-aarch64.so.1").unwrap();
        assert_eq!(found, lib.join("ld-linux-aarch64.so.1"));
        assert!(resolve(&root, "/lib/missing.so").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
