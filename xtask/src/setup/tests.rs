//! Setup is the single source of truth for the programs the tests run: every program (or
//! preloaded library) the integration tests start must come from a package in
//! `DEBIAN_PACKAGES`. Two checks keep that true:
//!
//! - `every_program_the_tests_run_has_a_package` scans the test sources for the programs they
//!   start and requires each in `TEST_PROGRAMS` with a package setup installs. It is pure: it
//!   fails on any machine, whatever happens to be installed there.
//! - `test_programs_come_from_their_packages` asks dpkg which package owns each program, so
//!   the table cannot name the wrong package. It needs a Debian machine after setup.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DEBIAN_PACKAGES;

/// Every program or library the tests start, as the tests name it, with the Debian package that
/// provides it (the owner dpkg reports, or a package of the list that depends on that owner).
const TEST_PROGRAMS: &[(&str, &str)] = &[
    // tests/build.rs compiles the workloads with `$CC`, by default `cc`.
    ("cc", "gcc"),
    ("true", "coreutils"),
    ("/bin/true", "coreutils"),
    ("/usr/bin/env", "coreutils"),
    ("env", "coreutils"),
    ("/bin/sleep", "coreutils"),
    ("/bin/cat", "coreutils"),
    ("cat", "coreutils"),
    ("sleep", "coreutils"),
    ("openssl", "openssl"),
    ("chromium", "chromium"),
    ("/usr/bin/redis-server", "redis-server"),
    // redis-server depends on redis-tools, which ships redis-benchmark.
    ("/usr/bin/redis-benchmark", "redis-server"),
    // Run inside shell scripts the tests start (the scanner does not parse shell).
    ("seq", "coreutils"),
    ("/bin/sh", "dash"),
    ("sh", "dash"),
    ("/usr/bin/dash", "dash"),
    ("/bin/bash", "bash"),
    ("mount", "mount"),
    ("/usr/bin/python3", "python3"),
    ("setpriv", "util-linux"),
    ("setarch", "util-linux"),
    ("unshare", "util-linux"),
    ("promtool", "prometheus"),
    // `go tool pprof` reads the profiles of --pprof and /debug/pprof in the call-site tests.
    ("go", "golang-go"),
    ("prometheus", "prometheus"),
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2"),
    (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
        "libmimalloc2.0",
    ),
];

/// Commands the tests name on purpose without them existing (the tracer's errors for them).
const NOT_PROGRAMS: &[&str] = &["/nonexistent/tool", "no-such-command-for-tracer"];

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// The Rust sources of the tests crate: its library, test files and build script.
fn test_sources() -> Vec<PathBuf> {
    let root = tests_dir();
    let mut files = vec![root.join("build.rs")];
    for dir in ["src", "tests"] {
        let mut entries: Vec<PathBuf> = fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.join(dir).display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    files
}

/// A string literal of a Rust source with the source text between it and the literal before.
struct Literal {
    before: String,
    value: String,
}

/// The string literals of `source` (plain, byte and raw; escapes are kept as written, which is
/// enough to spot program names). Comments and char literals are skipped.
fn literals(source: &str) -> Vec<Literal> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut before = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '"'); anything else is a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                continue;
            }
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let raw_start = if !ident_before && c == 'r' {
            Some(i + 1)
        } else if !ident_before && c == 'b' && next == Some('r') {
            Some(i + 2)
        } else {
            None
        };
        if let Some(mut j) = raw_start {
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let start = j + 1;
                let mut end = start;
                while end < chars.len() && !chars[end..].starts_with(&close) {
                    end += 1;
                }
                out.push(Literal {
                    before: std::mem::take(&mut before),
                    value: chars[start..end.min(chars.len())].iter().collect(),
                });
                i = end + close.len();
                continue;
            }
        }
        if c == '"' {
            let mut value = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    value.push(chars[i]);
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    value.push(ch);
                }
                i += 1;
            }
            i += 1;
            // A byte string's `b` prefix went into `before`; harmless.
            out.push(Literal {
                before: std::mem::take(&mut before),
                value,
            });
            continue;
        }
        before.push(c);
        i += 1;
    }
    out
}

/// Absolute paths of programs (`/bin/x`, `/usr/sbin/x`, ...) and shared libraries
/// (`/usr/lib/.../x.so.N`) anywhere in `text`, including inside shell or python scripts.
fn absolute_programs(text: &str, found: &mut BTreeSet<String>) {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "/._+-".contains(c);
    let mut rest = text;
    while let Some(at) = rest.find('/') {
        let preceded_by_path = at > 0 && rest[..at].chars().next_back().is_some_and(is_path_char);
        let tail = &rest[at..];
        let len = tail.find(|c| !is_path_char(c)).unwrap_or(tail.len());
        let path = &tail[..len];
        let program = ["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"]
            .iter()
            .any(|dir| {
                path.strip_prefix(dir)
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            });
        let library = path.starts_with("/usr/lib/") && path.contains(".so");
        if !preceded_by_path && (program || library) {
            found.insert(path.to_owned());
        }
        rest = &tail[len.max(1)..];
    }
}

