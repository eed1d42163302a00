//! `tracer` as a library: the daemon's logic, used by the `tracer` binary (`main.rs`), the fuzz
//! targets and the property tests. Every module is public so that fuzzing reaches the parsers
//! the daemon feeds untrusted bytes to.

pub mod access;
pub mod api;
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod commands;
pub mod diff;
pub mod events;
pub mod exit;
pub mod fault_regions;
pub mod figures;
pub mod groups;
pub mod http;
pub mod jsonl;
pub mod launch;
pub mod layout;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod openmetrics;
pub mod order;
pub mod outfile;
pub mod page;
#[cfg(test)]
mod parser_props;
pub mod peercred;
pub mod preflight;
pub mod probes;
pub mod process;
pub mod process_figures;
pub mod procfs;
pub mod recent;
pub mod reconcile;
pub mod report;
pub mod session;
pub mod sizes;
pub mod stacks;
pub mod summary;
pub mod syscalls;
pub mod tracefs;
pub mod units;
pub mod watchdog;
pub mod webconfig;

/// The error and its sources, joined, so the kernel's own reason is not lost.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
