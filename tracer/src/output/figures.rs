//! The named figures of a report: what `--check` assertions and `tracer diff` thresholds refer
//! to. One table names each figure, its unit, how the tree total combines the processes, and
//! what it means (docs/ci.md's figure reference repeats it; a test keeps the two in step).

use std::collections::BTreeMap;

use crate::output::report::{EventCounts, PhaseReport, ProcessReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Count,
}

/// How the tree's value of a figure comes from its processes'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Sum,
    /// The largest of any process (peaks: processes do not all peak at once).
    Max,
}

pub struct Figure {
    pub name: &'static str,
    pub unit: Unit,
    pub over: Over,
    /// What it measures (the figure table in docs/ci.md says the same).
    #[allow(dead_code)]
    pub about: &'static str,
    get: fn(&ProcessReport) -> u64,
}

const fn figure(
    name: &'static str,
    unit: Unit,
    over: Over,
    about: &'static str,
    get: fn(&ProcessReport) -> u64,
) -> Figure {
    Figure {
        name,
        unit,
        over,
        about,
        get,
    }
}

fn calls(p: &ProcessReport, syscall: &str) -> u64 {
    p.syscalls.get(syscall).map_or(0, |s| s.calls)
}

fn failed(p: &ProcessReport, syscall: &str) -> u64 {
    p.syscalls.get(syscall).map_or(0, |s| s.failed)
}

fn region_faults(p: &ProcessReport, region: &str) -> u64 {
    p.page_faults
        .by_region
        .get(region)
        .map_or(0, |f| f.minor + f.major)
}

use Over::{Max, Sum};
use Unit::{Bytes, Count};

/// Every per-process figure.
pub const FIGURES: &[Figure] = &[
    figure(
        "peak_rss",
        Bytes,
        Max,
        "highest resident memory (file + anon + shmem)",
        |p| p.peaks.rss,
    ),
    figure(
        "peak_heap",
        Bytes,
        Max,
        "highest heap size (break minus start_brk)",
        |p| p.peaks.heap,
    ),
    figure("peak_vsz", Bytes, Max, "highest virtual size", |p| {
        p.peaks.vsz
    }),
    figure("peak_vmas", Count, Max, "highest number of VMAs", |p| {
        p.peaks.vmas
    }),
    figure(
        "heap_at_end",
        Bytes,
        Sum,
        "heap size at exit (or at the end of tracing)",
        |p| p.at_end.heap,
    ),
    figure(
        "vsz_at_end",
        Bytes,
        Sum,
        "virtual size at exit (or at the end of tracing)",
        |p| p.at_end.vsz,
    ),
    figure(
        "vmas_at_end",
        Count,
        Sum,
        "VMAs at exit (or at the end of tracing)",
        |p| p.at_end.vmas,
    ),
    figure("faults", Count, Sum, "page faults, minor and major", |p| {
        p.page_faults.total
    }),
    figure("minor_faults", Count, Sum, "minor page faults", |p| {
        p.page_faults.minor
    }),
    figure(
        "major_faults",
        Count,
        Sum,
        "major page faults (needed I/O)",
        |p| p.page_faults.major,
    ),
    figure(
        "heap_faults",
        Count,
        Sum,
        "page faults in the [heap]",
        |p| region_faults(p, "heap"),
    ),
    figure(
        "stack_faults",
        Count,
        Sum,
        "page faults in the stack",
        |p| region_faults(p, "stack"),
    ),
    figure(
        "anon_faults",
        Count,
        Sum,
        "page faults in other anonymous memory",
        |p| region_faults(p, "anon"),
    ),
    figure(
        "file_faults",
        Count,
        Sum,
        "page faults in file mappings",
        |p| region_faults(p, "file"),
    ),
    figure(
        "syscalls",
        Count,
        Sum,
        "memory syscalls made (all six)",
        |p| p.syscalls.values().map(|s| s.calls).sum(),
    ),
    figure(
        "failed_syscalls",
        Count,
        Sum,
        "memory syscalls that failed",
        |p| p.syscalls.values().map(|s| s.failed).sum(),
    ),
    figure("brk_calls", Count, Sum, "brk calls", |p| calls(p, "brk")),
    figure("brk_failed", Count, Sum, "brk calls that failed", |p| {
        failed(p, "brk")
    }),
    figure("mmap_calls", Count, Sum, "mmap calls", |p| calls(p, "mmap")),
    figure("mmap_failed", Count, Sum, "mmap calls that failed", |p| {
        failed(p, "mmap")
    }),
    figure("munmap_calls", Count, Sum, "munmap calls", |p| {
        calls(p, "munmap")
    }),
    figure(
        "munmap_failed",
        Count,
        Sum,
        "munmap calls that failed",
        |p| failed(p, "munmap"),
    ),
    figure("mremap_calls", Count, Sum, "mremap calls", |p| {
        calls(p, "mremap")
    }),
    figure(
        "mremap_failed",
        Count,
        Sum,
        "mremap calls that failed",
        |p| failed(p, "mremap"),
    ),
    figure("mprotect_calls", Count, Sum, "mprotect calls", |p| {
        calls(p, "mprotect")
    }),
    figure(
        "mprotect_failed",
        Count,
        Sum,
        "mprotect calls that failed",
        |p| failed(p, "mprotect"),
    ),
    figure(
        "madvise_calls",
        Count,
        Sum,
        "madvise calls (allocators purge with them)",
        |p| calls(p, "madvise"),
    ),
    figure(
        "madvise_failed",
        Count,
        Sum,
        "madvise calls that failed",
        |p| failed(p, "madvise"),
    ),
    figure(
        "brk_growths",
        Count,
        Sum,
        "brk calls that raised the break",
        |p| p.heap.growths,
    ),
    figure(
        "brk_shrinks",
        Count,
        Sum,
        "brk calls that lowered the break",
        |p| p.heap.shrinks,
    ),
    figure(
        "largest_brk_growth",
        Bytes,
        Max,
        "largest rise of the break in one brk call",
        |p| p.heap.largest_growth,
    ),
    figure(
        "bytes_mapped",
        Bytes,
        Sum,
        "bytes mapped by mmap and mremap growth",
        |p| p.mappings.bytes_mapped,
    ),
    figure(
        "bytes_unmapped",
        Bytes,
        Sum,
        "bytes unmapped by munmap and mremap shrinking",
        |p| p.mappings.bytes_unmapped,
    ),
    figure("largest_mmap", Bytes, Max, "largest successful mmap", |p| {
        p.mappings.largest_mmap
    }),
    figure(
        "largest_anonymous_mmap",
        Bytes,
        Max,
        "largest successful anonymous mmap",
        |p| p.mappings.largest_anonymous_mmap,
    ),
    figure(
        "large_mmaps",
        Count,
        Sum,
        "allocator-like mmaps (private anonymous read-write, not stacks) of 128 KiB or more",
        |p| large(p, |l| l.anonymous_mmaps),
    ),
    figure(
        "large_munmaps",
        Count,
        Sum,
        "munmaps of 128 KiB or more of allocator-like memory",
        |p| large(p, |l| l.munmaps),
    ),
    figure(
        "large_mmaps_not_unmapped",
        Count,
        Sum,
        "large anonymous mmaps without a munmap of the same length",
        |p| large(p, |l| l.anonymous_mmaps.saturating_sub(l.munmaps)),
    ),
    figure(
        "drift_differences",
        Count,
        Sum,
        "lines where the model differed from /proc",
        |p| p.drift.differences,
    ),
];

