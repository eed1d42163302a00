//! `tracer attach` to processes that were running before the tracer started.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tests::*;

const LIMIT: Duration = Duration::from_secs(120);

/// An `attach_target` process waiting for its "go".
struct Target {
    child: Child,
    stdin: ChildStdin,
}

impl Target {
    /// Starts `attach_target PRE POST CHILD` and waits until it has done its PRE mappings.
    fn start(pre: u32, post: u32, child: u32) -> Target {
        let mut process = Command::new(workload("attach_target"))
            .args([pre.to_string(), post.to_string(), child.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start attach_target");
        let stdout = process.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let stdin = process.stdin.take().unwrap();
        Target {
            child: process,
            stdin,
        }
    }

    fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tracer attach` on `pids` and returns once it says it is attached.
fn attach(pids: &[u64], events: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let mut args = vec![
        "attach".to_string(),
        "--no-listen".into(),
        "--events".into(),
        events.display().to_string(),
    ];
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    let mut tracer = Command::new(tracer_bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer attach");
    let stderr = tracer.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let (attached_tx, attached_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut attached = Some(attached_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached to")
                && let Some(tx) = attached.take()
            {
                let _ = tx.send(());
            }
            let _ = lines_tx.send(line);
        }
    });
    if attached_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = tracer.kill();
        let stderr: Vec<String> = lines_rx.try_iter().collect();
        panic!("tracer did not attach within 30 s:\n{}", stderr.join("\n"));
    }
    (tracer, lines_rx)
}

fn finish(tracer: Child, lines: mpsc::Receiver<String>) -> String {
    let out = wait_with_deadline(tracer, LIMIT);
    let stderr: Vec<String> = lines.try_iter().collect();
    let stderr = stderr.join("\n");
    assert!(out.status.success(), "tracer attach failed: {stderr}");
    stderr
}

fn count(events: &[Value], pid: u64, syscall: &str, len: u64) -> usize {
    syscalls(events, pid, Some(syscall))
        .iter()
        .filter(|e| hex(&e["args"]["len"]) == len)
        .count()
}

#[test]
fn attach_counts_only_what_follows_and_follows_children() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("attach");
    let events_path = dir.join("events.jsonl");
    let mut target = Target::start(5, 7, 3);
    let mut bystander = Target::start(0, 0, 0);
    bystander.send("spin\n"); // maps 5-page regions in a loop, untraced
    let (tracer, lines) = attach(&[target.pid()], &events_path);
    target.send("go\n");
    let stderr = finish(tracer, lines);
    let events = read_events(&events_path);

    let pid = target.pid();
    assert_eq!(
        count(&events, pid, "mmap", 5 * 4096),
        7,
        "only the mappings made after attach"
    );
    assert_eq!(count(&events, pid, "munmap", 5 * 4096), 7);
    let fork = events
        .iter()
        .find(|e| e["type"] == "fork" && e["pid"] == pid && e["child"] == "process")
        .expect("the fork after attach is seen");
    let child = fork["child_pid"].as_u64().unwrap();
    assert_eq!(
        count(&events, child, "mmap", 3 * 4096),
        3,
        "the child is followed"
    );
    assert_eq!(count(&events, child, "munmap", 3 * 4096), 3);
    exit_event(&events, child);
    exit_event(&events, pid);
    let bystander_pid = bystander.pid();
    assert!(
        events
            .iter()
            .all(|e| e["pid"] != bystander_pid && e["child_pid"] != bystander_pid),
        "an unrelated busy process contributes nothing"
    );
    assert!(stderr.contains(&format!(
        "pid {child} (attach_target): exited, forked by {pid}"
    )));
    assert_eq!(end_event(&events)["lost"]["syscall"], 0);
}

#[test]
fn two_traced_processes_are_kept_apart() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("two");
    let events_path = dir.join("events.jsonl");
    let mut first = Target::start(2, 4, 1);
    let mut second = Target::start(3, 9, 6);
    let (tracer, lines) = attach(&[first.pid(), second.pid()], &events_path);
    first.send("go\n");
    second.send("go\n");
    let stderr = finish(tracer, lines);
    let events = read_events(&events_path);
    for (target, post, child_maps) in [(&first, 4, 1), (&second, 9, 6)] {
        let pid = target.pid();
        assert_eq!(count(&events, pid, "mmap", 5 * 4096), post, "pid {pid}");
        let child = events
            .iter()
            .find(|e| e["type"] == "fork" && e["pid"] == pid)
            .and_then(|e| e["child_pid"].as_u64())
            .unwrap();
        assert_eq!(
            count(&events, child, "mmap", 3 * 4096),
            child_maps,
            "child {child}"
        );
        assert_eq!(count(&events, child, "mmap", 5 * 4096), 0, "child {child}");
        assert_eq!(
            summary_row(&stderr, pid, "mmap").0 as usize,
            syscalls(&events, pid, Some("mmap")).len()
        );
    }
}
