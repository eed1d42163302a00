//! Resident memory from `kmem:rss_stat`, kept per traced tgid in the `RSS` map (event-driven:
//! no polling of /proc). Since Linux 6.2 the event carries the counter's exact sum:
//!
//! ```text
//! field:unsigned int mm_id;  offset:8;   size:4;  signed:0;   hash of the mm pointer
//! field:unsigned int curr;   offset:12;  size:4;  signed:0;   1 if mm is current's own
//! field:int member;          offset:16;  size:4;  signed:1;   MM_FILEPAGES ... MM_SHMEMPAGES
//! field:long size;           offset:24;  size:8;  signed:1;   bytes
//! ```
//!
//! Events with `curr` = 0 come from another context (reclaim, a kthread using the mm, ...):
//! they are attributed through `MM_OWNER`, learned from the process's own events.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::tracepoint, programs::TracePointContext};
use tracer_common::counters::{RSS_ANON, RSS_FILE, RSS_KINDS, RSS_SHMEM, RssCounters};

use crate::maps::{MM_OWNER, RSS, config, current_ids, is_counted};

#[tracepoint]
pub fn rss_stat(ctx: TracePointContext) -> u32 {
    let _ = try_rss_stat(&ctx);
    0
}

fn try_rss_stat(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = config();
    // SAFETY: offsets of 4-byte fields of this tracepoint's record.
    let curr = unsafe { ctx.read_at::<u32>(cfg.rss_curr as usize) }.map_err(i64::from)?;
    let mm_id = unsafe { ctx.read_at::<u32>(cfg.rss_mm_id as usize) }.map_err(i64::from)?;
    let tgid = if curr != 0 {
        let (tgid, _) = current_ids();
        if !is_counted(tgid) {
            return Ok(());
        }
        // SAFETY: reading a map value for the duration of the program.
        if MM_OWNER
            .get_ptr(mm_id)
            .is_none_or(|owner| unsafe { *owner } != tgid)
        {
            let _ = MM_OWNER.insert(mm_id, tgid, 0);
        }
        tgid
    } else {
        match MM_OWNER.get_ptr(mm_id) {
            // SAFETY: as above.
            Some(owner) => unsafe { *owner },
            None => return Ok(()),
        }
    };
    // SAFETY: offsets of the 4-byte `member` and the 8-byte `size`.
    let member = unsafe { ctx.read_at::<i32>(cfg.rss_member as usize) }.map_err(i64::from)?;
    let size = unsafe { ctx.read_at::<i64>(cfg.rss_size as usize) }.map_err(i64::from)?;
    if member < 0 || member as usize >= RSS_KINDS {
        return Ok(());
    }
    let counters = match RSS.get_ptr_mut(tgid) {
        Some(c) => c,
        None => {
            let _ = RSS.insert(tgid, RssCounters::default(), BPF_NOEXIST as u64);
            RSS.get_ptr_mut(tgid).ok_or(0i64)?
        }
    };
    // SAFETY: a valid map value. Two CPUs may race on one process's counters; each event
    // carries the full value, so the next event of that counter corrects a lost update.
    unsafe {
        if curr != 0 {
            // The process's own event: this is its address space now. A new one (after an
            // exec, or a vfork child's first own event) starts from nothing: its counters and
            // peak are its own, and the old mm no longer maps to this process.
            let old = (*counters).mm_id;
            if old != mm_id {
                if old != 0 {
                    let _ = MM_OWNER.remove(old);
                }
                (*counters).bytes = [0; RSS_KINDS];
                (*counters).peak_resident = 0;
                (*counters).reported = 0;
                (*counters).mm_id = mm_id;
            }
        } else if (*counters).mm_id != mm_id {
            // An address space it no longer uses (left at exec, torn down late).
            return Ok(());
        }
        // The mask must survive optimisation: LLVM would drop it after the range check above,
        // and the verifier wants the index bounded on the register it uses.
        let index = core::hint::black_box(member as usize) & (RSS_KINDS - 1);
        (*counters).bytes[index] = size.max(0) as u64;
        // Kinds without their bit keep the value the daemon seeded from /proc (a whole-entry
        // write from user space could undo a concurrent update here, so it merges on read).
        (*counters).reported |= 1 << index;
        // The peak of the kinds reported so far; the daemon adds the seeded ones.
        let b = &(*counters).bytes;
        let resident = b[RSS_FILE] + b[RSS_ANON] + b[RSS_SHMEM];
        if resident > (*counters).peak_resident {
            (*counters).peak_resident = resident;
        }
    }
    Ok(())
}
