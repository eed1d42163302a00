//! Start-up feature detection: what the running kernel offers is detected, not assumed.
//! Missing optional features degrade with a one-line notice and a metric; missing required ones
//! stop the tracer with a message naming the kernel feature (exit status 125), never a panic or
//! a verifier dump. Kernels that lack something are simulated with `--tracefs DIR`, a copy of
//! the real tracefs formats with parts removed, and with `TRACER_BTF`, the BTF file the tracer
//! reads (both only change what the tracer reads; it still attaches to the real kernel).
//!
//! `cargo xtask vmtest` runs these on every kernel of the matrix, where the real kernel is the
//! one that lacks things (e.g. `group_dead` before 6.16, exact `rss_stat` before 6.2).

use std::{path::Path, time::Duration};

use serde_json::Value;
use tests::*;

const LIMIT: Duration = Duration::from_secs(120);

fn has_group_dead() -> bool {
    std::fs::read_to_string(real_tracefs().join("events/sched/sched_process_exit/format"))
        .unwrap()
        .contains(" group_dead;")
}

/// `tracer_kernel_feature_enabled{feature="..."}` samples of a scrape.
fn feature_gauges(metrics: &str) -> Vec<(String, u8)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("tracer_kernel_feature_enabled{feature=\""))
        .map(|rest| {
            let (name, value) = rest.split_once("\"} ").unwrap();
            (name.to_owned(), value.trim().parse().unwrap())
        })
        .collect()
}

fn gauge(gauges: &[(String, u8)], name: &str) -> u8 {
    gauges
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no feature {name} in {gauges:?}"))
        .1
}

/// Drives `threads_fork_exec stop_self` under `tracer run` through its stops (see the
/// workload) and returns its event stream. Exec stops are off so that every stop seen is the
/// workload's own.
fn threads_fork_exec(test: &str, options: &[&str]) -> Vec<Value> {
    let events = scratch(test).join("events.jsonl");
    let mut args = vec!["--no-exec-stop", "--events", events.to_str().unwrap()];
    args.extend(options);
    let stop_self = workload("stop_self");
    let (mut daemon, pid) =
        Daemon::run_workload(&args, "threads_fork_exec", &[stop_self.to_str().unwrap()]);
    for stop in ["A", "B"] {
        assert!(wait_stopped(pid, LIMIT), "stop {stop}");
        resume(pid);
    }
    let child: u32 = loop {
        let line = daemon.stderr.recv_timeout(LIMIT).expect("the child's line");
        if let Some(n) = line.strip_prefix("child ") {
            break n.trim().parse().unwrap();
        }
    };
    for stop in ["C", "D"] {
        assert!(wait_stopped(child, LIMIT), "stop {stop}");
        resume(child);
    }
    assert!(wait_stopped(pid, LIMIT), "stop E");
    resume(pid);
    let out = daemon.wait(LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_events(&events)
}

/// Exactly one exit record per process, none for its threads, each with final counters.
fn check_one_exit_per_process(events: &[Value]) {
    let exec_pids: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "exec")
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    let threads: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "fork" && e["child"] == "thread")
        .map(|e| e["child_pid"].as_u64().unwrap())
        .collect();
    let exits: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "exit")
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    println!("processes {exec_pids:?}, threads {threads:?}, exit records {exits:?}");
    assert_eq!(threads.len(), 4, "the workload creates 4 threads");
    for pid in &exec_pids {
        assert_eq!(
            exits.iter().filter(|p| *p == pid).count(),
            1,
            "one exit record for {pid}"
        );
    }
    assert!(exits.iter().all(|p| exec_pids.contains(p)), "{exits:?}");
    let end = end_event(events);
    assert_eq!(end["records"]["exit"], exec_pids.len() as u64);
    assert_eq!(end["lost"]["exit"], 0);
}

