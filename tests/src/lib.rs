//! Shared helpers of the integration tests: find the tracer and the workloads, run the tracer
//! with a deadline, read its event stream, and decide whether the kernel side can be tested.
//!
//! Every test loads the real probes on the running kernel. When that is impossible (not root,
//! no BPF), a test prints why and returns early, unless `TRACER_REQUIRE_KERNEL=1` (CI), where
//! it fails instead.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The tracer binary: `TRACER_BIN` (set by `cargo xtask test`), else the debug build.
pub fn tracer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TRACER_BIN") {
        return PathBuf::from(bin);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tracer")
}

/// A C workload compiled by build.rs.
pub fn workload(name: &str) -> PathBuf {
    Path::new(env!("WORKLOADS_DIR")).join(name)
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-it-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the probes can be loaded here. Panics under `TRACER_REQUIRE_KERNEL=1` if not.
pub fn kernel_available() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = PROBE.get_or_init(|| {
        let bin = tracer_bin();
        if !bin.exists() {
            return Err(format!(
                "{} does not exist: build it (cargo xtask test)",
                bin.display()
            ));
        }
        let out = Command::new(&bin)
            .args(["run", "-q", "--", "/bin/true"])
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`tracer run -- /bin/true` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", bin.display())),
        }
    });
    match result {
        Ok(()) => true,
        Err(why) if std::env::var_os("TRACER_REQUIRE_KERNEL").is_some_and(|v| v == "1") => {
            panic!("TRACER_REQUIRE_KERNEL=1 but the probes cannot be loaded: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (probes cannot be loaded here; run as root): {why}");
            false
        }
    }
}

/// Runs the tracer to completion, killing it after `limit`.
pub fn run_tracer(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(tracer_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tracer");
    wait_with_deadline(child, limit)
}

/// Waits for `child`, killing it if it outlives `limit` (then panics: a hang is a failure).
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "process did not finish within {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads a JSON-lines event stream.
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read events");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Parses a `"0x..."` string of the event stream.
pub fn hex(value: &Value) -> u64 {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {value}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// Syscall events of `pid`, optionally of one syscall.
pub fn syscalls<'a>(events: &'a [Value], pid: u64, name: Option<&str>) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "syscall" && e["pid"] == pid)
        .filter(|e| name.is_none_or(|n| e["syscall"] == n))
        .collect()
}

/// The pid of the process that exec'd `filename_suffix` in the stream.
pub fn exec_pid(events: &[Value], filename_suffix: &str) -> u64 {
    events
        .iter()
        .find(|e| e["type"] == "exec" && e["filename"].as_str().unwrap().ends_with(filename_suffix))
        .unwrap_or_else(|| panic!("no exec of {filename_suffix} in the stream"))["pid"]
        .as_u64()
        .unwrap()
}

/// The `exit` event of `pid` (with its final fault counters).
pub fn exit_event(events: &[Value], pid: u64) -> &Value {
    events
        .iter()
        .find(|e| e["type"] == "exit" && e["pid"] == pid)
        .unwrap_or_else(|| panic!("no exit event of {pid}"))
}

/// The closing `end` line.
pub fn end_event(events: &[Value]) -> &Value {
    let last = events.last().expect("empty stream");
    assert_eq!(
        last["type"], "end",
        "the stream must close with an end line"
    );
    last
}

/// One row of the human summary: (calls, failed) of `syscall` for `pid`.
pub fn summary_row(stderr: &str, pid: u64, syscall: &str) -> (u64, u64) {
    let header = format!("pid {pid} (");
    let start = stderr
        .find(&header)
        .unwrap_or_else(|| panic!("no summary for {pid}:\n{stderr}"));
    let section = &stderr[start..];
    let end = section[1..].find("\npid ").map_or(section.len(), |i| i + 1);
    for line in section[..end].lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() == 3 && cols[0] == syscall {
            return (cols[1].parse().unwrap(), cols[2].parse().unwrap());
        }
    }
    panic!("no {syscall} row for {pid} in:\n{stderr}")
}
