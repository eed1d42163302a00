//! The initramfs the VMs boot: busybox, the tracer, the test binaries and their workloads, the
//! few host tools the tests call, every shared library those need (found with `ldd`), and an
//! `/init` script that runs the tests and powers the VM off. An arm64 guest takes busybox, the
//! tools and the libraries from a Debian arm64 root instead of the host (`arm64.rs`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::cpio::Archive;
use super::{Skip, TestBinary};
use crate::util::{capture, find_in_path, say};

/// Where things live inside the VM.
pub const TRACER: &str = "/vmtest/tracer";
pub const WORKLOADS: &str = "/vmtest/workloads";
pub const TESTS: &str = "/vmtest/tests";

/// Host programs the kernel-facing tests start by absolute path or by name, copied in with
/// their own libraries. (python3 is not: the tests that need it are skipped in the VM, see
/// `SKIPPED_IN_VM`.)
const HOST_FILES: &[&str] = &["/usr/bin/setpriv"];
/// Libraries the tests preload, in the guest's multiarch library directory.
const PRELOADED: &[&str] = &[
    "libjemalloc.so.2",
    "libtcmalloc_minimal.so.4",
    "libmimalloc.so.2",
];
/// Host programs found on PATH.
const HOST_PROGRAMS: &[&str] = &["promtool"];

/// Where the guest's files come from.
pub enum Guest<'a> {
    /// The host's own files (an x86-64 guest).
    Host,
    /// A Debian arm64 root (`arm64::root`).
    Arm64 { root: &'a Path },
}

impl Guest<'_> {
    fn lib_dir(&self) -> &'static str {
        match self {
            Guest::Host => "/usr/lib/x86_64-linux-gnu",
            Guest::Arm64 { .. } => super::arm64::LIB_DIR,
        }
    }

    /// The file behind the guest's `path`.
    fn file(&self, path: &str) -> Result<PathBuf> {
        match self {
            Guest::Host => {
                if !Path::new(path).exists() {
                    bail!("{path} is missing: `cargo xtask setup` installs it");
                }
                Ok(fs::canonicalize(path)?)
            }
            Guest::Arm64 { root } => super::arm64::resolve(root, path),
        }
    }

    /// The shared libraries (guest paths) a binary built for the guest loads.
    fn libraries(&self, binary: &Path) -> Result<Vec<String>> {
        match self {
            Guest::Host => shared_libraries(binary),
            Guest::Arm64 { root } => super::arm64::needed_libraries(root, binary),
        }
    }

    fn strip(&self) -> &'static str {
        match self {
            Guest::Host => "strip",
            Guest::Arm64 { .. } => "aarch64-linux-gnu-strip",
        }
    }
}

/// Host environment variables passed on to the tests in the VM.
const PASSED_ENV: &[&str] = &[
    "TRACER_FUZZ_SEEDS",
    "TRACER_FUZZ_OPS",
    "RUST_LOG",
    // Runs the matrix on one syscall source (e.g. `kprobes` for `run` too).
    "TRACER_SYSCALL_PROBES",
];

/// Seeds of the model's differential test in a VM, unless TRACER_FUZZ_SEEDS says otherwise: 6
/// instead of the host's 20 keep a kernel's run near 5 minutes under TCG (the kernel-specific
/// VMA behaviours show up within the first seeds).
const VM_FUZZ_SEEDS: u32 = 6;

/// What the init script runs.
pub struct Plan<'a> {
    pub tests: &'a [TestBinary],
    pub skips: &'a [Skip],
    pub test_threads: u32,
    /// Seconds one test binary may take before it is killed.
    pub binary_timeout: u64,
    pub extra_args: &'a [String],
}

