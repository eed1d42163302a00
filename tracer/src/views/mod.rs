//! What clients of the API see, built from the tracked state at request time: JSON views
//! (`api`), Prometheus and OpenMetrics expositions (`metrics`, `openmetrics`) with their series
//! budget (`groups`), and the live page (`page`).

pub mod api;
pub mod groups;
pub mod metrics;
pub mod openmetrics;
pub mod page;
