//! Reading /proc: pure parsers of the text formats, and thin readers around them.

pub mod cgroup;
pub mod mounts;
pub mod rss;

use std::{fmt::Write as _, fs, io};

/// `PF_KTHREAD` from `include/linux/sched.h`: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` the tracer uses (see proc_pid_stat(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u64,
    pub minflt: u64,
    pub majflt: u64,
    /// Field 28: an address in the main stack; 0 when hidden or for kernel threads.
    pub start_stack: u64,
    /// Field 47; 0 when the reader may not see it (another user's process without ptrace
    /// access) or for kernel threads.
    pub start_brk: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of `/proc/PID/stat`. The comm is enclosed in parentheses and may itself
/// contain spaces and ')', so fields are counted from the last ')'. Bytes, not text: the
/// kernel prints the comm as the process set it (any bytes but NUL, `prctl(PR_SET_NAME)`), so
/// the file need not be UTF-8. The comm is kept escaped (`escape`).
pub fn parse_stat(bytes: impl AsRef<[u8]>) -> Option<Stat> {
    let bytes = bytes.as_ref();
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&bytes[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = escape(&bytes[open + 1..close]);
    // Fields from 3 (state) on: numbers and a state letter, ASCII on any kernel.
    let rest = std::str::from_utf8(&bytes[close + 1..]).ok()?;
    let rest: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n)?.parse::<u64>().ok();
    Some(Stat {
        pid,
        comm,
        state: field(3)?.chars().next()?,
        ppid: num(4)? as u32,
        flags: num(9)?,
        minflt: num(10)?,
        majflt: num(12)?,
        start_stack: num(28).unwrap_or(0),
        start_brk: num(47).unwrap_or(0),
    })
}

pub fn read_stat(pid: u32) -> io::Result<Stat> {
    let bytes = fs::read(format!("/proc/{pid}/stat"))?;
    parse_stat(&bytes).ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))
}

/// Text the kernel hands over as bytes (comm, file names, arguments) made safe to keep in a
/// `String` and to show anywhere (terminal, log, JSON, Prometheus label): valid UTF-8 passes
/// through, every byte of an invalid sequence or of a control character (`\n`, ESC, DEL, C1)
/// becomes `\ooo` in octal, the way `/proc/PID/maps` escapes a newline in a file name. So a
/// name read from `maps` and the same name read with `readlink` come out equal. As in
/// `/proc`, a backslash is kept as is.
pub fn escape(bytes: &[u8]) -> String {
    fn octal(out: &mut String, byte: u8) {
        let _ = write!(out, "\\{byte:03o}");
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    octal(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            octal(&mut out, b);
        }
    }
    out
}

/// A `/proc` text of lines (`maps`) with each line escaped; the newlines between lines stay.
pub fn escape_lines(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    out
}

/// A `/proc` text of which only ASCII fields are read (`status`): its `Name:` line holds the
/// comm, which need not be UTF-8.
fn read_lossy(path: &str) -> io::Result<String> {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// `Tgid:` of `/proc/PID/status`: the process a thread id belongs to.
pub fn parse_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

pub fn read_tgid(pid: u32) -> io::Result<u32> {
    let text = read_lossy(&format!("/proc/{pid}/status"))?;
    parse_tgid(&text).ok_or_else(|| io::Error::other(format!("no Tgid in /proc/{pid}/status")))
}

/// Resident memory from `/proc/PID/status` in bytes: (file, anon, swap, shmem), in the order
/// of the kernel's MM_*PAGES counters.
pub fn parse_rss(status: &str) -> Option<[u64; 4]> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            // A value no kernel prints is no figure (and must not overflow).
            .and_then(|v| v.checked_mul(1024))
    };
    Some([
        kb("RssFile:")?,
        kb("RssAnon:")?,
        kb("VmSwap:")?,
        kb("RssShmem:")?,
    ])
}

pub fn read_rss(pid: u32) -> io::Result<[u64; 4]> {
    let text = read_lossy(&format!("/proc/{pid}/status"))?;
    parse_rss(&text).ok_or_else(|| io::Error::other(format!("no Rss lines in /proc/{pid}/status")))
}

/// Capability sets of `/proc/self/status` (`CapEff:` as a hex mask).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The command line: NUL-separated arguments (escaped).
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|&b| b == 0).map(escape).collect()
}