/// Builds the archive at `out` from the tracer, the tests and their workloads. Large binaries
/// are stripped of debug info first (into `stage`), which makes the archive several times
/// smaller and the boot faster.
pub fn build(
    out: &Path,
    stage: &Path,
    tracer: &Path,
    workloads: &Path,
    plan: &Plan,
    guest: &Guest,
) -> Result<u64> {
    fs::create_dir_all(stage).with_context(|| format!("cannot create {}", stage.display()))?;
    let mut archive = Archive::default();
    let mut executables: Vec<PathBuf> = Vec::new();
    let strip = guest.strip();

    // The host's busybox lists the applets (an arm64 one cannot run here; both come from
    // Debian's busybox-static).
    let host_busybox = find_in_path("busybox")
        .context("busybox is missing: `cargo xtask setup` installs busybox-static")?;
    let busybox = match guest {
        Guest::Host => host_busybox.clone(),
        Guest::Arm64 { .. } => guest
            .file("/bin/busybox")
            .or_else(|_| guest.file("/usr/bin/busybox"))?,
    };
    if !guest.libraries(&busybox)?.is_empty() {
        bail!(
            "{} is not static: install busybox-static",
            busybox.display()
        );
    }
    archive.copy("/bin/busybox", &busybox, 0o755);

    archive.copy(TRACER, &stripped(strip, tracer, stage)?, 0o755);
    executables.push(tracer.to_path_buf());
    for test in plan.tests {
        let name = format!("{TESTS}/{}", test.name);
        archive.copy(&name, &stripped(strip, &test.path, stage)?, 0o755);
        executables.push(test.path.clone());
    }
    for entry in fs::read_dir(workloads)
        .with_context(|| format!("cannot list the workloads in {}", workloads.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            archive.copy(&format!("{WORKLOADS}/{name}"), &path, 0o755);
            executables.push(path);
        }
    }
    let preloaded = PRELOADED
        .iter()
        .map(|name| format!("{}/{name}", guest.lib_dir()));
    for file in HOST_FILES.iter().map(|f| f.to_string()).chain(preloaded) {
        let real = guest.file(&file)?;
        archive.copy(&file, &real, 0o755);
        executables.push(real);
    }
    for program in HOST_PROGRAMS {
        let (path, real) = match guest {
            Guest::Host => {
                let path = find_in_path(program).with_context(|| {
                    format!("{program} is missing: `cargo xtask setup` installs it")
                })?;
                let real = fs::canonicalize(&path)?;
                (path.to_string_lossy().into_owned(), real)
            }
            Guest::Arm64 { .. } => {
                let path = format!("/usr/bin/{program}");
                let real = guest.file(&path)?;
                (path, real)
            }
        };
        archive.copy(&path, &stripped(strip, &real, stage)?, 0o755);
        executables.push(real);
    }

    let mut libraries = BTreeSet::new();
    for exe in &executables {
        libraries.extend(guest.libraries(exe)?);
    }
    for lib in &libraries {
        let real = guest
            .file(lib)
            .with_context(|| format!("cannot resolve {lib}"))?;
        archive.copy(lib, &real, 0o755);
    }

    // Busybox applets where the tests look for them (/bin/sh, /bin/true, /usr/bin/env, ...),
    // unless a real program sits there.
    let applets = capture(Command::new(&host_busybox).arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if !archive.contains(applet) {
            archive.symlink(applet, "/bin/busybox");
        }
    }
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/root", "/run"] {
        archive.dir(dir);
    }
    archive.data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    archive.data("/etc/group", "root:x:0:\n", 0o644);
    archive.data("/init", init_script(plan), 0o755);

    let size = archive.write(out)?;
    say(format_args!(
        "vmtest: initramfs {} ({} MiB, {} libraries)",
        out.display(),
        size >> 20,
        libraries.len()
    ));
    Ok(size)
}

/// A copy of `binary` without debug info, in `stage` (`strip`: the guest architecture's).
fn stripped(strip: &str, binary: &Path, stage: &Path) -> Result<PathBuf> {
    let out = stage.join(binary.file_name().context("a binary without a file name")?);
    let status = Command::new(strip)
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status()
        .with_context(|| format!("cannot run {strip} (binutils, installed with gcc)"))?;
    if !status.success() {
        bail!("strip {} failed", binary.display());
    }
    Ok(out)
}

/// The shared libraries `ldd` says `binary` loads, the dynamic loader included; none for a
/// static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable" (static workloads): nothing to copy.
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// Single-quotes a word for the init script's shell.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The VM's PID 1: mounts what the tests need (tracefs is left to the tracer, which mounts it
/// itself when it is missing), runs every test binary under a timeout between `VMTEST` marker
/// lines that xtask reads on the serial console, and powers off.
fn init_script(plan: &Plan) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t tmpfs tmpfs /tmp\n\
         ip link set lo up\n\
         echo \"VMTEST KERNEL $(uname -r)\"\n\
         echo \"VMTEST CPUS $(nproc) MEMORY $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB\"\n",
    );
    s.push_str(&format!(
        "export TRACER_BIN={TRACER} TRACER_WORKLOADS_DIR={WORKLOADS} TRACER_REQUIRE_KERNEL=1 \
         RUST_BACKTRACE=1\n"
    ));
    for var in PASSED_ENV {
        if let Ok(value) = std::env::var(var) {
            s.push_str(&format!("export {var}={}\n", sh_quote(&value)));
        }
    }
    if std::env::var_os("TRACER_FUZZ_SEEDS").is_none() {
        s.push_str(&format!("export TRACER_FUZZ_SEEDS={VM_FUZZ_SEEDS}\n"));
    }
    s.push_str("cd /tmp\n");
    for test in plan.tests {
        let mut args = vec![
            format!("--test-threads={}", plan.test_threads),
            "--show-output".to_owned(),
        ];
        for skip in plan.skips.iter().filter(|s| s.binary == test.name) {
            args.push("--skip".to_owned());
            args.push(skip.test.to_owned());
        }
        args.extend(plan.extra_args.iter().cloned());
        let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&format!(
            "echo 'VMTEST BEGIN {name}'\n\
             start=$(date +%s)\n\
             timeout -s KILL {timeout} {TESTS}/{name} {args} </dev/null 2>&1\n\
             rc=$?\n\
             echo \"VMTEST END {name} rc=$rc seconds=$(( $(date +%s) - start ))\"\n",
            name = test.name,
            timeout = plan.binary_timeout,
            args = args.join(" "),
        ));
    }
    s.push_str("echo 'VMTEST DONE'\nsync\npoweroff -f\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_library_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
