//! The kernel's own rule for reading another process's memory layout, applied to a Unix-socket
//! peer (`SO_PEERCRED`): `ptrace_may_access(PTRACE_MODE_READ_FSCREDS)`, the check behind
//! `/proc/PID/maps`. The peer may read a process when its uid equals the target's real,
//! effective and saved uids, its gid the target's real, effective and saved gids, and the
//! target is dumpable; or when it holds CAP_SYS_PTRACE in the tracer's user namespace.

use std::os::unix::fs::MetadataExt;

const CAP_SYS_PTRACE: u32 = 19;

/// The `Uid:` or `Gid:` line of a `/proc/PID/status` text: real, effective, saved, fs.
fn ids(status: &str, key: &str) -> Option<[u32; 4]> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let mut out = [0u32; 4];
    let mut fields = line.split_whitespace();
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(out)
}

/// Whether a `CapEff:` line (hex) holds `cap`.
fn has_cap(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Whether the peer holds CAP_SYS_PTRACE in the tracer's own user namespace (root normally
/// does), which lets it read any process's layout. `CapEff` in `/proc/PID/status` is the set
/// in the peer's *own* user namespace: any user gets a full set with `unshare -Ur`, so a peer
/// in another user namespace is never an administrator, whatever its capabilities there. A
/// root without the capability (a container with every capability dropped) is not one either,
/// as for the kernel. The peer's pid is checked to still belong to `uid` so that a recycled
/// pid lends nobody its capabilities.
pub fn is_admin(uid: u32, pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    ids(&status, "Uid:").is_some_and(|u| u[1] == uid)
        && has_cap(&status, CAP_SYS_PTRACE)
        && same_user_namespace(pid)
}

/// Whether process `pid` is in the tracer's user namespace (the same `ns/user` inode).
fn same_user_namespace(pid: i32) -> bool {
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/user")),
        std::fs::metadata("/proc/self/ns/user"),
    ) {
        (Ok(peer), Ok(own)) => peer.ino() == own.ino() && peer.dev() == own.dev(),
        _ => false,
    }
}

/// Whether the unprivileged peer `uid`/`gid` may read process `target`'s layout.
pub fn may_read(uid: u32, gid: u32, target: u32) -> bool {
    let dir = format!("/proc/{target}");
    let Ok(status) = std::fs::read_to_string(format!("{dir}/status")) else {
        // Exited (or never existed): only an administrator may read what is left of it.
        return false;
    };
    let (Some(uids), Some(gids)) = (ids(&status, "Uid:"), ids(&status, "Gid:")) else {
        return false;
    };
    // A process that is not dumpable (set-uid, PR_SET_DUMPABLE 0) has its /proc directory
    // owned by root: the kernel's own sign that its owner may not read it either.
    let dumpable_for_owner = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid);
    uids[..3].iter().all(|&u| u == uid) && gids[..3].iter().all(|&g| g == gid) && dumpable_for_owner
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t7\t100\n\
                          CapEff:\t0000000000080000\n";

    #[test]
    fn ids_and_capabilities_are_read_from_status() {
        assert_eq!(ids(STATUS, "Uid:"), Some([1000; 4]));
        assert_eq!(ids(STATUS, "Gid:"), Some([100, 100, 7, 100]));
        assert!(has_cap(STATUS, CAP_SYS_PTRACE));
        assert!(!has_cap(STATUS, 21));
        assert_eq!(ids("Uid:\t1\n", "Uid:"), None);
    }

    #[test]
    fn the_owner_may_read_its_own_process_and_nobody_may_read_roots() {
        let me = std::process::id();
        // SAFETY: plain getters.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert!(may_read(uid, gid, me));
        assert!(!may_read(uid.wrapping_add(1), gid, me));
        assert!(!may_read(uid, gid.wrapping_add(1), me));
        assert!(!may_read(uid, gid, u32::MAX));
        // As root (the tests run so), this very process: CAP_SYS_PTRACE, our user namespace.
        if uid == 0 {
            assert!(is_admin(0, me as i32));
        }
        assert!(same_user_namespace(me as i32));
        assert!(!is_admin(65534, -1));
    }
}
