//! Per-process accounting built from events: syscall counts and failures, bytes mapped and
//! unmapped, the program break, lifecycle. Pure: no I/O; the session feeds it events and the
//! figures it reads from the kernel maps and /proc.

use std::collections::BTreeMap;

use tracer_common::counters::{FaultCounters, RssCounters};

use crate::{
    events::{Event, ExecEvent, ForkEvent, SyscallEvent, TaskKind},
    fault_regions::FaultRegions,
    model::{AddressSpace, apply::NeedsName},
    syscalls::{Outcome, SyscallKind},
};

/// One change of the program break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrkChange {
    pub ts_ns: u64,
    pub brk: u64,
    /// The heap size then: the break minus that image's `start_brk` (0 if unknown).
    pub size: u64,
}

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
    pub mmap_sizes: crate::sizes::MmapSizes,
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
    pub threads_created: u64,
    pub execs: u64,
    pub lifecycle: Lifecycle,
    /// Exit status as the tracer's own child (only known for the command of `tracer run`).
    pub exit_status: Option<i32>,
    /// The address space rebuilt from the events.
    pub space: AddressSpace,
    /// When the space was last seeded from /proc (CLOCK_MONOTONIC ns): records produced before
    /// that are already in the seed and are not applied again. None: never seeded.
    pub seeded_at_ns: Option<u64>,
    /// When that /proc read ended: a syscall that overlaps [seeded_at_ns, this] may or may not
    /// be in the seed.
    pub seed_read_end_ns: u64,
    /// A syscall overlapped the seed read and applying it twice is not harmless (a move copies
    /// what its source holds now): the seed must be taken again.
    pub reseed_needed: bool,
    /// Seeds taken again for that reason.
    pub reseeds: u64,
    /// Changes that could not be applied in the kernel's order (a record that came too late,
    /// one that was lost, memory handed out where the model has some): each one made the
    /// model take the state from /proc again instead of applying it blindly.
    pub order_conflicts: u64,
    /// The last changes of the break, with their times (bounded: see `brk_ring`).
    pub brk_history: crate::brk_ring::BrkRing,
    pub brk_history_dropped: u64,
    /// The last few address-space changes, for the live page.
    pub recent: crate::recent::RecentChanges,
    /// Resyncs from /proc after the model was found to differ, and the differing lines found.
    pub resyncs: u64,
    pub drift_differences: u64,
    /// How the last drift checks went (for reporting recurring drift once).
    pub drift: crate::reconcile::DriftHistory,
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
    pub counted_under_earlier_comms: crate::metrics::Totals,
    /// Snapshots taken when a phase was marked (`POST /api/v1/phases`).
    pub phases: Vec<PhaseSnapshot>,
    /// Its cgroup v2 path, read when it was first traced and at each exec (a forked child
    /// inherits its parent's); None when unknown.
    pub cgroup: Option<String>,
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
        ProcessState {
            space: AddressSpace::new(page_size),
            seeded_at_ns: None,
            seed_read_end_ns: 0,
            reseed_needed: false,
            reseeds: 0,
            order_conflicts: 0,
            brk_history: Default::default(),
            brk_history_dropped: 0,
            recent: Default::default(),
            resyncs: 0,
            drift_differences: 0,
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

    fn apply_syscall(&mut self, e: &SyscallEvent, page_size: u64) -> Option<NeedsName> {
        self.count_syscall(e, page_size);
        // Records older than the seed are already part of it.
        if let Some(seeded) = self.seeded_at_ns {
            if e.ts_ns < seeded {
                return None;
            }
            if e.enter_ns <= self.seed_read_end_ns && !replay_is_harmless(e) {
                self.reseed_needed = true;
            }
        }
        let effect = crate::model::apply::apply(&mut self.space, e);
        if effect.uncertain {
            self.reseed_needed = true;
        }
        if effect.conflict {
            self.order_conflicts += 1;
            self.reseed_needed = true;
        }
        self.note_peaks();
        effect.needs_name
    }

    /// A change that cannot be placed in the kernel's order (`order::Step::Late`, `Gap`): not
    /// applied; the state comes from /proc again.
    pub fn order_conflict(&mut self) {
        self.order_conflicts += 1;
        self.reseed_needed = true;
    }

    /// The call's counters (every record, applied to the model or not).
    fn count_syscall(&mut self, e: &SyscallEvent, page_size: u64) {
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
        if self.brk_history.push(BrkChange { ts_ns, brk, size }) {
            self.brk_history_dropped += 1;
        }
    }

    /// Updates the peaks after the space changed.
    pub fn note_peaks(&mut self) {
        self.peak_vsz = self.peak_vsz.max(self.space.virtual_size());
        self.peak_vmas = self.peak_vmas.max(self.space.vma_count());
    }

    fn apply_exec(&mut self, e: &ExecEvent) {
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
        self.seeded_at_ns = None;
        // The new mm's counters start from nothing and the probe reports each change.
        self.rss = RssCounters::default();
        self.rss_seed = None;
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

/// What the session must do after an event (the I/O the pure table cannot do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    None,
    /// A new image: seed it from /proc, then resume the process if the probe stopped it.
    Seed {
        tgid: u32,
        resume: bool,
    },
    /// A task of unknown kind appeared: ask /proc whether it is a process.
    Classify {
        parent: u32,
        child: u32,
    },
    /// The process exited: read its final fault counters.
    Exited(u32),
    /// A file was mapped: find its name in /proc while the mapping is there.
    ResolveName {
        tgid: u32,
        needs: NeedsName,
    },
}

/// All traced processes, alive and exited, keyed by tgid.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: BTreeMap<u32, ProcessState>,
    page_size: u64,
    /// Keep an exited process whose pid is reused (in `earlier`) instead of dropping it: a
    /// report must describe every process.
    pub keep_reused: bool,
    earlier: Vec<ProcessState>,
    /// Sum of every process's `order_conflicts` (daemon-wide, kept when processes are gone).
    pub order_conflicts: u64,
}

