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

/// Which probe program fits this kernel's `mmap_lock:mmap_lock_acquire_returned`, and whether
/// attaching it costs every process a memory cgroup path per mmap_lock acquisition.
pub(super) fn mmap_lock_layout(format: &Format) -> Result<(&'static str, bool), String> {
    let offset = |name: &str| format.fields.get(name).map(|f| f.offset);
    let (Some(mm), Some(write), Some(success)) = (offset("mm"), offset("write"), offset("success"))
    else {
        return Err("lacks one of the fields mm, write, success".into());
    };
    // The fields follow the prototype's order, except `memcg_id` (6.14+), computed from `mm`.
    let ordered = mm < write && write < success;
    if !ordered
        || offset("ip").is_some()
        || format.fields.contains_key("memcg_id") == offset("memcg_path").is_some()
    {
        return Err("has a layout the probe does not know".into());
    }
    match offset("memcg_path") {
        // Linux 5.10 to 6.13: (mm, memcg_path, write, success); the caller computes the path
        // for every acquisition while the tracepoint is enabled.
        Some(path) if mm < path && path < write => {
            Ok(("mmap_lock_acquire_returned_memcg_path", true))
        }
        Some(_) => Err("has a layout the probe does not know".into()),
        // Linux 6.14+: (mm, write, success).
        None => Ok(("mmap_lock_acquire_returned", false)),
    }
}
