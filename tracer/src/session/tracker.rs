//! The tracker: everything of a session but the ring buffer. Each decoded record updates the
//! process table through it; it does the I/O the table asks for (seeding from /proc, reading
//! kernel counters: `follow_up.rs`), the `--events` stream and the housekeeping of exited
//! processes.

use std::time::Duration;

use tracer_common::counters::{
    FaultCounters, STAT_EXIT_WITHOUT_ENTER, STAT_INFLIGHT_FULL, STAT_TRACED_FULL,
};

use crate::{
    cli::exit::TracerError,
    kernel::events::{Event, decode},
    kernel::probes::Probes,
    output::jsonl::{EventSink, event_json},
    output::summary::DaemonCounters,
    procfs,
    tracking::order::{Reorder, Step},
    tracking::process::ProcessState,
    tracking::reconcile,
    tracking::table::ProcessTable,
    views::api,
    views::groups::GroupBy,
};

/// Everything but the ring buffer: what each record updates.
pub struct Tracker {
    pub probes: Probes,
    pub table: ProcessTable,
    pub counters: DaemonCounters,
    pub(super) sink: Option<EventSink>,
    pub(super) sink_failed: bool,
    /// Processes whose exit record may have been lost: seen gone at the previous check.
    pub(super) vanishing: Vec<u32>,
    /// Exits of the current batch, completed by `finish_exits`.
    pub(super) pending_exits: Vec<u32>,
    pub(super) last_vanish_check: std::time::Instant,
    /// How long an exited process is kept whole.
    pub(super) exited_grace: Duration,
    /// After the grace period, forget exited processes entirely (attach: a long-running
    /// daemon) rather than only their VMAs (run: the summary lists every process).
    pub evict_exited: bool,
    /// Keep exited processes whole until the end (a report was asked for: it describes every
    /// process, with its final address space).
    pub keep_exited: bool,
    /// What the report says about the session.
    pub report_info: ReportInfo,
    /// How per-process metrics are labelled, and the counters of forgotten processes per comm.
    pub(super) group_by: GroupBy,
    /// Labels and forgotten processes' counters under `--group-by comm`.
    pub(super) groups: crate::views::groups::CommGroups,
    /// Holds records that came before an earlier change of their process (`order`).
    pub(super) order: Reorder,
    /// Scratch list of what `order` says to do next (kept: no allocation per record).
    pub(super) steps: Vec<Step>,
    /// `attach --cgroup`: the subtree whose cgroups the exec probe follows.
    pub subtree: Option<crate::procfs::cgroup::Subtree>,
    /// `--stacks`: call sites of memory growth.
    pub stacks: Option<crate::stacks::Collector>,
}

impl Tracker {
    pub(super) fn handle_record(&mut self, bytes: &[u8]) {
        let event = match decode(bytes) {
            Ok(event) => event,
            Err(err) => {
                self.counters.decode_errors += 1;
                if self.counters.decode_errors <= 10 {
                    log::warn!("undecodable record: {err}");
                }
                return;
            }
        };
        self.counters.records[record_kind(&event)] += 1;
        match event {
            Event::Syscall(e) => {
                let now = procfs::monotonic_ns();
                self.ordered(|order, steps| order.admit(e, now, steps));
            }
            Event::Exec(ref e) => {
                // Every change before the exec has been sent by now (the other threads are
                // gone): what is still held waits for a lost record.
                self.ordered(|order, steps| order.release(e.tgid, steps));
                if e.started || e.untraced {
                    // Tracing begins or ends here: a later tracing counts from 1 again (the
                    // daemon forgets the kernel-side counter with the process).
                    self.order.forget(e.tgid);
                }
                self.apply_event(&event);
            }
            Event::Exit(ref e) => {
                self.ordered(|order, steps| order.release(e.tgid, steps));
                self.order.forget(e.tgid);
                self.apply_event(&event);
            }
            Event::Fork(_) => self.apply_event(&event),
        }
    }

