//! Starting the command of `tracer run` so that it is traced from its first instruction:
//! fork, let the child wait on a pipe while the parent adds its pid to the traced set, then
//! let it execve. Only async-signal-safe calls happen in the child between fork and exec.

pub mod pidfd;
pub mod watchdog;

use std::{
    ffi::{CString, OsStr, OsString},
    io,
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("cannot execute {path}: {source}")]
    CannotExecute { path: String, source: io::Error },
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(OsString),
    #[error("{call} failed: {source}")]
    Sys {
        call: &'static str,
        source: io::Error,
    },
}

/// A command ready to be forked: everything the child needs is allocated beforehand.
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    pub display: String,
    no_aslr: bool,
    /// The descriptor limit to give back to CMD (the tracer raised its own).
    nofile: Option<libc::rlimit>,
    /// Signals CMD starts with ignored: those the tracer itself was started with ignored.
    ignored: Vec<libc::c_int>,
}

/// Highest signal number on Linux (SIGRTMAX).
const MAX_SIGNAL: libc::c_int = 64;

/// The signals ignored when the tracer started (`nohup` ignores SIGHUP), which CMD inherits
/// as it would untraced. SIGPIPE is left out: the Rust runtime ignores it before `main`, so
/// whether the tracer's parent did cannot be seen; a command starts with it at its default,
/// as a shell starts it.
static INHERITED_IGNORED: OnceLock<Vec<libc::c_int>> = OnceLock::new();

/// Whether the tracer was started with `sig` ignored (after `note_inherited_dispositions`).
pub fn was_ignored(sig: libc::c_int) -> bool {
    INHERITED_IGNORED
        .get()
        .is_some_and(|ignored| ignored.contains(&sig))
}

/// Records which signals the tracer was started with ignored; call first thing in `main`,
/// before anything installs a handler.
pub fn note_inherited_dispositions() {
    INHERITED_IGNORED.get_or_init(|| {
        (1..=MAX_SIGNAL)
            .filter(|&sig| sig != libc::SIGPIPE)
            .filter(|&sig| {
                // SAFETY: querying (not changing) a disposition into a zeroed struct.
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
                rc == 0 && old.sa_sigaction == libc::SIG_IGN
            })
            .collect()
    });
}

/// Finds `program` like execvp would: as given if it contains a slash, else along PATH.
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn c_string(s: impl Into<OsString>) -> Result<CString, LaunchError> {
    let s = s.into();
    CString::new(s.clone().into_vec()).map_err(|_| LaunchError::Nul(s))
}

impl Prepared {
    pub fn new(command: &[OsString], no_aslr: bool) -> Result<Prepared, LaunchError> {
        let program = command
            .first()
            .ok_or_else(|| LaunchError::NotFound(String::new()))?;
        let path = resolve(program, std::env::var_os("PATH").as_deref())
            .ok_or_else(|| LaunchError::NotFound(program.to_string_lossy().into_owned()))?;
        if !path.exists() {
            return Err(LaunchError::NotFound(path.display().to_string()));
        }
        let argv = command
            .iter()
            .map(|a| c_string(a.clone()))
            .collect::<Result<_, _>>()?;
        let envp = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                c_string(kv)
            })
            .collect::<Result<_, _>>()?;
        Ok(Prepared {
            display: path.display().to_string(),
            path: c_string(path)?,
            argv,
            envp,
            no_aslr,
            nofile: crate::kernel::preflight::original_nofile_limit(),
            ignored: INHERITED_IGNORED.get().cloned().unwrap_or_default(),
        })
    }

    /// Sets (or replaces) a variable in CMD's environment.
    pub fn set_env(&mut self, key: &str, value: &str) -> Result<(), LaunchError> {
        let prefix = format!("{key}=");
        self.envp
            .retain(|kv| !kv.as_bytes().starts_with(prefix.as_bytes()));
        self.envp.push(c_string(format!("{key}={value}"))?);
        Ok(())
    }

    /// Forks a child that waits for `Gated::release` before it executes the command.
    pub fn spawn_gated(&self) -> Result<Gated, LaunchError> {
        let (go_read, go_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: fork has no preconditions; the child only makes async-signal-safe calls
        // (close, personality, setrlimit, sigaction, sigprocmask, prctl, getppid, read, execve,
        // write, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys("fork"));
        }
        if pid == 0 {
            // SAFETY: see above; this never returns.
            unsafe {
                libc::close(go_write);
                libc::close(err_read);
                child_wait_and_exec(go_read, err_write, parent, self, &argv, &envp)
            }
        }
        // SAFETY: closing our copies of the child's ends.
        unsafe {
            libc::close(go_read);
            libc::close(err_write);
        }
        Ok(Gated {
            pid: pid as u32,
            go_write,
            err_read,
            display: self.display.clone(),
        })
    }
}

