//! Builds the report (`output::report`) from the process table and the daemon's counters,
//! with the named figures of every process and of the tree (`output::figures`). Pure: no I/O
//! but the kernel release it names.

use std::collections::BTreeMap;

use tracer_common::counters::*;

use crate::{
    kernel::syscalls::SyscallKind, output::figures, output::report::*,
    output::summary::DaemonCounters, tracking::fault_regions::MetricRegion,
    tracking::process::ProcessState, units::hex,
};

/// Everything about the session the report needs beside the process table.
pub struct Context<'a> {
    pub mode: &'a str,
    pub command: Vec<String>,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub exit_status: Option<i32>,
    pub counters: &'a DaemonCounters,
}

/// Builds the report; processes in pid order.
pub fn build<'a>(processes: impl Iterator<Item = &'a ProcessState>, ctx: &Context) -> Report {
    let mut processes: Vec<ProcessReport> = processes.map(process).collect();
    processes.sort_by_key(|p| p.pid);
    let d = ctx.counters;
    let events = EventCounts {
        records: KindCounts::of(&d.records),
        lost: KindCounts::of(&d.lost),
        lost_total: d.lost_total(),
        decode_errors: d.decode_errors,
        exits_without_enter: d.exits_without_enter,
        inflight_full: d.inflight_full,
        processes_refused: d.traced_full + d.refused,
        model_reorders: d.model_reorders,
        order_conflicts: d.order_conflicts,
    };
    let totals = Totals {
        figures: figures::of_tree(&processes, &events),
    };
    Report {
        schema_version: SCHEMA_VERSION,
        tracer: TracerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mode: ctx.mode.to_string(),
            command: ctx.command.clone(),
            kernel: kernel_release(),
            started_unix_ms: ctx.started_unix_ms,
            duration_ms: ctx.duration_ms,
        },
        exit_status: ctx.exit_status,
        events,
        processes,
        totals,
        // Filled in by the stacks collector when it runs (`stacks::report`).
        call_sites: CallSitesInfo {
            enabled: false,
            reason: Some("call sites are off: run the tracer with --stacks".to_string()),
            limit: REPORT_SITES as u32,
            ..Default::default()
        },
    }
}