    /// Lets `order` decide what is ready (`decide`), then does it, in its order.
    pub(super) fn ordered(&mut self, decide: impl FnOnce(&mut Reorder, &mut Vec<Step>)) {
        let mut steps = std::mem::take(&mut self.steps);
        decide(&mut self.order, &mut steps);
        for step in steps.drain(..) {
            match step {
                Step::Apply(e) => self.apply_event(&Event::Syscall(e)),
                Step::Late(e) => {
                    self.table.apply_late(&e);
                    self.write_event(&Event::Syscall(e), None);
                }
                Step::Gap(tgid) => self.table.order_gap(tgid),
            }
        }
        self.steps = steps;
        self.counters.model_reorders = self.order.counters.reordered;
        self.counters.order_conflicts = self.table.order_conflicts;
    }

    /// Gives up the gaps records waited behind too long (with `all`, every gap: records were
    /// lost, or nothing more comes).
    pub(super) fn expire_order(&mut self, all: bool) {
        if self.order.held() > 0 {
            let now = procfs::monotonic_ns();
            self.ordered(|order, steps| {
                if all {
                    order.release_all(steps);
                } else {
                    order.expire(now, crate::tracking::order::MAX_WAIT_NS, steps);
                }
            });
        }
    }

    /// Applies one event in its turn: the process table, the I/O it asks for, the event stream.
    pub(super) fn apply_event(&mut self, event: &Event) {
        if let Event::Exec(exec) = event {
            self.on_exec(exec);
        }
        let old_brk = match (event, &self.stacks) {
            (Event::Syscall(e), Some(_)) => self.table.get(e.tgid).and_then(|p| p.heap.end),
            _ => None,
        };
        let follow_up = self.table.apply(event);
        if let (Event::Syscall(e), Some(stacks)) = (event, self.stacks.as_mut()) {
            stacks.on_syscall(&mut self.table, e, old_brk);
        }
        if let Event::Fork(fork) = &event
            && fork.child == crate::kernel::events::TaskKind::Process
            && let Some(child) = self.table.get_mut(fork.child_pid)
        {
            reconcile::seed_rss(child, &self.probes);
        }
        let final_faults = self.follow_up(follow_up);
        self.counters.order_conflicts = self.table.order_conflicts;
        self.write_event(event, final_faults.as_ref());
    }

    pub(super) fn write_event(&mut self, event: &Event, final_faults: Option<&FaultCounters>) {
        if let Some(sink) = self.sink.as_mut()
            && !self.sink_failed
            && let Err(err) = sink.write(&event_json(event, final_faults))
        {
            log::error!("writing the event stream failed: {err}; no more events are written");
            self.sink_failed = true;
        }
    }

    /// At an exec of a traced process: its cgroup is read again (runtimes move their init
    /// into the container's cgroup, then exec the entrypoint), and, when grouping, a change of
    /// its group (comm or cgroup) leaves what it counted so far with the old group, so no
    /// per-group counter goes down.
    pub(super) fn on_exec(&mut self, exec: &crate::kernel::events::ExecEvent) {
        let Some(p) = self.table.get_mut(exec.tgid) else {
            return;
        };
        if !p.is_running() {
            return;
        }
        let cgroup = crate::procfs::cgroup::of_pid(exec.tgid).or_else(|| p.cgroup.clone());
        if self.group_by != GroupBy::Pid && !p.comm.is_empty() {
            let old = crate::views::groups::key_of(self.group_by, p);
            let new = crate::views::groups::key(self.group_by, &exec.comm, cgroup.as_deref());
            if old != new {
                let counted = p.counters_under_current_comm();
                self.groups.retire(p.tgid, &old, &counted);
                p.counted_under_earlier_comms = p.counter_totals();
            }
        }
        p.cgroup = cgroup;
    }

