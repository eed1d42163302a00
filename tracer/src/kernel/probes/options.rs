//! What shapes the probes at load time (`ProbeOptions`, from the command line) and how loading
//! them fails (`ProbeError`).

use thiserror::Error;

use tracer_common::stack::StackConfig;

use crate::kernel::tracefs::TracefsError;

/// When records are put in the kernel's order (`--mmap-lock-order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MmapLockOrder {
    Auto,
    On,
    Off,
}

/// Where resident memory comes from (`--rss-source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RssSource {
    /// `procfs` where the exit probe still sees the process's mm (Linux 6.16+, the release
    /// that gave `sched_process_exit` its `group_dead`), so the peak of a process that exits
    /// between two reads is exact; `events` before.
    Auto,
    Procfs,
    Events,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error("tracepoint field {what} has size {size}, expected {expected}")]
    FieldSize {
        what: String,
        size: u16,
        expected: u16,
    },
    #[error("the kernel lacks {feature}: {need}")]
    MissingFeature { feature: String, need: String },
    #[error("loading the eBPF probes failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the kernel rejected probe `{program}`: {source}")]
    Program {
        program: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching `{program}` to {target} failed: {source}")]
    Attach {
        program: String,
        target: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program `{0}` is missing from the probe object")]
    MissingProgram(String),
    #[error("map `{0}` is missing from the probe object")]
    MissingMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("cannot list online CPUs: {0}")]
    Cpus(std::io::Error),
}

/// Settings that shape the probes at load time.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Bytes waiting in the ring buffer before the reader is woken (0: every record).
    pub wakeup_bytes: u32,
    /// Capacity of the traced set (and of every per-process map).
    pub max_processes: u32,
    /// Command names that start tracing at exec (--comm) and that end it (--exclude-comm).
    pub trace_comms: Vec<String>,
    pub exclude_comms: Vec<String>,
    /// Trace every process that execs a command not excluded (`attach --all`).
    pub trace_all: bool,
    /// Whether to number each process's changes in the kernel's order (`--mmap-lock-order`).
    pub mmap_lock_order: MmapLockOrder,
    /// Resident memory from `kmem:rss_stat` or from /proc (`--rss-source`).
    pub rss_source: RssSource,
    /// Start tracing at exec only in the cgroups `follow_cgroups` lists (`attach --cgroup`).
    pub trace_cgroup: bool,
    /// `--stacks`: load and attach the stack programs (`stacks`).
    pub stacks: Option<StackSettings>,
    /// Probe syscalls on `raw_syscalls` where the kernel allows (`tracer run`: quick teardown),
    /// else on the per-syscall tracepoints (`attach`: nothing for untraced syscalls);
    /// `TRACER_SYSCALL_PROBES=raw|tracepoints` overrides it (syscall_source.rs).
    pub raw_syscalls: bool,
}

/// What the stack programs of `--stacks` need to know, fixed at load.
#[derive(Clone, Debug)]
pub struct StackSettings {
    pub config: StackConfig,
    /// Size of the `STACK_EVENTS` ring buffer (a power of two).
    pub ring_bytes: u32,
}
