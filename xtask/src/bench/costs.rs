//! Issue 14's figures besides the workload ratios: `tracer run -- true` (start-up plus
//! teardown), a bystander (an untraced process making syscalls while the tracer traces another
//! one), and what each probe program costs per run, from the kernel's BPF run-time statistics.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::measure::untraced;
use super::modes::Tools;
use super::report::stats;
use crate::util::{find_in_path, say};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// One probe program's share of a traced run (machine-wide: every process's events count).
pub struct Program {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// A bystander loop: CPU ns per call, untraced machine and while the tracer traces `sleep`.
pub struct Bystander {
    pub what: &'static str,
    /// `run` or `attach`: their syscall probes differ (kernel/probes/syscall_source.rs).
    pub beside: &'static str,
    pub alone_ns: Vec<f64>,
    pub beside_ns: Vec<f64>,
}

pub struct Costs {
    /// Wall seconds of each `tracer run -q -- true`.
    pub run_true_s: Vec<f64>,
    pub bystanders: Vec<Bystander>,
    /// Programs during `tracer run -- churn`, and the churn's ops (None: no bpftool).
    pub programs: Option<(Vec<Program>, u64)>,
    /// `TRACER_SYSCALL_PROBES` as set for the bench (which syscall probes were measured).
    pub syscall_probes: String,
    /// What a read of a process's RSS costs here (the many-CPU estimate builds on it).
    pub rss_read: super::rss_cpus::RssRead,
}

pub fn measure(tools: &Tools, workloads: &Path, reps: u32, quick: bool) -> Result<Costs> {
    let mut run_true_s = Vec::new();
    for _ in 0..reps.max(3) {
        let started = Instant::now();
        let status = tracer(tools, &["true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("could not start the tracer")?;
        anyhow::ensure!(status.success(), "`tracer run -q -- true` failed: {status}");
        run_true_s.push(started.elapsed().as_secs_f64());
    }
    say(format_args!(
        "bench: tracer run -- true: {run_true_s:.2?} s"
    ));
    // BPF run-time statistics add two clock reads to every program run: the bystanders are
    // measured without them (a bench interrupted in `program_costs` leaves them on).
    let stats_before = fs::read_to_string(STATS_SYSCTL).unwrap_or_default();
    if stats_before.trim() == "1" {
        say(format_args!(
            "bench: {STATS_SYSCTL} was 1: off for the bystanders"
        ));
        fs::write(STATS_SYSCTL, "0").with_context(|| format!("cannot write {STATS_SYSCTL}"))?;
    }
    let bystander = workloads.join("bystander");
    let calls = if quick { "300000" } else { "1000000" };
    let mut bystanders = Vec::new();
    let loops = [
        ("getppid", vec![calls]),
        ("mmap + munmap of a page", vec!["100000", "mm"]),
    ];
    for beside in ["run", "attach"] {
        for (what, args) in &loops {
            bystanders.push(bystander_loop(tools, &bystander, what, args, beside, reps)?);
        }
    }
    if stats_before.trim() == "1" {
        let _ = fs::write(STATS_SYSCTL, "1");
    }
    let programs = match find_in_path("bpftool") {
        Some(bpftool) => Some(program_costs(tools, workloads, &bpftool, quick)?),
        None => {
            say(format_args!(
                "bench: no bpftool: the per-program table stays empty"
            ));
            None
        }
    };
    Ok(Costs {
        run_true_s,
        bystanders,
        programs,
        syscall_probes: std::env::var("TRACER_SYSCALL_PROBES").unwrap_or_default(),
        rss_read: super::rss_cpus::measure(quick),
    })
}

/// `reps` pairs of the bystander loop alone and beside `tracer run -- sleep 4` or `tracer
/// attach` to a `sleep 4`.
fn bystander_loop(
    tools: &Tools,
    bystander: &Path,
    what: &'static str,
    args: &[&str],
    beside: &'static str,
    reps: u32,
) -> Result<Bystander> {
    let mut b = Bystander {
        what,
        beside,
        alone_ns: Vec::new(),
        beside_ns: Vec::new(),
    };
    for _ in 0..reps {
        let alone = untraced(bystander, args)?;
        b.alone_ns
            .push(alone.cpu_ns as f64 / alone.ops.max(1) as f64);
        let mut target = None;
        let mut command = if beside == "run" {
            tracer(tools, &["sleep", "4"])
        } else {
            let sleep = Command::new("sleep")
                .arg("4")
                .spawn()
                .context("could not start sleep")?;
            let mut command = Command::new(&tools.tracer);
            command
                .args(["attach", "--no-listen", "--pid", &sleep.id().to_string()])
                .args(&tools.tracer_args)
                .stdin(Stdio::null());
            target = Some(sleep);
            command
        };
        let mut traced = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start the tracer")?;
        let ready = wait_for_programs(&traced, Duration::from_secs(3));
        let beside_sample = untraced(bystander, args);
        let _ = traced.wait();
        if let Some(mut sleep) = target {
            let _ = sleep.wait();
        }
        anyhow::ensure!(ready.is_some(), "the tracer attached no program within 3 s");
        let beside_sample = beside_sample?;
        b.beside_ns
            .push(beside_sample.cpu_ns as f64 / beside_sample.ops.max(1) as f64);
    }
    Ok(b)
}

/// `tracer run -q [--tracer-arg...] -- CMD...`.
fn tracer(tools: &Tools, cmd: &[&str]) -> Command {
    let mut command = Command::new(&tools.tracer);
    command
        .args(["run", "-q"])
        .args(&tools.tracer_args)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null());
    command
}

/// The ids of the BPF programs the process holds (from its fdinfo), once there are any.
fn wait_for_programs(child: &Child, limit: Duration) -> Option<Vec<u32>> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < limit {
        let ids = program_ids(child.id());
        // Attached when the count stops growing.
        if !ids.is_empty() && ids.len() == seen.len() {
            return Some(ids);
        }
        seen = ids;
        std::thread::sleep(Duration::from_millis(150));
    }
    None
}

fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Runs `tracer run -- churn` with `kernel.bpf_stats_enabled=1` and reads each program's run
/// count and run time just before the tracer detaches them.
fn program_costs(
    tools: &Tools,
    workloads: &Path,
    bpftool: &Path,
    quick: bool,
) -> Result<(Vec<Program>, u64)> {
    let before = fs::read_to_string(STATS_SYSCTL).unwrap_or_else(|_| "0".into());
    fs::write(STATS_SYSCTL, "1").with_context(|| format!("cannot write {STATS_SYSCTL}"))?;
    let result = (|| {
        let churn = workloads.join("churn");
        let ops = if quick { "60000" } else { "150000" };
        let mut child = tracer(tools, &[churn.to_str().context("non-UTF-8 path")?, ops])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start the tracer")?;
        let ids = wait_for_programs(&child, Duration::from_secs(5)).unwrap_or_default();
        let mut last: Vec<Program> = Vec::new();
        while child.try_wait()?.is_none() {
            let now: Vec<Program> = ids.iter().filter_map(|&id| show(bpftool, id)).collect();
            if now.len() == ids.len() {
                last = now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((last, ops.parse().unwrap_or(0)))
    })();
    let _ = fs::write(STATS_SYSCTL, before.trim());
    result
}

/// `bpftool prog show id ID`: name, run_time_ns, run_cnt.
fn show(bpftool: &Path, id: u32) -> Option<Program> {
    let out = Command::new(bpftool)
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |key: &str| {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1).copied()
    };
    Some(Program {
        name: after("name")?.to_owned(),
        run_time_ns: after("run_time_ns")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        runs: after("run_cnt").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// Why a bystander pays more than 2 %, whatever the probes do.
fn bystander_why() -> String {
    // kprobe_events exists with CONFIG_KPROBE_EVENTS, which needs CONFIG_KPROBES.
    let kprobes = if Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
    {
        "this kernel has kprobes, and `tracer attach` uses them by default (feature \
         `syscall_kprobes`), while this bench's `tracer run` keeps the raw tracepoints"
    } else {
        "this kernel has none (no kprobe_events in tracefs: CONFIG_KPROBES is not set), so the \
         tracer's kprobe source (feature `syscall_kprobes`) falls back to the tracepoints here"
    };
    // bpftrace's `kfunc` line: whether this kernel loads fentry programs (BPF trampolines).
    let fentry = find_in_path("bpftrace")
        .and_then(|b| Command::new(b).arg("--info").output().ok())
        // Older bpftrace prints its --info on stderr.
        .map(|out| String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned())
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix("kfunc:").map(|v| v.trim() == "yes"))
        });
    let fentry = match fentry {
        Some(true) => "this kernel loads them (`bpftrace --info`: kfunc yes)",
        Some(false) => "this kernel refuses them (`bpftrace --info`: kfunc no)",
        None => "unknown here (no bpftrace to ask)",
    };
    format!(
        "Why the bystander goal is missed: once any syscall tracepoint is enabled (the per-syscall \
         ones or `raw_syscalls`), the kernel sets `SYSCALL_WORK_SYSCALL_TRACEPOINT` on every \
         thread of the machine, so every syscall of every process takes the slow entry/exit \
         path (`syscall_trace_enter`/`syscall_exit_work`), traced or not; with `raw_syscalls` \
         the probe programs also run for every syscall. No probe design on syscall \
         tracepoints avoids that cost. The way out is to leave syscall tracepoints alone and \
         probe the kernel functions behind the six syscalls with fentry, which needs BPF \
         trampolines: {fentry}; or with kprobes: {kprobes}. Where the kernel has kprobes, the \
         tracer puts them on the syscall wrappers (`__x64_sys_mmap`, ... and the clone, fork \
         and execve ones; kretprobes for the return values): untraced processes then pay only \
         for their own calls of those functions (one program run that stops at the traced \
         check), nothing for any other syscall."
    )
}

fn median(values: &[f64]) -> f64 {
    stats(values).map_or(f64::NAN, |(median, _, _)| median)
}

impl Costs {
    /// ns each probe program ran per churn op (those that ran at least once per 100 ops),
    /// from the per-program table; None without it.
    pub fn probe_ns_per_op(&self) -> Option<Vec<(String, f64)>> {
        let (programs, ops) = self.programs.as_ref()?;
        let ops = (*ops).max(1) as f64;
        Some(
            programs
                .iter()
                .filter(|p| p.runs as f64 / ops >= 0.01)
                .map(|p| (p.name.clone(), p.run_time_ns as f64 / ops))
                .collect(),
        )
    }

    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "## Start-up, bystanders and probe costs (issue 14)\n");
        let probes = match self.syscall_probes.as_str() {
            "" => "the default syscall probes (feature `raw_syscalls`)".to_owned(),
            other => format!("`TRACER_SYSCALL_PROBES={other}`"),
        };
        let _ = writeln!(
            out,
            "Measured with {probes}: by default `tracer run` probes syscalls on `raw_syscalls` \
             (quick teardown) and `tracer attach` on the per-syscall tracepoints (nothing for \
             the syscalls they do not trace).\n"
        );
        let run_true = median(&self.run_true_s);
        let _ = writeln!(
            out,
            "{}",
            super::report::verdict(
                "`tracer run -q -- true`, start-up plus teardown, median wall time",
                run_true,
                0.3,
                " s"
            )
        );
        for b in &self.bystanders {
            let (alone, beside) = (median(&b.alone_ns), median(&b.beside_ns));
            let slowdown = (beside / alone - 1.0) * 100.0;
            let _ = writeln!(
                out,
                "{} ({alone:.0} ns per call alone, {beside:.0} ns while the tracer traces \
                 another process; CPU time, medians of {} runs)",
                super::report::verdict(
                    &format!(
                        "bystander {} loop beside `tracer {}`, slowdown",
                        b.what, b.beside
                    ),
                    slowdown,
                    2.0,
                    " %"
                ),
                b.alone_ns.len()
            );
        }
        if self
            .bystanders
            .iter()
            .any(|b| median(&b.beside_ns) > median(&b.alone_ns) * 1.02)
        {
            let _ = writeln!(out, "\n{}", bystander_why());
        }
        let _ = writeln!(out);
        self.rss_read.markdown(out);
        let Some((programs, ops)) = &self.programs else {
            let _ = writeln!(out, "No per-program table: bpftool is not installed.\n");
            return;
        };
        let _ = writeln!(
            out,
            "Probe programs during `tracer run -- churn {ops}` (`kernel.bpf_stats_enabled=1`, \
             which adds two clock reads per run). Runs count every process on the machine: \
             probes that filter by process run for the others too.\n"
        );
        let _ = writeln!(out, "| program | runs | ns per run | runs per churn op |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
        for p in programs.iter().filter(|p| p.runs > 0) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {:.0} | {:.2} |",
                p.name,
                p.runs,
                p.run_time_ns as f64 / p.runs as f64,
                p.runs as f64 / (*ops).max(1) as f64
            );
        }
        let _ = writeln!(out);
    }
}
