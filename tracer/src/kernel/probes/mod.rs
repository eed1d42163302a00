//! Loading and attaching the eBPF probes, and typed access to their maps.

pub mod btf;
mod btf_blob;
mod detach;
pub mod fault_events;
pub mod features;
mod fields;
mod known;
mod kprobes;
mod kretprobe;
pub mod options;
mod programs;
pub mod stacks;
mod syscall_source;

pub use self::options::{MmapLockOrder, ProbeError, ProbeOptions, RssSource};
use self::programs::{attach_every_cpu, attach_raw, attach_tracepoint};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, MapType, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::perf_event::SoftwareEvent,
};
pub use features::Feature;

use tracer_common::{
    config::{COMM_EXCLUDE, COMM_TRACE},
    counters::{
        FaultCounters, GranuleFaults, GranuleKey, RssCounters, STATS_LEN, TRACED_AWAIT_EXEC,
        TRACED_BY_USER, TRACED_STOP_AT_EXEC,
    },
    record::RECORD_KINDS,
};

use crate::kernel::tracefs::Tracefs;

/// The probe object built by `build.rs`.
static PROBES_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// What was attached, for the start-up notice.
#[derive(Debug, Default, Clone)]
pub struct Attached {
    pub tracepoints: Vec<String>,
    /// Unused: optional features that are off are announced by `Probes::load` itself (one
    /// warning each) and listed in `features`.
    pub optional_missing: Vec<String>,
    pub perf_events: usize,
    /// The optional kernel features and whether they are on.
    pub features: Vec<Feature>,
}

/// Loaded and attached probes. Dropping this detaches everything.
pub struct Probes {
    /// Every attachment; dropped first, all at once (see `detach`). Only its drop matters.
    _links: detach::Links,
    // Keeps programs and maps alive.
    _ebpf: Ebpf,
    traced: HashMap<MapData, u32, u32>,
    stack_low: HashMap<MapData, u32, u64>,
    mm_seq: HashMap<MapData, u32, u32>,
    rss: HashMap<MapData, u32, RssCounters>,
    mm_owner: HashMap<MapData, u32, u32>,
    granules: PerCpuHashMap<MapData, GranuleKey, GranuleFaults>,
    faults: PerCpuHashMap<MapData, u32, FaultCounters>,
    lost: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    cgroups: HashMap<MapData, u64, u32>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Whether kmem:rss_stat is attached.
    rss_events: bool,
    pub attached: Attached,
    /// `--stacks`: the ring buffer of stack samples, taken by the session.
    pub stack_ring: Option<RingBuf<MapData>>,
}

