//! `raw_syscalls:sys_enter` / `sys_exit` as raw tracepoints (feature `raw_syscalls`): the traced
//! syscalls and the lifecycle ones (clone flags, execve) without the per-syscall tracepoints.
//!
//! Why: a perf tracepoint builds its record (the syscall's arguments, copied) before any program
//! runs, and closing one at teardown waits for an RCU grace period each (the ~20 of them made
//! `tracer run -- true` slow). A raw tracepoint hands over the tracepoint's own arguments and is
//! a BPF link that detaches without waiting. The price: the programs run for every syscall of
//! every process (any syscall tracepoint already puts every thread on the slow syscall path),
//! so they test the syscall number first (an argument, no memory read at entry), then the tgid.
//!
//! ```text
//! TRACE_EVENT_FN(sys_enter, TP_PROTO(struct pt_regs *regs, long id), ...)
//! TRACE_EVENT_FN(sys_exit,  TP_PROTO(struct pt_regs *regs, long ret), ...)
//! ```
//! The arguments come from `pt_regs` as the architecture's syscall ABI places them, the number
//! at exit from the register the kernel's `syscall_get_nr()` reads:
//!
//! ```text
//! x86_64:  arguments di, si, dx, r10, r8, r9 (r10, not cx: `syscall` clobbers cx); number orig_ax
//! aarch64: arguments regs[0..5] (regs[0] is overwritten only by the return value); number
//!          syscallno
//! ```
//! 32-bit tasks (ia32 on x86_64, AArch32 on arm64) number their syscalls differently; the
//! per-syscall tracepoints ignore them, and so do these programs (code segment / PSTATE mode).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::record::MAX_ARGS;

use super::{
    lifecycle::{
        CLONE_VFORK, CLONE_VM, start_counting_at_exec, stash_clone_flags, stash_clone3_flags,
    },
    syscalls::{emit, stash},
};
use crate::maps::{Inflight, current_ids, is_counted, now_ns};

