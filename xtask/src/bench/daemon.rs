//! What the daemon itself costs: CPU and memory while it traces 100 idle-ish processes, how
//! many records per second it keeps up with, and how long it takes to attach.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::measure::{self, Attached, Proc, Sample};
use super::modes::{Mode, Tools};
use super::procfs;
use crate::util::say;

/// The daemon traced `processes` idle-ish processes for `window`.
#[derive(Debug)]
pub struct Idle {
    pub processes: usize,
    pub window: Duration,
    /// From starting `tracer attach` with every pid to its "attached" line.
    pub startup: Duration,
    /// Share of one core over the window (user + system).
    pub cpu_percent: f64,
    /// At the end of the window.
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Records and faults seen, records lost, from the summary after SIGINT.
    pub sample: Sample,
    pub scrapes: u32,
}

/// Traces `count` copies of the idle workload with `tracer attach` for `window`, scraping
/// /metrics every `scrape_every` as Prometheus would.
pub fn idle(
    tools: &Tools,
    workloads: &Path,
    count: usize,
    window: Duration,
    scrape_every: Duration,
) -> Result<Idle> {
    let lifetime = (window.as_secs() + 60).to_string();
    let mut procs = Vec::with_capacity(count);
    for _ in 0..count {
        procs.push(Proc::spawn(
            Command::new(workloads.join("idle"))
                .args(["100", &lifetime])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )?);
    }
    let pids: Vec<u32> = procs.iter().map(Proc::id).collect();
    // Let them reach their steady state (loader, first allocations).
    thread::sleep(Duration::from_millis(300));
    let mut tracer = Attached::start(tools, &pids, &["--listen", "127.0.0.1:0"])?;
    let tpid = tracer.tracer.id();
    let api = tracer
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracer: serving the API on http://"))
        .map(|rest| rest.trim_end_matches('/').to_owned())
        .context("tracer attach did not say where it serves the API")?;
    // Start-up work (seeding 100 processes from /proc) is over; measure the steady state.
    thread::sleep(Duration::from_millis(500));
    let before = procfs::stat(tpid).context("the tracer is gone")?.cpu_ticks;
    let start = Instant::now();
    let mut scrapes = 0;
    let mut next_scrape = start;
    while start.elapsed() < window {
        if Instant::now() >= next_scrape {
            let body = http_get(&api, "/metrics")?;
            if !body.contains("tracer_events_total") {
                bail!("/metrics has no tracer_events_total: {body:.200}");
            }
            scrapes += 1;
            next_scrape += scrape_every;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let after = procfs::stat(tpid).context("the tracer is gone")?.cpu_ticks;
    let elapsed = start.elapsed();
    let rss_kib = procfs::status_kib(tpid, "VmRSS").unwrap_or(0);
    let hwm_kib = procfs::status_kib(tpid, "VmHWM").unwrap_or(0);
    procfs::signal(tpid, "INT")?;
    let (status, _) = tracer.finish()?;
    if !status.success() {
        bail!("tracer attach failed: {}", tracer.stderr);
    }
    let mut sample = Sample::default();
    measure::tracer_summary(&tracer.stderr, &mut sample)?;
    drop(procs);
    Ok(Idle {
        processes: count,
        window: elapsed,
        startup: tracer.startup,
        cpu_percent: 100.0 * (after - before) as f64
            / procfs::clock_ticks()
            / elapsed.as_secs_f64(),
        rss_kib,
        hwm_kib,
        sample,
        scrapes,
    })
}

/// A plain HTTP/1.0 GET on the tracer's API (xtask has no HTTP client).
fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to the API at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.") || !response.contains(" 200 ") {
        bail!(
            "GET {path}: {}",
            response.lines().next().unwrap_or("no answer")
        );
    }
    Ok(response)
}

/// The flood workload run under `tracer run` at one rate.
#[derive(Debug)]
pub struct Flood {
    /// Asked for (0: as fast as it can).
    pub target_rate: u64,
    /// Records the workload produced per second of its run.
    pub produced_rate: f64,
    /// Calls the workload made (each one record).
    pub produced: u64,
    pub sample: Sample,
}

/// Runs the flood workload at `rate` records per second for `seconds` under `tracer run` with
/// the default options.
pub fn flood(
    tools: &Tools,
    workloads: &Path,
    scratch: &Path,
    rate: u64,
    seconds: u64,
) -> Result<Flood> {
    let rate_arg = rate.to_string();
    let seconds_arg = seconds.to_string();
    let sample = measure::traced(
        Mode::Run,
        tools,
        &workloads.join("flood"),
        &[&rate_arg, &seconds_arg, "fail"],
        scratch,
    )?;
    let produced = sample.ops;
    say(format_args!(
        "bench: flood at {}: {} calls in {:.2} s, {} records seen, {} lost",
        if rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{rate}/s")
        },
        produced,
        sample.elapsed_ns as f64 / 1e9,
        sample.syscalls.unwrap_or(0),
        sample.lost.unwrap_or(0)
    ));
    Ok(Flood {
        target_rate: rate,
        produced_rate: produced as f64 / (sample.elapsed_ns as f64 / 1e9),
        produced,
        sample,
    })
}
