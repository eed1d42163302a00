//! Running the test binaries: in a QEMU guest (TCG) booted on the initramfs, or on the host
//! kernel directly; and reading what they printed into per-binary results.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Skip, TestBinary};
use crate::util::say;

/// How one test binary ended.
#[derive(Debug, Default, Clone)]
pub struct BinaryResult {
    pub name: String,
    /// Its exit status; None if it never finished (VM crash or timeout).
    pub rc: Option<i32>,
    pub passed: u32,
    pub failed: u32,
    /// Tests left out by `--skip` filters.
    pub filtered: u32,
    pub seconds: u64,
}

impl BinaryResult {
    pub fn ok(&self) -> bool {
        self.rc == Some(0)
    }
}

/// Everything one kernel's run produced.
#[derive(Debug, Default)]
pub struct KernelRun {
    /// `uname -r` of the kernel the tests ran on.
    pub release: Option<String>,
    pub binaries: Vec<BinaryResult>,
    /// Whether the run got to its end (the VM printed `VMTEST DONE`).
    pub completed: bool,
    pub elapsed: Duration,
    pub log: PathBuf,
    /// Why it did not complete, when known.
    pub problem: Option<String>,
    /// What went wrong on the first boot, when this run is the second (see `vm_trouble`).
    pub first_boot: Option<String>,
    /// Frames of BPF programs (the tracer's probes) in what the guest kernel printed from its
    /// problem report on: the first one found, e.g. `bpf_prog_6deef7357e7b4530_fault_user`.
    pub probe_frame: Option<String>,
}

/// Who a guest kernel's problem points at, from the stack traces it printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspect {
    /// A BPF program was running (or being dispatched) in the reported context: the tracer's
    /// probes are the suspect until shown otherwise.
    Probes,
    /// No BPF frame in the report: a problem of the guest or of QEMU's TCG (e.g. a stale
    /// translation after text patching), not of anything the tracer runs in the kernel.
    Guest,
}

/// Stack-trace symbols that mean BPF code was on the reported stack: JIT-compiled programs are
/// named `bpf_prog_<tag>_<name>`, and raw tracepoints, perf tracepoints and perf events enter
/// programs through these dispatchers.
const BPF_FRAMES: [&str; 6] = [
    "bpf_prog_",
    "bpf_trace_run",
    "trace_call_bpf",
    "__bpf_prog_run",
    "bpf_overflow_handler",
    "bpf_ringbuf_",
];

/// The first BPF frame in a console line, if any.
fn bpf_frame(line: &str) -> Option<&str> {
    line.split_whitespace().find(|word| {
        BPF_FRAMES
            .iter()
            .any(|f| word.trim_start_matches('?').starts_with(f))
    })
}

impl KernelRun {
    /// The VM went wrong (the guest kernel crashed or reported a bug, or QEMU stopped before
    /// the end) while every test binary that finished had passed. QEMU's TCG has been seen to
    /// fault a guest by itself (see `boot`, `-cx16`), so such a run earns one more boot; a test
    /// failure never does, nor a run killed at the timeout (a second one would double it).
    pub fn vm_trouble(&self) -> Option<String> {
        // The probes on the reported stack make it the tracer's failure, which a second boot
        // must not hide.
        if self.suspect() == Some(Suspect::Probes) {
            return None;
        }
        if self
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with(TIMEOUT_PROBLEM))
        {
            return None;
        }
        // A binary the trouble cut short (no exit status) has not failed a test yet.
        let tests_ok = self
            .binaries
            .iter()
            .all(|b| b.ok() || (b.rc.is_none() && b.failed == 0));
        match &self.problem {
            Some(problem) if tests_ok => Some(problem.clone()),
            None if tests_ok && !self.completed => Some("the run never got to its end".into()),
            _ => None,
        }
    }

    /// Who the guest kernel's problem report points at; None when it reported none.
    pub fn suspect(&self) -> Option<Suspect> {
        let reported = self
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with(GUEST_PROBLEM));
        match (reported, &self.probe_frame) {
            (false, _) => None,
            (true, Some(_)) => Some(Suspect::Probes),
            (true, None) => Some(Suspect::Guest),
        }
    }

    /// Whether a test binary failed (as opposed to the VM going wrong around passing tests).
    pub fn test_failed(&self) -> bool {
        self.binaries
            .iter()
            .any(|b| b.failed > 0 || (b.rc.is_some() && !b.ok()))
    }

    /// The table's verdict: PASS, FAIL (a test failed), PROBES (the guest kernel reported a
    /// problem with BPF code on its stack: the tracer's fault until shown otherwise), GUEST
    /// (the guest kernel or QEMU went wrong with no test failed and no BPF code involved),
    /// or INCOMPLETE (the run stopped early or timed out without either).
    pub fn verdict(&self, expected: usize) -> &'static str {
        if self.passed(expected) {
            "PASS"
        } else if self.test_failed() {
            "FAIL"
        } else {
            match self.suspect() {
                Some(Suspect::Probes) => "PROBES",
                Some(Suspect::Guest) => "GUEST",
                None => "INCOMPLETE",
            }
        }
    }

    pub fn passed(&self, expected: usize) -> bool {
        self.completed
            && self.problem.is_none()
            && self.binaries.len() == expected
            && self.binaries.iter().all(BinaryResult::ok)
    }
}

