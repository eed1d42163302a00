//! The session's answers to the HTTP API (`server::http` sends a query, the drain loop answers
//! it between batches, so a view never sees a half-applied record), phase marks and the drift
//! checks they and the timer ask for.

use crate::{
    model::maps,
    procfs,
    server::http::{Answer, Ask, Query},
    tracking::reconcile,
    views::api,
    views::groups::GroupBy,
};

use super::Session;
use super::tracker::{PHASE_LIMIT, Tracker, nanos};

impl Session {
    /// Answers the HTTP API's questions from now on.
    pub fn serve_queries(&mut self, queries: tokio::sync::mpsc::Receiver<Query>) {
        self.queries = Some(queries);
    }

    /// Snapshots the figures of every running traced process (or of `pid`) under phase
    /// `name`, for the report and `--check`.
    pub(super) fn mark_phase(&mut self, name: &str, pid: Option<u32>) -> Answer {
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
        let mut watch = super::turn::Stopwatch::start();
        for attempt in 0..2 {
            self.drain_some(super::turn::Budget::ANSWER);
            watch.lap(format_args!("drift check of {tgid}: drain"));
            let Tracker { table, probes, .. } = &mut self.tracker;
            let p = table
                .get_mut(tgid)
                .ok_or(reconcile::ReconcileError::NotTraced(tgid))?;
            let (drift, text, snapshot_ns) = reconcile::compare(p, probes)?;
            watch.lap(format_args!("drift check of {tgid}: comparison with /proc"));
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

    /// The next slice of the periodic drift check (`turn::DriftSweep`); returns how many
    /// processes it compared.
    pub(super) fn check_slice(&mut self) -> usize {
        use super::turn::{Budget, DRIFT_CHECKS_PER_TURN, Drained, SWEEP_TIME};
        let started = std::time::Instant::now();
        let mut checked = 0;
        while checked < DRIFT_CHECKS_PER_TURN && (checked == 0 || started.elapsed() < SWEEP_TIME) {
            let table = &self.tracker.table;
            let Some(&tgid) = self
                .sweep
                .next_slice(1, || table.running().map(|p| p.tgid).collect())
                .first()
            else {
                break;
            };
            // Exited since the sweep began: nothing to compare.
            if !self.tracker.is_running(tgid) {
                continue;
            }
            checked += 1;
            // Records still waiting after a turn's worth (a storm): a comparison now would
            // find changes that are only on their way; this process waits for the next sweep.
            if self.drain_some(Budget::TURN) == Drained::More {
                log::debug!("drift check of {tgid} put off: records are still waiting");
                continue;
            }
            if let Err(err) = self.check(tgid) {
                log::debug!(
                    "drift check of {tgid} skipped: {}",
                    crate::error_chain(&err)
                );
            }
        }
        checked
    }

    /// Answers one API question with everything drained so far (first applying what waits,
    /// for at most `Budget::ANSWER`).
    pub(super) fn answer(&mut self, ask: Ask) -> Answer {
        let mut watch = super::turn::Stopwatch::start();
        self.drain_some(super::turn::Budget::ANSWER);
        watch.lap(format_args!("drain before an answer"));
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
                let mut watch = super::turn::Stopwatch::start();
                self.tracker.refresh_running();
                watch.lap(format_args!("scrape: kernel figures of running processes"));
                let tracker = &mut self.tracker;
                if tracker.group_by != GroupBy::Pid {
                    for p in tracker.table.iter() {
                        let key = crate::views::groups::key_of(tracker.group_by, p);
                        tracker.groups.join(p.tgid, &key);
                    }
                }
                let tracker = &self.tracker;
                let cutoff = procfs::monotonic_ns().saturating_sub(nanos(tracker.exited_grace));
                let ctx = crate::views::metrics::ScrapeContext {
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
                        crate::views::metrics::render_openmetrics(
                            tracker.table.iter(),
                            &ctx,
                            started,
                        ),
                        crate::views::openmetrics::CONTENT_TYPE,
                    )
                } else {
                    Answer::Metrics(
                        crate::views::metrics::render(tracker.table.iter(), &ctx),
                        crate::views::metrics::CONTENT_TYPE,
                    )
                }
            }
            Ask::Phase { name, pid } => self.mark_phase(&name, pid),
            Ask::Pprof {
                pid,
                running_only,
                default_type,
                folded,
            } => {
                if let Some(pid) = pid
                    && (running_only && !self.tracker.is_running(pid)
                        || self.tracker.table.get(pid).is_none())
                {
                    return not_found(pid);
                }
                let Tracker { stacks, table, .. } = &mut self.tracker;
                let folded_type = crate::stacks::folded::SampleType::from_name(default_type);
                match (stacks.as_mut(), folded_type) {
                    (Some(s), Some(t)) if folded => Answer::Bytes(
                        s.folded(table, pid, t).into_bytes(),
                        "text/plain; charset=utf-8",
                    ),
                    (Some(s), _) => Answer::Bytes(
                        s.profile(table, pid, default_type),
                        "application/octet-stream",
                    ),
                    (None, _) => Answer::NotFound(
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
                    let (resyncs, total) =
                        p.map_or((0, 0), |p| (p.drift.resyncs, p.drift.differences));
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
}
