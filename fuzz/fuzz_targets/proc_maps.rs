//! `/proc/PID/maps` text (names are whatever a process maps): parsing never panics, and a
//! model seeded from what parsed renders back to text that parses to the same VMAs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::model::{maps, space::AddressSpace};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = maps::proc_lines(text);
    let Ok(mut vmas) = maps::parse(text) else {
        return;
    };
    // The kernel lists VMAs sorted and disjoint; the model holds only such a list.
    vmas.sort_by_key(|v| v.start);
    if vmas.windows(2).any(|w| w[0].end > w[1].start) {
        return;
    }
    let mut space = AddressSpace::new(4096);
    space.replace_vmas(vmas.iter().cloned());
    let rendered = maps::render(&space);
    let again = maps::parse(&rendered).expect("the model's own rendering parses");
    assert_eq!(
        vmas, again,
        "render/parse round trip of\n{text}\nrendered as\n{rendered}"
    );
});
