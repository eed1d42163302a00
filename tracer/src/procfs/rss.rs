//! Resident memory read from `/proc/PID/status` when a figure is needed (a scrape, a view, the
//! report, a phase), the default source (`--rss-source procfs`). The alternative,
//! `kmem:rss_stat` (`--rss-source events`), runs a probe on every change of every traced
//! process's counters, i.e. on nearly every page fault, and makes the kernel sum the per-CPU
//! counter (O(CPUs)) for each event while it is enabled; reading /proc costs the same sum only
//! when someone looks. The peak is `VmHWM` (the mm's `hiwater_rss`), and once the mm is gone
//! the exit probe's `signal->maxrss` (`ProcessState::observe_exit_maxrss`).

use tracer_common::counters::{RSS_KINDS, RssCounters};

/// Every kind, as a `RssCounters::reported` mask: a read from /proc tells them all.
const ALL_KINDS: u32 = (1 << RSS_KINDS) - 1;

/// RSS by kind and the peak from the text of `/proc/PID/status`; None when it has no memory
/// lines (a kernel thread, or a zombie whose mm is gone).
pub fn parse_status(status: &str) -> Option<RssCounters> {
    let bytes = crate::procfs::parse_rss(status)?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024));
    Some(RssCounters {
        bytes,
        peak_resident: hwm,
        mm_id: 0,
        reported: ALL_KINDS,
    })
}

/// Reads `tgid`'s resident memory from /proc (None if it is gone or has no mm).
pub fn read(tgid: u32) -> Option<RssCounters> {
    // Bounded: a status file is a few KiB; its text comes from the kernel, names escaped.
    let bytes = std::fs::read(format!("/proc/{tgid}/status")).ok()?;
    parse_status(&String::from_utf8_lossy(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::counters::{RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP};

    #[test]
    fn reads_kinds_and_peak_from_status() {
        let text = "Name:\tw\nVmHWM:\t    2048 kB\nVmRSS:\t    1536 kB\nRssAnon:\t     512 kB\n\
                    RssFile:\t    1000 kB\nRssShmem:\t      24 kB\nVmSwap:\t       4 kB\n";
        let r = parse_status(text).unwrap();
        assert_eq!(r.bytes[RSS_ANON], 512 * 1024);
        assert_eq!(r.bytes[RSS_FILE], 1000 * 1024);
        assert_eq!(r.bytes[RSS_SHMEM], 24 * 1024);
        assert_eq!(r.bytes[RSS_SWAP], 4 * 1024);
        assert_eq!(r.peak_resident, 2048 * 1024);
        assert!((0..RSS_KINDS).all(|k| r.was_reported(k)));
        // A zombie's status has no memory lines.
        assert_eq!(parse_status("Name:\tw\nState:\tZ (zombie)\n"), None);
    }
}
