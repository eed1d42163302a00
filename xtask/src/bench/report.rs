//! The results of a bench run, as Markdown tables: printed, and written to BENCHMARKS.md.

use std::fmt::Write as _;
use std::time::Duration;

use super::daemon::{Flood, Idle};
use super::measure::Sample;
use super::modes::Mode;
use super::workloads::Goal;
use super::workloads::Workload;

/// One traced run and the untraced run it was paired with.
pub struct Pair {
    pub untraced: Sample,
    pub traced: Sample,
}

impl Pair {
    /// The workload's elapsed time traced / untraced: the figure the goals are about.
    pub fn ratio(&self) -> f64 {
        self.traced.elapsed_ns as f64 / self.untraced.elapsed_ns.max(1) as f64
    }

    /// The same for the workload's CPU time, which other load on the machine disturbs less.
    pub fn cpu_ratio(&self) -> Option<f64> {
        (self.traced.cpu_ns > 0 && self.untraced.cpu_ns > 0)
            .then(|| self.traced.cpu_ns as f64 / self.untraced.cpu_ns as f64)
    }
}

/// The runs of one workload in one mode.
pub struct Cell {
    pub mode: Mode,
    pub pairs: Vec<Pair>,
    /// Why runs failed, if any did.
    pub errors: Vec<String>,
}

pub struct Row {
    pub workload: &'static Workload,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn cell(&self, mode: Mode) -> Option<&Cell> {
        self.cells.iter().find(|c| c.mode == mode)
    }

    /// Every untraced run of the row.
    fn untraced(&self) -> Vec<f64> {
        self.cells
            .iter()
            .flat_map(|c| c.pairs.iter().map(|p| p.untraced.elapsed_ns as f64))
            .collect()
    }
}

/// Where the numbers come from.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_mib: u64,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    pub tools: Vec<String>,
    pub command: String,
    /// `--tracer-arg`s, joined.
    pub tracer_args: String,
}

pub struct Results {
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub idle: Option<Idle>,
    pub floods: Vec<Flood>,
    /// Start-up, bystanders and per-program costs (costs.rs).
    pub costs: Option<super::costs::Costs>,
    /// Modes left out because their tool is missing.
    pub missing: Vec<Mode>,
}

/// Median, min and max.
pub fn stats(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some((median, sorted[0], sorted[n - 1]))
}

fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    stats(&values.collect::<Vec<_>>()).map(|(m, _, _)| m)
}

fn ratio_text(cell: Option<&Cell>) -> String {
    let Some(cell) = cell else {
        return "—".to_owned();
    };
    let ratios: Vec<f64> = cell.pairs.iter().map(Pair::ratio).collect();
    match stats(&ratios) {
        Some((median, min, max)) if ratios.len() > 1 => {
            format!("**{median:.2}×** ({min:.2}–{max:.2})")
        }
        Some((median, _, _)) => format!("**{median:.2}×**"),
        None if !cell.errors.is_empty() => "failed".to_owned(),
        None => "—".to_owned(),
    }
}