impl Probes {
    /// Loads the probes configured for this kernel and attaches them all. Returns the ring
    /// buffer separately so the reader task can own it.
    pub fn load(
        tracefs: &Tracefs,
        opts: &ProbeOptions,
    ) -> Result<(Probes, RingBuf<MapData>), ProbeError> {
        // Before anything is loaded: a kernel without it would answer with a verifier dump.
        if let Ok(false) = aya::sys::is_map_supported(MapType::RingBuf) {
            return Err(ProbeError::MissingFeature {
                feature: "the BPF ring buffer".into(),
                need: "BPF_MAP_TYPE_RINGBUF came with Linux 5.8, the oldest kernel tracer \
                       supports"
                    .into(),
            });
        }
        if opts.stacks.is_some() {
            self::stacks::check_kernel()?;
        }
        let detected = features::detect(&features::Sources::system(tracefs), opts)?;
        for notice in &detected.notices {
            log::warn!("{notice}");
        }
        for detail in &detected.details {
            log::info!("{detail}");
        }
        let mut loader = EbpfLoader::new();
        loader
            .override_global("CONFIG", &detected.config, true)
            .map_max_entries("EVENTS", opts.ring_buffer_bytes);
        for map in ["TRACED", "FAULTS", "STACK_LOW", "RSS", "MM_OWNER", "MM_SEQ"] {
            loader.map_max_entries(map, opts.max_processes);
        }
        if let Some(stacks) = &opts.stacks {
            self::stacks::configure(&mut loader, stacks);
        }
        let mut ebpf = loader
            .load(PROBES_OBJECT)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        // Messages from the probes (rare: e.g. the traced set being full) go to our logger.
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();

        let mut attached = Attached {
            features: detected.features,
            ..Attached::default()
        };
        // Declared before the first attach: an error return detaches what was attached.
        let mut links = detach::Links::default();
        for (group, name) in detected.tracepoints {
            if group == "exceptions" {
                // The fault probes run on the raw tracepoints (the tracepoint's arguments, no
                // record built): a page fault is the hottest path there is.
                attach_raw(&mut ebpf, &name, &name, &mut links)?;
            } else {
                attach_tracepoint(&mut ebpf, &name, (group, &name), &mut links)?;
            }
            attached.tracepoints.push(format!("{group}:{name}"));
        }
        attach_syscalls(
            &mut ebpf,
            tracefs,
            (detected.syscall_kprobes, detected.raw_syscalls),
            detected.syscall_tracepoints,
            &mut links,
            &mut attached,
        )?;
        // Major faults on the `page-faults-maj` software event of every online CPU (period 1:
        // majors are rare, and every one must be counted).
        attached.perf_events = attach_every_cpu(
            &mut ebpf,
            "major_fault",
            &[(SoftwareEvent::PageFaultsMaj, "page-faults-maj")],
            &mut links,
        )?;
        if detected.fault_events {
            attached.perf_events += fault_events::attach(&mut ebpf, &mut links)?;
        }
        if let Some(program) = detected.order_program {
            // Optional: without it records carry no sequence number and are applied in the
            // order they arrive.
            if let Err(err) = attach_raw(
                &mut ebpf,
                program,
                features::MMAP_LOCK_TRACEPOINT,
                &mut links,
            ) {
                log::warn!(
                    "kernel feature {} is off: {err}; records are applied in the order they \
                     arrive",
                    features::MMAP_LOCK_ORDER
                );
                for f in &mut attached.features {
                    if f.name == features::MMAP_LOCK_ORDER {
                        f.enabled = false;
                    }
                }
            } else {
                attached
                    .tracepoints
                    .push(format!("mmap_lock:{}", features::MMAP_LOCK_TRACEPOINT));
            }
        }

        let stack_ring = match &opts.stacks {
            Some(stacks) => {
                let (ring, names) =
                    self::stacks::attach(&mut ebpf, stacks, detected.fault_events, &mut links)?;
                attached.tracepoints.extend(names);
                Some(ring)
            }
            None => None,
        };
        let mut comm_filter: HashMap<MapData, [u8; 16], u32> = take(&mut ebpf, "COMM_FILTER")?;
        let lists = [
            (&opts.trace_comms, COMM_TRACE),
            (&opts.exclude_comms, COMM_EXCLUDE),
        ];
        for (names, value) in lists {
            for name in names.iter() {
                comm_filter
                    .insert(comm_key(name), value, 0)
                    .map_err(|source| ProbeError::Map {
                        name: "COMM_FILTER",
                        source: Box::new(source),
                    })?;
            }
        }
        let ring = match ebpf.take_map("EVENTS") {
            Some(map) => RingBuf::try_from(map).map_err(|source| ProbeError::Map {
                name: "EVENTS",
                source: Box::new(source),
            })?,
            None => return Err(ProbeError::MissingMap("EVENTS")),
        };
        let probes = Probes {
            _links: links,
            traced: take(&mut ebpf, "TRACED")?,
            stack_low: take(&mut ebpf, "STACK_LOW")?,
            mm_seq: take(&mut ebpf, "MM_SEQ")?,
            rss: take(&mut ebpf, "RSS")?,
            mm_owner: take(&mut ebpf, "MM_OWNER")?,
            granules: take(&mut ebpf, "FAULT_GRANULES")?,
            faults: take(&mut ebpf, "FAULTS")?,
            lost: take(&mut ebpf, "LOST")?,
            stats: take(&mut ebpf, "STATS")?,
            cgroups: take(&mut ebpf, "CGROUP_FILTER")?,
            logger,
            rss_events: detected.rss_events,
            _ebpf: ebpf,
            attached,
            stack_ring,
        };
        Ok((probes, ring))
    }

    /// Starts tracing `tgid` (and, through the fork probe, the processes it creates).
    pub fn trace(&mut self, tgid: u32) -> Result<(), ProbeError> {
        self.traced
            .insert(tgid, TRACED_BY_USER, 0)
            .map_err(|source| ProbeError::Map {
                name: "TRACED",
                source: Box::new(source),
            })
    }

