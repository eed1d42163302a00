//! Checks before loading probes, so that a missing privilege gets a message naming it rather
//! than an EPERM from deep inside the loader.

use crate::{exit::TracerError, procfs::parse_cap_eff};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Names the capabilities missing from an effective set, or None if probes can load:
/// CAP_BPF + CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN which implies both.
pub fn missing_capabilities(cap_eff: u64) -> Option<String> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(" and "))
    }
}

/// Fails with `MissingCapability` when this process cannot load the probes.
pub fn check_capabilities() -> Result<(), TracerError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| TracerError::Io(format!("cannot read /proc/self/status: {e}")))?;
    let cap_eff = parse_cap_eff(&status)
        .ok_or_else(|| TracerError::Io("no CapEff line in /proc/self/status".into()))?;
    match missing_capabilities(cap_eff) {
        Some(missing) => Err(TracerError::MissingCapability { missing }),
        None => Ok(()),
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it (harmless on newer ones).
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not lift RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert_eq!(
            missing_capabilities(0),
            Some("CAP_BPF and CAP_PERFMON".into())
        );
        assert_eq!(
            missing_capabilities(1 << CAP_BPF),
            Some("CAP_PERFMON".into())
        );
        assert_eq!(
            missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)),
            None
        );
        assert_eq!(missing_capabilities(1 << CAP_SYS_ADMIN), None);
    }
}