#[test]
fn the_feature_metric_describes_this_kernel() {
    if !kernel_available() {
        return;
    }
    let stop_self = workload("stop_self");
    let mut daemon = Daemon::start(&[
        "run",
        "-q",
        "--no-exec-stop",
        "--listen",
        "127.0.0.1:0",
        "--",
        stop_self.to_str().unwrap(),
    ]);
    let metrics = daemon.get("/metrics");
    let gauges = feature_gauges(&metrics);
    println!("kernel {}: {gauges:?}", kernel_release());
    let tracefs = real_tracefs();
    let tp = |event: &str| tracefs.join("events").join(event).join("format").exists();
    assert_eq!(
        gauge(&gauges, "exit_group_dead"),
        u8::from(has_group_dead())
    );
    assert_eq!(gauge(&gauges, "rss_stat"), u8::from(tp("kmem/rss_stat")));
    assert_eq!(
        gauge(&gauges, "rss_stat_exact"),
        u8::from(kernel_at_least(6, 2))
    );
    assert_eq!(
        gauge(&gauges, "mremap_checks_first"),
        u8::from(kernel_at_least(6, 17))
    );
    // arm64 has no fork and vfork syscalls: clone and clone3 are all there is.
    let clones: &[&str] = if cfg!(target_arch = "aarch64") {
        &["clone", "clone3"]
    } else {
        &["clone", "clone3", "fork", "vfork"]
    };
    // `run` takes kprobes only when told to, where the kernel has them.
    let forced = std::env::var("TRACER_SYSCALL_PROBES").unwrap_or_default();
    let kprobes = forced == "kprobes" && kprobes_here();
    assert_eq!(gauge(&gauges, "syscall_kprobes"), u8::from(kprobes));
    // The raw syscall probes where the kernel has them, the probe knows the architecture's
    // syscall numbers, and the tests did not ask for the per-syscall tracepoints.
    let raw = tp("raw_syscalls/sys_enter")
        && tp("raw_syscalls/sys_exit")
        && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        && forced != "tracepoints"
        && !kprobes;
    assert_eq!(gauge(&gauges, "raw_syscalls"), u8::from(raw));
    // The raw sys_enter probe (and the kprobes' entry) reads the flags of every clone syscall.
    assert_eq!(
        gauge(&gauges, "clone_tracepoints"),
        u8::from(
            raw || kprobes
                || clones
                    .iter()
                    .all(|s| tp(&format!("syscalls/sys_enter_{s}")))
        )
    );
    assert_eq!(
        gauge(&gauges, "fault_tracepoints"),
        u8::from(fault_access_split())
    );
    assert_eq!(
        gauge(&gauges, "btf"),
        u8::from(Path::new("/sys/kernel/btf/vmlinux").exists())
    );
    // On by default only where the lock tracepoint no longer costs every process a memory
    // cgroup path (6.14 dropped it from the prototype).
    assert_eq!(
        gauge(&gauges, "mmap_lock_order"),
        u8::from(kernel_at_least(6, 14) && tp("mmap_lock/mmap_lock_acquire_returned"))
    );
    // stop_self stopped itself: let it finish.
    let processes = daemon.get_json("/api/v1/processes");
    let pid = processes["processes"][0]["pid"].as_u64().unwrap() as u32;
    wait_stopped(pid, LIMIT);
    resume(pid);
    assert!(daemon.wait(LIMIT).status.success());
}