/// # Safety
/// Runs in a freshly forked child: only async-signal-safe calls.
unsafe fn child_wait_and_exec(
    go: libc::c_int,
    err: libc::c_int,
    parent: libc::pid_t,
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: plain syscalls on valid descriptors and prepared memory.
    unsafe {
        if prepared.no_aslr {
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
        }
        if let Some(limit) = &prepared.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        // CMD starts with the dispositions it would have untraced: the tracer's handlers are
        // reset by execve anyway, but what it ignores (SIGPIPE, by the Rust runtime) would be
        // inherited. The numbers glibc reserves for itself are refused by sigaction: harmless.
        for sig in 1..=MAX_SIGNAL {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = if prepared.ignored.contains(&sig) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        // The tracer's runtime may block signals in some threads; the command starts clean.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Should the tracer die (SIGKILL, the OOM killer) while CMD is stopped at its exec,
        // the kernel continues CMD: a stop nobody will resume must not outlive the tracer.
        // SIGCONT is harmless to a running CMD. The fork runs on the tracer's main thread
        // (single-threaded runtime), whose exit is the process's, so it fires only then.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGCONT as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            // The tracer died before the prctl: do not run untraced.
            libc::_exit(125);
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(go, (&raw mut byte).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // The tracer went away before releasing us: do not run untraced.
            libc::_exit(125);
        }
        libc::close(go);
        libc::execve(prepared.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let errno = *libc::__errno_location();
        libc::write(err, (&raw const errno).cast(), size_of::<libc::c_int>());
        libc::_exit(127);
    }
}

/// A forked child waiting to be released.
pub struct Gated {
    pid: u32,
    go_write: libc::c_int,
    err_read: libc::c_int,
    display: String,
}

impl Gated {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child execute the command; reports an exec failure.
    pub fn release(self) -> Result<u32, LaunchError> {
        let byte = 1u8;
        // SAFETY: writing one byte to our pipe end, then reading the error pipe until EOF
        // (the write end is close-on-exec, so EOF means the exec succeeded).
        unsafe {
            libc::write(self.go_write, (&raw const byte).cast(), 1);
            libc::close(self.go_write);
            let mut errno: libc::c_int = 0;
            let n = loop {
                let n = libc::read(
                    self.err_read,
                    (&raw mut errno).cast(),
                    size_of::<libc::c_int>(),
                );
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break n;
            };
            libc::close(self.err_read);
            if n == size_of::<libc::c_int>() as isize {
                let source = io::Error::from_raw_os_error(errno);
                wait_status(self.pid);
                return Err(match errno {
                    libc::ENOENT => LaunchError::NotFound(self.display),
                    _ => LaunchError::CannotExecute {
                        path: self.display,
                        source,
                    },
                });
            }
        }
        Ok(self.pid)
    }

    /// Kills the waiting child (tracing could not start).
    pub fn abort(self) {
        // SAFETY: our own child; reaping it avoids a zombie.
        unsafe {
            libc::close(self.go_write);
            libc::close(self.err_read);
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        wait_status(self.pid);
    }
}

/// Waits for child `pid` to terminate; returns its status the way a shell reports it
/// (exit code, or 128 + signal number).
pub fn wait_status(pid: u32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        if rc >= 0 {
            break;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

/// Continues every stopped process below `root` in the process tree (after a crash of the
/// tracer: the exec stops it made have nobody left to end them). Returns how many. Two passes,
/// since a stop the probe sent just before it was detached may take effect after the first.
pub fn resume_stopped_descendants(root: u32) -> usize {
    let mut resumed = std::collections::BTreeSet::new();
    for pass in 0..2 {
        if pass > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for pid in stopped_descendants(root) {
            // By pidfd, checked again once pinned: the walk read /proc by pid.
            if crate::launch::pidfd::continue_stopped_below(pid, root) {
                resumed.insert(pid);
            }
        }
    }
    resumed.len()
}

/// Processes in state T below `root`, from a walk over /proc.
fn stopped_descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let stats: Vec<crate::procfs::Stat> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| crate::procfs::read_stat(pid).ok())
        .collect();
    let mut below = vec![root];
    let mut stopped = Vec::new();
    while let Some(parent) = below.pop() {
        for s in stats.iter().filter(|s| s.ppid == parent && s.pid != root) {
            below.push(s.pid);
            if s.state == 'T' {
                stopped.push(s.pid);
            }
        }
    }
    stopped
}

fn pipe() -> Result<(libc::c_int, libc::c_int), LaunchError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("pipe2"));
    }
    Ok((fds[0], fds[1]))
}

fn sys(call: &'static str) -> LaunchError {
    LaunchError::Sys {
        call,
        source: io::Error::last_os_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_along_path_and_keeps_slashed_names() {
        let found = resolve(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin:/usr/bin")),
        );
        assert!(found.unwrap().ends_with("sh"));
        assert_eq!(
            resolve(OsStr::new("no-such-tool-x"), Some(OsStr::new("/bin"))),
            None
        );
        assert_eq!(resolve(OsStr::new("./x"), None), Some(PathBuf::from("./x")));
    }

    #[test]
    fn gated_child_runs_only_after_release() {
        let dir = std::env::temp_dir().join(format!("tracer-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("ran");
        let cmd: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("touch {}", marker.display()).into(),
        ];
        let gated = Prepared::new(&cmd, false).unwrap().spawn_gated().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!marker.exists(), "child ran before release");
        let pid = gated.release().unwrap();
        assert_eq!(wait_status(pid), 0);
        assert!(marker.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stopped_descendants_are_resumed() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -STOP $$; exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let state = || crate::procfs::read_stat(pid).map(|s| s.state).ok();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state() != Some('T') {
            assert!(std::time::Instant::now() < deadline, "sh did not stop");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(resume_stopped_descendants(std::process::id()) >= 1);
        assert_eq!(child.wait().unwrap().code(), Some(7));
    }

    #[test]
    fn exec_failure_is_reported() {
        let dir = std::env::temp_dir().join(format!("tracer-noexec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-executable");
        std::fs::write(&file, "data").unwrap();
        let cmd: Vec<OsString> = vec![file.clone().into()];
        let gated = Prepared::new(&cmd, false).unwrap().spawn_gated().unwrap();
        assert!(matches!(
            gated.release(),
            Err(LaunchError::CannotExecute { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
