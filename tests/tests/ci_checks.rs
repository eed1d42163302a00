//! The CI mode on the real kernel: `--report`, `--check` (and its errors), `--junit`, phases,
//! `tracer diff`, and glibc malloc against jemalloc, tcmalloc and mimalloc on one workload.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use tests::*;

const LIMIT: Duration = Duration::from_secs(120);
const EXIT_USAGE: i32 = 2;
const EXIT_CHECK_FAILED: i32 = 123;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// `tracer run [options] -- CMD...`.
fn run(options: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "-q"];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(cmd);
    run_tracer(&args, LIMIT)
}

fn process<'a>(report: &'a Value, comm: &str) -> &'a Value {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"] == comm)
        .unwrap_or_else(|| panic!("no process {comm} in the report"))
}

/// The seed experiments, as a CI user would write them.
const SEED_CHECKS: &str = r#"
[[process]]
name = "malloc(1) grows the heap by exactly 132 KiB in one brk"
comm = "seed_demo"
largest_brk_growth = "132KiB"
brk_growths = 2  # malloc(1)'s, then the demo's own brk(b + 4)

[[process]]
name = "malloc(200 KiB); free(): one mmap and one munmap of the same length >= 128 KiB"
comm = "seed_demo"
large_mmaps = 1
large_munmaps = 1
large_mmaps_not_unmapped = 0
no_failed_mmap = true
no_failed_brk = true

[tree]
max_events_lost = 0
processes = 1
"#;

/// Runs the seed demo with `--check checks --junit junit` (and `more` options); returns the
/// exit status and stderr (printed). 16 pages: the demo's last mapping stays below 128 KiB, so
/// the 200 KiB block is its only large one.
fn seed_demo_checked(checks: &Path, junit: &Path, more: &[&str]) -> (Option<i32>, String) {
    let mut options = vec![
        "--check",
        checks.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ];
    options.extend_from_slice(more);
    let seed_demo = workload("seed_demo");
    let out = run(&options, &[seed_demo.to_str().unwrap(), "16"]);
    let stderr = text(&out.stderr);
    show_expected_failures(&stderr);
    (out.status.code(), stderr)
}

#[test]
fn the_seed_experiments_pass_as_checks_and_the_report_holds_them() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("seed-checks");
    let checks = write(&dir, "seed.toml", SEED_CHECKS);
    let report = dir.join("report.json");
    let junit = dir.join("junit.xml");
    let (status, stderr) =
        seed_demo_checked(&checks, &junit, &["--report", report.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("9 passed, 0 failed"), "{stderr}");

    let r = read_json(&report);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["exit_status"], 0);
    let p = process(&r, "seed_demo");
    assert_eq!(p["state"], "exited");
    assert_eq!(p["argv"][1], "16");
    let history = p["heap"]["history"].as_array().unwrap();
    assert_eq!(history[0]["size"], 0x21000, "{history:?}");
    // brk(b + 4) moves the break by 4 bytes.
    assert_eq!(history[1]["size"], 0x21004, "{history:?}");
    let lengths = p["mappings"]["lengths"].as_array().unwrap();
    let large: Vec<&Value> = lengths
        .iter()
        .filter(|l| l["bytes"].as_u64().unwrap() >= 128 * 1024)
        .collect();
    assert_eq!(large.len(), 1, "{lengths:?}");
    assert_eq!(large[0]["bytes"], 200 * 1024 + 4096, "{large:?}");
    assert_eq!(
        (&large[0]["anonymous_mmaps"], &large[0]["munmaps"]),
        (&1.into(), &1.into())
    );
    let bucket = p["mappings"]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["min_bytes"] == 128 * 1024)
        .unwrap();
    assert_eq!(bucket["anonymous"], 1);
    // 16 fresh pages touched: at least 16 faults. (Their region is not asserted: faults are
    // attributed to the region mapped there when the daemon looks, and this mapping may be
    // gone by then.)
    assert!(p["figures"]["faults"].as_u64().unwrap() >= 16, "{p}");
    assert!(!p["address_space"].as_array().unwrap().is_empty());
    assert_eq!(r["totals"]["figures"]["processes"], 1);

    let parsed = junit_summary(&junit);
    assert_eq!(
        parsed,
        "tests=9 failures=0",
        "{}",
        fs::read_to_string(&junit).unwrap()
    );
}

