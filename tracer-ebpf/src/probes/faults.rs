//! Page faults: counted per traced tgid in a per-CPU map, never sent one record per fault.
//!
//! `exceptions:page_fault_user` / `page_fault_kernel` (x86; `arch/x86/include/asm/trace/
//! exceptions.h`) fire on entry to the fault handler. The probes run on their raw tracepoints,
//! which hand over the tracepoint's own arguments instead of a record the kernel first builds
//! for perf (half the cost of a fault probe). The arguments are those of the event class:
//!
//! ```text
//! DECLARE_EVENT_CLASS(x86_exceptions,
//!         TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code), ...
//! ```
//! (unchanged since the events were added in Linux 3.14; the daemon still checks the events
//! and their `address` / `error_code` fields in tracefs).
//!
//! They fire before the kernel knows whether the fault is major, so majors are counted on the
//! `page-faults-maj` perf software event, raised by `mm_account_fault()` where `majflt` is
//! incremented.

use aya_ebpf::{
    macros::{perf_event, raw_tracepoint},
    programs::{PerfEventContext, RawTracePointContext},
};
use tracer_common::counters::{ACCESS_KERNEL_READ, ACCESS_USER_READ, X86_PF_INSTR, X86_PF_WRITE};

use crate::maps::{STACK_LOW, add, count_granule, current_ids, fault_counters, is_counted};

/// Kernel addresses have the top bit set on x86-64 and arm64; faults there are not the
/// process's.
pub(super) const KERNEL_HALF: u64 = 1 << 63;

/// `TP_PROTO` argument positions (see the module comment).
const ARG_ADDRESS: usize = 0;
const ARG_ERROR_CODE: usize = 2;

fn on_fault(ctx: &RawTracePointContext, base: usize) {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return;
    }
    let address: u64 = ctx.arg(ARG_ADDRESS);
    if address & KERNEL_HALF != 0 {
        return;
    }
    let error: u64 = ctx.arg(ARG_ERROR_CODE);
    let access = if error & X86_PF_INSTR != 0 {
        2
    } else if error & X86_PF_WRITE != 0 {
        1
    } else {
        0
    };
    count_fault(tgid, address, base + access);
}

/// Counts one fault of traced `tgid` at user `address` in its granule (its region) and in the
/// `ACCESS_*` class `class`. Shared with the perf-event fault source (`fault_events.rs`).
#[inline(always)]
pub(super) fn count_fault(tgid: u32, address: u64, class: usize) {
    note_stack_growth(tgid, address);
    let attributed = count_granule(tgid, address, false);
    if let Some(counters) = fault_counters(tgid) {
        if !attributed {
            // SAFETY: a valid map value; only the address of one of its counters is taken.
            add(unsafe { &raw mut (*counters).unattributed }, 1);
        }
        // SAFETY: a valid map value; only the address of one of its counters is taken.
        add(unsafe { &raw mut (*counters).by_access[class] }, 1);
    }
}

/// The stack grows on faults below it, down to the stack rlimit; the mmap area starts at
/// least 128 MiB lower (`mmap_base()`), so a fault within this distance below the stack is
/// taken as growth (the daemon checks that no mapping is in the way before it believes it).
const MAX_STACK_GROWTH: u64 = 128 << 20;

#[inline(always)]
fn note_stack_growth(tgid: u32, address: u64) {
    if let Some(low) = STACK_LOW.get_ptr_mut(tgid) {
        // SAFETY: a valid map value; a lost race between CPUs only delays the update.
        unsafe {
            if address < *low && address + MAX_STACK_GROWTH >= *low {
                *low = address;
            }
        }
    }
}

#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn page_fault_user(ctx: RawTracePointContext) -> i32 {
    on_fault(&ctx, ACCESS_USER_READ);
    0
}

/// Kernel-mode faults on user addresses (e.g. `copy_to_user` into an untouched page) count
/// toward the process's `minflt` too.
#[raw_tracepoint(tracepoint = "page_fault_kernel")]
pub fn page_fault_kernel(ctx: RawTracePointContext) -> i32 {
    on_fault(&ctx, ACCESS_KERNEL_READ);
    0
}

/// Attached to `PERF_COUNT_SW_PAGE_FAULTS_MAJ` on every CPU with a sample period of 1. The
/// sample's `addr` is the faulting address (`perf_sw_event(..., regs, address)`).
#[perf_event]
pub fn major_fault(ctx: PerfEventContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return 0;
    }
    // SAFETY: `addr` of `bpf_perf_event_data`, which the verifier lets programs read.
    let address = unsafe { (*ctx.ctx).addr };
    let attributed = count_granule(tgid, address, true);
    if let Some(counters) = fault_counters(tgid) {
        if !attributed {
            // SAFETY: as in `on_fault`.
            add(unsafe { &raw mut (*counters).unattributed_major }, 1);
        }
        // SAFETY: as in `on_fault`.
        add(unsafe { &raw mut (*counters).major }, 1);
    }
    0
}
