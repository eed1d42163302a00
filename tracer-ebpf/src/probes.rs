//! One module per probe family.
mod faults;
mod lifecycle;
mod order;
mod raw_syscalls;
mod rss;
mod syscalls;
