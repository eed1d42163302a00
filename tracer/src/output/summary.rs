//! The human summary printed at the end of `run` and `attach`.

use std::fmt::Write as _;

use tracer_common::counters::*;

use crate::units::human_bytes;
use crate::{
    kernel::syscalls::SyscallKind,
    tracking::process::{Lifecycle, ProcessState},
};

/// Daemon-wide counters shown in the summary header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonCounters {
    /// Records decoded, by kind (index = `RECORD_*`).
    pub records: [u64; tracer_common::record::RECORD_KINDS],
    /// Records lost in the kernel (ring buffer full), by kind.
    pub lost: [u64; tracer_common::record::RECORD_KINDS],
    /// Records that could not be decoded.
    pub decode_errors: u64,
    /// Syscall exits seen without their entry (traced mid-syscall).
    pub exits_without_enter: u64,
    /// Syscalls whose arguments could not be stashed (in-flight map full).
    pub inflight_full: u64,
    /// Forked processes that could not be traced (traced map full).
    pub traced_full: u64,
    /// Processes found at attach that could not be traced (traced map full).
    pub refused: u64,
    /// Records held back and applied in the kernel's order of their process's changes, not in
    /// the order they arrived (`order::OrderCounters::reordered`).
    pub model_reorders: u64,
    /// Changes that could not be placed in the kernel's order (a late or lost record, memory
    /// handed out where the model had some); each made the model resync from /proc.
    pub order_conflicts: u64,
}

/// Record kinds by name with their index in `records` and `lost` (the `RECORD_*` constants),
/// in the order every view lists them.
pub const RECORD_KIND_NAMES: [(&str, usize); 4] = {
    use tracer_common::record::{RECORD_EXEC, RECORD_EXIT, RECORD_FORK, RECORD_SYSCALL};
    [
        ("syscall", RECORD_SYSCALL as usize),
        ("fork", RECORD_FORK as usize),
        ("exec", RECORD_EXEC as usize),
        ("exit", RECORD_EXIT as usize),
    ]
};

impl DaemonCounters {
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().sum()
    }

    /// `counts` (`records` or `lost`) by kind name.
    pub fn by_kind(
        counts: &[u64; tracer_common::record::RECORD_KINDS],
    ) -> [(&'static str, u64); 4] {
        RECORD_KIND_NAMES.map(|(name, index)| (name, counts[index]))
    }
}

fn opt_hex(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| format!("{v:#x}"))
}

/// Renders the summary of the given processes.
pub fn render<'a>(processes: impl Iterator<Item = &'a ProcessState>, d: &DaemonCounters) -> String {
    let mut out = String::new();
    let [syscall, fork, exec, exit] = DaemonCounters::by_kind(&d.records).map(|(_, n)| n);
    let _ = writeln!(
        out,
        "tracer: {syscall} syscall records, {fork} fork, {exec} exec, {exit} exit; lost {}; \
         decode errors {}",
        d.lost_total(),
        d.decode_errors
    );
    if d.lost_total() > 0 {
        let [syscall, fork, exec, exit] = DaemonCounters::by_kind(&d.lost).map(|(_, n)| n);
        let _ = writeln!(
            out,
            "tracer: WARNING: {} records were lost because the ring buffer was full \
             (syscall {syscall}, fork {fork}, exec {exec}, exit {exit}); the figures below are \
             incomplete. Use a larger --ring-buffer-size.",
            d.lost_total(),
        );
    }
    if d.exits_without_enter + d.inflight_full + d.traced_full > 0 {
        let _ = writeln!(
            out,
            "tracer: syscalls unpaired (in progress at attach, or a kprobe return missed) {}, \
             unrecorded (in-flight map full) {}, children not traced (traced map full) {}",
            d.exits_without_enter, d.inflight_full, d.traced_full
        );
    }
    if d.model_reorders + d.order_conflicts > 0 {
        let _ = writeln!(
            out,
            "tracer: records applied in the kernel's order rather than their arrival order {}; \
             changes out of order (model resynced from /proc) {}",
            d.model_reorders, d.order_conflicts
        );
    }
    for p in processes {
        render_process(&mut out, p);
    }
    out
}

