//! `attach` to real programs that already hold memory, compared with the kernel at every
//! quiescent point (the program is stopped with SIGSTOP): the rebuilt maps, VmSize, VmRSS and
//! each Rss* type, the heap against the `[heap]` line, and the page faults counted since the
//! attach. The first checkpoint is taken right after the attach, before the program runs
//! again: memory resident before the attach, and a heap whose break never moves, must show
//! from the first scrape on.

use std::{
    collections::HashMap,
    io::BufRead,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const PAGE: u64 = 4096;

/// A `/proc/PID/status` figure in bytes (`kB` lines).
fn status_bytes(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc status:\n{status}"))
        * 1024
}

/// (minflt + majflt, majflt) of `/proc/PID/stat`.
fn stat_faults(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 10 (minflt) and 12 (majflt) of proc(5), counted from `state` (field 3).
    let (minflt, majflt): (u64, u64) = (fields[7].parse().unwrap(), fields[9].parse().unwrap());
    (minflt + majflt, majflt)
}

/// Size of the `[heap]` line of `/proc/PID/maps` (0 without one).
fn heap_line(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter(|l| l.ends_with("[heap]"))
        .map(|l| {
            let (s, e) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            u64::from_str_radix(e, 16).unwrap() - u64::from_str_radix(s, 16).unwrap()
        })
        .sum()
}

/// The samples of `/metrics` for `pid`: `name{labels}` -> value.
fn metrics_of(daemon: &Daemon, pid: u32) -> HashMap<String, u64> {
    let label = format!("pid=\"{pid}\"");
    daemon
        .get("/metrics")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The one sample of `name` with label `having`; None when there is none.
fn metric(samples: &HashMap<String, u64>, name: &str, having: &str) -> Option<u64> {
    let found: Vec<u64> = samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(having))
        .map(|(_, v)| *v)
        .collect();
    assert!(
        found.len() <= 1,
        "one {name} sample with {having}: {samples:?}"
    );
    found.first().copied()
}

/// Faults of `/proc/PID/stat` when the tracer attached (the process was stopped).
struct Baseline {
    faults: u64,
    major: u64,
}

/// Everything one checkpoint compares; returns the mismatches (empty: equal).
fn checkpoint(daemon: &Daemon, pid: u32, base: &Baseline, label: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Err(diff) = compare_maps(daemon, pid) {
        wrong.push(format!("maps differ:\n{diff}"));
    }
    let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
    let samples = metrics_of(daemon, pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // `got` is None when the tracer does not show the figure at all.
    let mut expect = |what: &str, got: Option<u64>, kernel: u64| {
        if got != Some(kernel) {
            let got = got.map_or("none".to_string(), |g| g.to_string());
            wrong.push(format!("{what}: tracer {got}, kernel {kernel}"));
        }
    };
    expect(
        "VSZ (API) against VmSize",
        detail["virtual_memory_bytes"].as_u64(),
        status_bytes(&status, "VmSize:"),
    );
    let mut resident = 0;
    for (kind, key) in [
        ("file", "RssFile:"),
        ("anon", "RssAnon:"),
        ("shmem", "RssShmem:"),
        ("swap", "VmSwap:"),
    ] {
        let kernel = status_bytes(&status, key);
        let api = detail["rss"][kind].as_u64();
        expect(&format!("rss {kind} (API) against {key}"), api, kernel);
        let scraped = metric(&samples, "tracer_rss_bytes", &format!("type=\"{kind}\""));
        expect(
            &format!("tracer_rss_bytes{{type=\"{kind}\"}} against {key}"),
            scraped,
            kernel,
        );
        if kind != "swap" {
            resident += api.unwrap_or(0);
        }
    }
    expect(
        "file+anon+shmem against VmRSS",
        Some(resident),
        status_bytes(&status, "VmRSS:"),
    );
    // The break need not be page-aligned; the [heap] line is.
    let heap = heap_line(pid);
    let page_rounded = |bytes: u64| bytes.div_ceil(PAGE) * PAGE;
    let api_heap = detail["heap_bytes"].as_u64().map(page_rounded);
    expect("heap (API) against [heap]", api_heap, heap);
    let scraped_heap = metric(&samples, "tracer_heap_bytes", "pid=").map(page_rounded);
    expect("tracer_heap_bytes against [heap]", scraped_heap, heap);
    let (faults, major) = stat_faults(pid);
    expect(
        "page faults since the attach",
        detail["page_faults"]["total"].as_u64(),
        faults - base.faults,
    );
    expect(
        "major faults since the attach",
        detail["page_faults"]["major"].as_u64(),
        major - base.major,
    );
    for w in &mut wrong {
        *w = format!("{label}: {w}");
    }
    wrong
}

/// A program that prints `pid N` (or `... N`) first and stops itself at its checkpoints.
fn spawn(cmd: &[&str], env: &[(&str, &str)]) -> (Child, u32) {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd[0]));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = line
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    (child, pid)
}

/// Attaches to the stopped `pid`; returns the daemon and the kernel's fault counts then.
fn attach(pid: u32) -> (Daemon, Baseline) {
    let (faults, major) = stat_faults(pid);
    let daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    (daemon, Baseline { faults, major })
}

