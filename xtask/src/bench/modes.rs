//! The ways a workload is run: untraced, under the tracer (`run` or `attach`), and under the
//! peers the issue compares against, with the exact command line of each.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::find_in_path;

/// A way of running a workload traced. The untraced run each is paired with is not a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `tracer run -- W`: the workload started traced.
    Run,
    /// `tracer run --stacks -- W`: the same with the call stacks of growing syscalls and of
    /// one user page fault in 64 (issue 15), to set side by side with `Run`.
    RunStacks,
    /// `tracer attach -p PID`: the workload started stopped, attached to, then resumed.
    Attach,
    /// `perf stat -e` the tracepoints the tracer enables, counting only: the floor any
    /// tracepoint-based tracer pays.
    PerfStat,
    /// bpftrace counting every traced syscall and fault in a kernel map.
    BpftraceCount,
    /// bpftrace printing one line per traced syscall and fault.
    BpftracePrint,
    /// `perf trace` of the six syscalls plus page faults (`-F all`).
    PerfTrace,
    /// `strace -f` of the six syscalls (it cannot see page faults).
    Strace,
}

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::Run,
        Mode::RunStacks,
        Mode::Attach,
        Mode::PerfStat,
        Mode::BpftraceCount,
        Mode::BpftracePrint,
        Mode::PerfTrace,
        Mode::Strace,
    ];

    /// Column header in the tables.
    pub fn column(self) -> &'static str {
        match self {
            Mode::Run => "tracer run",
            Mode::RunStacks => "tracer run --stacks",
            Mode::Attach => "tracer attach",
            Mode::PerfStat => "perf stat (floor)",
            Mode::BpftraceCount => "bpftrace count",
            Mode::BpftracePrint => "bpftrace print",
            Mode::PerfTrace => "perf trace",
            Mode::Strace => "strace",
        }
    }

    /// Whether this is the tracer itself rather than a peer.
    pub fn ours(self) -> bool {
        matches!(self, Mode::Run | Mode::RunStacks | Mode::Attach)
    }

    /// The streaming peers cost 8-20x; they get fewer repetitions to keep the bench short.
    pub fn slow(self) -> bool {
        matches!(self, Mode::BpftracePrint | Mode::PerfTrace | Mode::Strace)
    }

    /// The program this mode needs besides the workload.
    fn program(self) -> &'static str {
        match self {
            Mode::Run | Mode::RunStacks | Mode::Attach => "tracer",
            Mode::PerfStat | Mode::PerfTrace => "perf",
            Mode::BpftraceCount | Mode::BpftracePrint => "bpftrace",
            Mode::Strace => "strace",
        }
    }
}

/// The six traced syscalls.
pub const SYSCALLS: [&str; 6] = ["brk", "mmap", "munmap", "mremap", "mprotect", "madvise"];

/// The programs the modes run, found on PATH (the peers are optional).
pub struct Tools {
    pub tracer: PathBuf,
    /// Extra options for every `tracer run`/`attach` (`--tracer-arg`).
    pub tracer_args: Vec<String>,
    pub perf: Option<PathBuf>,
    pub bpftrace: Option<PathBuf>,
    pub strace: Option<PathBuf>,
}

impl Tools {
    pub fn find(tracer: PathBuf, tracer_args: Vec<String>) -> Tools {
        // perf is a wrapper script on some distributions that fails without a matching
        // linux-perf-<version>: only count it as present if `perf version` works.
        let perf = find_in_path("perf").filter(|perf| {
            Command::new(perf)
                .arg("version")
                .output()
                .is_ok_and(|out| out.status.success())
        });
        Tools {
            tracer,
            tracer_args,
            perf,
            bpftrace: find_in_path("bpftrace"),
            strace: find_in_path("strace"),
        }
    }

    /// Whether `mode` can run here.
    pub fn has(&self, mode: Mode) -> bool {
        match mode.program() {
            "perf" => self.perf.is_some(),
            "bpftrace" => self.bpftrace.is_some(),
            "strace" => self.strace.is_some(),
            _ => true,
        }
    }

    fn path(&self, mode: Mode) -> &Path {
        let found = match mode.program() {
            "perf" => self.perf.as_deref(),
            "bpftrace" => self.bpftrace.as_deref(),
            "strace" => self.strace.as_deref(),
            _ => Some(self.tracer.as_path()),
        };
        found.unwrap_or(Path::new("false"))
    }