/// One process's part of the report.
pub fn process(p: &ProcessState) -> ProcessReport {
    let syscalls = SyscallKind::ALL
        .iter()
        .map(|&kind| {
            let s = p.stats(kind);
            let counts = SyscallCounts {
                calls: s.calls,
                failed: s.failed,
            };
            (kind.name().to_string(), counts)
        })
        .collect();
    let sizes = &p.mmap_sizes;
    let histogram = sizes
        .histogram
        .iter()
        .enumerate()
        .filter(|(_, b)| b.anonymous + b.file > 0)
        .map(|(k, b)| HistogramBucket {
            min_bytes: 1 << k,
            max_bytes: if k == 63 { u64::MAX } else { (2u64 << k) - 1 },
            anonymous: b.anonymous,
            file: b.file,
        })
        .collect();
    let lengths = sizes
        .lengths
        .iter()
        .map(|(&bytes, t)| LengthCount {
            bytes,
            anonymous_mmaps: t.anonymous_mmaps,
            munmaps: t.munmaps,
        })
        .collect();
    let history = p
        .brk_history
        .iter()
        .map(|c| BrkPoint {
            ts_ns: c.ts_ns,
            brk: hex(c.brk),
            size: c.size,
        })
        .collect();
    let heap_size = p.heap_size().unwrap_or(0);
    let peak_heap = p.heap_peak().unwrap_or(0);
    let rss = p.rss_now();
    let by_access = [
        ("user_read", ACCESS_USER_READ),
        ("user_write", ACCESS_USER_WRITE),
        ("user_exec", ACCESS_USER_EXEC),
        ("kernel_read", ACCESS_KERNEL_READ),
        ("kernel_write", ACCESS_KERNEL_WRITE),
        ("kernel_exec", ACCESS_KERNEL_EXEC),
    ]
    .into_iter()
    .map(|(name, i)| (name.to_string(), p.faults.by_access[i]))
    .collect();
    let totals = p.counter_totals();
    let by_region = MetricRegion::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let faults = RegionFaults {
                minor: totals.faults_minor[i],
                major: totals.faults_major[i],
            };
            (r.name().to_string(), faults)
        })
        .collect();
    let address_space = p
        .vma_rows()
        .into_iter()
        .map(|row| VmaReport {
            start: hex(row.vma.start),
            end: hex(row.vma.end),
            size: row.vma.len(),
            perms: row.vma.perms.to_string(),
            offset: hex(row.vma.offset),
            name: Some(row.name).filter(|n| !n.is_empty()),
            region: row.region.name().to_string(),
            faults: row.faults,
        })
        .collect();
    let phases = p.phases.clone();
    let total = p.faults.total();
    let mut report = ProcessReport {
        pid: p.tgid,
        ppid: p.ppid,
        traced_parent: p.parent,
        comm: p.comm.clone(),
        cgroup: p.cgroup.clone(),
        cgroup_identity: p
            .cgroup
            .as_deref()
            .map(crate::procfs::cgroup::Identity::parse),
        exe: p.exe.clone(),
        argv: p.argv.clone(),
        state: p.state_name().to_string(),
        exit_status: p.exit_status,
        exit_record_lost: p.exit_record_lost,
        threads_created: p.threads_created,
        execs: p.execs,
        syscalls,
        mappings: Mappings {
            bytes_mapped: p.bytes_mapped,
            bytes_unmapped: p.bytes_unmapped,
            largest_mmap: sizes.largest,
            largest_anonymous_mmap: sizes.largest_anonymous,
            histogram,
            lengths,
            lengths_dropped: sizes.lengths_dropped,
        },
        heap: HeapReport {
            start_brk: p.heap.start.map(hex),
            brk: p.heap.end.map(hex),
            peak_brk: p.heap.peak.map(hex),
            size: heap_size,
            peak_size: peak_heap,
            growths: p.heap.growths,
            shrinks: p.heap.shrinks,
            largest_growth: p.heap.largest_growth,
            history,
            history_dropped: p.brk_history_dropped,
        },
        peaks: Peaks {
            rss: p.rss_peak(),
            heap: peak_heap,
            vsz: p.peak_vsz,
            vmas: p.peak_vmas as u64,
        },
        at_end: AtEnd {
            rss: Rss {
                resident: p.resident(),
                file: rss[RSS_FILE],
                anon: rss[RSS_ANON],
                shmem: rss[RSS_SHMEM],
                swap: rss[RSS_SWAP],
            },
            heap: heap_size,
            vsz: p.space.virtual_size(),
            vmas: p.space.vma_count() as u64,
        },
        page_faults: FaultReport {
            total,
            minor: total.saturating_sub(p.faults.major),
            major: p.faults.major,
            by_access,
            by_region,
        },
        phases,
        address_space,
        drift: Drift {
            resyncs: p.drift.resyncs,
            differences: p.drift.differences,
            reseeds: p.seed.retaken,
        },
        figures: BTreeMap::new(),
        call_sites: Vec::new(),
        call_sites_omitted: 0,
    };
    report.figures = figures::of_process(&report);
    report
}

