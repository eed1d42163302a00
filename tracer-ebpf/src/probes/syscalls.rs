//! `syscalls:sys_enter_*` / `sys_exit_*` for brk, mmap, munmap, mremap, mprotect, madvise.
//!
//! Entry stashes the arguments per thread; exit pairs them with the return value and emits one
//! `SyscallRecord`. Argument offsets come from the tracefs `format` files, e.g. for mmap:
//!
//! ```text
//! field:unsigned long addr;  offset:16;  size:8;  signed:0;
//! field:unsigned long len;   offset:24;  size:8;  signed:0;  ... prot, flags, fd, off
//! ```
//! and every `sys_exit_*` has `field:long ret; offset:16; size:8; signed:1;`. When the daemon
//! found exactly that layout (`CONFIG_SYSCALL_LAYOUT_FIXED`, every kernel so far), the probes
//! read the record with direct loads at constant offsets; otherwise with a helper call per
//! field at the offsets tracefs gave. The verifier sees the flag's value (a read-only global)
//! and drops the branch not taken.
//!
//! Where the kernel allows it (x86_64 and aarch64 with `raw_syscalls`, feature `raw_syscalls`),
//! the daemon attaches the two raw-tracepoint programs of `raw.rs` instead: they see every
//! syscall of every process but filter the syscall number first, and no perf record is built.
//! These per-syscall programs stay as the fallback.
//!
//! Each thread's `INFLIGHT` entry is created at its first traced syscall and then reused: the
//! exit marks it consumed (`NO_SYSCALL`) instead of deleting it, so a syscall costs two lookups
//! instead of an insert and a delete. The exit probe removes it when the thread exits.

use aya_ebpf::{EbpfContext as _, macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    config::{CONFIG_SYSCALL_LAYOUT_FIXED, SYSCALL_RECORD_ARGS},
    counters::{STAT_EXIT_WITHOUT_ENTER, STAT_INFLIGHT_FULL},
    record::{
        MAX_ARGS, RECORD_SYSCALL, SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP,
        SYS_MUNMAP, SyscallRecord,
    },
};

use crate::maps::{
    EVENTS, INFLIGHT, Inflight, NO_SYSCALL, batched_wakeup, config, count_lost, count_stat,
    current_ids, header, is_counted, now_ns,
};

/// The 8-byte field at byte `offset` of the tracepoint record, read directly. `offset` must be
/// a constant, and the kernel refuses to attach a program that reads past the record.
#[inline(always)]
fn field_at(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: `offset` is a constant inside this tracepoint's record (see above); the verifier
    // checks the access against the context.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(offset).cast::<u64>()) }
}

/// `NARGS`: how many arguments the syscall has, so that the direct loads stay in its record.
fn on_enter<const NARGS: usize>(ctx: &TracePointContext, syscall: u32) -> Result<(), i64> {
    let (tgid, pid_tgid) = current_ids();
    if !is_counted(tgid) {
        return Ok(());
    }
    let cfg = config();
    let mut inflight = Inflight {
        syscall,
        seq: 0,
        args: [0; MAX_ARGS],
        enter_ns: now_ns(),
    };
    if cfg.flags & CONFIG_SYSCALL_LAYOUT_FIXED != 0 {
        let base = SYSCALL_RECORD_ARGS as usize;
        // Unrolled with constant offsets: the verifier refuses variable context offsets.
        let a = &mut inflight.args;
        if NARGS > 0 {
            a[0] = field_at(ctx, base);
        }
        if NARGS > 1 {
            a[1] = field_at(ctx, base + 8);
        }
        if NARGS > 2 {
            a[2] = field_at(ctx, base + 16);
        }
        if NARGS > 3 {
            a[3] = field_at(ctx, base + 24);
        }
        if NARGS > 4 {
            a[4] = field_at(ctx, base + 32);
        }
        if NARGS > 5 {
            a[5] = field_at(ctx, base + 40);
        }
    } else {
        let offsets = &cfg.syscall_args[syscall as usize];
        let nargs = cfg.syscall_nargs[syscall as usize] as usize;
        for (i, arg) in inflight.args.iter_mut().enumerate() {
            if i < nargs {
                // SAFETY: the offset is that of an 8-byte field of this tracepoint's record.
                *arg = unsafe { ctx.read_at::<u64>(offsets[i] as usize) }.map_err(i64::from)?;
            }
        }
    }
    stash(pid_tgid, inflight);
    Ok(())
}

