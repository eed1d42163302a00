//! One module per probe family.
mod faults;
mod lifecycle;
mod order;
mod rss;
mod stacks;
mod syscalls;
