//! `tracer` as a library: the daemon's logic, used by the `tracer` binary (`main.rs`), the fuzz
//! targets and the property tests. Every module is public so that fuzzing reaches the parsers
//! the daemon feeds untrusted bytes to.

pub mod check;
pub mod cli;
pub mod commands;
pub mod kernel;
pub mod launch;
pub mod model;
pub mod output;
#[cfg(test)]
mod parser_props;
pub mod procfs;
pub mod server;
pub mod session;
pub mod stacks;
pub mod tracking;
pub mod units;
pub mod views;

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