    /// `--cgroup`: tells the exec probe about cgroups created in the subtree since the last
    /// look (done at attach and once a second).
    pub fn follow_new_cgroups(&mut self) {
        let Some(subtree) = self.subtree.as_mut() else {
            return;
        };
        let new = subtree.scan();
        if let Err(err) = self.probes.follow_cgroups(&new) {
            log::warn!(
                "cannot follow new cgroups of {}: {err}",
                subtree.dir.display()
            );
        }
    }

    /// Seeds what no syscall shows from /proc: the address space, the start of the break, the
    /// stack. A process that is already gone keeps what the records built.
    pub fn seed(&mut self, tgid: u32, at_exec: bool) {
        let Some(p) = self.table.get_mut(tgid) else {
            return;
        };
        // At an exec `on_exec` read it already, unless the process was not traced before.
        if !at_exec || p.cgroup.is_none() {
            p.cgroup = crate::procfs::cgroup::of_pid(tgid);
        }
        if let Err(err) = reconcile::seed(p, &mut self.probes, at_exec) {
            log::debug!("cannot seed process {tgid}: {}", crate::error_chain(&err));
        }
    }

    /// Takes the seed again for processes whose seed a non-repeatable record overlapped.
    /// Returns whether any was taken.
    pub(super) fn reseed_where_needed(&mut self) -> bool {
        let pending: Vec<u32> = self
            .table
            .iter()
            .filter(|p| p.seed.needed_again && p.is_running())
            .map(|p| p.tgid)
            .collect();
        for &tgid in &pending {
            if let Some(p) = self.table.get_mut(tgid) {
                p.seed.retaken += 1;
                // The same image again (not an exec): what the probes learned stays.
                if let Err(err) = reconcile::seed(p, &mut self.probes, false) {
                    log::debug!(
                        "cannot seed process {tgid} again: {}",
                        crate::error_chain(&err)
                    );
                    p.seed.needed_again = false;
                }
            }
        }
        !pending.is_empty()
    }

    /// Attributes the faults counted per granule since the last look to the regions the
    /// models have there now (one pass over the kernel's granule map).
    pub fn attribute_faults(&mut self) {
        for (key, counts) in self.probes.fault_granules() {
            if let Some(p) = self.table.get_mut(key.tgid)
                && !p.model_dropped
            {
                p.fault_regions.observe(&p.space, key.granule, counts);
            }
        }
    }

    /// Brings the kernel-side figures of running processes up to date: faults (by region)
    /// and resident memory.
    pub fn refresh_running(&mut self) {
        self.attribute_faults();
        let running: Vec<u32> = self.table.running().map(|p| p.tgid).collect();
        for tgid in running {
            self.read_kernel_figures(tgid);
        }
    }

    /// Copies a process's fault counters and resident memory from the kernel maps.
    pub(super) fn read_kernel_figures(&mut self, tgid: u32) {
        let faults = self.probes.faults(tgid);
        let rss = if self.probes.rss_events() {
            self.probes.rss(tgid)
        } else {
            crate::procfs::rss::read(tgid)
        };
        if let Some(p) = self.table.get_mut(tgid) {
            p.faults = faults;
            // No entry yet: no event since the seed, which then holds every kind.
            if rss.is_some() || p.rss_seed.is_some() {
                p.observe_rss(rss.unwrap_or_default());
            }
        }
    }

    /// `pid`'s state brought up to date for a view: a running process gets its stack growth,
    /// pending file names and fault counters.
    /// Whether `pid` is a traced process that has not exited.
    pub(super) fn is_running(&self, pid: u32) -> bool {
        self.table.get(pid).is_some_and(|p| p.is_running())
    }

    pub(super) fn current_view(&mut self, pid: u32) -> Option<&ProcessState> {
        let p = self.table.get_mut(pid)?;
        if p.is_running() {
            reconcile::sync_stack(p, &self.probes);
            reconcile::resolve_pending_names(p);
            self.attribute_faults();
            self.read_kernel_figures(pid);
        }
        self.table.get(pid)
    }

