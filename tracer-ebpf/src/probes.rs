//! One module per probe family.
mod faults;
mod lifecycle;
mod rss;
mod syscalls;
