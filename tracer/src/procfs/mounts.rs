//! Whether `/proc` hides other users' processes (`hidepid=`), from `/proc/self/mountinfo`.
//!
//! On such a host an unprivileged user cannot list another user's pids, comms or counters in
//! `/proc`; the API must then not list them to anonymous clients either (`server::access`).

use std::io::Read as _;

/// `/proc/self/mountinfo` is read up to this many bytes: a host with an absurd number of
/// mounts is not a reason to hold more, and `/proc` is mounted early (near the top).
const MOUNTINFO_MAX: u64 = 4 << 20;

/// The `hidepid=` value of the procfs mounted at `/proc` (the last such mount: it shadows the
/// earlier ones), when it hides anything: `1`/`noaccess`, `2`/`invisible`, `4`/`ptraceable`.
/// None when `/proc` shows every process (`0`/`off`, or no option).
pub fn hidepid_of(mountinfo: &[u8]) -> Option<String> {
    let mut found = None;
    for line in mountinfo.split(|&b| b == b'\n') {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.get(4) != Some(&&b"/proc"[..]) || fields.get(dash + 1) != Some(&&b"proc"[..]) {
            continue;
        }
        let hidden = fields
            .get(dash + 3)
            .into_iter()
            .flat_map(|opts| opts.split(|&b| b == b','))
            .find_map(|opt| opt.strip_prefix(b"hidepid="))
            .filter(|v| !matches!(*v, b"0" | b"off"))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        found = Some(hidden);
    }
    found.flatten()
}

/// `hidepid_of` the mountinfo at `path`; an error when it cannot be read whole.
fn hidepid_in(path: &str) -> std::io::Result<Option<String>> {
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(MOUNTINFO_MAX + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MOUNTINFO_MAX {
        // Cut short, the `/proc` mount might be among the lines not read.
        return Err(std::io::Error::other(format!(
            "{path} is over {MOUNTINFO_MAX} bytes"
        )));
    }
    Ok(hidepid_of(&text))
}

/// Whether `/proc` hides processes, as this process sees it or as the host's init does: in a
/// container that shares the host's pids (`hostPID`, `--pid=host`) the runtime mounts a fresh
/// procfs without the host's `hidepid=`, yet the host's users are the ones to protect. The
/// tracer's own view must be readable (the caller fails closed otherwise); init's is read when
/// it can be (root, or CAP_SYS_PTRACE over init).
pub fn proc_hidepid() -> std::io::Result<Option<String>> {
    let own = hidepid_in("/proc/self/mountinfo")?;
    Ok(own.or_else(|| hidepid_in("/proc/1/mountinfo").ok().flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc";

    #[test]
    fn reads_the_option_of_the_last_proc_mount() {
        let plain = format!("{LINE} rw\n");
        assert_eq!(hidepid_of(plain.as_bytes()), None);
        let hidden = format!("{LINE} rw,hidepid=invisible\n");
        assert_eq!(hidepid_of(hidden.as_bytes()).as_deref(), Some("invisible"));
        let numeric = format!("{LINE} rw,gid=10,hidepid=2\n");
        assert_eq!(hidepid_of(numeric.as_bytes()).as_deref(), Some("2"));
        let off = format!("{LINE} rw,hidepid=off\n");
        assert_eq!(hidepid_of(off.as_bytes()), None);
        // A later mount over /proc shadows the first.
        let shadowed = format!("{LINE} rw,hidepid=2\n{LINE} rw\n");
        assert_eq!(hidepid_of(shadowed.as_bytes()), None);
        let shadowing = format!("{LINE} rw\n{LINE} rw,hidepid=ptraceable\n");
        assert_eq!(
            hidepid_of(shadowing.as_bytes()).as_deref(),
            Some("ptraceable")
        );
    }

    #[test]
    fn other_mounts_and_garbage_are_ignored() {
        let text = b"30 1 0:5 / /proc/sys rw - proc proc rw,hidepid=2\n\
                     31 1 0:6 / /proc rw - tmpfs none rw,hidepid=2\n\
                     - - -\n\n\xff\xfe /proc - proc\n";
        assert_eq!(hidepid_of(text), None);
    }
}
