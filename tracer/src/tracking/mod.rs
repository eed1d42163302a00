//! What the daemon knows of each traced process, built from decoded records: the per-process
//! state and its one definition per figure (`process`, `process_figures`), records put back in
//! the kernel's order (`order`), fault attribution to regions (`fault_regions`), mapping sizes
//! (`sizes`), the last address-space changes (`recent`) and the contact with `/proc` that keeps
//! the model honest (`reconcile`). The address-space model itself is `crate::model` (pure).

pub mod brk_ring;
pub mod counters;
pub mod fault_regions;
pub mod order;
pub mod process;
pub mod process_figures;
pub mod recent;
pub mod reconcile;
pub mod sizes;
pub mod table;