impl ProcessTable {
    pub fn new(page_size: u64) -> ProcessTable {
        ProcessTable {
            processes: BTreeMap::new(),
            page_size,
            keep_reused: false,
            earlier: Vec::new(),
            order_conflicts: 0,
        }
    }

    /// Drops (or keeps aside) an exited entry whose pid a new process now has (pid reuse).
    fn forget_if_exited(&mut self, tgid: u32) {
        if self.processes.get(&tgid).is_some_and(|p| !p.is_running())
            && let Some(old) = self.processes.remove(&tgid)
            && self.keep_reused
        {
            self.earlier.push(old);
        }
    }

    /// Every process, including exited ones whose pid was reused since (`keep_reused`).
    pub fn all(&self) -> impl Iterator<Item = &ProcessState> {
        self.earlier.iter().chain(self.processes.values())
    }

    /// Registers a process traced from user space (the command of `run`, or an attach target).
    pub fn add(&mut self, tgid: u32, comm: String) -> &mut ProcessState {
        self.forget_if_exited(tgid);
        let page_size = self.page_size;
        self.processes
            .entry(tgid)
            .or_insert_with(|| ProcessState::new(tgid, comm, page_size))
    }

    pub fn get(&self, tgid: u32) -> Option<&ProcessState> {
        self.processes.get(&tgid)
    }

    pub fn get_mut(&mut self, tgid: u32) -> Option<&mut ProcessState> {
        self.processes.get_mut(&tgid)
    }

