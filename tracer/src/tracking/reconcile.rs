//! The model's contact with /proc: what no syscall shows (the image at exec or attach, file
//! names, stack growth), and the drift check that compares the model with the kernel's own
//! `/proc/PID/maps` and heals it.

use std::{io, sync::Arc};

use crate::{
    kernel::probes::Probes,
    model::{
        apply::NeedsName,
        heap_rule::heap_lines,
        maps::{self, Line},
        vma::{Backing, FileRef},
    },
    procfs,
    tracking::process::ProcessState,
};

/// Why the model could not be seeded or compared with /proc.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no traced process {0}")]
    NotTraced(u32),
    #[error("process {0} has exited")]
    Exited(u32),
    #[error("cannot read /proc/{tgid}/{file}")]
    Read {
        tgid: u32,
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("/proc/{tgid}/maps {what}")]
    Parse { tgid: u32, what: String },
}

/// Reads `/proc/PID/maps`, keeping the cause of a failure.
fn maps_text(tgid: u32) -> Result<String, ReconcileError> {
    procfs::read_maps(tgid).map_err(|source| ReconcileError::Read {
        tgid,
        file: "maps",
        source,
    })
}

/// Seeds a process's address space from /proc. Records produced before the snapshot started
/// are already in it and will not be applied again; later ones are (applying one twice is
/// harmless: each sets the state of its own range).
pub fn seed(
    p: &mut ProcessState,
    probes: &mut Probes,
    at_exec: bool,
) -> Result<(), ReconcileError> {
    let tgid = p.tgid;
    let started = procfs::monotonic_ns();
    let text = maps_text(tgid)?;
    let stat = procfs::read_stat(tgid).map_err(|source| ReconcileError::Read {
        tgid,
        file: "stat",
        source,
    })?;
    // An exited process (a zombie) still has /proc entries, but no address space left.
    if stat.is_zombie() || text.is_empty() {
        return Err(ReconcileError::Exited(tgid));
    }
    let vmas = maps::parse(&text).map_err(|what| ReconcileError::Parse { tgid, what })?;
    p.space.replace_vmas(vmas);
    p.space.start_brk = (stat.start_brk != 0).then_some(stat.start_brk);
    p.space.start_stack = (stat.start_stack != 0).then_some(stat.start_stack);
    // The break is known exactly only from brk calls; until one comes the heap VMA tells.
    p.space.brk = None;
    if !p.space.agree_on_heap(&heap_lines(&text)) {
        log::debug!("process {tgid}: no break and rule name [heap] as /proc does");
    }
    p.seed.at_ns = Some(started);
    p.seed.read_end_ns = procfs::monotonic_ns();
    p.seed.needed_again = false;
    if let Some(start) = p.space.start_brk {
        p.heap.start = Some(start);
        if at_exec && p.heap.end.is_none() {
            p.heap.end = p.space.heap_page_end();
            p.heap.peak = p.heap.end;
        }
    }
    if p.comm.is_empty() {
        p.comm = stat.comm;
    }
    p.ppid = Some(stat.ppid);
    if let Ok(argv) = procfs::read_cmdline(tgid) {
        p.argv = argv;
    }
    if let Some(stack) = p.space.start_stack.and_then(|s| p.space.find(s)) {
        probes.set_stack_low(tgid, stack.start, at_exec);
    }
    if !at_exec || !probes.rss_events() {
        seed_rss(p, probes);
    }
    p.note_peaks();
    Ok(())
}

/// Seeds resident memory from /proc for a process traced mid-life: at attach, and for a
/// forked child (whose copied counters were reported in its parent's context, before the
/// child was known). The process is traced in the kernel before this read, so a kind that
/// changes after it is reported by an event, and one that does not keeps this value
/// (`ProcessState::observe_rss` merges the two). With `--rss-source procfs` (or no
/// `kmem:rss_stat` to follow) this is simply a read, as at every figure.
pub fn seed_rss(p: &mut ProcessState, probes: &Probes) {
    if !probes.rss_events() {
        if let Some(read) = crate::procfs::rss::read(p.tgid) {
            p.observe_rss(read);
        }
        return;
    }
    match procfs::read_rss(p.tgid) {
        Ok(bytes) => {
            p.rss_seed = Some(bytes);
            p.observe_rss(probes.rss(p.tgid).unwrap_or_default());
        }
        Err(err) => log::debug!("cannot read the RSS of {}: {err}", p.tgid),
    }
}

