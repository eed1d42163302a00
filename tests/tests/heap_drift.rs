//! The heap of processes whose layout is not the usual one: started from a sealed memfd
//! (named `memfd:sealed-91` by the kernel), without address randomisation (the heap starts
//! right after the bss, and is empty until the first brk), and a static PIE (its brk heap lies
//! far below the image). After an attach the model names `[heap]` as /proc does, follows the
//! heap as it grows, and drift checks find nothing, twice in a row at every stop.

use std::{
    io::BufRead,
    process::{Command, Stdio},
    time::Duration,
};

use tests::*;

const LIMIT: Duration = Duration::from_secs(60);

fn attach_grow_and_check(cmd: &[&str], label: &str) {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().strip_prefix("pid ").unwrap().parse().unwrap();
    assert!(wait_stopped(pid, LIMIT), "{label}: no first stop");
    let daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut stops = 0;
    let mut heap_sizes = Vec::new();
    loop {
        stops += 1;
        let at = format!("{label}, stop {stops}");
        if let Err(diff) = compare_maps(&daemon, pid) {
            panic!("{at}: the model differs from /proc\n{diff}");
        }
        for check in 1..=2 {
            let answer = daemon.post_json(&format!("/api/v1/processes/{pid}/check"));
            assert_eq!(
                answer["differences"], 0,
                "{at}, drift check {check}: {answer}"
            );
        }
        let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
        assert_eq!(detail["drift"]["resyncs"], 0, "{at}: {detail}");
        heap_sizes.push(detail["heap_bytes"].as_u64().unwrap());
        resume(pid);
        if !wait_stopped(pid, LIMIT) {
            break;
        }
    }
    assert!(child.wait().unwrap().success(), "{label} failed");
    assert!(stops >= 2, "{label}: {stops} stops");
    assert!(
        heap_sizes.windows(2).all(|w| w[1] > w[0]),
        "{label}: the heap grows between stops: {heap_sizes:?}"
    );
    drop(daemon);
}

#[test]
fn program_started_from_a_memfd() {
    if !kernel_available() {
        return;
    }
    attach_grow_and_check(&[workload("memfd_heap").to_str().unwrap()], "from a memfd");
}

#[test]
fn program_started_from_a_memfd_without_randomisation() {
    if !kernel_available() {
        return;
    }
    attach_grow_and_check(
        &[workload("memfd_heap").to_str().unwrap(), "norandom"],
        "from a memfd, heap right after the bss",
    );
}

#[test]
fn static_pie() {
    if !kernel_available() {
        return;
    }
    let bin = workload("memfd_heap_static");
    attach_grow_and_check(&[bin.to_str().unwrap(), "run"], "static PIE");
}

#[test]
fn static_pie_started_from_a_memfd() {
    if !kernel_available() {
        return;
    }
    let bin = workload("memfd_heap_static");
    attach_grow_and_check(&[bin.to_str().unwrap()], "static PIE from a memfd");
}
