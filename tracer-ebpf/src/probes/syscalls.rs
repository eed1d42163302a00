//! `syscalls:sys_enter_*` / `sys_exit_*` for brk, mmap, munmap, mremap, mprotect, madvise.
//!
//! Entry stashes the arguments per thread; exit pairs them with the return value and emits one
//! `SyscallRecord`. Argument offsets come from the tracefs `format` files, e.g. for mmap:
//!
//! ```text
//! field:unsigned long addr;  offset:16;  size:8;  signed:0;
//! field:unsigned long len;   offset:24;  size:8;  signed:0;  ... prot, flags, fd, off
//! ```
//! and every `sys_exit_*` has `field:long ret; offset:16; size:8; signed:1;`.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    counters::{STAT_EXIT_WITHOUT_ENTER, STAT_INFLIGHT_FULL},
    record::{
        MAX_ARGS, RECORD_SYSCALL, SYS_BRK, SYS_MADVISE, SYS_MMAP, SYS_MPROTECT, SYS_MREMAP,
        SYS_MUNMAP, SyscallRecord,
    },
};

use crate::maps::{
    EVENTS, INFLIGHT, Inflight, batched_wakeup, config, count_lost, count_stat, current_ids,
    header, is_counted, now_ns,
};

fn on_enter(ctx: &TracePointContext, syscall: u32) -> Result<(), i64> {
    let (tgid, pid_tgid) = current_ids();
    if !is_counted(tgid) {
        return Ok(());
    }
    let cfg = config();
    let offsets = &cfg.syscall_args[syscall as usize];
    let nargs = cfg.syscall_nargs[syscall as usize] as usize;
    let mut inflight = Inflight {
        syscall,
        _pad: 0,
        args: [0; MAX_ARGS],
        enter_ns: now_ns(),
    };
    for (i, arg) in inflight.args.iter_mut().enumerate() {
        if i < nargs {
            // SAFETY: the offset is that of an 8-byte field of this tracepoint's record.
            *arg = unsafe { ctx.read_at::<u64>(offsets[i] as usize) }.map_err(i64::from)?;
        }
    }
    if INFLIGHT.insert(pid_tgid, inflight, 0).is_err() {
        count_stat(STAT_INFLIGHT_FULL);
    }
    Ok(())
}

fn on_exit(ctx: &TracePointContext, syscall: u32) -> Result<(), i64> {
    let (tgid, pid_tgid) = current_ids();
    if !is_counted(tgid) {
        return Ok(());
    }
    let Some(stashed) = INFLIGHT.get_ptr(pid_tgid) else {
        // Traced while already inside the syscall: its arguments are unknown.
        count_stat(STAT_EXIT_WITHOUT_ENTER);
        return Ok(());
    };
    // SAFETY: the entry belongs to this thread; only this thread writes or removes it.
    let stashed = unsafe { *stashed };
    let _ = INFLIGHT.remove(pid_tgid);
    if stashed.syscall != syscall {
        count_stat(STAT_EXIT_WITHOUT_ENTER);
        return Ok(());
    }
    // SAFETY: `ret` is an 8-byte field of sys_exit_* records.
    let ret = unsafe { ctx.read_at::<i64>(config().syscall_ret[syscall as usize] as usize) }
        .map_err(i64::from)?;
    let Some(mut slot) = EVENTS.reserve::<SyscallRecord>(0) else {
        count_lost(RECORD_SYSCALL);
        return Ok(());
    };
    slot.write(SyscallRecord {
        header: header(RECORD_SYSCALL, pid_tgid),
        syscall,
        _pad: 0,
        args: stashed.args,
        ret,
        enter_ns: stashed.enter_ns,
    });
    slot.submit(batched_wakeup());
    Ok(())
}

/// Defines the entry and exit programs of one syscall.
macro_rules! syscall_probes {
    ($enter:ident, $exit:ident, $kind:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = on_enter(&ctx, $kind);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            let _ = on_exit(&ctx, $kind);
            0
        }
    };
}

syscall_probes!(sys_enter_brk, sys_exit_brk, SYS_BRK);
syscall_probes!(sys_enter_mmap, sys_exit_mmap, SYS_MMAP);
syscall_probes!(sys_enter_munmap, sys_exit_munmap, SYS_MUNMAP);
syscall_probes!(sys_enter_mremap, sys_exit_mremap, SYS_MREMAP);
syscall_probes!(sys_enter_mprotect, sys_exit_mprotect, SYS_MPROTECT);
syscall_probes!(sys_enter_madvise, sys_exit_madvise, SYS_MADVISE);
