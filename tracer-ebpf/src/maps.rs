//! Maps shared by all probes, the load-time configuration, and the small helpers every probe
//! uses (traced check, record header, ring-buffer wakeup policy, counters).

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use tracer_common::{
    config::Config,
    counters::FAULT_GRANULE_SHIFT,
    counters::{
        FaultCounters, GranuleFaults, GranuleKey, RssCounters, STAT_GRANULES_FULL, STATS_LEN,
        TRACED_AWAIT_EXEC, TRACED_STATE_MASK,
    },
    record::{Header, MAX_ARGS, RECORD_KINDS},
};

/// Filled in by the daemon before load (`EbpfLoader::override_global("CONFIG", ..)`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::zeroed();

/// The configuration. A volatile read, so the compiler cannot fold in the zeroed placeholder.
#[inline(always)]
pub fn config() -> &'static Config {
    // SAFETY: CONFIG is a static living in the read-only data map; reading it is always valid.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

/// Default capacities; the daemon can resize them with `EbpfLoader::map_max_entries`.
const MAX_TRACED: u32 = 16384;
const MAX_INFLIGHT: u32 = 16384;
const MAX_GRANULES: u32 = 65536;
const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// Thread groups being traced (value: `TRACED_BY_*`). User space inserts attach targets; the
/// fork probe inserts children of traced processes; the exit probe removes dead processes.
#[map]
pub static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACED, 0);

/// The last traced syscall of a thread, keyed by pid_tgid: stashed at its entry, consumed at
/// its exit (`syscall` set to `NO_SYSCALL`), kept for the thread's next one and removed when the
/// thread exits. So the map holds one entry per traced thread that made a traced syscall.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inflight {
    pub syscall: u32,
    /// The process's change sequence number, stamped when this syscall took `mmap_lock` for
    /// writing (probes/order.rs); 0 until then.
    pub seq: u32,
    pub args: [u64; MAX_ARGS],
    pub enter_ns: u64,
}

/// `Inflight::syscall` of an entry whose syscall has exited.
pub const NO_SYSCALL: u32 = u32::MAX;

#[map]
pub static INFLIGHT: HashMap<u64, Inflight> = HashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Per traced tgid: the sequence number of its latest traced syscall that took `mmap_lock` for
/// writing (probes/order.rs). Only written with that lock held, so the threads of a process
/// take turns. Removed at exit (and by the daemon when it forgets the process).
#[map]
pub static MM_SEQ: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACED, 0);

/// Clone flags stashed at clone/clone3/fork/vfork entry, read by the fork probe to tell a new
/// thread from a new process.
#[map]
pub static CLONE_FLAGS: HashMap<u64, u64> = HashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Records for the daemon.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Page faults per traced tgid.
#[map]
pub static FAULTS: PerCpuHashMap<u32, FaultCounters> =
    PerCpuHashMap::with_max_entries(MAX_TRACED, 0);

/// Lowest address of the main stack per traced tgid, seeded by the daemon from /proc and
/// lowered by the fault probe when a fault lands just below it: the kernel grows the stack
/// VMA on such faults, and no syscall says so.
#[map]
pub static STACK_LOW: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACED, 0);

/// Capacity of `CGROUP_FILTER` (the daemon refuses a larger subtree).
pub const MAX_CGROUPS: u32 = tracer_common::config::MAX_CGROUPS;

/// Comms that start or stop tracing at exec (`COMM_TRACE`, `COMM_EXCLUDE`).
#[map]
pub static COMM_FILTER: HashMap<[u8; 16], u32> = HashMap::with_max_entries(256, 0);

/// Cgroup ids (v2) whose processes start being traced at exec (`attach --cgroup`: every
/// cgroup of the subtree, kept up to date by the daemon); looked up only with
/// `COMM_FILTER_CGROUP`.
#[map]
pub static CGROUP_FILTER: HashMap<u64, u32> = HashMap::with_max_entries(MAX_CGROUPS, 0);

/// Resident memory per traced tgid, from `kmem:rss_stat`.
#[map]
pub static RSS: HashMap<u32, RssCounters> = HashMap::with_max_entries(MAX_TRACED, 0);

/// Which traced tgid owns an mm (by the hashed `mm_id` of `kmem:rss_stat`): learned from the
/// events the process raises itself, used for those raised elsewhere (reclaim, another
/// process's `process_madvise`...), whose `curr` is 0.
#[map]
pub static MM_OWNER: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACED, 0);

