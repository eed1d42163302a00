//! A tracing session: the loaded probes, the ring-buffer reader and the process table.
//!
//! The reader drains the ring buffer when the kernel wakes it (once `--wakeup-bytes` are
//! waiting, or at once for exec and exit records) and on a timer, so batched records never wait
//! longer than `--drain-interval-ms`.

mod answers;
mod follow_up;
pub mod tracker;
pub mod turn;

use std::{future::Future, io, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use self::tracker::unix_ms;
pub use self::tracker::{ReportInfo, Tracker};
use crate::{
    cli::CommonArgs,
    cli::exit::TracerError,
    kernel::probes::{ProbeOptions, Probes},
    kernel::tracefs::Tracefs,
    output::jsonl::EventSink,
    output::summary::DaemonCounters,
    procfs,
    server::http::Query,
    tracking::order::Reorder,
    tracking::reconcile,
    tracking::table::ProcessTable,
    views::groups::GroupBy,
};

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
    /// The drift check under way, a slice of processes per loop turn.
    sweep: turn::DriftSweep,
}

/// Which processes start or stop being traced when they exec (`attach --comm/--all`).
#[derive(Debug, Default)]
pub struct ExecFilter<'a> {
    pub trace_comms: &'a [String],
    pub exclude_comms: &'a [String],
    pub all: bool,
    /// `--cgroup`: the subtree's directory under the cgroup v2 mount.
    pub cgroup: Option<&'a std::path::Path>,
    /// A long-lived session beside other processes (`attach`): syscalls are probed where
    /// untraced processes pay least, not where teardown is quickest (syscall_source.rs).
    pub beside_others: bool,
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
        .map_err(crate::kernel::probes::ProbeError::from)?;
        let opts = ProbeOptions {
            ring_buffer_bytes: args.ring_buffer_size,
            wakeup_bytes: args.wakeup_bytes.min(args.ring_buffer_size / 4),
            max_processes: args.max_processes,
            trace_comms: filter.trace_comms.to_vec(),
            exclude_comms: filter.exclude_comms.to_vec(),
            trace_all: filter.all,
            mmap_lock_order: args.mmap_lock_order,
            rss_source: args.rss_source,
            trace_cgroup: filter.cgroup.is_some(),
            stacks: args.stacks.settings(),
            raw_syscalls: !filter.beside_others,
        };
        let (mut probes, ring) = Probes::load(&tracefs, &opts)?;
        let stacks = probes.stack_ring.take().map(|ring| {
            crate::stacks::Collector::new(
                ring,
                procfs::page_size(),
                args.stacks.report_sites as usize,
            )
        });
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
                    crate::output::outfile::OutputError::Io(err) => err,
                    other => std::io::Error::other(other),
                },
            })?),
            None => None,
        };
        let sink = sink.map(|sink| sink.max_size(args.events_max_size));
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
                groups: crate::views::groups::CommGroups::new(args.max_series_groups as usize),
                order: Reorder::default(),
                steps: Vec::new(),
                subtree: filter
                    .cgroup
                    .map(|dir| crate::procfs::cgroup::Subtree::new(dir.to_path_buf())),
                stacks,
            },
            drain_interval: Duration::from_millis(args.drain_interval_ms),
            drift_interval: (args.drift_check_interval > 0)
                .then(|| Duration::from_secs(args.drift_check_interval)),
            queries: None,
            lost_checked: 0,
            sweep: turn::DriftSweep::default(),
        })
    }

    /// Reads every record waiting in the ring buffer (at the end: nothing may be left behind).
    pub fn drain(&mut self) {
        drain_into(self.ring.get_mut(), &mut self.tracker, turn::Budget::ALL);
    }

    /// Reads the records waiting in the ring buffer, at most `budget` of them: a loop turn's
    /// worth, or what a view or a drift check takes before it answers.
    pub(super) fn drain_some(&mut self, budget: turn::Budget) -> turn::Drained {
        let (read, drained) = drain_into(self.ring.get_mut(), &mut self.tracker, budget);
        if drained == turn::Drained::More {
            log::debug!("{read} records applied; more wait for the next turn");
        }
        drained
    }

    /// Processes records until `stop` completes or, with `until_all_exited`, until no traced
    /// process is left. Each turn applies a bounded number of records and a slice of the
    /// periodic work (`turn`), so an API question is answered within a turn or two whatever
    /// the load. The caller drains what is left after the stop.
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
            let mut watch = turn::Stopwatch::start();
            // biased: the stop, a question and the timers come before more records, which a
            // storm keeps ready all the time; records are taken a bounded batch per turn.
            tokio::select! {
                biased;
                out = &mut stop => finished = Some(out),
                Some(query) = next_query(&mut queries) => question = Some(query),
                _ = tick.tick() => {}
                _ = next_drift_check(&mut drift_tick) => self.sweep.ask(),
                ready = self.ring.readable_mut() => {
                    let mut guard = ready?;
                    let (read, drained) =
                        drain_into(guard.get_inner_mut(), &mut self.tracker, turn::Budget::TURN);
                    watch.lap(format_args!("drain of {read} records"));
                    // Records left: stay ready, so that the next turn (after the questions
                    // and timers) takes more.
                    if drained == turn::Drained::All {
                        guard.clear_ready();
                    }
                    continue;
                }
            }
            if let Some(Query { ask, reply }) = question {
                let what = format!("{ask:?}");
                let _ = reply.send(self.answer(ask));
                watch.lap(format_args!("answer to {what}"));
                continue;
            }
            self.drain_some(turn::Budget::TURN);
            watch.lap(format_args!("drain"));
            self.tracker.housekeeping();
            watch.lap(format_args!("housekeeping"));
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
                self.sweep.ask();
            }
            if self.sweep.busy() {
                let checked = self.check_slice();
                watch.lap(format_args!("drift check of {checked} processes"));
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

/// Applies at most `budget` records (then the exits and reseeds they call for); returns how
/// many it applied and whether the ring buffer was left empty.
fn drain_into(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    budget: turn::Budget,
) -> (usize, turn::Drained) {
    let started = std::time::Instant::now();
    let mut read = 0;
    // A seed overlapped by a record that cannot be applied twice is taken again, until one
    // lands in a quiet moment (records of the new seed's window are then read anew).
    for _ in 0..reconcile::MAX_RESEEDS_IN_A_ROW {
        // Stack samples first: a syscall record then finds the sample of its entry.
        if let Some(stacks) = tracker.stacks.as_mut() {
            stacks.drain();
        }
        let left = turn::Budget {
            records: budget.records - read,
            ..budget
        };
        let (batch, drained) = turn::take_records(
            left,
            || started.elapsed(),
            || match ring.next() {
                Some(item) => {
                    tracker.handle_record(&item);
                    true
                }
                None => false,
            },
        );
        read += batch;
        if batch > 0 {
            tracker.flush_events();
        }
        if let Some(stacks) = tracker.stacks.as_mut() {
            stacks.after_records(&mut tracker.table);
        }
        tracker.finish_exits();
        // A reseed still wanted is taken by the next turn (its flag stays set).
        if !tracker.reseed_where_needed() || drained == turn::Drained::More {
            return (read, drained);
        }
    }
    (read, turn::Drained::More)
}
