//! The daemon runs as deploy/tracer.service runs it: as an unprivileged user (nobody) whose
//! only capabilities are the unit's AmbientCapabilities, with no supplementary groups. Attached
//! to a root process, it serves that process's figures on /metrics: syscalls from the probes,
//! page faults from the perf events, the address space from /proc.
//!
//! The capabilities are read from the unit file, so that a capability dropped from the unit
//! (or a new need of the tracer's) fails here rather than on a user's machine.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

const NOBODY: u32 = 65534;

/// The capability names of the unit's `AmbientCapabilities=` line, e.g. `CAP_BPF`.
fn unit_capabilities() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/tracer.service");
    let unit = std::fs::read_to_string(path).expect("deploy/tracer.service");
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit sets AmbientCapabilities")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(!caps.is_empty(), "AmbientCapabilities is empty");
    caps
}

/// The bit of a capability in /proc's Cap* masks (linux/capability.h).
fn capability_bit(name: &str) -> u32 {
    match name {
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other}'s bit to capability_bit"),
    }
}

/// `attach_target 0 0 0` told to `spin`: maps, touches and unmaps 5-page regions until killed.
struct Spinner(Child);

impl Spinner {
    fn start() -> Spinner {
        let mut child = Command::new(workload("attach_target"))
            .args(["0", "0", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start attach_target");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("attach_target's ready line");
        assert_eq!(line.trim(), "ready");
        Spinner(child)
    }

    fn spin(&mut self) {
        let stdin = self.0.stdin.as_mut().unwrap();
        stdin
            .write_all(b"spin\n")
            .and_then(|()| stdin.flush())
            .expect("tell it to spin");
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of the series `name{labels...}` whose labels include every one of `want`.
fn series(metrics: &str, name: &str, want: &[&str]) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            let labels: Vec<&str> = labels.split(',').collect();
            if !want.iter().all(|w| labels.contains(w)) {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A /proc/PID/status line's value, e.g. `Uid` or `CapEff`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn attach_as_the_unit_runs_it_serves_a_root_processs_figures() {
    if !kernel_available() {
        return; // setpriv can only hand over capabilities the test has
    }
    let caps = unit_capabilities();
    // setpriv's names: `+bpf,+perfmon,...`; everything else dropped from every set, so the
    // tracer has exactly what systemd gives it (CapabilityBoundingSet is the same list).
    let list = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let mut target = Spinner::start();
    let pid = target.0.id();
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            // NoNewPrivileges=yes
            "--no-new-privs",
            &format!("--inh-caps=-all,{list}"),
            &format!("--ambient-caps=-all,{list}"),
            &format!("--bounding-set=-all,{list}"),
            "--",
        ])
        .arg(tracer_bin())
        .args([
            "attach",
            "--pid",
            &pid.to_string(),
            "--listen",
            "127.0.0.1:0",
        ]);
    let daemon = Daemon::spawn(command, true);

    // setpriv execs the tracer: its pid is the tracer's.
    let tracer = daemon.child.id();
    let uids = status_field(tracer, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == NOBODY.to_string()),
        "the tracer runs as nobody: Uid {uids}"
    );
    let want: u64 = caps.iter().map(|c| 1u64 << capability_bit(c)).sum();
    let eff = u64::from_str_radix(&status_field(tracer, "CapEff"), 16).unwrap();
    assert_eq!(
        eff, want,
        "the tracer has exactly the unit's capabilities: {eff:#x}"
    );
    assert_eq!(
        status_field(tracer, "Groups"),
        "",
        "no supplementary groups"
    );

    target.spin();
    let pid_label = format!("pid=\"{pid}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = daemon.get("/metrics");
        let mmaps = series(
            &metrics,
            "tracer_syscalls_total",
            &[&pid_label, "syscall=\"mmap\""],
        );
        let faults = series(&metrics, "tracer_page_faults_total", &[&pid_label]);
        if mmaps > 0.0 && faults > 0.0 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no mmap calls or page faults of {pid} on /metrics after 30 s:\n{metrics}\n\
             tracer's stderr:\n{}",
            daemon.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The address space comes from /proc/PID/maps, which nobody reads only through
    // CAP_SYS_PTRACE: the spinner's text and libc are mapped files.
    let file = series(
        &metrics,
        "tracer_mapped_bytes",
        &[&pid_label, "region=\"file\""],
    );
    assert!(
        file > 0.0,
        "the model of {pid} holds its mapped files:\n{metrics}"
    );
    println!("{metrics}\n{}", daemon.stderr_so_far());
}
