//! `/proc/PID/status` (its Name: line is a process's comm) and `/proc/PID/cmdline` (any bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::procfs;

fuzz_target!(|data: &[u8]| {
    let status = String::from_utf8_lossy(data);
    let _ = procfs::parse_tgid(&status);
    let _ = procfs::parse_rss(&status);
    let _ = procfs::parse_cap_eff(&status);
    let _ = procfs::parse_cmdline(data);
    // What reaches a terminal or a log must hold no control character unescaped.
    let shown = procfs::escape(data);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
});
