//! `cargo xtask bench`: what tracing costs the traced program and what the daemon costs,
//! measured side by side with bpftrace, `perf trace`, `perf stat` and strace in one run, and
//! written to BENCHMARKS.md with the machine it ran on.

mod costs;
mod daemon;
mod measure;
mod modes;
mod ordering;
mod pageload;
mod procfs;
mod report;
mod rss_cpus;
mod sections;
mod soak;
mod stacks;
mod workloads;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::measure::Sample;
use self::modes::{Mode, Tools};
use self::report::{Cell, Machine, Pair, Results, Row};
use self::workloads::{TIMED, Workload};
use crate::util::{capture, is_root, say, target_dir, workspace_root};
use crate::{build, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Paired runs (untraced + traced) per workload for the tracer, the floor and bpftrace
    /// counting.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: u32,
    /// Paired runs for the slow streaming peers (bpftrace printing, perf trace, strace).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    peer_reps: u32,
    /// A short run (about 3 minutes): smaller workloads, 3 and 1 repetitions, shorter daemon
    /// measurements. Explicit --reps/--peer-reps still win.
    #[arg(long)]
    quick: bool,
    /// Only these workloads (churn, faultstorm, mixed); repeatable.
    #[arg(long = "workload", value_name = "NAME")]
    only: Vec<String>,
    /// Run only the tracer, not the peers.
    #[arg(long)]
    no_peers: bool,
    /// Skip the daemon measurements (idle processes, throughput).
    #[arg(long)]
    no_daemon: bool,
    /// Skip `tracer run -- true`, the bystander and the per-program table (issue 14).
    #[arg(long, conflicts_with = "costs_only")]
    no_costs: bool,
    /// Only `tracer run -- true`, the bystander and the per-program table.
    #[arg(long)]
    costs_only: bool,
    /// Measure this tracer binary instead of building the workspace's (e.g. to compare a
    /// prototype with the main build on the same machine).
    #[arg(long, value_name = "PATH")]
    tracer: Option<PathBuf>,
    /// An extra option for every `tracer run`/`attach` of the bench, e.g.
    /// `--tracer-arg=--ring-buffer-size=4M`; repeatable.
    #[arg(long = "tracer-arg", value_name = "ARG", allow_hyphen_values = true)]
    tracer_args: Vec<String>,
    /// Where to write the results (default: BENCHMARKS.md at the workspace root); `-` only
    /// prints them.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    sections: sections::SectionArgs,
}

