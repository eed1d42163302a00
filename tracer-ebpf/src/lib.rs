//! Empty library target: `tracer/build.rs` needs a build-dependency on this package so cargo
//! rebuilds the probes when they change, and a build-dependency must have a library.
#![no_std]