/// Runs `cmd` to its first self-stop, attaches, and compares at that stop and every later
/// one until it exits. Returns the mismatches of every checkpoint and how many there were.
fn self_stopping(cmd: &[&str], env: &[(&str, &str)], label: &str) -> (Vec<String>, usize) {
    let (mut child, pid) = spawn(cmd, env);
    assert!(wait_stopped(pid, LIMIT), "{label}: no first stop");
    let (daemon, base) = attach(pid);
    let mut wrong = Vec::new();
    let mut stops = 0;
    loop {
        stops += 1;
        wrong.extend(checkpoint(
            &daemon,
            pid,
            &base,
            &format!("{label}, stop {stops}"),
        ));
        resume(pid);
        if !wait_stopped(pid, LIMIT) {
            break;
        }
    }
    assert!(child.wait().unwrap().success(), "{label} failed");
    drop(daemon);
    (wrong, stops)
}

fn assert_equal_everywhere(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "the tracer differs from the kernel:\n{}",
        wrong.join("\n")
    );
}

fn preload(lib: &str) -> String {
    let path = format!("{LIB_DIR}/{lib}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path}: its Debian package is installed by `cargo xtask setup`"
    );
    path
}

/// The C program (a pool of blocks from 16 B to 1 MiB, replaced at random) under `allocator`.
fn churn(lib: Option<&str>, label: &str) {
    if !kernel_available() {
        return;
    }
    let bin = workload("malloc_churn");
    let preload = lib.map(preload);
    let env: Vec<(&str, &str)> = preload.iter().map(|p| ("LD_PRELOAD", p.as_str())).collect();
    let (wrong, stops) = self_stopping(&[bin.to_str().unwrap(), "3", "120", "30"], &env, label);
    assert!(
        stops >= 4,
        "{label}: a checkpoint every 30 of 120 rounds, {stops} seen"
    );
    assert_equal_everywhere(&wrong);
}

#[test]
fn glibc_program_after_attach() {
    churn(None, "glibc");
}

#[test]
fn jemalloc_program_after_attach() {
    churn(Some("libjemalloc.so.2"), "jemalloc");
}

#[test]
fn tcmalloc_program_after_attach() {
    churn(Some("libtcmalloc_minimal.so.4"), "tcmalloc");
}

#[test]
fn mimalloc_program_after_attach() {
    churn(Some("libmimalloc.so.2"), "mimalloc");
}

#[test]
fn python_after_attach() {
    if !kernel_available() {
        return;
    }
    // Stops right away (attach point: everything resident is from before the attach), then
    // after building a large list (pymalloc arenas and a big array, by mmap) and after
    // freeing it.
    let script = "import os, signal\n\
                  print('pid', os.getpid(), flush=True)\n\
                  os.kill(os.getpid(), signal.SIGSTOP)\n\
                  x = [str(i) for i in range(300_000)]\n\
                  os.kill(os.getpid(), signal.SIGSTOP)\n\
                  del x\n\
                  os.kill(os.getpid(), signal.SIGSTOP)\n";
    let (wrong, stops) = self_stopping(&["/usr/bin/python3", "-c", script], &[], "python3");
    assert_eq!(stops, 3);
    assert_equal_everywhere(&wrong);
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server this test started: killed (and continued first, if stopped) however the test ends,
/// so a failed assertion does not leave it behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        resume(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stop(pid: u32) {
    // SAFETY: stopping a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    assert!(wait_stopped(pid, LIMIT), "{pid} did not stop");
}

#[test]
fn redis_under_load_after_attach() {
    if !kernel_available() {
        return;
    }
    let server = "/usr/bin/redis-server";
    assert!(
        std::path::Path::new(server).exists(),
        "{server}: the redis-server package is installed by `cargo xtask setup`"
    );
    let port = free_port().to_string();
    let dir = scratch("redis");
    let redis = Command::new(server)
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
        .args([
            "--appendonly",
            "no",
            "--io-threads",
            "2",
            "--io-threads-do-reads",
            "yes",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let redis = Server(redis);
    let pid = redis.0.id();
    let benchmark = |requests: &str| {
        let out = Command::new("/usr/bin/redis-benchmark")
            .args([
                "-p", &port, "-q", "-n", requests, "-c", "20", "-P", "8", "-d", "512",
            ])
            .args(["-r", "50000", "-t", "set,get,lpush,lpop"])
            .output()
            .expect("run redis-benchmark");
        assert!(out.status.success(), "{out:?}");
    };
    // Warm it up so it holds data before the attach, then attach while it is stopped.
    let deadline = std::time::Instant::now() + LIMIT;
    while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    benchmark("20000");
    stop(pid);
    let (daemon, base) = attach(pid);
    let mut wrong = checkpoint(&daemon, pid, &base, "redis, at attach");
    for round in 1..=3 {
        resume(pid);
        benchmark("30000");
        stop(pid);
        wrong.extend(checkpoint(
            &daemon,
            pid,
            &base,
            &format!("redis, after load {round}"),
        ));
    }
    drop(redis);
    drop(daemon);
    assert_equal_everywhere(&wrong);
}
