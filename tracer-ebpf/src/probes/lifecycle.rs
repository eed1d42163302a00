//! Process lifecycle: clone flags at entry, `sched:sched_process_{fork,exec,exit}`.
//!
//! The fork probe runs in the parent and adds a child *process* (not a thread) of a traced
//! process to `TRACED` before the child first runs, so children are traced from their first
//! instruction with no race against user space. `sched_process_fork` does not say whether the
//! child is a thread, hence the clone flags stashed at syscall entry.
//!
//! ```text
//! sched_process_fork (6.18): field:pid_t child_pid;  offset:20; size:4; signed:1;
//!   (the comm fields became __data_loc in 6.x, which moved child_pid: read from tracefs)
//! sched_process_exec:  field:__data_loc char[] filename; offset:8;  size:4;
//!                      field:pid_t old_pid;              offset:16; size:4;
//! sched_process_exit:  field:bool group_dead;            offset:32; size:1;  (6.16+; before
//!                      it, `current->signal->live` at offsets from BTF, see `group_dead`)
//! sys_enter_clone:     field:unsigned long clone_flags;  offset:16; size:8;
//! sys_enter_clone3:    field:struct clone_args * uargs;  offset:16; size:8;
//! ```

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        bpf_probe_read_user,
        generated::{bpf_get_current_task, bpf_send_signal},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use tracer_common::{
    counters::{
        STAT_TRACED_FULL, TRACED_AWAIT_EXEC, TRACED_BY_FORK, TRACED_BY_USER, TRACED_STATE_MASK,
        TRACED_STOP_AT_EXEC,
    },
    record::{
        EXEC_FILENAME_LEN, EXEC_STARTED, EXEC_STOPPED, EXEC_UNTRACED, ExecRecord, ExitRecord,
        FORK_FLAGS_UNKNOWN, FORK_REFUSED, FORK_THREAD, ForkRecord, RECORD_EXEC, RECORD_EXIT,
        RECORD_FORK,
    },
};

use tracer_common::config::{
    COMM_EXCLUDE, COMM_FILTER_ALL, COMM_FILTER_CGROUP, COMM_FILTER_EXCLUDE, COMM_FILTER_TRACE,
    COMM_TRACE,
};

use crate::maps::{
    CGROUP_FILTER, CLONE_FLAGS, COMM_FILTER, EVENTS, FAULTS, INFLIGHT, MM_SEQ, TRACED, WAKE_NOW,
    config, count_lost, count_stat, current_ids, header, is_traced,
};

const SIGSTOP: u32 = 19;
pub(super) const CLONE_VM: u64 = 0x100;
pub(super) const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x10000;

/// Also called by the raw `sys_enter` program (probes/raw_syscalls.rs).
pub(super) fn stash_clone_flags(flags: u64) {
    let (tgid, pid_tgid) = current_ids();
    if is_traced(tgid) {
        let _ = CLONE_FLAGS.insert(pid_tgid, flags, 0);
    }
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    // SAFETY: offset of the 8-byte `clone_flags` field.
    if let Ok(flags) = unsafe { ctx.read_at::<u64>(config().clone_flags as usize) } {
        stash_clone_flags(flags);
    }
    0
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // SAFETY: offset of the 8-byte `uargs` pointer.
    if let Ok(uargs) = unsafe { ctx.read_at::<u64>(config().clone3_uargs as usize) } {
        stash_clone3_flags(uargs);
    }
    0
}

/// The flags of `clone3(uargs, size)`.
pub(super) fn stash_clone3_flags(uargs: u64) {
    // `struct clone_args` starts with `__aligned_u64 flags` (uapi/linux/sched.h, stable ABI).
    // SAFETY: the user read is checked by the helper.
    if let Ok(flags) = unsafe { bpf_probe_read_user(uargs as *const u64) } {
        stash_clone_flags(flags);
    }
}

#[tracepoint]
pub fn sys_enter_fork(_ctx: TracePointContext) -> u32 {
    stash_clone_flags(0);
    0
}

#[tracepoint]
pub fn sys_enter_vfork(_ctx: TracePointContext) -> u32 {
    stash_clone_flags(CLONE_VM | CLONE_VFORK);
    0
}

/// `tracer run`'s child starts CMD: from here on its syscalls and faults are CMD's. What it
/// faulted between fork and now was the tracer's own doing and is discarded.
pub(super) fn start_counting_at_exec() {
    let (tgid, _) = current_ids();
    if let Some(state) = TRACED.get_ptr_mut(tgid) {
        // SAFETY: a valid map value pointer for the duration of the program.
        unsafe {
            if *state & TRACED_STATE_MASK == TRACED_AWAIT_EXEC {
                *state = TRACED_BY_USER | (*state & !TRACED_STATE_MASK);
                let _ = FAULTS.remove(tgid);
            }
        }
    }
}

#[tracepoint]
pub fn sys_enter_execve(_ctx: TracePointContext) -> u32 {
    start_counting_at_exec();
    0
}

