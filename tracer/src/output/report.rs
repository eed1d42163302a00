//! The JSON report (`--report PATH`): one versioned document describing every traced process
//! and the tree, for CI to keep, check (`--check`) and compare (`tracer diff`). Building it from the
//! process table is `report_build`; the schema is documented in docs/ci.md and versioned by
//! `schema_version`: a field's meaning never changes within a version.

use std::collections::BTreeMap;

use crate::output::summary::DaemonCounters;
use serde::{Deserialize, Serialize};

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
    /// Whether call sites were collected (`--stacks`), and how (docs/callsites.md).
    pub call_sites: CallSitesInfo,
}

/// Most call sites listed per process in the report (the largest by `alloc_space`, then
/// `inuse_space`, then `faults`); the rest are counted in `call_sites_omitted`.
pub const REPORT_SITES: usize = 20;

/// Call-site collection of the session. `enabled: false` (stacks off, or a report of an older
/// tracer) comes with the `reason`, and every process's `call_sites` is empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CallSitesInfo {
    pub enabled: bool,
    pub reason: Option<String>,
    /// Most sites listed per process (`--report-sites`, `REPORT_SITES` by default).
    pub limit: u32,
    /// Syscall and fault samples taken, and growing calls counted under `[no stack]`.
    pub samples: u64,
    pub fault_samples: u64,
    pub without_stack: u64,
}

/// One call site of a process: the stacks whose first frame outside the C library, the loader
/// and the allocators is `site`, summed (see docs/callsites.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CallSiteReport {
    /// The function (or `[file+0xoffset]`, `[no stack]`) that grew the memory.
    pub site: String,
    /// The heaviest of its stacks (by `alloc_space`, then `faults`), symbolized, leaf first.
    pub stack: Vec<String>,
    /// How many distinct stacks were summed.
    pub stacks: u64,
    pub alloc_space: u64,
    pub alloc_objects: u64,
    pub inuse_space: u64,
    pub inuse_objects: u64,
    pub faults: u64,
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
    pub fn of(counts: &[u64; tracer_common::record::RECORD_KINDS]) -> KindCounts {
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
    /// Syscalls whose entry and exit could not be paired: in progress when tracing started (no
    /// entry seen), or an entry whose kretprobe return was missed (syscall_kprobes).
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
    /// The top call sites (`--stacks`), at most `CallSitesInfo::limit`, largest first.
    pub call_sites: Vec<CallSiteReport>,
    /// Sites beyond those listed.
    pub call_sites_omitted: u64,
}

/// Figures over the whole traced tree.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub figures: BTreeMap<String, u64>,
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
