//! The tracer's eBPF probes. Built for `bpfel-unknown-none` by `tracer/build.rs` (aya-build).
//!
//! Every probe first checks whether the current thread group is traced (one hash lookup), so
//! untraced processes pay almost nothing. Syscalls produce one ring-buffer record at exit; page
//! faults are only counted, in per-CPU maps.
#![no_std]
#![no_main]

mod maps;
mod probes;

// Only on the BPF target: a host build (clippy) links std through dependencies, which has one.
#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
