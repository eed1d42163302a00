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
/// Sampling goes on this long after the last process, past the default grace period.
const TAIL: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug)]
struct Point {
    at: Duration,
    rss_kib: u64,
    series: usize,
    comms: usize,
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
                "bench: soak {:>4.0} s: RSS {} KiB, {} series, {} comm values",
                point.at.as_secs_f64(),
                point.rss_kib,
                point.series,
                point.comms
            ));
            points.push(point);
            next += EVERY;
        }
        if ended.is_none() && spawner.child.try_wait()?.is_some() {
            ended = Some(Instant::now());
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
    Ok(markdown(cx, total, spawn_s, &points, hwm_kib, &summary))
}

fn markdown(
    cx: &Context,
    total: u32,
    spawn_s: f64,
    points: &[Point],
    hwm_kib: u64,
    summary: &Sample,
) -> String {
    let mut out = String::new();
    let at_minute = points.iter().find(|p| p.at >= SETTLED).copied();
    let last = points.last().copied();
    let after: Vec<Point> = points.iter().copied().filter(|p| p.at >= SETTLED).collect();
    let max_rss = after.iter().map(|p| p.rss_kib).max();
    let max_series = after.iter().map(|p| p.series).max();
    let max_comms = after.iter().map(|p| p.comms).max();
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
         after the last process. Everything else running on the machine is traced too.\n",
        EVERY.as_secs(),
        TAIL.as_secs()
    );
    let _ = writeln!(
        out,
        "| | first sample | at 1 min | at the end | most after 1 min | end / 1 min |\n|---|---|---|---|---|---|"
    );
    let first = points.first().copied();
    let cell = |p: Option<Point>, f: &dyn Fn(Point) -> String| p.map_or("n/a".to_owned(), f);
    let growth = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if a > 0 => format!("{:+.1} %", 100.0 * (b as f64 / a as f64 - 1.0)),
        _ => "n/a".to_owned(),
    };
    let _ = writeln!(
        out,
        "| daemon VmRSS | {} | {} | {} | {} | {} |",
        cell(first, &|p| mib(p.rss_kib)),
        cell(at_minute, &|p| mib(p.rss_kib)),
        cell(last, &|p| mib(p.rss_kib)),
        max_rss.map_or("n/a".to_owned(), mib),
        growth(at_minute.map(|p| p.rss_kib), last.map(|p| p.rss_kib))
    );
    let _ = writeln!(
        out,
        "| series in /metrics | {} | {} | {} | {} | {} |",
        cell(first, &|p| p.series.to_string()),
        cell(at_minute, &|p| p.series.to_string()),
        cell(last, &|p| p.series.to_string()),
        max_series.map_or("n/a".to_owned(), |n| n.to_string()),
        growth(
            at_minute.map(|p| p.series as u64),
            last.map(|p| p.series as u64)
        )
    );
    let _ = writeln!(
        out,
        "| `comm` label values | {} | {} | {} | {} | {} |",
        cell(first, &|p| p.comms.to_string()),
        cell(at_minute, &|p| p.comms.to_string()),
        cell(last, &|p| p.comms.to_string()),
        max_comms.map_or("n/a".to_owned(), |n| n.to_string()),
        growth(
            at_minute.map(|p| p.comms as u64),
            last.map(|p| p.comms as u64)
        )
    );
    let _ = writeln!(
        out,
        "\nDaemon peak RSS (VmHWM) over the whole run: {}; records seen {}, lost {}. \
         All samples (s: RSS MiB / series): {}.\n\nCommand: `cargo xtask bench --section soak{}`.",
        mib(hwm_kib),
        summary.syscalls.unwrap_or(0),
        summary.lost.unwrap_or(0),
        points
            .iter()
            .map(|p| format!(
                "{:.0}: {:.1}/{}",
                p.at.as_secs_f64(),
                p.rss_kib as f64 / 1024.0,
                p.series
            ))
            .collect::<Vec<_>>()
            .join(", "),
        if cx.quick { " --quick" } else { "" }
    );
    out
}

fn sample(tpid: u32, api: &str, start: Instant) -> Result<Point> {
    let metrics = http_get(api, "/metrics")?.1;
    let rss_kib = procfs::status_kib(tpid, "VmRSS").context("the tracer is gone")?;
    Ok(Point {
        at: start.elapsed(),
        rss_kib,
        series: series(&metrics),
        comms: comms(&metrics),
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
