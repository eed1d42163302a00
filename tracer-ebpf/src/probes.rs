//! One module per probe family.
mod fault_events;
mod faults;
mod kprobes;
mod lifecycle;
mod order;
mod raw_syscalls;
mod rss;
mod stacks;
mod syscalls;
