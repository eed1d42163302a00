//! Serving the HTTP API: where it listens (`listener`), how requests reach the session
//! (`http`), who may see what (`access`, `peercred`), and the exporter-toolkit web
//! configuration (`webconfig`). What the answers contain is `crate::views`.

pub mod access;
pub mod http;
pub mod listener;
pub mod peercred;
pub mod webconfig;
