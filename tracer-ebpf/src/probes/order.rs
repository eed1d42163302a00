//! The kernel's order of a process's address-space changes.
//!
//! Threads of one process change its address space one at a time, each holding `mmap_lock` for
//! writing, but their records reach the ring buffer in the order the threads reach `sys_exit`:
//! thread A's `munmap(X)` releases the lock, thread B's `mmap` is handed X at once, and B's
//! record may come first. So the probe on `mmap_lock:mmap_lock_acquire_returned` gives the
//! thread's in-flight syscall the next number of its process when it gets the write lock, and
//! the daemon applies a process's records in the order of these numbers.
//!
//! The counter of a process is written only with its `mmap_lock` held for writing, so a plain
//! increment is race-free. Only a traced syscall in flight takes a number, and only its first
//! write lock: every numbered syscall then sends exactly one record (unless the ring buffer is
//! full, which is counted), and the daemon can tell a record still on its way from one that
//! will never come.
//!
//! The probes run on the raw tracepoint (its arguments, no record built). Its prototype changed
//! in Linux 6.14, which dropped the memcg path the caller computed for every acquisition:
//!
//! ```text
//! 5.10 to 6.13: TP_PROTO(struct mm_struct *mm, const char *memcg_path, bool write, bool success)
//! 6.14+:        TP_PROTO(struct mm_struct *mm, bool write, bool success)
//! ```
//! The daemon reads which one this kernel has from tracefs (`memcg_path` or `memcg_id`) and
//! attaches the matching program.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::maps::{INFLIGHT, MM_SEQ, NO_SYSCALL, current_ids};

/// `write` and `success` are C `bool`s: only the low byte is defined.
#[inline(always)]
fn is_true(arg: u64) -> bool {
    arg & 0xff != 0
}

#[inline(always)]
fn on_acquired(write: u64, success: u64) {
    // Read acquisitions (page faults on kernels without per-VMA locks, /proc readers) leave at
    // the first test.
    if !is_true(write) || !is_true(success) {
        return;
    }
    let (tgid, pid_tgid) = current_ids();
    // Only traced threads have a slot: other processes pay one lookup.
    let Some(slot) = INFLIGHT.get_ptr_mut(pid_tgid) else {
        return;
    };
    // SAFETY: the entry belongs to this thread; only this thread writes it.
    let inflight = unsafe { &mut *slot };
    if inflight.syscall == NO_SYSCALL || inflight.seq != 0 {
        return;
    }
    let seq = match MM_SEQ.get_ptr_mut(tgid) {
        Some(counter) => {
            // SAFETY: a valid map value, written only under this process's mmap_lock.
            let counter = unsafe { &mut *counter };
            *counter = match counter.wrapping_add(1) {
                0 => 1,
                next => next,
            };
            *counter
        }
        None => {
            if MM_SEQ.insert(tgid, 1, 0).is_err() {
                return;
            }
            1
        }
    };
    inflight.seq = seq;
}

/// Linux 6.14+: `(mm, write, success)`.
#[raw_tracepoint(tracepoint = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned(ctx: RawTracePointContext) -> i32 {
    on_acquired(ctx.arg(1), ctx.arg(2));
    0
}

/// Linux 5.10 to 6.13: `(mm, memcg_path, write, success)`.
#[raw_tracepoint(tracepoint = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned_memcg_path(ctx: RawTracePointContext) -> i32 {
    on_acquired(ctx.arg(2), ctx.arg(3));
    0
}
