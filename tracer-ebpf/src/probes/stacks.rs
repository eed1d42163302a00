//! Call-site samples (`--stacks`): user registers plus a bounded copy of the user stack at the
//! entry of brk, mmap and mremap, and on one user page fault in `fault_period`. Separate
//! programs from the syscall probes, loaded and attached only when the daemon asks for
//! stacks, writing to their own ring buffer; the daemon unwinds the copy from `.eh_frame`
//! (records: tracer-common/src/stack.rs).
//!
//! The user registers of a syscall are the `pt_regs` saved at the top of the task's kernel
//! stack (`bpf_task_pt_regs`, Linux 5.15+), read at the offsets of the architecture the probes
//! are built for (`bpf_target_arch`): x86-64 (arch/x86/include/asm/ptrace.h: bp at 32, ip at
//! 128, sp at 152) or arm64 (arch/arm64/include/asm/ptrace.h: `struct pt_regs` starts with the
//! uapi `struct user_pt_regs { u64 regs[31]; u64 sp; u64 pc; u64 pstate; }`, so fp = x29 at
//! 232, lr = x30 at 240, sp at 248, pc at 256). arm64 needs lr too: a leaf function (the C
//! library's syscall wrappers) keeps its return address there, not on the stack.
//!
//! Faults: on x86 `exceptions:page_fault_user` hands its `regs` argument over directly:
//!
//! ```text
//! TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
//! ```
//! Elsewhere (arm64) that tracepoint does not exist, and `stack_fault_event` runs on the
//! `page-faults-min` and `page-faults-maj` perf software events instead, as the fault counters
//! do there (probes/fault_events.rs says why those two): their sample carries the registers
//! of the interrupted context, the user registers for a fault taken in user mode.

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, bpf_user_pt_regs_t},
    helpers::generated::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user, bpf_ringbuf_output,
        bpf_task_pt_regs,
    },
    macros::{map, perf_event, raw_tracepoint, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{PerfEventContext, RawTracePointContext, TracePointContext},
};
use tracer_common::{
    record::{SYS_BRK, SYS_MMAP, SYS_MREMAP},
    stack::{MAX_STACK_COPY, STACK_FAULT, STACK_PAGE, STACK_SYSCALL, StackConfig, StackSample},
};

use super::fault_events::from_user;
use super::faults::KERNEL_HALF;
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

/// The user registers a sample carries.
struct UserRegs {
    ip: u64,
    sp: u64,
    /// The frame pointer: rbp (x86-64), x29 (arm64).
    bp: u64,
    /// The link register x30 (arm64); 0 on x86-64.
    lr: u64,
}

/// `struct pt_regs` offsets of ip, sp, bp and lr (x86-64: no lr).
#[cfg(bpf_target_arch = "x86_64")]
const PT_REGS: Option<[usize; 4]> = Some([128, 152, 32, usize::MAX]);
#[cfg(bpf_target_arch = "aarch64")]
const PT_REGS: Option<[usize; 4]> = Some([256, 248, 232, 240]);
/// Other architectures: no samples (the daemon refuses `--stacks` there).
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
const PT_REGS: Option<[usize; 4]> = None;

#[inline(always)]
fn read_reg(regs: *const u8, offset: usize) -> u64 {
    let mut value = 0u64;
    if offset == usize::MAX {
        return 0;
    }
    // SAFETY: reads 8 bytes of a kernel pointer through the helper, which faults safely.
    unsafe { bpf_probe_read_kernel((&raw mut value).cast(), 8, regs.add(offset).cast()) };
    value
}

/// The user registers in a kernel `struct pt_regs`.
#[inline(always)]
fn pt_regs(regs: *const u8) -> Option<UserRegs> {
    let [ip, sp, bp, lr] = PT_REGS?;
    Some(UserRegs {
        ip: read_reg(regs, ip),
        sp: read_reg(regs, sp),
        bp: read_reg(regs, bp),
        lr: read_reg(regs, lr),
    })
}

