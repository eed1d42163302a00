//! Output files written by root: a symlink, FIFO or directory at the path given to `--report`,
//! `--junit` or `--events` (or `check-report --junit`) is refused with exit status 2 before
//! anything runs, and what it points to is left exactly as it was.

use std::{
    fs,
    io::Read,
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const EXIT_USAGE: i32 = 2;

/// A passing check file, so that `--junit` is accepted.
fn checks(dir: &Path) -> PathBuf {
    let path = dir.join("checks.toml");
    fs::write(&path, "[tree]\nmax_faults = 1000000000\n").unwrap();
    path
}

/// The ways of giving `path` as an output, each with the tracer's arguments.
fn invocations(path: &str, checks: &str, report: &str) -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        (
            "run --report",
            s(&["run", "-q", "--report", path, "--", "true"]),
        ),
        (
            "run --events",
            s(&["run", "-q", "--events", path, "--", "true"]),
        ),
        (
            "run --junit",
            s(&[
                "run", "-q", "--check", checks, "--junit", path, "--", "true",
            ]),
        ),
        (
            "check-report --junit",
            s(&["check-report", report, "--check", checks, "--junit", path]),
        ),
    ]
}

/// Runs each invocation and asserts exit status 2 with a message naming the path.
fn refused(what: &str, path: &Path, dir: &Path, mut after_each: impl FnMut(&str)) {
    let checks = checks(dir);
    let report = dir.join("saved-report.json");
    let out = run_tracer(
        &[
            "run",
            "-q",
            "--report",
            report.to_str().unwrap(),
            "--",
            "true",
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, args) in invocations(
        path.to_str().unwrap(),
        checks.to_str().unwrap(),
        report.to_str().unwrap(),
    ) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_tracer(&args, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{what}, {name}: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(EXIT_USAGE),
            "{what}, {name}: {stderr}"
        );
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(what),
            "{what}, {name}: the message must name the path and say why: {stderr}"
        );
        after_each(name);
    }
}

/// Names in `dir` that are not in `expected` (temporary files left behind).
fn strays(dir: &Path, expected: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_symlink_is_not_followed() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("out-symlink");
    let victim = dir.join("victim");
    fs::write(&victim, "root's secret\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("out.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    refused("symbolic link", &link, &dir, |name| {
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "root's secret\n",
            "{name} wrote through the symlink"
        );
        assert_eq!(
            fs::metadata(&victim).unwrap().mode() & 0o777,
            0o600,
            "{name}"
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}"
        );
    });
    let left = strays(
        &dir,
        &["victim", "out.json", "checks.toml", "saved-report.json"],
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_fifo_is_not_written_to() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("out-fifo");
    let fifo = dir.join("out.json");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Our own reader end (read-write, non-blocking): a tracer that wrote to the FIFO would
    // neither block nor go unnoticed.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    refused("FIFO", &fifo, &dir, |name| {
        let mut buf = [0u8; 4096];
        match reader.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{name} wrote to the FIFO: {other:?}"),
        }
        assert!(
            fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
            "{name}"
        );
    });
}

#[test]
fn a_directory_is_left_alone() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("out-dir");
    let target = dir.join("out.json");
    fs::create_dir(&target).unwrap();
    refused("directory", &target, &dir, |name| {
        assert!(fs::metadata(&target).unwrap().is_dir(), "{name}");
        assert_eq!(strays(&target, &[]), Vec::<String>::new(), "{name}");
    });
}
