//! Overload: a program produces records faster than the daemon drains a deliberately small
//! ring buffer. Every record is either seen or counted as lost, exactly: seen + lost equals
//! what the program produced, and the daemon says plainly that it lost records.
//!
//! The workload (`overload N [wait|nowait] [PROCS]`) is freestanding: each of its PROCS
//! processes makes exactly N failing munmap calls, one record each, and nothing else that is
//! traced, and prints its own count at the end.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::*;

/// Far more records than a 4 KiB ring buffer holds (about 40).
const CALLS: u64 = 100_000;

/// The workload's own counts, summed over its processes' `done N calls F failed` lines.
fn own_count(stdout: &str, procs: usize) -> (u64, u64) {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("done ")).collect();
    assert_eq!(
        lines.len(),
        procs,
        "one `done` line per process in {stdout:?}"
    );
    lines.iter().fold((0, 0), |(calls, failed), line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (
            calls + words[1].parse::<u64>().unwrap(),
            failed + words[3].parse::<u64>().unwrap(),
        )
    })
}

/// The numbers of the summary header
/// `tracer: N syscall records, F fork, E exec, X exit; lost L; decode errors D`.
fn summary_header(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tracer: ") && l.contains(" syscall records, "))
        .unwrap_or_else(|| panic!("no summary header in:\n{stderr}"));
    let seen = line["tracer: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lost = line
        .split("lost ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    (seen, lost)
}

/// Checks the accounting: per kind, records seen in the stream + lost == produced, for a
/// workload of `procs` processes making `produced_syscalls` calls in all.
fn assert_exact(
    events_path: &Path,
    stderr: &str,
    procs: u64,
    produced_syscalls: u64,
) -> (u64, u64) {
    let events = read_events(events_path);
    let pid = exec_pid(&events, "overload");
    let end = end_event(&events);
    let records = |kind: &str| end["records"][kind].as_u64().unwrap();
    let lost = |kind: &str| end["lost"][kind].as_u64().unwrap();

    // Syscalls: every one of the workload's calls is seen or counted lost, no more, no less.
    let seen = records("syscall");
    assert_eq!(
        seen + lost("syscall"),
        produced_syscalls,
        "syscall records seen {seen} + lost {} != produced {produced_syscalls}",
        lost("syscall")
    );
    // Every record counted as seen is in the stream, and is one of the workload's calls.
    let streamed: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["type"] == "syscall").collect();
    assert_eq!(streamed.len() as u64, seen, "records written to --events");
    assert!(
        streamed
            .iter()
            .all(|e| e["syscall"] == "munmap" && e["ok"] == false),
        "only the workload's failing munmaps"
    );
    // Lifecycle: one exec (before the flood), a fork per extra process, an exit per process
    // (any of these but the exec may be lost in the flood).
    assert_eq!(records("exec") + lost("exec"), 1, "exec records");
    assert_eq!(records("fork") + lost("fork"), procs - 1, "fork records");
    assert_eq!(records("exit") + lost("exit"), procs, "exit records");
    assert_eq!(end["decode_errors"], 0);
    assert_eq!(end["exits_without_enter"], 0);
    assert_eq!(end["inflight_full"], 0);

    // The summary says the same, and the first process's row too.
    let total_lost: u64 = ["syscall", "fork", "exec", "exit"]
        .iter()
        .map(|k| lost(k))
        .sum();
    assert_eq!(summary_header(stderr), (seen, total_lost), "summary header");
    let of_first = syscalls(&events, pid, None).len() as u64;
    assert_eq!(
        summary_row(stderr, pid, "munmap"),
        (of_first, of_first),
        "munmap row of {pid}"
    );
    if total_lost > 0 {
        let warning = format!(
            "tracer: WARNING: {total_lost} records were lost because the ring buffer was full \
             (syscall {}, fork {}, exec {}, exit {})",
            lost("syscall"),
            lost("fork"),
            lost("exec"),
            lost("exit")
        );
        assert!(
            stderr.contains(&warning),
            "the daemon must say it lost records: `{warning}` not in:\n{stderr}"
        );
    } else {
        assert!(
            !stderr.contains("WARNING"),
            "no loss, no warning:\n{stderr}"
        );
    }
    // Every process of the run has exited by the end, exit record lost or not, and the
    // summary says which exits it did not see.
    assert!(
        !stderr.contains("still running"),
        "a process whose exit record was lost is reported as running:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("its exit record was lost").count() as u64,
        lost("exit"),
        "processes marked as having lost their exit record:\n{stderr}"
    );
    (seen, lost("syscall"))
}

/// The reader stops draining (the tracer is stopped with SIGSTOP) while the workload floods a
/// 4 KiB ring buffer: nearly everything is lost, and every record is accounted for.
#[test]
fn a_stalled_reader_counts_every_lost_record() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("overload_stalled");
    let events_path = dir.join("events.jsonl");
    let calls = CALLS.to_string();
    let mut tracer = Command::new(tracer_bin())
        .args(["run", "--ring-buffer-size", "4K", "--events"])
        .arg(&events_path)
        .arg("--")
        .arg(workload("overload"))
        .arg(&calls)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    let tracer_pid = tracer.id();
    // The workload shares the tracer's stdin and stdout.
    let mut stdin = tracer.stdin.take().unwrap();
    let mut stdout = BufReader::new(tracer.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "the workload's first line");

    // SAFETY: stopping the tracer this test started.
    unsafe { libc::kill(tracer_pid as i32, libc::SIGSTOP) };
    assert!(
        wait_stopped(tracer_pid, Duration::from_secs(10)),
        "the tracer did not stop"
    );
    stdin
        .write_all(b"go\n")
        .expect("tell the workload to start");
    let mut done = String::new();
    stdout.read_line(&mut done).expect("done line");
    assert_eq!(
        own_count(&done, 1),
        (CALLS, CALLS),
        "the workload's own count"
    );
    resume(tracer_pid);

    let output = wait_with_deadline(tracer, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer failed: {stderr}");
    let (seen, lost) = assert_exact(&events_path, &stderr, 1, CALLS);
    println!("stalled reader: {CALLS} records produced, {seen} seen, {lost} lost");
    assert!(
        lost > 0,
        "a stopped reader and a 4 KiB ring cannot hold {CALLS} records"
    );
    // The ring buffer holds about 40 syscall records; the rest must be lost.
    assert!(seen < 100, "{seen} records seen through a 4 KiB ring");
}

/// No stall: two processes produce records as fast as they can into a 4 KiB ring buffer (about
/// 40 records), on a machine whose CPUs they keep busy, so the reader falls behind. Whatever
/// it manages to drain, seen + lost is exact, and the loss is reported.
#[test]
fn a_reader_that_falls_behind_counts_every_lost_record() {
    if !kernel_available() {
        return;
    }
    const PROCS: u64 = 2;
    let dir = scratch("overload_flood");
    let events_path = dir.join("events.jsonl");
    let calls = (2 * CALLS).to_string();
    let procs = PROCS.to_string();
    let output = run_tracer(
        &[
            "run",
            "--ring-buffer-size",
            "4K",
            "--drain-interval-ms",
            "1000",
            "--events",
            events_path.to_str().unwrap(),
            "--",
            workload("overload").to_str().unwrap(),
            &calls,
            "nowait",
            &procs,
        ],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let produced = PROCS * 2 * CALLS;
    assert_eq!(own_count(&stdout, PROCS as usize), (produced, produced));
    let (seen, lost) = assert_exact(&events_path, &stderr, PROCS, produced);
    println!("reader falling behind: {produced} records produced, {seen} seen, {lost} lost");
    // About 40 records fit; two processes making about a million calls a second each cannot
    // be drained in time by a reader woken every 1 KiB (a quarter of the ring).
    assert!(
        lost > 0,
        "no record lost: the reader kept up, so this is no overload"
    );
}