#[tracepoint]
pub fn sys_enter_execveat(_ctx: TracePointContext) -> u32 {
    start_counting_at_exec();
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    // Runs in the parent.
    let (tgid, pid_tgid) = current_ids();
    if !is_traced(tgid) {
        return Ok(());
    }
    // SAFETY: offset of the 4-byte `child_pid` field.
    let child =
        unsafe { ctx.read_at::<u32>(config().fork_child_pid as usize) }.map_err(i64::from)?;
    let (clone_flags, mut flags) = match CLONE_FLAGS.get_ptr(pid_tgid) {
        // SAFETY: this thread's own entry.
        Some(stashed) => (unsafe { *stashed }, 0),
        None => (0, FORK_FLAGS_UNKNOWN),
    };
    let _ = CLONE_FLAGS.remove(pid_tgid);
    // The child inherits the parent's flags (stop at exec).
    // SAFETY: a valid map value pointer for the duration of the program.
    let inherited = TRACED
        .get_ptr(tgid)
        .map_or(0, |s| unsafe { *s } & !TRACED_STATE_MASK);
    if clone_flags & CLONE_THREAD != 0 {
        flags |= FORK_THREAD;
    } else if TRACED.insert(child, TRACED_BY_FORK | inherited, 0).is_err() {
        flags |= FORK_REFUSED;
        count_stat(STAT_TRACED_FULL);
        warn!(
            ctx,
            "traced set full: child {} of {} is not traced", child, tgid
        );
    }
    let Some(mut slot) = EVENTS.reserve::<ForkRecord>(0) else {
        count_lost(RECORD_FORK);
        return Ok(());
    };
    slot.write(ForkRecord {
        header: header(RECORD_FORK, pid_tgid),
        child_pid: child,
        flags,
        clone_flags,
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    slot.submit(0);
    Ok(())
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, pid_tgid) = current_ids();
    let cfg = config();
    let mut change = 0;
    if cfg.comm_filter != 0 {
        let comm = bpf_get_current_comm().unwrap_or_default();
        // SAFETY: reading a map value for the duration of the program.
        let listed = COMM_FILTER.get_ptr(comm).map_or(0, |v| unsafe { *v });
        let traced = is_traced(tgid);
        let wanted = (cfg.comm_filter & COMM_FILTER_TRACE != 0 && listed == COMM_TRACE)
            || (cfg.comm_filter & COMM_FILTER_ALL != 0 && listed != COMM_EXCLUDE);
        // `--cgroup`: only in the subtree. The id of the task's cgroup v2 is one helper call;
        // looked up only for an exec that would otherwise start tracing.
        let wanted = wanted
            && !traced
            && (cfg.comm_filter & COMM_FILTER_CGROUP == 0 || {
                // SAFETY: a helper without arguments, allowed in tracepoint programs.
                let id = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
                // SAFETY: reading a map value for the duration of the program.
                unsafe { CGROUP_FILTER.get(id).is_some() }
            });
        if !traced && wanted {
            if TRACED.insert(tgid, TRACED_BY_USER, 0).is_err() {
                count_stat(STAT_TRACED_FULL);
                return Ok(());
            }
            change = EXEC_STARTED;
        } else if traced && cfg.comm_filter & COMM_FILTER_EXCLUDE != 0 && listed == COMM_EXCLUDE {
            let _ = TRACED.remove(tgid);
            change = EXEC_UNTRACED;
        }
    }
    if change == 0 && !is_traced(tgid) {
        return Ok(());
    }
    let Some(mut slot) = EVENTS.reserve::<ExecRecord>(0) else {
        count_lost(RECORD_EXEC);
        return Ok(());
    };
    let record = slot.as_mut_ptr();
    // SAFETY: `record` is a reserved, exclusively owned ring-buffer slot of the right size;
    // every field is written before submit (`filename` only up to `filename_len`, which is
    // all the daemon reads). Field offsets come from the tracefs format.
    unsafe {
        (*record).header = header(RECORD_EXEC, pid_tgid);
        (*record).old_tid = ctx.read_at::<u32>(cfg.exec_old_pid as usize).unwrap_or(0);
        (*record).comm = bpf_get_current_comm().unwrap_or_default();
        // `__data_loc`: low 16 bits are the string's offset in the record, high 16 its length.
        let loc = ctx.read_at::<u32>(cfg.exec_filename as usize).unwrap_or(0);
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        let filename = &mut (*record).filename;
        let len = match bpf_probe_read_kernel_str_bytes(src, filename) {
            Ok(bytes) => bytes.len() as u32,
            Err(_) => 0,
        };
        (*record).filename_len = if len as usize > EXEC_FILENAME_LEN {
            0
        } else {
            len
        };
        (*record).maxrss_pages = maxrss_pages();
        // Stop before the first instruction of the new image, only now that the record that
        // makes the daemon resume the process is sure to reach it.
        let stop = TRACED
            .get_ptr(tgid)
            .is_some_and(|s| *s & TRACED_STOP_AT_EXEC != 0);
        (*record).flags = change
            | if stop && bpf_send_signal(SIGSTOP) == 0 {
                EXEC_STOPPED
            } else {
                0
            };
    }
    slot.submit(WAKE_NOW);
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, pid_tgid) = current_ids();
    // The thread's syscall slot lives until the thread exits, even if its process stopped
    // being traced meanwhile (an exec of an excluded command): removed for every thread.
    let _ = INFLIGHT.remove(pid_tgid);
    if !is_traced(tgid) {
        return Ok(());
    }
    let _ = CLONE_FLAGS.remove(pid_tgid);
    let tid = pid_tgid as u32;
    if tid != tgid {
        // A thread the fork probe could not classify was added as a process: drop it.
        let _ = TRACED.remove(tid);
    }
    if !group_dead(ctx)? {
        return Ok(());
    }
    // Removed here, in the kernel, so a recycled pid is never traced by mistake. Only the
    // thread that removes it reports the exit: one record per process (see `group_dead`).
    if TRACED.remove(tgid).is_err() {
        return Ok(());
    }
    let _ = MM_SEQ.remove(tgid);
    let Some(mut slot) = EVENTS.reserve::<ExitRecord>(0) else {
        count_lost(RECORD_EXIT);
        return Ok(());
    };
    slot.write(ExitRecord {
        header: header(RECORD_EXIT, pid_tgid),
        group_dead: 1,
        maxrss_pages: maxrss_pages(),
        comm: bpf_get_current_comm().unwrap_or_default(),
        hiwater_pages: hiwater_pages(),
        _pad: 0,
    });
    slot.submit(WAKE_NOW);
    Ok(())
}

