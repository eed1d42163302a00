//! Prometheus metrics, built at scrape time from the daemon's state: every scrape fills a
//! fresh registry, so the series of a process disappear once it is past the grace period
//! after its exit, and nothing is kept per series between scrapes.

use std::collections::BTreeMap;

use crate::{
    kernel::probes::Feature,
    kernel::syscalls::SyscallKind,
    model::region::classified,
    output::summary::DaemonCounters,
    tracking::counters::CounterTotals,
    tracking::fault_regions::MetricRegion,
    tracking::process::{Lifecycle, ProcessState},
    tracking::process_figures::RSS_TYPES,
    views::groups::CommGroups,
    views::groups::GroupBy,
};
use prometheus::{
    Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

/// What a scrape needs besides the processes.
pub struct ScrapeContext<'a> {
    pub daemon: &'a DaemonCounters,
    /// Processes that exited before this (CLOCK_MONOTONIC ns) are no longer exported.
    pub exited_cutoff_ns: u64,
    /// Forked processes not traced because the traced set was full (--max-processes).
    pub refused: u64,
    pub group_by: GroupBy,
    /// With `--group-by comm`: each process's label, and the counters of processes already
    /// forgotten per comm (they keep the per-comm counters from going down).
    pub groups: &'a CommGroups,
    /// Optional kernel features and whether this kernel has them.
    pub features: &'a [Feature],
}

/// The gauge figures of one process (or the sum over the live processes of one comm).
#[derive(Clone, Debug, Default)]
struct Gauges {
    rss: [u64; 4],
    rss_peak: u64,
    vsz: u64,
    vmas: u64,
    heap: Option<u64>,
    heap_peak: Option<u64>,
    mapped: [u64; 5],
}

impl Gauges {
    fn of(p: &ProcessState) -> Gauges {
        let mut g = Gauges {
            rss: p.rss_now(),
            rss_peak: p.rss_peak(),
            heap: p.heap_size(),
            heap_peak: p.heap_peak(),
            ..Default::default()
        };
        if !p.model_dropped {
            g.vsz = p.space.virtual_size();
            g.vmas = p.space.vma_count() as u64;
            for (vma, region) in classified(&p.space) {
                g.mapped[MetricRegion::from(region) as usize] += vma.len();
            }
        }
        g
    }

    fn add(&mut self, o: &Gauges) {
        for (m, t) in self.rss.iter_mut().zip(o.rss) {
            *m += t;
        }
        for (m, t) in self.mapped.iter_mut().zip(o.mapped) {
            *m += t;
        }
        self.rss_peak += o.rss_peak;
        self.vsz += o.vsz;
        self.vmas += o.vmas;
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.heap = sum(self.heap, o.heap);
        self.heap_peak = sum(self.heap_peak, o.heap_peak);
    }
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

/// Per-series figures: label values (pid and comm, or comm) with counters and gauges.
fn series<'a>(
    processes: impl Iterator<Item = &'a ProcessState>,
    ctx: &ScrapeContext,
) -> Vec<(Vec<String>, CounterTotals, Option<Gauges>)> {
    match ctx.group_by {
        GroupBy::Pid => processes
            .filter(|p| exported(p, ctx.exited_cutoff_ns))
            .map(|p| {
                (
                    vec![p.tgid.to_string(), p.comm.clone()],
                    p.counter_totals(),
                    Some(Gauges::of(p)),
                )
            })
            .collect(),
        _ => {
            let mut by_comm: BTreeMap<String, (CounterTotals, Option<Gauges>)> = BTreeMap::new();
            for (comm, totals) in ctx.groups.retired() {
                by_comm.entry(comm.to_owned()).or_default().0.add(totals);
            }
            // Counters count every process of the comm; gauges only the live ones.
            for p in processes {
                let entry = by_comm
                    .entry(ctx.groups.label(p.tgid).to_owned())
                    .or_default();
                entry.0.add(&p.counters_under_current_comm());
                if p.is_running() {
                    entry
                        .1
                        .get_or_insert_with(Gauges::default)
                        .add(&Gauges::of(p));
                }
            }
            by_comm
                .into_iter()
                .map(|(comm, (t, g))| (vec![comm], t, g))
                .collect()
        }
    }
}

/// Renders the text exposition of all metrics.
pub fn render<'a>(
    processes: impl Iterator<Item = &'a ProcessState> + Clone,
    ctx: &ScrapeContext,
) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&gather(processes, ctx), &mut out)
        .expect("encoding to memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Renders the OpenMetrics exposition of all metrics (see `openmetrics`).
pub fn render_openmetrics<'a>(
    processes: impl Iterator<Item = &'a ProcessState> + Clone,
    ctx: &ScrapeContext,
    daemon_started_unix_s: f64,
) -> String {
    crate::views::openmetrics::encode(&gather(processes, ctx), daemon_started_unix_s)
}

