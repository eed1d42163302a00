//! Signals by pidfd (Linux 5.3): a pidfd names one process, not a number the kernel may hand to
//! another process once the first is reaped, so a signal sent through it never reaches a
//! process that merely reused the pid. Each caller pins the process (opens the pidfd) at a
//! moment it knows the pid is the right one: its own unreaped child, or right after checking
//! the process through /proc.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::procfs;

#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Pins the process that has `pid` now.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned by nobody else.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// A pidfd inherited under the number `fd` (see `watchdog`); None unless it is one.
    pub fn inherited(fd: RawFd) -> Option<PidFd> {
        // A pidfd's /proc/self/fd link reads `anon_inode:[pidfd]`.
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        if link.as_os_str() != "anon_inode:[pidfd]" {
            return None;
        }
        // SAFETY: the descriptor is open (its link exists) and was handed to this process to own.
        Some(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `signal` to the pinned process: ESRCH once it has exited, whoever has its pid now.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with no siginfo (null) and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the pinned process is still alive (not yet a zombie or reaped).
    pub fn alive(&self) -> bool {
        self.signal(0).is_ok()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Sends `signal` to `pid` through a pidfd when `pidfd` is given, else by pid (a kernel before
/// 5.3, where opening the pidfd failed).
pub fn send(pidfd: Option<&PidFd>, pid: u32, signal: i32) {
    match pidfd {
        Some(fd) => {
            let _ = fd.signal(signal);
        }
        None => {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }
}

/// Continues `pid` if it is still a stopped descendant of `root` once pinned: the check runs
/// after the pin, so the process checked is the one signalled. False if it was not continued.
pub fn continue_stopped_below(pid: u32, root: u32) -> bool {
    let Ok(fd) = PidFd::open(pid) else {
        return false;
    };
    let stopped = procfs::read_stat(pid).is_ok_and(|s| s.state == 'T');
    if !stopped || !descends_from(pid, root) || !fd.alive() {
        return false;
    }
    fd.signal(libc::SIGCONT).is_ok()
}

/// Whether `root` is an ancestor of `pid` (walking ppid links; bounded against a loop).
fn descends_from(pid: u32, root: u32) -> bool {
    let mut at = pid;
    for _ in 0..4096 {
        let Ok(stat) = procfs::read_stat(at) else {
            return false;
        };
        if stat.ppid == root {
            return true;
        }
        if stat.ppid <= 1 {
            return false;
        }
        at = stat.ppid;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_pidfd_does_not_reach_a_process_after_it_is_reaped() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let fd = PidFd::open(child.id()).unwrap();
        assert!(fd.alive());
        child.kill().unwrap();
        child.wait().unwrap();
        // Reaped: whatever gets the pid next, the pidfd refers to the dead one.
        let err = fd.signal(libc::SIGCONT).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        assert!(!fd.alive());
    }

    #[test]
    fn only_a_stopped_descendant_is_continued() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let me = std::process::id();
        // Running: not continued.
        assert!(!continue_stopped_below(pid, me));
        // SAFETY: stopping our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        while procfs::read_stat(pid).unwrap().state != 'T' {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Stopped, but not below pid 1's other child: not continued.
        assert!(!continue_stopped_below(pid, u32::MAX));
        assert!(continue_stopped_below(pid, me));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
