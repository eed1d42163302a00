//! The reconstructed address space of real programs at quiescent points (they stop themselves
//! with SIGSTOP): equal to /proc/PID/maps after coalescing, heap range equal to the `[heap]`
//! line, virtual size equal to VmSize, and no drift.

use std::{io::BufRead, time::Duration};

use serde_json::Value;
use tests::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Everything a checkpoint asserts about `pid`.
fn checkpoint(daemon: &Daemon, pid: u32, label: &str) {
    if let Err(diff) = compare_maps(daemon, pid) {
        panic!("{label}: the model of {pid} differs from /proc\n{diff}");
    }
    let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
    assert_eq!(
        detail["virtual_memory_bytes"].as_u64().unwrap(),
        vm_size(pid),
        "{label}: VSZ of {pid} against VmSize"
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    if let Some(heap) = maps.lines().find(|l| l.ends_with("[heap]")) {
        let (start, end) = heap
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        assert_eq!(
            hex(&detail["heap"]["start_brk"]),
            start,
            "{label}: heap start of {pid}"
        );
        // After an attach the exact break is unknown until the next brk call (the [heap] line
        // itself is compared with the maps above).
        if !detail["heap"]["brk"].is_null() {
            let brk = hex(&detail["heap"]["brk"]);
            assert_eq!(
                brk.div_ceil(4096) * 4096,
                end,
                "{label}: page-aligned break of {pid}"
            );
        }
    }
    let check = daemon.post_json(&format!("/api/v1/processes/{pid}/check"));
    assert_eq!(
        check["differences"], 0,
        "{label}: drift check of {pid}: {check}"
    );
    assert_eq!(
        detail["drift"]["resyncs"], 0,
        "{label}: {pid} was resynced: {detail}"
    );
}

/// Reads "pid N" (or "<word> N") from the workload's first stdout line.
fn first_pid(daemon: &mut Daemon) -> u32 {
    let stdout = daemon.child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    reader.read_line(&mut line).unwrap();
    // Drain the rest: a closed pipe would kill a workload that prints again (SIGPIPE).
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    line.split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"))
}

/// `tracer run` on `cmd`, checking the model at every stop until the command exits.
fn run_with_checkpoints(cmd: &[&str], label: &str) -> usize {
    let mut args = vec!["run", "-q", "--listen", "127.0.0.1:0", "--"];
    args.extend(cmd);
    let mut daemon = Daemon::start(&args);
    let pid = first_pid(&mut daemon);
    let mut stops = 0;
    while wait_stopped(pid, LIMIT) {
        stops += 1;
        checkpoint(&daemon, pid, &format!("{label}, stop {stops}"));
        resume(pid);
    }
    stops
}

#[test]
fn python_building_and_freeing_a_large_list() {
    if !kernel_available() {
        return;
    }
    let script = "import os, signal\n\
                  print('pid', os.getpid(), flush=True)\n\
                  x = [str(i) for i in range(1_000_000)]\n\
                  os.kill(os.getpid(), signal.SIGSTOP)\n\
                  del x\n\
                  os.kill(os.getpid(), signal.SIGSTOP)\n";
    let stops = run_with_checkpoints(&["/usr/bin/python3", "-c", script], "python3");
    assert_eq!(stops, 2);
}

#[test]
fn glibc_malloc_churn() {
    if !kernel_available() {
        return;
    }
    let bin = workload("malloc_churn");
    let stops = run_with_checkpoints(&[bin.to_str().unwrap(), "1", "200", "25"], "glibc churn");
    assert_eq!(stops, 9);
}

#[test]
fn jemalloc_malloc_churn() {
    if !kernel_available() {
        return;
    }
    let jemalloc = format!("{LIB_DIR}/libjemalloc.so.2");
    assert!(
        std::path::Path::new(&jemalloc).exists(),
        "libjemalloc2 is installed by xtask setup"
    );
    let preload = format!("LD_PRELOAD={jemalloc}");
    let bin = workload("malloc_churn");
    let stops = run_with_checkpoints(
        &[
            "/usr/bin/env",
            &preload,
            bin.to_str().unwrap(),
            "2",
            "200",
            "25",
        ],
        "jemalloc churn",
    );
    assert_eq!(stops, 9);
}

#[test]
fn attach_mid_life_to_threads_then_follow_fork_and_exec() {
    if !kernel_available() {
        return;
    }
    let mut workload_process = std::process::Command::new(workload("threads_fork_exec"))
        .arg(workload("stop_self"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(workload_process.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().strip_prefix("pid ").unwrap().parse().unwrap();
    let mut child_lines = std::io::BufReader::new(workload_process.stderr.take().unwrap()).lines();
    assert!(wait_stopped(pid, LIMIT), "A");
    let mut daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    checkpoint(
        &daemon,
        pid,
        "A: attached to a stopped process with 3 threads",
    );
    resume(pid);
    assert!(wait_stopped(pid, LIMIT), "B");
    checkpoint(
        &daemon,
        pid,
        "B: after mmap, mprotect, a new thread and malloc",
    );
    resume(pid);
    let child: u32 = child_lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("child ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait_stopped(child, LIMIT), "C");
    checkpoint(&daemon, child, "C: forked child after munmap and mmap");
    resume(child);
    assert!(wait_stopped(child, LIMIT), "D");
    checkpoint(&daemon, child, "D: the child after exec");
    let detail = daemon.get_json(&format!("/api/v1/processes/{child}"));
    assert_eq!(detail["parent"], u64::from(pid));
    assert!(
        detail["exe"].as_str().unwrap().ends_with("stop_self"),
        "{detail}"
    );
    resume(child);
    assert!(wait_stopped(pid, LIMIT), "E");
    checkpoint(&daemon, pid, "E: the parent after its child exited");
    let processes: Value = daemon.get_json("/api/v1/processes");
    assert_eq!(processes["daemon"]["lost"]["syscall"], 0);
    resume(pid);
    let status = workload_process.wait().unwrap();
    assert!(status.success());
    let out = daemon.wait(LIMIT);
    assert!(
        out.status.success(),
        "attach ends once every traced process exited"
    );
}

#[test]
fn lost_records_are_counted_and_the_drift_healed() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("lossy");
    let (mut daemon, pid) = Daemon::run_workload(
        &["--ring-buffer-size", "4K"],
        "vma_fuzz",
        &["5", "2000", "1000", dir.to_str().unwrap()],
    );
    let tracer = daemon.child.id() as i32;
    assert!(wait_stopped(pid, LIMIT));
    // A 4 KiB ring may already overflow during the loader's burst of records; what matters is
    // that every loss is counted and healed.
    // Healing is a resync (the drift check after the loss) or a reseed (a record the model
    // cannot apply, e.g. a failed MREMAP_FIXED before Linux 6.17, made it read /proc first).
    let drift_now = |daemon: &Daemon| {
        let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
        let processes = daemon.get_json("/api/v1/processes");
        let lost = processes["daemon"]["lost"]["syscall"].as_u64().unwrap();
        let drift = &detail["drift"];
        let healed = drift["resyncs"].as_u64().unwrap() + drift["reseeds"].as_u64().unwrap();
        (lost, healed, detail)
    };
    let (lost_before, resyncs_before, _) = drift_now(&daemon);
    // Stall the reader while the workload runs 1000 operations into a 4 KiB ring buffer.
    // SAFETY: stopping and continuing the tracer this test started.
    unsafe { libc::kill(tracer, libc::SIGSTOP) };
    resume(pid);
    assert!(wait_stopped(pid, LIMIT));
    unsafe { libc::kill(tracer, libc::SIGCONT) };
    // The daemon sees the loss, checks every process against /proc, counts and heals.
    let deadline = std::time::Instant::now() + LIMIT;
    let (lost, resyncs, detail) = loop {
        let now = drift_now(&daemon);
        if now.1 > resyncs_before || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "lost {lost} syscall records ({lost_before} before the stall); drift {}",
        detail["drift"]
    );
    assert!(
        lost > lost_before,
        "a stalled reader and a 4 KiB ring buffer lose records"
    );
    // At least one healing after the stall (a loss during the loader's burst may be healed
    // only now too, so not necessarily exactly one).
    assert!(resyncs > resyncs_before, "{detail}");
    if detail["drift"]["resyncs"].as_u64().unwrap() > 0 {
        assert!(
            detail["drift"]["differences"].as_u64().unwrap() > 0,
            "{detail}"
        );
    }
    compare_maps(&daemon, pid).expect("healed: equal to /proc again");
    resume(pid);
    while wait_stopped(pid, LIMIT) {
        resume(pid);
    }
    let out = daemon.wait(LIMIT);
    let stderr = daemon.stderr_so_far() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}
