//! Issue 15's figures: what `--stacks` costs, `tracer run --stacks` set beside `tracer run` of
//! the same bench run (same workloads, same repetitions, interleaved), with the stack sample
//! rate and the daemon's CPU time either way.

use std::fmt::Write as _;

use super::measure::Sample;
use super::modes::Mode;
use super::report::{Cell, Pair, Row, stats};

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    stats(&values.collect::<Vec<_>>()).map(|(m, _, _)| m)
}

fn ratios(cell: &Cell) -> Vec<f64> {
    cell.pairs.iter().map(Pair::ratio).collect()
}

fn traced<'a>(cell: &'a Cell) -> impl Iterator<Item = &'a Sample> + 'a {
    cell.pairs.iter().map(|p| &p.traced)
}

/// `median (min–max)` of the traced / untraced ratios, or `—`.
fn ratio_text(cell: Option<&Cell>) -> String {
    match cell.map(ratios).as_deref().and_then(stats) {
        Some((median, min, max)) => format!("**{median:.2}×** ({min:.2}–{max:.2})"),
        None => "—".to_owned(),
    }
}

/// Median daemon CPU (user + system of the tracer process: `tracer run` is the workload's
/// parent, and a parent's own times exclude its children's) in ms, and its share of the
/// workload's measured run.
fn daemon_cpu(cell: Option<&Cell>) -> String {
    let Some(cell) = cell else {
        return "—".to_owned();
    };
    let cpu = median(traced(cell).filter_map(|s| s.daemon_cpu_s));
    let share = median(
        traced(cell).filter_map(|s| Some(100.0 * s.daemon_cpu_s? / (s.elapsed_ns as f64 / 1e9))),
    );
    match (cpu, share) {
        (Some(cpu), Some(share)) => format!("{:.0} ms ({share:.1}%)", cpu * 1e3),
        _ => "—".to_owned(),
    }
}

/// The stacks-on table, from the rows of the main measurement (nothing when `RunStacks` was not
/// measured).
pub fn markdown(rows: &[Row], out: &mut String) {
    if !rows.iter().any(|r| r.cell(Mode::RunStacks).is_some()) {
        return;
    }
    let _ = writeln!(
        out,
        "## Call stacks on (issue 15)\n\n\
         `tracer run --stacks` (default stack options: 16 KiB of user stack copied per \
         sample, the stack of every growing `brk`/`mmap`/`mremap` and of one user page fault \
         in 64) beside `tracer run` without stacks, both paired with untraced runs in the same \
         repetitions as the tables above. Samples: syscall plus fault stack samples the daemon \
         took in per run (medians), per second of the workload's measured run. Daemon CPU: the \
         tracer process's user + system time over its whole life (its own, not the \
         workload's), median, and as a share of the workload's run. The daemon's CPU time is \
         read in clock ticks (10 ms): compare the two columns, not small differences.\n"
    );
    let _ = writeln!(
        out,
        "| workload | stacks off | stacks on | on / off | samples | samples/s | without a stack | daemon CPU off | daemon CPU on |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        let (off, on) = (row.cell(Mode::Run), row.cell(Mode::RunStacks));
        let med_ratio = |cell: Option<&Cell>| cell.and_then(|c| median(ratios(c).into_iter()));
        let on_off = match (med_ratio(off), med_ratio(on)) {
            (Some(off), Some(on)) => format!("{:.2}×", on / off),
            _ => "—".to_owned(),
        };
        let samples =
            on.and_then(|c| median(traced(c).filter_map(|s| s.stack_samples.map(|n| n as f64))));
        let rate =
            on.and_then(|c| {
                median(traced(c).filter_map(|s| {
                    Some(s.stack_samples? as f64 / (s.elapsed_ns.max(1) as f64 / 1e9))
                }))
            });
        let unstacked =
            on.and_then(|c| median(traced(c).filter_map(|s| s.unstacked.map(|n| n as f64))));
        let cpu_off_text = daemon_cpu(off);
        let cpu_on_text = daemon_cpu(on);
        let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("—".to_owned(), f);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {on_off} | {} | {} | {} | {cpu_off_text} | {cpu_on_text} |",
            row.workload.name,
            ratio_text(off),
            ratio_text(on),
            opt(samples, |n| format!("{n:.0}")),
            opt(rate, |r| format!("{r:.0}/s")),
            opt(unstacked, |n| format!("{n:.0}")),
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::measure::stack_summary;
    use crate::bench::workloads::TIMED;

    fn sample(elapsed_ms: u64, cpu_s: f64, stderr: Option<&str>) -> Sample {
        let mut s = Sample {
            elapsed_ns: elapsed_ms * 1_000_000,
            daemon_cpu_s: Some(cpu_s),
            ..Sample::default()
        };
        if let Some(stderr) = stderr {
            stack_summary(stderr, &mut s).expect("a call-site summary");
        }
        s
    }

    #[test]
    fn the_stacks_table_sets_stacks_on_beside_off_with_the_sample_rate() {
        let summary = "tracer: 12 syscall records\n\
                       tracer: call sites (1500 syscall samples, 500 fault samples, 3 growing \
                       calls without a stack):\n";
        let untraced = || sample(1000, 0.0, None);
        let row = Row {
            workload: &TIMED[0],
            cells: vec![
                Cell {
                    mode: Mode::Run,
                    pairs: vec![Pair {
                        untraced: untraced(),
                        traced: sample(1200, 0.1, None),
                    }],
                    errors: Vec::new(),
                },
                Cell {
                    mode: Mode::RunStacks,
                    pairs: vec![Pair {
                        untraced: untraced(),
                        traced: sample(1800, 0.3, Some(summary)),
                    }],
                    errors: Vec::new(),
                },
            ],
        };
        let mut out = String::new();
        markdown(&[row], &mut out);
        let line = out
            .lines()
            .find(|l| l.starts_with("| churn |"))
            .expect("a churn row");
        // 1.80 / 1.20; 2000 samples in 1.8 s; 100 and 300 ms of daemon CPU.
        assert!(line.contains("| 1.50× | 2000 | 1111/s | 3 |"), "{line}");
        assert!(
            line.contains("| 100 ms (8.3%) | 300 ms (16.7%) |"),
            "{line}"
        );
        assert!(stack_summary("tracer: 1 syscall records\n", &mut Sample::default()).is_err());
    }
}
