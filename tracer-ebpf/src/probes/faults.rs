//! Page faults: counted per traced tgid in a per-CPU map, never sent one record per fault.
//!
//! `exceptions:page_fault_user` / `page_fault_kernel` (x86; `arch/x86/include/asm/trace/
//! exceptions.h`) fire on entry to the fault handler:
//!
//! ```text
//! field:unsigned long address;     offset:8;   size:8; signed:0;
//! field:unsigned long ip;          offset:16;  size:8; signed:0;
//! field:unsigned long error_code;  offset:24;  size:8; signed:0;
//! ```
//!
//! They fire before the kernel knows whether the fault is major, so majors are counted on the
//! `page-faults-maj` perf software event, raised by `mm_account_fault()` where `majflt` is
//! incremented.

use aya_ebpf::{
    macros::{perf_event, tracepoint},
    programs::{PerfEventContext, TracePointContext},
};
use tracer_common::counters::{ACCESS_KERNEL_READ, ACCESS_USER_READ, X86_PF_INSTR, X86_PF_WRITE};

use crate::maps::{STACK_LOW, add, config, count_granule, current_ids, fault_counters, is_counted};

/// Kernel addresses have the top bit set on x86-64 and arm64; faults there are not the
/// process's.
const KERNEL_HALF: u64 = 1 << 63;

fn on_fault(ctx: &TracePointContext, base: usize) -> Result<(), i64> {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return Ok(());
    }
    let cfg = config();
    // SAFETY: offsets of 8-byte fields of this tracepoint's record.
    let address = unsafe { ctx.read_at::<u64>(cfg.fault_address as usize) }.map_err(i64::from)?;
    if address & KERNEL_HALF != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    let error = unsafe { ctx.read_at::<u64>(cfg.fault_error_code as usize) }.map_err(i64::from)?;
    let access = if error & X86_PF_INSTR != 0 {
        2
    } else if error & X86_PF_WRITE != 0 {
        1
    } else {
        0
    };
    note_stack_growth(tgid, address);
    let attributed = count_granule(tgid, address, false);
    if let Some(counters) = fault_counters(tgid) {
        if !attributed {
            // SAFETY: a valid map value; only the address of one of its counters is taken.
            add(unsafe { &raw mut (*counters).unattributed }, 1);
        }
        // SAFETY: a valid map value; only the address of one of its counters is taken.
        add(unsafe { &raw mut (*counters).by_access[base + access] }, 1);
    }
    Ok(())
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

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let _ = on_fault(&ctx, ACCESS_USER_READ);
    0
}

/// Kernel-mode faults on user addresses (e.g. `copy_to_user` into an untouched page) count
/// toward the process's `minflt` too.
#[tracepoint]
pub fn page_fault_kernel(ctx: TracePointContext) -> u32 {
    let _ = on_fault(&ctx, ACCESS_KERNEL_READ);
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
