//! The Prometheus exporter: a live scrape that promtool accepts, figures that agree with the
//! kernel's own at quiescent points, and bounded cardinality.

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    process::{Command, Stdio},
    time::Duration,
};

use tests::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Samples of a text exposition: "name{labels}" (labels sorted as printed) -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// Sum of the samples of `name` whose labels contain every `key="value"` in `having`.
fn sum(samples: &HashMap<String, f64>, name: &str, having: &[&str]) -> u64 {
    samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("{name}{{")) && having.iter().all(|h| k.contains(h))
        })
        .map(|(_, v)| *v as u64)
        .sum()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by cargo xtask setup");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stat_faults(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    (fields[7].parse().unwrap(), fields[9].parse().unwrap()) // minflt (10), majflt (12)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(key)).unwrap();
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn scrapes_pass_promtool_and_agree_with_the_kernel_at_quiescent_points() {
    if !kernel_available() {
        return;
    }
    let (mut daemon, pid) = Daemon::run_workload(&[], "malloc_churn", &["3", "100", "20"]);
    let p = format!("pid=\"{pid}\"");
    let mut previous: Option<(u64, u64, u64, u64)> = None;
    let mut stops = 0;
    while wait_stopped(pid, LIMIT) {
        stops += 1;
        let text = daemon.get("/metrics");
        promtool_check(&text);
        let s = samples(&text);
        let faults = sum(&s, "tracer_page_faults_total", &[&p]);
        let major = sum(&s, "tracer_page_faults_total", &[&p, "kind=\"major\""]);
        let (minflt, majflt) = stat_faults(pid);
        // Between two stops, the process faulted exactly as often as the kernel counted.
        if let Some((f0, m0, maj0, kmaj0)) = previous {
            assert_eq!(
                faults - f0,
                minflt + majflt - m0,
                "stop {stops}: faults since the last stop"
            );
            assert_eq!(
                major - maj0,
                majflt - kmaj0,
                "stop {stops}: major faults since the last stop"
            );
        }
        previous = Some((faults, minflt + majflt, major, majflt));
        for (kind, key) in [
            ("anon", "RssAnon:"),
            ("file", "RssFile:"),
            ("shmem", "RssShmem:"),
            ("swap", "VmSwap:"),
        ] {
            let ours = sum(&s, "tracer_rss_bytes", &[&p, &format!("type=\"{kind}\"")]);
            let kernel = status_kb(pid, key);
            assert!(
                ours.abs_diff(kernel) <= 4096,
                "stop {stops}: rss {kind} {ours} vs {kernel}"
            );
        }
        assert_eq!(
            sum(&s, "tracer_virtual_memory_bytes", &[&p]),
            status_kb(pid, "VmSize:"),
            "stop {stops}: VSZ"
        );
        assert!(
            sum(&s, "tracer_page_faults_total", &[&p, "region=\"heap\""]) > 0,
            "glibc's heap faults"
        );
        let detail = daemon.get_json(&format!("/api/v1/processes/{pid}"));
        let heap_faults: u64 = detail["vma_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "[heap]")
            .map(|v| v["faults"].as_u64().unwrap())
            .sum();
        assert!(heap_faults > 0, "per-VMA faults of the heap: {detail}");
        resume(pid);
    }
    assert_eq!(stops, 6);
    assert!(daemon.wait(LIMIT).status.success());
}

#[test]
fn series_of_exited_processes_vanish_and_the_daemon_does_not_grow() {
    if !kernel_available() {
        return;
    }
    // A parent that starts 200 short-lived children on each line it reads.
    let mut parent = Command::new("/bin/sh")
        .args([
            "-c",
            "echo ready; while read n; do for i in $(seq $n); do /bin/true; done; echo done; done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = parent.id();
    let mut input = parent.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(parent.stdout.take().unwrap()).lines();
    assert_eq!(output.next().unwrap().unwrap(), "ready");
    let daemon = Daemon::start(&[
        "attach",
        "--pid",
        &pid.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--exited-grace",
        "1",
        "--drain-interval-ms",
        "20",
    ]);
    let tracer = daemon.child.id();
    let mut batch = |n: u32| {
        writeln!(input, "{n}").unwrap();
        assert_eq!(output.next().unwrap().unwrap(), "done");
        std::thread::sleep(Duration::from_millis(1500)); // past the grace period
        daemon.get("/metrics") // a scrape also lets the daemon catch up
    };
    let first = batch(200);
    println!(
        "after the first batch: {} exits",
        sum(&samples(&first), "tracer_events_total", &["kind=\"exit\""])
    );
    let rss_after_first = status_kb(tracer, "VmRSS:");
    let text = batch(200);
    let rss_after_second = status_kb(tracer, "VmRSS:");
    let s = samples(&text);
    let pids: std::collections::HashSet<String> = s
        .keys()
        .filter_map(|k| {
            k.split("pid=\"")
                .nth(1)
                .map(|r| r.split('"').next().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        pids,
        [pid.to_string()].into_iter().collect(),
        "only the parent's series remain"
    );
    let exits = sum(&s, "tracer_events_total", &["kind=\"exit\""]);
    assert_eq!(exits, 402, "every child (and seq) was traced:\n{text}");
    assert_eq!(sum(&s, "tracer_events_lost_total", &[]), 0);
    let processes = daemon.get_json("/api/v1/processes");
    assert_eq!(
        processes["processes"].as_array().unwrap().len(),
        1,
        "{processes}"
    );
    println!("daemon RSS after 200 children {rss_after_first} B, after 400 {rss_after_second} B");
    assert!(
        rss_after_second <= rss_after_first + 512 * 1024,
        "the daemon grew from {rss_after_first} to {rss_after_second} bytes"
    );
    drop(input);
    let _ = parent.wait();
}
