//! `--events-max-size`: the event stream of a long-lived daemon takes bounded disk. A file is
//! rotated to PATH.1 and begun again; on stdout the lines past the limit are dropped. Either
//! way every record is accounted for: the lines kept plus `events_dropped` (in the `end` line)
//! equal the records the daemon decoded.

use std::time::Duration;

use serde_json::Value;
use tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const MAX: u64 = 4096;
/// A shell that starts `true` 20 times: about 300 lines of events, several times MAX.
const SCRIPT: &str =
    "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; done";

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The records the `end` line says were decoded.
fn records(end: &Value) -> u64 {
    ["syscall", "fork", "exec", "exit"]
        .iter()
        .map(|k| end["records"][k].as_u64().expect("records"))
        .sum()
}

#[test]
fn a_bounded_file_rotates_and_accounts_for_every_record() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("events_bounds");
    let path = dir.join("events.jsonl");
    let max = MAX.to_string();
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--events",
            path.to_str().unwrap(),
            "--events-max-size",
            &max,
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_path = dir.join("events.jsonl.1");
    for file in [&path, &old_path] {
        let size = std::fs::metadata(file).expect("both files exist").len();
        assert!(size <= MAX, "{} is {size} bytes", file.display());
    }
    let old = lines(&std::fs::read_to_string(&old_path).unwrap());
    let mut new = lines(&std::fs::read_to_string(&path).unwrap());
    let end = new.pop().expect("an end line");
    assert_eq!(end["type"], "end");
    let dropped = end["events_dropped"].as_u64().expect("events_dropped");
    let kept = (old.len() + new.len()) as u64;
    println!("records {}, kept {kept}, dropped {dropped}", records(&end));
    assert!(dropped > 0, "the stream was several times the limit");
    assert_eq!(kept + dropped, records(&end));
    // The newest are kept: the shell's exit is the last record, in the current file.
    assert_eq!(new.last().unwrap()["type"], "exit");
}

#[test]
fn a_bounded_stdout_drops_past_the_limit_and_still_ends() {
    if !kernel_available() {
        return;
    }
    let max = MAX.to_string();
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--events",
            "-",
            "--events-max-size",
            &max,
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let end_at = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
    assert!(end_at as u64 <= MAX, "{end_at} bytes before the end line");
    let mut all = lines(&text);
    let end = all.pop().expect("an end line");
    assert_eq!(end["type"], "end");
    let dropped = end["events_dropped"].as_u64().expect("events_dropped");
    assert!(dropped > 0);
    assert_eq!(all.len() as u64 + dropped, records(&end));
}

#[test]
fn a_limit_below_4096_bytes_is_refused_before_anything_starts() {
    let dir = scratch("events_bounds_refused");
    let marker = dir.join("ran");
    let script = format!("echo > {}", marker.display());
    let out = run_tracer(
        &[
            "run",
            "--events",
            "-",
            "--events-max-size",
            "4095",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists(), "CMD did not start");
}