/// `current->signal->maxrss` in pages (0 when its offset is unknown or unreadable): the
/// highest `hiwater_rss` of the mms the process had, raised by `do_exit()` (before the exit
/// tracepoint) and at exec for the mm it leaves. Read only when RSS comes from /proc (the
/// daemon sets the offset then), so the peak of a process that has exited is known.
#[inline(always)]
fn maxrss_pages() -> u32 {
    let cfg = config();
    if cfg.signal_maxrss == 0 {
        return 0;
    }
    // SAFETY: the helpers check the reads; a wrong offset yields a wrong answer, not a fault.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(signal) =
            bpf_probe_read_kernel(task.add(cfg.task_signal as usize) as *const *const u8)
        else {
            return 0;
        };
        let pages: u64 =
            bpf_probe_read_kernel(signal.add(cfg.signal_maxrss as usize) as *const u64)
                .unwrap_or(0);
        pages.min(u32::MAX as u64) as u32
    }
}

/// `current->mm->hiwater_rss` in pages, where the mm is still there at the exit tracepoint
/// (Linux 6.16+); 0 otherwise or when the offsets are unknown.
#[inline(always)]
fn hiwater_pages() -> u32 {
    let cfg = config();
    if cfg.task_mm == 0 || cfg.mm_hiwater_rss == 0 {
        return 0;
    }
    // SAFETY: the helpers check the reads; a NULL mm (exit_mm() already ran) reads nothing.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(mm) = bpf_probe_read_kernel(task.add(cfg.task_mm as usize) as *const *const u8)
        else {
            return 0;
        };
        if mm.is_null() {
            return 0;
        }
        let pages: u64 =
            bpf_probe_read_kernel(mm.add(cfg.mm_hiwater_rss as usize) as *const u64).unwrap_or(0);
        pages.min(u32::MAX as u64) as u32
    }
}

/// Whether the exiting thread's group is dead: no thread of the process runs any more.
///
/// Linux 6.16+ says so in the tracepoint (`group_dead`). Before, `do_exit()` has already
/// decremented `current->signal->live` (the same `atomic_dec_and_test` that computes
/// `group_dead`) when it fires the tracepoint, so a count of 0 means every thread is past that
/// point. A thread that decremented earlier can see 0 too, when it reaches the tracepoint after
/// the last one: the caller's removal from `TRACED`, which succeeds once, picks one of them.
/// The offsets come from the kernel's BTF (`Config::task_signal`, `Config::signal_live`).
#[inline(always)]
fn group_dead(ctx: &TracePointContext) -> Result<bool, i64> {
    let cfg = config();
    if cfg.exit_group_dead != 0 {
        // SAFETY: offset of the one-byte `group_dead` field.
        let dead = unsafe { ctx.read_at::<u8>(cfg.exit_group_dead as usize) }?;
        return Ok(dead != 0);
    }
    // SAFETY: the helpers check the reads; a wrong offset yields a wrong answer, not a fault.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let signal: *const u8 =
            bpf_probe_read_kernel(task.add(cfg.task_signal as usize) as *const *const u8)?;
        let live: i32 = bpf_probe_read_kernel(signal.add(cfg.signal_live as usize) as *const i32)?;
        Ok(live == 0)
    }
}
