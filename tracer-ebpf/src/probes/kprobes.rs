//! Kprobes on the kernel functions behind the syscalls (feature `syscall_kprobes`): the entry
//! of `__x64_sys_*` (`__arm64_sys_*`) for the six traced syscalls and the lifecycle ones
//! (clone, clone3, fork, vfork, execve, execveat), the return of the six.
//!
//! Why: any enabled syscall tracepoint, per-syscall or raw, sets `SYSCALL_WORK_SYSCALL_TRACEPOINT`
//! on every thread of the machine, which then takes the slow syscall path for every syscall
//! (+26 % on an untraced `getppid` loop beside `attach`, +131 % beside `run` on the raw ones).
//! A kprobe costs only the calls of the function it is on: an untraced process pays for its own
//! mmap, brk, ... calls (one program run that stops at the traced check), nothing for the rest.
//!
//! With `CONFIG_ARCH_HAS_SYSCALL_WRAPPER` (x86_64 since 4.17, arm64 since 4.19) each of these
//! functions takes one argument, the user's `struct pt_regs *`, the same registers the raw
//! tracepoint `sys_enter` is handed: the entry program reads the syscall number and arguments
//! from it and does exactly what `raw_sys_enter` does (raw_syscalls.rs). A kretprobe cannot
//! read those registers any more (the argument register is clobbered by then), so there is one
//! return program per syscall, which knows which one it returns from, takes the return value
//! from its own context and finishes as `raw_sys_exit` does, with the stashed entry.
//!
//! A kretprobe has at most `maxactive` calls in flight (the daemon asks for 4096,
//! tracer/src/kernel/probes/kretprobe.rs; the kernel's default is as low as
//! `num_possible_cpus()`). A call beyond it runs the entry program but not the return one: its
//! entry stays stashed, and the thread's next traced syscall finds it and counts it
//! (`STAT_EXIT_WITHOUT_ENTER`, reported as `exits_without_enter`), so no record is lost
//! silently.

use aya_ebpf::{
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::record::{SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP, SYS_MUNMAP};

use super::raw_syscalls::{enter, finish, syscall_nr};

/// On the entry of every probed syscall function: the argument is the user's `pt_regs`.
#[kprobe]
pub fn kp_sys_enter(ctx: ProbeContext) -> u32 {
    let Some(regs) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let Some(id) = syscall_nr(regs) else {
        return 0;
    };
    enter(regs, id);
    0
}

/// Defines the return program of one traced syscall function.
macro_rules! returns {
    ($name:ident, $kind:expr) => {
        #[kretprobe]
        pub fn $name(ctx: RetProbeContext) -> u32 {
            finish($kind, ctx.ret::<i64>());
            0
        }
    };
}

returns!(kr_sys_brk, SYS_BRK);
returns!(kr_sys_mmap, SYS_MMAP);
returns!(kr_sys_munmap, SYS_MUNMAP);
returns!(kr_sys_mremap, SYS_MREMAP);
returns!(kr_sys_mprotect, SYS_MPROTECT);
returns!(kr_sys_madvise, SYS_MADVISE);
