//! The I/O that an update of the process table asks for (`FollowUp`): seeding a process from
//! /proc at its exec, naming it, classifying a new task as thread or process, and collecting
//! the final kernel counters of one that exited.

use tracer_common::counters::FaultCounters;

use super::tracker::Tracker;
use crate::{procfs, tracking::reconcile, tracking::table::FollowUp};

impl Tracker {
    /// Does the I/O a table update asked for. Returns the final fault counters of a process
    /// that exited.
    pub(super) fn follow_up(&mut self, follow_up: FollowUp) -> Option<FaultCounters> {
        match follow_up {
            FollowUp::None => None,
            FollowUp::Seed { tgid, resume } => {
                // Pinned before the seed: the process seeded is the one continued.
                let pinned = match crate::launch::pidfd::PidFd::open(tgid) {
                    Ok(pinned) => Some(pinned),
                    // Gone (killed at its exec stop): nothing to seed or continue, and its pid
                    // may already be someone else's.
                    Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return None,
                    // Out of descriptors: the stopped process must not stay stopped, so it is
                    // continued by pid (the window for a reuse is the seed's few ms).
                    Err(_) => None,
                };
                self.seed(tgid, true);
                if resume {
                    // Continuing a process the exec probe stopped for this seed.
                    crate::launch::pidfd::send(pinned.as_ref(), tgid, libc::SIGCONT);
                }
                None
            }
            FollowUp::ResolveName { tgid, needs } => {
                if let Some(p) = self.table.get_mut(tgid) {
                    reconcile::resolve_name(p, needs);
                }
                None
            }
            FollowUp::Classify { parent, child } => {
                match procfs::read_tgid(child) {
                    Ok(tgid) if tgid != child => {
                        // A thread after all (e.g. an io worker): the kernel side traced it
                        // as a process because it saw no CLONE_THREAD.
                        self.probes.untrace(child);
                        if let Some(p) = self.table.get_mut(parent) {
                            p.threads_created += 1;
                        }
                    }
                    Ok(_) => {
                        self.table.add_child(parent, child);
                        if let Some(child) = self.table.get_mut(child) {
                            reconcile::seed_rss(child, &self.probes);
                        }
                    }
                    // Gone before it could be classified: nothing to follow.
                    Err(_) => self.probes.untrace(child),
                }
                None
            }
            FollowUp::Exited(tgid) => Some(self.collect_exit(tgid)),
        }
    }

    /// Reads the final counters of an exited process out of the kernel maps. Its faults are
    /// attributed to regions, and its kernel-side state freed, at the end of the drained batch
    /// (`finish_exits`): one pass over the granule map for all the exits of a batch.
    pub(super) fn collect_exit(&mut self, tgid: u32) -> FaultCounters {
        self.read_kernel_figures(tgid);
        let mut faults = FaultCounters::default();
        if let Some(p) = self.table.get_mut(tgid) {
            faults = p.faults;
            p.final_layout = Some(crate::output::summary::render_layout(p));
        }
        self.pending_exits.push(tgid);
        self.vanishing.retain(|&t| t != tgid);
        faults
    }

    /// Completes the exits of the batch just drained.
    pub(super) fn finish_exits(&mut self) {
        if self.pending_exits.is_empty() {
            return;
        }
        self.attribute_faults();
        for tgid in std::mem::take(&mut self.pending_exits) {
            let granules: Vec<u32> = self
                .table
                .get(tgid)
                .map(|p| p.fault_regions.granules().collect())
                .unwrap_or_default();
            self.probes.forget(tgid, granules);
        }
    }
}
