//! The session loop answers the API while records keep coming faster than it applies them.
//!
//! `overload` processes make failing munmap calls as fast as they can, one record each, so
//! the ring buffer never runs dry while they run. The old loop drained the ring buffer until
//! it was empty before it answered a question, so a scrape waited for the end of the flood
//! (or got the server's 503 after 30 s). The loop now applies a bounded batch per turn and
//! answers in between: the scrape must come back while the flood is still going. Not a
//! timing test: what is asserted is the order of two events (the answer, the flood's end),
//! with a flood that lasts far longer than any bounded turn.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::*;

/// Calls per process: minutes of flooding, far longer than the test waits for its answer.
const CALLS: &str = "400000000";
/// Flooding processes: more than the machine has cores, so that the daemon gets a small share
/// of the CPU and falls behind (with one or two, a daemon on an idle core keeps up). An
/// optimised (release) daemon keeps up even with these: the test tells the old loop from the
/// new one with the debug build that `cargo xtask test` runs.
const PROCS: &str = "6";

/// Kills the flood's process group when the test ends, however it ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: a plain signal to the process group this test created.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

#[test]
fn a_scrape_is_answered_while_records_flood_in() {
    if !kernel_available() {
        return;
    }
    let mut flood = Command::new(workload("overload"))
        .args([CALLS, "wait", PROCS])
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start overload");
    let _group = Group(flood.id() as i32);
    let mut stdout = BufReader::new(flood.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("overload's first line");
    assert_eq!(line.trim(), "ready", "overload says {line:?}");

    let pid = flood.id().to_string();
    let daemon = Daemon::start(&["attach", "--pid", &pid, "--listen", "127.0.0.1:0"]);
    // Go: the first process forks the others and all flood the ring buffer.
    flood
        .stdin
        .take()
        .expect("piped")
        .write_all(b"go\n")
        .expect("start the flood");
    // Long enough for the ring buffer to fill up (the daemon falls behind at once).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        flood.try_wait().expect("poll overload").is_none(),
        "the flood ended too early to test anything"
    );

    let first = syscall_records(&daemon.get("/metrics"));
    // The answer came while the flood still runs: the loop did not wait for the ring buffer
    // to run dry.
    assert!(
        flood.try_wait().expect("poll overload").is_none(),
        "the scrape was answered only after the flood ended"
    );
    assert!(first > 0, "the answer counts the flood's records so far");
    // The records left behind by a turn are applied by the next ones: the count goes on.
    std::thread::sleep(Duration::from_secs(1));
    let second = syscall_records(&daemon.get("/metrics"));
    assert!(
        flood.try_wait().expect("poll overload").is_none(),
        "the second scrape was answered only after the flood ended"
    );
    assert!(
        second > first,
        "syscall records applied: {first}, then {second}"
    );
}

/// The syscall records the daemon has applied so far (its own counter).
fn syscall_records(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tracer_events_total{kind=\"syscall\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tracer_events_total{{kind=\"syscall\"}} in:\n{metrics}"))
}
