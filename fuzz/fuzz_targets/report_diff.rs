//! `tracer diff OLD NEW`: two report files (anyone's JSON), compared under thresholds on
//! figures and on call sites. The input is OLD, a NUL byte, then NEW; without a NUL both are
//! the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::check::{diff, diff_site_limits};
use tracer::output::report;

fuzz_target!(|data: &[u8]| {
    let (old, new) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let (Ok(old), Ok(new)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return;
    };
    let (Ok(old), Ok(new)) = (report::parse(old), report::parse(new)) else {
        return;
    };
    let thresholds: Vec<diff::Threshold> = [
        "*:peak_rss>10%",
        "tree:processes>+1",
        "cc#2:mmap_calls>5",
        "peak_heap>+4MiB",
    ]
    .into_iter()
    .map(|t| diff::parse_threshold(t).expect("a valid threshold"))
    .collect();
    // Site thresholds measure the reports' call sites (names, figures and counts as written).
    let sites: Vec<diff_site_limits::SiteThreshold> = [
        ("a", "inuse_space>10%"),
        ("grow", "cc:alloc_objects>+1"),
        ("::", "*:faults>0"),
    ]
    .into_iter()
    .map(|(name, t)| diff_site_limits::parse(name, t).expect("a valid site threshold"))
    .collect();
    let comparison = diff::compare("old", &old, "new", &new, &thresholds, &sites);
    let _ = comparison.text(true);
    serde_json::to_string(&comparison).expect("a comparison renders as JSON");
});
