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

/// A C workload compiled by build.rs, or found in `TRACER_WORKLOADS_DIR` when that is set
/// (`cargo xtask vmtest` runs the test binaries in a VM where the build tree does not exist).
pub fn workload(name: &str) -> PathBuf {
    match std::env::var_os("TRACER_WORKLOADS_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => Path::new(env!("WORKLOADS_DIR")).join(name),
    }
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
/// Debian's multiarch library directory of the architecture the tests are built for (the
/// allocators the tests preload live there).
#[cfg(target_arch = "aarch64")]
pub const LIB_DIR: &str = "/usr/lib/aarch64-linux-gnu";
#[cfg(not(target_arch = "aarch64"))]
pub const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// The tracepoints the tracer reads formats of.
pub fn tracepoints() -> Vec<String> {
    let mut events = vec![];
    for s in [
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "execve", "execveat",
    ] {
        events.push(format!("syscalls/sys_enter_{s}"));
        events.push(format!("syscalls/sys_exit_{s}"));
    }
    for s in ["clone", "clone3", "fork", "vfork"] {
        events.push(format!("syscalls/sys_enter_{s}"));
    }
    for e in [
        "raw_syscalls/sys_enter",
        "raw_syscalls/sys_exit",
        "exceptions/page_fault_user",
        "exceptions/page_fault_kernel",
        "sched/sched_process_fork",
        "sched/sched_process_exec",
        "sched/sched_process_exit",
        "kmem/rss_stat",
        "mmap_lock/mmap_lock_acquire_returned",
    ] {
        events.push(e.to_string());
    }
    events
}

/// Whether the tracer counts faults on `exceptions:page_fault_{user,kernel}` here (x86, unless
/// `TRACER_FAULT_SOURCE=perf`), which tell reads, writes and instruction fetches apart; on the
/// `page-faults` perf events (arm64) every fault counts as a read.
pub fn fault_access_split() -> bool {
    let tracefs = real_tracefs().join("events/exceptions");
    std::env::var_os("TRACER_FAULT_SOURCE").is_none_or(|v| v != "perf")
        && ["page_fault_user", "page_fault_kernel"]
            .iter()
            .all(|e| tracefs.join(e).join("format").is_file())
}

/// The mounted tracefs (the tracer mounts it on first use, which `kernel_available` made).
pub fn real_tracefs() -> PathBuf {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
        .expect("a mounted tracefs")
}

/// A copy of the real format files of the tracer's tracepoints (for `--tracefs`), without those
/// in `skip`, with `edit(event, text)` applied to the others: a kernel that lacks something.
pub fn fake_tracefs(test: &str, skip: &[&str], edit: impl Fn(&str, String) -> String) -> PathBuf {
    let real = real_tracefs();
    let fake = scratch(test).join("tracefs");
    for event in tracepoints() {
        let source = real.join("events").join(&event).join("format");
        if skip.contains(&event.as_str()) || !source.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&source).unwrap();
        let dir = fake.join("events").join(&event);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("format"), edit(&event, text)).unwrap();
    }
    fake
}

/// An `edit` for `fake_tracefs`: `event`'s format without its field `field`.
pub fn without_field(event: &'static str, field: &'static str) -> impl Fn(&str, String) -> String {
    move |e, text| {
        if e == event {
            text.lines()
                .filter(|l| !l.contains(&format!(" {field};")))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        }
    }
}

/// Prints a tool's output that holds failures a test provoked on purpose (a check file with
/// wrong limits, a diff over its threshold). CI log viewers jump to the first `FAILED` in a
/// log; printed as `failed (expected)`, those leave the first `FAILED` to a real failure.
/// Assertions read the tool's output as it was.
pub fn show_expected_failures(text: &str) {
    println!("{}", text.replace("FAILED", "failed (expected)"));
}

pub fn run_tracer(args: &[&str], limit: Duration) -> Output {
    run_tracer_with_env(args, &[], limit)
}

/// `run_tracer` with `env` set for the tracer (e.g. `TRACER_FAULT_SOURCE=perf`).
pub fn run_tracer_with_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let child = Command::new(tracer_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tracer");
    wait_with_deadline(child, limit)
}

/// The tracer's exit status when tracing cannot start: a missing capability or kernel
/// feature (docs/exit-status.md).
pub const EXIT_TRACING_FAILED: i32 = 125;