/// Keeps a traced syscall's arguments until its exit (both probe flavours).
#[inline(always)]
pub(super) fn stash(pid_tgid: u64, inflight: Inflight) {
    if let Some(slot) = INFLIGHT.get_ptr_mut(pid_tgid) {
        // SAFETY: the entry belongs to this thread; only this thread writes it (the exit probe
        // removes it once the thread is gone).
        if unsafe { (*slot).syscall } != NO_SYSCALL {
            // The previous traced syscall's exit never ran its probe (a kretprobe beyond its
            // `maxactive`, probes/kprobes.rs): its record is lost, and counted.
            count_stat(STAT_EXIT_WITHOUT_ENTER);
        }
        // SAFETY: as above.
        unsafe { *slot = inflight };
    } else if INFLIGHT.insert(pid_tgid, inflight, 0).is_err() {
        count_stat(STAT_INFLIGHT_FULL);
    }
}

fn on_exit(ctx: &TracePointContext, syscall: u32) -> Result<(), i64> {
    let (_, pid_tgid) = current_ids();
    let ret = if config().flags & CONFIG_SYSCALL_LAYOUT_FIXED != 0 {
        field_at(ctx, SYSCALL_RECORD_ARGS as usize) as i64
    } else {
        // SAFETY: `ret` is an 8-byte field of sys_exit_* records.
        unsafe { ctx.read_at::<i64>(config().syscall_ret[syscall as usize] as usize) }
            .map_err(i64::from)?
    };
    emit(pid_tgid, syscall, ret);
    Ok(())
}

/// Pairs a traced syscall's exit with its stashed entry and sends the record (both probe
/// flavours).
///
/// The stashed entry is the traced check: the entry probe stashes only for a counted process,
/// so the exit of a traced syscall costs one lookup (this one) rather than two (`TRACED`
/// first). Untraced threads have no entry and also pay one lookup; only a miss looks at
/// `TRACED`, to count a traced thread's exit without entry.
#[inline(always)]
pub(super) fn emit(pid_tgid: u64, syscall: u32, ret: i64) {
    let Some(slot) = INFLIGHT.get_ptr_mut(pid_tgid) else {
        // Traced while already inside the syscall: its arguments are unknown.
        if is_counted((pid_tgid >> 32) as u32) {
            count_stat(STAT_EXIT_WITHOUT_ENTER);
        }
        return;
    };
    // SAFETY: the entry belongs to this thread; only this thread writes it.
    let stashed = unsafe { *slot };
    // SAFETY: as above.
    unsafe { (*slot).syscall = NO_SYSCALL };
    if stashed.syscall != syscall {
        // A consumed entry is also what a thread keeps once its process stops being counted.
        if stashed.syscall != NO_SYSCALL || is_counted((pid_tgid >> 32) as u32) {
            count_stat(STAT_EXIT_WITHOUT_ENTER);
        }
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<SyscallRecord>(0) else {
        count_lost(RECORD_SYSCALL);
        return;
    };
    slot.write(SyscallRecord {
        header: header(RECORD_SYSCALL, pid_tgid),
        syscall,
        seq: stashed.seq,
        args: stashed.args,
        ret,
        enter_ns: stashed.enter_ns,
    });
    slot.submit(batched_wakeup());
}

/// Defines the entry and exit programs of one syscall with `$nargs` arguments.
macro_rules! syscall_probes {
    ($enter:ident, $exit:ident, $kind:expr, $nargs:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = on_enter::<$nargs>(&ctx, $kind);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            let _ = on_exit(&ctx, $kind);
            0
        }
    };
}

// Argument counts as in tracer/src/syscalls.rs (the daemon checks them against tracefs).
syscall_probes!(sys_enter_brk, sys_exit_brk, SYS_BRK, 1);
syscall_probes!(sys_enter_mmap, sys_exit_mmap, SYS_MMAP, 6);
syscall_probes!(sys_enter_munmap, sys_exit_munmap, SYS_MUNMAP, 2);
syscall_probes!(sys_enter_mremap, sys_exit_mremap, SYS_MREMAP, 5);
syscall_probes!(sys_enter_mprotect, sys_exit_mprotect, SYS_MPROTECT, 3);
syscall_probes!(sys_enter_madvise, sys_exit_madvise, SYS_MADVISE, 3);
