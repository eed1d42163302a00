//! `/proc/PID/stat`: the comm between the parentheses is any bytes a process chose.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tracer::procfs::parse_stat(data);
});