    /// Starts tracing a running process from user space and registers it.
    pub fn trace(&mut self, tgid: u32, comm: String) -> Result<(), TracerError> {
        self.probes.trace(tgid)?;
        self.table.add(tgid, comm);
        Ok(())
    }

    /// Registers the tracer's own child, counted from its execve on; with `stop_at_exec`, it
    /// and its descendants are stopped at each exec until the new image is seeded.
    pub fn trace_from_exec(
        &mut self,
        tgid: u32,
        comm: String,
        stop_at_exec: bool,
    ) -> Result<(), TracerError> {
        self.probes.trace_from_exec(tgid, stop_at_exec)?;
        self.table.add(tgid, comm);
        Ok(())
    }

    /// Periodic work: kernel-side counters, probe logs, exits whose record was lost, models
    /// of processes that exited more than the grace period ago.
    pub(super) fn housekeeping(&mut self) {
        let mut watch = super::turn::Stopwatch::start();
        self.probes.flush_logs();
        self.read_kernel_counters();
        self.expire_order(false);
        let cutoff = procfs::monotonic_ns().saturating_sub(nanos(self.exited_grace));
        if self.keep_exited {
            // Kept for the report.
        } else if self.evict_exited {
            let gone = self.table.evict_exited_before(cutoff);
            // Per-comm counters must not go down when a process is forgotten.
            if self.group_by != GroupBy::Pid {
                for p in &gone {
                    let counted = p.counters_under_current_comm();
                    let key = crate::views::groups::key_of(self.group_by, p);
                    self.groups.retire(p.tgid, &key, &counted);
                }
            }
            let evicted = gone.len();
            if !gone.is_empty() {
                drop(gone);
                self.groups.shrink();
                watch.lap(format_args!("eviction of {evicted} exited processes"));
                release_free_memory();
                watch.lap(format_args!("malloc_trim after {evicted} evictions"));
            }
        } else {
            self.table.drop_models_exited_before(cutoff);
        }
        if let Some(stacks) = self.stacks.as_mut() {
            stacks.retain(&self.table);
        }
        // A lost exit record is rare: look for vanished processes once a second, not on every
        // drain tick (it costs a map lookup per traced process).
        if self.last_vanish_check.elapsed() < VANISH_CHECK_PERIOD {
            return;
        }
        self.last_vanish_check = std::time::Instant::now();
        watch.lap(format_args!("housekeeping counters and eviction"));
        self.follow_new_cgroups();
        watch.lap(format_args!("cgroup scan"));
        // Seen gone twice: an exit record still on its way through the ring buffer would
        // have arrived in between.
        let gone = self.gone_without_exit_record();
        let confirmed: Vec<u32> = gone
            .iter()
            .copied()
            .filter(|t| self.vanishing.contains(t))
            .collect();
        self.mark_exited_unseen(&confirmed);
        self.vanishing = gone;
        watch.lap(format_args!("look for vanished processes"));
    }

    /// Processes the table calls running that are neither traced in the kernel nor in /proc.
    pub(super) fn gone_without_exit_record(&self) -> Vec<u32> {
        self.table
            .running()
            .map(|p| p.tgid)
            .filter(|&tgid| !self.probes.is_traced(tgid) && procfs::read_stat(tgid).is_err())
            .collect()
    }

    /// Ends processes whose exit record was lost, as of now.
    pub(super) fn mark_exited_unseen(&mut self, gone: &[u32]) {
        for &tgid in gone {
            log::warn!("process {tgid} is gone but its exit record was not seen (lost?)");
            self.ordered(|order, steps| order.release(tgid, steps));
            self.order.forget(tgid);
            if let Some(p) = self.table.get_mut(tgid) {
                p.lifecycle = crate::tracking::process::Lifecycle::Exited {
                    ts_ns: procfs::monotonic_ns(),
                };
                p.exit_record_lost = true;
            }
            self.collect_exit(tgid);
        }
        self.finish_exits();
    }

