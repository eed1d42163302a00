//! `cargo xtask vmtest`: runs the kernel-facing integration tests on a matrix of real kernels.
//!
//! Each kernel of the matrix (Debian's cloud builds of 5.10, 6.1 and 6.12, cached under
//! `target/vmtest/`) boots in QEMU (TCG) on an initramfs that carries the tracer, the test
//! binaries, their workloads and libraries; its init script runs the tests and powers off.
//! `host` runs the same binaries on the running kernel. A table per kernel ends the run.
//! `--arch arm64` cross-builds everything for aarch64 and boots Debian's arm64 kernels in
//! `qemu-system-aarch64` instead (`arm64.rs`).

mod arm64;
mod cpio;
mod initramfs;
mod kernels;
mod runner;

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, find_in_path, is_root, say, target_dir, workspace_root};
use crate::{build, setup};

/// The integration tests that exercise the kernel side: probes, tracepoint formats, fault and
/// RSS accounting, VMA semantics, real allocators. (The exporter tests drive a Prometheus
/// server and python3 fleets and test nothing kernel-specific beyond these.)
const KERNEL_FACING: &[&str] = &[
    "kernel_features",
    "run_counts",
    "attach",
    "bad_input",
    "metrics",
    "model_programs",
    "model_differential",
    "ci_checks",
    "attach_differential",
];

/// A test left out in the VMs, and why.
pub struct Skip {
    pub binary: &'static str,
    pub test: &'static str,
    pub why: &'static str,
}

/// The VMs carry no python3 (it would double the initramfs); these tests need it. (The seed
/// experiments they also check run in `run_counts`.)
const SKIPPED_IN_VM: &[Skip] = &[
    Skip {
        binary: "attach_differential",
        test: "python_after_attach",
        why: "it attaches to python3",
    },
    Skip {
        binary: "attach_differential",
        test: "redis_under_load_after_attach",
        why: "redis-server and redis-benchmark are not in the VM (the C programs under glibc, \
              jemalloc, tcmalloc and mimalloc run there)",
    },
    Skip {
        binary: "bad_input",
        test: "attach_to_a_process_that_has_exited",
        why: "its zombie fixture is a python3 script",
    },
    Skip {
        binary: "model_programs",
        test: "python_building_and_freeing_a_large_list",
        why: "it traces python3",
    },
    Skip {
        binary: "ci_checks",
        test: "the_seed_experiments_pass_as_checks_and_the_report_holds_them",
        why: "its JUnit consumer is python3-junitparser",
    },
    Skip {
        binary: "ci_checks",
        test: "wrong_limits_fail_with_the_check_status_the_measured_value_and_junit",
        why: "its JUnit consumer is python3-junitparser",
    },
    Skip {
        binary: "ci_checks",
        test: "real_allocators_differ_in_ways_the_checks_tell_apart",
        why: "the allocators' time-based purging and, before 6.7, jemalloc's trimming vary from \
              run to run under TCG; it runs on the host",
    },
];

/// A built test binary.
pub struct TestBinary {
    pub name: String,
    pub path: PathBuf,
}

/// The guests' architecture.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
}

impl Arch {
    /// Debian's name of it.
    fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// A kernel to test on: 5.10, 6.1, 6.12 (the default matrix), 6.16, 6.17 (on request), or
    /// `host` (the running kernel, without a VM). Repeatable; default: 5.10, 6.1, 6.12, host.
    /// With `--arch arm64`: 6.1, 6.12 (the default, both).
    #[arg(long = "kernel", value_name = "VERSION")]
    kernels: Vec<String>,
    /// The guests' architecture: x86_64, or arm64 (cross-built, `qemu-system-aarch64`, TCG).
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: Arch,
    /// Only these test binaries (tests/tests/NAME.rs); repeatable. Default: the kernel-facing
    /// set.
    #[arg(long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Memory of each VM (QEMU's -m).
    #[arg(long, default_value = "2G")]
    memory: String,
    /// vCPUs of each VM (default: 2; 1 for 6.16 and 6.17, see kernels.rs).
    #[arg(long)]
    cpus: Option<u32>,
    /// Tests run at once inside one test binary. 1: tests of one binary may share a scratch
    /// directory (run_counts' two seed_demo tests do), and slow TCG widens such races.
    #[arg(long, default_value_t = 1)]
    test_threads: u32,
    /// Minutes one kernel may take, boot included, before its VM is killed.
    #[arg(long, default_value_t = 30)]
    timeout_minutes: u64,
    /// Print everything the VMs print (it is always in target/vmtest/logs/).
    #[arg(long, short)]
    verbose: bool,
    /// Arguments for every test binary, e.g. a test name filter.
    #[arg(last = true, value_name = "TEST-ARGS")]
    test_args: Vec<String>,
}

enum Target {
    Host,
    Vm(&'static kernels::Kernel),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Host => "host".to_owned(),
            Target::Vm(k) => k.label(),
        }
    }
}

