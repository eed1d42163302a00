//! A careless user and a hostile environment: absurd option values are refused before
//! anything starts, CMD starts with the signal dispositions it would have untraced, a killed
//! tracer leaves no stopped command behind, and SIGHUP ends `attach` with its report.

use std::{
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// Pids whose command line holds `marker` (a unique argument given to the command).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == marker.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// The state letter of `/proc/PID/stat`, if the process still exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).map(|&b| b as char)
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid as i32, signal) };
}

#[test]
fn absurd_option_values_exit_2_and_start_nothing() {
    // Refused by the parser: no kernel needed, but the command must not be left behind.
    for (n, (option, value)) in [
        ("--drift-check-interval", "18446744073709551615"),
        ("--exited-grace", "18446744073709551615"),
        ("--drift-check-interval", "86401"),
        ("--exited-grace", "604801"),
        ("--wakeup-bytes", "4294967295"),
        ("--drain-interval-ms", "18446744073709551615"),
        ("--max-processes", "4294967295"),
    ]
    .into_iter()
    .enumerate()
    {
        let marker = format!("1.{}{n}", std::process::id());
        // stderr to a file, not a pipe: a command left stopped would hold a pipe open.
        let log = scratch("absurd").join("stderr");
        let mut tracer = Command::new(tracer_bin())
            .args(["run", "-q", option, value, "--", "/bin/sleep", &marker])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = tracer.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = tracer.kill();
                let _ = tracer.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let left = processes_with(&marker);
        for &pid in &left {
            kill(pid, libc::SIGKILL);
        }
        let status = status.unwrap_or_else(|| panic!("{option} {value}: hung; {stderr}"));
        assert_eq!(status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(left.is_empty(), "{option} {value} left {left:?} behind");
        assert!(stderr.contains(option), "{option} {value}: {stderr}");
    }
}

/// `SigIgn:`, `SigBlk:` and `SigCgt:` of `/proc/self/status` as `cat` prints it, with
/// SIGHUP and SIGUSR2 ignored in the starting process (as `nohup` does for SIGHUP).
fn signal_lines(cmd: &mut Command) -> Vec<String> {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("SigIgn:") || l.starts_with("SigBlk:") || l.starts_with("SigCgt:")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn cmd_starts_with_the_signal_dispositions_it_has_untraced() {
    if !kernel_available() {
        return;
    }
    let untraced = signal_lines(Command::new("/bin/cat").arg("/proc/self/status"));
    let traced = signal_lines(Command::new(tracer_bin()).args([
        "run",
        "-q",
        "--",
        "/bin/cat",
        "/proc/self/status",
    ]));
    println!("untraced: {untraced:?}\ntraced:   {traced:?}");
    assert_eq!(untraced.len(), 3);
    assert_eq!(traced, untraced);
}

/// Runs `tracer run -- SHAPE(marker)` until it catches a `/bin/sleep MARKER` of the traced
/// tree at its exec stop, freezes the tracer there (so the stop is certainly the tracer's to
/// end), kills it with SIGKILL, and returns the state of that process shortly after. MARKER
/// (a number of seconds) starts with `seconds`, which each caller has of its own: the tests
/// run in parallel and must not find each other's sleep.
fn kill_the_tracer_at_an_exec_stop(
    seconds: u32,
    shape: impl Fn(&str) -> Vec<String>,
) -> Option<char> {
    for attempt in 0..40 {
        let marker = format!("{seconds}.{}{attempt}", std::process::id());
        let mut tracer = Command::new(tracer_bin())
            .args(["run", "-q", "--"])
            .args(shape(&marker))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut caught = None;
        while Instant::now() < deadline {
            // Until its exec a process is a copy of its parent (cmdline included).
            let sleep = processes_with(&marker).into_iter().find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("sleep"))
            });
            let Some(pid) = sleep else { continue };
            if state(pid) == Some('T') {
                kill(tracer.id(), libc::SIGSTOP);
                if state(pid) == Some('T') {
                    caught = Some(pid);
                }
            } // else: running its image already, this attempt missed the stop
            break;
        }
        kill(tracer.id(), libc::SIGKILL);
        let _ = tracer.wait();
        let Some(pid) = caught else {
            for pid in processes_with(&marker) {
                kill(pid, libc::SIGKILL);
            }
            continue;
        };
        // The tracer's death must reach the stopped process: it must not stay stopped (its
        // guard may take a moment to be scheduled on a loaded machine).
        let resumed_by = Instant::now() + Duration::from_secs(5);
        let mut left = state(pid);
        while matches!(left, Some('T') | Some('t')) && Instant::now() < resumed_by {
            std::thread::sleep(Duration::from_millis(50));
            left = state(pid);
        }
        for pid in processes_with(&marker) {
            kill(pid, libc::SIGKILL);
        }
        println!("attempt {attempt}: caught {pid} at its exec stop; after the kill: {left:?}");
        return left;
    }
    panic!("never caught a process at its exec stop in 40 attempts");
}

#[test]
fn a_tracer_killed_while_cmd_is_stopped_at_its_exec_leaves_it_running() {
    if !kernel_available() {
        return;
    }
    let left =
        kill_the_tracer_at_an_exec_stop(3, |marker| vec!["/bin/sleep".into(), marker.into()]);
    assert!(!matches!(left, Some('T') | Some('t')), "CMD stayed stopped");
}

#[test]
fn a_tracer_killed_while_a_descendant_is_stopped_at_its_exec_leaves_it_running() {
    if !kernel_available() {
        return;
    }
    // `; true` makes the shell fork for sleep instead of exec'ing it.
    let left = kill_the_tracer_at_an_exec_stop(4, |marker| {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("/bin/sleep {marker}; true"),
        ]
    });
    assert!(
        !matches!(left, Some('T') | Some('t')),
        "the descendant stayed stopped"
    );
}

#[test]
fn sighup_ends_attach_with_its_report() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("sighup");
    let report = dir.join("report.json");
    let mut target = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let mut daemon = Daemon::start(&[
        "attach",
        "--pid",
        &target.id().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--report",
        report.to_str().unwrap(),
    ]);
    kill(daemon.child.id(), libc::SIGHUP);
    let out = daemon.wait(Duration::from_secs(30));
    let _ = target.kill();
    let _ = target.wait();
    assert_eq!(out.status.code(), Some(0), "{}", daemon.stderr_so_far());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report")).unwrap();
    assert_eq!(report["processes"][0]["pid"], target.id());
}
