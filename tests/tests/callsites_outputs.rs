//! The call sites (`--stacks`) in the outputs other than pprof, on the real kernel with the C
//! workload of tests/tests/callsites.rs (tests/workloads/callsites.c: noinline grow_brk,
//! grow_mmap, grow_direct and touch_pages growing memory in known amounts): the JSON report's
//! `call_sites`, the folded stacks (written and served), `tracer diff` between runs that grew
//! different amounts (`brk-mib=N`), and check files bounding a site.

use std::{collections::HashMap, path::Path, time::Duration};

use serde_json::Value;
use tests::{Daemon, kernel_available, run_tracer, scratch, workload};

const MIB: f64 = (1u64 << 20) as f64;

fn within(what: &str, got: u64, want: f64, tolerance: f64) {
    let err = (got as f64 - want).abs() / want;
    assert!(
        err <= tolerance,
        "{what}: {got} ({:.2} MiB), expected {:.2} MiB within {:.0} %",
        got as f64 / MIB,
        want / MIB,
        tolerance * 100.0
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is JSON")
}

/// The workload's process in a report.
fn workload_process(report: &Value) -> &Value {
    report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["comm"] == "callsites")
        .unwrap_or_else(|| panic!("no callsites process in {report:#}"))
}

/// A report's call site of the workload by name.
fn site<'a>(report: &'a Value, name: &str) -> &'a Value {
    let p = workload_process(report);
    p["call_sites"]
        .as_array()
        .expect("call_sites")
        .iter()
        .find(|s| s["site"] == name)
        .unwrap_or_else(|| panic!("no site {name} in {:#}", p["call_sites"]))
}

fn figure(report: &Value, name: &str, ty: &str) -> u64 {
    site(report, name)[ty].as_u64().expect("a number")
}