    /// Traces `tgid`, the tracer's own child, from its next execve on.
    pub fn trace_from_exec(&mut self, tgid: u32, stop_at_exec: bool) -> Result<(), ProbeError> {
        let flags = if stop_at_exec { TRACED_STOP_AT_EXEC } else { 0 };
        self.traced
            .insert(tgid, TRACED_AWAIT_EXEC | flags, 0)
            .map_err(|source| ProbeError::Map {
                name: "TRACED",
                source: Box::new(source),
            })
    }

    /// Stops the exec probe from stopping processes at exec (tracing is about to end, and no
    /// one would resume them).
    pub fn clear_exec_stops(&mut self) {
        let stopping: Vec<(u32, u32)> = self
            .traced
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, state)| state & TRACED_STOP_AT_EXEC != 0)
            .collect();
        for (tgid, state) in stopping {
            let _ = self.traced.insert(tgid, state & !TRACED_STOP_AT_EXEC, 0);
        }
    }

    /// Adds cgroups (by id) whose processes start being traced at exec (`--cgroup`).
    pub fn follow_cgroups(&mut self, ids: &[u64]) -> Result<(), ProbeError> {
        for &id in ids {
            self.cgroups
                .insert(id, 1, 0)
                .map_err(|source| ProbeError::Map {
                    name: "CGROUP_FILTER",
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Stops tracing `tgid` (used when an attach fails half-way).
    pub fn untrace(&mut self, tgid: u32) {
        let _ = self.traced.remove(&tgid);
    }

    /// Whether the kernel side still traces `tgid` (it removes processes when they exit).
    pub fn is_traced(&self, tgid: u32) -> bool {
        self.traced.get(&tgid, 0).is_ok()
    }

    /// Tells the fault probe where `tgid`'s main stack starts, so it can see it grow. For the
    /// same image (`new_image` false: attach, reseed) it never raises a value the probe has
    /// lowered since; a new image (exec) has a new stack and always sets it.
    pub fn set_stack_low(&mut self, tgid: u32, low: u64, new_image: bool) {
        if !new_image && self.stack_low.get(&tgid, 0).is_ok_and(|seen| seen <= low) {
            return;
        }
        if let Err(err) = self.stack_low.insert(tgid, low, 0) {
            log::debug!("cannot record the stack of {tgid}: {err}");
        }
    }

    /// The lowest stack address the fault probe saw for `tgid`.
    pub fn stack_low(&self, tgid: u32) -> Option<u64> {
        self.stack_low.get(&tgid, 0).ok()
    }

    /// Fault counters of `tgid`, summed over CPUs (zero if it never faulted).
    pub fn faults(&self, tgid: u32) -> FaultCounters {
        let mut total = FaultCounters::default();
        if let Ok(per_cpu) = self.faults.get(&tgid, 0) {
            for counters in per_cpu.iter() {
                total.accumulate(counters);
            }
        }
        total
    }

    /// Forgets what the kernel side keeps of an exited process (after it was read); its
    /// fault granules are `granules` (as read by `fault_granules`).
    pub fn forget(&mut self, tgid: u32, granules: impl IntoIterator<Item = u32>) {
        let _ = self.faults.remove(&tgid);
        let _ = self.stack_low.remove(&tgid);
        // Normally gone already (the exit probe removes it); not after an exec that ended the
        // tracing, and a process traced again must count from 1.
        let _ = self.mm_seq.remove(&tgid);
        // The probe keeps one mm per process in MM_OWNER (it drops the old one at exec).
        if let Ok(rss) = self.rss.get(&tgid, 0)
            && self
                .mm_owner
                .get(&rss.mm_id, 0)
                .is_ok_and(|owner| owner == tgid)
        {
            let _ = self.mm_owner.remove(&rss.mm_id);
        }
        let _ = self.rss.remove(&tgid);
        for granule in granules {
            let _ = self.granules.remove(&GranuleKey { tgid, granule });
        }
    }

    /// Whether `kmem:rss_stat` is attached: without it nothing keeps resident memory
    /// current, and a seed from /proc would go stale.
    pub fn rss_events(&self) -> bool {
        self.rss_events
    }

    /// Resident memory of `tgid` as `kmem:rss_stat` last reported it (kinds without their
    /// `reported` bit are 0 here: `ProcessState::observe_rss` fills them from the seed).
    pub fn rss(&self, tgid: u32) -> Option<RssCounters> {
        self.rss.get(&tgid, 0).ok()
    }

    /// Fault counts per granule of every traced process, summed over CPUs.
    pub fn fault_granules(&self) -> Vec<(GranuleKey, GranuleFaults)> {
        self.granules
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| {
                let mut sum = GranuleFaults::default();
                for g in per_cpu.iter() {
                    sum.all += g.all;
                    sum.major += g.major;
                }
                (key, sum)
            })
            .collect()
    }

    /// Records lost because the ring buffer was full, per record kind (index = `RECORD_*`).
    pub fn lost(&self) -> [u64; RECORD_KINDS] {
        let mut lost = [0; RECORD_KINDS];
        for (kind, slot) in lost.iter_mut().enumerate() {
            *slot = sum_per_cpu(&self.lost, kind as u32);
        }
        lost
    }

    /// Kernel-side conditions (index = `STAT_*`).
    pub fn stats(&self) -> [u64; STATS_LEN as usize] {
        let mut stats = [0; STATS_LEN as usize];
        for (index, slot) in stats.iter_mut().enumerate() {
            *slot = sum_per_cpu(&self.stats, index as u32);
        }
        stats
    }

    /// Passes the probes' own log messages to the `log` facade.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
    }
}

/// A command name as the kernel stores it: NUL-padded to 16 bytes.
fn comm_key(name: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let bytes = &name.as_bytes()[..name.len().min(15)];
    key[..bytes.len()].copy_from_slice(bytes);
    key
}

fn sum_per_cpu(array: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    array
        .get(&index, 0)
        .map(|values| values.iter().sum())
        .unwrap_or(0)
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    T::try_from(map).map_err(|source| ProbeError::Map {
        name,
        source: Box::new(source),
    })
}

/// Attaches the syscall probes (syscall_source.rs): the kprobes when `kprobes`, else (or should
/// the kernel refuse them) the two raw tracepoints when `raw`, else (or should the kernel refuse
/// those) the per-syscall tracepoints.
fn attach_syscalls(
    ebpf: &mut Ebpf,
    tracefs: &Tracefs,
    (kprobes, raw): (bool, bool),
    tracepoints: Vec<(&'static str, String)>,
    links: &mut detach::Links,
    attached: &mut Attached,
) -> Result<(), ProbeError> {
    if kprobes {
        let mut kprobe_links = detach::Links::default();
        // The kernel's own tracefs for the kretprobe events, even under `--tracefs DIR` (a copy
        // of the formats, for tests).
        let real = Tracefs::system().unwrap_or_else(|_| Tracefs::at(tracefs.root()));
        match self::kprobes::attach(ebpf, real.root(), &mut kprobe_links) {
            Ok(names) => {
                links.append(kprobe_links);
                attached.tracepoints.extend(names);
                return Ok(());
            }
            Err(err) => {
                // Dropping `kprobe_links` detaches whichever were attached.
                drop(kprobe_links);
                let fallback = if raw {
                    "the raw tracepoints raw_syscalls:sys_enter/sys_exit"
                } else {
                    "the per-syscall tracepoints"
                };
                log::warn!(
                    "kernel feature {} is off: {err}; syscalls are probed on {fallback}",
                    syscall_source::SYSCALL_KPROBES
                );
                for f in &mut attached.features {
                    if f.name == syscall_source::SYSCALL_KPROBES {
                        f.enabled = false;
                    }
                    if f.name == syscall_source::RAW_SYSCALLS {
                        f.enabled = raw;
                    }
                }
            }
        }
    }
    if raw {
        let mut raw_links = detach::Links::default();
        let tried = syscall_source::RAW_PROGRAMS
            .iter()
            .try_for_each(|(program, target)| attach_raw(ebpf, program, target, &mut raw_links));
        match tried {
            Ok(()) => {
                links.append(raw_links);
                for (_, target) in syscall_source::RAW_PROGRAMS {
                    attached.tracepoints.push(format!("raw_syscalls:{target}"));
                }
                return Ok(());
            }
            Err(err) => {
                // Dropping `raw_links` detaches whichever of the two was attached.
                log::warn!(
                    "kernel feature {} is off: {err}; syscalls are probed on the per-syscall \
                     tracepoints",
                    syscall_source::RAW_SYSCALLS
                );
                for f in &mut attached.features {
                    if f.name == syscall_source::RAW_SYSCALLS {
                        f.enabled = false;
                    }
                }
            }
        }
    }
    for (group, name) in tracepoints {
        attach_tracepoint(ebpf, &name, (group, &name), links)?;
        attached.tracepoints.push(format!("{group}:{name}"));
    }
    Ok(())
}
