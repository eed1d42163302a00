//! Taking a program out of the loaded object, whatever its type: the one place that turns
//! aya's errors into a `ProbeError` naming the program.

use aya::{
    Ebpf,
    programs::{Program, ProgramError},
};

use super::options::ProbeError;

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
