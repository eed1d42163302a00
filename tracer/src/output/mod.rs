//! What the tracer writes at the end and along the way: the JSON report (`report`) and its
//! named figures (`figures`), the human summary (`summary`) with its address-space drawing
//! (`layout`), the `--events` stream (`jsonl`), and the safe creation of every output file
//! (`outfile`).

pub mod figures;
pub mod held_dir;
pub mod jsonl;
pub mod layout;
pub mod outfile;
pub mod report;
pub mod report_build;
pub mod rotation;
pub mod summary;
