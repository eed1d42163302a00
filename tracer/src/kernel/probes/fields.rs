//! Tracepoint fields as the probes need them: found in the tracefs `format` file, at the size
//! the probe reads, or a `ProbeError` that names the field and the file.

use super::options::ProbeError;
use crate::kernel::tracefs::{Format, Tracefs, TracefsError};

/// The offset of `group:name.field`, which must be `size` bytes.
pub(super) fn field(
    tracefs: &Tracefs,
    group: &str,
    name: &str,
    field: &str,
    size: u16,
) -> Result<u16, ProbeError> {
    let format = tracefs.format(group, name)?;
    let f = lookup(tracefs, &format, group, name, field)?;
    expect_size(&format!("{group}:{name}.{field}"), f.size, size)?;
    Ok(f.offset)
}

pub(super) fn lookup<'f>(
    tracefs: &Tracefs,
    format: &'f Format,
    group: &str,
    name: &str,
    field: &str,
) -> Result<&'f crate::kernel::tracefs::Field, ProbeError> {
    format.fields.get(field).ok_or_else(|| {
        ProbeError::Tracefs(TracefsError::MissingField {
            group: group.into(),
            name: name.into(),
            field: field.into(),
            path: tracefs
                .root()
                .join("events")
                .join(group)
                .join(name)
                .join("format"),
        })
    })
}

pub(super) fn expect_size(what: &str, size: u16, expected: u16) -> Result<(), ProbeError> {
    if size == expected {
        Ok(())
    } else {
        Err(ProbeError::FieldSize {
            what: what.into(),
            size,
            expected,
        })
    }
}
