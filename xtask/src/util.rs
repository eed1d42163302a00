//! Helpers shared by the subcommands: progress messages, workspace paths, running programs.

use std::env;
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result, bail};

/// Prints one progress line. The prefix tells xtask's own lines apart from cargo's and the
/// tracer's; stderr keeps them out of the tracer's stdout, which may be piped into a tool.
pub fn say(msg: impl Display) {
    eprintln!("xtask: {msg}");
}

/// The workspace root: xtask always lives at `<root>/xtask`. The path is baked in at compile
/// time so that it does not depend on the directory `cargo xtask` is started from.
pub fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent directory", manifest_dir.display()))
}

/// Where cargo puts build outputs. Honours `CARGO_TARGET_DIR` like cargo does; a relative value
/// is relative to the directory cargo runs in, which is the root for every cargo we start.
pub fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A cargo command run from the workspace root. `cargo xtask` is `cargo run`, which sets
/// `CARGO` to the cargo of the toolchain in use: reusing it keeps nested builds on that toolchain.
pub fn cargo(root: &Path) -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// Runs a command with inherited stdio after echoing it; fails unless it exits with 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = run_status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({})", describe(cmd), describe_status(status));
    }
    Ok(())
}

/// Runs a command with inherited stdio after echoing it, and hands back how it ended, for
/// callers that propagate the exit code instead of failing.
pub fn run_status(cmd: &mut Command) -> Result<ExitStatus> {
    say(format_args!("running: {}", describe(cmd)));
    cmd.status()
        .with_context(|| format!("could not start `{}`", cmd.get_program().to_string_lossy()))
}

/// Runs a probing command quietly and returns its stdout. Its stderr goes into the error, since
/// that is where tools explain why they failed.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .output()
        .with_context(|| format!("could not start `{}`", cmd.get_program().to_string_lossy()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            describe_status(output.status),
            stderr.trim()
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", describe(cmd)))
}

/// The exit code a shell would report for a child: its own code, or 128+N when signal N killed
/// it, so that `cargo xtask run` looks to callers exactly like running the tracer directly.
pub fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // Unix exit codes are 0..=255; the fallback only guards the conversion.
        u8::try_from(code).unwrap_or(1)
    } else if let Some(signal) = status.signal() {
        u8::try_from(128 + signal).unwrap_or(255)
    } else {
        1
    }
}

/// Human wording for how a child ended, for error messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Whether the effective uid is 0: that, not the real uid, is what the kernel checks to load BPF
/// programs and what apt-get needs. /proc/self/status has it without unsafe libc calls.
pub fn is_root() -> Result<bool> {
    let from_proc = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            // "Uid:" is followed by the real, effective, saved and filesystem uids.
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        });
    match from_proc {
        Some(root) => Ok(root),
        // Without /proc (odd containers), `id -u` also prints the effective uid.
        None => Ok(capture(Command::new("id").arg("-u"))
            .context("could not tell whether we run as root")?
            .trim()
            == "0"),
    }
}

/// The first executable file called `name` in a directory of `PATH`, like a shell finds it.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The home directory, where rustup, cargo and our caches live.
pub fn home_dir() -> Result<PathBuf> {
    match env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => bail!("HOME is not set; cannot locate ~/.cargo and ~/.cache"),
    }
}

/// A command as a line one can paste into a shell, environment changes included, so that a
/// failing step can be rerun by hand.
pub fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    // `env -u` options must come before the assignments, hence two passes.
    let removed: Vec<_> = cmd
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .collect();
    if !removed.is_empty() {
        parts.push("env".to_owned());
    }
    for (key, _) in removed {
        parts.push(format!("-u {}", key.to_string_lossy()));
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// Shell-quotes a word only when it needs it, to keep the echoed commands readable.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Compiles a C workload with the flags on its first line (`// build: <flags>`), as
/// `tests/build.rs` does, so the demo, the benchmarks and the tests build programs alike.
pub fn compile_workload(source: &Path, binary: &Path) -> Result<()> {
    let text = fs::read_to_string(source)
        .with_context(|| format!("could not read {}", source.display()))?;
    let flags = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("// build:"))
        .with_context(|| format!("{} must start with `// build: <flags>`", source.display()))?;
    run(Command::new("cc")
        .args(flags.split_whitespace())
        .args(["-Wall", "-Werror", "-o"])
        .arg(binary)
        .arg(source))
    .with_context(|| {
        format!(
            "could not compile {} (is gcc installed? try `cargo xtask setup`)",
            source.display()
        )
    })
}
