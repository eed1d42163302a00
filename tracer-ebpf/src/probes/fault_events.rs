//! Page faults where `exceptions:page_fault_{user,kernel}` do not exist (every architecture
//! but x86, e.g. arm64): counted on the `page-faults-min` and `page-faults-maj` perf software
//! events instead.
//!
//! Both are raised by `mm_account_fault()` (mm/memory.c), with the faulting address and the
//! registers of the interrupted context, at the very place that increments the task's
//! `min_flt` / `maj_flt`: one event per fault the process's `/proc/PID/stat` counts, whatever
//! the architecture (retried and failed attempts are not counted, as there). The daemon
//! attaches this program to both events on every CPU with a sample period of 1; each fault is
//! counted with the same per-region attribution as on x86 (`faults::count_fault`), and majors
//! are also counted by `faults::major_fault` on `page-faults-maj`, as on x86.
//! (`page-faults`, raised by the architecture's handler on entry like the x86 tracepoints,
//! also counts attempts that are retried or spurious: on arm64 6.1 one more fault in 300 than
//! `minflt`.)
//!
//! What is lost: the access split. x86 reports it in the error code the tracepoint carries;
//! the perf sample carries no such thing (arm64 keeps it in ESR_EL1, which is not in the
//! registers perf hands over), so every fault is counted as a read. Whether the fault was
//! taken in user or kernel mode (e.g. `copy_to_user` into a fresh page) is still known, from
//! the registers.

use aya_ebpf::{bindings::bpf_user_pt_regs_t, macros::perf_event, programs::PerfEventContext};
use tracer_common::counters::{ACCESS_KERNEL_READ, ACCESS_USER_READ};

use super::faults::{KERNEL_HALF, count_fault};
use crate::maps::{current_ids, is_counted};

#[perf_event]
pub fn page_fault_event(ctx: PerfEventContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return 0;
    }
    // SAFETY: `addr` and `regs` of `bpf_perf_event_data`, which the verifier lets programs
    // read (`addr` is the address `perf_sw_event` was given).
    let (address, user) = unsafe { ((*ctx.ctx).addr, from_user(&(*ctx.ctx).regs)) };
    if address & KERNEL_HALF != 0 {
        return 0;
    }
    let class = if user {
        ACCESS_USER_READ
    } else {
        ACCESS_KERNEL_READ
    };
    count_fault(tgid, address, class);
    0
}

/// Whether the fault interrupted user mode: the CPL in `cs` (x86-64).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn from_user(regs: &bpf_user_pt_regs_t) -> bool {
    regs.cs & 3 == 3
}

/// Whether the fault interrupted user mode: `PSTATE.M` is `EL0t` (0) (arm64).
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn from_user(regs: &bpf_user_pt_regs_t) -> bool {
    regs.pstate & 0xf == 0
}

/// Other architectures: the mode is not decoded, every fault counts as a user one.
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn from_user(_regs: &bpf_user_pt_regs_t) -> bool {
    true
}
