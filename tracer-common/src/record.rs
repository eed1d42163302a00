//! Ring-buffer records: one per VMA-changing syscall (at its exit) and one per lifecycle event
//! of a traced process. Page faults and RSS changes are aggregated in maps, never sent here.

use crate::COMM_LEN;

/// Record kinds (`Header::kind`). Index 0 is never sent; it keeps `LOST[kind]` 1-based.
pub const RECORD_SYSCALL: u32 = 1;
pub const RECORD_FORK: u32 = 2;
pub const RECORD_EXEC: u32 = 3;
pub const RECORD_EXIT: u32 = 4;
/// Size of per-kind arrays (`LOST`), including the unused index 0.
pub const RECORD_KINDS: usize = 5;

/// The traced syscalls, in the order used by `SyscallRecord::syscall` and every per-syscall
/// array (config offsets, counters).
pub const SYS_BRK: u32 = 0;
pub const SYS_MMAP: u32 = 1;
pub const SYS_MUNMAP: u32 = 2;
pub const SYS_MREMAP: u32 = 3;
pub const SYS_MPROTECT: u32 = 4;
pub const SYS_MADVISE: u32 = 5;
pub const SYSCALL_KINDS: usize = 6;
/// Most arguments any traced syscall takes (mmap has six).
pub const MAX_ARGS: usize = 6;

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// One of the `RECORD_*` constants.
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the record was produced.
    pub ts_ns: u64,
}

/// A completed VMA-changing syscall: arguments stashed at `sys_enter_*`, result from
/// `sys_exit_*`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallRecord {
    pub header: Header,
    /// One of the `SYS_*` constants.
    pub syscall: u32,
    /// The process's change sequence number: the syscall was the `seq`-th traced syscall of
    /// its process to take `mmap_lock` for writing (`mmap_lock:mmap_lock_acquire_returned`),
    /// so ordering a process's records by it gives the kernel's order of its address-space
    /// changes. 0: the syscall took no write lock (it failed early, or took the lock for
    /// reading), or nothing numbers them (feature `mmap_lock_order` off). Counts from 1 and
    /// skips 0 when it wraps.
    pub seq: u32,
    /// Raw arguments in the syscall's own order; unused ones are zero.
    pub args: [u64; MAX_ARGS],
    /// The syscall's return value (negative errno on failure, except for brk).
    pub ret: i64,
    /// When the syscall was entered (CLOCK_MONOTONIC ns).
    pub enter_ns: u64,
}

/// `ForkRecord::flags`: the child shares the parent's thread group (CLONE_THREAD).
pub const FORK_THREAD: u32 = 1;
/// `ForkRecord::flags`: the clone flags were not seen (no syscall entry stashed, e.g. a kernel
/// created io worker); user space decides from `/proc`.
pub const FORK_FLAGS_UNKNOWN: u32 = 2;
/// `ForkRecord::flags`: the child is a process but could not be traced (the traced set is
/// full, `--max-processes`).
pub const FORK_REFUSED: u32 = 4;

/// A traced process created a task (`sched:sched_process_fork`). For a new process the kernel
/// side has already added `child_pid` to the traced set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: Header,
    pub child_pid: u32,
    /// `FORK_*` bits.
    pub flags: u32,
    /// Clone flags as passed to clone/clone3 (0 for fork, CLONE_VM|CLONE_VFORK for vfork).
    pub clone_flags: u64,
    /// The parent's comm (the child inherits it).
    pub comm: [u8; COMM_LEN],
}

/// Bytes of the exec'd file name kept in an `ExecRecord` (longer names are truncated).
pub const EXEC_FILENAME_LEN: usize = 256;

/// `ExecRecord::flags`: the probe stopped the process (SIGSTOP) before its first instruction
/// in the new image, so the daemon can seed from /proc exactly; the daemon resumes it.
pub const EXEC_STOPPED: u32 = 1;
/// `ExecRecord::flags`: the process began to be traced at this exec (its comm matched
/// `--comm`).
pub const EXEC_STARTED: u32 = 2;
/// `ExecRecord::flags`: the process stopped being traced at this exec (its comm matched
/// `--exclude-comm`); no more records come for it.
pub const EXEC_UNTRACED: u32 = 4;

/// A traced process replaced its image (`sched:sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: Header,
    /// Thread id that called execve (differs from `tgid` when a non-leader thread exec'd).
    pub old_tid: u32,
    /// Bytes of `filename` used, including the NUL when it fit.
    pub filename_len: u32,
    /// `EXEC_*` bits.
    pub flags: u32,
    /// `current->signal->maxrss` in pages at exec (0 when `Config::signal_maxrss` is not
    /// set): the peak of the images before this one, which the exit's value still includes.
    pub maxrss_pages: u32,
    /// The comm after exec.
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; EXEC_FILENAME_LEN],
}

/// A traced process exited (`sched:sched_process_exit` of its last task, `group_dead`); the
/// kernel side has already removed it from the traced set. Thread exits send no record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: Header,
    pub group_dead: u32,
    /// `current->signal->maxrss` in pages (0 when `Config::signal_maxrss` is not set): the
    /// highest resident memory of every image the process had, updated by `do_exit()` before
    /// the exit tracepoint fires (the mm is gone by then).
    pub maxrss_pages: u32,
    pub comm: [u8; COMM_LEN],
    /// `current->mm->hiwater_rss` in pages where the exit tracepoint still sees the mm
    /// (Linux 6.16+ fires it before `exit_mm()`; 0 otherwise): the image's own peak as of its
    /// last unmap, a lower bound that `maxrss_pages` cannot give when an earlier image peaked
    /// higher.
    pub hiwater_pages: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<Header>() == 24);
const _: () = assert!(size_of::<SyscallRecord>() == 96);
const _: () = assert!(size_of::<ForkRecord>() == 56);
const _: () = assert!(size_of::<ExecRecord>() == 312);
const _: () = assert!(size_of::<ExitRecord>() == 56);
// The BPF ring buffer hands out 8-byte aligned slots.
const _: () = assert!(align_of::<SyscallRecord>() <= 8);
const _: () = assert!(align_of::<ExecRecord>() <= 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all fields are integers or integer arrays with explicit padding; any bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Header {}
    unsafe impl aya::Pod for super::SyscallRecord {}
    unsafe impl aya::Pod for super::ForkRecord {}
    unsafe impl aya::Pod for super::ExecRecord {}
    unsafe impl aya::Pod for super::ExitRecord {}
}