fn render_process(out: &mut String, p: &ProcessState) {
    let state = match (&p.lifecycle, p.exit_status) {
        (Lifecycle::Running, _) => "still running".to_string(),
        (Lifecycle::Exited { .. }, _) if p.untraced => {
            "no longer traced (exec'd an excluded command)".to_string()
        }
        (Lifecycle::Exited { .. }, Some(status)) => format!("exited, status {status}"),
        (Lifecycle::Exited { .. }, None) => "exited".to_string(),
    };
    let state = if p.exit_record_lost {
        format!("{state} (its exit record was lost: figures up to the last record seen)")
    } else {
        state
    };
    let _ = write!(out, "\npid {} ({})", p.tgid, p.comm);
    if let Some(exe) = &p.exe {
        let _ = write!(out, " {exe}");
    }
    let _ = write!(out, ": {state}");
    if let Some(parent) = p.parent {
        let _ = write!(out, ", forked by {parent}");
    }
    if p.threads_created > 0 {
        let _ = write!(out, ", {} threads created", p.threads_created);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  {:<10} {:>10} {:>10}", "syscall", "calls", "failed");
    for kind in SyscallKind::ALL {
        let s = p.stats(kind);
        let _ = writeln!(
            out,
            "  {:<10} {:>10} {:>10}",
            kind.name(),
            s.calls,
            s.failed
        );
    }
    let _ = writeln!(
        out,
        "  mapped {} ({} bytes), unmapped {} ({} bytes)",
        human_bytes(p.bytes_mapped),
        p.bytes_mapped,
        human_bytes(p.bytes_unmapped),
        p.bytes_unmapped
    );
    let h = &p.heap;
    let _ = writeln!(
        out,
        "  heap start {} end {} peak {} (size {}, peak size {}, {} moves)",
        opt_hex(h.start),
        opt_hex(h.end),
        opt_hex(h.peak),
        p.heap_size().map_or("unknown".into(), human_bytes),
        p.heap_peak().map_or("unknown".into(), human_bytes),
        h.moves
    );
    let f = &p.faults;
    let a = &f.by_access;
    let _ = writeln!(
        out,
        "  page faults {} (minor {}, major {}); user read {}, write {}, exec {}; \
         kernel read {}, write {}, exec {}",
        f.total(),
        f.total().saturating_sub(f.major),
        f.major,
        a[ACCESS_USER_READ],
        a[ACCESS_USER_WRITE],
        a[ACCESS_USER_EXEC],
        a[ACCESS_KERNEL_READ],
        a[ACCESS_KERNEL_WRITE],
        a[ACCESS_KERNEL_EXEC]
    );
    out.push_str(&render_layout(p));
}

/// The address-space drawing of a process: live, or as it was at exit once the VMAs of an
/// exited process were freed.
pub fn render_layout(p: &ProcessState) -> String {
    if p.model_dropped {
        return p.final_layout.clone().unwrap_or_default();
    }
    let mut out = String::new();
    if p.space.vma_count() > 0 {
        let when = if p.is_running() { "now" } else { "at exit" };
        let _ = writeln!(out, "  address space {when}, high to low:");
        out.push_str(&crate::output::layout::render(&p.space, "    "));
        let _ = writeln!(out, "  {}", crate::output::layout::vsz_line(&p.space));
        let _ = writeln!(
            out,
            "  peaks: VSZ {}, {} VMAs; model resyncs {} ({} differing lines), reseeds {}",
            human_bytes(p.peak_vsz),
            p.peak_vmas,
            p.drift.resyncs,
            p.drift.differences,
            p.seed.retaken
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(132 * 1024), "132.0 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn summary_lists_every_syscall_and_warns_about_losses() {
        let mut p = ProcessState::new(42, "demo".into(), 4096);
        p.syscalls[SyscallKind::Munmap.index()].calls = 3;
        p.syscalls[SyscallKind::Munmap.index()].failed = 1;
        let d = DaemonCounters {
            lost: [0, 5, 0, 0, 0],
            ..Default::default()
        };
        let text = render(std::iter::once(&p), &d);
        assert!(text.contains("pid 42 (demo): still running"), "{text}");
        assert!(
            text.contains("  munmap              3          1"),
            "{text}"
        );
        assert!(text.contains("WARNING: 5 records were lost"), "{text}");
        for kind in SyscallKind::ALL {
            assert!(text.contains(kind.name()));
        }
    }
}