pub fn read_cmdline(pid: u32) -> io::Result<Vec<String>> {
    fs::read(format!("/proc/{pid}/cmdline")).map(|bytes| parse_cmdline(&bytes))
}

/// `/proc/PID/maps` with file names escaped: a process may map a file whose name is not UTF-8.
pub fn read_maps(pid: u32) -> io::Result<String> {
    fs::read(format!("/proc/{pid}/maps")).map(|bytes| escape_lines(&bytes))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, so record timestamps
/// and /proc snapshots can be ordered.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The file behind a mapping or descriptor link (`/proc/PID/map_files/...`, `/proc/PID/fd/N`):
/// its path (escaped like `maps` names) and (major, minor, inode).
pub fn link_target(link: &str) -> Option<(String, (u32, u32), u64)> {
    use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
    let path = fs::read_link(link).ok()?;
    let meta = fs::metadata(link).ok()?;
    let dev = meta.dev();
    Some((
        escape(path.as_os_str().as_bytes()),
        (libc::major(dev), libc::minor(dev)),
        meta.ino(),
    ))
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz target `proc_status`: a kB figure times 1024 overflowed (a panic in a
    /// debug build, a wrapped figure in release).
    #[test]
    fn an_rss_line_too_large_for_bytes_is_no_figure() {
        let status = "RssAnon:\t 7777777777777777164 kB\nRssFile:\t 2096 kB\n\
                      RssShmem:\t 0 kB\nVmSwap:\t 0 kB\n";
        assert_eq!(parse_rss(status), None);
        let fine = status.replace("7777777777777777164", "1");
        assert_eq!(parse_rss(&fine), Some([2096 * 1024, 1024, 0, 0]));
    }

    #[test]
    fn parses_stat_with_awkward_comm() {
        let mut text = String::from("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1234 0 7 0");
        // fields 14..=46 as zeros, then start_brk (47)
        for _ in 14..=46 {
            text.push_str(" 0");
        }
        text.push_str(" 94558392254464 0 0\n");
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.minflt, 1234);
        assert_eq!(s.majflt, 7);
        assert_eq!(s.start_brk, 94558392254464);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn recognises_kernel_threads() {
        let text = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 4 0 0";
        let s = parse_stat(text).unwrap();
        assert!(s.is_kernel_thread());
        assert_eq!(s.start_brk, 0);
    }

    #[test]
    fn stat_with_a_comm_that_is_not_utf8_or_has_control_characters() {
        let text = b"77 (\xffevil\n)x) R 1 77 77 0 -1 0 1 0 2 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, "\\377evil\\012)x");
        assert_eq!(s.state, 'R');
        assert_eq!(s.minflt, 1);
    }

    #[test]
    fn malformed_stat_is_refused_without_panicking() {
        for text in [
            ")(",
            "(",
            ")",
            "",
            "1 (",
            "1 )(",
            "x (a) S 1",
            "1 (a) \u{e9} 1",
        ] {
            assert_eq!(parse_stat(text), None, "{text:?}");
        }
    }

    #[test]
    fn escapes_like_proc_and_keeps_utf8() {
        assert_eq!(escape(b"plain name"), "plain name");
        assert_eq!(escape("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape(b"a\nb\x1b[31m\x7f"), "a\\012b\\033[31m\\177");
        assert_eq!(escape(b"\xff\xfe"), "\\377\\376");
        // C1 control characters are valid UTF-8 but control a terminal too.
        assert_eq!(escape("\u{9b}".as_bytes()), "\\302\\233");
        assert_eq!(escape(b"back\\slash"), "back\\slash");
        // Only control characters and invalid bytes are escaped.
        let escaped = escape(&(0..=255u8).collect::<Vec<_>>());
        assert!(!escaped.chars().any(char::is_control), "{escaped}");
        assert_eq!(
            escape_lines(b"a\xff\nb\n"),
            "a\\377\nb\n",
            "newlines between lines stay"
        );
    }

    #[test]
    fn cmdline_arguments_are_escaped() {
        assert_eq!(parse_cmdline(b"a\0\xff\0\0"), ["a", "\\377", ""]);
    }

    #[test]
    fn reads_own_stat_and_status() {
        let me = std::process::id();
        let s = read_stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert_ne!(s.start_brk, 0);
        assert_eq!(read_tgid(me).unwrap(), me);
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_cap_eff(&status).is_some());
    }
}