pub fn main(args: &Args) -> Result<u8> {
    let targets = targets(&args.kernels, args.arch)?;
    let names: Vec<&str> = if args.tests.is_empty() {
        KERNEL_FACING.to_vec()
    } else {
        args.tests.iter().map(String::as_str).collect()
    };
    let root = workspace_root()?;
    let cache = target_dir(&root).join("vmtest");
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    // Debian packages (qemu, busybox) need root to install; without root, check what is there.
    setup::setup(is_root()?)?;
    let vms = targets.iter().any(|t| matches!(t, Target::Vm(_)));
    let (qemu, cross) = match args.arch {
        Arch::X86_64 => ("qemu-system-x86_64", None),
        Arch::Arm64 => ("qemu-system-aarch64", Some(arm64::TARGET)),
    };
    if vms && find_in_path(qemu).is_none() {
        bail!("{qemu} is missing: run `cargo xtask setup` as root");
    }
    let tracer = match cross {
        None => build::build_tracer(false)?,
        Some(target) => build::build_tracer_for(target, false)?,
    };
    let (tests, workloads) = build_tests(&root, &names, cross)?;

    let initramfs = match args.arch {
        Arch::X86_64 => cache.join("initramfs.cpio"),
        Arch::Arm64 => cache.join("initramfs-arm64.cpio"),
    };
    if vms {
        let plan = initramfs::Plan {
            tests: &tests,
            skips: SKIPPED_IN_VM,
            test_threads: args.test_threads,
            binary_timeout: args.timeout_minutes * 60,
            extra_args: &args.test_args,
        };
        let arm64_root;
        let guest = match args.arch {
            Arch::X86_64 => initramfs::Guest::Host,
            Arch::Arm64 => {
                arm64_root = arm64::root(&cache)?;
                initramfs::Guest::Arm64 { root: &arm64_root }
            }
        };
        initramfs::build(
            &initramfs,
            &cache.join(match args.arch {
                Arch::X86_64 => "stage",
                Arch::Arm64 => "stage-arm64",
            }),
            &tracer,
            &workloads,
            &plan,
            &guest,
        )?;
    }

    let mut rows = Vec::new();
    for target in &targets {
        let owned_label = target.label();
        let label = owned_label.as_str();
        let log = logs.join(format!("{label}.log"));
        let (package, run) = match target {
            Target::Host => {
                if !is_root()? {
                    say("vmtest [host]: not root, the tests will fail to load the probes");
                }
                let run = runner::on_host(
                    &tests,
                    &tracer,
                    &workloads,
                    args.test_threads,
                    &args.test_args,
                    &log,
                    args.verbose,
                )?;
                ("running kernel".to_owned(), run)
            }
            Target::Vm(kernel) => {
                let image = kernel.image(&cache)?;
                let vm = runner::Vm {
                    label,
                    vmlinuz: &image.vmlinuz,
                    initramfs: &initramfs,
                    memory: &args.memory,
                    cpus: args.cpus.unwrap_or(kernel.cpus),
                    timeout: Duration::from_secs(args.timeout_minutes * 60),
                    log: &log,
                    verbose: args.verbose,
                    arm64: args.arch == Arch::Arm64,
                };
                let mut run = runner::boot(&vm)?;
                if let Some(trouble) = run.vm_trouble() {
                    // Kept for whoever looks into it; the table says it happened.
                    let first_log = log.with_extension("first-boot.log");
                    fs::rename(&log, &first_log)
                        .with_context(|| format!("cannot keep {}", log.display()))?;
                    say(format_args!(
                        "vmtest [{label}]: {trouble}, no test having failed; booting once more \
                         (the first console is in {})",
                        first_log.display()
                    ));
                    run = runner::boot(&vm)?;
                    run.first_boot = Some(format!("{trouble} (log {})", first_log.display()));
                }
                (image.package, run)
            }
        };
        for failed in run.binaries.iter().filter(|b| !b.ok()) {
            say(format_args!(
                "vmtest [{label}]: {} failed; its output:\n{}",
                failed.name,
                runner::section(&run.log, &failed.name)
            ));
        }
        rows.push((owned_label.clone(), package, run));
    }

    print_table(&tests, &rows, vms);
    let all_passed = rows.iter().all(|(_, _, run)| run.passed(tests.len()));
    if all_passed {
        say("vmtest: all kernels passed");
        Ok(0)
    } else {
        say("vmtest: FAILED (logs in target/vmtest/logs/)");
        Ok(1)
    }
}

fn targets(requested: &[String], arch: Arch) -> Result<Vec<Target>> {
    if requested.is_empty() {
        if arch == Arch::Arm64 {
            return Ok(kernels::ARM64.iter().map(Target::Vm).collect());
        }
        let mut all: Vec<Target> = kernels::MATRIX.iter().map(Target::Vm).collect();
        all.push(Target::Host);
        return Ok(all);
    }
    requested
        .iter()
        .map(|name| match name.as_str() {
            "host" if arch == Arch::X86_64 => Ok(Target::Host),
            "host" => bail!("`host` runs the host's binaries: not with --arch arm64"),
            _ => kernels::find(arch.debian(), name)
                .map(Target::Vm)
                .with_context(|| {
                    let host = if arch == Arch::X86_64 { ", host" } else { "" };
                    format!(
                        "unknown kernel {name:?}: choose among {}{host}",
                        kernels::names(arch.debian()).join(", ")
                    )
                }),
        })
        .collect()
}