/// Reads the marker lines of the init script (and the test harness's result lines).
struct Reader {
    label: String,
    run: KernelRun,
    current: Option<BinaryResult>,
    /// Say each binary's result as it comes (off in this file's unit tests, whose made-up
    /// failures would otherwise read as real ones in a CI log).
    announce: bool,
}

impl Reader {
    fn new(label: &str, log: &Path) -> Reader {
        Reader {
            label: label.to_owned(),
            run: KernelRun {
                log: log.to_path_buf(),
                ..Default::default()
            },
            current: None,
            announce: true,
        }
    }

    fn announce(&self, what: std::fmt::Arguments) {
        if self.announce {
            say(what);
        }
    }

    fn line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        // After a problem report: its stack traces say whether BPF code was involved.
        if self.run.problem.is_some()
            && self.run.probe_frame.is_none()
            && let Some(frame) = bpf_frame(line)
        {
            self.announce(format_args!(
                "vmtest [{}]: guest kernel: BPF code on the reported stack: {frame}",
                self.label
            ));
            self.run.probe_frame = Some(frame.to_owned());
        }
        if let Some(release) = line.strip_prefix("VMTEST KERNEL ") {
            self.run.release = Some(release.trim().to_owned());
            self.announce(format_args!(
                "vmtest [{}]: booted {}",
                self.label,
                release.trim()
            ));
        } else if let Some(name) = line.strip_prefix("VMTEST BEGIN ") {
            self.current = Some(BinaryResult {
                name: name.trim().to_owned(),
                ..Default::default()
            });
        } else if let Some(rest) = line.strip_prefix("VMTEST END ") {
            let mut result = self.current.take().unwrap_or_default();
            for word in rest.split_whitespace() {
                if let Some(rc) = word.strip_prefix("rc=") {
                    result.rc = rc.parse().ok();
                } else if let Some(s) = word.strip_prefix("seconds=") {
                    result.seconds = s.parse().unwrap_or(0);
                } else if result.name.is_empty() {
                    result.name = word.to_owned();
                }
            }
            self.announce(format_args!(
                "vmtest [{}]: {} {} ({} passed, {} failed, {} skipped) in {} s",
                self.label,
                result.name,
                if result.ok() { "ok" } else { "FAILED" },
                result.passed,
                result.failed,
                result.filtered,
                result.seconds
            ));
            self.run.binaries.push(result);
        } else if line.starts_with("VMTEST DONE") {
            self.run.completed = true;
        } else if self.run.problem.is_none()
            && ["Kernel panic", "Oops:", "BUG:", "WARNING:"]
                .iter()
                .any(|w| line.contains(w))
        {
            // The guest kernel's own report: worth the table's attention even if tests pass.
            let text = line.trim();
            self.announce(format_args!(
                "vmtest [{}]: guest kernel: {text}",
                self.label
            ));
            self.run.problem = Some(format!("{GUEST_PROBLEM} {text}"));
            self.run.probe_frame = bpf_frame(line).map(str::to_owned);
        } else if let Some(current) = self.current.as_mut()
            && let Some(counts) = line.trim().strip_prefix("test result: ")
        {
            // `test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; ...`
            for part in counts.split(';') {
                // `ok. 6 passed`, ` 0 failed`, ` 2 filtered out`: a number, then what.
                let mut words = part
                    .split_whitespace()
                    .skip_while(|w| w.parse::<u32>().is_err());
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u32 = n.parse().unwrap_or(0);
                match what {
                    "passed" => current.passed += n,
                    "failed" => current.failed += n,
                    "filtered" => current.filtered += n,
                    _ => {}
                }
            }
        }
    }

    fn finish(mut self, elapsed: Duration, problem: Option<String>) -> KernelRun {
        if let Some(mut unfinished) = self.current.take() {
            unfinished.rc = None;
            self.run.binaries.push(unfinished);
        }
        self.run.elapsed = elapsed;
        self.run.problem = self.run.problem.take().or(problem);
        self.run
    }
}

