//! A ring-buffer record as the probes would write it, or garbage: decoding must answer an
//! error, never panic or read out of bounds (the decoder reads unaligned, behind a length check).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::kernel::events::{Event, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Event::Syscall(event)) = decode(data) {
        // What the model derives from a decoded syscall: arguments and return are untrusted too.
        let _ = event.outcome();
    }
});
