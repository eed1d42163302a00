//! Values of the aggregation maps the probes keep in the kernel and the daemon reads.

/// Fault access classes, from the x86 page-fault error code (`arch/x86/include/asm/trap_pf.h`:
/// bit 1 = write, bit 4 = instruction fetch) and from which tracepoint fired
/// (`page_fault_user` vs `page_fault_kernel`, the latter e.g. `copy_to_user` into a fresh page).
pub const ACCESS_USER_READ: usize = 0;
pub const ACCESS_USER_WRITE: usize = 1;
pub const ACCESS_USER_EXEC: usize = 2;
pub const ACCESS_KERNEL_READ: usize = 3;
pub const ACCESS_KERNEL_WRITE: usize = 4;
pub const ACCESS_KERNEL_EXEC: usize = 5;
pub const ACCESS_KINDS: usize = 6;

/// x86 page-fault error code bits used for the access class.
pub const X86_PF_WRITE: u64 = 1 << 1;
pub const X86_PF_INSTR: u64 = 1 << 4;

/// Page faults of one process on one CPU (value of the per-CPU `FAULTS` map, keyed by tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Faults seen on `exceptions:page_fault_{user,kernel}`, by `ACCESS_*` class.
    pub by_access: [u64; ACCESS_KINDS],
    /// Faults the kernel accounted as major (`perf` software event `page-faults-maj`, emitted
    /// from `mm_account_fault()`, the place that increments `majflt`).
    pub major: u64,
    /// Faults (and, of those, majors) that could not be counted in a granule because the
    /// granule map was full: exported as region "other" so per-region sums stay exact.
    pub unattributed: u64,
    pub unattributed_major: u64,
}

impl FaultCounters {
    /// All faults seen, whatever their class.
    pub fn total(&self) -> u64 {
        self.by_access.iter().sum()
    }

    /// Adds another CPU's counters to these.
    pub fn accumulate(&mut self, other: &FaultCounters) {
        for (mine, theirs) in self.by_access.iter_mut().zip(other.by_access.iter()) {
            *mine += theirs;
        }
        self.major += other.major;
        self.unattributed += other.unattributed;
        self.unattributed_major += other.unattributed_major;
    }
}

/// RSS counter kinds, in the order of the kernel's `MM_*PAGES` (`include/linux/mm_types_task.h`:
/// MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES), as `kmem:rss_stat` reports them.
pub const RSS_FILE: usize = 0;
pub const RSS_ANON: usize = 1;
pub const RSS_SWAP: usize = 2;
pub const RSS_SHMEM: usize = 3;
pub const RSS_KINDS: usize = 4;

/// Resident memory of one process (value of the `RSS` map, keyed by tgid): the latest value
/// `kmem:rss_stat` reported for each counter, and the highest resident total seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssCounters {
    /// Bytes per `RSS_*` kind (swap entries in bytes of swapped-out pages).
    pub bytes: [u64; RSS_KINDS],
    /// Highest file + anon + shmem seen (what VmHWM counts).
    pub peak_resident: u64,
    /// `mm_id` of the address space the process uses now (learned from its own events):
    /// events for another mm, e.g. the one it left at exec being torn down late, are ignored.
    pub mm_id: u32,
    /// Bit `1 << RSS_*` set once an event reported that kind for this mm. A kind without
    /// its bit has not changed since the process became traced (or since its mm began):
    /// its value is what /proc said when the daemon seeded it, not the 0 held here.
    pub reported: u32,
}

/// The resident kinds, as a `reported` mask.
pub const RSS_RESIDENT_MASK: u32 = (1 << RSS_FILE) | (1 << RSS_ANON) | (1 << RSS_SHMEM);

impl RssCounters {
    /// Resident bytes: file + anon + shmem (VmRSS).
    pub fn resident(&self) -> u64 {
        self.bytes[RSS_FILE] + self.bytes[RSS_ANON] + self.bytes[RSS_SHMEM]
    }

    /// Whether an event reported `kind` for the current mm.
    pub fn was_reported(&self, kind: usize) -> bool {
        self.reported & (1 << kind) != 0
    }
}

/// Faults are also counted per 64 KiB granule of address space, so the daemon can attribute
/// them to the regions of its model (heap, stack, anon, file, other) and to VMAs.
pub const FAULT_GRANULE_SHIFT: u32 = 16;

/// Key of the per-CPU `FAULT_GRANULES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GranuleKey {
    pub tgid: u32,
    /// `address >> FAULT_GRANULE_SHIFT` (user addresses are below 2^47, so this fits).
    pub granule: u32,
}

/// Faults in one granule on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GranuleFaults {
    pub all: u64,
    pub major: u64,
}

/// Indexes of the per-CPU `STATS` array: kernel-side conditions the daemon reports.
/// A traced syscall's entry and exit could not be paired: an exit seen without its entry (the
/// thread was already inside the syscall when it became traced), or an entry whose exit never
/// ran its probe (a kretprobe beyond its `maxactive`, counted at the thread's next traced
/// syscall); no record is produced for it.
pub const STAT_EXIT_WITHOUT_ENTER: u32 = 0;
/// The in-flight syscall map was full; the syscall's record is lost.
pub const STAT_INFLIGHT_FULL: u32 = 1;
/// The traced-process map was full; a forked child could not be traced.
pub const STAT_TRACED_FULL: u32 = 2;
/// The granule map was full: a fault is counted in its process's totals but not attributed to
/// a region.
pub const STAT_GRANULES_FULL: u32 = 3;
pub const STATS_LEN: u32 = 4;

/// Value of the `TRACED` map (keyed by tgid): one of the `TRACED_*` states in the low byte,
/// plus `TRACED_STOP_AT_EXEC`.
pub const TRACED_STATE_MASK: u32 = 0xff;
pub const TRACED_BY_USER: u32 = 1;
/// The process was added by the kernel side when a traced parent forked it.
pub const TRACED_BY_FORK: u32 = 2;
/// The tracer's own child for `tracer run`, not yet executing CMD: nothing is counted until
/// its `execve` starts (its copy-on-write faults after fork are the tracer's, not CMD's). The
/// execve entry probe turns it into `TRACED_BY_USER`.
pub const TRACED_AWAIT_EXEC: u32 = 3;
/// Stop the process at each exec (`EXEC_STOPPED`) so the daemon seeds the new image exactly;
/// inherited by forked children. Used by `tracer run`, whose whole tree the tracer owns.
pub const TRACED_STOP_AT_EXEC: u32 = 0x100;

const _: () = assert!(size_of::<FaultCounters>() == 72);
const _: () = assert!(size_of::<RssCounters>() == 48);
const _: () = assert!(size_of::<GranuleKey>() == 8);
const _: () = assert!(size_of::<GranuleFaults>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: integers only, no padding.
    unsafe impl aya::Pod for super::FaultCounters {}
    unsafe impl aya::Pod for super::RssCounters {}
    unsafe impl aya::Pod for super::GranuleKey {}
    unsafe impl aya::Pod for super::GranuleFaults {}
}
