//! Issue 13: a soak of the long-lived daemon. `tracer attach --all --group-by comm` while
//! soakspawn starts 10,000 short-lived processes of distinct comms (prctl names, forks,
//! execs through renamed symlinks) over a few minutes; the daemon's VmRSS and the number of
//! series in /metrics are sampled every few seconds and must stay flat after the first
//! minute.

use std::fmt::Write as _;
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::measure::{self, Attached, Proc, Sample, read_all};
use super::procfs;
use super::sections::{Context, api_address, http_get};
use crate::util::say;

const EVERY: Duration = Duration::from_secs(5);
/// From this on the figures must be flat.
const SETTLED: Duration = Duration::from_secs(60);
/// Sampling goes on this long after the last process: past the default `--exited-grace`
/// (60 s), when the daemon has forgotten every exited process.
const TAIL: Duration = Duration::from_secs(70);

/// A row of the table: its name, the figure of a sample (if it has one) and how to show it.
type Row<'a> = (
    &'a str,
    &'a dyn Fn(&Point) -> Option<u64>,
    &'a dyn Fn(u64) -> String,
);

#[derive(Clone, Debug)]
struct Point {
    at: Duration,
    rss_kib: u64,
    /// None: the scrape failed.
    series: Option<usize>,
    comms: Option<usize>,
    /// How long GET /metrics took (or took to fail).
    scrape: Duration,
    /// The daemon's CPU time so far (user + system).
    cpu_s: f64,
    /// Why the scrape failed.
    failed: Option<String>,
}