    pub(super) fn read_kernel_counters(&mut self) {
        self.counters.lost = self.probes.lost();
        let stats = self.probes.stats();
        self.counters.exits_without_enter = stats[STAT_EXIT_WITHOUT_ENTER as usize];
        self.counters.inflight_full = stats[STAT_INFLIGHT_FULL as usize];
        self.counters.traced_full = stats[STAT_TRACED_FULL as usize];
    }

    /// Final figures: counters, and faults of processes still running.
    pub fn finish(&mut self) {
        self.probes.flush_logs();
        self.read_kernel_counters();
        // Drained for the last time: a record still held waits for one that was lost.
        self.expire_order(true);
        // The ring buffer is drained: a process gone by now without its exit record lost it,
        // and must not be reported as still running.
        let gone = self.gone_without_exit_record();
        self.mark_exited_unseen(&gone);
        self.refresh_running();
        if let Some(sink) = self.sink.as_mut() {
            let mut end = api::daemon_json(&self.counters);
            end["type"] = "end".into();
            end["events_dropped"] = sink.dropped().into();
            if let Err(err) = sink.write_end(&end).and_then(|()| sink.flush()) {
                log::error!("writing the event stream failed: {err}");
            }
        }
    }

    /// Hands what the event stream buffered to its reader (once per drained batch, so a
    /// `tail -f` or a pipe sees records as they come without a write per record).
    pub(super) fn flush_events(&mut self) {
        if let Some(sink) = self.sink.as_mut()
            && !self.sink_failed
            && let Err(err) = sink.flush()
        {
            log::error!("writing the event stream failed: {err}; no more events are written");
            self.sink_failed = true;
        }
    }

    pub fn all_exited(&self) -> bool {
        self.table.running().next().is_none()
    }
}

/// What the report says about the session itself.
pub struct ReportInfo {
    /// `run` or `attach`.
    pub mode: String,
    pub command: Vec<String>,
    pub started_unix_ms: u64,
    pub started: std::time::Instant,
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Most phase marks kept per process (a client marking in a loop must not grow the daemon).
pub(super) const PHASE_LIMIT: usize = 1000;

impl Tracker {
    /// The report as of now: kernel figures refreshed, every process in the table.
    pub fn report(&mut self, exit_status: Option<i32>) -> crate::output::report::Report {
        self.refresh_running();
        let ctx = crate::output::report_build::Context {
            mode: &self.report_info.mode,
            command: self.report_info.command.clone(),
            started_unix_ms: self.report_info.started_unix_ms,
            duration_ms: self.report_info.started.elapsed().as_millis() as u64,
            exit_status,
            counters: &self.counters,
        };
        let report = crate::output::report_build::build(self.table.all(), &ctx);
        crate::stacks::report::with_sites(report, self.stacks.as_mut(), &self.table)
    }
}

fn record_kind(event: &Event) -> usize {
    use tracer_common::record::*;
    (match event {
        Event::Syscall(_) => RECORD_SYSCALL,
        Event::Fork(_) => RECORD_FORK,
        Event::Exec(_) => RECORD_EXEC,
        Event::Exit(_) => RECORD_EXIT,
    }) as usize
}

/// Returns the heap pages that freed memory left behind to the kernel. After a burst of
/// short-lived processes the daemon frees thousands of models at once; glibc keeps such memory
/// in its arenas (one per thread that allocated: the drain loop's and the HTTP server's) unless
/// asked, and the daemon's RSS would stay at the burst's high-water mark for good.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often `housekeeping` looks for processes gone without an exit record.
const VANISH_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// A duration in nanoseconds, saturating instead of wrapping (`as u64` would turn a long grace
/// period into a short one).
pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
