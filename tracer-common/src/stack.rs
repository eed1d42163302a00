//! Call-site samples (`--stacks`): the user registers and a bounded slice of the user stack,
//! taken at the entry of the syscalls that grow memory (brk, mmap, mremap) and on one page
//! fault in N. They travel in their own ring buffer (`STACK_EVENTS`), so the records of the
//! address-space model never wait behind them; the daemon joins a syscall sample to the
//! syscall record of the same thread by time (`StackSample::header.ts_ns` lies between the
//! record's `enter_ns` and its exit) and unwinds the slice from `.eh_frame` in user space.

use crate::record::Header;

/// `Header::kind` of a sample taken at a syscall entry (`StackSample::syscall` says which).
pub const STACK_SYSCALL: u32 = 1;
/// `Header::kind` of a sampled page fault (`StackSample::addr` is the fault address).
pub const STACK_FAULT: u32 = 2;

/// Largest slice of the user stack a probe copies (the per-CPU scratch buffer holds one more
/// page, so that the verifier can bound every page-sized read).
pub const MAX_STACK_COPY: usize = 16384;
/// The page size the copy loop steps by (x86-64 and the common arm64 configuration).
pub const STACK_PAGE: usize = 4096;

/// Settings of the stack probes, the read-only global `STACK_CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackConfig {
    /// Bytes of user stack copied from the stack pointer up (at most `MAX_STACK_COPY`).
    pub stack_bytes: u32,
    /// Take one fault in this many (per CPU); 0: no fault samples.
    pub fault_period: u32,
}

/// The fixed part of a sample; `stack_len` bytes of stack follow it in the ring buffer,
/// copied from `sp` upwards.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackSample {
    /// `kind` is `STACK_SYSCALL` or `STACK_FAULT`.
    pub header: Header,
    /// `SYS_*` of the syscall (unused for faults).
    pub syscall: u32,
    /// Bytes of stack that follow.
    pub stack_len: u32,
    /// User registers at the syscall or fault: the instruction and stack pointers, the
    /// frame pointer (x86-64 `rbp`, arm64 `x29`) and the link register (arm64 `x30`, where a
    /// leaf function's return address stays; 0 on x86-64, which has none).
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub lr: u64,
    /// Fault address (faults), or the syscall's first argument.
    pub addr: u64,
    /// How many faults this sample stands for (`fault_period`); 0 for syscalls.
    pub weight: u64,
}

const _: () = assert!(size_of::<StackConfig>() == 8);
const _: () = assert!(size_of::<StackSample>() == 80);
const _: () = assert!(align_of::<StackSample>() <= 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: integers only, no implicit padding.
    unsafe impl aya::Pod for super::StackConfig {}
    unsafe impl aya::Pod for super::StackSample {}
}