/// Fills a fresh registry with every metric and gathers it.
fn gather<'a>(
    processes: impl Iterator<Item = &'a ProcessState> + Clone,
    ctx: &ScrapeContext,
) -> Vec<prometheus::proto::MetricFamily> {
    let group_label = crate::views::groups::label_name(ctx.group_by).map(|l| [l]);
    let id_labels: &[&str] = match &group_label {
        None => &["pid", "comm"],
        Some(label) => label,
    };
    let with = |extra: &'static str| -> Vec<&'static str> {
        id_labels.iter().copied().chain([extra]).collect()
    };
    let faults = counter(
        "tracer_page_faults_total",
        "Page faults of a traced process, by region of its address space and minor/major",
        &[id_labels, &["region", "kind"]].concat(),
    );
    let rss = gauge(
        "tracer_rss_bytes",
        "Resident memory by type, as kmem:rss_stat last reported it",
        &with("type"),
    );
    let rss_peak = gauge(
        "tracer_rss_peak_bytes",
        "Highest resident memory seen (file+anon+shmem)",
        id_labels,
    );
    let vsz = gauge(
        "tracer_virtual_memory_bytes",
        "Virtual size of the address space (VmSize)",
        id_labels,
    );
    let heap = gauge(
        "tracer_heap_bytes",
        "Size of the brk heap (break minus start)",
        id_labels,
    );
    let heap_peak = gauge("tracer_heap_peak_bytes", "Largest brk heap seen", id_labels);
    let mapped = gauge(
        "tracer_mapped_bytes",
        "Bytes mapped by region of the address space",
        &with("region"),
    );
    let vmas = gauge(
        "tracer_vmas",
        "Number of VMAs in the address space",
        id_labels,
    );
    let syscalls = counter(
        "tracer_syscalls_total",
        "Address-space syscalls made by a traced process",
        &with("syscall"),
    );
    let errors = counter(
        "tracer_syscall_errors_total",
        "Address-space syscalls that failed",
        &with("syscall"),
    );
    for (id, totals, gauges) in series(processes.clone(), ctx) {
        let id: Vec<&str> = id.iter().map(String::as_str).collect();
        let labels = |extra: &[&'static str]| -> Vec<&str> {
            id.iter().copied().chain(extra.iter().copied()).collect()
        };
        for (i, region) in MetricRegion::ALL.iter().enumerate() {
            faults
                .with_label_values(&labels(&[region.name(), "minor"]))
                .inc_by(totals.faults_minor[i]);
            faults
                .with_label_values(&labels(&[region.name(), "major"]))
                .inc_by(totals.faults_major[i]);
        }
        for kind in SyscallKind::ALL {
            syscalls
                .with_label_values(&labels(&[kind.name()]))
                .inc_by(totals.syscalls[kind.index()]);
            errors
                .with_label_values(&labels(&[kind.name()]))
                .inc_by(totals.syscall_errors[kind.index()]);
        }
        let Some(g) = gauges else { continue };
        for (kind, index) in RSS_TYPES {
            rss.with_label_values(&labels(&[kind]))
                .set(g.rss[index] as i64);
        }
        rss_peak.with_label_values(&id).set(g.rss_peak as i64);
        vsz.with_label_values(&id).set(g.vsz as i64);
        vmas.with_label_values(&id).set(g.vmas as i64);
        for (region, bytes) in MetricRegion::ALL.iter().zip(g.mapped) {
            mapped
                .with_label_values(&labels(&[region.name()]))
                .set(bytes as i64);
        }
        if let Some(size) = g.heap {
            heap.with_label_values(&id).set(size as i64);
        }
        if let Some(size) = g.heap_peak {
            heap_peak.with_label_values(&id).set(size as i64);
        }
    }
    let mut running = 0;
    let (mut resyncs, mut differences) = (0, 0);
    for p in processes {
        resyncs += p.drift.resyncs;
        differences += p.drift.differences;
        if p.is_running() {
            running += 1;
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
    for ((kind, records), (_, lost_records)) in DaemonCounters::by_kind(&d.records)
        .into_iter()
        .zip(DaemonCounters::by_kind(&d.lost))
    {
        events.with_label_values(&[kind]).inc_by(records);
        lost.with_label_values(&[kind]).inc_by(lost_records);
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
    let reorders = single_counter(
        "tracer_model_reorders_total",
        "Records applied in the kernel's order of their process's address-space changes rather \
         than in the order they arrived",
        d.model_reorders,
    );
    let order_conflicts = single_counter(
        "tracer_model_order_conflicts_total",
        "Changes that could not be placed in the kernel's order (a late or lost record, memory \
         handed out where the model had some); each made the model resync from /proc",
        d.order_conflicts,
    );
    let refused = single_counter(
        "tracer_processes_refused_total",
        "Forked processes not traced because the traced set was full (--max-processes)",
        ctx.refused,
    );
    let folded = single_counter(
        "tracer_series_groups_folded_total",
        "With --group-by other than pid: groups (comms, cgroups, ...) that gave their own \
         series up to a newer one (--max-series-groups); their counts continue under \
         \"(other processes)\"",
        ctx.groups.folded(),
    );
    let traced = gauge("tracer_traced_processes", "Processes being traced now", &[]);
    traced.with_label_values(&[] as &[&str]).set(running);
    let build = gauge("tracer_build_info", "Version of the tracer", &["version"]);
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let features = gauge(
        "tracer_kernel_feature_enabled",
        "Whether an optional kernel feature the tracer uses is available (1) or off (0)",
        &["feature"],
    );
    for f in ctx.features {
        features
            .with_label_values(&[f.name])
            .set(i64::from(f.enabled));
    }

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
        Box::new(reorders),
        Box::new(order_conflicts),
        Box::new(refused),
        Box::new(folded),
        Box::new(traced),
        Box::new(build),
        Box::new(features),
    ];
    for collector in collectors {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    registry.gather()
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
        let groups = CommGroups::new(10);
        let ctx = ScrapeContext {
            daemon: &daemon,
            exited_cutoff_ns: 10,
            refused: 0,
            group_by: GroupBy::Pid,
            groups: &groups,
            features: &[
                Feature {
                    name: "rss_stat",
                    enabled: true,
                },
                Feature {
                    name: "exit_group_dead",
                    enabled: false,
                },
            ],
        };
        let text = render([&alive, &gone].into_iter(), &ctx);
        assert!(text.contains("tracer_kernel_feature_enabled{feature=\"rss_stat\"} 1"));
        assert!(text.contains("tracer_kernel_feature_enabled{feature=\"exit_group_dead\"} 0"));
        assert!(
            text.contains(r#"tracer_syscalls_total{comm="worker",pid="7",syscall="mmap"} 3"#),
            "{text}"
        );
        // Faults the kernel could not put in a granule are exported as region "other".
        alive.faults.unattributed = 10;
        alive.faults.unattributed_major = 2;
        let text = render([&alive, &gone].into_iter(), &ctx);
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

#[cfg(test)]
mod group_tests {
    use super::*;
    use tracer_common::counters::RSS_ANON;

    #[test]
    fn grouping_by_comm_sums_processes_and_keeps_forgotten_ones_in_counters() {
        let mut a = ProcessState::new(7, "worker".into(), 4096);
        a.syscalls[SyscallKind::Mmap.index()].calls = 3;
        a.rss.bytes[RSS_ANON] = 4096;
        let mut b = ProcessState::new(9, "worker".into(), 4096);
        b.syscalls[SyscallKind::Mmap.index()].calls = 4;
        b.rss.bytes[RSS_ANON] = 8192;
        b.lifecycle = Lifecycle::Exited { ts_ns: 1 };
        let mut groups = CommGroups::new(10);
        let mut gone = CounterTotals::default();
        gone.syscalls[SyscallKind::Mmap.index()] = 10;
        groups.retire(3, "worker", &gone);
        groups.join(7, "worker");
        groups.join(9, "worker");
        let daemon = DaemonCounters::default();
        let ctx = ScrapeContext {
            daemon: &daemon,
            exited_cutoff_ns: 0,
            refused: 0,
            group_by: GroupBy::Comm,
            groups: &groups,
            features: &[],
        };
        let text = render([&a, &b].into_iter(), &ctx);
        assert!(
            text.contains(r#"tracer_syscalls_total{comm="worker",syscall="mmap"} 17"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tracer_rss_bytes{comm="worker",type="anon"} 4096"#),
            "live only: {text}"
        );
        assert!(!text.contains("pid="), "{text}");
    }

    #[test]
    fn after_an_exec_a_process_counts_under_its_new_comm_only_from_then_on() {
        let mut p = ProcessState::new(7, "sh".into(), 4096);
        p.syscalls[SyscallKind::Mmap.index()].calls = 5;
        // The exec into "worker": the 5 calls stay with "sh" (retired), the offset records them.
        let mut groups = CommGroups::new(10);
        groups.join(7, "sh");
        groups.retire(7, "sh", &p.counters_under_current_comm());
        p.counted_under_earlier_comms = p.counter_totals();
        p.comm = "worker".into();
        p.syscalls[SyscallKind::Mmap.index()].calls = 7;
        groups.join(7, "worker");
        let daemon = DaemonCounters::default();
        let ctx = ScrapeContext {
            daemon: &daemon,
            exited_cutoff_ns: 0,
            refused: 0,
            group_by: GroupBy::Comm,
            groups: &groups,
            features: &[],
        };
        let text = render(std::iter::once(&p), &ctx);
        assert!(
            text.contains(r#"tracer_syscalls_total{comm="sh",syscall="mmap"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tracer_syscalls_total{comm="worker",syscall="mmap"} 2"#),
            "{text}"
        );
    }
}
