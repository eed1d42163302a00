//! Per-process accounting built from events: syscall counts and failures, bytes mapped and
//! unmapped, the program break, lifecycle. Pure: no I/O; the session feeds it events and the
//! figures it reads from the kernel maps and /proc.

use tracer_common::counters::{FaultCounters, RssCounters};

use crate::{
    kernel::events::{ExecEvent, SyscallEvent},
    kernel::syscalls::{Outcome, SyscallKind},
    model::{AddressSpace, apply::NeedsName},
    tracking::fault_regions::FaultRegions,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallStats {
    pub calls: u64,
    pub failed: u64,
}

/// The program break as the brk syscalls show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heap {
    /// `start_brk` of the current image (from /proc at exec/attach, else the first brk answer).
    pub start: Option<u64>,
    /// The current break: every brk call returns it, even a refused one.
    pub end: Option<u64>,
    /// Highest break seen.
    pub peak: Option<u64>,
    /// brk calls that moved the break.
    pub moves: u64,
    /// Of those, the ones that raised it and the ones that lowered it (gave memory back).
    pub growths: u64,
    pub shrinks: u64,
    /// The largest rise of the break in one brk call.
    pub largest_growth: u64,
}

impl Heap {
    fn observe_break(&mut self, brk: u64) {
        if self.start.is_none() {
            self.start = Some(brk);
        }
        if let Some(old) = self.end
            && old != brk
        {
            self.moves += 1;
            if brk > old {
                self.growths += 1;
                self.largest_growth = self.largest_growth.max(brk - old);
            } else {
                self.shrinks += 1;
            }
        }
        self.end = Some(brk);
        self.peak = Some(self.peak.map_or(brk, |p| p.max(brk)));
    }

    /// Current heap size in bytes (break minus start).
    pub fn size(&self) -> Option<u64> {
        Some(self.end?.saturating_sub(self.start?))
    }

    pub fn peak_size(&self) -> Option<u64> {
        Some(self.peak?.saturating_sub(self.start?))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Running,
    /// The process exited (sched_process_exit with group_dead).
    Exited {
        ts_ns: u64,
    },
}

/// Everything known about one traced process (thread group).
#[derive(Clone, Debug)]
pub struct ProcessState {
    pub tgid: u32,
    /// Which process this is among those that had this tgid: a new entry gets a new number
    /// (pid reuse), so state kept elsewhere per tgid (call sites) can tell it is stale.
    pub generation: u64,
    /// The traced parent that forked it, if it was followed through a fork.
    pub parent: Option<u32>,
    pub comm: String,
    /// The file of the last exec seen, if any.
    pub exe: Option<String>,
    /// The command line of the current image (from /proc when it was seeded).
    pub argv: Vec<String>,
    /// The parent process id as /proc told it when the process was seeded.
    pub ppid: Option<u32>,
    pub syscalls: [SyscallStats; SyscallKind::ALL.len()],
    /// Page-rounded lengths of successful mmaps (and of mremap growth).
    pub bytes_mapped: u64,
    /// Page-rounded lengths of successful munmaps (and of mremap shrinking).
    pub bytes_unmapped: u64,
    /// Sizes of successful mmaps and munmaps.
    pub mmap_sizes: crate::tracking::sizes::MmapSizes,
    pub heap: Heap,
    /// Page faults (read from the kernel map; final once the process exited).
    pub faults: FaultCounters,
    /// The same faults attributed to regions of the address space.
    pub fault_regions: FaultRegions,
    /// Resident memory as `kmem:rss_stat` last reported it, merged with `rss_seed` (final
    /// once the process exited): see `observe_rss`.
    pub rss: RssCounters,
    /// Resident memory by kind as /proc told it when the process became traced mid-life
    /// (attach, fork): the value of every kind no event has reported since.
    pub rss_seed: Option<[u64; tracer_common::counters::RSS_KINDS]>,
    /// `signal->maxrss` (pages) when its current image began: exec or fork (Some(0)); None
    /// after an attach. See `observe_exit_maxrss`.
    pub maxrss_base: Option<u32>,
    pub threads_created: u64,
    pub execs: u64,
    pub lifecycle: Lifecycle,
    /// Exit status as the tracer's own child (only known for the command of `tracer run`).
    pub exit_status: Option<i32>,
    /// The address space rebuilt from the events.
    pub space: AddressSpace,
    /// When and how the space was seeded from /proc.
    pub seed: SeedState,
    /// Changes that could not be applied in the kernel's order (a record that came too late,
    /// one that was lost, memory handed out where the model has some): each one made the
    /// model take the state from /proc again instead of applying it blindly.
    pub order_conflicts: u64,
    /// The last changes of the break, with their times (bounded: see `brk_ring`).
    pub brk_history: crate::tracking::brk_ring::BrkRing,
    pub brk_history_dropped: u64,
    /// The last few address-space changes, for the live page.
    pub recent: crate::tracking::recent::RecentChanges,
    /// The drift checks: resyncs from /proc after the model was found to differ.
    pub drift: DriftHistory,
    /// Highest virtual size and VMA count seen.
    pub peak_vsz: u64,
    pub peak_vmas: usize,
    /// The address space at exit, drawn for the summary, kept once the VMAs are dropped
    /// (`--exited-grace` after the exit).
    pub final_layout: Option<String>,
    pub model_dropped: bool,
    /// Tracing of this process ended at an exec of an excluded command (`Exited` then holds
    /// the time); it did not exit.
    pub untraced: bool,
    /// It exited without its exit record reaching the daemon (the ring buffer was full): found
    /// gone from /proc and from the kernel's traced set instead.
    pub exit_record_lost: bool,
    /// With `--group-by comm`: what was counted while the process had earlier comms (before an
    /// exec), which stays with those comms' series.
    pub counted_under_earlier_comms: crate::tracking::counters::CounterTotals,
    /// Snapshots taken when a phase was marked (`POST /api/v1/phases`).
    pub phases: Vec<PhaseSnapshot>,
    /// Its cgroup v2 path, read when it was first traced and at each exec (a forked child
    /// inherits its parent's); None when unknown.
    pub cgroup: Option<String>,
}

/// When a process's address space was seeded from /proc, and whether it must be again.
#[derive(Clone, Debug, Default)]
pub struct SeedState {
    /// When the space was last seeded (CLOCK_MONOTONIC ns): records produced before that are
    /// already in the seed and are not applied again. None: never seeded.
    pub at_ns: Option<u64>,
    /// When that /proc read ended: a syscall that overlaps [at_ns, this] may or may not be in
    /// the seed.
    pub read_end_ns: u64,
    /// A syscall overlapped the seed read and applying it twice is not harmless (a move copies
    /// what its source holds now): the seed must be taken again.
    pub needed_again: bool,
    /// Seeds taken again for that reason.
    pub retaken: u64,
}

/// A process's figures at the moment a phase was marked (as the report shows them).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PhaseSnapshot {
    pub name: String,
    pub ts_ns: u64,
    /// Resident memory (file + anon + shmem).
    pub rss: u64,
    pub heap: u64,
    pub vsz: u64,
    pub vmas: u64,
    pub faults: u64,
}