/// Parses JUnit XML with junitparser (a real consumer, Debian's python3-junitparser) and
/// returns its counts and every failure message.
fn junit_summary(path: &Path) -> String {
    const SCRIPT: &str = r#"
import sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
tests = failures = 0
messages = []
for suite in xml:
    for case in suite:
        tests += 1
        for r in case.result:
            if isinstance(r, Failure):
                failures += 1
                messages.append(case.name + ": " + r.message)
print(f"tests={tests} failures={failures}")
for m in messages:
    print(m)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .output()
        .expect("python3 (cargo xtask setup installs python3-junitparser)");
    assert!(
        out.status.success(),
        "junitparser failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn wrong_limits_fail_with_the_check_status_the_measured_value_and_junit() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("wrong-limits");
    let checks = write(
        &dir,
        "wrong.toml",
        "[[process]]\ncomm = \"seed_demo\"\nlargest_brk_growth = \"128KiB\"\n\
         max_peak_rss = \"64KiB\"\nlarge_mmaps = 1\n",
    );
    let junit = dir.join("junit.xml");
    let (status, stderr) = seed_demo_checked(&checks, &junit, &[]);
    assert_eq!(status, Some(EXIT_CHECK_FAILED), "{stderr}");
    assert!(stderr.contains("1 passed, 2 failed"), "{stderr}");
    let path = checks.display();
    assert!(
        stderr.contains(&format!(
            "FAILED {path}:3 [process comm = \"seed_demo\" (pid "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "largest_brk_growth = \"128KiB\": largest_brk_growth measured 132.0 KiB (135168 \
             bytes), limit exactly 128.0 KiB (131072 bytes)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("FAILED {path}:4")), "{stderr}");
    assert!(
        stderr.contains("a check failed: exit status 123"),
        "{stderr}"
    );

    let parsed = junit_summary(&junit);
    println!("{parsed}");
    assert!(parsed.starts_with("tests=3 failures=2"), "{parsed}");
    assert!(
        parsed.contains("largest_brk_growth = \"128KiB\": pid "),
        "{parsed}"
    );
    assert!(parsed.contains("limit at most 64.0 KiB"), "{parsed}");
}

/// A check file is validated before CMD runs: CMD would create `ran`.
#[test]
fn malformed_check_files_are_refused_before_the_command_runs() {
    let dir = scratch("malformed");
    let marker = dir.join("ran");
    let cmd = format!("touch {}", marker.display());
    let cases = [
        (
            "syntax.toml",
            "[[process]]\ncomm = \"x\"\nmax_peak_rss = \"64MiB\n",
            "line 3: not valid TOML",
        ),
        (
            "unknown.toml",
            "[[process]]\ncomm = \"x\"\n\nmax_peak_rs = \"64MiB\"\n",
            "line 4: unknown assertion `max_peak_rs`; did you mean `max_peak_rss`?",
        ),
        (
            "unit.toml",
            "[tree]\nmax_peak_heap = \"64MB\"\nmax_peak_rss = \"64Mib\"\n",
            "line 3: `max_peak_rss`: unknown unit `Mib` in `64Mib`; did you mean `MiB`?",
        ),
        (
            "count.toml",
            "[tree]\nmax_faults = \"10k\"\n",
            "line 2: `max_faults` is a count",
        ),
    ];
    for (name, contents, message) in cases {
        let checks = write(&dir, name, contents);
        let out = run(
            &["--check", checks.to_str().unwrap()],
            &["/bin/sh", "-c", &cmd],
        );
        let stderr = text(&out.stderr);
        println!("{name}: {stderr}");
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "tracer: check file {}, {message}",
                checks.display()
            )),
            "{name}: {stderr}"
        );
        assert!(!marker.exists(), "{name}: the command ran");
    }
    // An output that cannot be written is refused up front too.
    let out = run(
        &["--report", "/nonexistent-dir/report.json"],
        &["/bin/sh", "-c", &cmd],
    );
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out.stderr).contains("cannot write the report to /nonexistent-dir/report.json"));
    assert!(!marker.exists());
}

