//! Taking a program out of the loaded object and attaching it, whatever its type: the one
//! place that turns aya's errors into a `ProbeError` naming the program, and puts the links
//! into `detach::Links` (detached together, in parallel: detach.rs).

use aya::{
    Ebpf,
    programs::{
        PerfEvent, Program, ProgramError, RawTracePoint, TracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};

use super::{detach, options::ProbeError};

/// The kernel's refusal of program `name` (at load, or when a link is taken).
pub(super) fn program_error(name: &str, source: ProgramError) -> ProbeError {
    ProbeError::Program {
        program: name.to_owned(),
        source: Box::new(source),
    }
}

/// Program `name` of the object as a `P` (tracepoint, raw tracepoint, perf event), loaded into
/// the kernel with `load` (e.g. `TracePoint::load`).
pub(super) fn loaded<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &str,
    load: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<&'a mut P, ProbeError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program: &'a mut P = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::MissingProgram(name.to_owned()))?
        .try_into()
        .map_err(|source| program_error(name, source))?;
    load(program).map_err(|source| program_error(name, source))?;
    Ok(program)
}

/// The kernel's refusal to attach program `name` to `target` (e.g. "tracepoint syscalls:x").
pub(super) fn attach_error(name: &str, target: String, source: ProgramError) -> ProbeError {
    ProbeError::Attach {
        program: name.to_owned(),
        target,
        source: Box::new(source),
    }
}

/// Loads the tracepoint program `name` and attaches it to the tracepoint `group:event`.
pub(super) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &str,
    (group, event): (&str, &str),
    links: &mut detach::Links,
) -> Result<(), ProbeError> {
    let program: &mut TracePoint = loaded(ebpf, name, TracePoint::load)?;
    let id = program
        .attach(group, event)
        .map_err(|e| attach_error(name, format!("tracepoint {group}:{event}"), e))?;
    links.push(program.take_link(id).map_err(|e| program_error(name, e))?);
    Ok(())
}

/// Loads the raw-tracepoint program `name` and attaches it to the raw tracepoint `target`.
pub(super) fn attach_raw(
    ebpf: &mut Ebpf,
    name: &str,
    target: &str,
    links: &mut detach::Links,
) -> Result<(), ProbeError> {
    let program: &mut RawTracePoint = loaded(ebpf, name, RawTracePoint::load)?;
    let id = program
        .attach(target)
        .map_err(|e| attach_error(name, format!("raw tracepoint {target}"), e))?;
    links.push(program.take_link(id).map_err(|e| program_error(name, e))?);
    Ok(())
}

/// Loads the perf-event program `name` and attaches it to each of the software `events`
/// (with their names, for errors) on every online CPU, period 1: every such event of the
/// machine runs it (the program filters). Returns the number of perf events opened.
pub(super) fn attach_every_cpu(
    ebpf: &mut Ebpf,
    name: &str,
    events: &[(SoftwareEvent, &str)],
    links: &mut detach::Links,
) -> Result<usize, ProbeError> {
    let program: &mut PerfEvent = loaded(ebpf, name, PerfEvent::load)?;
    let cpus = aya::util::online_cpus().map_err(|(_, err)| ProbeError::Cpus(err))?;
    for &(event, event_name) in events {
        for &cpu in &cpus {
            let id = program
                .attach(
                    PerfEventConfig::Software(event),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(1),
                    false,
                )
                .map_err(|e| {
                    attach_error(
                        name,
                        format!("perf software event {event_name} on CPU {cpu}"),
                        e,
                    )
                })?;
            links.push(program.take_link(id).map_err(|e| program_error(name, e))?);
        }
    }
    Ok(events.len() * cpus.len())
}