pub fn main(args: &Args) -> Result<()> {
    if !is_root()? {
        bail!(
            "the bench loads BPF programs (the tracer, bpftrace, perf): run it as root, e.g. \
             `sudo -E cargo xtask bench`"
        );
    }
    let root = workspace_root()?;
    // The peers are Debian packages installed by setup; without apt they are left out.
    setup::setup(true)?;
    let tracer = match &args.tracer {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("no tracer at {}", path.display()))?,
        None => build::build_tracer(true)?,
    };
    let workloads_dir = workloads::compile_all(&root)?;
    let scratch = scratch_dir(&root)?;
    let tools = Tools::find(tracer, args.tracer_args.clone());
    let cx = sections::Context {
        tools: &tools,
        workloads: &workloads_dir,
        scratch: &scratch,
        quick: args.quick,
        args: &args.sections,
    };
    if args.sections.alone() {
        let text = sections::run(&cx);
        let _ = fs::remove_dir_all(&scratch);
        let output = args.output.clone().unwrap_or(root.join("BENCHMARKS.md"));
        return sections::write_alone(&output, &text?, MEASURED_APART);
    }
    let plan = Plan::new(args, &tools)?;
    let started = Instant::now();

    let mut rows = Vec::new();
    for workload in plan.workloads.iter().filter(|_| !args.costs_only) {
        rows.push(measure_workload(
            &plan,
            &tools,
            workload,
            &workloads_dir,
            &scratch,
        )?);
    }
    let costs = if args.no_costs {
        None
    } else {
        Some(costs::measure(
            &tools,
            &workloads_dir,
            plan.reps,
            plan.quick,
        )?)
    };
    let (idle, floods) = if args.no_daemon || args.costs_only {
        (None, Vec::new())
    } else {
        measure_daemon(&plan, &tools, &workloads_dir, &scratch)?
    };
    let extra = sections::run(&cx);
    let _ = fs::remove_dir_all(&scratch);
    let extra = extra?;

    let results = Results {
        machine: machine(&root, &tools, args)?,
        rows,
        idle,
        floods,
        costs,
        missing: plan.missing.clone(),
    };
    let text = format!("{}\n\n{extra}", results.markdown().trim_end());
    println!("{text}");
    say(format_args!(
        "bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| root.join("BENCHMARKS.md"));
    if output != Path::new("-") {
        // Sections measured apart (by tests or scripts) are carried over from the old file.
        let kept = fs::read_to_string(&output)
            .ok()
            .and_then(|old| measured_apart(&old).map(str::to_owned))
            .unwrap_or_default();
        let text = format!("{}\n{kept}", text.trim_end());
        fs::write(&output, text).with_context(|| format!("cannot write {}", output.display()))?;
        say(format_args!(
            "bench: results written to {}",
            output.display()
        ));
    }
    Ok(())
}

/// The line of BENCHMARKS.md below which sections are measured apart from this command.
const MEASURED_APART: &str = "<!-- Measured apart:";

/// The part of an old BENCHMARKS.md that `cargo xtask bench` keeps: from the marker line on.
fn measured_apart(old: &str) -> Option<&str> {
    let at = old.find(MEASURED_APART)?;
    Some(&old[at..])
}

/// What to run, from the options.
struct Plan {
    workloads: Vec<&'static Workload>,
    modes: Vec<Mode>,
    missing: Vec<Mode>,
    reps: u32,
    peer_reps: u32,
    quick: bool,
}

impl Plan {
    fn new(args: &Args, tools: &Tools) -> Result<Plan> {
        let explicit =
            |name: &str| std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")));
        let reps = if args.quick && !explicit("--reps") {
            3
        } else {
            args.reps
        };
        let peer_reps = if args.quick && !explicit("--peer-reps") {
            1
        } else {
            args.peer_reps
        };
        for name in &args.only {
            if !TIMED.iter().any(|w| w.name == name) {
                bail!("no workload `{name}` (there are: churn, faultstorm, mixed)");
            }
        }
        let workloads = TIMED
            .iter()
            .filter(|w| args.only.is_empty() || args.only.iter().any(|n| n == w.name))
            .collect();
        let wanted: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|m| m.ours() || !args.no_peers)
            .collect();
        let missing: Vec<Mode> = wanted.iter().copied().filter(|m| !tools.has(*m)).collect();
        for mode in &missing {
            say(format_args!(
                "bench: {} is not installed: its column stays empty",
                mode.column()
            ));
        }
        Ok(Plan {
            workloads,
            modes: wanted.into_iter().filter(|m| tools.has(*m)).collect(),
            missing,
            reps,
            peer_reps,
            quick: args.quick,
        })
    }

    fn args_of(&self, workload: &Workload) -> &'static [&'static str] {
        if self.quick {
            workload.quick_args
        } else {
            workload.args
        }
    }
}

