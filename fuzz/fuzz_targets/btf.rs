//! A BTF blob (/sys/kernel/btf/vmlinux, or a file given with --btf): parsing and the member
//! lookups the probes' feature detection makes must end with an answer, never a panic or a
//! stack overflow on self-referencing types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::kernel::probes::btf::Btf;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    for (name, member) in [
        ("task_struct", "signal"),
        ("task_struct", "rss_stat"),
        ("signal_struct", "live"),
        ("mm_struct", "rss_stat"),
    ] {
        let _ = btf.member(name, member);
    }
});
