//! Issue 21: what putting each process's records in the kernel's order costs. The same
//! workload untraced, under `tracer run --mmap-lock-order on` (a probe on
//! mmap_lock:mmap_lock_acquire_returned numbers every change) and `off` (arrival order),
//! interleaved, on the churn workload and on threadchurn (threads mmap/munmap-ing 64 KiB
//! blocks on one address space, where the two orders differ).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use super::measure::{self, Proc, Sample, read_all};
use super::sections::{Context, median, ratio_cell};
use crate::util::{describe, say};

/// One workload of the section.
struct Load {
    name: &'static str,
    title: &'static str,
    args: &'static [&'static str],
    quick_args: &'static [&'static str],
}

const LOADS: &[Load] = &[
    Load {
        name: "churn",
        title: "churn (one thread, malloc/free across the mmap threshold)",
        args: &["150000"],
        quick_args: &["60000"],
    },
    Load {
        name: "threadchurn",
        title: "threadchurn: 4 threads mmap/munmap-ing 64 KiB blocks",
        args: &["4", "20000"],
        quick_args: &["4", "8000"],
    },
];

const ORDERS: [&str; 2] = ["on", "off"];

/// A traced run: the workload's figures, and the tracer's count of records it reordered and
/// of changes it found out of order.
struct Traced {
    sample: Sample,
    reordered: u64,
    conflicts: u64,
}

#[derive(Default)]
struct Column {
    ratios: Vec<f64>,
    cpu_ratios: Vec<f64>,
    lost: u64,
    reordered: Vec<f64>,
    conflicts: Vec<f64>,
    daemon_cpu: Vec<f64>,
    records: Vec<f64>,
}

pub fn run(cx: &Context) -> Result<String> {
    let reps = if cx.quick { 3 } else { 5 };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Cost of putting records in the kernel's order (issue 21)\n\n\
         Each workload untraced, under `tracer run --mmap-lock-order on` (a probe on \
         `mmap_lock:mmap_lock_acquire_returned` numbers every address-space change; records \
         are applied in that order) and under `--mmap-lock-order off` (arrival order; a change \
         found out of order resyncs the model from /proc), {reps} repetitions, the three runs \
         of a repetition next to each other in a rotating order. A ratio is the traced run's \
         elapsed time over the mean of the repetition's two untraced runs (one before, one \
         after); CPU: the same with the workload's CPU time. `on / off` is the median of the \
         per-repetition ratios of the two traced runs: what the ordering itself costs.\n"
    );
    let _ = writeln!(
        out,
        "| workload | untraced | `on` | `off` | on / off (elapsed) | on / off (CPU) | records | \
         reordered (`on`) | out of order, resynced (`off`) | daemon CPU `on` / `off` | lost |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for load in LOADS {
        let bin = cx.workloads.join(load.name);
        let args = if cx.quick { load.quick_args } else { load.args };
        say(format_args!(
            "bench: ordering on {} {}",
            load.name,
            args.join(" ")
        ));
        // Warm-up: page cache, allocator paths.
        measure::untraced(&bin, args)?;
        let mut untraced = Vec::new();
        let mut columns: [Column; 2] = Default::default();
        let mut on_off = Vec::new();
        let mut on_off_cpu = Vec::new();
        for rep in 0..reps {
            let before = measure::untraced(&bin, args)?;
            let mut traced: [Option<Traced>; 2] = [None, None];
            for k in 0..2 {
                let i = (k + rep as usize) % 2;
                traced[i] = Some(run_traced(cx, &bin, args, ORDERS[i])?);
            }
            let after = measure::untraced(&bin, args)?;
            let base = (before.elapsed_ns + after.elapsed_ns) as f64 / 2.0;
            let base_cpu = (before.cpu_ns + after.cpu_ns) as f64 / 2.0;
            untraced.push(base / 1e6);
            for (i, t) in traced.iter().enumerate() {
                let t = t.as_ref().expect("both orders ran");
                let c = &mut columns[i];
                c.ratios.push(t.sample.elapsed_ns as f64 / base);
                if base_cpu > 0.0 {
                    c.cpu_ratios.push(t.sample.cpu_ns as f64 / base_cpu);
                }
                c.lost += t.sample.lost.unwrap_or(0);
                c.reordered.push(t.reordered as f64);
                c.conflicts.push(t.conflicts as f64);
                c.daemon_cpu
                    .push(t.sample.daemon_cpu_s.unwrap_or(f64::NAN) * 1e3);
                c.records.push(t.sample.syscalls.unwrap_or(0) as f64);
            }
            let (on, off) = (traced[0].as_ref().unwrap(), traced[1].as_ref().unwrap());
            on_off.push(on.sample.elapsed_ns as f64 / off.sample.elapsed_ns as f64);
            if off.sample.cpu_ns > 0 {
                on_off_cpu.push(on.sample.cpu_ns as f64 / off.sample.cpu_ns as f64);
            }
            say(format_args!(
                "bench: ordering {} rep {}/{reps}: on {:.3}×, off {:.3}×, on/off {:.3}",
                load.name,
                rep + 1,
                columns[0].ratios.last().unwrap(),
                columns[1].ratios.last().unwrap(),
                on_off.last().unwrap()
            ));
        }
        let med = |v: &[f64]| median(v).map_or("n/a".to_owned(), |m| format!("{m:.0}"));
        let _ = writeln!(
            out,
            "| {} | {:.0} ms | {} | {} | {} | {} | {} | {} | {} | {} / {} ms | {} |",
            load.title,
            median(&untraced).unwrap_or(0.0),
            ratio_cell(&columns[0].ratios),
            ratio_cell(&columns[1].ratios),
            ratio_cell(&on_off),
            ratio_cell(&on_off_cpu),
            med(&columns[0].records),
            med(&columns[0].reordered),
            med(&columns[1].conflicts),
            med(&columns[0].daemon_cpu),
            med(&columns[1].daemon_cpu),
            columns[0].lost + columns[1].lost,
        );
    }
    let _ = writeln!(
        out,
        "\nRecords, reordered, out of order and daemon CPU are medians per run; lost is the sum \
         over all runs. Command: `cargo xtask bench --section ordering{}`.",
        if cx.quick { " --quick" } else { "" }
    );
    Ok(out)
}

