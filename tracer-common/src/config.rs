//! Load-time configuration handed from the daemon to the probes as the read-only global
//! `CONFIG` (`EbpfLoader::override_global`). Tracepoint field offsets come from the tracefs
//! `format` files of the running kernel, never from constants compiled in here.

use crate::record::{MAX_ARGS, SYSCALL_KINDS};

/// `Config::comm_filter`: an untraced process whose comm is `COMM_TRACE` in `COMM_FILTER`
/// becomes traced when it execs (`tracer attach --comm`).
pub const COMM_FILTER_TRACE: u32 = 1;
/// `Config::comm_filter`: a traced process whose comm is `COMM_EXCLUDE` stops being traced
/// when it execs (`--exclude-comm`).
pub const COMM_FILTER_EXCLUDE: u32 = 2;
/// `Config::comm_filter`: any untraced process becomes traced when it execs a command that is
/// not `COMM_EXCLUDE` (`tracer attach --all`).
pub const COMM_FILTER_ALL: u32 = 4;
/// `Config::comm_filter`: an untraced process becomes traced at exec (by the rules above) only
/// if its cgroup id is in `CGROUP_FILTER` (`tracer attach --cgroup`: the subtree's cgroups).
pub const COMM_FILTER_CGROUP: u32 = 8;
/// `Config::flags`: every `syscalls:sys_enter_*` argument sits at `16 + 8 * i` and every
/// `sys_exit_*` `ret` at 16 (`struct syscall_trace_enter/exit` in kernel/trace/trace_syscalls.c:
/// the 8-byte common header, `int nr`, then the `unsigned long` slots), as the daemon checked
/// against tracefs. The syscall probes then read the record with direct loads at constant
/// offsets (the verifier allows context loads at constant offsets only) instead of a helper
/// call per argument.
pub const CONFIG_SYSCALL_LAYOUT_FIXED: u32 = 1;
/// Where `sys_enter_*` arguments start and `sys_exit_*` `ret` sits in that layout.
pub const SYSCALL_RECORD_ARGS: u16 = 16;

/// Capacity of the `CGROUP_FILTER` map: the most cgroups `attach --cgroup` follows.
pub const MAX_CGROUPS: u32 = 16384;

/// Values of the `COMM_FILTER` map (keyed by the 16-byte comm).
pub const COMM_TRACE: u32 = 1;
pub const COMM_EXCLUDE: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Offset of each argument in `syscalls:sys_enter_<name>`, per `SYS_*` kind, in the order
    /// of `SyscallRecord::args`. Only the first `syscall_nargs[kind]` entries are used.
    pub syscall_args: [[u16; MAX_ARGS]; SYSCALL_KINDS],
    /// How many arguments each syscall has.
    pub syscall_nargs: [u16; SYSCALL_KINDS],
    /// Offset of `ret` in `syscalls:sys_exit_<name>`.
    pub syscall_ret: [u16; SYSCALL_KINDS],
    /// `exceptions:page_fault_{user,kernel}`: `address` and `error_code`. Checked against
    /// tracefs at start-up; the fault probes run on the raw tracepoints and take the same two
    /// values from the tracepoint's arguments.
    pub fault_address: u16,
    pub fault_error_code: u16,
    /// `sched:sched_process_fork`: `child_pid`.
    pub fork_child_pid: u16,
    /// `sched:sched_process_exec`: `filename` (a `__data_loc` word) and `old_pid`.
    pub exec_filename: u16,
    pub exec_old_pid: u16,
    /// `sched:sched_process_exit`: `group_dead` (a one-byte bool, Linux 6.16+). Zero when the
    /// kernel lacks it: the exit probe then reads `current->signal->live` at the two offsets
    /// below, found in the kernel's BTF.
    pub exit_group_dead: u16,
    /// `syscalls:sys_enter_clone`: `clone_flags`; `syscalls:sys_enter_clone3`: `uargs`.
    pub clone_flags: u16,
    pub clone3_uargs: u16,
    /// `kmem:rss_stat`: `mm_id`, `curr`, `member`, `size`.
    pub rss_mm_id: u16,
    pub rss_curr: u16,
    pub rss_member: u16,
    pub rss_size: u16,
    /// `COMM_*` bits: which lists of the `COMM_FILTER` map the exec probe applies.
    pub comm_filter: u32,
    /// `offsetof(struct task_struct, signal)` and `offsetof(struct signal_struct, live)`,
    /// from BTF; used only when `exit_group_dead` is zero.
    pub task_signal: u16,
    pub signal_live: u16,
    /// `offsetof(struct signal_struct, maxrss)` from BTF (0: unknown): the exec and exit
    /// probes report the process's peak resident memory when RSS is read from /proc.
    pub signal_maxrss: u16,
    /// `offsetof(struct task_struct, mm)` and `offsetof(struct mm_struct, hiwater_rss)` from
    /// BTF (0: unknown), read with `signal_maxrss`.
    pub task_mm: u16,
    pub mm_hiwater_rss: u16,
    pub _pad: u16,
    /// Wake the reader only once this many bytes are waiting in the ring buffer; below it the
    /// daemon drains on its own timer. 0 wakes on every record.
    pub wakeup_bytes: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
}

impl Config {
    /// An all-zero configuration, the value compiled into the object before the daemon
    /// overrides it. Probes refuse to act on it (`is_set`).
    pub const fn zeroed() -> Self {
        Config {
            syscall_args: [[0; MAX_ARGS]; SYSCALL_KINDS],
            syscall_nargs: [0; SYSCALL_KINDS],
            syscall_ret: [0; SYSCALL_KINDS],
            fault_address: 0,
            fault_error_code: 0,
            fork_child_pid: 0,
            exec_filename: 0,
            exec_old_pid: 0,
            exit_group_dead: 0,
            clone_flags: 0,
            clone3_uargs: 0,
            rss_mm_id: 0,
            rss_curr: 0,
            rss_member: 0,
            rss_size: 0,
            comm_filter: 0,
            task_signal: 0,
            signal_live: 0,
            signal_maxrss: 0,
            task_mm: 0,
            mm_hiwater_rss: 0,
            _pad: 0,
            wakeup_bytes: 0,
            flags: 0,
        }
    }

    /// Whether the daemon filled this in (every real tracepoint field sits past the 8-byte
    /// common header, so a zero offset means "not configured"). The loader requires the global
    /// to exist; probes do not re-check it on their hot paths.
    pub const fn is_set(&self) -> bool {
        self.fault_address != 0
    }
}

const _: () = assert!(size_of::<Config>() == 144);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: integers only, explicit padding.
    unsafe impl aya::Pod for super::Config {}
}