/// Expects the tracer to refuse to start (exit 125) with `message`, in one line, without a
/// panic or a verifier log.
pub fn expect_refusal(args: &[&str], env: &[(&str, &str)], message: &str) {
    let out = run_tracer_with_env(args, env, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{args:?}: {stderr}");
    assert_eq!(out.status.code(), Some(EXIT_TRACING_FAILED), "{stderr}");
    assert!(stderr.contains(message), "lacks {message:?}: {stderr}");
    assert!(stderr.starts_with("tracer: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for bad in ["panicked", "verifier"] {
        assert!(!stderr.contains(bad), "{bad}: {stderr}");
    }
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

/// A `tracer` process started with `--listen 127.0.0.1:0`, with the API address it printed
/// and its stderr lines as they come.
pub struct Daemon {
    pub child: Child,
    pub api: String,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts the tracer with `args` (which must include `--listen 127.0.0.1:0`) and waits
    /// until it serves its API and, for `attach`, until it is attached (the API comes up
    /// first). `stdout` of the tracer (and of a `run` command) is piped.
    ///
    /// A TCP `--listen` gets `--trust-tcp-clients` added: these tests read the address spaces
    /// and reports the API serves only to authorised clients (`start_as_is` does not add it).
    pub fn start(args: &[&str]) -> Daemon {
        let mut args = args.to_vec();
        let tcp_listen = args
            .windows(2)
            .any(|w| w[0] == "--listen" && !w[1].starts_with("unix:"));
        if tcp_listen && !args.contains(&"--trust-tcp-clients") && !args.contains(&"--web-config") {
            args.insert(1, "--trust-tcp-clients");
        }
        Daemon::start_as_is(&args)
    }

    /// `start` without adding anything to `args`.
    pub fn start_as_is(args: &[&str]) -> Daemon {
        let mut command = Command::new(tracer_bin());
        command.args(args);
        Daemon::spawn(command, args.first() == Some(&"attach"))
    }

    /// Starts `command` (the tracer with its arguments; `attaching`: an `attach`) as `start`
    /// describes.
    pub fn spawn(mut command: Command, attaching: bool) -> Daemon {
        use std::io::BufRead;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tracer");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (api_tx, api_rx) = std::sync::mpsc::channel();
        // `attach` binds its port before it loads the probes: wait for "attached" too.
        std::thread::spawn(move || {
            let mut api = None;
            let mut api_tx = Some(api_tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.strip_prefix("tracer: serving the API on ") {
                    api = Some(rest.trim_end_matches('/').to_string());
                }
                let ready = !attaching || line.starts_with("tracer: attached to");
                if ready
                    && let Some(addr) = api.clone()
                    && let Some(tx) = api_tx.take()
                {
                    let _ = tx.send(addr);
                }
                let _ = tx.send(line);
            }
        });
        let api = api_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the API did not come up");
        Daemon {
            child,
            api,
            stderr: rx,
        }
    }

    /// `tracer run [options] --listen 127.0.0.1:0 -- <workload> [args]` on a workload that
    /// prints `pid N` first; returns the daemon and that pid.
    pub fn run_workload(options: &[&str], name: &str, args: &[&str]) -> (Daemon, u32) {
        use std::io::BufRead;
        let bin = workload(name);
        let mut argv = vec!["run", "-q", "--listen", "127.0.0.1:0"];
        argv.extend(options);
        argv.extend(["--", bin.to_str().unwrap()]);
        argv.extend(args);
        let mut daemon = Daemon::start(&argv);
        let stdout = daemon.child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("the workload's first line");
        // Keep reading what it prints later: CMD starts with SIGPIPE at its default, so a
        // closed pipe would kill a workload that prints again (as it would in a shell).
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let pid = line
            .split_whitespace()
            .last()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        (daemon, pid)
    }

    pub fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.api);
        let mut response = ureq::get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        response.body_mut().read_to_string().expect("body")
    }

    pub fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get(path)).expect("JSON")
    }

    pub fn post_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.api);
        // A POST must not look like a CORS simple request: the tracer wants a JSON type.
        let mut response = ureq::post(&url)
            .header("Content-Type", "application/json")
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("JSON")
    }

    /// Waits for the tracer to exit (see `wait_with_deadline`).
    pub fn wait(&mut self, limit: Duration) -> Output {
        let placeholder = Command::new("true").spawn().expect("spawn true");
        wait_with_deadline(std::mem::replace(&mut self.child, placeholder), limit)
    }

    /// Everything the tracer wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// A child killed and reaped when dropped: a test that fails must not leave it behind
/// (stopped, say) to disturb the next run.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line of a maps text, for comparison: (start, end, perms, offset, name). This parser is
/// the test's own, independent of the tracer's.
pub type MapLine = (u64, u64, String, u64, String);

/// Parses and coalesces a `/proc/PID/maps` text: adjacent lines with the same permissions and
/// name (and, for files, contiguous offsets) merge, since the kernel's merging of VMAs depends
/// on fault history. Offsets of anonymous lines are ignored.
pub fn coalesced_maps(text: &str) -> Vec<MapLine> {
    let mut out: Vec<MapLine> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(6, ' ');
        let range = parts.next().unwrap();
        let perms = parts.next().unwrap().to_string();
        let offset = u64::from_str_radix(parts.next().unwrap(), 16).unwrap();
        let _dev = parts.next();
        let _inode = parts.next();
        let name = parts.next().unwrap_or("").trim_start().to_string();
        let (s, e) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(e, 16).unwrap(),
        );
        let is_file = !name.is_empty() && !name.starts_with('[');
        let offset = if is_file { offset } else { 0 };
        if let Some(last) = out.last_mut()
            && last.1 == start
            && last.2 == perms
            && last.4 == name
            && (!is_file || last.3 + (last.1 - last.0) == offset)
        {
            last.1 = end;
            continue;
        }
        out.push((start, end, perms, offset, name));
    }
    out
}

