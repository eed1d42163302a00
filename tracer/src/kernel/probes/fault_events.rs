//! Where page faults are counted: on `exceptions:page_fault_{user,kernel}` where the kernel has
//! them (x86), else on the `page-faults-min` and `page-faults-maj` perf software events of every
//! CPU (arm64 and every other architecture), raised where the kernel counts `minflt` and
//! `majflt`. Both give the faulting address and feed the same per-region counters; only the
//! perf source lacks the read/write/exec split (the sample carries no error code), so there
//! every fault counts as a read. The feature `fault_tracepoints` of
//! `tracer_kernel_feature_enabled` says which source is in use.

use aya::{Ebpf, programs::perf_event::SoftwareEvent};

use super::programs::attach_every_cpu;
use super::{detach, options::ProbeError};
use crate::kernel::tracefs::Tracefs;

/// The `feature` label: 1 when faults come from the x86 tracepoints, 0 from perf events.
pub const FAULT_TRACEPOINTS: &str = "fault_tracepoints";

/// `TRACER_FAULT_SOURCE=perf` counts faults on perf events even where the tracepoints exist,
/// so that the x86 test suite covers the path arm64 takes.
pub const FAULT_SOURCE_ENV: &str = "TRACER_FAULT_SOURCE";

/// The probe attached to the perf events (`tracer-ebpf/src/probes/fault_events.rs`).
const PROGRAM: &str = "page_fault_event";

/// Why faults must come from perf events on this kernel, or None when the tracepoints serve.
pub fn perf_events_reason(tracefs: &Tracefs) -> Option<String> {
    perf_reason(
        crate::kernel::preflight::debug_env(FAULT_SOURCE_ENV).as_deref(),
        |name| tracefs.has("exceptions", name),
    )
}

fn perf_reason(forced: Option<&std::ffi::OsStr>, has: impl Fn(&str) -> bool) -> Option<String> {
    if forced.is_some_and(|v| v == "perf") {
        return Some(format!("{FAULT_SOURCE_ENV}=perf"));
    }
    let missing: Vec<String> = ["page_fault_user", "page_fault_kernel"]
        .into_iter()
        .filter(|name| !has(name))
        .map(|name| format!("exceptions:{name}"))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "{} missing (the tracepoints exist only on x86)",
        missing.join(", ")
    ))
}

/// The `-v` line that says how faults are counted without the tracepoints.
pub fn detail(reason: &str) -> String {
    format!(
        "kernel feature {FAULT_TRACEPOINTS} is off: {reason}; page faults are counted on the \
         perf software events page-faults-min and page-faults-maj of every CPU, without the \
         read/write/exec split (every fault counts as a read)"
    )
}

/// The page-fault software events: every minor and major fault (of any process; the
/// programs filter).
pub const PAGE_FAULT_EVENTS: [(SoftwareEvent, &str); 2] = [
    (SoftwareEvent::PageFaultsMin, "page-faults-min"),
    (SoftwareEvent::PageFaultsMaj, "page-faults-maj"),
];

/// Counts all faults on the `page-faults-min` and `page-faults-maj` software events of every
/// online CPU (period 1: the totals must be exact). Returns the number of perf events opened.
pub fn attach(ebpf: &mut Ebpf, links: &mut detach::Links) -> Result<usize, ProbeError> {
    attach_every_cpu(ebpf, PROGRAM, &PAGE_FAULT_EVENTS, links)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn the_tracepoints_serve_where_both_exist_unless_perf_is_forced() {
        assert_eq!(perf_reason(None, |_| true), None);
        assert_eq!(perf_reason(Some(OsStr::new("tracepoints")), |_| true), None);
        let forced = perf_reason(Some(OsStr::new("perf")), |_| true).unwrap();
        assert!(forced.contains("TRACER_FAULT_SOURCE=perf"), "{forced}");
    }

    #[test]
    fn a_missing_fault_tracepoint_selects_the_perf_events_and_is_named() {
        let arm64 = perf_reason(None, |_| false).unwrap();
        assert!(
            arm64.contains("exceptions:page_fault_user, exceptions:page_fault_kernel"),
            "{arm64}"
        );
        let one = perf_reason(None, |name| name == "page_fault_user").unwrap();
        assert!(
            one.starts_with("exceptions:page_fault_kernel missing"),
            "{one}"
        );
        assert!(detail(&one).contains("without the read/write/exec split"));
    }
}
