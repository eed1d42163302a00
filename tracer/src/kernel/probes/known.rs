//! The optional kernel features the tracer looks for and exports as
//! `tracer_kernel_feature_enabled{feature=...}`, and the facts about architectures that
//! feature detection (`features`) relies on.

/// One optional kernel feature and whether this kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The `feature` label of `tracer_kernel_feature_enabled`.
    pub name: &'static str,
    pub enabled: bool,
}

/// Feature names, in the order they are exported.
pub const BTF: &str = "btf";
pub const EXIT_GROUP_DEAD: &str = "exit_group_dead";
pub const RSS_STAT: &str = "rss_stat";
pub const RSS_STAT_EXACT: &str = "rss_stat_exact";
pub const CLONE_TRACEPOINTS: &str = "clone_tracepoints";
pub const MREMAP_CHECKS_FIRST: &str = "mremap_checks_first";
pub const MMAP_LOCK_ORDER: &str = "mmap_lock_order";

/// The raw tracepoint the ordering probe attaches to (group `mmap_lock`).
pub const MMAP_LOCK_TRACEPOINT: &str = "mmap_lock_acquire_returned";

/// Syscalls whose entry tells the fork probe the clone flags.
pub(super) const CLONE_SYSCALLS: [&str; 4] = ["clone", "clone3", "fork", "vfork"];

/// Whether the architecture has the `fork` and `vfork` syscalls (`__ARCH_WANT_SYS_FORK`,
/// `__ARCH_WANT_SYS_VFORK`): arm64, riscv and loongarch have only `clone` and `clone3`, so
/// their absence there loses nothing.
pub(super) const ARCH_HAS_FORK: bool = !cfg!(any(
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
));
