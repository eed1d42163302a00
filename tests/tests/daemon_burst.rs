//! Daemon mode on a busy host: `attach --all` through a burst of short-lived processes with
//! many distinct comms. The series stay within the documented budget at every scrape, the
//! counters never go down, and the daemon's memory returns to its resting size once the
//! exited processes are past their grace period.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tests::{Daemon, kernel_available, scratch};

/// Places for the burst's comms in `--max-series-groups`: far fewer than its distinct comms.
/// The host's own processes get theirs on top (`host_comms`), so that a busy host leaves the
/// burst room to fold as on a quiet one.
const GROUPS: usize = 40;
/// Distinct comms in the burst (plus the host's, see `host_comms`).
const COMMS: usize = 300;
/// Processes in the burst.
const BURST: usize = 1000;
/// Series of one comm group at the most (faults 5 regions x 2 kinds, RSS 4 types, mapped 5
/// regions, syscalls and errors 6 each, and 7 single gauges): docs/metrics.md's "about 37".
const SERIES_PER_GROUP: usize = 37;

/// Distinct comms of the user processes running now (not kernel threads: `--all` traces
/// processes only), plus a few for the ones this test starts beside the burst.
fn host_comms() -> usize {
    let mut comms = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        // Kernel threads have an empty command line.
        let user = std::fs::read(path.join("cmdline")).is_ok_and(|c| !c.is_empty());
        if let (true, Ok(comm)) = (user, std::fs::read(path.join("comm"))) {
            comms.insert(comm);
        }
    }
    comms.len() + 4
}

/// The daemon's resident memory (VmRSS) in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// What one scrape says: the distinct `comm` label values, the number of per-comm series,
/// the sum of every per-comm syscall counter, and the folded-groups counter.
struct Scrape {
    comms: BTreeSet<String>,
    series: usize,
    syscalls: u64,
    folded: u64,
}

fn scrape(daemon: &Daemon) -> Scrape {
    let text = daemon.get("/metrics");
    let mut s = Scrape {
        comms: BTreeSet::new(),
        series: 0,
        syscalls: 0,
        folded: 0,
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = || -> u64 {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        if line.starts_with("tracer_series_groups_folded_total ") {
            s.folded = value();
        }
        let Some(start) = line.find("comm=\"") else {
            continue;
        };
        assert!(!line.contains("pid=\""), "grouped by comm: {line}");
        let rest = &line[start + 6..];
        let comm = &rest[..rest.find('"').unwrap()];
        s.comms.insert(comm.to_owned());
        s.series += 1;
        if line.starts_with("tracer_syscalls_total{") {
            s.syscalls += value();
        }
    }
    s
}

#[test]
fn a_burst_of_short_lived_processes_leaves_series_and_memory_where_they_were() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("burst");
    // The host's comms get places on top of the burst's, and the burst as many more comms:
    // the burst always has far more comms than places.
    let host = host_comms();
    let (groups, comms) = (GROUPS + host, COMMS + host);
    // Distinct comms: a process's comm is the name of the file it executed.
    for i in 0..comms {
        std::os::unix::fs::symlink("/bin/true", dir.join(format!("b{i}"))).unwrap();
    }
    // --group-by is left out on purpose: `attach --all` groups by comm by default.
    let groups_arg = groups.to_string();
    let daemon = Daemon::start(&[
        "attach",
        "--all",
        "--listen",
        "127.0.0.1:0",
        "--exited-grace",
        "2",
        "--drift-check-interval",
        "0",
        "--max-series-groups",
        &groups_arg,
    ]);
    let tracer = daemon.child.id();
    // Ten long-lived traced processes, as on a node at rest.
    let mut resting: Vec<Child> = (0..10)
        .map(|_| Command::new("/bin/sleep").arg("600").spawn().unwrap())
        .collect();
    // The resting size: after a few scrapes (their buffers are part of the steady state).
    for _ in 0..5 {
        scrape(&daemon);
        std::thread::sleep(Duration::from_millis(300));
    }
    let before = rss_kib(tracer);

    let budget = SERIES_PER_GROUP * (groups + 1);
    let mut last = scrape(&daemon);
    let check = |s: Scrape, last: &mut Scrape| {
        assert!(
            s.comms.len() <= groups + 1,
            "{} comm label values, budget {} + other: {:?}",
            s.comms.len(),
            groups,
            s.comms
        );
        assert!(
            s.series <= budget,
            "{} per-comm series, budget {budget}",
            s.series
        );
        assert!(
            s.syscalls >= last.syscalls,
            "the per-comm syscall counters went down: {} -> {}",
            last.syscalls,
            s.syscalls
        );
        assert!(s.folded >= last.folded);
        *last = s;
    };
    let mut scrapes = 0;
    let mut max_series = 0;
    for i in 0..BURST {
        if i == BURST / 2 {
            // Past the grace period: the comms of the first half have no live process left,
            // so the new ones of the second half must take their places (a fold each).
            std::thread::sleep(Duration::from_millis(3500));
        }
        let status = Command::new(dir.join(format!("b{}", i % comms)))
            .status()
            .unwrap();
        assert!(status.success());
        if i % 50 == 0 {
            let s = scrape(&daemon);
            max_series = max_series.max(s.series);
            check(s, &mut last);
            scrapes += 1;
        }
    }
    let after_burst = rss_kib(tracer);
    // Past the grace period (2 s) and the housekeeping that forgets exited processes, the
    // daemon must come back to its resting size. `--all` also models whatever else runs on
    // the machine meanwhile (a compiler's process holds thousands of VMAs), so the lowest
    // size seen over 15 s counts: memory never given back stays high the whole time (as it
    // did without `malloc_trim`: +18 % at every sample).
    let grace_over = Instant::now() + Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(18);
    let mut settled = u64::MAX;
    while Instant::now() < deadline {
        let s = scrape(&daemon);
        max_series = max_series.max(s.series);
        check(s, &mut last);
        scrapes += 1;
        if Instant::now() >= grace_over {
            settled = settled.min(rss_kib(tracer));
            if settled as f64 <= before as f64 * 1.05 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last.folded > 0,
        "{comms} comms through {groups} places must fold some"
    );
    assert!(last.comms.contains("(other processes)"), "{:?}", last.comms);
    println!(
        "daemon RSS: {before} KiB at rest, {after_burst} KiB after {BURST} processes of {comms} \
         comms, {settled} KiB at the lowest after the grace period ({:+.1} %); per-comm series at most \
         {max_series} (budget {budget}) over {scrapes} scrapes; {} comms folded",
        (settled as f64 / before as f64 - 1.0) * 100.0,
        last.folded
    );
    assert!(
        settled as f64 <= before as f64 * 1.10,
        "daemon RSS {settled} KiB after the burst, {before} KiB before: more than 10 % above"
    );
    for child in &mut resting {
        let _ = child.kill();
        let _ = child.wait();
    }
}
