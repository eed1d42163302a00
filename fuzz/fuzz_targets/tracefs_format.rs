//! A tracefs `format` file (read from a --tracefs directory the user names).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tracer::kernel::tracefs::Format::parse(&String::from_utf8_lossy(data));
});