/// Builds the test binaries named and returns them with the directory of the C workloads
/// (the `tests` build script's output), read from cargo's JSON messages.
fn build_tests(
    root: &Path,
    names: &[&str],
    cross: Option<&str>,
) -> Result<(Vec<TestBinary>, PathBuf)> {
    let mut cmd = cargo(root);
    cmd.args([
        "test",
        "--no-run",
        "--package",
        "tests",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(target) = cross {
        cmd.args(["--target", target]);
        build::cross_env(&mut cmd, target);
    }
    for name in names {
        cmd.args(["--test", name]);
    }
    say(format_args!("running: {}", crate::util::describe(&cmd)));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test --no-run")?;
    let mut json = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut json)?;
    if !child.wait()?.success() {
        bail!("building the test binaries failed");
    }
    let mut tests = Vec::new();
    let mut workloads = None;
    for line in json.lines() {
        if line.contains(r#""reason":"build-script-executed""#)
            && line.contains("/tests#")
            && let Some(out) = json_string(line, "out_dir")
        {
            workloads = Some(PathBuf::from(out).join("workloads"));
        }
        if !line.contains(r#""reason":"compiler-artifact""#) {
            continue;
        }
        let Some(exe) = json_string(line, "executable") else {
            continue;
        };
        let path = PathBuf::from(exe);
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .map(|(name, _hash)| name.to_owned());
        if let Some(name) = stem.filter(|n| names.contains(&n.as_str())) {
            tests.push(TestBinary { name, path });
        }
    }
    // The order asked for, which is the order they run in.
    tests.sort_by_key(|t| names.iter().position(|n| *n == t.name));
    for name in names {
        if !tests.iter().any(|t| t.name == *name) {
            bail!("cargo built no test binary {name} (is there a tests/tests/{name}.rs?)");
        }
    }
    let workloads = workloads.context("cargo did not say where the workloads were built")?;
    Ok((tests, workloads))
}

/// The string value of `"key":"..."` in one line of cargo's JSON (enough for paths; cargo
/// escapes only `"` and `\` in them).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

fn print_table(tests: &[TestBinary], rows: &[(String, String, runner::KernelRun)], vms: bool) {
    let mut header = vec!["kernel".to_owned(), "release".to_owned()];
    header.extend(tests.iter().map(|t| t.name.clone()));
    header.extend(["time".to_owned(), "result".to_owned()]);
    let mut table = vec![header];
    for (label, _, run) in rows {
        let mut row = vec![
            label.to_string(),
            run.release.clone().unwrap_or_else(|| "?".into()),
        ];
        for test in tests {
            let cell = match run.binaries.iter().find(|b| b.name == test.name) {
                Some(b) if b.ok() => format!("ok {}", b.passed),
                Some(b) if b.rc.is_none() => "killed".to_owned(),
                Some(b) => format!("FAIL {}/{}", b.failed, b.passed + b.failed),
                None => "-".to_owned(),
            };
            row.push(cell);
        }
        let secs = run.elapsed.as_secs();
        row.push(format!("{}m{:02}s", secs / 60, secs % 60));
        row.push(run.verdict(tests.len()).to_owned());
        table.push(row);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    println!();
    println!(
        "vmtest results (cells: tests passed, or failed/run; result: PASS, FAIL = a test failed, \
         PROBES = guest kernel problem with BPF code on its stack, GUEST = guest or QEMU problem \
         with no test failed and no BPF code involved):"
    );
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("  {}", cells.join("  ").trim_end());
    }
    for (label, package, run) in rows {
        if let Some(first) = &run.first_boot {
            println!("  {label}: second boot; the first one went wrong: {first}");
        }
        if let Some(problem) = &run.problem {
            println!("  {label}: {problem}");
        }
        match (run.suspect(), &run.probe_frame) {
            (Some(runner::Suspect::Probes), Some(frame)) => println!(
                "  {label}: BPF code was on the reported stack ({frame}): treated as a tracer \
                 failure, never retried"
            ),
            (Some(runner::Suspect::Guest), _) => println!(
                "  {label}: no BPF code on the reported stack: a guest or QEMU (TCG) problem, \
                 not a tracer bug (docs/kernels.md, \"TCG settings\")"
            ),
            _ => {}
        }
        println!("  {label}: {package}; log {}", run.log.display());
    }
    if vms {
        println!("  skipped in the VMs (no python3 there):");
        for skip in runner::describe_skips(SKIPPED_IN_VM) {
            println!("    {skip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_fields_of_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/deps/run_counts-ab12","x":1}"#;
        assert_eq!(
            json_string(line, "executable").as_deref(),
            Some("/t/deps/run_counts-ab12")
        );
        assert_eq!(json_string(r#"{"a":"x\"y"}"#, "a").as_deref(), Some("x\"y"));
        assert_eq!(json_string(r#"{"executable":null}"#, "executable"), None);
    }
}