/// Copies the user stack from `sp` up, a page at a time, stopping at the first page that
/// cannot be read (the top of the stack) or at `stack_bytes`. Returns the bytes copied.
///
/// Every read is a whole chunk (the rest of sp's page first, then whole pages), the last one
/// possibly beyond `stack_bytes` (into the scratch buffer's spare page) and the count cut
/// afterwards: no length is clamped by a comparison before a read. Clamping did not verify on
/// Linux 6.1 (arm64 build): without BPF_JLT in the instruction set LLVM compares the constant
/// on the left (`if 4096 > len`), 6.1 does not evaluate such a branch as never taken, and the
/// impossible path it then explores (`umin > umax`) lost the bounds of the copy's offset.
#[inline(always)]
fn copy_stack(scratch: *mut Scratch, sp: u64) -> u32 {
    let mut limit = stack_config().stack_bytes as usize;
    if limit > MAX_STACK_COPY {
        limit = MAX_STACK_COPY;
    }
    let mut copied: usize = 0;
    // The first chunk ends at sp's page boundary (1 to STACK_PAGE bytes), the others are
    // whole pages.
    let mut len = STACK_PAGE - (sp as usize & (STACK_PAGE - 1));
    for _ in 0..(MAX_STACK_COPY / STACK_PAGE + 1) {
        if copied >= limit {
            break;
        }
        // SAFETY: `copied < limit <= MAX_STACK_COPY` and `len <= STACK_PAGE`: inside the
        // scratch buffer; the helper reads user memory and fails instead of faulting.
        let rc = unsafe {
            bpf_probe_read_user(
                (&raw mut (*scratch).stack).cast::<u8>().add(copied).cast(),
                len as u32,
                (sp + copied as u64) as *const _,
            )
        };
        if rc != 0 {
            break;
        }
        copied += len;
        len = STACK_PAGE;
    }
    if copied > limit {
        copied = limit;
    }
    copied as u32
}

/// Fills the sample's registers and stack and sends it.
#[inline(always)]
fn send(regs: UserRegs, kind: u32, syscall: u32, addr: u64, weight: u64) {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let (_, pid_tgid) = current_ids();
    let UserRegs { ip, sp, bp, lr } = regs;
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
            lr,
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
    let Some(regs) = pt_regs(regs) else {
        return;
    };
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

/// Whether this fault of a traced process is the one in `fault_period` to sample (counted per
/// CPU, not per process: cheaper, and the weight keeps the totals right on average); returns
/// the period then.
#[inline(always)]
fn fault_due() -> Option<u32> {
    let (tgid, _) = current_ids();
    if !is_counted(tgid) {
        return None;
    }
    let period = stack_config().fault_period;
    if period == 0 {
        return None;
    }
    let ticks = FAULT_TICKS.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; programs do not nest on one CPU.
    unsafe {
        *ticks += 1;
        if *ticks >= period {
            *ticks = 0;
            Some(period)
        } else {
            None
        }
    }
}

/// One user page fault in `fault_period`, on `exceptions:page_fault_user` (x86).
#[raw_tracepoint]
pub fn stack_page_fault(ctx: RawTracePointContext) -> i32 {
    let Some(period) = fault_due() else {
        return 0;
    };
    let address: u64 = ctx.arg(0);
    let regs: u64 = ctx.arg(1);
    if regs == 0 || address >> 63 != 0 {
        return 0;
    }
    let Some(regs) = pt_regs(regs as *const u8) else {
        return 0;
    };
    send(regs, STACK_FAULT, 0, address, u64::from(period));
    0
}

/// One user page fault in `fault_period`, on the `page-faults-min` and `page-faults-maj` perf
/// software events of every CPU (period 1; arm64, and x86 with `TRACER_FAULT_SOURCE=perf`).
/// Faults taken in kernel mode (`copy_to_user`) are skipped, as `page_fault_user` skips them,
/// and do not count towards the period.
#[perf_event]
pub fn stack_fault_event(ctx: PerfEventContext) -> u32 {
    // SAFETY: `addr` and `regs` of `bpf_perf_event_data`, which the verifier lets programs
    // read field by field.
    let (address, regs) = unsafe {
        let data = &*ctx.ctx;
        (data.addr, user_regs(&data.regs))
    };
    let Some(regs) = regs else {
        return 0;
    };
    if address & KERNEL_HALF != 0 {
        return 0;
    }
    let Some(period) = fault_due() else {
        return 0;
    };
    send(regs, STACK_FAULT, 0, address, u64::from(period));
    0
}

/// The user registers of a perf sample taken in user mode (x86-64).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn user_regs(regs: &bpf_user_pt_regs_t) -> Option<UserRegs> {
    if !from_user(regs) {
        return None;
    }
    Some(UserRegs {
        ip: regs.rip,
        sp: regs.rsp,
        bp: regs.rbp,
        lr: 0,
    })
}

/// The user registers of a perf sample taken in user mode (arm64: fp = x29, lr = x30).
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
fn user_regs(regs: &bpf_user_pt_regs_t) -> Option<UserRegs> {
    if !from_user(regs) {
        return None;
    }
    Some(UserRegs {
        ip: regs.pc,
        sp: regs.sp,
        bp: regs.regs[29],
        lr: regs.regs[30],
    })
}

/// Other architectures: no samples (the daemon refuses `--stacks` there).
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
#[inline(always)]
fn user_regs(_regs: &bpf_user_pt_regs_t) -> Option<UserRegs> {
    None
}