/// `tracer run --mmap-lock-order ORDER -- WORKLOAD ARGS`, watched for the daemon's CPU.
fn run_traced(cx: &Context, bin: &Path, args: &[&str], order: &str) -> Result<Traced> {
    let mut cmd = Command::new(&cx.tools.tracer);
    cmd.arg("run")
        .args(&cx.tools.tracer_args)
        .args(["--mmap-lock-order", order, "--"])
        .arg(bin)
        .args(args);
    let described = describe(&cmd);
    let mut proc = Proc::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let stdout = read_all(proc.child.stdout.take());
    let stderr = read_all(proc.child.stderr.take());
    let (status, usage) = proc.finish(true)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("`{described}` failed: {}", stderr.trim());
    }
    let mut sample = measure::from_stdout(&stdout)?;
    measure::tracer_summary(&stderr, &mut sample)?;
    sample.daemon_cpu_s = usage.cpu_s;
    let (reordered, conflicts) = reorders(&stderr).context("the reorder line")?;
    Ok(Traced {
        sample,
        reordered,
        conflicts,
    })
}

/// The summary's `...arrival order N; changes out of order (model resynced from /proc) M`
/// line; absent when both are 0.
fn reorders(stderr: &str) -> Result<(u64, u64)> {
    let Some(line) = stderr
        .lines()
        .find(|l| l.starts_with("tracer: records applied in the kernel's order"))
    else {
        return Ok((0, 0));
    };
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    match numbers[..] {
        [a, b] => Ok((a, b)),
        _ => bail!("unexpected: {line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reorder_line_is_read() {
        let stderr = "tracer: 10 syscall records\ntracer: records applied in the kernel's order \
                      rather than their arrival order 17; changes out of order (model resynced \
                      from /proc) 2\n";
        assert_eq!(reorders(stderr).unwrap(), (17, 2));
        assert_eq!(reorders("tracer: 10 syscall records\n").unwrap(), (0, 0));
    }
}