/// How long the console is still read after the guest kernel reported a problem (for the
/// trace that follows it) before the VM is stopped.
const GUEST_PROBLEM_GRACE: Duration = Duration::from_secs(20);

/// QEMU's accelerator. Single-threaded TCG runs all vCPUs round-robin on one host thread, so
/// code that one vCPU patches (the kernel's text patching when tracepoints and static keys are
/// switched on and off) is invalidated before any other vCPU runs again. Multi-threaded TCG
/// (`thread=multi`, one host thread per vCPU) let another vCPU execute a stale translation of
/// the patched bytes: `Oops: int3` in `syscall_exit_to_user_mode_prepare` on 6.12, soft lockups
/// on 5.10 (docs/kernels.md, "TCG settings"). The guest keeps two CPUs, so the per-CPU paths
/// (per-CPU maps, perf events on every CPU, cross-CPU wake-ups) are still exercised.
pub const TCG_ACCEL: &str = "tcg,thread=single";

/// How `problem` begins when the guest kernel reported a problem.
const GUEST_PROBLEM: &str = "the guest kernel reported:";

/// How `problem` begins for a VM killed at its timeout.
const TIMEOUT_PROBLEM: &str = "killed after";

/// How to boot one VM.
pub struct Vm<'a> {
    pub label: &'a str,
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub memory: &'a str,
    pub cpus: u32,
    pub timeout: Duration,
    pub log: &'a Path,
    /// Print every line of the console, not only the progress.
    pub verbose: bool,
    /// An arm64 guest (`qemu-system-aarch64`) instead of an x86-64 one.
    pub arm64: bool,
}