pub fn run(cx: &Context) -> Result<String> {
    let (total, seconds) = if cx.quick {
        (
            cx.args.soak_processes.min(3_000),
            cx.args.soak_seconds.min(70),
        )
    } else {
        (cx.args.soak_processes, cx.args.soak_seconds)
    };
    say(format_args!(
        "bench: soak: {total} short-lived processes over {seconds} s under attach --all"
    ));
    let links = cx.scratch.join("soak-links");
    fs::create_dir_all(&links)?;
    let mut tracer = Attached::start(
        cx.tools,
        &[],
        &["--all", "--group-by", "comm", "--listen", "127.0.0.1:0"],
    )?;
    let tpid = tracer.tracer.id();
    let api = api_address(&tracer.stderr).context("tracer attach did not say where it serves")?;
    let start = Instant::now();
    let mut spawner = Proc::spawn(
        Command::new(cx.workloads.join("soakspawn"))
            .arg(total.to_string())
            .arg(seconds.to_string())
            .arg(&links)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let stdout = read_all(spawner.child.stdout.take());
    let mut points = Vec::new();
    let mut ended: Option<Instant> = None;
    let mut next = start;
    loop {
        if Instant::now() >= next {
            let point = sample(tpid, &api, start)?;
            say(format_args!(
                "bench: soak {:>4.0} s: RSS {} KiB, {:?} series, {:?} comm values, scrape {} ms, \
                 daemon CPU {:.1} s{}",
                point.at.as_secs_f64(),
                point.rss_kib,
                point.series,
                point.comms,
                point.scrape.as_millis(),
                point.cpu_s,
                point
                    .failed
                    .as_deref()
                    .map_or(String::new(), |e| format!(", FAILED: {e}"))
            ));
            points.push(point);
            // A slow scrape must not be followed by a burst of catch-up samples.
            next = (next + EVERY).max(Instant::now());
        }
        if ended.is_none() && spawner.child.try_wait()?.is_some() {
            ended = Some(Instant::now());
            say(format_args!("bench: soak: the last process has exited"));
        }
        if ended.is_some_and(|at| at.elapsed() >= TAIL) {
            break;
        }
        if start.elapsed() > Duration::from_secs(seconds * 3 + 120) {
            bail!("soakspawn still runs after {:?}", start.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = spawner.finish(false)?;
    if !status.success() {
        bail!("soakspawn failed: {}", stdout.join().unwrap_or_default());
    }
    let spawned = stdout.join().unwrap_or_default();
    let spawn_s = spawned
        .split_whitespace()
        .find_map(|w| w.strip_prefix("elapsed_ns="))
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9);
    let hwm_kib = procfs::status_kib(tpid, "VmHWM").unwrap_or(0);
    procfs::signal(tpid, "INT")?;
    let (status, _) = tracer.finish()?;
    if !status.success() {
        bail!("tracer attach failed: {}", tracer.stderr);
    }
    let mut summary = Sample::default();
    measure::tracer_summary(&tracer.stderr, &mut summary)?;
    let _ = fs::remove_dir_all(&links);
    let load_end = ended.map_or(Duration::MAX, |at| at - start);
    Ok(markdown(
        cx, total, spawn_s, &points, load_end, hwm_kib, &summary,
    ))
}

fn markdown(
    cx: &Context,
    total: u32,
    spawn_s: f64,
    points: &[Point],
    load_end: Duration,
    hwm_kib: u64,
    summary: &Sample,
) -> String {
    let mut out = String::new();
    let at_minute = points.iter().find(|p| p.at >= SETTLED);
    let at_load_end = points.iter().rfind(|p| p.at <= load_end);
    let last = points.last();
    let after: Vec<&Point> = points
        .iter()
        .filter(|p| p.at >= SETTLED && p.at <= load_end)
        .collect();
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let _ = writeln!(
        out,
        "## Soak: `attach --all --group-by comm` through {total} short-lived processes (issue 13)\n\n\
         `tracer attach --all --group-by comm` (other options at their defaults) while \
         bench/workloads/soakspawn.c starts {total} processes one after another over {spawn_s:.0} s, \
         each of a new comm: half rename themselves with prctl (a quarter of those fork a child \
         that renames itself too), half exec the program through a symlink of a new name; each \
         allocates, faults and frees a little. Every {} s: the daemon's VmRSS, the series in \
         /metrics (sample lines) and the distinct `comm` label values; sampling goes on {} s \
         after the last process. An exited process is kept whole for `--exited-grace` (60 s by \
         default), so the first minute fills that window; from then on the figures must stay \
         flat while processes keep coming, and fall back once they stop. Everything else \
         running on the machine is traced too.\n",
        EVERY.as_secs(),
        TAIL.as_secs()
    );
    let _ = writeln!(
        out,
        "| | first sample | at 1 min | at the last process | most from 1 min to the last process \
         | last process / 1 min | {:.0} s after the last process |\n|---|---|---|---|---|---|---|",
        TAIL.as_secs_f64()
    );
    let first = points.first();
    // Share of a core between a sample and the one before it.
    let cpu_share = |p: &Point| -> Option<u64> {
        let i = points.iter().position(|q| q.at == p.at)?;
        let prev = points.get(i.checked_sub(1)?)?;
        let dt = (p.at - prev.at).as_secs_f64();
        (dt > 0.0).then(|| (100.0 * (p.cpu_s - prev.cpu_s) / dt).round() as u64)
    };
    let rows: [Row; 5] = [
        ("daemon VmRSS", &|p| Some(p.rss_kib), &mib),
        (
            "series in /metrics",
            &|p| p.series.map(|n| n as u64),
            &|n| n.to_string(),
        ),
        (
            "`comm` label values",
            &|p| p.comms.map(|n| n as u64),
            &|n| n.to_string(),
        ),
        (
            "GET /metrics took",
            &|p| Some(p.scrape.as_millis() as u64),
            &|n| format!("{n} ms"),
        ),
        ("daemon CPU since the sample before", &cpu_share, &|n| {
            format!("{n} % of a core")
        }),
    ];
    for (name, value, show) in rows {
        let cell = |p: Option<&Point>| p.and_then(value).map_or("n/a".to_owned(), show);
        let growth = match (at_minute.and_then(value), at_load_end.and_then(value)) {
            (Some(a), Some(b)) if a > 0 => {
                format!("{:+.1} %", 100.0 * (b as f64 / a as f64 - 1.0))
            }
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {growth} | {} |",
            cell(first),
            cell(at_minute),
            cell(at_load_end),
            after
                .iter()
                .filter_map(|p| value(p))
                .max()
                .map_or("n/a".to_owned(), show),
            cell(last),
        );
    }
    let _ = writeln!(
        out,
        "\nDaemon peak RSS (VmHWM) over the whole run: {}; records seen {}, lost {}. \
         Scrapes that failed: {}.\n\nAll samples (s: RSS MiB / series): {}.\n\nCommand: `cargo xtask bench --section soak{}`.",
        mib(hwm_kib),
        summary.syscalls.unwrap_or(0),
        summary.lost.unwrap_or(0),
        {
            let failed: Vec<String> = points
                .iter()
                .filter_map(|p| {
                    let why = p.failed.as_deref()?;
                    Some(format!(
                        "at {:.0} s after {:.1} s ({})",
                        p.at.as_secs_f64(),
                        p.scrape.as_secs_f64(),
                        why.lines().next().unwrap_or("").trim()
                    ))
                })
                .collect();
            if failed.is_empty() {
                "none".to_owned()
            } else {
                format!("{}: {}", failed.len(), failed.join("; "))
            }
        },
        points
            .iter()
            .map(|p| format!(
                "{:.0}: {:.1}/{}",
                p.at.as_secs_f64(),
                p.rss_kib as f64 / 1024.0,
                p.series.map_or("failed".to_owned(), |n| n.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", "),
        if cx.quick { " --quick" } else { "" }
    );
    out
}

/// One sample; a failed scrape (the daemon did not answer in time) is a sample too.
fn sample(tpid: u32, api: &str, start: Instant) -> Result<Point> {
    let asked = Instant::now();
    let scraped = http_get(api, "/metrics");
    let scrape = asked.elapsed();
    let rss_kib = procfs::status_kib(tpid, "VmRSS").context("the tracer is gone")?;
    let cpu_s = procfs::stat(tpid).map_or(f64::NAN, |s| s.cpu_ticks as f64 / procfs::clock_ticks());
    let (metrics, failed) = match scraped {
        Ok((_, body)) => (Some(body), None),
        Err(err) => (None, Some(format!("{err:#}"))),
    };
    Ok(Point {
        at: start.elapsed(),
        rss_kib,
        series: metrics.as_deref().map(series),
        comms: metrics.as_deref().map(comms),
        scrape,
        cpu_s,
        failed,
    })
}

/// Sample lines of a Prometheus text exposition.
fn series(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Distinct values of the `comm` label.
fn comms(metrics: &str) -> usize {
    let mut values: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let at = l.find("comm=\"")? + 6;
            // Label values escape `"` as `\"`: the value ends at the first unescaped quote.
            let rest = &l[at..];
            let mut end = 0;
            let bytes = rest.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            rest.get(..end)
        })
        .collect();
    values.sort_unstable();
    values.dedup();
    values.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_comms_are_counted() {
        let text = "# HELP a x\n# TYPE a counter\na{comm=\"sh\"} 1\nb{comm=\"sh\"} 2\n\
                    a{comm=\"q\\\"x\"} 3\nc 4\n";
        assert_eq!(series(text), 4);
        assert_eq!(comms(text), 2);
    }
}