/// `123.4k`-style counts.
fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn opt_count(n: Option<f64>) -> String {
    n.map_or_else(|| "—".to_owned(), count)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

impl Results {
    /// The whole report, in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.goals(&mut out);
        self.overhead_table(&mut out);
        self.seen_table(&mut out);
        super::stacks::markdown(&self.rows, &mut out);
        self.daemon_tables(&mut out);
        if let Some(costs) = &self.costs {
            costs.markdown(&mut out);
        }
        self.method(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let m = &self.machine;
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `{}` on {}. Rerun it to replace this file.\n",
            m.command, m.date
        );
        let _ = writeln!(
            out,
            "- Machine: {}, {} cores, {} MiB RAM",
            m.cpu, m.cores, m.mem_mib
        );
        let _ = writeln!(out, "- Kernel: {}", m.kernel);
        let _ = writeln!(out, "- tracer: commit {}", m.commit);
        if !m.tracer_args.is_empty() {
            let _ = writeln!(out, "- tracer options added: `{}`", m.tracer_args);
        }
        for tool in &m.tools {
            let _ = writeln!(out, "- Peer: {tool}");
        }
        for mode in &self.missing {
            let _ = writeln!(out, "- Not installed, column left empty: {}", mode.column());
        }
        let _ = writeln!(out);
    }

    fn goals(&self, out: &mut String) {
        let _ = writeln!(out, "## Goals (issue 14)\n");
        let mut lines = Vec::new();
        for row in &self.rows {
            let ratios: Vec<f64> = row
                .cell(Mode::Run)
                .map(|c| c.pairs.iter().map(Pair::ratio).collect())
                .unwrap_or_default();
            let lost: u64 = row
                .cell(Mode::Run)
                .map(|c| c.pairs.iter().filter_map(|p| p.traced.lost).sum())
                .unwrap_or(0);
            let median_of = |mode: Mode| {
                row.cell(mode).and_then(|c| {
                    stats(&c.pairs.iter().map(Pair::ratio).collect::<Vec<_>>()).map(|s| s.0)
                })
            };
            let name = row.workload.name;
            let text = match (stats(&ratios), row.workload.goal) {
                (None, _) => format!("- {name}: no measurement"),
                (Some((median, _, _)), Goal::AtMost(limit)) => {
                    verdict(&format!("{name} under `tracer run`"), median, limit, "×")
                }
                (Some((median, _, _)), Goal::PeersOfTheSameRun) => {
                    let against_bpftrace = match median_of(Mode::BpftraceCount) {
                        Some(peer) => verdict(
                            &format!(
                                "{name} under `tracer run` against bpftrace counting the same \
                                 events ({peer:.2}×)"
                            ),
                            median,
                            // As shown in the table: two decimals.
                            (peer * 100.0).round() / 100.0,
                            "×",
                        ),
                        None => format!("- {name}: bpftrace not measured"),
                    };
                    let against_floor = match median_of(Mode::PerfStat) {
                        Some(floor) => verdict(
                            &format!(
                                "{name} under `tracer run` ({median:.2}×) over the `perf stat` \
                                 floor ({floor:.2}×)"
                            ),
                            median / floor,
                            super::workloads::FLOOR_SLACK,
                            "×",
                        ),
                        None => format!("- {name}: perf stat not measured"),
                    };
                    format!("{against_bpftrace}\n{against_floor}")
                }
            };
            lines.push(format!("{text}; records lost in all runs: {lost}"));
        }
        let peers_missed = lines.iter().any(|l| missed_against_peers(l));
        if let Some(idle) = &self.idle {
            lines.push(verdict(
                &format!("daemon CPU tracing {} idle-ish processes", idle.processes),
                idle.cpu_percent,
                5.0,
                "% of a core",
            ));
            lines.push(verdict(
                &format!("daemon RSS tracing {} idle-ish processes", idle.processes),
                idle.hwm_kib as f64 / 1024.0,
                30.0,
                " MiB (VmHWM)",
            ));
            lines.push(verdict(
                &format!("start-up to attached ({} processes)", idle.processes),
                idle.startup.as_secs_f64() * 1e3,
                1000.0,
                " ms",
            ));
        }
        if let Some(flood) = self.floods.iter().find(|f| f.target_rate == 400_000) {
            let lost = flood.sample.lost.unwrap_or(0);
            let met = lost == 0 && flood.produced_rate >= 0.98 * 400_000.0;
            lines.push(format!(
                "- {} keeps up with 400k records/s: produced {} records/s, lost {lost}{}",
                if met { "met:" } else { "MISSED:" },
                count(flood.produced_rate),
                if flood.produced_rate < 0.98 * 400_000.0 {
                    " (the traced program could not produce 400k/s)"
                } else {
                    ""
                }
            ));
        }
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        if peers_missed {
            let per_op = self.costs.as_ref().and_then(|c| c.probe_ns_per_op());
            let _ = writeln!(out, "{}\n", peers_why(per_op.as_deref()));
        }
    }

    fn overhead_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Overhead: the workload's own elapsed time, traced / untraced\n\n\
             Median of paired runs (each traced run next to an untraced one), min–max in \
             parentheses. The spread of the untraced runs alone shows how noisy the machine \
             was: a ratio is only as precise as that.\n"
        );
        let mut head = "| workload | untraced | events/s |".to_owned();
        let mut rule = "|---|---|---|".to_owned();
        for mode in Mode::ALL {
            let _ = write!(head, " {} |", mode.column());
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{head} goal |\n{rule}---|");
        for row in &self.rows {
            let (untraced, low, high) = stats(&row.untraced()).unwrap_or((0.0, 0.0, 0.0));
            let _ = write!(
                out,
                "| {} | {:.0} ms ({:.0}–{:.0}) | {} |",
                row.workload.title,
                untraced / 1e6,
                low / 1e6,
                high / 1e6,
                events_rate(row, untraced)
            );
            for mode in Mode::ALL {
                let text = if mode == Mode::Strace && !row.workload.strace_sees_it {
                    "n/a (cannot see faults)".to_owned()
                } else {
                    ratio_text(row.cell(mode))
                };
                let _ = write!(out, " {text} |");
            }
            let goal = match row.workload.goal {
                Goal::PeersOfTheSameRun => format!(
                    "≤ bpftrace count, ≤ {:.2}× perf stat",
                    super::workloads::FLOOR_SLACK
                ),
                Goal::AtMost(limit) => format!("≤ {limit:.2}×"),
            };
            let _ = writeln!(out, " {goal} |");
        }
        let _ = writeln!(out);
    }

    fn seen_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## What each tool saw, per run (medians)\n\n\
             CPU ratio: the workload's own CPU time traced / untraced (median); probes run in \
             its context, so their cost is in it, and other load on the machine disturbs it \
             less than the elapsed time. Syscalls: records (tracer) or events (peers) of the \
             six syscalls. Faults: page faults counted. Lost: what the tool says it dropped. \
             Daemon CPU: the tracer process's user + system time over its whole life \
             (start-up and teardown included), and as a share of the workload's run. Peak \
             RSS: the tracer's VmHWM (it includes the ring buffer, mapped twice).\n"
        );
        let _ = writeln!(
            out,
            "| workload | tool | runs | CPU ratio | syscalls | faults | lost | daemon CPU | daemon peak RSS | start-up |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for row in &self.rows {
            for cell in &row.cells {
                let samples: Vec<&Sample> = cell.pairs.iter().map(|p| &p.traced).collect();
                let med = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
                    median_of(samples.iter().filter_map(|s| f(s)))
                };
                let lost = if samples.iter().all(|s| s.lost.is_none()) {
                    "—".to_owned()
                } else {
                    let total: u64 = samples.iter().filter_map(|s| s.lost).sum();
                    format!("{total} in all")
                };
                let cpu = match (
                    med(&|s| s.daemon_cpu_s),
                    med(&|s| {
                        s.daemon_cpu_s
                            .map(|c| 100.0 * c / (s.elapsed_ns as f64 / 1e9))
                    }),
                ) {
                    (Some(cpu), Some(share)) => format!("{:.0} ms ({share:.1}%)", cpu * 1e3),
                    _ => "—".to_owned(),
                };
                let rss = med(&|s| s.daemon_hwm_kib.map(|k| k as f64))
                    .map_or("—".to_owned(), |k| mib(k as u64));
                let startup = med(&|s| s.startup.map(|d| d.as_secs_f64()))
                    .map_or("—".to_owned(), |s| millis(Duration::from_secs_f64(s)));
                let cpu_ratio = median_of(cell.pairs.iter().filter_map(Pair::cpu_ratio))
                    .map_or("—".to_owned(), |r| format!("{r:.2}×"));
                let errors = if cell.errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({} failed)", cell.errors.len())
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {}{errors} | {cpu_ratio} | {} | {} | {lost} | {cpu} | {rss} | {startup} |",
                    row.workload.name,
                    cell.mode.column(),
                    cell.pairs.len(),
                    opt_count(med(&|s| s.syscalls.map(|n| n as f64))),
                    opt_count(med(&|s| s.faults.map(|n| n as f64))),
                );
            }
        }
        let _ = writeln!(out);
        let errors: Vec<String> = self
            .rows
            .iter()
            .flat_map(|row| {
                row.cells.iter().flat_map(move |cell| {
                    cell.errors.iter().map(move |e| {
                        format!("- {} / {}: {e}", row.workload.name, cell.mode.column())
                    })
                })
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "Failed runs:\n");
            for e in errors {
                let _ = writeln!(out, "{}", e.replace('\n', " "));
            }
            let _ = writeln!(out);
        }
    }

    fn daemon_tables(&self, out: &mut String) {
        let _ = writeln!(out, "## The daemon\n");
        if let Some(idle) = &self.idle {
            let s = &idle.sample;
            let _ = writeln!(
                out,
                "`tracer attach` on {} idle-ish processes (each: every 100 ms an mmap'd \
                 malloc, two pages written, free; small blocks), /metrics scraped {} times, \
                 measured over {:.1} s after start-up:\n\n\
                 | start-up to attached | CPU | RSS at end | peak RSS | records seen | faults | lost |\n\
                 |---|---|---|---|---|---|---|\n\
                 | {} | {:.2}% of a core | {} | {} | {} | {} | {} |\n",
                idle.processes,
                idle.scrapes,
                idle.window.as_secs_f64(),
                millis(idle.startup),
                idle.cpu_percent,
                mib(idle.rss_kib),
                mib(idle.hwm_kib),
                opt_count(s.syscalls.map(|n| n as f64)),
                opt_count(s.faults.map(|n| n as f64)),
                s.lost.map_or("—".to_owned(), |n| n.to_string()),
            );
        }
        if !self.floods.is_empty() {
            let _ = writeln!(
                out,
                "Record throughput: `tracer run` (default options{}) on a program making \
                 failing munmap calls, one record each, at a set rate:\n\n\
                 | asked | produced | records seen | lost | daemon CPU (share of one core) | daemon peak RSS |\n\
                 |---|---|---|---|---|---|",
                if self.machine.tracer_args.is_empty() {
                    String::new()
                } else {
                    format!(" plus `{}`", self.machine.tracer_args)
                }
            );
            for f in &self.floods {
                let s = &f.sample;
                let secs = s.elapsed_ns as f64 / 1e9;
                let _ = writeln!(
                    out,
                    "| {} | {}/s ({} in {secs:.1} s) | {} | {} | {} | {} |",
                    if f.target_rate == 0 {
                        "full speed".to_owned()
                    } else {
                        format!("{}/s", count(f.target_rate as f64))
                    },
                    count(f.produced_rate),
                    count(f.produced as f64),
                    opt_count(s.syscalls.map(|n| n as f64)),
                    s.lost.map_or("—".to_owned(), |n| n.to_string()),
                    s.daemon_cpu_s.map_or("—".to_owned(), |c| format!(
                        "{:.0} ms ({:.0}%)",
                        c * 1e3,
                        100.0 * c / secs
                    )),
                    s.daemon_hwm_kib.map_or("—".to_owned(), mib),
                );
            }
            let _ = writeln!(out);
        }
    }

    fn method(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Method\n\n\
             - The workloads (bench/workloads/*.c) time their own work with CLOCK_MONOTONIC \
             and print it; a ratio is that time traced divided by the same workload's time \
             in the untraced run paired with it (run just before or just after it, \
             alternating), so start-up and teardown of the tools do not count and slow \
             drifts of a shared machine cancel out.\n\
             - Modes rotate within each repetition. `tracer run` traces from the exec; \
             `tracer attach` attaches to the workload stopped right before its measured work \
             (BENCH_STOP=1), then resumes it.\n\
             - The tracer runs with its defaults (full per-syscall records, per-region fault \
             counting, RSS) plus any `--tracer-arg`. Peers: `perf stat -e` the same \
             tracepoints with `:uk` (counting only: the floor any tracepoint-based tool \
             pays; its counts are not shown, since perf 6.1 on Linux 6.18 was seen to \
             undercount tracepoint events), bpftrace counting in a map, bpftrace printing a \
             line per event, `perf trace -F all` of the six syscalls, `strace -f -e \
             trace=<the six>`; each filtered to the workload, writing to a file on tmpfs.\n\
             - Daemon: 100 copies of bench/workloads/idle.c under one `tracer attach`, its CPU \
             time over the window from /proc/PID/stat, RSS from /proc/PID/status; \
             throughput: bench/workloads/flood.c at a set rate under `tracer run`.\n\
             - This is a measurement on a shared machine, not a timed test: compare the \
             columns of one run with each other."
        );
    }
}

/// `met:`/`MISSED:` line for a measured value against an upper limit.
/// Whether a goal entry (one or more lines) holds a missed goal against a peer of the run.
fn missed_against_peers(entry: &str) -> bool {
    entry
        .lines()
        .any(|l| l.starts_with("- MISSED") && (l.contains("bpftrace") || l.contains("floor")))
}

/// Why the tracer can cost more than its peers on a workload: what it does that they do not,
/// with the probes' measured cost per churn op when the per-program table was made.
fn peers_why(per_op: Option<&[(String, f64)]>) -> String {
    let mut text = "Why a workload can miss its peers: bpftrace and `perf stat` only count the \
         events, while the tracer writes a record of every traced syscall (arguments, result, \
         thread, the kernel's order under `mmap_lock`) to a ring buffer and attributes every \
         fault to its region, which its exact model, per-region fault counts and zero loss \
         need. The probes' own cost is what remains (kept to one map lookup per traced exit and \
         one per-thread stash per entry)"
        .to_owned();
    match per_op {
        Some(programs) if !programs.is_empty() => {
            let total: f64 = programs.iter().map(|(_, ns)| ns).sum();
            let parts: Vec<String> = programs
                .iter()
                .map(|(name, ns)| format!("`{name}` {ns:.0}"))
                .collect();
            let _ = write!(
                text,
                ": per churn op the programs ran {total:.0} ns ({}; table below).",
                parts.join(", ")
            );
        }
        _ => text.push('.'),
    }
    text
}

pub fn verdict(what: &str, value: f64, limit: f64, unit: &str) -> String {
    if value <= limit {
        format!("- met: {what}: {value:.2}{unit} (goal ≤ {limit}{unit})")
    } else {
        // Two decimals, or three where two would show the value at the limit, over by 0.00.
        let digits = if value - limit < 0.005 { 3 } else { 2 };
        format!(
            "- MISSED: {what}: {value:.digits$}{unit} (goal ≤ {limit}{unit}, over by {:.digits$}{unit})",
            value - limit
        )
    }
}

/// Syscall records and faults per second of untraced run, from what `tracer run` saw.
fn events_rate(row: &Row, untraced_ns: f64) -> String {
    let Some(cell) = row.cell(Mode::Run) else {
        return "—".to_owned();
    };
    let secs = untraced_ns / 1e9;
    if secs <= 0.0 {
        return "—".to_owned();
    }
    let syscalls = median_of(
        cell.pairs
            .iter()
            .filter_map(|p| p.traced.syscalls.map(|n| n as f64)),
    );
    let faults = median_of(
        cell.pairs
            .iter()
            .filter_map(|p| p.traced.faults.map(|n| n as f64)),
    );
    match (syscalls, faults) {
        (Some(s), Some(f)) => format!("{} syscalls, {} faults", count(s / secs), count(f / secs)),
        _ => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peers_paragraph_sums_the_probes_per_op() {
        let programs = vec![
            ("raw_sys_enter".to_owned(), 200.0),
            ("raw_sys_exit".to_owned(), 300.0),
        ];
        let text = peers_why(Some(&programs));
        assert!(text.contains("ran 500 ns"), "{text}");
        assert!(text.contains("`raw_sys_exit` 300"), "{text}");
        assert!(peers_why(None).ends_with("exit and one per-thread stash per entry)."));
    }

    /// A workload's two peer goals are one entry of two lines: a miss on the second counts.
    #[test]
    fn a_miss_on_the_second_line_of_an_entry_counts() {
        let met = verdict("churn against bpftrace", 1.25, 1.25, "×");
        let missed = verdict("churn over the `perf stat` floor", 1.06, 1.05, "×");
        assert!(missed_against_peers(&format!(
            "{met}\n{missed}; records lost: 0"
        )));
        assert!(!missed_against_peers(&format!("{met}\n{met}")));
        assert!(!missed_against_peers(&verdict(
            "daemon RSS",
            31.0,
            30.0,
            " MiB"
        )));
    }

    #[test]
    fn a_miss_by_less_than_a_hundredth_shows_three_decimals() {
        let line = verdict("churn", 1.0517, 1.05, "×");
        assert!(
            line.contains("1.052× (goal ≤ 1.05×, over by 0.002×)"),
            "{line}"
        );
        let line = verdict("churn", 1.26, 1.25, "×");
        assert!(
            line.contains("1.26× (goal ≤ 1.25×, over by 0.01×)"),
            "{line}"
        );
    }
}