/// What the entry program does with a syscall number.
#[derive(Clone, Copy)]
#[cfg_attr(
    not(bpf_target_arch = "x86_64"),
    allow(
        dead_code,
        reason = "arm64 has no fork or vfork; other architectures no numbers here"
    )
)]
enum Traced {
    /// A traced syscall (`SYS_*`) with this many arguments.
    Vma(u32, usize),
    Clone,
    Clone3,
    Fork,
    Vfork,
    Exec,
}

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    use super::{Traced, read_kernel};
    use tracer_common::record::{
        SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP, SYS_MUNMAP,
    };

    /// arch/x86/entry/syscalls/syscall_64.tbl
    #[inline(always)]
    pub fn classify(id: u64) -> Option<Traced> {
        Some(match id {
            12 => Traced::Vma(SYS_BRK, 1),
            9 => Traced::Vma(SYS_MMAP, 6),
            11 => Traced::Vma(SYS_MUNMAP, 2),
            25 => Traced::Vma(SYS_MREMAP, 5),
            10 => Traced::Vma(SYS_MPROTECT, 3),
            28 => Traced::Vma(SYS_MADVISE, 3),
            56 => Traced::Clone,
            57 => Traced::Fork,
            58 => Traced::Vfork,
            59 | 322 => Traced::Exec,
            435 => Traced::Clone3,
            _ => return None,
        })
    }

    /// `__USER32_CS`: the code segment of a 32-bit task.
    const USER32_CS: u64 = 0x23;

    /// The six arguments (None for a 32-bit task). `struct pt_regs` from r10 (byte 56) to cs
    /// (byte 136) in one read: r10 r9 r8 ax cx dx si di orig_ax ip cs.
    #[inline(always)]
    pub fn args(regs: u64) -> Option<[u64; 6]> {
        let w = read_kernel::<11>(regs, 56)?;
        if w[10] & 0xffff == USER32_CS {
            return None;
        }
        Some([w[7], w[6], w[5], w[0], w[2], w[1]])
    }

    /// The syscall number at exit (orig_ax, byte 120; None for a 32-bit task: cs, byte 136).
    #[inline(always)]
    pub fn exit_id(regs: u64) -> Option<u64> {
        let w = read_kernel::<3>(regs, 120)?;
        if w[2] & 0xffff == USER32_CS {
            return None;
        }
        Some(w[0])
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod arch {
    use super::{Traced, read_kernel};
    use tracer_common::record::{
        SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP, SYS_MUNMAP,
    };

    /// include/uapi/asm-generic/unistd.h (arm64 has no fork or vfork).
    #[inline(always)]
    pub fn classify(id: u64) -> Option<Traced> {
        Some(match id {
            214 => Traced::Vma(SYS_BRK, 1),
            222 => Traced::Vma(SYS_MMAP, 6),
            215 => Traced::Vma(SYS_MUNMAP, 2),
            216 => Traced::Vma(SYS_MREMAP, 5),
            226 => Traced::Vma(SYS_MPROTECT, 3),
            233 => Traced::Vma(SYS_MADVISE, 3),
            220 => Traced::Clone,
            221 | 281 => Traced::Exec,
            435 => Traced::Clone3,
            _ => return None,
        })
    }

    /// `PSR_MODE32_BIT` of pstate (byte 264 of `struct pt_regs`): an AArch32 task.
    const PSR_MODE32: u64 = 0x10;
    const PSTATE: usize = 264;

    /// The six arguments, regs[0..5] (None for an AArch32 task).
    #[inline(always)]
    pub fn args(regs: u64) -> Option<[u64; 6]> {
        if read_kernel::<1>(regs, PSTATE)?[0] & PSR_MODE32 != 0 {
            return None;
        }
        read_kernel::<6>(regs, 0)
    }

    /// The syscall number at exit: pstate, orig_x0, then syscallno (an s32) from byte 264.
    #[inline(always)]
    pub fn exit_id(regs: u64) -> Option<u64> {
        let w = read_kernel::<3>(regs, PSTATE)?;
        if w[0] & PSR_MODE32 != 0 {
            return None;
        }
        Some(w[2] as u32 as u64)
    }
}

/// Another architecture: nothing matches, and the daemon never attaches these programs there
/// (it picks the per-syscall tracepoints).
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
mod arch {
    use super::Traced;

    pub fn classify(_id: u64) -> Option<Traced> {
        None
    }
    pub fn args(_regs: u64) -> Option<[u64; 6]> {
        None
    }
    pub fn exit_id(_regs: u64) -> Option<u64> {
        None
    }
}

/// `N` words of the kernel's `pt_regs` at `regs`, from byte `from`.
#[inline(always)]
#[allow(dead_code, reason = "unused on architectures without these programs")]
fn read_kernel<const N: usize>(regs: u64, from: usize) -> Option<[u64; N]> {
    // SAFETY: a kernel pointer handed over by the tracepoint; the helper checks the read.
    unsafe { bpf_probe_read_kernel((regs as usize + from) as *const [u64; N]) }.ok()
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    enter(ctx.arg(0), ctx.arg(1));
    0
}

/// The syscall number in the user `pt_regs` at `regs` (None for a 32-bit task), for probes
/// that are not handed it (the kprobes of probes/kprobes.rs, at entry).
#[inline(always)]
pub(super) fn syscall_nr(regs: u64) -> Option<u64> {
    arch::exit_id(regs)
}

/// What `raw_sys_enter` does for syscall `id` with the user registers at `regs`: stash a traced
/// syscall's arguments, or note a clone's flags or an exec. Shared with the kprobes' entry
/// program, which reads `id` from `regs`.
#[inline(always)]
pub(super) fn enter(regs: u64, id: u64) {
    let Some(what) = arch::classify(id) else {
        return;
    };
    let (tgid, pid_tgid) = current_ids();
    match what {
        Traced::Vma(syscall, nargs) => {
            if !is_counted(tgid) {
                return;
            }
            let Some(regs) = arch::args(regs) else {
                return;
            };
            // Unused arguments stay 0, as in the per-syscall tracepoints' records. Unrolled
            // with constant indexes, which every verifier accepts.
            let mut args = [0; MAX_ARGS];
            args[0] = regs[0];
            if nargs > 1 {
                args[1] = regs[1];
            }
            if nargs > 2 {
                args[2] = regs[2];
            }
            if nargs > 3 {
                args[3] = regs[3];
            }
            if nargs > 4 {
                args[4] = regs[4];
            }
            if nargs > 5 {
                args[5] = regs[5];
            }
            stash(
                pid_tgid,
                Inflight {
                    syscall,
                    seq: 0,
                    args,
                    enter_ns: now_ns(),
                },
            );
        }
        Traced::Exec => start_counting_at_exec(),
        Traced::Fork => stash_clone_flags(0),
        Traced::Vfork => stash_clone_flags(CLONE_VM | CLONE_VFORK),
        Traced::Clone | Traced::Clone3 => {
            let Some(regs) = arch::args(regs) else {
                return;
            };
            let first = regs[0];
            if matches!(what, Traced::Clone) {
                stash_clone_flags(first);
            } else {
                stash_clone3_flags(first);
            }
        }
    }
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    let Some(id) = arch::exit_id(ctx.arg(0)) else {
        return 0;
    };
    let Some(Traced::Vma(syscall, _)) = arch::classify(id) else {
        return 0;
    };
    finish(syscall, ctx.arg(1));
    0
}

/// What `raw_sys_exit` does once it knows the traced syscall: pairs the return value `ret`
/// with the stashed entry and sends the record. Shared with the kretprobes of
/// probes/kprobes.rs, which know the syscall from the function they return from.
#[inline(always)]
pub(super) fn finish(syscall: u32, ret: i64) {
    // `emit` finds the stashed entry or leaves: no separate traced check.
    let (_, pid_tgid) = current_ids();
    emit(pid_tgid, syscall, ret);
}
