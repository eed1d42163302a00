//! The per-process address-space model: pure data and event application, no I/O.
//!
//! Rebuilt from the syscall records (applied at exit with their arguments and result) plus a
//! `/proc/PID/maps` seed for what no syscall shows (the image at exec, vdso, stack).

pub mod apply;
pub mod heap_rule;
pub mod maps;
pub mod region;
pub mod space;
pub mod vma;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use space::AddressSpace;
