//! Attaching the syscall kprobes (feature `syscall_kprobes`, syscall_source.rs): the return
//! programs of tracer-ebpf/src/probes/kprobes.rs on the six traced syscalls' kernel functions,
//! then the entry program on those and on the lifecycle ones.

use std::path::Path;

use aya::{Ebpf, programs::KProbe};

use super::{
    detach, kretprobe,
    options::ProbeError,
    programs::{attach_error, loaded, program_error},
    syscall_source::{KPROBE_ENTRY, KPROBE_FUNCTIONS, kernel_function},
};

/// Attaches every syscall kprobe into `links` (the caller drops them all if one fails, so it is
/// all or none); the kretprobes as events of `tracefs` with a `maxactive` of ours
/// (kretprobe.rs), or not at all (a tracer without write access to `kprobe_events`, e.g. the
/// unprivileged unit, falls back to the tracepoints). Returns what was attached, for the start-up notice.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    links: &mut detach::Links,
) -> Result<Vec<String>, ProbeError> {
    let mut names = Vec::new();
    kretprobe::remove_stale(tracefs);
    // Returns first, so that no call whose entry was stashed misses its return program.
    for (syscall, ret) in KPROBE_FUNCTIONS {
        let (Some(function), Some(program)) = (kernel_function(syscall), ret) else {
            continue;
        };
        let kprobe: &mut KProbe = loaded(ebpf, program, KProbe::load)?;
        // Without our `maxactive` the kernel's default (a few calls in flight) would lose the
        // records of concurrent calls: the syscall tracepoints, exact, are the better choice.
        let probe = kretprobe::attach(tracefs, kprobe, &function, syscall).map_err(|err| {
            ProbeError::MissingFeature {
                feature: format!("kretprobes with maxactive {}", kretprobe::MAXACTIVE),
                need: format!(
                    "{}/kprobe_events refused r{}:...{function} ({err}); the kernel's default \
                     maxactive would lose the records of concurrent calls",
                    tracefs.display(),
                    kretprobe::MAXACTIVE
                ),
            }
        })?;
        links.push(probe);
        names.push(format!("kretprobe:{function}"));
    }
    let entry: &mut KProbe = loaded(ebpf, KPROBE_ENTRY, KProbe::load)?;
    for (syscall, _) in KPROBE_FUNCTIONS {
        let Some(function) = kernel_function(syscall) else {
            continue;
        };
        attach_one(entry, KPROBE_ENTRY, &function, links)?;
        names.push(format!("kprobe:{function}"));
    }
    Ok(names)
}

/// Attaches the loaded `program` (named `name`) to the entry or return of `function`.
fn attach_one(
    program: &mut KProbe,
    name: &str,
    function: &str,
    links: &mut detach::Links,
) -> Result<(), ProbeError> {
    let id = program
        .attach(function, 0)
        .map_err(|e| attach_error(name, format!("kprobe {function}"), e))?;
    links.push(program.take_link(id).map_err(|e| program_error(name, e))?);
    Ok(())
}