    /// `tool --version`-style lines for the report, of the tools present.
    pub fn versions(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut add = |path: &Option<PathBuf>, arg: &str| {
            if let Some(path) = path
                && let Ok(out) = Command::new(path).arg(arg).output()
            {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(first) = text.lines().next() {
                    lines.push(first.trim().to_owned());
                }
            }
        };
        add(&self.bpftrace, "--version");
        add(&self.perf, "version");
        add(&self.strace, "-V");
        lines
    }
}

/// The command that runs `workload ARGS` under a wrapping `mode` (every mode but `Attach`,
/// which attaches to a running process instead). Peers that print write to `output`.
pub fn wrapped(
    mode: Mode,
    tools: &Tools,
    workload: &Path,
    args: &[&str],
    output: &Path,
) -> Command {
    let mut cmd = Command::new(tools.path(mode));
    match mode {
        // The summary (stderr) gives the records and faults seen and the records lost.
        Mode::Run | Mode::Attach => {
            cmd.arg("run").args(&tools.tracer_args).arg("--");
        }
        // Default stack options (16 KiB copies, one fault in 64): what `--stacks` costs as
        // a user gets it.
        Mode::RunStacks => {
            cmd.args(["run", "--stacks"])
                .args(&tools.tracer_args)
                .arg("--");
        }
        Mode::PerfStat => {
            cmd.args(["stat", "-x", ",", "-o"])
                .arg(output)
                .arg("-e")
                .arg(floor_events().join(","))
                .arg("--");
        }
        Mode::BpftraceCount | Mode::BpftracePrint => {
            let script = if mode == Mode::BpftraceCount {
                bpftrace_count_script()
            } else {
                bpftrace_print_script()
            };
            // bpftrace starts the command itself (-c) once its probes are attached; `cpid` is
            // that command's pid.
            cmd.arg("-o")
                .arg(output)
                .arg("-e")
                .arg(script)
                .arg("-c")
                .arg(shell_words(workload, args));
            return cmd;
        }
        Mode::PerfTrace => {
            cmd.args(["trace", "-o"])
                .arg(output)
                .arg("-e")
                .arg(SYSCALLS.join(","))
                .args(["-F", "all", "--"]);
        }
        Mode::Strace => {
            cmd.args(["-f", "-qq", "-o"])
                .arg(output)
                .arg("-e")
                .arg(format!("trace={}", SYSCALLS.join(",")))
                .arg("--");
        }
    }
    cmd.arg(workload).args(args);
    cmd
}

/// The tracepoints the tracer enables on the hot paths: what `perf stat` counts for the floor.
/// `:uk` counts them in user and kernel context: without a modifier, perf 6.1 on Linux 6.18
/// counted only a fraction of the events.
pub fn floor_events() -> Vec<String> {
    let mut events: Vec<String> = SYSCALLS
        .iter()
        .flat_map(|s| ["enter", "exit"].map(|side| format!("syscalls:sys_{side}_{s}:uk")))
        .collect();
    events.extend(
        [
            "exceptions:page_fault_user:uk",
            "exceptions:page_fault_kernel:uk",
            "kmem:rss_stat:uk",
        ]
        .map(String::from),
    );
    events
}

fn syscall_exit_probes() -> String {
    SYSCALLS
        .iter()
        .map(|s| format!("tracepoint:syscalls:sys_exit_{s}"))
        .collect::<Vec<_>>()
        .join(",")
}

const FAULT_PROBES: &str = "tracepoint:exceptions:page_fault_user,\
                            tracepoint:exceptions:page_fault_kernel";

/// Counts in kernel maps, printed once at exit: the cheapest thing bpftrace can do.
fn bpftrace_count_script() -> String {
    format!(
        "{} /pid == cpid/ {{ @syscalls = count(); }}\n\
         {FAULT_PROBES} /pid == cpid/ {{ @faults = count(); }}",
        syscall_exit_probes()
    )
}

/// One line per event, as a streaming tracer does.
fn bpftrace_print_script() -> String {
    format!(
        "{} /pid == cpid/ {{ printf(\"%d %s %d\\n\", tid, probe, args->ret); }}\n\
         {FAULT_PROBES} /pid == cpid/ {{ printf(\"%d fault %lx %lx\\n\", tid, args->address, \
         args->error_code); }}",
        syscall_exit_probes()
    )
}

/// `workload args` as one shell-style string for bpftrace's `-c` (the paths here have no
/// spaces; bpftrace splits on whitespace).
fn shell_words(workload: &Path, args: &[&str]) -> String {
    let mut words: Vec<OsString> = vec![workload.as_os_str().to_owned()];
    words.extend(args.iter().map(OsString::from));
    words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
