//! The options of `--stacks` (call sites of memory growth, docs/callsites.md).

use std::path::PathBuf;

use clap::Args;
use tracer_common::stack::{MAX_STACK_COPY, StackConfig};

use crate::kernel::probes::options::StackSettings;
use crate::output::report::REPORT_SITES;
use crate::stacks::folded::SampleType;

#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Collect the user call stacks of brk, mmap and mremap calls and of sampled page faults,
    /// and attribute the memory mapped to them (docs/callsites.md). Off by default: it costs
    /// a stack copy per such call.
    #[arg(long)]
    pub stacks: bool,

    /// Bytes of user stack copied per sample (512 to 16384): frames whose return address lies
    /// above the copy are lost.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_STACK_COPY as u32,
          value_parser = clap::value_parser!(u32).range(512..=MAX_STACK_COPY as i64))]
    pub stack_bytes: u32,

    /// Take the stack of one user page fault in N (per CPU); 0: none.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub fault_sample: u32,

    /// Size of the ring buffer of stack samples (a power of two, 4K to 1G).
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = crate::units::parse_ring_size)]
    pub stack_ring_size: u32,

    /// Write the call sites as a gzip'ed pprof profile to PATH at the end (implies --stacks).
    #[arg(long, value_name = "PATH")]
    pub pprof: Option<PathBuf>,

    /// Write the call sites as folded stacks (`frame;frame value`, outermost first, for
    /// flamegraph.pl and inferno) to PATH at the end (implies --stacks).
    #[arg(long, value_name = "PATH")]
    pub folded: Option<PathBuf>,

    /// The value of each folded line: bytes still mapped (inuse_space), bytes mapped so far
    /// (alloc_space), their call counts (inuse_objects, alloc_objects), or page faults.
    #[arg(long, value_name = "TYPE", value_enum, default_value_t = SampleType::InuseSpace,
          requires = "folded")]
    pub folded_type: SampleType,

    /// Most call sites listed per process in the JSON report (`--report`, `/api/v1/report`),
    /// the largest by bytes mapped first; a check file's site bounds and `tracer diff
    /// --fail-if-site` see only these.
    #[arg(long, value_name = "N", default_value_t = REPORT_SITES as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub report_sites: u32,
}

impl StackArgs {
    /// The probe settings, when stacks are on.
    pub fn settings(&self) -> Option<StackSettings> {
        (self.stacks || self.pprof.is_some() || self.folded.is_some()).then_some(StackSettings {
            config: StackConfig {
                stack_bytes: self.stack_bytes,
                fault_period: self.fault_sample,
            },
            ring_bytes: self.stack_ring_size,
        })
    }
}
