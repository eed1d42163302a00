//! Names the kernel hands over as bytes: a process whose comm is not UTF-8 (prctl
//! PR_SET_NAME) and that maps a file whose name is not UTF-8 is attached, found, seeded with
//! every VMA and checked like any other, and its names are shown escaped the way /proc
//! escapes (`\ooo`), never raw.

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// The comm the hostile process gives itself, and how the tracer must show it.
const COMM: &[u8] = b"\xffevil";
const COMM_SHOWN: &str = "\\377evil";

/// A python process that maps `<dir>/\xffmap` (two pages, read-only), renames itself to
/// `\xffevil`, prints its pid and sleeps.
fn hostile_process(dir: &std::path::Path) -> (Child, u32) {
    const SCRIPT: &str = r#"
import ctypes, mmap, os, sys, time
path = os.fsencode(sys.argv[1]) + b"/\xffmap"
with open(path, "wb") as f:
    f.write(b"x" * 8192)
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, 8192, prot=mmap.PROT_READ)
m[0], m[4096]
ctypes.CDLL(None).prctl(15, b"\xffevil", 0, 0, 0)
print("pid", os.getpid(), flush=True)
time.sleep(120)
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().trim_start_matches("pid ").parse().unwrap();
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        stat.windows(COMM.len()).any(|w| w == COMM),
        "the comm was not set"
    );
    (child, pid)
}

/// The test's own rendering of kernel bytes: printable ASCII as is, anything else `\ooo`
/// (enough for the names here, which are ASCII but for \xff).
fn escaped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\n' => "\n".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b:03o}"),
        })
        .collect()
}

/// No control character and nothing but UTF-8 in what the tracer showed.
fn assert_clean(what: &str, text: &[u8]) {
    let text = std::str::from_utf8(text).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} holds control characters {bad:?}");
}

fn assert_attached_and_modelled(daemon: &Daemon, pid: u32) {
    let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
    assert_eq!(detail["comm"], COMM_SHOWN, "{detail}");
    let model = daemon.get(&format!("/api/v1/processes/{pid}/maps"));
    assert_clean("the model's maps", model.as_bytes());
    let kernel = escaped(&std::fs::read(format!("/proc/{pid}/maps")).unwrap());
    assert!(kernel.contains("/\\377map"), "{kernel}");
    let (m, k) = (coalesced_maps(&model), coalesced_maps(&kernel));
    assert!(
        m == k,
        "the model of {pid} differs from /proc:\n--- model:\n{model}--- /proc:\n{kernel}"
    );
    let check = daemon.post_json(&format!("/api/v1/processes/{pid}/check"));
    assert_eq!(check["differences"], 0, "{check}");
    let metrics = daemon.get("/metrics");
    assert_clean("/metrics", metrics.as_bytes());
    // The exposition format escapes the backslash of the label value once more.
    assert!(
        metrics.contains(&format!("comm=\"{}\"", COMM_SHOWN.replace('\\', "\\\\"))),
        "no series labelled with the escaped comm"
    );
}

#[test]
fn a_process_named_in_bytes_is_attached_by_pid_and_seeded_with_every_vma() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("hostile-pid");
    let (mut process, pid) = hostile_process(&dir);
    let mut daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_attached_and_modelled(&daemon, pid);
    // SIGTERM ends attach with its summary, which names the process.
    // SAFETY: signalling the tracer this test started.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let out = daemon.wait(Duration::from_secs(30));
    let _ = process.kill();
    let _ = process.wait();
    let stderr = daemon.stderr_so_far();
    assert!(out.status.success(), "{stderr}");
    assert_clean("the tracer's stderr", stderr.as_bytes());
    assert!(stderr.contains(COMM_SHOWN), "{stderr}");
}

#[test]
fn a_process_named_in_bytes_is_found_by_all() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("hostile-all");
    let (mut process, pid) = hostile_process(&dir);
    let daemon = Daemon::start(&["attach", "--all", "--listen", "127.0.0.1:0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = daemon.get_json("/api/v1/processes");
        let found = list["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid);
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "--all did not attach {pid}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_attached_and_modelled(&daemon, pid);
    // --comm matches the name as shown.
    drop(daemon);
    let daemon = Daemon::start(&["attach", "--comm", COMM_SHOWN, "--listen", "127.0.0.1:0"]);
    let list = daemon.get_json("/api/v1/processes");
    assert!(
        list["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid),
        "--comm {COMM_SHOWN} did not attach {pid}: {list}"
    );
    drop(daemon);
    let _ = process.kill();
    let _ = process.wait();
}
