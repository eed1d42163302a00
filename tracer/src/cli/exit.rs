//! The tracer's own failures and the exit status each one maps to.

use thiserror::Error;

use crate::{kernel::probes::ProbeError, launch::LaunchError};

/// Invalid invocation: bad arguments, no such process, a kernel thread, a target that exited
/// during attach, a --listen address that cannot be bound. (clap's usage errors use 2 too.)
pub const EXIT_USAGE: i32 = 2;
/// A `--check` assertion failed (or `tracer diff` found a threshold exceeded). Chosen outside
/// the codes shells and CMDs commonly use (1, 2, 126-128+N) and next to 124 (timeout).
pub const EXIT_CHECK_FAILED: i32 = 123;
/// The tracer hit a bug (a panic): it resumed every process it had stopped and gave up.
/// EX_SOFTWARE of sysexits.h.
pub const EXIT_INTERNAL_ERROR: i32 = 70;
/// Tracing itself failed: missing capability or kernel feature, probes not loadable.
pub const EXIT_TRACING_FAILED: i32 = 125;
/// CMD was found but could not be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// CMD was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

pub const EXIT_CODES_HELP: &str = "\
Exit status:
  run      CMD's own exit status (128+N if CMD was killed by signal N), unless:
  2        invalid invocation: bad option, no such process, kernel thread, target exited
           during attach, --listen address unusable (e.g. port already in use), malformed
           --check file (reported with its line before anything starts), --report, --junit
           or --events path not writable or not a regular file (a symlink, FIFO, device or
           directory there is refused, never written through)
  70       internal error (a bug in the tracer): every process it had stopped was resumed
  123      a --check assertion failed (even if CMD itself failed: the summary says so)
  125      tracing failed: missing capability or kernel feature (tracefs, tracepoint),
           probes could not be loaded or attached
  126      CMD could not be executed
  127      CMD was not found
  attach   0 when tracing ended normally (signal, or every target exited)";

#[derive(Debug, Error)]
pub enum TracerError {
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("process {0} is a kernel thread: it has no user address space to trace")]
    KernelThread(u32),
    #[error("process {0} exited during attach")]
    ExitedDuringAttach(u32),
    #[error(
        "missing capability {missing}: loading eBPF probes needs CAP_BPF and CAP_PERFMON (or \
         CAP_SYS_ADMIN); run as root, or grant them with `setcap \
         cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep tracer`"
    )]
    MissingCapability { missing: String },
    #[error("cannot listen on {addr}: {err}")]
    Listen {
        addr: crate::server::listener::ListenAddr,
        err: std::io::Error,
    },
    #[error(transparent)]
    Probes(#[from] ProbeError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A check file, report or output path that cannot be used.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Io(String),
    /// A system call the tracer needs failed; the OS error is the source.
    #[error("{what}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An output file (report, JUnit, HTML page) could not be written; the cause is the source.
    #[error("{what}")]
    Write {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TracerError {
    /// For `map_err`: a failed system call, described by what the tracer was doing.
    pub fn os(what: &str) -> impl FnOnce(std::io::Error) -> TracerError + '_ {
        move |source| TracerError::Os {
            what: what.to_string(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            TracerError::NoSuchProcess(_)
            | TracerError::KernelThread(_)
            | TracerError::ExitedDuringAttach(_)
            | TracerError::Listen { .. }
            | TracerError::BadInput(_) => EXIT_USAGE,
            TracerError::MissingCapability { .. }
            | TracerError::Probes(_)
            | TracerError::Io(_)
            | TracerError::Os { .. }
            | TracerError::Write { .. } => EXIT_TRACING_FAILED,
            TracerError::Launch(LaunchError::NotFound(_)) => EXIT_NOT_FOUND,
            TracerError::Launch(LaunchError::CannotExecute { .. } | LaunchError::Nul(_)) => {
                EXIT_CANNOT_EXECUTE
            }
            TracerError::Launch(LaunchError::Sys { .. }) => EXIT_TRACING_FAILED,
        }
    }
}