/// A scratch directory for the peers' output, on tmpfs when there is one, so writing it does
/// not wait for a disk.
fn scratch_dir(root: &Path) -> Result<PathBuf> {
    let name = format!("tracer-bench-{}", std::process::id());
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        base.join(name)
    } else {
        target_dir(root).join("bench").join(name)
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Every mode on one workload: `reps` repetitions, each pairing a traced run with an untraced
/// one, modes rotated between repetitions and the pair's order alternated.
fn measure_workload(
    plan: &Plan,
    tools: &Tools,
    workload: &'static Workload,
    dir: &Path,
    scratch: &Path,
) -> Result<Row> {
    let bin = dir.join(workload.name);
    let args = plan.args_of(workload);
    say(format_args!(
        "bench: {} ({}), {} {}",
        workload.name,
        workload.title,
        bin.display(),
        args.join(" ")
    ));
    // A first run warms the page cache and the allocator's code paths; it does not count.
    measure::untraced(&bin, args)?;
    let modes: Vec<Mode> = plan
        .modes
        .iter()
        .copied()
        .filter(|m| *m != Mode::Strace || workload.strace_sees_it)
        .collect();
    let mut cells: Vec<Cell> = modes
        .iter()
        .map(|&mode| Cell {
            mode,
            pairs: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let wanted = |mode: Mode| {
        if mode.slow() {
            plan.peer_reps
        } else if mode.ours() {
            plan.reps * workload.rep_factor
        } else {
            plan.reps
        }
    };
    let reps = modes.iter().map(|&m| wanted(m)).max().unwrap_or(0);
    for rep in 0..reps {
        let count = cells.len();
        for i in 0..count {
            let cell = &mut cells[(i + rep as usize) % count];
            let wanted = wanted(cell.mode);
            if rep >= wanted {
                continue;
            }
            let traced_first = rep % 2 == 1;
            match paired(cell.mode, tools, &bin, args, scratch, traced_first) {
                Ok(pair) => {
                    say(format_args!(
                        "bench: {} rep {}/{wanted} {}: {:.3}× ({:.0} ms vs {:.0} ms untraced)",
                        workload.name,
                        rep + 1,
                        cell.mode.column(),
                        pair.ratio(),
                        pair.traced.elapsed_ns as f64 / 1e6,
                        pair.untraced.elapsed_ns as f64 / 1e6
                    ));
                    cell.pairs.push(pair);
                }
                Err(err) => {
                    say(format_args!(
                        "bench: {} {} failed: {err:#}",
                        workload.name,
                        cell.mode.column()
                    ));
                    cell.errors.push(format!("{err:#}"));
                }
            }
        }
    }
    Ok(Row { workload, cells })
}

fn paired(
    mode: Mode,
    tools: &Tools,
    bin: &Path,
    args: &[&str],
    scratch: &Path,
    traced_first: bool,
) -> Result<Pair> {
    let (traced, untraced): (Sample, Sample) = if traced_first {
        let traced = measure::traced(mode, tools, bin, args, scratch)?;
        (traced, measure::untraced(bin, args)?)
    } else {
        let untraced = measure::untraced(bin, args)?;
        (measure::traced(mode, tools, bin, args, scratch)?, untraced)
    };
    Ok(Pair { untraced, traced })
}

fn measure_daemon(
    plan: &Plan,
    tools: &Tools,
    dir: &Path,
    scratch: &Path,
) -> Result<(Option<daemon::Idle>, Vec<daemon::Flood>)> {
    let window = Duration::from_secs(if plan.quick { 5 } else { 10 });
    say(format_args!(
        "bench: daemon tracing 100 idle-ish processes for {window:?}"
    ));
    let idle = daemon::idle(tools, dir, 100, window, Duration::from_secs(5))?;
    say(format_args!(
        "bench: attached in {:.0} ms; {:.2}% of a core, RSS {} KiB (peak {} KiB)",
        idle.startup.as_secs_f64() * 1e3,
        idle.cpu_percent,
        idle.rss_kib,
        idle.hwm_kib
    ));
    let seconds = if plan.quick { 2 } else { 3 };
    let mut floods = Vec::new();
    for rate in [400_000, 0] {
        floods.push(daemon::flood(tools, dir, scratch, rate, seconds)?);
    }
    Ok((Some(idle), floods))
}

fn machine(root: &Path, tools: &Tools, args: &Args) -> Result<Machine> {
    let git = |args: &[&str]| capture(Command::new("git").current_dir(root).args(args));
    let commit = match &args.tracer {
        Some(path) => format!("(a given binary: {})", path.display()),
        None => {
            let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_ok_and(|s| !s.trim().is_empty());
            format!(
                "{}{}",
                head.trim(),
                if dirty {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )
        }
    };
    let date = capture(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    let command = std::iter::once("cargo xtask".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Machine {
        cpu: procfs::cpu_model(),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        mem_mib: procfs::mem_total_mib(),
        kernel: procfs::kernel_release(),
        date,
        commit,
        tools: tools.versions(),
        command,
        tracer_args: args.tracer_args.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_keeps_what_was_measured_apart() {
        let old = "# Benchmarks\n\nold table\n\n<!-- Measured apart: kept -->\n\n## By hand\n";
        assert_eq!(
            measured_apart(old),
            Some("<!-- Measured apart: kept -->\n\n## By hand\n")
        );
        assert_eq!(measured_apart("# Benchmarks\n\nonly generated\n"), None);
    }
}