/// `attach` runs beside the rest of the machine for long: it probes syscalls with kprobes on
/// their kernel functions where the kernel has kprobes (nothing for the syscalls they do not
/// trace), else on the per-syscall tracepoints, unless told otherwise (`run`, above, takes the
/// raw ones for their quick teardown).
#[test]
fn attach_keeps_untraced_syscalls_free() {
    if !kernel_available() {
        return;
    }
    let mut target = KillOnDrop(
        std::process::Command::new(workload("stop_self"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start stop_self"),
    );
    let pid = target.0.id();
    assert!(wait_stopped(pid, LIMIT), "stop_self did not stop");
    let pid_arg = pid.to_string();
    let mut daemon = Daemon::start(&["attach", "--pid", &pid_arg, "--listen", "127.0.0.1:0"]);
    let gauges = feature_gauges(&daemon.get("/metrics"));
    let forced = std::env::var("TRACER_SYSCALL_PROBES").unwrap_or_default();
    let raw_here = tp_exists("raw_syscalls/sys_enter")
        && tp_exists("raw_syscalls/sys_exit")
        && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
    assert_eq!(
        gauge(&gauges, "raw_syscalls"),
        u8::from(forced == "raw" && raw_here),
        "{gauges:?}"
    );
    assert_eq!(
        gauge(&gauges, "syscall_kprobes"),
        u8::from(!matches!(forced.as_str(), "raw" | "tracepoints") && kprobes_here()),
        "{gauges:?}"
    );
    resume(pid);
    assert!(target.0.wait().unwrap().success());
    assert!(daemon.wait(LIMIT).status.success());
}

/// Whether the tracer can probe syscalls with kprobes here: the kernel has them (the `kprobe`
/// perf PMU, `CONFIG_KPROBES`) and the probes know the architecture.
fn kprobes_here() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
}

/// `TRACER_SYSCALL_PROBES=kprobes` (feature `syscall_kprobes`): the same exact records as the
/// tracepoints give, the workload's own counts, from kprobes on the syscalls' kernel functions.
/// On a kernel without kprobes the tracer must fall back to the raw tracepoints and say why;
/// the test then says plainly that the kprobes were not tested here.
#[test]
fn syscalls_from_kprobes_equal_the_workloads_own_counts() {
    if !kernel_available() {
        return;
    }
    let events_path = scratch("kprobes").join("events.jsonl");
    let bin = workload("syscall_counts");
    let child = std::process::Command::new(tracer_bin())
        .args(["run", "-v", "--events", events_path.to_str().unwrap(), "--"])
        .arg(&bin)
        .arg("5")
        .env("TRACER_SYSCALL_PROBES", "kprobes")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tracer");
    let out = wait_with_deadline(child, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned)
    };
    if kprobes_here() {
        let on = line("kernel feature syscall_kprobes is on");
        assert!(on.is_some(), "{stderr}");
        println!("kernel {}: {}", kernel_release(), on.unwrap());
    } else {
        let off = line("kernel feature syscall_kprobes is off");
        assert!(
            off.as_deref().is_some_and(
                |l| l.contains("the kernel has no kprobes") || l.contains("no syscall numbers")
            ),
            "the fallback must say why: {stderr}"
        );
        println!(
            "NOT TESTED HERE: kernel {} has no kprobes (CONFIG_KPROBES unset), so the syscall \
             kprobes were not exercised; only the fallback was, which said: {}",
            kernel_release(),
            off.unwrap()
        );
    }
    let events = read_events(&events_path);
    let pid = exec_pid(&events, "syscall_counts");
    let own: Value = serde_json::from_slice(&out.stdout).expect("own counts");
    for name in ["brk", "mmap", "munmap", "mremap", "mprotect", "madvise"] {
        let calls = own[name]["calls"].as_u64().unwrap();
        let failed = own[name]["failed"].as_u64().unwrap();
        assert!(calls > 0 && failed > 0, "the workload exercises {name}");
        let seen = syscalls(&events, pid, Some(name));
        let seen_failed = seen.iter().filter(|e| e["ok"] == false).count() as u64;
        assert_eq!((seen.len() as u64, seen_failed), (calls, failed), "{name}");
    }
    let end = end_event(&events);
    assert_eq!(end["lost"]["syscall"], 0);
    assert_eq!(end["exits_without_enter"], 0, "no return missed");
    if kprobes_here() {
        // For the record (not a goal checked here): what kprobes cost `tracer run -- true`,
        // start-up plus teardown, beside the raw tracepoints `run` keeps by default.
        for source in ["raw", "kprobes", "raw", "kprobes"] {
            let started = std::time::Instant::now();
            let out = std::process::Command::new(tracer_bin())
                .args(["run", "-q", "--", "true"])
                .env("TRACER_SYSCALL_PROBES", source)
                .output()
                .expect("run tracer");
            assert!(out.status.success());
            println!(
                "kernel {}: TRACER_SYSCALL_PROBES={source} tracer run -q -- true: {:.2} s",
                kernel_release(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn tp_exists(event: &str) -> bool {
    real_tracefs()
        .join("events")
        .join(event)
        .join("format")
        .exists()
}

#[test]
fn every_process_gets_exactly_one_exit_record() {
    if !kernel_available() {
        return;
    }
    // On Linux 6.16+ through `group_dead`; before, through BTF (the next test forces that).
    check_one_exit_per_process(&threads_fork_exec("exits", &[]));
}

#[test]
fn without_group_dead_exits_are_found_through_btf() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs(
        "no-group-dead",
        &[],
        without_field("sched/sched_process_exit", "group_dead"),
    );
    let events = threads_fork_exec("exits-btf", &["--tracefs", fake.to_str().unwrap()]);
    check_one_exit_per_process(&events);
}

#[test]
fn without_group_dead_and_btf_the_tracer_names_both() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs(
        "no-exit-detection",
        &[],
        without_field("sched/sched_process_exit", "group_dead"),
    );
    expect_refusal(
        &[
            "run",
            "--tracefs",
            fake.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        &[("TRACER_BTF", "/nonexistent/vmlinux")],
        "tracer: the kernel lacks a way to tell a process's exit from a thread's: \
         sched:sched_process_exit has no `group_dead` field (Linux 6.16+) and the kernel's BTF \
         is unusable: cannot read /nonexistent/vmlinux",
    );
}

/// `--rss-source auto` reads RSS from /proc where the exit probe still sees the mm (6.16+,
/// the release with `group_dead`), and takes kmem:rss_stat events before: there a short-lived
/// process's peak would otherwise be the last one read.
#[test]
fn resident_memory_comes_from_rss_stat_events_without_group_dead() {
    if !kernel_available() || !tracepoints().iter().any(|t| t == "kmem/rss_stat") {
        return;
    }
    let source = |tracefs: &Path| {
        let out = run_tracer(
            &[
                "-v",
                "run",
                "--tracefs",
                tracefs.to_str().unwrap(),
                "--",
                "/bin/true",
            ],
            LIMIT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        if stderr.contains("resident memory from kmem:rss_stat events") {
            "events"
        } else if stderr.contains("resident memory read from /proc/PID/status") {
            "procfs"
        } else {
            panic!("no resident-memory source named: {stderr}")
        }
    };
    let old_kernel = fake_tracefs(
        "rss-auto-before-6.16",
        &[],
        without_field("sched/sched_process_exit", "group_dead"),
    );
    assert_eq!(source(&old_kernel), "events");
    let expected = if has_group_dead() { "procfs" } else { "events" };
    assert_eq!(source(&real_tracefs()), expected);
}

#[test]
fn a_missing_required_tracepoint_is_named() {
    if !kernel_available() {
        return;
    }
    for (event, message) in [
        (
            "sched/sched_process_fork",
            "tracer: the kernel has no tracepoint sched:sched_process_fork",
        ),
        (
            "syscalls/sys_exit_mremap",
            "tracer: the kernel has no tracepoint syscalls:sys_exit_mremap",
        ),
    ] {
        let fake = fake_tracefs("no-required", &[event], |_, t| t);
        expect_refusal(
            &[
                "run",
                "--tracefs",
                fake.to_str().unwrap(),
                "--",
                "/bin/true",
            ],
            &[],
            message,
        );
    }
}

#[test]
fn missing_optional_features_degrade_with_a_notice_and_a_metric() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs(
        "no-optional",
        &[
            "kmem/rss_stat",
            "syscalls/sys_enter_clone3",
            "mmap_lock/mmap_lock_acquire_returned",
            // Without it the syscalls are probed on the per-syscall tracepoints, which is
            // where a missing clone3 shows.
            "raw_syscalls/sys_exit",
        ],
        |_, t| t,
    );
    let stop_self = workload("stop_self");
    let mut daemon = Daemon::start(&[
        "run",
        "--no-exec-stop",
        "--rss-source",
        "events",
        "--listen",
        "127.0.0.1:0",
        "--tracefs",
        fake.to_str().unwrap(),
        "--",
        stop_self.to_str().unwrap(),
    ]);
    let gauges = feature_gauges(&daemon.get("/metrics"));
    println!("{gauges:?}");
    assert_eq!(gauge(&gauges, "rss_stat"), 0);
    assert_eq!(gauge(&gauges, "raw_syscalls"), 0);
    // Unless the matrix forces kprobes (TRACER_SYSCALL_PROBES=kprobes), whose entry probe reads
    // the clone flags itself.
    let kprobes = gauge(&gauges, "syscall_kprobes") == 1;
    assert_eq!(gauge(&gauges, "clone_tracepoints"), u8::from(kprobes));
    assert_eq!(gauge(&gauges, "mmap_lock_order"), 0);
    let pid = daemon.get_json("/api/v1/processes")["processes"][0]["pid"]
        .as_u64()
        .unwrap() as u32;
    wait_stopped(pid, LIMIT);
    let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
    // Asked for events that are missing, RSS falls back to /proc.
    assert!(
        detail["rss"]["anon"].as_u64().is_some_and(|anon| anon > 0),
        "RSS from /proc: {detail}"
    );
    resume(pid);
    let out = daemon.wait(LIMIT);
    assert!(out.status.success());
    let stderr = daemon.stderr_so_far();
    println!("{stderr}");
    let notice = |what: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(&format!("kernel feature {what} is off")))
            .count()
    };
    assert_eq!(notice("rss_stat"), 1, "one notice: {stderr}");
    assert!(
        stderr.contains("kmem:rss_stat is missing; RSS metrics"),
        "{stderr}"
    );
    assert_eq!(
        notice("clone_tracepoints"),
        usize::from(!kprobes),
        "{stderr}"
    );
    assert_eq!(
        stderr.contains("syscalls:sys_enter_clone3 missing"),
        !kprobes,
        "{stderr}"
    );
    assert_eq!(notice("mmap_lock_order"), 1, "{stderr}");
    assert!(
        stderr.contains("mmap_lock:mmap_lock_acquire_returned is missing"),
        "{stderr}"
    );
}

#[test]
fn an_rss_stat_of_unknown_layout_is_turned_off() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs("rss-layout", &[], |event, text| {
        if event == "kmem/rss_stat" {
            text.replace(
                "long size;\toffset:24;\tsize:8;",
                "long size;\toffset:24;\tsize:4;",
            )
        } else {
            text
        }
    });
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--rss-source",
            "events",
            "--tracefs",
            fake.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "kernel feature rss_stat is off: kmem:rss_stat has a layout the probe \
                         does not know (tracepoint field kmem:rss_stat.size has size 4, \
                         expected 8)"
        ),
        "{stderr}"
    );
}