fn large(p: &ProcessReport, count: fn(&crate::output::report::LengthCount) -> u64) -> u64 {
    p.mappings
        .lengths
        .iter()
        .filter(|l| l.bytes >= crate::tracking::sizes::LARGE_MAPPING)
        .map(count)
        .sum()
}

/// Figures only the tree has.
pub const TREE_FIGURES: &[(&str, Unit, &str)] = &[
    ("processes", Count, "processes traced"),
    (
        "events_lost",
        Count,
        "records lost in the kernel (ring buffer full)",
    ),
    (
        "processes_refused",
        Count,
        "processes not traced: --max-processes reached",
    ),
];

/// Figures of a phase snapshot (`[process.phases.NAME]`).
pub const PHASE_FIGURES: &[(&str, Unit, &str)] = &[
    ("rss", Bytes, "resident memory when the phase was marked"),
    ("heap", Bytes, "heap size when the phase was marked"),
    ("vsz", Bytes, "virtual size when the phase was marked"),
    ("vmas", Count, "VMAs when the phase was marked"),
    (
        "faults",
        Count,
        "page faults so far when the phase was marked",
    ),
];

pub fn find(name: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|f| f.name == name)
}

/// The unit of any figure name (process, tree or phase), if it is one.
pub fn unit_of(name: &str) -> Option<Unit> {
    find(name).map(|f| f.unit).or_else(|| {
        TREE_FIGURES
            .iter()
            .chain(PHASE_FIGURES)
            .find(|(n, _, _)| *n == name)
            .map(|(_, unit, _)| *unit)
    })
}

pub fn of_process(p: &ProcessReport) -> BTreeMap<String, u64> {
    FIGURES
        .iter()
        .map(|f| (f.name.to_string(), (f.get)(p)))
        .collect()
}

pub fn of_tree(processes: &[ProcessReport], events: &EventCounts) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = FIGURES
        .iter()
        .map(|f| {
            let values = processes.iter().map(|p| (f.get)(p));
            let value = match f.over {
                Sum => values.sum(),
                Max => values.max().unwrap_or(0),
            };
            (f.name.to_string(), value)
        })
        .collect();
    out.insert("processes".into(), processes.len() as u64);
    out.insert("events_lost".into(), events.lost_total);
    out.insert("processes_refused".into(), events.processes_refused);
    out
}

pub fn of_phase(s: &PhaseReport, name: &str) -> Option<u64> {
    Some(match name {
        "rss" => s.rss,
        "heap" => s.heap,
        "vsz" => s.vsz,
        "vmas" => s.vmas,
        "faults" => s.faults,
        _ => return None,
    })
}

/// A figure's value for people: sizes also in binary units.
pub fn show(value: u64, unit: Unit) -> String {
    match unit {
        Bytes if value >= 1024 => {
            format!("{} ({value} bytes)", crate::units::human_bytes(value))
        }
        Bytes => format!("{value} bytes"),
        Count => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = FIGURES.iter().map(|f| f.name).collect();
        names.extend(TREE_FIGURES.iter().map(|f| f.0));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn the_ci_reference_documents_every_figure() {
        let readme = include_str!("../../../docs/ci.md");
        for name in FIGURES
            .iter()
            .map(|f| f.name)
            .chain(TREE_FIGURES.iter().map(|f| f.0))
            .chain(PHASE_FIGURES.iter().map(|f| f.0))
        {
            assert!(
                readme.contains(&format!("`{name}`")),
                "docs/ci.md does not document the figure `{name}`"
            );
        }
    }
}