/// Faults per (tgid, 64 KiB granule), for attribution to regions and VMAs.
#[map]
pub static FAULT_GRANULES: PerCpuHashMap<GranuleKey, GranuleFaults> =
    PerCpuHashMap::with_max_entries(MAX_GRANULES, 0);

/// Ring-buffer reservation failures per record kind: records lost, never silently.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(RECORD_KINDS as u32, 0);

/// Kernel-side conditions (`STAT_*`).
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// (tgid, pid_tgid) of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid)
}

/// Whether `tgid` is in the traced set at all (lifecycle probes: fork, exec, exit).
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    TRACED.get_ptr(tgid).is_some()
}

/// Whether `tgid`'s syscalls and faults are counted: traced and not awaiting its exec.
#[inline(always)]
pub fn is_counted(tgid: u32) -> bool {
    match TRACED.get_ptr(tgid) {
        // SAFETY: a valid map value pointer for the duration of the program.
        Some(state) => (unsafe { *state }) & TRACED_STATE_MASK != TRACED_AWAIT_EXEC,
        None => false,
    }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn header(kind: u32, pid_tgid: u64) -> Header {
    Header {
        kind,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad: 0,
        ts_ns: now_ns(),
    }
}

/// Wake the daemon only once `wakeup_bytes` are waiting: waking per record is what makes
/// streaming tracers slow. The daemon drains on a timer too, so nothing waits for long.
#[inline(always)]
pub fn batched_wakeup() -> u64 {
    let threshold = config().wakeup_bytes as u64;
    if threshold == 0 {
        return 0;
    }
    let waiting = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    if waiting >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Exec and exit records wake the daemon at once: it seeds a new image from `/proc` at exec
/// and ends `tracer run` at exit. (Fork records need no hurry: the order of records is kept.)
pub const WAKE_NOW: u64 = BPF_RB_FORCE_WAKEUP as u64;

#[inline(always)]
pub fn count_lost(kind: u32) {
    bump(&LOST, kind);
}

#[inline(always)]
pub fn count_stat(index: u32) {
    bump(&STATS, index);
}

#[inline(always)]
fn bump(array: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = array.get_ptr_mut(index) {
        add(slot, 1);
    }
}

/// Adds to a counter in a per-CPU map value. A plain add is enough: tracepoint and perf-event
/// programs run with preemption disabled (the perf/BPF handlers of the faultable syscall
/// tracepoints of 6.14+ still disable it) and `bpf_prog_active` keeps them from nesting on
/// one CPU. (The BPF target has no atomic read-modify-write in Rust's `core`.)
#[inline(always)]
pub fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into this CPU's slot of a map value, alive for the program run.
    unsafe { *counter += n };
}

/// Counts a fault in the granule of `address` (`major`: the major-fault event). Returns false
/// when the granule map is full and the fault could not be attributed.
#[inline(always)]
pub fn count_granule(tgid: u32, address: u64, major: bool) -> bool {
    let key = GranuleKey {
        tgid,
        granule: (address >> FAULT_GRANULE_SHIFT) as u32,
    };
    let slot = match FAULT_GRANULES.get_ptr_mut(key) {
        Some(slot) => slot,
        None => {
            let _ = FAULT_GRANULES.insert(key, GranuleFaults::default(), BPF_NOEXIST as u64);
            match FAULT_GRANULES.get_ptr_mut(key) {
                Some(slot) => slot,
                None => {
                    count_stat(STAT_GRANULES_FULL);
                    return false;
                }
            }
        }
    };
    // SAFETY: this CPU's slot of a valid map value.
    unsafe {
        if major {
            add(&raw mut (*slot).major, 1);
        } else {
            add(&raw mut (*slot).all, 1);
        }
    }
    true
}

/// This CPU's fault counters of `tgid`, created on first use.
#[inline(always)]
pub fn fault_counters(tgid: u32) -> Option<*mut FaultCounters> {
    if let Some(counters) = FAULTS.get_ptr_mut(tgid) {
        return Some(counters);
    }
    let zero = FaultCounters::default();
    // Another CPU may have created it meanwhile: NOEXIST then fails and the lookup finds it.
    let _ = FAULTS.insert(tgid, zero, BPF_NOEXIST as u64);
    FAULTS.get_ptr_mut(tgid)
}