impl ProcessState {
    pub fn new(tgid: u32, comm: String, page_size: u64) -> ProcessState {
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ProcessState {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            space: AddressSpace::new(page_size),
            seed: SeedState::default(),
            order_conflicts: 0,
            brk_history: Default::default(),
            brk_history_dropped: 0,
            recent: Default::default(),
            drift: Default::default(),
            peak_vsz: 0,
            peak_vmas: 0,
            final_layout: None,
            model_dropped: false,
            untraced: false,
            exit_record_lost: false,
            counted_under_earlier_comms: Default::default(),
            phases: Vec::new(),
            cgroup: None,
            argv: Vec::new(),
            ppid: None,
            mmap_sizes: Default::default(),
            tgid,
            parent: None,
            comm,
            exe: None,
            syscalls: Default::default(),
            bytes_mapped: 0,
            bytes_unmapped: 0,
            heap: Heap::default(),
            faults: FaultCounters::default(),
            fault_regions: FaultRegions::default(),
            rss: RssCounters::default(),
            rss_seed: None,
            maxrss_base: None,
            threads_created: 0,
            execs: 0,
            lifecycle: Lifecycle::Running,
            exit_status: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.lifecycle == Lifecycle::Running
    }

    /// Frees the VMAs of an exited process, keeping its counters and final drawing.
    pub fn drop_model(&mut self) {
        self.space = AddressSpace::new(self.space.page_size);
        // Its share of the daemon's brk budget goes back (the ring's Drop).
        self.brk_history = Default::default();
        self.model_dropped = true;
    }

    /// The figures a phase mark records.
    pub fn snapshot(&self, name: &str, ts_ns: u64) -> PhaseSnapshot {
        PhaseSnapshot {
            name: name.to_string(),
            ts_ns,
            rss: self.resident(),
            heap: self.heap_size().unwrap_or(0),
            vsz: self.space.virtual_size(),
            vmas: self.space.vma_count() as u64,
            faults: self.faults.total(),
        }
    }

    pub fn stats(&self, kind: SyscallKind) -> SyscallStats {
        self.syscalls[kind.index()]
    }

    pub(super) fn apply_syscall(&mut self, e: &SyscallEvent, page_size: u64) -> Option<NeedsName> {
        self.count_syscall(e, page_size);
        // Records older than the seed are already part of it.
        if let Some(seeded) = self.seed.at_ns {
            if e.ts_ns < seeded {
                return None;
            }
            if e.enter_ns <= self.seed.read_end_ns && !replay_is_harmless(e) {
                self.seed.needed_again = true;
            }
        }
        let effect = crate::model::apply::apply(&mut self.space, e);
        if effect.uncertain {
            self.seed.needed_again = true;
        }
        if effect.conflict {
            self.order_conflicts += 1;
            self.seed.needed_again = true;
        }
        self.note_peaks();
        effect.needs_name
    }

    /// A change that cannot be placed in the kernel's order (`order::Step::Late`, `Gap`): not
    /// applied; the state comes from /proc again.
    pub fn order_conflict(&mut self) {
        self.order_conflicts += 1;
        self.seed.needed_again = true;
    }

    /// The call's counters (every record, applied to the model or not).
    pub(super) fn count_syscall(&mut self, e: &SyscallEvent, page_size: u64) {
        let stats = &mut self.syscalls[e.kind.index()];
        stats.calls += 1;
        let ok = e.outcome() == Outcome::Ok;
        if !ok {
            stats.failed += 1;
        }
        let round = |len: u64| len.div_ceil(page_size).saturating_mul(page_size);
        match e.kind {
            // A refused brk returns the old break: still the current break.
            SyscallKind::Brk => {
                let before = self.heap.end;
                self.heap.observe_break(e.ret as u64);
                let moved = before != self.heap.end && before.is_some();
                if moved {
                    self.record_brk(e.ts_ns, e.ret as u64);
                }
                self.recent.note(e, moved);
            }
            SyscallKind::Mmap if ok => {
                let len = round(e.args[1]);
                self.bytes_mapped += len;
                let (prot, flags) = (e.args[2], e.args[3]);
                let anonymous = flags & libc::MAP_ANONYMOUS as u64 != 0;
                // What allocators map for memory: not thread stacks, not PROT_NONE
                // reservations (glibc's arenas), not shared memory.
                let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
                let allocator_like = anonymous
                    && prot & rw == rw
                    && flags & libc::MAP_STACK as u64 == 0
                    && flags & libc::MAP_SHARED as u64 == 0;
                self.mmap_sizes.mapped(len, anonymous, allocator_like);
            }
            SyscallKind::Munmap if ok => {
                let len = round(e.args[1]);
                self.bytes_unmapped += len;
                // Asked of the model before it applies the munmap.
                if self.is_allocator_like(e.args[0], len) {
                    self.mmap_sizes.unmapped(len);
                }
            }
            SyscallKind::Mremap if ok => {
                let (old, new) = (round(e.args[1]), round(e.args[2]));
                if new > old {
                    self.bytes_mapped += new - old;
                } else {
                    self.bytes_unmapped += old - new;
                }
            }
            _ => {}
        }
        if e.kind != SyscallKind::Brk {
            self.recent.note(e, false);
        }
    }

    /// Whether all of `[start, start + len)` is private anonymous read-write memory in the
    /// model (what an allocator gives back with munmap).
    fn is_allocator_like(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        let space = &self.space;
        len > 0
            && space.contiguous_end(start, end) == end
            && space
                .first_where(start, end, |v| {
                    !(v.backing.is_anonymous() && v.perms.read && v.perms.write && !v.perms.shared)
                })
                .is_none()
    }

    fn record_brk(&mut self, ts_ns: u64, brk: u64) {
        let size = self.heap.start.map_or(0, |start| brk.saturating_sub(start));
        if self
            .brk_history
            .push(crate::tracking::brk_ring::BrkChange { ts_ns, brk, size })
        {
            self.brk_history_dropped += 1;
        }
    }

    /// Updates the peaks after the space changed.
    pub fn note_peaks(&mut self) {
        self.peak_vsz = self.peak_vsz.max(self.space.virtual_size());
        self.peak_vmas = self.peak_vmas.max(self.space.vma_count());
    }

    pub(super) fn apply_exec(&mut self, e: &ExecEvent) {
        self.comm = e.comm.clone();
        self.exe = Some(e.filename.clone());
        self.execs += 1;
        self.argv.clear();
        // Peaks describe the current image, like the heap and the resident memory (whose
        // counters start again with the new mm).
        self.peak_vsz = 0;
        self.peak_vmas = 0;
        // A new image: new break, new address space; the session seeds both from /proc.
        self.heap = Heap::default();
        self.space = AddressSpace::new(self.space.page_size);
        self.seed.at_ns = None;
        // The new mm's counters start from nothing and the probe reports each change.
        self.rss = RssCounters::default();
        self.rss_seed = None;
        self.maxrss_base = Some(e.maxrss_pages);
    }
}

/// Whether applying `e` to a snapshot that may already contain it (and later changes) gives
/// the same result: mmap, munmap, madvise and a complete mprotect set the state of their own
/// range. A successful mremap copies its source as it is now, brk depends on the old break,
/// and a failed mprotect on where the first hole or refusal lies.
fn replay_is_harmless(e: &SyscallEvent) -> bool {
    match e.kind {
        SyscallKind::Mmap | SyscallKind::Munmap | SyscallKind::Madvise => true,
        SyscallKind::Mprotect => e.outcome() == Outcome::Ok,
        SyscallKind::Mremap => e.outcome() != Outcome::Ok,
        SyscallKind::Brk => e.args[0] == 0 || e.outcome() != Outcome::Ok,
    }
}

/// How the drift checks of a process went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriftHistory {
    /// Resyncs from /proc after the model was found to differ.
    pub resyncs: u64,
    /// The differing lines those checks found.
    pub differences: u64,
    /// The last check found a difference and resynced.
    pub resynced_last_check: bool,
    /// A drift right after a resync was reported (once per process).
    pub recurring_reported: bool,
}

#[cfg(test)]
mod tests;
