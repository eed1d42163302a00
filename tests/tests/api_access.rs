//! Who may see what through the API, tried as a local attacker would: the user `nobody`
//! (65534) asks the tracer, with the real probes attached to a root process, for what the
//! kernel refuses it in /proc; a web page's requests (foreign Host, a POST without
//! authorization) change nothing; half-sent requests do not starve the API.
//!
//! The client is the `http_request` workload, run as 65534 through `Command::uid` (no curl or
//! setpriv needed).

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

const NOBODY: u32 = 65534;
const LIMIT: Duration = Duration::from_secs(60);

/// A process that sleeps, as root or as `uid`.
struct Sleeper(Child);

impl Sleeper {
    fn start(uid: Option<u32>) -> Sleeper {
        let mut command = Command::new("sleep");
        command.arg("600").stdin(Stdio::null());
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        Sleeper(command.spawn().expect("start sleep"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP response: status and whole text (head and body).
struct Response {
    status: u16,
    text: String,
}

/// One request through the `http_request` workload, as `uid` (None: as root).
fn request(uid: Option<u32>, addr: &str, method: &str, path: &str, headers: &[&str]) -> Response {
    let mut command = Command::new(workload("http_request"));
    command.args([addr, method, path]).args(headers);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    answer(command, &format!("{method} {path} as {uid:?}"))
}

/// `request` as `uid`, from inside a new user namespace where it is root with every
/// capability (`unshare -Ur`, open to any user here): capabilities there are worth nothing here.
fn request_in_user_namespace(uid: u32, addr: &str, path: &str) -> Response {
    let mut command = Command::new("unshare");
    command
        .arg("-Ur")
        .arg(workload("http_request"))
        .args([addr, "GET", path])
        .uid(uid)
        .gid(uid);
    answer(command, &format!("GET {path} as {uid} in a user namespace"))
}

/// Runs an `http_request` command and reads the response it printed.
fn answer(mut command: Command, what: &str) -> Response {
    let out = command.output().expect("run http_request");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    println!("{what}: {status}");
    Response { status, text }
}

/// The body of a response.
fn body(response: &Response) -> &str {
    response.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Stops the tracer with SIGINT (it then writes its report) and returns the report.
fn stop_and_report(daemon: &mut Daemon, report: &Path) -> Value {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGINT) };
    let out = daemon.wait(LIMIT);
    assert!(
        out.status.success(),
        "tracer: {}\n{}",
        out.status,
        daemon.stderr_so_far()
    );
    serde_json::from_str(&std::fs::read_to_string(report).expect("the report")).unwrap()
}

/// The phase names the report holds for `pid`.
fn phases(report: &Value, pid: u32) -> Vec<String> {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pid"] == pid)
        .flat_map(|p| p["phases"].as_array().cloned().unwrap_or_default())
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn over_tcp_nobody_sees_only_what_proc_shows_everyone() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("api-tcp");
    let report = dir.join("report.json");
    let root = Sleeper::start(None);
    let pid = root.pid();
    // The premise: the kernel refuses nobody this process's layout.
    let cat = Command::new("cat")
        .arg(format!("/proc/{pid}/maps"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(
        !cat.status.success(),
        "nobody can read /proc/{pid}/maps here"
    );

    let pid_text = pid.to_string();
    let mut daemon = Daemon::start_as_is(&[
        "attach",
        "--pid",
        &pid_text,
        "--listen",
        "127.0.0.1:0",
        "--report",
        report.to_str().unwrap(),
    ]);
    let addr = daemon.api.trim_start_matches("http://").to_string();
    let nobody = Some(NOBODY);

    for path in [
        format!("/api/v1/processes/{pid}/maps"),
        format!("/api/v1/processes/{pid}"),
        "/api/v1/report".to_string(),
    ] {
        let r = request(nobody, &addr, "GET", &path, &[]);
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert!(
            body(&r).contains("unix:"),
            "the refusal says how to get access: {}",
            r.text
        );
        assert!(!body(&r).contains("/usr/"), "{path} leaked: {}", r.text);
    }
    // What /proc/PID/stat shows everyone stays public, without the executable's path.
    let list = request(nobody, &addr, "GET", "/api/v1/processes", &[]);
    assert_eq!(list.status, 200, "{}", list.text);
    let list: Value = serde_json::from_str(body(&list)).unwrap();
    let entry = list["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .expect("the traced process is listed");
    assert_eq!(entry["comm"], "sleep");
    assert!(entry.get("exe").is_none(), "exe is not public: {entry}");
    let metrics = request(nobody, &addr, "GET", "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(body(&metrics).contains("tracer_"));

    // DNS rebinding: a page of attacker.example that resolves to 127.0.0.1.
    let rebound = request(
        nobody,
        &addr,
        "GET",
        "/metrics",
        &["Host: attacker.example"],
    );
    assert_eq!(rebound.status, 421, "{}", rebound.text);
    assert!(!body(&rebound).contains("tracer_"), "{}", rebound.text);

    // POSTs without authorization, as a web page (no headers) or a script would send them.
    for headers in [
        &[][..],
        &["Content-Type: application/json"][..],
        &["Authorization: Bearer guess"][..],
    ] {
        let r = request(nobody, &addr, "POST", "/api/v1/phases?name=forged", headers);
        assert!(
            r.status == 403 || r.status == 401,
            "{headers:?}: {}",
            r.text
        );
    }
    let r = request(
        None,
        &addr,
        "POST",
        &format!("/api/v1/phases?name=forged&pid={pid}"),
        &[],
    );
    assert_eq!(
        r.status, 403,
        "a simple-request POST, even from root: {}",
        r.text
    );

    let report = stop_and_report(&mut daemon, &report);
    assert_eq!(
        phases(&report, pid),
        Vec::<String>::new(),
        "a forged phase was marked"
    );
}

#[test]
fn over_the_unix_socket_each_user_reads_only_its_own_processes() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("api-unix");
    let report = dir.join("report.json");
    let socket = dir.join("api.sock");
    let root = Sleeper::start(None);
    let own = Sleeper::start(Some(NOBODY));
    let (root_pid, own_pid) = (root.pid().to_string(), own.pid().to_string());
    let listen = format!("unix:{}", socket.display());
    let mut daemon = Daemon::start_as_is(&[
        "attach",
        "--pid",
        &root_pid,
        "--pid",
        &own_pid,
        "--listen",
        &listen,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(daemon.api, listen);
    let nobody = Some(NOBODY);

    let theirs = request(
        nobody,
        &listen,
        "GET",
        &format!("/api/v1/processes/{root_pid}/maps"),
        &[],
    );
    assert_eq!(theirs.status, 403, "{}", theirs.text);
    let detail = request(
        nobody,
        &listen,
        "GET",
        &format!("/api/v1/processes/{root_pid}"),
        &[],
    );
    assert_eq!(detail.status, 403, "{}", detail.text);
    let all = request(nobody, &listen, "GET", "/api/v1/report", &[]);
    assert_eq!(all.status, 403, "{}", all.text);
    // Root with every capability in a user namespace of its own is still nobody here.
    for path in [
        "/api/v1/report".to_string(),
        format!("/api/v1/processes/{root_pid}/maps"),
    ] {
        let r = request_in_user_namespace(NOBODY, &listen, &path);
        assert_eq!(r.status, 403, "{}", r.text);
    }

    // Its own process: the layout /proc shows it too.
    let mine = request(
        nobody,
        &listen,
        "GET",
        &format!("/api/v1/processes/{own_pid}/maps"),
        &[],
    );
    assert_eq!(mine.status, 200, "{}", mine.text);
    let proc_maps = std::fs::read_to_string(format!("/proc/{own_pid}/maps")).unwrap();
    let stack = proc_maps.lines().find(|l| l.ends_with("[stack]")).unwrap();
    assert!(body(&mine).contains("[stack]"), "{}", mine.text);
    assert!(
        body(&mine)
            .lines()
            .any(|l| l.split_whitespace().next() == stack.split_whitespace().next()),
        "its own stack at the same address:\n{}\n/proc: {stack}",
        mine.text
    );
    // Root sees the root process.
    let as_root = request(
        None,
        &listen,
        "GET",
        &format!("/api/v1/processes/{root_pid}/maps"),
        &[],
    );
    assert_eq!(as_root.status, 200, "{}", as_root.text);

    // Phases: nobody may mark one on its own process only.
    let forged = request(
        nobody,
        &listen,
        "POST",
        &format!("/api/v1/phases?name=forged&pid={root_pid}"),
        &[],
    );
    assert_eq!(forged.status, 403, "{}", forged.text);
    let global = request(nobody, &listen, "POST", "/api/v1/phases?name=forged", &[]);
    assert_eq!(global.status, 403, "{}", global.text);
    let marked = request(
        nobody,
        &listen,
        "POST",
        &format!("/api/v1/phases?name=mine&pid={own_pid}"),
        &[],
    );
    assert_eq!(marked.status, 200, "{}", marked.text);

    let report = stop_and_report(&mut daemon, &report);
    assert_eq!(phases(&report, root.pid()), Vec::<String>::new());
    assert_eq!(phases(&report, own.pid()), vec!["mine".to_string()]);
}

#[test]
fn half_sent_requests_do_not_starve_the_api() {
    if !kernel_available() {
        return;
    }
    let target = Sleeper::start(None);
    let pid = target.pid().to_string();
    let mut command = Command::new(tracer_bin());
    command.args(["attach", "--pid", &pid, "--listen", "127.0.0.1:0"]);
    // The soft descriptor limit a login shell or an old service manager gives (the hard
    // limit stays): the tracer must not run out of descriptors for 300 idle connections.
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max.min(256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let daemon = Daemon::spawn(command, true);
    let addr: std::net::SocketAddr = daemon.api.trim_start_matches("http://").parse().unwrap();

    let mut stalled = Vec::new();
    for _ in 0..300 {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            stalled.push(s);
        }
    }
    assert_eq!(stalled.len(), 300, "connections refused");
    std::thread::sleep(Duration::from_millis(200));

    for path in ["/healthz", "/api/v1/processes"] {
        let start = Instant::now();
        let answer = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })();
        let elapsed = start.elapsed();
        let text = answer.unwrap_or_else(|e| panic!("{path} with 300 stalled requests: {e}"));
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        // Well under the 5 s header timeout that would free a starved server anyway, with
        // room for a loaded 2-core machine (other tests of this file run beside it).
        assert!(elapsed < Duration::from_secs(3), "{path} took {elapsed:?}");
    }

    // A stalled request is cut off after the header-read timeout (5 s), not kept forever.
    let mut one = stalled.pop().unwrap();
    one.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let closed = match one.read(&mut buf) {
        Ok(_) => true, // EOF, or hyper's 408 before closing
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let waited = start.elapsed();
    assert!(
        closed && waited < Duration::from_secs(10),
        "still open after {waited:?}"
    );
    drop(stalled);
    drop(daemon);
}

#[test]
fn a_full_phase_table_answers_429_instead_of_dropping_the_mark() {
    if !kernel_available() {
        return;
    }
    // Stops itself after one round and stays stopped: a running traced process to mark.
    let (daemon, pid) = Daemon::run_workload(&[], "malloc_churn", &["1", "1", "1"]);
    assert!(wait_stopped(pid, LIMIT));
    let mark = |n: usize| -> u16 {
        let url = format!("{}/api/v1/phases?name=p{n}&pid={pid}", daemon.api);
        match ureq::post(&url)
            .header("Content-Type", "application/json")
            .send_empty()
        {
            Ok(response) => response.status().as_u16(),
            Err(ureq::Error::StatusCode(code)) => code,
            Err(err) => panic!("POST {url}: {err}"),
        }
    };
    let mut accepted = 0;
    let refused = loop {
        match mark(accepted) {
            200 => accepted += 1,
            other => break other,
        }
        assert!(accepted <= 10_000, "no limit on phases");
    };
    println!("{accepted} phases accepted, then {refused}");
    assert_eq!(refused, 429);
    assert!(
        accepted >= 100,
        "the limit is far lower than documented: {accepted}"
    );
    // Still full: refused again, not dropped behind a 200.
    assert_eq!(mark(accepted + 1), 429);
    resume(pid);
}

/// Where `/proc` is mounted `hidepid=invisible`, a user cannot list other users' processes in
/// it, so an anonymous client gets neither the process list nor the per-process metrics; the
/// same tracer on the ordinary `/proc` serves both. The tracer runs in a mount namespace of its
/// own with a new procfs instance over `/proc` (the host's `/proc` is untouched).
#[test]
fn where_proc_hides_pids_anonymous_clients_get_no_process_list() {
    if !kernel_available() {
        return;
    }
    let tracer = tracer_bin();
    let start = |hide: bool| {
        let mount = if hide {
            "mount -t proc -o hidepid=invisible proc /proc && "
        } else {
            ""
        };
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c"]);
        command.arg(format!("{mount}exec \"$0\" \"$@\""));
        command.arg(&tracer);
        command.args(["run", "-q", "--listen", "127.0.0.1:0", "--", "sleep", "600"]);
        Daemon::spawn(command, false)
    };
    for hide in [false, true] {
        let daemon = start(hide);
        let addr = daemon.api.trim_start_matches("http://").to_string();
        for path in ["/metrics", "/api/v1/processes"] {
            let response = request(Some(NOBODY), &addr, "GET", path, &[]);
            if hide {
                assert_eq!(response.status, 403, "{path}: {}", response.text);
                assert!(
                    body(&response).contains("hidepid=invisible"),
                    "{}",
                    response.text
                );
            } else {
                assert_eq!(response.status, 200, "{path}: {}", response.text);
                assert!(
                    body(&response).contains("sleep"),
                    "{path}: {}",
                    response.text
                );
            }
        }
        let healthz = request(Some(NOBODY), &addr, "GET", "/healthz", &[]);
        assert_eq!(healthz.status, 200, "{}", healthz.text);
        if hide {
            assert!(
                daemon.stderr_so_far().contains("hidepid=invisible"),
                "the tracer says why at start-up"
            );
        }
    }
}
