//! The C programs the bench traces (bench/workloads/*.c), compiled here with cc.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::target_dir;

/// A timed workload: what one row of the table measures.
pub struct Workload {
    /// Short name, also the C file's stem.
    pub name: &'static str,
    /// What it does, for the table.
    pub title: &'static str,
    /// Arguments of the default and of the `--quick` run.
    pub args: &'static [&'static str],
    pub quick_args: &'static [&'static str],
    /// The goal for `tracer run`'s median ratio (issue 14).
    pub goal: Goal,
    /// Whether strace can see what the workload is about (it cannot see page faults).
    pub strace_sees_it: bool,
    /// Repetitions of the tracer's own modes, in multiples of `--reps`: a goal close to the
    /// run-to-run noise of a shared machine needs more pairs for a steady median.
    pub rep_factor: u32,
}

/// What `tracer run`'s median ratio must stay under (issue 14).
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// At most bpftrace counting the same events in a map, and within `FLOOR_SLACK` of
    /// `perf stat` counting the tracepoints (the floor), both measured in the same run.
    PeersOfTheSameRun,
    /// At most this ratio.
    AtMost(f64),
}

/// How far above the `perf stat` floor `Goal::PeersOfTheSameRun` allows: 5 %.
pub const FLOOR_SLACK: f64 = 1.05;

/// The three timed workloads of the table, in its order.
pub const TIMED: &[Workload] = &[
    Workload {
        name: "churn",
        title: "malloc/free churn across the mmap threshold",
        args: &["150000"],
        quick_args: &["60000"],
        goal: Goal::PeersOfTheSameRun,
        strace_sees_it: true,
        rep_factor: 1,
    },
    Workload {
        name: "faultstorm",
        title: "fault storm: mmap 256 MiB, touch every page, munmap",
        args: &["6", "256"],
        quick_args: &["2", "256"],
        goal: Goal::PeersOfTheSameRun,
        strace_sees_it: false,
        rep_factor: 1,
    },
    Workload {
        name: "mixed",
        title: "realistic mixed allocator program",
        args: &["5000"],
        quick_args: &["2000"],
        goal: Goal::AtMost(1.02),
        strace_sees_it: true,
        rep_factor: 3,
    },
];

/// Compiles every `bench/workloads/*.c` into `target/bench/workloads` and returns that
/// directory. The flags are on each file's first line: `// build: <flags>`.
pub fn compile_all(root: &Path) -> Result<PathBuf> {
    let sources = root.join("bench/workloads");
    let out = target_dir(root).join("bench/workloads");
    fs::create_dir_all(&out).with_context(|| format!("could not create {}", out.display()))?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&sources)
        .with_context(|| format!("could not list {}", sources.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    entries.sort();
    for source in entries {
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a workload file name is not UTF-8")?;
        crate::util::compile_workload(&source, &out.join(stem))?;
    }
    Ok(out)
}
