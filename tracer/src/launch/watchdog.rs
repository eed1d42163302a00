//! A guard for `tracer run`'s exec stops: should the tracer die without ending them (SIGKILL,
//! the OOM killer), a small process it started beforehand continues every stopped process
//! below CMD. CMD itself is covered by its parent-death signal (launch.rs); this covers the
//! processes CMD starts, which the kernel does not tell about the tracer's death.
//!
//! The guard is the tracer's own binary run as `tracer __resume-on-death CMD_PID`, in its own
//! process group (a Ctrl-C or a kill of the tracer's group does not reach it), reading a pipe
//! only the tracer holds: a byte means "finished, nothing to do"; end of file without it means
//! the tracer died.

use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
};

/// The running guard, held by `tracer run` until it has ended every stop it made.
pub struct Guard {
    child: Child,
    pipe: std::io::PipeWriter,
}

impl Guard {
    /// Starts the guard of the tree below `cmd`. A guard that cannot start is not a reason to
    /// refuse tracing: it is logged.
    pub fn start(cmd: u32) -> Option<Guard> {
        let started = (|| {
            let (reader, writer) = std::io::pipe()?;
            let mut command = Command::new("/proc/self/exe");
            command
                .args([SUBCOMMAND, &cmd.to_string()])
                .stdin(reader)
                .stdout(Stdio::null())
                .process_group(0);
            // CMD pinned while it is our unreaped child, handed to the guard: once the tracer
            // is dead, CMD may exit and be reaped by init, and its pid go to another process.
            let pinned = crate::launch::pidfd::PidFd::open(cmd).ok();
            if let Some(fd) = &pinned {
                let fd = fd.as_raw_fd();
                command.env(PIDFD_ENV, fd.to_string());
                // SAFETY: fcntl is async-signal-safe; it clears close-on-exec in the guard's
                // copy of the descriptor only.
                unsafe {
                    command.pre_exec(move || {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let child = command.spawn()?;
            Ok::<_, std::io::Error>(Guard {
                child,
                pipe: writer,
            })
        })();
        started
            .map_err(|err| log::warn!("cannot start the exec-stop guard: {err}"))
            .ok()
    }

    /// Tracing ended normally (every stop was ended): the guard exits without doing anything.
    pub fn disarm(mut self) {
        let _ = self.pipe.write_all(b"x");
        drop(self.pipe);
        let _ = self.child.wait();
    }
}

/// The hidden subcommand that runs the guard.
pub const SUBCOMMAND: &str = "__resume-on-death";
/// The guard's inherited pidfd of CMD (its number), when the kernel has pidfds.
const PIDFD_ENV: &str = "TRACER_GUARD_PIDFD";

/// The guard's body: waits for the tracer to finish or die; on death, continues the stopped
/// processes below `cmd`. Returns the exit status.
pub fn guard(cmd: u32) -> i32 {
    let mut byte = [0u8; 1];
    let finished = loop {
        match std::io::stdin().read(&mut byte) {
            Ok(1) => break true,
            Ok(_) => break false,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    if finished {
        return 0;
    }
    let pinned = std::env::var(PIDFD_ENV)
        .ok()
        .and_then(|fd| fd.parse().ok())
        .and_then(crate::launch::pidfd::PidFd::inherited);
    if pinned.as_ref().is_some_and(|fd| !fd.alive()) {
        // CMD is gone: its pid may be another process's now, and the processes it left were
        // adopted elsewhere, out of reach of a walk from it.
        return 0;
    }
    // The tracer died. CMD got SIGCONT from the kernel; its descendants still hang below it.
    let mut resumed = crate::launch::resume_stopped_descendants(cmd);
    if crate::procfs::read_stat(cmd).is_ok_and(|s| s.state == 'T') {
        // Continuing the tracer's stopped command (through the pin when there is one).
        crate::launch::pidfd::send(pinned.as_ref(), cmd, libc::SIGCONT);
        resumed += 1;
    }
    if resumed > 0 {
        eprintln!("tracer: the tracer died; resumed {resumed} process(es) it had stopped");
    }
    0
}
