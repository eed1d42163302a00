//! Prometheus metrics, built at scrape time from the daemon's state: every scrape fills a
//! fresh registry, so the series of a process disappear once it is past the grace period
//! after its exit, and nothing is kept per series between scrapes.

use prometheus::{
    Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};
use tracer_common::counters::{RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP};

use crate::{
    fault_regions::MetricRegion,
    model::region::classified,
    process::{Lifecycle, ProcessState},
    summary::DaemonCounters,
    syscalls::SyscallKind,
};

/// What a scrape needs besides the processes.
pub struct ScrapeContext<'a> {
    pub daemon: &'a DaemonCounters,
    /// Processes that exited before this (CLOCK_MONOTONIC ns) are no longer exported.
    pub exited_cutoff_ns: u64,
    /// Forked processes not traced because the traced set was full (--max-processes).
    pub refused: u64,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn exported(p: &ProcessState, cutoff_ns: u64) -> bool {
    match p.lifecycle {
        Lifecycle::Running => true,
        Lifecycle::Exited { ts_ns } => ts_ns >= cutoff_ns,
    }
}

/// Renders the text exposition of all metrics.
pub fn render<'a>(
    processes: impl Iterator<Item = &'a ProcessState>,
    ctx: &ScrapeContext,
) -> String {
    let pc = ["pid", "comm"];
    let faults = counter(
        "tracer_page_faults_total",
        "Page faults of a traced process, by region of its address space and minor/major",
        &["pid", "comm", "region", "kind"],
    );
    let rss = gauge(
        "tracer_rss_bytes",
        "Resident memory by type, as kmem:rss_stat last reported it",
        &["pid", "comm", "type"],
    );
    let rss_peak = gauge(
        "tracer_rss_peak_bytes",
        "Highest resident memory seen (file+anon+shmem)",
        &pc,
    );
    let vsz = gauge(
        "tracer_virtual_memory_bytes",
        "Virtual size of the address space (VmSize)",
        &pc,
    );
    let heap = gauge(
        "tracer_heap_bytes",
        "Size of the brk heap (break minus start)",
        &pc,
    );
    let heap_peak = gauge("tracer_heap_peak_bytes", "Largest brk heap seen", &pc);
    let mapped = gauge(
        "tracer_mapped_bytes",
        "Bytes mapped by region of the address space",
        &["pid", "comm", "region"],
    );
    let vmas = gauge("tracer_vmas", "Number of VMAs in the address space", &pc);
    let syscalls = counter(
        "tracer_syscalls_total",
        "Address-space syscalls made by a traced process",
        &["pid", "comm", "syscall"],
    );
    let errors = counter(
        "tracer_syscall_errors_total",
        "Address-space syscalls that failed",
        &["pid", "comm", "syscall"],
    );
    let mut running = 0;
    let (mut resyncs, mut differences) = (0, 0);
    for p in processes {
        resyncs += p.resyncs;
        differences += p.drift_differences;
        if p.is_running() {
            running += 1;
        }
        if !exported(p, ctx.exited_cutoff_ns) {
            continue;
        }
        let pid = p.tgid.to_string();
        let id = [pid.as_str(), p.comm.as_str()];
        // Faults by region; what the granule map could not attribute (it was full) is "other".
        let (minor_attributed, major_attributed) = p.fault_regions.attributed();
        let minor_total = p.faults.total().saturating_sub(p.faults.major);
        for (i, region) in MetricRegion::ALL.iter().enumerate() {
            let mut minor = p.fault_regions.minor[i];
            let mut major = p.fault_regions.major[i];
            if *region == MetricRegion::Other {
                minor += minor_total.saturating_sub(minor_attributed);
                major += p.faults.major.saturating_sub(major_attributed);
            }
            for (kind, value) in [("minor", minor), ("major", major)] {
                faults
                    .with_label_values(&[id[0], id[1], region.name(), kind])
                    .inc_by(value);
            }
        }
        for (kind, index) in [
            ("file", RSS_FILE),
            ("anon", RSS_ANON),
            ("swap", RSS_SWAP),
            ("shmem", RSS_SHMEM),
        ] {
            rss.with_label_values(&[id[0], id[1], kind])
                .set(p.rss.bytes[index] as i64);
        }
        rss_peak
            .with_label_values(&id)
            .set(p.rss.peak_resident as i64);
        if !p.model_dropped {
            vsz.with_label_values(&id)
                .set(p.space.virtual_size() as i64);
            vmas.with_label_values(&id).set(p.space.vma_count() as i64);
            let mut by_region = [0u64; 5];
            for (vma, region) in classified(&p.space) {
                let r = MetricRegion::from(region);
                by_region[MetricRegion::ALL.iter().position(|x| *x == r).unwrap_or(4)] += vma.len();
            }
            for (region, bytes) in MetricRegion::ALL.iter().zip(by_region) {
                mapped
                    .with_label_values(&[id[0], id[1], region.name()])
                    .set(bytes as i64);
            }
        }
        if let Some(size) = p.heap.size() {
            heap.with_label_values(&id).set(size as i64);
        }
        if let Some(size) = p.heap.peak_size() {
            heap_peak.with_label_values(&id).set(size as i64);
        }
        for kind in SyscallKind::ALL {
            let s = p.stats(kind);
            syscalls
                .with_label_values(&[id[0], id[1], kind.name()])
                .inc_by(s.calls);
            errors
                .with_label_values(&[id[0], id[1], kind.name()])
                .inc_by(s.failed);
        }
    }

    let d = ctx.daemon;
    let events = counter(
        "tracer_events_total",
        "Ring-buffer records decoded, by kind",
        &["kind"],
    );
    let lost = counter(
        "tracer_events_lost_total",
        "Records lost in the kernel because the ring buffer was full, by kind",
        &["kind"],
    );
    for (i, kind) in ["syscall", "fork", "exec", "exit"].iter().enumerate() {
        events.with_label_values(&[kind]).inc_by(d.records[i + 1]);
        lost.with_label_values(&[kind]).inc_by(d.lost[i + 1]);
    }
    let single_counter = |name: &str, help: &str, value: u64| {
        let c = counter(name, help, &[]);
        c.with_label_values(&[] as &[&str]).inc_by(value);
        c
    };
    let decode_errors = single_counter(
        "tracer_decode_errors_total",
        "Records the daemon could not decode",
        d.decode_errors,
    );
    let resync_counter = single_counter(
        "tracer_model_resyncs_total",
        "Times a process's model was found to differ from /proc/PID/maps and resynced",
        resyncs,
    );
    let difference_counter = single_counter(
        "tracer_model_drift_differences_total",
        "Differing /proc/PID/maps lines found by drift checks",
        differences,
    );
    let refused = single_counter(
        "tracer_processes_refused_total",
        "Forked processes not traced because the traced set was full (--max-processes)",
        ctx.refused,
    );
    let traced = gauge("tracer_traced_processes", "Processes being traced now", &[]);
    traced.with_label_values(&[] as &[&str]).set(running);
    let build = gauge("tracer_build_info", "Version of the tracer", &["version"]);
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

    let registry = Registry::new();
    let collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(faults),
        Box::new(rss),
        Box::new(rss_peak),
        Box::new(vsz),
        Box::new(heap),
        Box::new(heap_peak),
        Box::new(mapped),
        Box::new(vmas),
        Box::new(syscalls),
        Box::new(errors),
        Box::new(events),
        Box::new(lost),
        Box::new(decode_errors),
        Box::new(resync_counter),
        Box::new(difference_counter),
        Box::new(refused),
        Box::new(traced),
        Box::new(build),
    ];
    for collector in collectors {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding to memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_contract_and_hides_processes_past_the_grace_period() {
        let mut alive = ProcessState::new(7, "worker".into(), 4096);
        alive.syscalls[SyscallKind::Mmap.index()].calls = 3;
        alive.faults.by_access[0] = 10;
        alive.faults.major = 2;
        let mut gone = ProcessState::new(8, "old".into(), 4096);
        gone.lifecycle = Lifecycle::Exited { ts_ns: 5 };
        let daemon = DaemonCounters::default();
        let ctx = ScrapeContext {
            daemon: &daemon,
            exited_cutoff_ns: 10,
            refused: 0,
        };
        let text = render([&alive, &gone].into_iter(), &ctx);
        assert!(
            text.contains(r#"tracer_syscalls_total{comm="worker",pid="7",syscall="mmap"} 3"#),
            "{text}"
        );
        // Unattributed faults are exported as region "other", so the sum stays exact.
        assert!(
            text.contains(
                r#"tracer_page_faults_total{comm="worker",kind="minor",pid="7",region="other"} 8"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tracer_page_faults_total{comm="worker",kind="major",pid="7",region="other"} 2"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"pid="8""#),
            "exited before the cutoff: {text}"
        );
        assert!(text.contains("tracer_traced_processes 1"), "{text}");
        assert!(text.contains("# TYPE tracer_page_faults_total counter"));
        assert!(text.contains(r#"tracer_build_info{version=""#));
    }
}
