//! The kernel side of `--stacks`: the stack programs' settings, attaching them, their ring
//! buffer, and decoding their samples.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
};
use tracer_common::stack::{STACK_FAULT, STACK_SYSCALL, StackSample};

use super::detach;
use super::fault_events::PAGE_FAULT_EVENTS;
use super::options::{ProbeError, StackSettings};
use super::programs::{attach_every_cpu, attach_raw, attach_tracepoint};

/// Whether the kernel has the helpers the stack programs call: `bpf_get_current_task_btf`
/// (Linux 5.11) and `bpf_task_pt_regs` (5.15), which give the user registers of a syscall.
/// Asked before anything is loaded: a kernel without them would answer with a verifier dump
/// ("invalid func unknown#158" on 5.10). A probe that cannot tell counts as supported (the
/// load then says what is wrong).
pub fn check_kernel() -> Result<(), ProbeError> {
    use aya::{programs::ProgramType, sys::BpfHelper};
    let helpers = [
        (
            BpfHelper::BPF_FUNC_get_current_task_btf,
            "bpf_get_current_task_btf",
        ),
        (BpfHelper::BPF_FUNC_task_pt_regs, "bpf_task_pt_regs"),
    ];
    let missing: Vec<&str> = helpers
        .into_iter()
        .filter(|(helper, _)| {
            matches!(
                aya::sys::is_helper_supported(ProgramType::TracePoint, *helper),
                Ok(false)
            )
        })
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let plural = if missing.len() > 1 { "s" } else { "" };
    Err(ProbeError::MissingFeature {
        feature: format!(
            "the BPF helper{plural} {} (Linux 5.15+)",
            missing.join(" and ")
        ),
        need: "call sites (--stacks, --pprof, --folded) read the user registers of a syscall \
               through them; trace without those options on this kernel"
            .into(),
    })
}

/// Before the object is loaded: the settings and the ring buffer's size.
pub fn configure<'a>(loader: &mut EbpfLoader<'a>, settings: &'a StackSettings) {
    loader
        .override_global("STACK_CONFIG", &settings.config, true)
        .map_max_entries("STACK_EVENTS", settings.ring_bytes);
}

/// (program, tracepoint group, tracepoint) of the syscall samples.
const SYSCALL_PROGRAMS: [(&str, &str, &str); 3] = [
    ("stack_enter_brk", "syscalls", "sys_enter_brk"),
    ("stack_enter_mmap", "syscalls", "sys_enter_mmap"),
    ("stack_enter_mremap", "syscalls", "sys_enter_mremap"),
];

/// Attaches the stack programs (the fault sampler only with a period) into `links` and takes
/// their ring buffer. Returns the tracepoints (and perf events) attached too. The fault
/// sampler runs where the faults are counted: on `exceptions:page_fault_user`, else
/// (`perf_faults`: arm64, or `TRACER_FAULT_SOURCE=perf`) on the page-fault perf events
/// (fault_events.rs).
pub fn attach(
    ebpf: &mut Ebpf,
    settings: &StackSettings,
    perf_faults: bool,
    links: &mut detach::Links,
) -> Result<(RingBuf<MapData>, Vec<String>), ProbeError> {
    let mut attached = Vec::new();
    for (name, group, event) in SYSCALL_PROGRAMS {
        attach_tracepoint(ebpf, name, (group, event), links)?;
        attached.push(format!("{group}:{event} (stacks)"));
    }
    if settings.config.fault_period > 0 && perf_faults {
        // The program takes one user fault in `fault_period` itself, of traced processes
        // only, as on the tracepoint.
        attach_every_cpu(ebpf, "stack_fault_event", &PAGE_FAULT_EVENTS, links)?;
        attached.push("perf page-faults-min, page-faults-maj (stacks)".into());
    } else if settings.config.fault_period > 0 {
        attach_raw(ebpf, "stack_page_fault", "page_fault_user", links)?;
        attached.push("exceptions:page_fault_user (stacks)".into());
    }
    let ring = ebpf
        .take_map("STACK_EVENTS")
        .ok_or(ProbeError::MissingMap("STACK_EVENTS"))?;
    let ring = RingBuf::try_from(ring).map_err(|source| ProbeError::Map {
        name: "STACK_EVENTS",
        source: Box::new(source),
    })?;
    Ok((ring, attached))
}

/// A decoded sample: the fixed part and the stack bytes that follow it.
pub struct Decoded<'a> {
    pub sample: StackSample,
    pub fault: bool,
    pub stack: &'a [u8],
}

/// Decodes a sample, checking every length (the bytes come from the kernel, but a wrong
/// length must not crash the daemon).
pub fn decode(bytes: &[u8]) -> Option<Decoded<'_>> {
    let fixed = size_of::<StackSample>();
    if bytes.len() < fixed {
        return None;
    }
    // SAFETY: `fixed` bytes are there; StackSample is plain integers (any bit pattern is
    // valid) and read unaligned.
    let sample: StackSample = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let fault = match sample.header.kind {
        STACK_SYSCALL => false,
        STACK_FAULT => true,
        _ => return None,
    };
    let stack = bytes.get(fixed..fixed.checked_add(sample.stack_len as usize)?)?;
    Some(Decoded {
        sample,
        fault,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_lying_samples_are_refused() {
        let mut s = StackSample::default();
        s.header.kind = STACK_SYSCALL;
        s.stack_len = 16;
        // SAFETY: viewing a plain-integer struct as bytes.
        let head: &[u8] =
            unsafe { std::slice::from_raw_parts((&raw const s).cast(), size_of::<StackSample>()) };
        let mut bytes = head.to_vec();
        assert!(decode(&bytes).is_none(), "the stack bytes are missing");
        bytes.extend_from_slice(&[7; 16]);
        assert_eq!(decode(&bytes).unwrap().stack, &[7; 16]);
        assert!(decode(&bytes[..10]).is_none());
        bytes[0] = 9;
        assert!(decode(&bytes).is_none(), "unknown kind");
    }
}