/// Names a freshly mapped file from `/proc/PID/map_files/START-END`: the kernel's mapping of
/// exactly that range. It misses when the daemon runs behind the process and the VMA was
/// split since; the name is then filled in lazily from /proc when a view of the space is made
/// (`resolve_pending_names`). The descriptor is not used: by the time the record is read it
/// may be closed and its number reused for another file.
pub fn resolve_name(p: &mut ProcessState, needs: NeedsName) {
    let tgid = p.tgid;
    let found = procfs::link_target(&format!(
        "/proc/{tgid}/map_files/{:x}-{:x}",
        needs.start, needs.end
    ));
    let Some((path, dev, inode)) = found else {
        return;
    };
    let path: Arc<str> = Arc::from(path);
    for vma in p.space.vmas_mut() {
        let Backing::File(file) = &mut vma.backing else {
            continue;
        };
        if file.path.is_none() && vma.start >= needs.start && vma.end <= needs.end {
            *file = FileRef {
                path: Some(path.clone()),
                dev,
                inode,
                fd: None,
            };
        }
    }
}

/// Fills in file names still unknown from /proc's view of the same ranges (one read of
/// /proc/PID/maps, and only if some name is missing).
pub fn resolve_pending_names(p: &mut ProcessState) {
    let pending = p
        .space
        .vmas()
        .any(|v| matches!(&v.backing, Backing::File(f) if f.path.is_none()));
    if !pending {
        return;
    }
    if let Ok(text) = procfs::read_maps(p.tgid)
        && let Ok(kernel) = maps::parse(&text)
    {
        maps::resolve_names(&mut p.space, &kernel);
    }
}

/// Extends the main stack down to where faults showed it grew.
pub fn sync_stack(p: &mut ProcessState, probes: &Probes) {
    if let Some(low) = probes.stack_low(p.tgid)
        && p.space.grow_stack_to(low)
    {
        p.note_peaks();
    }
}

/// What a drift check found.
#[derive(Debug, Default)]
pub struct Drift {
    /// Coalesced lines only in the model, and only in the kernel.
    pub only_model: Vec<Line>,
    pub only_kernel: Vec<Line>,
}

impl Drift {
    pub fn differences(&self) -> usize {
        self.only_model.len() + self.only_kernel.len()
    }
}

/// Compares the model with `/proc/PID/maps`. Unknown file names are filled in from the
/// kernel's view first (that is resolution, not drift). Returns the kernel's text too, for a
/// resync.
pub fn compare(
    p: &mut ProcessState,
    probes: &Probes,
) -> Result<(Drift, String, u64), ReconcileError> {
    sync_stack(p, probes);
    let tgid = p.tgid;
    let started = procfs::monotonic_ns();
    let text = maps_text(tgid)?;
    let parse_error = |what| ReconcileError::Parse { tgid, what };
    let kernel_vmas = maps::parse(&text).map_err(parse_error)?;
    maps::resolve_names(&mut p.space, &kernel_vmas);
    let kernel = maps::proc_lines(&text).map_err(parse_error)?;
    let model = maps::model_lines(&p.space);
    let (only_model, only_kernel) = maps::diff(&model, &kernel);
    Ok((
        Drift {
            only_model,
            only_kernel,
        },
        text,
        started,
    ))
}

impl Drift {
    /// What differs, in a few words: the same ranges named differently (the model's naming
    /// rule is wrong: `[heap]`, `[stack]`), or different ranges (records missed or misapplied).
    pub fn cause(&self) -> String {
        let renamed: Vec<String> = self
            .only_model
            .iter()
            .filter_map(|m| {
                let k = self
                    .only_kernel
                    .iter()
                    .find(|k| (k.start, k.end, k.perms) == (m.start, m.end, m.perms))?;
                Some(format!(
                    "{:x}-{:x} is `{}` in the model and `{}` in /proc",
                    m.start, m.end, m.name, k.name
                ))
            })
            .collect();
        if !renamed.is_empty() && renamed.len() == self.only_model.len() {
            format!("the same ranges named differently: {}", renamed.join("; "))
        } else {
            "ranges differ (records missed or misapplied)".to_string()
        }
    }
}