/// Boots the VM and reads its console until it powers off (or the timeout kills it).
pub fn boot(vm: &Vm) -> Result<KernelRun> {
    let (mut cmd, console, qemu) = if vm.arm64 {
        (
            super::arm64::qemu_command(),
            "ttyAMA0",
            "qemu-system-aarch64",
        )
    } else {
        let mut cmd = Command::new("qemu-system-x86_64");
        // `-cx16`: QEMU 7.2's TCG sometimes corrupts the flags of a `cmpxchg16b` with a
        // segment prefix, which SLUB's per-CPU fast path uses since 6.x: a double fault in
        // __kmalloc_noprof (seen on 6.12, 4 boots in 16). Without CX16 the kernel takes its
        // other path; nothing the tests look at depends on it.
        cmd.args(["-cpu", "max,-cx16"]);
        (cmd, "ttyS0", "qemu-system-x86_64")
    };
    // TCG: nested KVM is not usable on the CI machines. `thread=single`: one host thread runs
    // every vCPU in turn (see `TCG_ACCEL`).
    cmd.args(["-accel", TCG_ACCEL])
        .args(["-smp", &vm.cpus.to_string(), "-m", vm.memory])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(vm.vmlinuz)
        .arg("-initrd")
        .arg(vm.initramfs)
        // panic=-1 reboots at once on a panic, which -no-reboot turns into QEMU exiting.
        // random.trust_cpu: Rust's std asks getrandom() for its hash seeds, which would
        // block on 5.10 until the pool is seeded; RDRAND (emulated by TCG) seeds it at boot.
        // transparent_hugepage=madvise: Debian's cloud kernels default to `always`, which
        // turns the tests' 4 KiB page-touching loops into a few huge-page faults; madvise is
        // the usual distribution default (and the CI machines').
        // no_timer_check: at boot the kernel checks that the IO-APIC timer ticks within a busy
        // loop and panics when it does not ("IO-APIC + timer doesn't work!"); a TCG vCPU whose
        // host thread is descheduled on a loaded machine misses that window (5.10, 1 boot in
        // 15 here). Virtual machines commonly skip the check; the timer itself works.
        .arg("-append")
        .arg(format!(
            "console={console} panic=-1 quiet random.trust_cpu=on \
             transparent_hugepage=madvise no_timer_check"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    say(format_args!(
        "vmtest [{}]: booting {} ({} vCPUs, {} RAM, TCG)",
        vm.label,
        vm.vmlinuz.display(),
        vm.cpus,
        vm.memory
    ));
    let mut child = cmd.spawn().with_context(|| {
        format!("cannot start {qemu} (`cargo xtask setup` installs qemu-system-x86 / -arm)")
    })?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || forward_lines(stdout, &tx));
    std::thread::spawn(move || forward_lines(stderr, &tx2));
    let mut log =
        File::create(vm.log).with_context(|| format!("cannot create {}", vm.log.display()))?;
    let mut reader = Reader::new(vm.label, vm.log);
    let start = Instant::now();
    let mut problem = None;
    // When the guest kernel reported a problem: the run has failed then, and a guest that
    // locked up would otherwise hold on until the timeout.
    let mut guest_problem_at = None;
    loop {
        if reader.run.problem.is_some() {
            let at = *guest_problem_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= GUEST_PROBLEM_GRACE {
                let _ = child.kill();
                break;
            }
        }
        let left = vm.timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                if vm.verbose {
                    println!("[{}] {line}", vm.label);
                }
                reader.line(&line);
            }
            // Both pipes closed: QEMU is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() >= vm.timeout => {
                let _ = child.kill();
                problem = Some(format!("{TIMEOUT_PROBLEM} {} s", vm.timeout.as_secs()));
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = child.wait()?;
    if problem.is_none() && !reader.run.completed {
        problem = Some(format!("the VM stopped early (QEMU {status}); see the log"));
    }
    Ok(reader.finish(start.elapsed(), problem))
}

fn forward_lines(from: impl std::io::Read, to: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                if to.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs the same test binaries on the running kernel, the way the VM's init script does.
#[allow(clippy::too_many_arguments)]
pub fn on_host(
    tests: &[TestBinary],
    tracer: &Path,
    workloads: &Path,
    test_threads: u32,
    extra_args: &[String],
    log_path: &Path,
    verbose: bool,
) -> Result<KernelRun> {
    let mut log =
        File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut reader = Reader::new("host", log_path);
    let start = Instant::now();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    reader.line(&format!("VMTEST KERNEL {}", release.trim()));
    for test in tests {
        reader.line(&format!("VMTEST BEGIN {}", test.name));
        let began = Instant::now();
        let out = Command::new(&test.path)
            .arg(format!("--test-threads={test_threads}"))
            .arg("--show-output")
            .args(extra_args)
            .env("TRACER_BIN", tracer)
            .env("TRACER_WORKLOADS_DIR", workloads)
            .env("TRACER_REQUIRE_KERNEL", "1")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", test.path.display()))?;
        for bytes in [&out.stdout, &out.stderr] {
            for line in String::from_utf8_lossy(bytes).lines() {
                let _ = writeln!(log, "{line}");
                if verbose {
                    println!("[host] {line}");
                }
                reader.line(line);
            }
        }
        reader.line(&format!(
            "VMTEST END {} rc={} seconds={}",
            test.name,
            out.status.code().unwrap_or(-1),
            began.elapsed().as_secs()
        ));
    }
    reader.line("VMTEST DONE");
    Ok(reader.finish(start.elapsed(), None))
}

/// The part of a log that belongs to one test binary (to show what failed).
pub fn section(log: &Path, binary: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let begin = format!("VMTEST BEGIN {binary}");
    let Some(start) = text.find(&begin) else {
        // The host log has no markers of its own: show its tail.
        let lines: Vec<&str> = text.lines().collect();
        return lines[lines.len().saturating_sub(60)..].join("\n");
    };
    let rest = &text[start..];
    let end = rest
        .find(&format!("VMTEST END {binary}"))
        .map_or(rest.len(), |i| i);
    rest[..end].to_owned()
}

/// Which tests are skipped in VMs, as the table's footnote says.
pub fn describe_skips(skips: &[Skip]) -> Vec<String> {
    skips
        .iter()
        .map(|s| format!("{}::{} ({})", s.binary, s.test, s.why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that keeps its made-up results to itself.
    fn quiet_reader() -> Reader {
        Reader {
            announce: false,
            ..Reader::new("t", Path::new("/dev/null"))
        }
    }

    #[test]
    fn reads_markers_and_harness_counts() {
        let mut r = quiet_reader();
        for line in [
            "VMTEST KERNEL 5.10.0-32-cloud-amd64\r",
            "VMTEST BEGIN run_counts",
            "running 6 tests",
            "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; \
             finished in 9.72s",
            "VMTEST END run_counts rc=0 seconds=61",
            "VMTEST BEGIN attach",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "VMTEST END attach rc=101 seconds=20",
            "VMTEST BEGIN metrics",
        ] {
            r.line(line);
        }
        r.line("[  134.7] Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI");
        let run = r.finish(Duration::from_secs(90), Some("killed".into()));
        assert!(
            run.problem
                .as_deref()
                .unwrap()
                .contains("Oops: double fault")
        );
        assert_eq!(run.release.as_deref(), Some("5.10.0-32-cloud-amd64"));
        assert!(!run.completed);
        let b = &run.binaries;
        assert_eq!((b[0].passed, b[0].failed, b[0].filtered), (6, 0, 2));
        assert!(b[0].ok() && !b[1].ok() && b[2].rc.is_none());
        assert_eq!((b[1].passed, b[1].failed, b[1].seconds), (1, 1, 20));
        assert!(!run.passed(3));
        assert_eq!(run.vm_trouble(), None, "a test failed: no second boot");
    }

    #[test]
    fn a_guest_crash_with_no_failed_test_earns_a_second_boot() {
        let mut r = quiet_reader();
        for line in [
            "VMTEST BEGIN run_counts",
            "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "VMTEST END run_counts rc=0 seconds=30",
            "VMTEST BEGIN attach",
            "[   99.1] BUG: unable to handle page fault for address: ffff8880deadbeef",
        ] {
            r.line(line);
        }
        let run = r.finish(Duration::from_secs(90), Some("killed".into()));
        assert!(run.vm_trouble().unwrap().contains("BUG: unable to handle"));

        let mut r = quiet_reader();
        r.line("VMTEST BEGIN run_counts");
        r.line("test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        r.line("VMTEST END run_counts rc=0 seconds=30");
        r.line("VMTEST DONE");
        let clean = r.finish(Duration::from_secs(40), None);
        assert!(clean.passed(1));
        assert_eq!(clean.vm_trouble(), None);
    }
    /// A soft lockup as 5.10 prints it, with the interrupted context's stack.
    fn lockup(mut r: Reader, frames: &[&str]) -> KernelRun {
        for line in [
            "VMTEST BEGIN run_counts",
            "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "VMTEST END run_counts rc=0 seconds=30",
            "VMTEST BEGIN attach",
            "[  212.4] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [tracer:196]",
            "[  212.4] RIP: 0010:smp_call_function_many_cond+0x10c/0x2a0",
            "[  212.4] Call Trace:",
        ] {
            r.line(line);
        }
        for frame in frames {
            r.line(&format!("[  212.4]  {frame}"));
        }
        r.finish(Duration::from_secs(300), None)
    }

    #[test]
    fn a_guest_problem_without_bpf_frames_is_the_guests() {
        let run = lockup(
            quiet_reader(),
            &[
                "text_poke_bp_batch+0x8a/0x1d0",
                "? tracepoint_probe_register+0x5/0x10",
            ],
        );
        assert_eq!(run.suspect(), Some(Suspect::Guest));
        assert_eq!(run.probe_frame, None);
        assert!(run.vm_trouble().unwrap().contains("soft lockup"));
        assert_eq!(run.verdict(2), "GUEST");
    }

    #[test]
    fn bpf_frames_on_the_reported_stack_make_it_the_tracers_failure() {
        let run = lockup(
            quiet_reader(),
            &[
                "bpf_prog_6deef7357e7b4530_fault_user+0x3c/0x1000",
                "bpf_trace_run3+0x6d/0xd0",
                "exc_page_fault+0x1bd/0x5f0",
            ],
        );
        assert_eq!(run.suspect(), Some(Suspect::Probes));
        assert_eq!(
            run.probe_frame.as_deref(),
            Some("bpf_prog_6deef7357e7b4530_fault_user+0x3c/0x1000")
        );
        assert_eq!(
            run.vm_trouble(),
            None,
            "the probes' failure earns no second boot"
        );
        assert_eq!(run.verdict(2), "PROBES");
    }

    #[test]
    fn a_failed_test_is_a_failure_whatever_the_guest_said() {
        let mut r = quiet_reader();
        r.line("VMTEST BEGIN attach");
        r.line("test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        r.line("VMTEST END attach rc=101 seconds=20");
        r.line("[  99.0] WARNING: CPU: 1 PID: 7 at mm/slub.c:100 foo+0x1/0x2");
        let run = r.finish(Duration::from_secs(60), None);
        assert_eq!(run.suspect(), Some(Suspect::Guest));
        assert_eq!(run.verdict(1), "FAIL");
    }
}
