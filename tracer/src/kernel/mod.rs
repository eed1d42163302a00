//! The kernel side as the daemon sees it: checks before loading (`preflight`), tracefs layouts
//! (`tracefs`), loading and attaching the probes and reading their maps (`probes`), the traced
//! syscalls (`syscalls`) and the safe decoding of ring-buffer records (`events`).

pub mod events;
pub mod preflight;
pub mod probes;
pub mod syscalls;
pub mod tracefs;
