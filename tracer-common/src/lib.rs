//! Records and constants shared by the eBPF probes (`tracer-ebpf`) and the daemon (`tracer`).
//!
//! Everything here is `#[repr(C)]`, has explicit padding and no `bool`/enum fields, so both
//! sides agree on the bytes without relying on the compiler's layout choices. Each type has a
//! compile-time size assertion: a change that moves a field fails the build on both sides.
#![no_std]

pub mod config;
pub mod counters;
pub mod record;
pub mod stack;

/// Length of a task's `comm` in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
