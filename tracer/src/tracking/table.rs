//! The table of traced processes, alive and exited, and how each event changes it: the pure
//! core of the session, which does the I/O the table asks for (`FollowUp`). Keeps exited
//! processes for the grace period, then their final figures only, then forgets them.

use std::collections::BTreeMap;

use crate::{
    kernel::events::{Event, ForkEvent, SyscallEvent, TaskKind},
    model::{AddressSpace, apply::NeedsName},
    tracking::process::{Heap, Lifecycle, ProcessState},
};

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
        // A new process has a new signal_struct: its maxrss starts from 0.
        state.maxrss_base = Some(0);
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
                state.observe_exit_maxrss(e.maxrss_pages, e.hiwater_pages);
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