#[test]
fn phases_marked_by_the_program_are_checked() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("phases");
    let checks = write(
        &dir,
        "phases.toml",
        "[[process]]\ncomm = \"phase_marks\"\n\
         [process.phases.loaded]\nmin_rss = \"64MiB\"\nmin_vsz = \"64MiB\"\n\
         [process.phases.freed]\nmax_rss = \"16MiB\"\n",
    );
    let report = dir.join("report.json");
    let program = workload("phase_marks");
    let out = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--check",
            checks.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        &[program.to_str().unwrap(), "64"],
    );
    let stderr = text(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = read_json(&report);
    let phases = process(&r, "phase_marks")["phases"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = phases.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["loaded", "freed"]);
    assert!(phases[0]["rss"].as_u64() > phases[1]["rss"].as_u64());
}

/// One allocator configuration of the comparison.
struct Allocator {
    name: &'static str,
    /// Environment for the workload (`env` runs it with these).
    env: &'static [&'static str],
    /// The checks that hold for this allocator and distinguish it from the others.
    checks: &'static str,
}

const LIB: &str = "/usr/lib/x86_64-linux-gnu";

const ALLOCATORS: &[Allocator] = &[
    Allocator {
        name: "glibc",
        env: &[],
        // Small blocks from the brk heap, which it trims at free; each block of 128 KiB or
        // more is its own mmap, munmapped when freed.
        checks: "min_brk_growths = 10\nheap_returned_to_os = true\nmin_large_munmaps = 20\n\
                 large_mmaps_not_unmapped = 0\nmadvise_calls = 0\n",
    },
    Allocator {
        name: "jemalloc",
        env: &["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"],
        // No brk heap: its own chunks (extents of MiBs) by mmap, none given back within the
        // run (purging waits for its 10 s decay); it probes madvise at start-up. Before Linux
        // 6.7 the kernel does not place 2 MiB+ anonymous mappings on 2 MiB boundaries, and
        // jemalloc trims the misaligned ends of a few of its mappings (3 to 6 munmaps on 5.10 and
        // 6.1, none since).
        checks: "peak_heap = 0\nmin_largest_anonymous_mmap = \"2MiB\"\n\
                 max_largest_anonymous_mmap = \"16MiB\"\nmin_madvise_calls = 2\n\
                 max_madvise_calls = 10\nmax_large_munmaps = 8\n",
    },
    Allocator {
        name: "jemalloc-nodecay",
        env: &[
            "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
            "MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0",
        ],
        // The same with immediate purging: freed pages go back by madvise at once.
        // (How many misaligned ends it trims before 6.7 varies here: 3 to 6 on 5.10.)
        checks: "peak_heap = 0\nmin_madvise_calls = 100\n",
    },
    Allocator {
        name: "tcmalloc",
        env: &["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"],
        // Grows the brk heap (sbrk first) and never gives it back: no shrink, no munmap of
        // freed blocks, no madvise.
        checks: "min_brk_growths = 10\nbrk_shrinks = 0\nlarge_munmaps = 0\nmadvise_calls = 0\n\
                 min_heap_at_end = \"8MiB\"\n",
    },
    Allocator {
        name: "mimalloc",
        env: &["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"],
        // No brk heap: 32 MiB segments reserved by mmap, nothing unmapped within the run. (It
        // purges freed pages with madvise after a delay, so how many depends on how long the
        // run takes: not asserted.)
        checks: "peak_heap = 0\nmin_largest_anonymous_mmap = \"32MiB\"\nlarge_munmaps = 0\n",
    },
];

fn check_file(a: &Allocator) -> String {
    format!(
        "[[process]]\nname = \"{}\"\ncomm = \"alloc_phases\"\nno_failed_mmap = true\n{}",
        a.name, a.checks
    )
}

