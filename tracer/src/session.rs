//! A tracing session: the loaded probes, the ring-buffer reader and the process table.
//!
//! The reader drains the ring buffer when the kernel wakes it (once `--wakeup-bytes` are
//! waiting, or at once for exec and exit records) and on a timer, so batched records never wait
//! longer than `--drain-interval-ms`.

use std::{future::Future, io, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::counters::{
    FaultCounters, STAT_EXIT_WITHOUT_ENTER, STAT_INFLIGHT_FULL, STAT_TRACED_FULL,
};

use crate::{
    api,
    cli::{CommonArgs, GroupBy},
    events::{Event, decode},
    exit::TracerError,
    http::{Answer, Ask, Query},
    jsonl::{EventSink, event_json},
    model::maps,
    order::{Reorder, Step},
    probes::{ProbeOptions, Probes},
    process::{FollowUp, ProcessState, ProcessTable},
    procfs, reconcile,
    summary::DaemonCounters,
    tracefs::Tracefs,
};

/// Everything but the ring buffer: what each record updates.
pub struct Tracker {
    pub probes: Probes,
    pub table: ProcessTable,
    pub counters: DaemonCounters,
    sink: Option<EventSink>,
    sink_failed: bool,
    /// Processes whose exit record may have been lost: seen gone at the previous check.
    vanishing: Vec<u32>,
    /// Exits of the current batch, completed by `finish_exits`.
    pending_exits: Vec<u32>,
    last_vanish_check: std::time::Instant,
    /// How long an exited process is kept whole.
    exited_grace: Duration,
    /// After the grace period, forget exited processes entirely (attach: a long-running
    /// daemon) rather than only their VMAs (run: the summary lists every process).
    pub evict_exited: bool,
    /// Keep exited processes whole until the end (a report was asked for: it describes every
    /// process, with its final address space).
    pub keep_exited: bool,
    /// What the report says about the session.
    pub report_info: ReportInfo,
    /// How per-process metrics are labelled, and the counters of forgotten processes per comm.
    group_by: GroupBy,
    /// Labels and forgotten processes' counters under `--group-by comm`.
    groups: crate::groups::CommGroups,
    /// Holds records that came before an earlier change of their process (`order`).
    order: Reorder,
    /// Scratch list of what `order` says to do next (kept: no allocation per record).
    steps: Vec<Step>,
    /// `attach --cgroup`: the subtree whose cgroups the exec probe follows.
    pub subtree: Option<crate::cgroup::Subtree>,
    /// `--stacks`: call sites of memory growth.
    pub stacks: Option<crate::stacks::Collector>,
}

impl Tracker {
    fn handle_record(&mut self, bytes: &[u8]) {
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
    fn ordered(&mut self, decide: impl FnOnce(&mut Reorder, &mut Vec<Step>)) {
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
    fn expire_order(&mut self, all: bool) {
        if self.order.held() > 0 {
            let now = procfs::monotonic_ns();
            self.ordered(|order, steps| {
                if all {
                    order.release_all(steps);
                } else {
                    order.expire(now, crate::order::MAX_WAIT_NS, steps);
                }
            });
        }
    }

    /// Applies one event in its turn: the process table, the I/O it asks for, the event stream.
    fn apply_event(&mut self, event: &Event) {
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
            && fork.child == crate::events::TaskKind::Process
            && let Some(child) = self.table.get_mut(fork.child_pid)
        {
            reconcile::seed_rss(child, &self.probes);
        }
        let final_faults = self.follow_up(follow_up);
        self.counters.order_conflicts = self.table.order_conflicts;
        self.write_event(event, final_faults.as_ref());
    }

    fn write_event(&mut self, event: &Event, final_faults: Option<&FaultCounters>) {
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
    fn on_exec(&mut self, exec: &crate::events::ExecEvent) {
        let Some(p) = self.table.get_mut(exec.tgid) else {
            return;
        };
        if !p.is_running() {
            return;
        }
        let cgroup = crate::cgroup::of_pid(exec.tgid).or_else(|| p.cgroup.clone());
        if self.group_by != GroupBy::Pid && !p.comm.is_empty() {
            let old = crate::groups::key_of(self.group_by, p);
            let new = crate::groups::key(self.group_by, &exec.comm, cgroup.as_deref());
            if old != new {
                let counted = crate::metrics::Totals::under_current_comm(p);
                self.groups.retire(p.tgid, &old, &counted);
                p.counted_under_earlier_comms = crate::metrics::Totals::of(p);
            }
        }
        p.cgroup = cgroup;
    }

    /// Does the I/O a table update asked for. Returns the final fault counters of a process
    /// that exited.
    fn follow_up(&mut self, follow_up: FollowUp) -> Option<FaultCounters> {
        match follow_up {
            FollowUp::None => None,
            FollowUp::Seed { tgid, resume } => {
                self.seed(tgid, true);
                if resume {
                    // SAFETY: continuing a process the exec probe stopped for this seed.
                    unsafe { libc::kill(tgid as i32, libc::SIGCONT) };
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
    fn collect_exit(&mut self, tgid: u32) -> FaultCounters {
        self.read_kernel_figures(tgid);
        let mut faults = FaultCounters::default();
        if let Some(p) = self.table.get_mut(tgid) {
            faults = p.faults;
            p.final_layout = Some(crate::summary::render_layout(p));
        }
        self.pending_exits.push(tgid);
        self.vanishing.retain(|&t| t != tgid);
        faults
    }

    /// Completes the exits of the batch just drained.
    fn finish_exits(&mut self) {
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
            p.cgroup = crate::cgroup::of_pid(tgid);
        }
        if let Err(err) = reconcile::seed(p, &mut self.probes, at_exec) {
            log::debug!("cannot seed process {tgid}: {}", crate::error_chain(&err));
        }
    }

    /// Takes the seed again for processes whose seed a non-repeatable record overlapped.
    /// Returns whether any was taken.
    fn reseed_where_needed(&mut self) -> bool {
        let pending: Vec<u32> = self
            .table
            .iter()
            .filter(|p| p.reseed_needed && p.is_running())
            .map(|p| p.tgid)
            .collect();
        for &tgid in &pending {
            if let Some(p) = self.table.get_mut(tgid) {
                p.reseeds += 1;
                // The same image again (not an exec): what the probes learned stays.
                if let Err(err) = reconcile::seed(p, &mut self.probes, false) {
                    log::debug!(
                        "cannot seed process {tgid} again: {}",
                        crate::error_chain(&err)
                    );
                    p.reseed_needed = false;
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
    fn read_kernel_figures(&mut self, tgid: u32) {
        let faults = self.probes.faults(tgid);
        let rss = self.probes.rss(tgid);
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
    fn is_running(&self, pid: u32) -> bool {
        self.table.get(pid).is_some_and(|p| p.is_running())
    }

    fn current_view(&mut self, pid: u32) -> Option<&ProcessState> {
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
    fn housekeeping(&mut self) {
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
                    let counted = crate::metrics::Totals::under_current_comm(p);
                    let key = crate::groups::key_of(self.group_by, p);
                    self.groups.retire(p.tgid, &key, &counted);
                }
            }
            if !gone.is_empty() {
                drop(gone);
                self.groups.shrink();
                release_free_memory();
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
        self.follow_new_cgroups();
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
    }

    /// Processes the table calls running that are neither traced in the kernel nor in /proc.
    fn gone_without_exit_record(&self) -> Vec<u32> {
        self.table
            .running()
            .map(|p| p.tgid)
            .filter(|&tgid| !self.probes.is_traced(tgid) && procfs::read_stat(tgid).is_err())
            .collect()
    }

    /// Ends processes whose exit record was lost, as of now.
    fn mark_exited_unseen(&mut self, gone: &[u32]) {
        for &tgid in gone {
            log::warn!("process {tgid} is gone but its exit record was not seen (lost?)");
            self.ordered(|order, steps| order.release(tgid, steps));
            self.order.forget(tgid);
            if let Some(p) = self.table.get_mut(tgid) {
                p.lifecycle = crate::process::Lifecycle::Exited {
                    ts_ns: procfs::monotonic_ns(),
                };
                p.exit_record_lost = true;
            }
            self.collect_exit(tgid);
        }
        self.finish_exits();
    }

    fn read_kernel_counters(&mut self) {
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
            if let Err(err) = sink.write(&end).and_then(|()| sink.flush()) {
                log::error!("writing the event stream failed: {err}");
            }
        }
    }

    /// Hands what the event stream buffered to its reader (once per drained batch, so a
    /// `tail -f` or a pipe sees records as they come without a write per record).
    fn flush_events(&mut self) {
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Most phase marks kept per process (a client marking in a loop must not grow the daemon).
const PHASE_LIMIT: usize = 1000;

impl Tracker {
    /// The report as of now: kernel figures refreshed, every process in the table.
    pub fn report(&mut self, exit_status: Option<i32>) -> crate::report::Report {
        self.refresh_running();
        let info = &self.report_info;
        let ctx = crate::report::Context {
            mode: &info.mode,
            command: info.command.clone(),
            started_unix_ms: info.started_unix_ms,
            duration_ms: info.started.elapsed().as_millis() as u64,
            exit_status,
            counters: &self.counters,
        };
        crate::report::build(self.table.all(), &ctx)
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

pub struct Session {
    ring: AsyncFd<RingBuf<MapData>>,
    pub tracker: Tracker,
    drain_interval: Duration,
    /// How often every running process's model is compared with /proc (None: never).
    drift_interval: Option<Duration>,
    /// Questions from the HTTP API.
    queries: Option<tokio::sync::mpsc::Receiver<Query>>,
    /// Lost records already answered with a check of every process.
    lost_checked: u64,
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
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Which processes start or stop being traced when they exec (`attach --comm/--all`).
#[derive(Debug, Default)]
pub struct ExecFilter<'a> {
    pub trace_comms: &'a [String],
    pub exclude_comms: &'a [String],
    pub all: bool,
    /// `--cgroup`: the subtree's directory under the cgroup v2 mount.
    pub cgroup: Option<&'a std::path::Path>,
}

/// Why `pump` returned.
pub enum Stopped<T> {
    /// The stop future completed with this value.
    Finished(T),
    /// Every traced process has exited.
    AllExited,
}

impl Session {
    /// Finds tracefs, loads and attaches the probes, opens the event stream. Processes whose
    /// comm is in `trace_comms` start being traced when they exec; traced ones that exec a
    /// comm of `exclude_comms` stop.
    pub fn start(args: &CommonArgs, filter: &ExecFilter) -> Result<Session, TracerError> {
        let tracefs = match &args.tracefs {
            Some(dir) => Tracefs::user_given(dir),
            None => Tracefs::system(),
        }
        .map_err(crate::probes::ProbeError::from)?;
        let opts = ProbeOptions {
            ring_buffer_bytes: args.ring_buffer_size,
            wakeup_bytes: args.wakeup_bytes.min(args.ring_buffer_size / 4),
            max_processes: args.max_processes,
            trace_comms: filter.trace_comms.to_vec(),
            exclude_comms: filter.exclude_comms.to_vec(),
            trace_all: filter.all,
            mmap_lock_order: args.mmap_lock_order,
            trace_cgroup: filter.cgroup.is_some(),
            stacks: args.stacks.settings(),
        };
        let (mut probes, ring) = Probes::load(&tracefs, &opts)?;
        let stacks = probes
            .stack_ring
            .take()
            .map(|ring| crate::stacks::Collector::new(ring, procfs::page_size()));
        for missing in &probes.attached.optional_missing {
            log::info!(
                "optional tracepoint {missing} is missing: new tasks are classified from /proc"
            );
        }
        log::info!(
            "attached {} tracepoints and {} perf events",
            probes.attached.tracepoints.len(),
            probes.attached.perf_events
        );
        let sink = match &args.events {
            Some(path) => Some(EventSink::open(path).map_err(|source| TracerError::Os {
                what: format!("cannot open event stream {}", path.display()),
                source: match source {
                    crate::outfile::OutputError::Io(err) => err,
                    other => std::io::Error::other(other),
                },
            })?),
            None => None,
        };
        // SAFETY: the AsyncFd owns the ring buffer, which owns the descriptor, so it stays open
        // for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|err| TracerError::Os {
                what: "cannot poll the ring buffer".into(),
                source: err.into(),
            })?;
        Ok(Session {
            ring,
            tracker: Tracker {
                probes,
                table: {
                    let mut table = ProcessTable::new(procfs::page_size());
                    table.keep_reused =
                        args.report.is_some() || args.check.is_some() || args.html.is_some();
                    table
                },
                counters: DaemonCounters::default(),
                sink,
                sink_failed: false,
                vanishing: Vec::new(),
                pending_exits: Vec::new(),
                last_vanish_check: std::time::Instant::now(),
                exited_grace: Duration::from_secs(args.exited_grace),
                evict_exited: false,
                keep_exited: args.report.is_some() || args.check.is_some() || args.html.is_some(),
                report_info: ReportInfo {
                    mode: String::new(),
                    command: Vec::new(),
                    started_unix_ms: unix_ms(),
                    started: std::time::Instant::now(),
                },
                group_by: args.group_by.unwrap_or(
                    if filter.all || !filter.trace_comms.is_empty() || filter.cgroup.is_some() {
                        GroupBy::Comm
                    } else {
                        GroupBy::Pid
                    },
                ),
                groups: crate::groups::CommGroups::new(args.max_series_groups as usize),
                order: Reorder::default(),
                steps: Vec::new(),
                subtree: filter
                    .cgroup
                    .map(|dir| crate::cgroup::Subtree::new(dir.to_path_buf())),
                stacks,
            },
            drain_interval: Duration::from_millis(args.drain_interval_ms),
            drift_interval: (args.drift_check_interval > 0)
                .then(|| Duration::from_secs(args.drift_check_interval)),
            queries: None,
            lost_checked: 0,
        })
    }

    /// Answers the HTTP API's questions from now on.
    pub fn serve_queries(&mut self, queries: tokio::sync::mpsc::Receiver<Query>) {
        self.queries = Some(queries);
    }

    /// Snapshots the figures of every running traced process (or of `pid`) under phase
    /// `name`, for the report and `--check`.
    fn mark_phase(&mut self, name: &str, pid: Option<u32>) -> Answer {
        if !crate::check::valid_phase_name(name) {
            return Answer::BadRequest(format!(
                "phase name `{name}`: use 1 to 64 letters, digits, `_`, `-` or `.`"
            ));
        }
        if let Some(pid) = pid
            && !self.tracker.table.get(pid).is_some_and(|p| p.is_running())
        {
            return Answer::NotFound(format!("no running traced process {pid}"));
        }
        // The kernel figures (RSS, faults) as of now; the records were drained by `answer`.
        self.tracker.refresh_running();
        let now = procfs::monotonic_ns();
        let targets: Vec<u32> = match pid {
            Some(pid) => vec![pid],
            None => self.tracker.table.running().map(|p| p.tgid).collect(),
        };
        // A mark that cannot be kept for every target is refused whole (429), not dropped
        // for some behind a 200: a CI verdict must not rest on a phase that was not taken.
        if let Some(full) = targets.iter().find(|&&tgid| {
            self.tracker
                .table
                .get(tgid)
                .is_some_and(|p| p.phases.len() >= PHASE_LIMIT)
        }) {
            return Answer::TooMany(format!(
                "process {full} already has {PHASE_LIMIT} phases: phase `{name}` not marked"
            ));
        }
        for &tgid in &targets {
            if let Some(p) = self.tracker.table.get_mut(tgid) {
                let snapshot = p.snapshot(name, now);
                p.phases.push(snapshot);
            }
        }
        log::info!("phase {name} marked for {} processes", targets.len());
        Answer::Json(serde_json::json!({"phase": name, "ts_ns": now, "pids": targets}))
    }

    /// Compares `tgid`'s model with /proc; a difference that persists after one more drain
    /// (so not a record still on its way) is counted, logged and healed by a resync.
    pub fn check(&mut self, tgid: u32) -> Result<usize, reconcile::ReconcileError> {
        for attempt in 0..2 {
            self.drain();
            let Tracker { table, probes, .. } = &mut self.tracker;
            let p = table
                .get_mut(tgid)
                .ok_or(reconcile::ReconcileError::NotTraced(tgid))?;
            let (drift, text, snapshot_ns) = reconcile::compare(p, probes)?;
            if drift.differences() == 0 {
                reconcile::agreed(p);
                return Ok(0);
            }
            if attempt == 1 {
                reconcile::heal(p, &drift, &text, snapshot_ns);
                return Ok(drift.differences());
            }
        }
        unreachable!("the second attempt returns")
    }

    /// The periodic drift check of every running process.
    fn check_all(&mut self) {
        let running: Vec<u32> = self.tracker.table.running().map(|p| p.tgid).collect();
        for tgid in running {
            if let Err(err) = self.check(tgid) {
                log::debug!(
                    "drift check of {tgid} skipped: {}",
                    crate::error_chain(&err)
                );
            }
        }
    }

    /// Answers one API question with everything drained so far.
    fn answer(&mut self, ask: Ask) -> Answer {
        self.drain();
        let not_found = |pid: u32| Answer::NotFound(format!("no traced process {pid}"));
        match ask {
            Ask::Processes => {
                // RSS and faults are in the list (the live page sorts by them): current ones.
                self.tracker.refresh_running();
                let list: Vec<serde_json::Value> = self
                    .tracker
                    .table
                    .iter()
                    .map(api::process_summary)
                    .collect();
                Answer::Json(serde_json::json!({
                    "processes": list,
                    "daemon": api::daemon_json(&self.tracker.counters),
                }))
            }
            Ask::Process { pid, running_only } if running_only && !self.tracker.is_running(pid) => {
                not_found(pid)
            }
            Ask::Maps { pid, running_only } if running_only && !self.tracker.is_running(pid) => {
                not_found(pid)
            }
            Ask::Check { pid, running_only } if running_only && !self.tracker.is_running(pid) => {
                not_found(pid)
            }
            Ask::Process { pid, .. } => match self.tracker.current_view(pid) {
                Some(p) => match serde_json::to_string(&api::process_detail(p)) {
                    Ok(text) => Answer::JsonText(text),
                    Err(err) => Answer::Failed(format!("cannot serialise the process: {err}")),
                },
                None => not_found(pid),
            },
            Ask::Maps { pid, .. } => match self.tracker.current_view(pid) {
                Some(p) => Answer::Text(maps::render(&p.space)),
                None => not_found(pid),
            },
            Ask::Metrics { openmetrics } => {
                self.tracker.refresh_running();
                let tracker = &mut self.tracker;
                if tracker.group_by != GroupBy::Pid {
                    for p in tracker.table.iter() {
                        let key = crate::groups::key_of(tracker.group_by, p);
                        tracker.groups.join(p.tgid, &key);
                    }
                }
                let tracker = &self.tracker;
                let cutoff = procfs::monotonic_ns().saturating_sub(nanos(tracker.exited_grace));
                let ctx = crate::metrics::ScrapeContext {
                    daemon: &tracker.counters,
                    exited_cutoff_ns: cutoff,
                    refused: tracker.counters.traced_full + tracker.counters.refused,
                    group_by: tracker.group_by,
                    groups: &tracker.groups,
                    features: &tracker.probes.attached.features,
                };
                if openmetrics {
                    let started = tracker.report_info.started_unix_ms as f64 / 1000.0;
                    Answer::Metrics(
                        crate::metrics::render_openmetrics(tracker.table.iter(), &ctx, started),
                        crate::openmetrics::CONTENT_TYPE,
                    )
                } else {
                    Answer::Metrics(
                        crate::metrics::render(tracker.table.iter(), &ctx),
                        crate::metrics::CONTENT_TYPE,
                    )
                }
            }
            Ask::Phase { name, pid } => self.mark_phase(&name, pid),
            Ask::Pprof {
                pid,
                running_only,
                default_type,
            } => {
                if let Some(pid) = pid
                    && (running_only && !self.tracker.is_running(pid)
                        || self.tracker.table.get(pid).is_none())
                {
                    return not_found(pid);
                }
                let Tracker { stacks, table, .. } = &mut self.tracker;
                match stacks.as_mut() {
                    Some(s) => Answer::Bytes(
                        s.profile(table, pid, default_type),
                        "application/octet-stream",
                    ),
                    None => Answer::NotFound(
                        "call sites are off: start the tracer with --stacks".into(),
                    ),
                }
            }
            Ask::Report => match serde_json::to_value(self.tracker.report(None)) {
                Ok(value) => Answer::Json(value),
                Err(err) => Answer::Failed(format!("cannot serialise the report: {err}")),
            },
            Ask::Check { pid, .. } => match self.check(pid) {
                Ok(differences) => {
                    let p = self.tracker.table.get_mut(pid);
                    let (resyncs, total) = p.map_or((0, 0), |p| (p.resyncs, p.drift_differences));
                    Answer::Json(serde_json::json!({
                        "pid": pid,
                        "differences": differences,
                        "resyncs": resyncs,
                        "differences_total": total,
                    }))
                }
                Err(err @ reconcile::ReconcileError::NotTraced(_)) => {
                    Answer::NotFound(err.to_string())
                }
                Err(err) => Answer::Failed(crate::error_chain(&err)),
            },
        }
    }

    /// Reads every record waiting in the ring buffer.
    pub fn drain(&mut self) {
        drain_into(self.ring.get_mut(), &mut self.tracker);
    }

    /// Processes records until `stop` completes or, with `until_all_exited`, until no traced
    /// process is left. The ring buffer is drained once more before returning, so no record
    /// produced before the stop is left behind.
    pub async fn pump<F: Future>(
        &mut self,
        stop: F,
        until_all_exited: bool,
    ) -> io::Result<Stopped<F::Output>> {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.drain_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // checked_add: a period beyond what an Instant holds means "never", not a panic.
        let mut drift_tick = self.drift_interval.and_then(|period| {
            let start = tokio::time::Instant::now().checked_add(period)?;
            let mut interval = tokio::time::interval_at(start, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(interval)
        });
        let mut queries = self.queries.take();
        loop {
            let mut finished = None;
            let mut question = None;
            let mut check_drift = false;
            tokio::select! {
                out = &mut stop => finished = Some(out),
                ready = self.ring.readable_mut() => {
                    let mut guard = ready?;
                    drain_into(guard.get_inner_mut(), &mut self.tracker);
                    guard.clear_ready();
                    continue;
                }
                Some(query) = next_query(&mut queries) => question = Some(query),
                _ = next_drift_check(&mut drift_tick) => check_drift = true,
                _ = tick.tick() => {}
            }
            if let Some(Query { ask, reply }) = question {
                let _ = reply.send(self.answer(ask));
                continue;
            }
            self.drain();
            self.tracker.housekeeping();
            // Lost records say nothing of which process they were for: check them all.
            let lost = self.tracker.counters.lost_total();
            if lost > self.lost_checked {
                log::warn!(
                    "{} records lost (ring buffer full): checking every traced process against \
                     /proc",
                    lost - self.lost_checked
                );
                self.lost_checked = lost;
                // A record held for an earlier change may wait for one of those.
                self.tracker.expire_order(true);
                check_drift = true;
            }
            if check_drift {
                self.check_all();
            }
            if let Some(out) = finished {
                self.queries = queries;
                return Ok(Stopped::Finished(out));
            }
            if until_all_exited && self.tracker.all_exited() {
                self.queries = queries;
                return Ok(Stopped::AllExited);
            }
        }
    }
}

/// The next periodic drift check, or never when they are off.
async fn next_drift_check(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next API question, or never if there is no API.
async fn next_query(queries: &mut Option<tokio::sync::mpsc::Receiver<Query>>) -> Option<Query> {
    match queries {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn drain_into(ring: &mut RingBuf<MapData>, tracker: &mut Tracker) {
    // A seed overlapped by a record that cannot be applied twice is taken again, until one
    // lands in a quiet moment (records of the new seed's window are then read anew).
    for _ in 0..reconcile::MAX_RESEEDS_IN_A_ROW {
        let mut any = false;
        // Stack samples first: a syscall record then finds the sample of its entry.
        if let Some(stacks) = tracker.stacks.as_mut() {
            stacks.drain();
        }
        while let Some(item) = ring.next() {
            tracker.handle_record(&item);
            any = true;
        }
        if any {
            tracker.flush_events();
        }
        if let Some(stacks) = tracker.stacks.as_mut() {
            stacks.after_records(&mut tracker.table);
        }
        tracker.finish_exits();
        if !tracker.reseed_where_needed() {
            return;
        }
    }
}
