//! Attach modes and cardinality controls of the exporter: --max-processes, --group-by comm,
//! --comm, --all with --exclude-comm.

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use tests::*;

/// Scrapes until `check` accepts the text (the daemon follows processes asynchronously).
fn scrape_until(daemon: &Daemon, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = daemon.get("/metrics");
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A shell that starts `n` sleepers once told to (reading a line on stdin).
fn parent_of_sleepers(n: u32, comm: &str) -> (Child, std::process::ChildStdin) {
    let script = format!(
        "read go; for i in $(seq {n}); do /usr/bin/python3 -c 'import time, sys; time.sleep(30)' & done; \
         read stop; kill $(jobs -p) 2>/dev/null; wait"
    );
    let mut child = Command::new("/bin/bash")
        .args([
            "-c",
            &format!("exec -a {comm} /bin/bash -c \"$0\"",),
            &script,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

#[test]
fn max_processes_refuses_beyond_the_cap_and_counts_it() {
    if !kernel_available() {
        return;
    }
    use std::io::Write;
    let (mut parent, mut stdin) = parent_of_sleepers(4, "capped");
    std::thread::sleep(Duration::from_millis(200));
    let daemon = Daemon::start(&[
        "attach",
        "--pid",
        &parent.id().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--max-processes",
        "3",
    ]);
    writeln!(stdin, "go").unwrap();
    // The parent and two sleepers fit; the other two are refused.
    let text = scrape_until(&daemon, "two refusals", |t| {
        sample(t, "tracer_processes_refused_total") == Some(2.0)
    });
    assert_eq!(
        sample(&text, "tracer_traced_processes"),
        Some(3.0),
        "{text}"
    );
    writeln!(stdin, "stop").unwrap();
    let _ = parent.wait();
}

#[test]
fn group_by_comm_labels_by_command_only() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("groupby");
    let bin = workload("syscall_counts");
    // Five runs of the same program, then the tracer waits a little for the scrape.
    let script = format!(
        "for i in 1 2 3 4 5; do {} 2 > /dev/null; done; sleep 10",
        bin.display()
    );
    let daemon = Daemon::start(&[
        "run",
        "-q",
        "--listen",
        "127.0.0.1:0",
        "--group-by",
        "comm",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let _ = dir;
    // syscall_counts makes 4 brk calls per round plus one: 2 rounds -> 7 per run, 35 in all.
    let text = scrape_until(&daemon, "five runs summed", |t| {
        sample(
            t,
            "tracer_syscalls_total{comm=\"syscall_counts\",syscall=\"brk\"}",
        ) == Some(35.0)
    });
    assert!(
        !text.contains("pid=\""),
        "no pid label with --group-by comm:\n{text}"
    );
    assert!(
        text.contains("tracer_virtual_memory_bytes{comm=\"sh\"}"),
        "{text}"
    );
}

#[test]
fn comm_traces_matching_processes_now_and_later() {
    if !kernel_available() {
        return;
    }
    // stop_self under a name of this test's own (a comm is the name of the file executed):
    // the other tests of this file run in parallel and start stop_self too, which `--comm
    // stop_self` would rightly trace. A symbolic link, not a copy: a copy's write descriptor,
    // inherited by a child another test forks meanwhile, would make its exec fail (ETXTBSY).
    const COMM: &str = "comm_now_later";
    let bin = scratch("comm-now-later").join(COMM);
    std::os::unix::fs::symlink(workload("stop_self"), &bin).unwrap();
    // One runs before the tracer starts, one starts after.
    let before = KillOnDrop(Command::new(&bin).spawn().unwrap());
    assert!(wait_stopped(before.id(), Duration::from_secs(10)));
    let daemon = Daemon::start(&["attach", "--comm", COMM, "--listen", "127.0.0.1:0"]);
    let after = KillOnDrop(Command::new(&bin).spawn().unwrap());
    assert!(wait_stopped(after.id(), Duration::from_secs(10)));
    let processes = daemon.get_json("/api/v1/processes");
    let pids: Vec<u64> = processes["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert!(
        pids.contains(&u64::from(before.id())),
        "the running one: {processes}"
    );
    assert!(
        pids.contains(&u64::from(after.id())),
        "the one exec'd later: {processes}"
    );
    assert_eq!(pids.len(), 2, "nothing else: {processes}");
    // The later one is traced from its exec: its mmap of 5 pages is counted.
    let later = daemon.get_json(&format!("/api/v1/processes/{}", after.id()));
    assert!(
        later["syscalls"]["mmap"]["calls"].as_u64().unwrap() >= 1,
        "{later}"
    );
    for mut child in [before, after] {
        resume(child.id());
        let _ = child.0.wait();
    }
}

#[test]
fn all_traces_everything_but_the_excluded_comms() {
    if !kernel_available() {
        return;
    }
    let daemon = Daemon::start(&[
        "attach",
        "--all",
        "--exclude-comm",
        "stop_self",
        "--exclude-comm",
        "dash",
        "--listen",
        "127.0.0.1:0",
        "--max-processes",
        "65536",
    ]);
    let bin = workload("stop_self");
    let mut excluded = KillOnDrop(Command::new(&bin).spawn().unwrap());
    let mut included = Command::new(workload("touch_pages"))
        .arg("10")
        .spawn()
        .unwrap();
    assert!(wait_stopped(excluded.id(), Duration::from_secs(10)));
    let _ = included.wait();
    let processes = daemon.get_json("/api/v1/processes");
    let has = |pid: u32| {
        processes["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == u64::from(pid))
    };
    assert!(
        has(std::process::id()),
        "this test process itself is traced under --all"
    );
    assert!(!has(daemon.child.id()), "never the tracer itself");
    // The excluded program stopped being traced at its exec (the API names that state as the
    // report does).
    let excluded_state = daemon.get_json(&format!("/api/v1/processes/{}", excluded.id()));
    assert_eq!(
        excluded_state["state"], "untraced",
        "untraced at exec: {excluded_state}"
    );
    assert_eq!(
        excluded_state["syscalls"]["mmap"]["calls"], 0,
        "{excluded_state}"
    );
    resume(excluded.id());
    let _ = excluded.0.wait();
    // A child of an excluded process is traced again once it execs a command not excluded:
    // touch_pages under a name of its own, not to be taken for the one run above.
    let after_dash = scratch("all-after-dash").join("after_dash");
    std::os::unix::fs::symlink(workload("touch_pages"), &after_dash).unwrap();
    let script = format!("{} 3; true", after_dash.display());
    let mut dash = Command::new("/usr/bin/dash")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let dash_pid = u64::from(dash.id());
    assert!(dash.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let processes = daemon.get_json("/api/v1/processes");
        let list = processes["processes"].as_array().unwrap();
        if let Some(traced) = list.iter().find(|p| p["comm"] == "after_dash") {
            // Traced from its exec: not `untraced`, its own mmap calls counted.
            assert_ne!(traced["state"], "untraced", "{traced}");
            assert!(
                traced["syscalls"]["mmap"]["calls"].as_u64() >= Some(1),
                "{traced}"
            );
            // The dash between them (forked by this traced test) stopped being traced at its
            // exec: listed as such, none of its calls counted.
            let dash = list
                .iter()
                .find(|p| p["pid"] == dash_pid)
                .unwrap_or_else(|| panic!("dash {dash_pid} not listed: {processes}"));
            assert_eq!(dash["state"], "untraced", "{dash}");
            assert_eq!(dash["syscalls"]["mmap"]["calls"], 0, "{dash}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "touch_pages under an excluded dash was not traced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