    pub fn iter(&self) -> std::collections::btree_map::Values<'_, u32, ProcessState> {
        self.processes.values()
    }

    /// Forgets processes that exited before `cutoff_ns` altogether (the daemon mode, where
    /// nothing but their metrics would need them). Returns them.
    pub fn evict_exited_before(&mut self, cutoff_ns: u64) -> Vec<ProcessState> {
        let gone: Vec<u32> = self
            .processes
            .values()
            .filter(|p| matches!(p.lifecycle, Lifecycle::Exited { ts_ns } if ts_ns < cutoff_ns))
            .map(|p| p.tgid)
            .collect();
        gone.into_iter()
            .filter_map(|tgid| self.processes.remove(&tgid))
            .collect()
    }

    /// Drops the VMAs of processes that exited before `cutoff_ns` (CLOCK_MONOTONIC).
    pub fn drop_models_exited_before(&mut self, cutoff_ns: u64) -> usize {
        let mut dropped = 0;
        for p in self.processes.values_mut() {
            if let Lifecycle::Exited { ts_ns } = p.lifecycle
                && ts_ns < cutoff_ns
                && !p.model_dropped
            {
                p.drop_model();
                dropped += 1;
            }
        }
        dropped
    }

    pub fn running(&self) -> impl Iterator<Item = &ProcessState> {
        self.iter().filter(|p| p.is_running())
    }

    /// Records a fork whose child turned out to be a process.
    pub fn add_child(&mut self, parent: u32, child: u32) {
        let page_size = self.page_size;
        let (comm, heap, space, argv, exe, cgroup) = match self.processes.get(&parent) {
            Some(p) => (
                p.comm.clone(),
                p.heap,
                p.space.fork_copy(),
                p.argv.clone(),
                p.exe.clone(),
                p.cgroup.clone(),
            ),
            None => (
                String::new(),
                Heap::default(),
                AddressSpace::new(page_size),
                Vec::new(),
                None,
                None,
            ),
        };
        self.forget_if_exited(child);
        let state = self
            .processes
            .entry(child)
            .or_insert_with(|| ProcessState::new(child, comm, page_size));
        state.parent = Some(parent);
        state.ppid = Some(parent);
        // A child runs its parent's image: same command line and file.
        state.argv = argv;
        state.exe = exe;
        // A child starts in its parent's cgroup.
        state.cgroup = cgroup;
        // fork copies the address space, the break included, but none of what the parent's
        // brk calls counted.
        state.heap = Heap {
            start: heap.start,
            end: heap.end,
            peak: heap.end,
            ..Heap::default()
        };
        state.space = space;
        state.note_peaks();
    }

    /// Counts a syscall whose record came after later changes of its process were applied
    /// (`order::Step::Late`) without applying it; the process takes its state from /proc again.
    pub fn apply_late(&mut self, e: &SyscallEvent) {
        let page_size = self.page_size;
        let p = self.entry(e.tgid);
        p.count_syscall(e, page_size);
        p.order_conflict();
        self.order_conflicts += 1;
    }

    /// Records of `tgid` were lost before the ones now applied (`order::Step::Gap`).
    pub fn order_gap(&mut self, tgid: u32) {
        if let Some(p) = self.processes.get_mut(&tgid) {
            p.order_conflict();
            self.order_conflicts += 1;
        }
    }

    /// Applies one event; returns the I/O the session should do next.
    pub fn apply(&mut self, event: &Event) -> FollowUp {
        let page_size = self.page_size;
        match event {
            Event::Syscall(e) => {
                let p = self.entry(e.tgid);
                let conflicts = p.order_conflicts;
                let needs_name = p.apply_syscall(e, page_size);
                let found = p.order_conflicts - conflicts;
                self.order_conflicts += found;
                match needs_name {
                    Some(needs) => FollowUp::ResolveName {
                        tgid: e.tgid,
                        needs,
                    },
                    None => FollowUp::None,
                }
            }
            Event::Fork(ForkEvent {
                parent_tgid,
                child_pid,
                child,
                ..
            }) => match child {
                TaskKind::Thread => {
                    self.entry(*parent_tgid).threads_created += 1;
                    FollowUp::None
                }
                TaskKind::Refused => FollowUp::None,
                TaskKind::Process => {
                    self.add_child(*parent_tgid, *child_pid);
                    FollowUp::None
                }
                TaskKind::Unknown => FollowUp::Classify {
                    parent: *parent_tgid,
                    child: *child_pid,
                },
            },
            Event::Exec(e) if e.untraced => {
                let state = self.entry(e.tgid);
                state.apply_exec(e);
                state.untraced = true;
                state.lifecycle = Lifecycle::Exited { ts_ns: e.ts_ns };
                FollowUp::Exited(e.tgid)
            }
            Event::Exec(e) => {
                self.entry(e.tgid).apply_exec(e);
                FollowUp::Seed {
                    tgid: e.tgid,
                    resume: e.stopped,
                }
            }
            Event::Exit(e) => {
                let state = self.entry(e.tgid);
                state.lifecycle = Lifecycle::Exited { ts_ns: e.ts_ns };
                // The exit record names the last thread to exit, often not the main one.
                if state.comm.is_empty() {
                    state.comm = e.comm.clone();
                }
                FollowUp::Exited(e.tgid)
            }
        }
    }

    /// The state of `tgid`, created if an event arrives for a process not seen before (e.g.
    /// its fork record was lost).
    /// No record follows a process's exit, so a record for an exited entry is from a new
    /// process that reuses the pid: it starts fresh.
    fn entry(&mut self, tgid: u32) -> &mut ProcessState {
        let page_size = self.page_size;
        self.forget_if_exited(tgid);
        self.processes
            .entry(tgid)
            .or_insert_with(|| ProcessState::new(tgid, String::new(), page_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ExitEvent, SyscallEvent};

    fn syscall(tgid: u32, kind: SyscallKind, args: &[u64], ret: i64) -> Event {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Event::Syscall(SyscallEvent {
            ts_ns: 1,
            enter_ns: 0,
            tgid,
            tid: tgid,
            kind,
            args: a,
            ret,
            seq: 0,
        })
    }

    #[test]
    fn counts_calls_failures_and_bytes() {
        let mut t = ProcessTable::new(4096);
        t.add(5, "w".into());
        t.apply(&syscall(
            5,
            SyscallKind::Mmap,
            &[0, 100, 3, 0x22, u64::MAX, 0],
            0x7000_0000,
        ));
        t.apply(&syscall(
            5,
            SyscallKind::Mmap,
            &[0, 8192, 3, 0x22, u64::MAX, 0],
            -12,
        ));
        t.apply(&syscall(5, SyscallKind::Munmap, &[0x7000_0000, 4096], 0));
        t.apply(&syscall(5, SyscallKind::Munmap, &[0x7000_0001, 4096], -22));
        t.apply(&syscall(
            5,
            SyscallKind::Mremap,
            &[0x1000, 4096, 3 * 4096, 1, 0],
            0x9000,
        ));
        let p = t.get(5).unwrap();
        assert_eq!(
            p.stats(SyscallKind::Mmap),
            SyscallStats {
                calls: 2,
                failed: 1
            }
        );
        assert_eq!(
            p.stats(SyscallKind::Munmap),
            SyscallStats {
                calls: 2,
                failed: 1
            }
        );
        assert_eq!(p.bytes_mapped, 4096 + 2 * 4096);
        assert_eq!(p.bytes_unmapped, 4096);
    }

    #[test]
    fn brk_tracks_start_end_peak_even_when_refused() {
        let mut t = ProcessTable::new(4096);
        t.apply(&syscall(7, SyscallKind::Brk, &[0], 0x55_0000));
        t.apply(&syscall(7, SyscallKind::Brk, &[0x57_1000], 0x57_1000));
        t.apply(&syscall(7, SyscallKind::Brk, &[0x56_0000], 0x56_0000));
        t.apply(&syscall(7, SyscallKind::Brk, &[0x10], 0x56_0000)); // refused
        let p = t.get(7).unwrap();
        assert_eq!(p.heap.start, Some(0x55_0000));
        assert_eq!(p.heap.end, Some(0x56_0000));
        assert_eq!(p.heap.peak, Some(0x57_1000));
        assert_eq!(p.heap.peak_size(), Some(0x2_1000));
        assert_eq!(p.heap.moves, 2);
        assert_eq!(
            p.stats(SyscallKind::Brk),
            SyscallStats {
                calls: 4,
                failed: 1
            }
        );
    }

    #[test]
    fn fork_copies_the_break_and_exit_is_reported() {
        let mut t = ProcessTable::new(4096);
        t.apply(&syscall(7, SyscallKind::Brk, &[0], 0x55_0000));
        let fork = Event::Fork(ForkEvent {
            ts_ns: 2,
            parent_tgid: 7,
            parent_tid: 7,
            child_pid: 8,
            child: TaskKind::Process,
            clone_flags: 0,
            comm: "w".into(),
        });
        assert_eq!(t.apply(&fork), FollowUp::None);
        assert_eq!(t.get(8).unwrap().heap.end, Some(0x55_0000));
        assert_eq!(t.get(8).unwrap().parent, Some(7));
        let exit = Event::Exit(ExitEvent {
            ts_ns: 3,
            tgid: 8,
            tid: 8,
            comm: "w".into(),
        });
        assert_eq!(t.apply(&exit), FollowUp::Exited(8));
        assert_eq!(t.running().map(|p| p.tgid).collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn exited_models_are_freed_after_the_grace_period_but_their_drawing_stays() {
        let mut t = ProcessTable::new(4096);
        t.add(5, "w".into());
        t.apply(&syscall(
            5,
            SyscallKind::Mmap,
            &[0, 4096, 3, 0x22, u64::MAX, 0],
            0x7000_0000,
        ));
        let exit = Event::Exit(ExitEvent {
            ts_ns: 100,
            tgid: 5,
            tid: 5,
            comm: "w".into(),
        });
        t.apply(&exit);
        let p = t.get_mut(5).unwrap();
        p.final_layout = Some(crate::summary::render_layout(p));
        assert_eq!(
            t.drop_models_exited_before(100),
            0,
            "not yet past the grace period"
        );
        assert_eq!(t.drop_models_exited_before(101), 1);
        let p = t.get(5).unwrap();
        assert_eq!(p.space.vma_count(), 0);
        assert!(crate::summary::render_layout(p).contains("VSZ 4.0 KiB in 1 VMAs"));
        assert_eq!(t.drop_models_exited_before(u64::MAX), 0, "only once");
        assert_eq!(t.evict_exited_before(100).len(), 0);
        assert_eq!(t.evict_exited_before(101).len(), 1);
        assert!(t.get(5).is_none());
    }

    #[test]
    fn threads_are_counted_not_tracked() {
        let mut t = ProcessTable::new(4096);
        let fork = Event::Fork(ForkEvent {
            ts_ns: 2,
            parent_tgid: 7,
            parent_tid: 7,
            child_pid: 9,
            child: TaskKind::Thread,
            clone_flags: 0x10000,
            comm: "w".into(),
        });
        t.apply(&fork);
        assert!(t.get(9).is_none());
        assert_eq!(t.get(7).unwrap().threads_created, 1);
    }

    #[test]
    fn changes_out_of_order_are_counted_and_resynced_not_applied_blindly() {
        let mut t = ProcessTable::new(4096);
        t.add(5, "w".into());
        let mmap = |ret| syscall(5, SyscallKind::Mmap, &[0, 8192, 3, 0x22, u64::MAX, 0], ret);
        t.apply(&mmap(0x7000_0000));
        assert_eq!(
            (t.order_conflicts, t.get(5).unwrap().reseed_needed),
            (0, false)
        );
        // Handed out again while the model still has it: another thread's munmap is missing.
        t.apply(&mmap(0x7000_0000));
        let p = t.get(5).unwrap();
        assert_eq!(
            (t.order_conflicts, p.order_conflicts, p.reseed_needed),
            (1, 1, true)
        );
        // A late munmap is counted as a call but leaves the model alone.
        let Event::Syscall(late) = syscall(5, SyscallKind::Munmap, &[0x7000_0000, 8192], 0) else {
            unreachable!()
        };
        t.apply_late(&late);
        let p = t.get(5).unwrap();
        assert_eq!(p.stats(SyscallKind::Munmap).calls, 1);
        assert_eq!(p.space.vma_count(), 1);
        assert_eq!(t.order_conflicts, 2);
        t.order_gap(5);
        assert_eq!(t.get(5).unwrap().order_conflicts, 3);
    }
}
