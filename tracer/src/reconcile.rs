//! The model's contact with /proc: what no syscall shows (the image at exec or attach, file
//! names, stack growth), and the drift check that compares the model with the kernel's own
//! `/proc/PID/maps` and heals it.

use std::sync::Arc;

use crate::{
    model::{
        apply::NeedsName,
        maps::{self, Line},
        vma::{Backing, FileRef},
    },
    probes::Probes,
    process::ProcessState,
    procfs,
};

/// Seeds a process's address space from /proc. Records produced before the snapshot started
/// are already in it and will not be applied again; later ones are (applying one twice is
/// harmless: each sets the state of its own range).
pub fn seed(p: &mut ProcessState, probes: &mut Probes, at_exec: bool) -> Result<(), String> {
    let tgid = p.tgid;
    let started = procfs::monotonic_ns();
    let text = procfs::read_maps(tgid).map_err(|e| format!("/proc/{tgid}/maps: {e}"))?;
    let stat = procfs::read_stat(tgid).map_err(|e| format!("/proc/{tgid}/stat: {e}"))?;
    let vmas = maps::parse(&text).map_err(|e| format!("/proc/{tgid}/maps {e}"))?;
    p.space.replace_vmas(vmas);
    p.space.start_brk = (stat.start_brk != 0).then_some(stat.start_brk);
    p.space.start_stack = (stat.start_stack != 0).then_some(stat.start_stack);
    // The break is known exactly only from brk calls; until one comes the heap VMA tells.
    p.space.brk = None;
    p.seeded_at_ns = Some(started);
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
    if let Some(stack) = p.space.start_stack.and_then(|s| p.space.find(s)) {
        probes.set_stack_low(tgid, stack.start);
    }
    p.note_peaks();
    Ok(())
}

/// Names a freshly mapped file from `/proc/PID/map_files` (the mapping as the kernel has it
/// now) or `/proc/PID/fd` (if the descriptor is still open). VMAs still waiting for a name
/// that came from the same descriptor get it too: the loader reserves a library's whole range
/// with one mmap, then maps its segments over it with the same fd.
pub fn resolve_name(p: &mut ProcessState, needs: NeedsName) {
    let tgid = p.tgid;
    let found = procfs::link_target(&format!(
        "/proc/{tgid}/map_files/{:x}-{:x}",
        needs.start, needs.end
    ))
    .or_else(|| procfs::link_target(&format!("/proc/{tgid}/fd/{}", needs.fd)));
    let Some((path, dev, inode)) = found else {
        return;
    };
    let path: Arc<str> = Arc::from(path);
    for vma in p.space.vmas_mut() {
        let Backing::File(file) = &mut vma.backing else {
            continue;
        };
        let in_range = vma.start >= needs.start && vma.end <= needs.end;
        if file.path.is_none() && (in_range || file.fd == Some(needs.fd)) {
            *file = FileRef {
                path: Some(path.clone()),
                dev,
                inode,
                fd: None,
            };
        }
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
pub fn compare(p: &mut ProcessState, probes: &Probes) -> Result<(Drift, String, u64), String> {
    sync_stack(p, probes);
    let tgid = p.tgid;
    let started = procfs::monotonic_ns();
    let text = procfs::read_maps(tgid).map_err(|e| format!("/proc/{tgid}/maps: {e}"))?;
    let kernel_vmas = maps::parse(&text).map_err(|e| format!("/proc/{tgid}/maps {e}"))?;
    maps::resolve_names(&mut p.space, &kernel_vmas);
    let kernel = maps::proc_lines(&text)?;
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

/// Counts and logs a confirmed drift, then replaces the model with the kernel's view.
pub fn heal(p: &mut ProcessState, drift: &Drift, kernel_text: &str, snapshot_ns: u64) {
    p.drift_differences += drift.differences() as u64;
    p.resyncs += 1;
    let describe = |lines: &[Line]| {
        lines
            .iter()
            .take(8)
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    log::warn!(
        "process {} ({}): model differs from /proc in {} lines; resynced.\nonly in the \
         model:\n{}\nonly in /proc:\n{}",
        p.tgid,
        p.comm,
        drift.differences(),
        describe(&drift.only_model),
        describe(&drift.only_kernel)
    );
    if let Ok(vmas) = maps::parse(kernel_text) {
        p.space.replace_vmas(vmas);
        p.seeded_at_ns = Some(snapshot_ns);
    }
}
