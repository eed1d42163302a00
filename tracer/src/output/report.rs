//! The JSON report (`--report PATH`): one versioned document describing every traced process
//! and the tree, for CI to keep, check (`--check`) and compare (`tracer diff`). Building it is
//! pure (from the process table); the schema is documented in docs/ci.md and versioned by
//! `schema_version`: a field's meaning never changes within a version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracer_common::counters::*;

use crate::{
    kernel::syscalls::SyscallKind, output::figures, output::summary::DaemonCounters,
    tracking::fault_regions::MetricRegion, tracking::process::ProcessState,
};

/// Bumped when a field changes meaning or disappears (adding fields does not bump it: every
/// struct reads with `#[serde(default)]`, so a report from an older tracer of the same version
/// still reads).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub schema_version: u32,
    pub tracer: TracerInfo,
    /// `run`: CMD's exit status (128+N when killed by signal N). `attach`: null.
    pub exit_status: Option<i32>,
    pub events: EventCounts,
    pub processes: Vec<ProcessReport>,
    pub totals: Totals,
}

/// Where the report comes from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TracerInfo {
    pub version: String,
    /// `run` or `attach`.
    pub mode: String,
    /// `run`: CMD and its arguments. `attach`: the tracer's own arguments.
    pub command: Vec<String>,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
}

/// Records per kind.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct KindCounts {
    pub syscall: u64,
    pub fork: u64,
    pub exec: u64,
    pub exit: u64,
}

impl KindCounts {
    fn of(counts: &[u64; tracer_common::record::RECORD_KINDS]) -> KindCounts {
        let [syscall, fork, exec, exit] = DaemonCounters::by_kind(counts).map(|(_, n)| n);
        KindCounts {
            syscall,
            fork,
            exec,
            exit,
        }
    }
}

/// What the daemon received and what it lost: a report with `lost_total > 0` is incomplete.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventCounts {
    pub records: KindCounts,
    /// Records the kernel could not put in the ring buffer (it was full).
    pub lost: KindCounts,
    pub lost_total: u64,
    pub decode_errors: u64,
    /// Syscalls already in progress when tracing started (no entry seen).
    pub exits_without_enter: u64,
    /// Syscalls whose arguments could not be stashed (in-flight map full).
    pub inflight_full: u64,
    /// Processes not traced because `--max-processes` was reached.
    pub processes_refused: u64,
    /// Records applied in the kernel's order of their process's changes rather than in the
    /// order they arrived.
    pub model_reorders: u64,
    /// Changes that could not be placed in the kernel's order (late or lost records, memory
    /// handed out where the model had some); the model resynced from /proc for each.
    pub order_conflicts: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SyscallCounts {
    pub calls: u64,
    pub failed: u64,
}

/// Successful mmaps of page-rounded length in `[min_bytes, max_bytes]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct HistogramBucket {
    pub min_bytes: u64,
    pub max_bytes: u64,
    pub anonymous: u64,
    pub file: u64,
}

/// Anonymous mmaps and munmaps (of any mapping) of exactly `bytes` (page-rounded).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LengthCount {
    pub bytes: u64,
    pub anonymous_mmaps: u64,
    pub munmaps: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mappings {
    /// Page-rounded lengths of successful mmaps (and of mremap growth).
    pub bytes_mapped: u64,
    /// Page-rounded lengths of successful munmaps (and of mremap shrinking).
    pub bytes_unmapped: u64,
    pub largest_mmap: u64,
    pub largest_anonymous_mmap: u64,
    /// Power-of-two buckets; empty buckets are left out.
    pub histogram: Vec<HistogramBucket>,
    pub lengths: Vec<LengthCount>,
    /// mmaps/munmaps of lengths beyond the first 4096 distinct ones (not in `lengths`).
    pub lengths_dropped: u64,
}