/// The running kernel's release, as `uname -r` prints it.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::{Event, SyscallEvent};

    fn syscall(kind: SyscallKind, args: [u64; 6], ret: i64) -> Event {
        Event::Syscall(SyscallEvent {
            ts_ns: 10,
            enter_ns: 5,
            tgid: 7,
            tid: 7,
            kind,
            args,
            ret,
            seq: 0,
        })
    }

    #[test]
    fn report_round_trips_and_carries_its_figures() {
        let mut table = crate::tracking::table::ProcessTable::new(4096);
        table.add(7, "demo".into());
        let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        table.apply(&syscall(SyscallKind::Brk, [0; 6], 0x10000));
        table.apply(&syscall(
            SyscallKind::Brk,
            [0x31000, 0, 0, 0, 0, 0],
            0x31000,
        ));
        table.apply(&syscall(
            SyscallKind::Mmap,
            [0, 204_800, 3, anon, u64::MAX, 0],
            0x7f00_0000_0000,
        ));
        table.apply(&syscall(
            SyscallKind::Munmap,
            [0x7f00_0000_0000, 204_800, 0, 0, 0, 0],
            0,
        ));
        table.apply(&syscall(SyscallKind::Mmap, [0, 4096, 3, anon, 0, 0], -12));
        let counters = DaemonCounters::default();
        let ctx = Context {
            mode: "run",
            command: vec!["demo".into()],
            started_unix_ms: 1,
            duration_ms: 2,
            exit_status: Some(0),
            counters: &counters,
        };
        let report = build(table.iter(), &ctx);
        let text = serde_json::to_string(&report).unwrap();
        let back = parse(&text).unwrap();
        let p = &back.processes[0];
        assert_eq!(p.heap.growths, 1);
        assert_eq!(p.heap.history[0].size, 0x21000);
        assert_eq!(p.figures["peak_heap"], 0x21000);
        assert_eq!(p.figures["large_mmaps"], 1);
        assert_eq!(p.figures["large_munmaps"], 1);
        assert_eq!(p.figures["large_mmaps_not_unmapped"], 0);
        assert_eq!(p.figures["mmap_failed"], 1);
        assert_eq!(p.mappings.histogram[0].min_bytes, 128 * 1024);
        assert_eq!(back.totals.figures["processes"], 1);
        assert_eq!(back.totals.figures["mmap_calls"], 2);
    }

    #[test]
    fn a_forked_child_has_its_parents_image_but_not_its_counts() {
        let mut table = crate::tracking::table::ProcessTable::new(4096);
        table.add(7, "demo".into()).argv = vec!["demo".into(), "-x".into()];
        table.apply(&syscall(SyscallKind::Brk, [0; 6], 0x10000));
        table.apply(&syscall(
            SyscallKind::Brk,
            [0x31000, 0, 0, 0, 0, 0],
            0x31000,
        ));
        table.add_child(7, 8);
        let child = process(table.get(8).unwrap());
        assert_eq!(child.argv, ["demo", "-x"]);
        assert_eq!(child.ppid, Some(7));
        assert_eq!(child.heap.size, 0x21000);
        assert_eq!((child.heap.growths, child.heap.largest_growth), (0, 0));
        assert_eq!(child.figures["brk_calls"], 0);
    }

    #[test]
    fn thread_stacks_and_reservations_are_not_allocations() {
        let mut table = crate::tracking::table::ProcessTable::new(4096);
        table.add(7, "demo".into());
        let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let stack = anon | libc::MAP_STACK as u64;
        // A thread stack (rw, MAP_STACK) and an arena reservation (PROT_NONE).
        table.apply(&syscall(
            SyscallKind::Mmap,
            [0, 8 << 20, 3, stack, 0, 0],
            0x1000_0000,
        ));
        table.apply(&syscall(
            SyscallKind::Mmap,
            [0, 64 << 20, 0, anon, 0, 0],
            0x4000_0000,
        ));
        table.apply(&syscall(
            SyscallKind::Munmap,
            [0x4000_0000, 32 << 20, 0, 0, 0, 0],
            0,
        ));
        let p = process(table.get(7).unwrap());
        assert_eq!(p.figures["large_mmaps"], 0, "{:?}", p.mappings.lengths);
        assert_eq!(p.figures["large_munmaps"], 0);
        assert_eq!(p.figures["largest_anonymous_mmap"], 64 << 20);
    }

    #[test]
    fn a_minimal_report_of_the_same_version_reads() {
        // A report from an older tracer lacks fields added since: they read as defaults.
        let r = parse(r#"{"schema_version": 1, "processes": [{"pid": 3, "comm": "a"}]}"#).unwrap();
        assert_eq!(r.processes[0].pid, 3);
        assert!(r.processes[0].figures.is_empty());
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let err = parse(r#"{"schema_version": 99}"#).unwrap_err();
        assert!(err.contains("schema_version 99"), "{err}");
        assert!(parse("[1]").unwrap_err().contains("not a tracer report"));
        assert!(parse("{").unwrap_err().contains("not JSON"));
    }
}