/// Counts a confirmed drift and replaces the model with the kernel's view. It is logged as a
/// warning, except when the process drifts again right after a resync: that is reported once,
/// with its cause, and later ones go to the debug log (every one is still counted).
pub fn heal(p: &mut ProcessState, drift: &Drift, kernel_text: &str, snapshot_ns: u64) {
    p.drift.differences += drift.differences() as u64;
    p.drift.resyncs += 1;
    let describe = |lines: &[Line]| {
        lines
            .iter()
            .take(8)
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let details = format!(
        "only in the model:\n{}\nonly in /proc:\n{}",
        describe(&drift.only_model),
        describe(&drift.only_kernel)
    );
    let (tgid, comm, n) = (p.tgid, &p.comm, drift.differences());
    if !p.drift.resynced_last_check {
        log::warn!(
            "process {tgid} ({comm}): model differs from /proc in {n} lines; resynced.\n{details}"
        );
    } else if !p.drift.recurring_reported {
        p.drift.recurring_reported = true;
        log::warn!(
            "process {tgid} ({comm}): model differs from /proc again right after a resync, in \
             {n} lines: {}; resynced. Further drift of this process is counted \
             (tracer_model_resyncs_total) and logged at debug level only.\n{details}",
            drift.cause()
        );
    } else {
        log::debug!("process {tgid} ({comm}): drift again in {n} lines; resynced.\n{details}");
    }
    p.drift.resynced_last_check = true;
    if let Ok(stat) = procfs::read_stat(p.tgid) {
        if p.space.start_brk.is_none() && stat.start_brk != 0 {
            p.space.start_brk = Some(stat.start_brk);
        }
        if p.space.start_stack.is_none() && stat.start_stack != 0 {
            p.space.start_stack = Some(stat.start_stack);
        }
    }
    if let Ok(vmas) = maps::parse(kernel_text) {
        p.space.replace_vmas(vmas);
        // Name [heap] as /proc does, or the next check finds the same lines again.
        if !p.space.agree_on_heap(&heap_lines(kernel_text)) {
            log::debug!("process {tgid}: no break and rule name [heap] as /proc does");
        }
        p.seed.at_ns = Some(snapshot_ns);
        // The process is quiescent or this is a best effort: the read ended about now.
        p.seed.read_end_ns = procfs::monotonic_ns();
    }
}

/// A drift check found the model equal to /proc.
pub fn agreed(p: &mut ProcessState) {
    p.drift.resynced_last_check = false;
}

/// Most times a seed is taken again in a row for one process before the tracer gives up and
/// leaves it to the drift check.
pub const MAX_RESEEDS_IN_A_ROW: u32 = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::process::DriftHistory;

    fn drift(model_name: &str, kernel_name: &str) -> Drift {
        let text = |name: &str| format!("555555559000-555555569000 rw-p 00000000 00:00 0 {name}\n");
        Drift {
            only_model: maps::proc_lines(&text(model_name)).unwrap(),
            only_kernel: maps::proc_lines(&text(kernel_name)).unwrap(),
        }
    }

    #[test]
    fn drift_right_after_a_resync_is_reported_once_with_its_cause() {
        let d = drift("[heap]", "");
        assert!(d.cause().contains("named differently"), "{}", d.cause());
        assert!(d.cause().contains("`[heap]` in the model and `` in /proc"));
        // No such process: the resync reads nothing from /proc, the bookkeeping is the same.
        let mut p = ProcessState::new(u32::MAX, "x".into(), 4096);
        let kernel = "555555559000-555555569000 rw-p 00000000 00:00 0 \n";
        heal(&mut p, &d, kernel, 1);
        assert_eq!(
            p.drift,
            DriftHistory {
                resyncs: 1,
                differences: 2,
                resynced_last_check: true,
                recurring_reported: false
            }
        );
        heal(&mut p, &d, kernel, 2);
        assert!(p.drift.recurring_reported, "reported now, and only now");
        heal(&mut p, &d, kernel, 3);
        assert_eq!(
            (p.drift.resyncs, p.drift.differences),
            (3, 6),
            "every one still counted"
        );
        agreed(&mut p);
        assert!(!p.drift.resynced_last_check);
    }
}
