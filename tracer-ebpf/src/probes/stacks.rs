//! Call-site samples (`--stacks`): user registers plus a bounded copy of the user stack at the
//! entry of brk, mmap and mremap, and on one user page fault in `fault_period`. Separate
//! programs from the syscall probes, loaded and attached only when the daemon asks for
//! stacks, writing to their own ring buffer; the daemon unwinds the copy from `.eh_frame`
//! (records: tracer-common/src/stack.rs).
//!
//! The user registers of a syscall are the `pt_regs` saved at the top of the task's kernel
//! stack (`bpf_task_pt_regs`, Linux 5.15+). `exceptions:page_fault_user` hands its `regs`
//! argument over directly:
//!
//! ```text
//! TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
//! ```
//! The offsets of ip, sp and bp in `struct pt_regs` are those of x86-64
//! (arch/x86/include/asm/ptrace.h: bp at 32, ip at 128, sp at 152), the one architecture these
//! programs support so far.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::generated::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user, bpf_ringbuf_output,
        bpf_task_pt_regs,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    record::{SYS_BRK, SYS_MMAP, SYS_MREMAP},
    stack::{MAX_STACK_COPY, STACK_FAULT, STACK_PAGE, STACK_SYSCALL, StackConfig, StackSample},
};

use crate::maps::{current_ids, header, is_counted};

/// Filled in by the daemon when it loads these programs.
#[unsafe(no_mangle)]
static STACK_CONFIG: StackConfig = StackConfig {
    stack_bytes: 0,
    fault_period: 0,
};

#[inline(always)]
fn stack_config() -> &'static StackConfig {
    // SAFETY: a static in the read-only data map; the volatile read keeps the compiler from
    // folding in the placeholder.
    unsafe { &*core::ptr::read_volatile(&&raw const STACK_CONFIG) }
}

/// A sample being built: the fixed part, then the stack (one spare page, see
/// `MAX_STACK_COPY`).
#[repr(C)]
pub struct Scratch {
    sample: StackSample,
    stack: [u8; MAX_STACK_COPY + STACK_PAGE],
}

#[map]
static STACK_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Faults seen per CPU since the last fault sample.
#[map]
static FAULT_TICKS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Samples for the daemon; sized by the daemon (`--stack-ring-size`). Small by default so an
/// object loaded without `--stacks` costs little kernel memory.
#[map]
pub static STACK_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 16, 0);

/// `struct pt_regs` offsets (x86-64).
const REGS_BP: usize = 32;
const REGS_IP: usize = 128;
const REGS_SP: usize = 152;

#[inline(always)]
fn read_reg(regs: *const u8, offset: usize) -> u64 {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes of a kernel pointer through the helper, which faults safely.
    unsafe { bpf_probe_read_kernel((&raw mut value).cast(), 8, regs.add(offset).cast()) };
    value
}

/// Copies the user stack from `sp` up, a page at a time, stopping at the first page that
/// cannot be read (the top of the stack) or at `stack_bytes`. Returns the bytes copied.
#[inline(always)]
fn copy_stack(scratch: *mut Scratch, sp: u64) -> u32 {
    let mut limit = stack_config().stack_bytes as usize;
    if limit > MAX_STACK_COPY {
        limit = MAX_STACK_COPY;
    }
    let mut copied: usize = 0;
    // The first chunk ends at sp's page boundary, the others are whole pages.
    let mut chunk = STACK_PAGE - (sp as usize & (STACK_PAGE - 1));
    for _ in 0..(MAX_STACK_COPY / STACK_PAGE + 1) {
        if copied >= limit {
            break;
        }
        let mut len = limit - copied;
        if len > chunk {
            len = chunk;
        }
        if len > STACK_PAGE {
            len = STACK_PAGE;
        }
        let offset = copied & (MAX_STACK_COPY * 2 - 1);
        if offset > MAX_STACK_COPY {
            break;
        }
        // SAFETY: `offset + len <= MAX_STACK_COPY + STACK_PAGE`, inside the scratch buffer; the
        // helper reads user memory and fails instead of faulting.
        let rc = unsafe {
            bpf_probe_read_user(
                (&raw mut (*scratch).stack).cast::<u8>().add(offset).cast(),
                len as u32,
                (sp + copied as u64) as *const _,
            )
        };
        if rc != 0 {
            break;
        }
        copied += len;
        chunk = STACK_PAGE;
    }
    copied as u32
}

/// Fills the sample's registers and stack and sends it.
#[inline(always)]
fn send(regs: *const u8, kind: u32, syscall: u32, addr: u64, weight: u64) {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let (_, pid_tgid) = current_ids();
    let ip = read_reg(regs, REGS_IP);
    let sp = read_reg(regs, REGS_SP);
    let bp = read_reg(regs, REGS_BP);
    let copied = copy_stack(scratch, sp);
    // SAFETY: this CPU's scratch value, alive for the program run.
    unsafe {
        (*scratch).sample = StackSample {
            header: header(kind, pid_tgid),
            syscall,
            stack_len: copied,
            ip,
            sp,
            bp,
            addr,
            weight,
        };
    }
    let mut size = size_of::<StackSample>() + copied as usize;
    if size > size_of::<Scratch>() {
        size = size_of::<Scratch>();
    }
    // SAFETY: `size` bytes of the scratch value; the ring buffer copies them. A full ring
    // buffer drops the sample: the daemon counts records without a stack.
    unsafe {
        bpf_ringbuf_output(
            (&raw const STACK_EVENTS).cast_mut().cast(),
            scratch.cast(),
            size as u64,
            BPF_RB_NO_WAKEUP as u64,
        )
    };
}

#[inline(always)]
fn on_syscall(ctx: &TracePointContext, syscall: u32) {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return;
    }
    // First argument of every syscall record (see probes/syscalls.rs for the layout).
    // SAFETY: an 8-byte field inside the tracepoint's record.
    let addr = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0);
    if syscall == SYS_BRK && addr == 0 {
        // brk(0) only asks where the break is.
        return;
    }
    // SAFETY: helpers without memory arguments; the task pointer is trusted BTF.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    if regs.is_null() {
        return;
    }
    send(regs, STACK_SYSCALL, syscall, addr, 0);
}

#[tracepoint]
pub fn stack_enter_brk(ctx: TracePointContext) -> u32 {
    on_syscall(&ctx, SYS_BRK);
    0
}

#[tracepoint]
pub fn stack_enter_mmap(ctx: TracePointContext) -> u32 {
    on_syscall(&ctx, SYS_MMAP);
    0
}

#[tracepoint]
pub fn stack_enter_mremap(ctx: TracePointContext) -> u32 {
    on_syscall(&ctx, SYS_MREMAP);
    0
}

/// One user page fault in `fault_period` (counted per CPU, not per process: cheaper, and the
/// weight keeps the totals right on average).
#[raw_tracepoint]
pub fn stack_page_fault(ctx: RawTracePointContext) -> i32 {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return 0;
    }
    let period = stack_config().fault_period;
    if period == 0 {
        return 0;
    }
    let Some(ticks) = FAULT_TICKS.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; programs do not nest on one CPU.
    let due = unsafe {
        *ticks += 1;
        if *ticks >= period {
            *ticks = 0;
            true
        } else {
            false
        }
    };
    if !due {
        return 0;
    }
    let address: u64 = ctx.arg(0);
    let regs: u64 = ctx.arg(1);
    if regs == 0 || address >> 63 != 0 {
        return 0;
    }
    send(
        regs as *const u8,
        STACK_FAULT,
        0,
        address,
        u64::from(period),
    );
    0
}
