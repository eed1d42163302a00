//! Bad input gets a clear message and a documented exit status, never a panic.

use std::{collections::HashMap, path::Path, process::Command, time::Duration};

use serde_json::Value;

use tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const EXIT_USAGE: i32 = 2;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

fn expect(args: &[&str], status: i32, message: &str) {
    let out = run_tracer(args, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(status),
        "status of {args:?}; stderr: {stderr}"
    );
    assert!(
        stderr.contains(message),
        "stderr of {args:?} lacks {message:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn unused_pid() -> u32 {
    (100_000..4_000_000)
        .rev()
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .unwrap()
}

#[test]
fn attach_to_a_pid_that_does_not_exist() {
    let pid = unused_pid();
    expect(
        &["attach", "--pid", &pid.to_string()],
        EXIT_USAGE,
        &format!("tracer: no such process: {pid}\n"),
    );
}

#[test]
fn attach_to_a_kernel_thread() {
    // kthreadd is pid 2 on every Linux system.
    expect(
        &["attach", "--pid", "2"],
        EXIT_USAGE,
        "tracer: process 2 is a kernel thread: it has no user address space to trace\n",
    );
}

#[test]
fn attach_to_a_process_that_has_exited() {
    // A parent that never reaps its exited child: the child stays a zombie.
    let script = "import os, time\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n\
                  print(pid, flush=True)\ntime.sleep(30)\n";
    let mut shell = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let zombie: u32 = line.trim().parse().unwrap();
    let stat = format!("/proc/{zombie}/stat");
    for _ in 0..500 {
        if std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    expect(
        &["attach", "--pid", &zombie.to_string()],
        EXIT_USAGE,
        &format!("tracer: process {zombie} exited during attach\n"),
    );
    let _ = shell.kill();
    let _ = shell.wait();
}

#[test]
fn run_a_command_that_does_not_exist() {
    expect(
        &["run", "--", "/nonexistent/tool"],
        EXIT_NOT_FOUND,
        "tracer: command not found: /nonexistent/tool\n",
    );
    expect(
        &["run", "--", "no-such-command-for-tracer"],
        EXIT_NOT_FOUND,
        "tracer: command not found: no-such-command-for-tracer\n",
    );
}

#[test]
fn run_a_file_that_cannot_be_executed() {
    if !kernel_available() {
        return; // the exec is attempted only once the probes are loaded
    }
    let dir = scratch("noexec");
    let file = dir.join("data.txt");
    std::fs::write(&file, "not a program").unwrap();
    let path = file.to_str().unwrap();
    expect(
        &["run", "--", path],
        EXIT_CANNOT_EXECUTE,
        &format!("tracer: cannot execute {path}: Permission denied"),
    );
}

#[test]
fn missing_capabilities_are_named() {
    if !kernel_available() {
        return; // dropping capabilities needs them first
    }
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-bpf,-perfmon,-sys_admin",
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--",
        ])
        .arg(tracer_bin())
        .args(["run", "--", "/bin/true"])
        .output()
        .expect("setpriv (util-linux) is installed by `cargo xtask setup`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_TRACING_FAILED), "{stderr}");
    assert!(
        stderr.starts_with("tracer: missing capability CAP_BPF and CAP_PERFMON: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("setcap"),
        "says how to grant them: {stderr}"
    );
}

#[test]
fn a_kernel_without_a_tracepoint_is_named() {
    if !kernel_available() {
        return;
    }
    let fake = fake_tracefs("no-tp", &["syscalls/sys_enter_mmap"], |_, t| t);
    expect(
        &[
            "run",
            "--tracefs",
            fake.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        EXIT_TRACING_FAILED,
        "tracer: the kernel has no tracepoint syscalls:sys_enter_mmap",
    );
    expect(
        &[
            "run",
            "--tracefs",
            fake.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        EXIT_TRACING_FAILED,
        "CONFIG_FTRACE_SYSCALLS",
    );
}

#[test]
fn a_tracepoint_without_an_expected_field_is_named() {
    if !kernel_available() {
        return;
    }
    // A field the probes cannot do without (`group_dead` of sched_process_exit is optional: the
    // tracer falls back on kernels before 6.16, see tests/tests/kernel_features.rs).
    let fake = fake_tracefs(
        "no-field",
        &[],
        without_field("syscalls/sys_enter_mmap", "len"),
    );
    expect(
        &[
            "run",
            "--tracefs",
            fake.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        EXIT_TRACING_FAILED,
        "tracer: tracepoint syscalls:sys_enter_mmap has no field `len",
    );
}

#[test]
fn a_directory_that_is_not_a_tracefs_is_named() {
    if !kernel_available() {
        return;
    }
    let empty = scratch("not-tracefs");
    let path = empty.to_str().unwrap();
    expect(
        &["run", "--tracefs", path, "--", "/bin/true"],
        EXIT_TRACING_FAILED,
        &format!("tracer: {path} is not a tracefs: it has no events/ directory\n"),
    );
}

#[test]
fn usage_errors_exit_with_2() {
    expect(&["attach"], EXIT_USAGE, "--pid");
    expect(&["run"], EXIT_USAGE, "CMD");
    expect(
        &["run", "--ring-buffer-size", "3M", "--", "true"],
        EXIT_USAGE,
        "power of two",
    );
    // An option of the call sites without them is refused before CMD starts.
    expect(
        &["run", "--report-sites", "50", "--", "true"],
        EXIT_USAGE,
        "--report-sites sets how many call sites the report lists: add --stacks",
    );
}

/// `tracer run --stacks --report PATH -- callsites` (tests/workloads/callsites.c, the workload
/// of tests/tests/callsites.rs), with `env` set for the tracer; the report's call sites of the
/// workload by name, with the report's `call_sites` block.
fn callsites_report(label: &str, env: &[(&str, &str)]) -> (HashMap<String, Value>, Value) {
    let dir = scratch(&format!("bad-input-stacks-{label}"));
    let report = dir.join("report.json");
    let bin = workload("callsites");
    let args = [
        "run",
        "--stacks",
        "--report",
        report.to_str().unwrap(),
        "--",
        bin.to_str().unwrap(),
    ];
    let out = run_tracer_with_env(&args, env, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tracer {args:?} {env:?}: {stderr}");
    let text = std::fs::read_to_string(&report).expect("the report");
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    let process = report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["comm"] == "callsites")
        .unwrap_or_else(|| panic!("no callsites process in {report:#}"));
    let sites = process["call_sites"]
        .as_array()
        .expect("call_sites")
        .iter()
        .map(|s| (s["site"].as_str().unwrap_or_default().to_owned(), s.clone()))
        .collect();
    (sites, report["call_sites"].clone())
}

/// The workload's sites carry its known amounts (within the bounds of callsites_outputs.rs):
/// grow_brk 32 MiB through glibc's brk path, grow_mmap 64 MiB in 16 mmaps, grow_direct a
/// 24 MiB mmap whose pages touch_pages faults in one by one (sampled one in 64, weighted).
fn check_callsites(label: &str, env: &[(&str, &str)]) {
    const MIB: f64 = (1u64 << 20) as f64;
    let (sites, info) = callsites_report(label, env);
    assert_eq!(info["enabled"], true, "{label}: {info:#}");
    assert!(
        info["fault_samples"].as_u64() > Some(0),
        "{label}: {info:#}"
    );
    let figure = |name: &str, ty: &str| -> u64 {
        let site = sites
            .get(name)
            .unwrap_or_else(|| panic!("{label}: no site {name} in {:?}", sites.keys()));
        site[ty].as_u64().expect("a number")
    };
    for (name, ty, want) in [
        ("grow_brk", "alloc_space", 32.0 * MIB),
        ("grow_brk", "inuse_space", 32.0 * MIB),
        ("grow_mmap", "alloc_space", 64.0 * MIB),
        ("grow_direct", "inuse_space", 24.0 * MIB),
    ] {
        let got = figure(name, ty) as f64;
        assert!(
            (got - want).abs() <= 0.01 * want,
            "{label}: {name} {ty} {got}, expected {want} within 1 %"
        );
    }
    assert_eq!(figure("grow_mmap", "alloc_objects"), 16, "{label}");
    assert_eq!(figure("grow_mmap", "inuse_objects"), 0, "{label}");
    // One fault per 4 KiB page (the workload asks for no huge pages), the tolerance of
    // callsites_outputs.rs (sampling one in 64 per CPU).
    let pages = 24.0 * MIB / 4096.0;
    let faults = figure("touch_pages", "faults") as f64;
    assert!(
        (faults - pages).abs() <= 0.2 * pages,
        "{label}: touch_pages faults {faults}, expected about {pages}"
    );
}

/// `--stacks` works where the stack programs know the user registers (x86-64 and arm64): the
/// sites of the workload are named with their amounts, on each source of fault samples the
/// architecture has (x86: the tracepoint, and the perf events arm64 uses); elsewhere it is
/// refused up front, plainly, rather than sending stacks unwound from another architecture's
/// registers; so are kernels before 5.15, which lack the helpers the stack programs call.
#[test]
fn stacks_work_on_x86_64_and_aarch64_and_are_refused_plainly_elsewhere() {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        if !kernel_available() {
            return;
        }
        if !kernel_at_least(5, 15) {
            // Without bpf_task_pt_regs (5.15) the stack programs cannot load: said plainly,
            // before anything is loaded, not with a verifier dump.
            expect_refusal(
                &["run", "--stacks", "--", "/bin/true"],
                &[],
                "the kernel lacks the BPF helper",
            );
            return;
        }
        check_callsites("default", &[]);
        if cfg!(target_arch = "x86_64") {
            check_callsites("perf-faults", &[("TRACER_FAULT_SOURCE", "perf")]);
        }
    } else {
        expect(
            &["run", "--stacks", "--", "/bin/true"],
            EXIT_USAGE,
            "call sites are implemented on x86-64 and arm64 only",
        );
    }
}

#[test]
fn a_port_already_in_use_is_named() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let me = std::process::id().to_string();
    expect(
        &["attach", "--pid", &me, "--listen", &addr],
        EXIT_USAGE,
        &format!("tracer: cannot listen on {addr}: Address already in use"),
    );
}