/// The programs the test sources start: `Command::new("x")`, the command after a `"--"` (the
/// tracer's `run -- CMD`), and every absolute program or library path in a literal.
fn programs_in(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let literals = literals(source);
    for (n, literal) in literals.iter().enumerate() {
        absolute_programs(&literal.value, &mut found);
        if literal.before.trim_end().ends_with("Command::new(") {
            found.insert(literal.value.clone());
        }
        let after_dashes = n > 0
            && literals[n - 1].value == "--"
            && literal
                .before
                .chars()
                .all(|c| c == ',' || c.is_whitespace());
        if after_dashes {
            found.insert(literal.value.clone());
        }
    }
    found
}

fn setup_installs(package: &str) -> bool {
    DEBIAN_PACKAGES.iter().any(|&(name, _)| name == package)
}

#[test]
fn every_program_the_tests_run_has_a_package() {
    let mut problems = Vec::new();
    for file in test_sources() {
        let source = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for program in programs_in(&source) {
            if NOT_PROGRAMS.contains(&program.as_str()) {
                continue;
            }
            if !TEST_PROGRAMS.iter().any(|&(name, _)| name == program) {
                problems.push(format!(
                    "{} runs `{program}`, which TEST_PROGRAMS does not map to a package",
                    file.display()
                ));
            }
        }
    }
    for &(program, package) in TEST_PROGRAMS {
        if !setup_installs(package) {
            problems.push(format!(
                "the tests run `{program}` from package {package}, which setup's \
                 DEBIAN_PACKAGES does not install"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Where a program named without a directory is found: the system directories only, since
/// PATH on a developer machine may hold anything (pyenv shims, ~/.cargo/bin).
fn locate(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Some(PathBuf::from(program)).filter(|p| p.exists());
    }
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// The packages dpkg says own `path`. Merged /usr: dpkg may know a file by its /bin or by its
/// /usr/bin name, so both are asked.
fn owners(path: &Path) -> Vec<String> {
    let text = path.to_string_lossy();
    let mut names = vec![text.to_string()];
    if let Some(rest) = text.strip_prefix("/usr") {
        names.push(rest.to_owned());
    } else {
        names.push(format!("/usr{text}"));
    }
    let mut found = Vec::new();
    for name in names {
        let Ok(out) = Command::new("dpkg-query").args(["-S", &name]).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `pkg1:amd64, pkg2: /path`; `diversion by dash from: /bin/sh` names an owner too.
            let Some((packages, _)) = line.rsplit_once(": ") else {
                continue;
            };
            let packages = packages
                .strip_prefix("diversion by ")
                .and_then(|p| p.split(' ').next())
                .unwrap_or(packages);
            for package in packages.split(", ") {
                found.push(package.split(':').next().unwrap_or(package).to_owned());
            }
        }
    }
    found
}

/// The packages `package` depends on (`python3` installs `/usr/bin/python3` through
/// `python3-minimal`).
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Depends}, ${Pre-Depends}", package])
        .output()
        .expect("dpkg-query runs");
    String::from_utf8_lossy(&out.stdout)
        .split([',', '|'])
        .filter_map(|dep| dep.split_whitespace().next())
        .map(|dep| dep.split(':').next().unwrap_or(dep).to_owned())
        .collect()
}

#[test]
fn test_programs_come_from_their_packages() {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no dpkg-query here, so package ownership cannot be checked");
        return;
    }
    let mut problems = Vec::new();
    for &(program, package) in TEST_PROGRAMS {
        let Some(path) = locate(program) else {
            problems.push(format!(
                "`{program}` is not installed: `cargo xtask setup` installs it (package {package})"
            ));
            continue;
        };
        // Follow the symlink chain (alternatives: cc -> /etc/alternatives/cc -> gcc): the
        // package owns one link of it.
        let mut chain = vec![path.clone()];
        while let Ok(target) = fs::read_link(chain.last().unwrap()) {
            let parent = chain.last().unwrap().parent().unwrap().to_path_buf();
            chain.push(parent.join(target));
            if chain.len() > 10 {
                break;
            }
        }
        let owned: Vec<String> = chain.iter().flat_map(|link| owners(link)).collect();
        let deps = dependencies(package);
        if !owned
            .iter()
            .any(|owner| owner == package || deps.contains(owner))
        {
            problems.push(format!(
                "`{program}` ({}) belongs to {owned:?}, not to {package} or what it depends on",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_finds_the_ways_tests_start_programs() {
    let source = r##"
        // Command::new("commented")
        let a = Command::new("promtool").arg("x");
        let c = '"';
        run(&["run", "-q", "--", "true"], &x);
        run(&["--", program]);
        let s = r#"exec /usr/bin/python3 -c 'x' /tmp/usr/bin/nope"#;
        let l = "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libfoo.so.1";
    "##;
    let found: Vec<String> = programs_in(source).into_iter().collect();
    assert_eq!(
        found,
        [
            "/usr/bin/python3",
            "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
            "promtool",
            "true"
        ]
    );
}