/// One change of the program break.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BrkPoint {
    /// CLOCK_MONOTONIC, nanoseconds.
    pub ts_ns: u64,
    /// The new break (hex).
    pub brk: String,
    /// Heap size after the change: break minus start_brk.
    pub size: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HeapReport {
    pub start_brk: Option<String>,
    pub brk: Option<String>,
    pub peak_brk: Option<String>,
    pub size: u64,
    pub peak_size: u64,
    pub growths: u64,
    pub shrinks: u64,
    /// The largest rise of the break in one brk call.
    pub largest_growth: u64,
    pub history: Vec<BrkPoint>,
    /// Changes beyond the first 100000 (not in `history`).
    pub history_dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Peaks {
    /// Highest resident memory (file + anon + shmem) the kernel reported.
    pub rss: u64,
    pub heap: u64,
    pub vsz: u64,
    pub vmas: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rss {
    pub resident: u64,
    pub file: u64,
    pub anon: u64,
    pub shmem: u64,
    pub swap: u64,
}

/// The figures at the end: at exit for a process that exited, else when the report was made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AtEnd {
    /// Resident memory of a process still running at the end; a process that exited has
    /// given all of it back (zeros). Use phases to check RSS at a point of the run.
    pub rss: Rss,
    pub heap: u64,
    pub vsz: u64,
    pub vmas: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionFaults {
    pub minor: u64,
    pub major: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultReport {
    pub total: u64,
    pub minor: u64,
    pub major: u64,
    /// user_read, user_write, user_exec, kernel_read, kernel_write, kernel_exec.
    pub by_access: BTreeMap<String, u64>,
    /// heap, stack, anon, file, other (per 64 KiB granule, see README).
    pub by_region: BTreeMap<String, RegionFaults>,
}

/// A phase snapshot: `{name, ts_ns, rss, heap, vsz, vmas, faults}`.
pub use crate::tracking::process::PhaseSnapshot as PhaseReport;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmaReport {
    pub start: String,
    pub end: String,
    pub size: u64,
    pub perms: String,
    pub offset: String,
    pub name: Option<String>,
    pub region: String,
    pub faults: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Drift {
    pub resyncs: u64,
    pub differences: u64,
    pub reseeds: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessReport {
    pub pid: u32,
    pub ppid: Option<u32>,
    /// The traced process that forked this one, if it was followed through a fork.
    pub traced_parent: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    /// Its cgroup v2 path (as of its last exec) and what the path names: systemd unit,
    /// container id and runtime, pod UID.
    pub cgroup: Option<String>,
    pub cgroup_identity: Option<crate::procfs::cgroup::Identity>,
    /// `running`, `exited`, or `untraced` (exec'd an excluded command).
    pub state: String,
    /// Known for the command of `tracer run` only.
    pub exit_status: Option<i32>,
    /// The process exited but its exit record was lost (ring buffer full): the daemon found
    /// it gone instead.
    pub exit_record_lost: bool,
    pub threads_created: u64,
    pub execs: u64,
    pub syscalls: BTreeMap<String, SyscallCounts>,
    pub mappings: Mappings,
    pub heap: HeapReport,
    pub peaks: Peaks,
    pub at_end: AtEnd,
    pub page_faults: FaultReport,
    pub phases: Vec<PhaseReport>,
    /// The address space at the end (at exit for a process that exited).
    pub address_space: Vec<VmaReport>,
    pub drift: Drift,
    /// The figures checks and diffs use, by name (see `figures.rs` and docs/ci.md).
    pub figures: BTreeMap<String, u64>,
}

/// Figures over the whole traced tree.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub figures: BTreeMap<String, u64>,
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

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
    let totals = crate::views::metrics::Totals::of(p);
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
            resyncs: p.resyncs,
            differences: p.drift_differences,
            reseeds: p.reseeds,
        },
        figures: BTreeMap::new(),
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

/// Reads a report written by this or an earlier tracer with the same schema version.
pub fn parse(text: &str) -> Result<Report, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "schema_version {v} is not supported (this tracer reads {SCHEMA_VERSION})"
            ));
        }
        None => return Err("no schema_version: not a tracer report".to_string()),
    }
    serde_json::from_value(value).map_err(|e| format!("not a tracer report: {e}"))
}

/// Writes the report to `path` (`-` is stdout) the way every output file is written: never
/// through a symlink, FIFO or device, replaced atomically (see `outfile`).
pub fn write(
    report: &Report,
    path: &std::path::Path,
) -> Result<(), crate::output::outfile::OutputError> {
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)? + "\n";
    crate::output::outfile::write(path, text.as_bytes())
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
        let mut table = crate::tracking::process::ProcessTable::new(4096);
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
        let mut table = crate::tracking::process::ProcessTable::new(4096);
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
        let mut table = crate::tracking::process::ProcessTable::new(4096);
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
