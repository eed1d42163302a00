//! Sizes and thresholds as people type them on the command line and in check files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tracer::units::parse_size(text);
    let _ = tracer::check::diff::parse_threshold(text);
    let _ = tracer::units::parse_ring_size(text);
});
