//! Checks before loading probes, so that a missing privilege gets a message naming it rather
//! than an EPERM from deep inside the loader.

use crate::procfs::parse_cap_eff;

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

/// The capabilities this process lacks to load the probes (None: it has them), from its own
/// effective set.
pub fn own_missing_capabilities() -> std::io::Result<Option<String>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let cap_eff = parse_cap_eff(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no CapEff line in /proc/self/status",
        )
    })?;
    Ok(missing_capabilities(cap_eff))
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

/// RLIMIT_NOFILE as the tracer found it, before `raise_nofile_limit`.
static ORIGINAL_NOFILE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises the soft descriptor limit to the hard one (often 1024 against 500000 or more): every
/// traced process costs descriptors for /proc reads, and the API holds one per connection.
pub fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit struct to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let _ = ORIGINAL_NOFILE.set(limit);
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        log::debug!(
            "could not raise RLIMIT_NOFILE: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The descriptor limit the tracer started with, for the commands it starts.
pub fn original_nofile_limit() -> Option<libc::rlimit> {
    ORIGINAL_NOFILE.get().copied()
}

/// Whether a failed `mremap(MREMAP_FIXED)` has already unmapped its destination. Before Linux
/// 6.17 the kernel unmaps the destination (and a shrinking move's source tail) first and checks
/// the source after, so a call that fails on the source has changed the address space anyway;
/// since 6.17 it checks first. Found out by trying it, in the tracer's own address space: a
/// move from a range with a hole fails on every kernel.
pub fn mremap_unmaps_before_checking() -> bool {
    const PAGE: usize = 4096;
    let anon = |pages: usize| {
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        }
    };
    let (src, dst) = (anon(4), anon(4));
    if src == libc::MAP_FAILED || dst == libc::MAP_FAILED {
        return false;
    }
    let (src, dst) = (src.cast::<u8>(), dst.cast::<u8>());
    let mut vec = [0u8; 1];
    // SAFETY: every range below is one of the two mappings made above. After the hole is
    // punched, only the pieces still ours are unmapped (another thread may map the hole).
    unsafe {
        libc::munmap(src.add(PAGE).cast(), PAGE);
        let moved = libc::mremap(
            src.cast(),
            3 * PAGE,
            4 * PAGE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst,
        );
        if moved != libc::MAP_FAILED {
            // Not expected: the source has a hole. Whatever happened, the result is at dst.
            libc::munmap(src.cast(), PAGE);
            libc::munmap(src.add(2 * PAGE).cast(), 2 * PAGE);
            libc::munmap(dst.cast(), 4 * PAGE);
            return false;
        }
        libc::munmap(src.cast(), PAGE);
        libc::munmap(src.add(2 * PAGE).cast(), 2 * PAGE);
        // mincore fails with ENOMEM on an unmapped page.
        let unmapped = libc::mincore(dst.cast(), PAGE, vec.as_mut_ptr()) != 0;
        if !unmapped {
            libc::munmap(dst.cast(), 4 * PAGE);
        }
        unmapped
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

#[cfg(test)]
mod mremap_tests {
    #[test]
    fn the_mremap_experiment_matches_the_running_kernel() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release.split(|c: char| !c.is_ascii_digit());
        let version: (u32, u32) = (
            v.next().unwrap().parse().unwrap(),
            v.next().unwrap().parse().unwrap(),
        );
        assert_eq!(
            super::mremap_unmaps_before_checking(),
            version < (6, 17),
            "{release}"
        );
    }
}

/// An environment variable meant for tests and debugging (`TRACER_BTF`, `TRACER_FAULT_SOURCE`,
/// ...), or None when this process runs with more privilege than whoever started it (a
/// file-capability or set-id binary: AT_SECURE), where the caller's environment must not
/// choose what the probes read in the kernel.
pub fn debug_env(name: &str) -> Option<std::ffi::OsString> {
    // SAFETY: getauxval has no preconditions.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    let value = std::env::var_os(name)?;
    if secure {
        log::warn!("{name} is ignored: tracer runs with privileges its caller lacks");
        return None;
    }
    Some(value)
}