/// What a reader of the VM logs wants to see first: what this kernel offers.
#[test]
fn print_the_tracepoint_layouts_of_this_kernel() {
    if !kernel_available() {
        return;
    }
    let tracefs = real_tracefs();
    for event in [
        "sched/sched_process_fork",
        "sched/sched_process_exit",
        "kmem/rss_stat",
    ] {
        let text = std::fs::read_to_string(tracefs.join("events").join(event).join("format"))
            .unwrap_or_else(|_| "missing".into());
        let fields: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("field:") && !l.contains("common_"))
            .map(|l| l.trim().trim_start_matches("field:"))
            .collect();
        println!("{} {event}: {fields:?}", kernel_release());
    }
}

/// Where `exceptions:page_fault_{user,kernel}` are missing (every architecture but x86), faults
/// are counted on the `page-faults` perf events: the totals still agree with the process's own
/// `minflt + majflt`, majors exactly, and every fault is a read (the access is not known).
#[test]
fn without_the_x86_fault_tracepoints_faults_come_from_perf_events() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs(
        "no-fault-tracepoints",
        &["exceptions/page_fault_user", "exceptions/page_fault_kernel"],
        |_, t| t,
    );
    let traced = trace_workload(
        "perf-faults",
        &["-v", "--tracefs", fake.to_str().unwrap()],
        "fault_stat",
        &["20000"],
    );
    let stderr = String::from_utf8_lossy(&traced.output.stderr);
    assert!(
        stderr.contains("kernel feature fault_tracepoints is off")
            && stderr.contains("page-faults-min and page-faults-maj"),
        "says where faults come from: {stderr}"
    );
    let faults = traced.assert_faults_match_own_stat("perf-event faults");
    let ours = faults["total"].as_u64().unwrap();
    let reads = faults["user_read"].as_u64().unwrap() + faults["kernel_read"].as_u64().unwrap();
    assert_eq!(
        reads, ours,
        "without an error code every fault is a read: {faults}"
    );
    assert!(faults["user_read"].as_u64().unwrap() >= 20000, "{faults}");
}