#[test]
fn real_allocators_differ_in_ways_the_checks_tell_apart() {
    if !kernel_available() {
        return;
    }
    for lib in [
        "libjemalloc.so.2",
        "libtcmalloc_minimal.so.4",
        "libmimalloc.so.2",
    ] {
        assert!(
            Path::new(LIB).join(lib).exists(),
            "{LIB}/{lib} is missing: `cargo xtask setup` installs it"
        );
    }
    let dir = scratch("allocators");
    let program = workload("alloc_phases");
    let mut reports = Vec::new();
    println!(
        "{:<17} {:>6} {:>7} {:>5} {:>6} {:>7} {:>6} {:>7} {:>10} {:>10} {:>10} {:>6}",
        "allocator",
        "brk+",
        "brk-",
        "mmap",
        "munmap",
        "madvise",
        "large",
        "large-",
        "largest",
        "peak_heap",
        "peak_rss",
        "faults"
    );
    for a in ALLOCATORS {
        let checks = write(&dir, &format!("{}.toml", a.name), &check_file(a));
        let report = dir.join(format!("{}.json", a.name));
        let mut cmd = vec!["/usr/bin/env"];
        cmd.extend_from_slice(a.env);
        cmd.extend_from_slice(&[program.to_str().unwrap(), "5"]);
        let out = run(
            &[
                "--report",
                report.to_str().unwrap(),
                "--check",
                checks.to_str().unwrap(),
            ],
            &cmd,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", a.name);
        let r = read_json(&report);
        let f = &process(&r, "alloc_phases")["figures"];
        let n = |name: &str| f[name].as_u64().unwrap();
        println!(
            "{:<17} {:>6} {:>7} {:>5} {:>6} {:>7} {:>6} {:>7} {:>10} {:>10} {:>10} {:>6}",
            a.name,
            n("brk_growths"),
            n("brk_shrinks"),
            n("mmap_calls"),
            n("munmap_calls"),
            n("madvise_calls"),
            n("large_mmaps"),
            n("large_munmaps"),
            n("largest_anonymous_mmap"),
            n("peak_heap"),
            n("peak_rss"),
            n("faults")
        );
        assert_eq!(r["events"]["lost_total"], 0);
        reports.push((a, report));
    }
    // Each allocator's checks fail on every other allocator's report: the figures tell them
    // apart (checked offline with `tracer check-report`).
    for (a, _) in &reports {
        let checks = dir.join(format!("{}.toml", a.name));
        for (b, report) in &reports {
            let out = run_tracer(
                &[
                    "check-report",
                    report.to_str().unwrap(),
                    "--check",
                    checks.to_str().unwrap(),
                ],
                LIMIT,
            );
            let expected = if a.name == b.name {
                0
            } else {
                EXIT_CHECK_FAILED
            };
            assert_eq!(
                out.status.code(),
                Some(expected),
                "{}'s checks on {}'s report:\n{}",
                a.name,
                b.name,
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn diff_flags_a_workload_changed_to_leak() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("diff");
    let program = workload("alloc_phases");
    let report = |name: &str, args: &[&str]| {
        let path = dir.join(name);
        let mut cmd = vec![program.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let out = run(&["--report", path.to_str().unwrap()], &cmd);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        path
    };
    let main = report("main.json", &["4"]);
    let again = report("again.json", &["4"]);
    let leak = report("leak.json", &["4", "leak"]);
    let diff = |old: &Path, new: &Path| {
        run_tracer(
            &[
                "diff",
                old.to_str().unwrap(),
                new.to_str().unwrap(),
                "--fail-if",
                "alloc_phases:peak_rss>50%",
                "--fail-if",
                "peak_vsz>+16MiB",
            ],
            LIMIT,
        )
    };
    let same = diff(&main, &again);
    println!("{}", text(&same.stdout));
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    assert!(text(&same.stdout).contains("within every threshold (2)"));

    let leaked = diff(&main, &leak);
    let stdout = text(&leaked.stdout);
    show_expected_failures(&stdout);
    assert_eq!(leaked.status.code(), Some(EXIT_CHECK_FAILED), "{stdout}");
    assert!(
        stdout.contains("FAILED --fail-if 'alloc_phases:peak_rss>50%': process alloc_phases"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED --fail-if 'peak_vsz>+16MiB': tree"),
        "{stdout}"
    );

    // Bad input to diff: a figure that does not exist, a file that is not a report.
    let out = run_tracer(
        &[
            "diff",
            main.to_str().unwrap(),
            leak.to_str().unwrap(),
            "--fail-if",
            "peak_rs>1%",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out.stderr).contains("unknown figure `peak_rs`"));
    let junk = write(&dir, "junk.json", "{\"hello\": 1}");
    let out = run_tracer(
        &["diff", main.to_str().unwrap(), junk.to_str().unwrap()],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(text(&out.stderr).contains("no schema_version: not a tracer report"));
}