/// `tracer run --stacks --report PATH [extra] -- callsites [args]`.
fn traced_run(dir: &Path, label: &str, extra: &[&str], args: &[&str]) -> (Value, String) {
    let report = dir.join(format!("{label}.json"));
    let bin = workload("callsites");
    let mut argv = vec!["run", "--stacks", "--report", report.to_str().unwrap()];
    argv.extend(extra);
    argv.extend(["--", bin.to_str().unwrap()]);
    argv.extend(args);
    let out = run_tracer(&argv, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tracer {argv:?} failed: {stderr}");
    (read_json(&report), stderr)
}

/// Folded stacks, parsed by this test's own reader: per line the frames (outermost first,
/// `%XX` decoded) and the value after the last space.
fn parse_folded(text: &str) -> Vec<(Vec<String>, u64)> {
    let decode = |frame: &str| {
        let mut out = Vec::new();
        let b = frame.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("an escape"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("UTF-8 frame")
    };
    text.lines()
        .map(|line| {
            let (stack, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            assert!(value > 0, "a zero line: {line:?}");
            (stack.split(';').map(decode).collect(), value)
        })
        .collect()
}

/// The sum of the folded lines of the workload (root frame `callsites (PID)`) whose stack
/// holds `function`.
fn folded_sum(lines: &[(Vec<String>, u64)], pid: u64, function: &str) -> u64 {
    let root = format!("callsites ({pid})");
    lines
        .iter()
        .filter(|(frames, _)| frames[0] == root && frames.iter().any(|f| f == function))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn the_report_lists_the_sites_and_the_folded_stacks_match_it() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("outputs-report");
    let folded = dir.join("alloc.folded");
    let (report, _) = traced_run(
        &dir,
        "report",
        &[
            "--folded",
            folded.to_str().unwrap(),
            "--folded-type",
            "alloc_space",
        ],
        &[],
    );
    let info = &report["call_sites"];
    assert_eq!(info["enabled"], true, "{info:#}");
    assert!(info["samples"].as_u64().unwrap() > 0, "{info:#}");
    let p = workload_process(&report);
    let sites = p["call_sites"].as_array().unwrap();
    assert!(sites.len() as u64 <= info["limit"].as_u64().unwrap());
    within(
        "grow_brk alloc_space",
        figure(&report, "grow_brk", "alloc_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_brk inuse_space",
        figure(&report, "grow_brk", "inuse_space"),
        32.0 * MIB,
        0.01,
    );
    within(
        "grow_mmap alloc_space",
        figure(&report, "grow_mmap", "alloc_space"),
        64.0 * MIB,
        0.01,
    );
    assert_eq!(figure(&report, "grow_mmap", "alloc_objects"), 16);
    assert_eq!(figure(&report, "grow_mmap", "inuse_objects"), 0);
    assert!((figure(&report, "grow_mmap", "inuse_space") as f64) < 0.01 * 64.0 * MIB);
    within(
        "grow_direct inuse_space",
        figure(&report, "grow_direct", "inuse_space"),
        24.0 * MIB,
        0.01,
    );
    let pages = 24.0 * MIB / 4096.0;
    let faults = figure(&report, "touch_pages", "faults") as f64;
    assert!(
        (faults - pages).abs() <= 0.2 * pages,
        "touch_pages faults {faults}, expected about {pages}"
    );
    // The full stack, leaf first, holds the site and goes on to its callers.
    for name in ["grow_brk", "grow_mmap", "grow_direct"] {
        let stack: Vec<&str> = site(&report, name)["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let at = stack.iter().position(|f| *f == name);
        assert!(at.is_some_and(|i| i + 1 < stack.len()), "{name}: {stack:?}");
    }

    // The folded file: the same figures as the report, per function, and in total.
    let text = std::fs::read_to_string(&folded).expect("the folded file");
    let lines = parse_folded(&text);
    let pid = p["pid"].as_u64().unwrap();
    for name in ["grow_brk", "grow_mmap", "grow_direct"] {
        assert_eq!(
            folded_sum(&lines, pid, name),
            figure(&report, name, "alloc_space"),
            "{name}: folded vs report\n{text}"
        );
    }
    // Outermost first: main comes before the site, the site before malloc's frames.
    let brk = lines
        .iter()
        .find(|(f, _)| f.iter().any(|f| f == "grow_brk"))
        .unwrap();
    let main = brk.0.iter().position(|f| f == "main");
    let grow = brk.0.iter().position(|f| f == "grow_brk");
    assert!(main < grow && main.is_some(), "{:?}", brk.0);
    let total: u64 = lines
        .iter()
        .filter(|(f, _)| f[0] == format!("callsites ({pid})"))
        .map(|(_, v)| v)
        .sum();
    let listed: u64 = sites
        .iter()
        .map(|s| s["alloc_space"].as_u64().unwrap())
        .sum();
    if p["call_sites_omitted"] == 0 {
        assert_eq!(total, listed, "every site is listed: the totals agree");
    }
}

#[test]
fn a_report_without_stacks_says_why_it_has_no_sites() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("outputs-off");
    let path = dir.join("off.json");
    let bin = workload("callsites");
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--report",
            path.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    let report = read_json(&path);
    assert_eq!(report["call_sites"]["enabled"], false);
    let reason = report["call_sites"]["reason"].as_str().expect("a reason");
    assert!(reason.contains("--stacks"), "{reason}");
    assert_eq!(
        workload_process(&report)["call_sites"],
        serde_json::json!([])
    );
}

/// Kills a `hold` workload when the test ends (it would wait forever).
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[test]
fn the_served_folded_stacks_match_the_served_report() {
    if !kernel_available() {
        return;
    }
    let (daemon, pid) = Daemon::run_workload(&["--stacks"], "callsites", &["hold"]);
    let _reap = Reap(pid);
    // SAFETY: kill takes no pointers.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
    // The work is done when the report has touch_pages's faults and grow_mmap's blocks freed
    // (the last step); the stack samples come on a ring of their own, so the two reads are
    // retried until they agree (the assertions judge the last two reads).
    let path = format!("/debug/pprof/faults?pid={pid}&format=folded");
    let site_figure = |report: &Value, name: &str, ty: &str| {
        workload_process(report)["call_sites"]
            .as_array()
            .and_then(|sites| sites.iter().find(|s| s["site"] == name))
            .and_then(|s| s[ty].as_u64())
    };
    let start = std::time::Instant::now();
    let (text, report) = loop {
        let text = daemon.get(&path);
        let report = daemon.get_json("/api/v1/report");
        let done = site_figure(&report, "touch_pages", "faults").is_some_and(|f| f > 4000)
            && site_figure(&report, "grow_mmap", "inuse_space") == Some(0);
        let agree = site_figure(&report, "touch_pages", "faults")
            == Some(folded_sum(
                &parse_folded(&text),
                u64::from(pid),
                "touch_pages",
            ));
        if (done && agree) || start.elapsed() > Duration::from_secs(20) {
            break (text, report);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = parse_folded(&text);
    assert_eq!(
        folded_sum(&lines, u64::from(pid), "touch_pages"),
        figure(&report, "touch_pages", "faults"),
        "faults of touch_pages: folded vs report\n{text}"
    );
    // The heap route shows the bytes still mapped: grow_brk's, not grow_mmap's (freed).
    let heap = parse_folded(&daemon.get(&format!("/debug/pprof/heap?pid={pid}&format=folded")));
    assert_eq!(
        folded_sum(&heap, u64::from(pid), "grow_brk"),
        figure(&report, "grow_brk", "inuse_space")
    );
    assert_eq!(folded_sum(&heap, u64::from(pid), "grow_mmap"), 0);
    // An unknown format is refused, not answered with something else.
    let url = format!("{}/debug/pprof/heap?pid={pid}&format=svg", daemon.api);
    match ureq::get(&url).call() {
        Err(ureq::Error::StatusCode(code)) => assert_eq!(code, 400),
        other => panic!("format=svg: expected 400, got {other:?}"),
    }
}

fn grown_lines(diff: &str) -> HashMap<String, String> {
    diff.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim_start().split_once(": alloc_space ")?;
            Some((name.to_string(), rest.to_string()))
        })
        .collect()
}

#[test]
fn diff_shows_the_site_that_grew() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("outputs-diff");
    let (small, _) = traced_run(&dir, "small", &["-q"], &["brk-mib=16"]);
    let (large, _) = traced_run(&dir, "large", &["-q"], &["brk-mib=48"]);
    let grew =
        figure(&large, "grow_brk", "alloc_space") - figure(&small, "grow_brk", "alloc_space");
    within("grow_brk growth", grew, 32.0 * MIB, 0.01);
    let out = run_tracer(
        &[
            "diff",
            dir.join("small.json").to_str().unwrap(),
            dir.join("large.json").to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains("call sites that grew"), "{text}");
    let lines = grown_lines(&text);
    let brk = lines.get("grow_brk").unwrap_or_else(|| panic!("{text}"));
    // Its old and new figures, from the reports.
    for value in [
        figure(&small, "grow_brk", "alloc_space"),
        figure(&large, "grow_brk", "alloc_space"),
        figure(&large, "grow_brk", "inuse_space"),
    ] {
        assert!(brk.contains(&format!("({value} bytes)")), "{brk}");
    }
    // Sites that mapped the same amounts did not grow.
    for same in ["grow_mmap", "grow_direct"] {
        assert!(!lines.contains_key(same), "{same} listed:\n{text}");
    }
    // The other way round nothing grew by grow_brk.
    let out = run_tracer(
        &[
            "diff",
            dir.join("large.json").to_str().unwrap(),
            dir.join("small.json").to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let back = String::from_utf8_lossy(&out.stdout);
    assert!(!grown_lines(&back).contains_key("grow_brk"), "{back}");
    // --fail-if-site: grow_brk grew by 32 MiB, grow_mmap not at all.
    let fail_if_site = |name: &str, expr: &str| {
        let out = run_tracer(
            &[
                "diff",
                dir.join("small.json").to_str().unwrap(),
                dir.join("large.json").to_str().unwrap(),
                "--fail-if-site",
                name,
                expr,
            ],
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    };
    let (code, text) = fail_if_site("grow_brk", "callsites:alloc_space>+30MiB");
    assert_eq!(code, Some(123), "{text}");
    let failed = text.lines().find(|l| l.starts_with("FAILED")).unwrap();
    assert!(
        failed.contains("--fail-if-site \"grow_brk\"") && failed.contains("alloc_space"),
        "{failed}"
    );
    let (code, text) = fail_if_site("grow_brk", "alloc_space>+34MiB");
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = fail_if_site("grow_mmap", "alloc_space>+0");
    assert_eq!(code, Some(0), "{text}");
    // A name in neither report fails: a typo must not pass.
    let (code, text) = fail_if_site("grow_bkr", "alloc_space>+1GiB");
    assert_eq!(code, Some(123), "{text}");
    let (code, _) = fail_if_site("grow_brk", "tree:alloc_space>1");
    assert_eq!(code, Some(2), "tree is refused");
    // The same comparison as JSON, with the same verdict.
    let out = run_tracer(
        &[
            "diff",
            "--json",
            dir.join("small.json").to_str().unwrap(),
            dir.join("large.json").to_str().unwrap(),
            "--fail-if-site",
            "grow_brk",
            "alloc_space>+30MiB",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(123));
    let json: Value = serde_json::from_slice(&out.stdout).expect("tracer diff --json is JSON");
    let pair = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "callsites")
        .unwrap_or_else(|| panic!("{json:#}"));
    let first = &pair["call_sites"]["grown"][0];
    assert_eq!(first["site"], "grow_brk", "{json:#}");
    assert_eq!(
        first["old_alloc"].as_u64(),
        Some(figure(&small, "grow_brk", "alloc_space"))
    );
    assert_eq!(
        first["new_inuse"].as_u64(),
        Some(figure(&large, "grow_brk", "inuse_space"))
    );
    let heap = pair["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["figure"] == "peak_heap")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(
        heap["new"].as_u64(),
        workload_process(&large)["figures"]["peak_heap"].as_u64()
    );
    assert_eq!(json["violations"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json["thresholds"], 1);
}

#[test]
fn a_check_file_bounds_a_site() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("outputs-check");
    let pass = dir.join("pass.toml");
    std::fs::write(
        &pass,
        "[[process]]\ncomm = \"callsites\"\n\n[process.sites.grow_brk]\n\
         min_inuse_space = \"31MiB\"\nmax_inuse_space = \"33MiB\"\n\n\
         [process.sites.grow_mmap]\nmax_inuse_space = \"1MiB\"\nmin_alloc_space = \"63MiB\"\n\n\
         [process.sites.touch_pages]\nmin_faults = 4000\n",
    )
    .unwrap();
    let fail = dir.join("fail.toml");
    std::fs::write(
        &fail,
        "[[process]]\ncomm = \"callsites\"\n\n[process.sites.grow_brk]\n\
         max_inuse_space = \"16MiB\"\n",
    )
    .unwrap();
    let bin = workload("callsites");
    let run = |check: &Path, extra: &[&str]| {
        let mut argv = vec!["run", "-q", "--check", check.to_str().unwrap()];
        argv.extend(extra);
        argv.extend(["--", bin.to_str().unwrap()]);
        let out = run_tracer(&argv, Duration::from_secs(60));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&pass, &["--stacks"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("5 passed, 0 failed"), "{stderr}");
    let (code, stderr) = run(&fail, &["--stacks"]);
    assert_eq!(code, Some(123), "{stderr}");
    let failed = stderr
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        failed.contains("grow_brk"),
        "the failure names the site: {failed}"
    );
    // A site beyond the report's top N fails as not found, saying how to see it.
    let (code, stderr) = run(&pass, &["--stacks", "--report-sites", "1"]);
    assert_eq!(code, Some(123), "{stderr}");
    assert!(
        stderr.contains("not in the report") && stderr.contains("raise --report-sites"),
        "{stderr}"
    );
    // Without --stacks a site bound cannot be checked: refused before tracing.
    let (code, stderr) = run(&pass, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--stacks"), "{stderr}");
    // And a report made without stacks fails the check, saying why.
    let report = dir.join("off.json");
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--report",
            report.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    let out = run_tracer(
        &[
            "check-report",
            report.to_str().unwrap(),
            "--check",
            pass.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(123), "{stderr}");
    assert!(
        stderr.contains("needs --stacks") && !stderr.contains("ok     "),
        "{stderr}"
    );
}