/// Waits until `pid` is stopped (state T) or gone; returns whether it is stopped.
pub fn wait_stopped(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => match stat[stat.rfind(')').unwrap() + 2..].chars().next() {
                Some('T') | Some('t') => return true,
                Some('Z') | Some('X') => return false,
                _ => {}
            },
            Err(_) => return false,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("process {pid} neither stopped nor exited within {limit:?}")
}

pub fn resume(pid: u32) {
    // SAFETY: sending SIGCONT to a process of this test.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
}

/// Compares the tracer's reconstructed maps of `pid` with the kernel's, coalesced; on a
/// difference returns both texts and the differing lines.
pub fn compare_maps(daemon: &Daemon, pid: u32) -> Result<(), String> {
    let model = daemon.get(&format!("/api/v1/processes/{pid}/maps"));
    let kernel = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read /proc maps");
    let (m, k) = (coalesced_maps(&model), coalesced_maps(&kernel));
    if m == k {
        return Ok(());
    }
    let fmt = |l: &MapLine| format!("{:x}-{:x} {} {:x} {}", l.0, l.1, l.2, l.3, l.4);
    let only_model: Vec<String> = m.iter().filter(|l| !k.contains(l)).map(fmt).collect();
    let only_kernel: Vec<String> = k.iter().filter(|l| !m.contains(l)).map(fmt).collect();
    Err(format!(
        "only in the model:\n  {}\nonly in /proc:\n  {}\n--- model:\n{model}--- /proc/{pid}/maps:\n{kernel}",
        only_model.join("\n  "),
        only_kernel.join("\n  ")
    ))
}

/// `VmSize` of /proc/PID/status in bytes.
pub fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    kb * 1024
}

/// What `trace_workload` returns: the tracer's output, the event stream, and the pid of the
/// workload (the process that exec'd it).
pub struct Traced {
    pub output: Output,
    pub events: Vec<Value>,
    pub pid: u64,
}

impl Traced {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// For the `fault_stat` workload, which prints its own `minflt=` and `majflt=` from
    /// /proc/self/stat: asserts that the tracer's fault total is within 1 % of theirs (at least
    /// 20000) and its majors equal, and returns the exit record's `faults`.
    pub fn assert_faults_match_own_stat(&self, label: &str) -> Value {
        let stdout = String::from_utf8_lossy(&self.output.stdout);
        let field = |name: &str| -> u64 {
            stdout
                .split_whitespace()
                .find_map(|t| t.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .parse()
                .unwrap()
        };
        let (minflt, majflt) = (field("minflt"), field("majflt"));
        let faults = exit_event(&self.events, self.pid)["faults"].clone();
        let ours = faults["total"].as_u64().unwrap();
        let kernel = minflt + majflt;
        let diff = ours as i64 - kernel as i64;
        println!(
            "{label}: tracer {ours} (major {}), /proc/self/stat minflt+majflt {kernel} (majflt \
             {majflt}); difference {diff} ({:.3}%); {faults}",
            faults["major"],
            100.0 * diff as f64 / kernel as f64
        );
        assert!(kernel >= 20000);
        assert!(diff.unsigned_abs() * 100 <= kernel, "more than 1% apart");
        assert_eq!(faults["major"].as_u64().unwrap(), majflt, "major faults");
        faults
    }
}

/// Runs `tracer run [options] --events FILE -- <workload> [args]` to completion; it must
/// succeed.
pub fn trace_workload(test: &str, options: &[&str], name: &str, args: &[&str]) -> Traced {
    let events_path = scratch(test).join("events.jsonl");
    let bin = workload(name);
    let mut argv = vec!["run"];
    argv.extend(options);
    argv.extend([
        "--events",
        events_path.to_str().unwrap(),
        "--",
        bin.to_str().unwrap(),
    ]);
    argv.extend(args);
    let output = run_tracer(&argv, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer {argv:?} failed: {stderr}");
    let events = read_events(&events_path);
    let pid = exec_pid(&events, name);
    Traced {
        output,
        events,
        pid,
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_owned()
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = kernel_release();
    let mut parts = r.split(|c: char| !c.is_ascii_digit());
    let v: (u32, u32) = (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    v >= (major, minor)
}

/// A free TCP port on loopback (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server on `127.0.0.1:port` with `dir/prometheus.yml`, its data in
/// `dir/data`.
pub fn start_prometheus(dir: &Path, port: u16) -> Child {
    Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package) is installed by setup")
}
