//! Call sites of memory growth (`--stacks`): which code mapped memory, moved the break up or
//! took page faults. The probes (tracer-ebpf/src/probes/stacks.rs) copy the user registers
//! and a slice of the user stack at brk/mmap/mremap entry and on one fault in N; here each
//! sample is unwound from `.eh_frame` (`unwind`), joined to the syscall record of the same
//! thread, and the range the syscall mapped is attributed to its stack (`sites`). Profiles
//! (`pprof`) and the summary's top sites are symbolized on demand (`symbols`).

pub mod buildid;
pub mod elffile;
pub mod folded;
pub mod pprof;
pub mod report;
pub mod sites;
pub mod symbols;
pub mod unwind;

use std::collections::{HashMap, VecDeque};

use aya::maps::{MapData, RingBuf};
use tracer_common::record::{SYS_BRK, SYS_MMAP, SYS_MREMAP};

use crate::{
    kernel::events::SyscallEvent, kernel::syscalls::SyscallKind, tracking::table::ProcessTable,
};
use sites::{Frame, ProcessSites};
use unwind::{FileTable, ProcessUnwinder};

/// How the samples fared.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct StackCounters {
    pub samples: u64,
    pub fault_samples: u64,
    pub undecodable: u64,
    /// Growing syscalls joined to their sample, and those without one (lost, or traced
    /// before the sample could be taken): the latter count under `[no stack]`.
    pub joined: u64,
    pub unjoined: u64,
    /// Samples dropped: too many waiting, or never claimed by a record.
    pub dropped: u64,
}

/// A sample waiting to be unwound: a syscall's until its record is applied (the model then
/// holds the address space as it was at that syscall), a fault's until the records read with
/// it are applied.
struct Pending {
    tgid: u32,
    ts: u64,
    syscall: u32,
    /// ip, sp, bp (fp), lr.
    regs: [u64; 4],
    weight: u64,
    stack: Box<[u8]>,
}

/// Most samples kept waiting per thread. The samples of a whole drain interval are read
/// before its records, so a busy thread has many waiting; older ones than the record being
/// joined are dropped then (their records were lost or failed early).
const MAX_PENDING: usize = 1 << 14;
/// Most stack bytes held by waiting samples; beyond it new samples are dropped (counted).
const MAX_PENDING_BYTES: usize = 256 << 20;
/// A sample no record claimed within this long never will (its record was lost, or the
/// thread is gone).
const PENDING_TTL_NS: u64 = 10_000_000_000;
/// A sample belongs to a record whose entry was at most this much later (the two probes run
/// one after the other on the same tracepoint hit).
const JOIN_SLACK_NS: u64 = 1_000_000;
/// At most this often, after processes are forgotten, the descriptors of files no kept
/// process uses are closed (each pins its file, deleted or not; finding them walks every
/// kept stack).
const RELEASE_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
struct ProcessStacks {
    /// The table entry's generation these belong to: a pid reused by a new process (of
    /// another user, maybe) must not inherit the stacks, names or unwinder of the old one.
    generation: u64,
    sites: ProcessSites,
    unwinder: Option<ProcessUnwinder>,
}

pub struct Collector {
    ring: RingBuf<MapData>,
    files: FileTable,
    symbols: symbols::Symbols,
    processes: HashMap<u32, ProcessStacks>,
    pending: HashMap<u32, VecDeque<Pending>>,
    faults: Vec<Pending>,
    frames: Vec<Frame>,
    /// Stack bytes held in `pending` and `faults`.
    pending_bytes: usize,
    pub counters: StackCounters,
    page_size: u64,
    /// Most sites per process in the report (`--report-sites`).
    report_sites: usize,
    /// Processes were forgotten since the descriptors of files no kept process uses were last
    /// closed, and when that was.
    release_due: bool,
    last_release: std::time::Instant,
}

impl Collector {
    pub fn new(ring: RingBuf<MapData>, page_size: u64, report_sites: usize) -> Collector {
        Collector {
            ring,
            files: FileTable::default(),
            symbols: symbols::Symbols::default(),
            processes: HashMap::new(),
            pending: HashMap::new(),
            faults: Vec::new(),
            frames: Vec::new(),
            pending_bytes: 0,
            counters: StackCounters::default(),
            page_size,
            report_sites,
            release_due: false,
            last_release: std::time::Instant::now(),
        }
    }

    /// Reads every waiting sample. Called before the records ring is drained, so a syscall
    /// record finds the sample taken at its entry.
    pub fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            let Some(d) = crate::kernel::probes::stacks::decode(&item) else {
                self.counters.undecodable += 1;
                continue;
            };
            let sample = Pending {
                tgid: d.sample.header.tgid,
                ts: d.sample.header.ts_ns,
                syscall: d.sample.syscall,
                regs: [d.sample.ip, d.sample.sp, d.sample.bp, d.sample.lr],
                weight: d.sample.weight,
                stack: d.stack.into(),
            };
            if d.fault {
                self.counters.fault_samples += 1;
            } else {
                self.counters.samples += 1;
            }
            if self.pending_bytes + sample.stack.len() > MAX_PENDING_BYTES {
                self.counters.dropped += 1;
                continue;
            }
            self.pending_bytes += sample.stack.len();
            if d.fault {
                self.faults.push(sample);
            } else {
                let queue = self.pending.entry(d.sample.header.tid).or_default();
                if queue.len() >= MAX_PENDING
                    && let Some(old) = queue.pop_front()
                {
                    self.pending_bytes -= old.stack.len();
                    self.counters.dropped += 1;
                }
                queue.push_back(sample);
            }
        }
    }

    /// After the records read with the samples were applied: the fault samples.
    pub fn after_records(&mut self, table: &mut ProcessTable) {
        let faults = std::mem::take(&mut self.faults);
        for f in &faults {
            let site = self.site_of(table, f);
            stacks_of(&mut self.processes, table, f.tgid)
                .sites
                .add_faults(site, f.weight);
        }
        for f in &faults {
            self.pending_bytes -= f.stack.len();
        }
        self.faults = faults;
        self.faults.clear();
        // Samples no record claimed in time, and the queues of threads that are gone.
        let cutoff = crate::procfs::monotonic_ns().saturating_sub(PENDING_TTL_NS);
        let (bytes, dropped) = (&mut self.pending_bytes, &mut self.counters.dropped);
        self.pending.retain(|_, queue| {
            while let Some(old) = queue.front()
                && old.ts < cutoff
            {
                *bytes -= old.stack.len();
                *dropped += 1;
                queue.pop_front();
            }
            !queue.is_empty()
        });
    }

    /// Unwinds a sample against the model's address space of its process, as of now.
    fn site_of(&mut self, table: &mut ProcessTable, sample: &Pending) -> u32 {
        let tgid = sample.tgid;
        let proc = stacks_of(&mut self.processes, table, tgid);
        if let Some(p) = table.get_mut(tgid) {
            // Code mapped by descriptor whose name the model could not read yet (the loader
            // split the mapping before the record was applied): from /proc now.
            let unnamed = p.space.vmas().any(|v| {
                v.perms.exec
                    && matches!(&v.backing, crate::model::vma::Backing::File(f) if f.path.is_none())
            });
            if unnamed && p.is_running() {
                crate::tracking::reconcile::resolve_pending_names(p);
            }
            proc.unwinder = Some(ProcessUnwinder::refresh(
                proc.unwinder.take(),
                tgid,
                &p.space,
                &mut self.files,
            ));
        }
        match proc.unwinder.as_mut() {
            Some(u) => u.unwind(sample.regs, &sample.stack, &mut self.frames),
            None => self.frames.clear(),
        }
        proc.sites.site(&self.frames)
    }

    /// The site of the sample taken at the entry of `e`, or the `[no stack]` site.
    fn join(&mut self, table: &mut ProcessTable, e: &SyscallEvent, syscall: u32) -> u32 {
        let mut found = self.take_pending(e, syscall);
        if found.is_none() {
            // The record may have been read after the samples were drained: its sample,
            // submitted before the syscall returned, is in the ring buffer by now.
            self.drain();
            found = self.take_pending(e, syscall);
        }
        match found {
            Some(sample) => {
                self.counters.joined += 1;
                self.site_of(table, &sample)
            }
            None => {
                self.counters.unjoined += 1;
                stacks_of(&mut self.processes, table, e.tgid)
                    .sites
                    .site(&[])
            }
        }
    }

    /// Takes the waiting sample of `e`'s entry, dropping older ones of its thread.
    fn take_pending(&mut self, e: &SyscallEvent, syscall: u32) -> Option<Pending> {
        let queue = self.pending.get_mut(&e.tid)?;
        let low = e.enter_ns.saturating_sub(JOIN_SLACK_NS);
        let mut found = None;
        if let Some(i) = queue
            .iter()
            .position(|p| p.syscall == syscall && p.ts >= low && p.ts <= e.ts_ns)
        {
            // The ones before it were samples of calls whose records never came.
            self.counters.dropped += i as u64;
            for old in queue.drain(..=i) {
                self.pending_bytes -= old.stack.len();
                found = Some(old);
            }
        } else {
            // Samples older than this record's entry will find no record any more.
            while let Some(old) = queue.front()
                && old.ts < low
            {
                self.pending_bytes -= old.stack.len();
                self.counters.dropped += 1;
                queue.pop_front();
            }
        }
        found
    }

    /// A syscall record was applied; `old_brk` is the break the model had before it.
    pub fn on_syscall(&mut self, table: &mut ProcessTable, e: &SyscallEvent, old_brk: Option<u64>) {
        let page = self.page_size.max(1);
        let round = |len: u64| len.div_ceil(page).saturating_mul(page);
        let failed = (-4095..0).contains(&e.ret);
        let a = e.args;
        match e.kind {
            SyscallKind::Mmap if !failed => {
                let site = self.join(table, e, SYS_MMAP);
                let start = e.ret as u64;
                let sites = &mut stacks_of(&mut self.processes, table, e.tgid).sites;
                sites.map(start, start.saturating_add(round(a[1])), site);
            }
            SyscallKind::Munmap if e.ret == 0 => {
                stacks_of(&mut self.processes, table, e.tgid)
                    .sites
                    .unmap(a[0], a[0].saturating_add(round(a[1])));
            }
            SyscallKind::Brk if a[0] != 0 => {
                let new = e.ret as u64;
                let site = self.join(table, e, SYS_BRK);
                let sites = &mut stacks_of(&mut self.processes, table, e.tgid).sites;
                match old_brk {
                    Some(old) if new > old => sites.map(old, new, site),
                    Some(old) if new < old => sites.unmap(new, old),
                    _ => {}
                }
            }
            SyscallKind::Mremap if !failed => {
                let (old, old_len, new_len, new) = (a[0], round(a[1]), round(a[2]), e.ret as u64);
                let grows = new_len > old_len;
                let site = if grows {
                    Some(self.join(table, e, SYS_MREMAP))
                } else {
                    None
                };
                let sites = &mut stacks_of(&mut self.processes, table, e.tgid).sites;
                let kept = old_len.min(new_len);
                if new != old {
                    sites.moved(old, kept, new);
                }
                sites.unmap(old.saturating_add(kept), old.saturating_add(old_len));
                if let Some(site) = site {
                    sites.map(
                        new.saturating_add(old_len),
                        new.saturating_add(new_len),
                        site,
                    );
                }
            }
            _ => {}
        }
    }

    /// Forgets processes the table no longer has, or has a new process under (pid reuse).
    pub fn retain(&mut self, table: &ProcessTable) {
        let before = self.processes.len();
        self.processes.retain(|tgid, p| {
            table
                .get(*tgid)
                .is_some_and(|t| t.generation == p.generation)
        });
        self.release_due |= self.processes.len() != before;
        let release = self.release_due && self.last_release.elapsed() >= RELEASE_PERIOD;
        if self.files.over_bound() || release {
            // Keep the files the unwinders and the kept stacks name; close the descriptors
            // of the others (and forget them, beyond the bound).
            let mut used = std::collections::HashSet::new();
            for p in self.processes.values() {
                used.extend(p.unwinder.iter().flat_map(|u| u.file_ids()));
                for (stack, _) in p.sites.iter() {
                    used.extend(stack.iter().map(|f| f.file));
                }
            }
            if self.files.over_bound() {
                self.files.sweep(&used);
            }
            let live = self.files.release(&used);
            self.symbols.release(&live);
            self.release_due = false;
            self.last_release = std::time::Instant::now();
        }
    }

    /// The pids (`pid`, or all when None) whose stacks belong to the process the table has
    /// under that pid now, in order.
    fn current_pids(&self, table: &ProcessTable, pid: Option<u32>) -> Vec<u32> {
        current_pids(&self.processes, table, pid)
    }

    /// The profile of `pid` (every process when None), gzip'ed; `default_type` is the sample
    /// type shown first.
    /// A file of `proc`'s stacks that is the executable `exe` (the same path, or the same
    /// last component when one of the two is relative).
    fn file_named(&self, proc: &ProcessStacks, exe: &str) -> Option<(u32, std::sync::Arc<str>)> {
        let last = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
        proc.sites
            .iter()
            .flat_map(|(stack, _)| stack.iter())
            .filter_map(|frame| Some((frame.file, self.files.get(frame.file)?.name.clone())))
            .find(|(_, name)| &**name == exe || last(name) == last(exe))
    }

    pub fn profile(
        &mut self,
        table: &ProcessTable,
        pid: Option<u32>,
        default_type: &str,
    ) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut b = pprof::Builder::new(default_type, now);
        let no_stack: std::sync::Arc<str> = "[no stack]".into();
        for tgid in self.current_pids(table, pid) {
            let comm = table.get(tgid).map(|p| p.comm.clone()).unwrap_or_default();
            let proc = &self.processes[&tgid];
            // pprof readers take the first mapping for the main binary (`File:` in `go tool
            // pprof`): the executable's goes first, not whichever library the first leaf is in.
            let exe = table.get(tgid).and_then(|p| p.exe.as_deref());
            if let Some((file, name)) = exe.and_then(|exe| self.file_named(proc, exe)) {
                b.mapping(file, &name);
            }
            for (stack, s) in proc.sites.iter() {
                if s.alloc_space == 0 && s.faults == 0 {
                    continue;
                }
                let mut locations = Vec::with_capacity(stack.len().max(1));
                for &frame in stack {
                    let name = self.symbols.name(&self.files, frame);
                    let mapping = match self.files.get(frame.file) {
                        Some(f) => b.mapping(frame.file, &f.name.clone()),
                        None => 0,
                    };
                    locations.push(b.location(mapping, frame.offset, &name));
                }
                if locations.is_empty() {
                    locations.push(b.location(0, 0, &no_stack));
                }
                let comm_str = b.string(&comm);
                b.sample(
                    locations,
                    [
                        s.alloc_objects as i64,
                        s.alloc_space as i64,
                        s.inuse_objects as i64,
                        s.inuse_space as i64,
                        s.faults as i64,
                    ],
                    &[
                        (
                            "pid",
                            pprof::Label {
                                num: i64::from(tgid),
                                ..Default::default()
                            },
                        ),
                        (
                            "comm",
                            pprof::Label {
                                str: comm_str,
                                ..Default::default()
                            },
                        ),
                    ],
                );
            }
        }
        b.finish()
    }

    /// The `n` call sites (the first frame outside the C library and the allocators) that
    /// mapped the most, over every process: (function, alloc_space, inuse_space, faults).
    pub fn top_sites(&mut self, n: usize) -> Vec<(String, u64, u64, u64)> {
        let mut by_name: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for proc in self.processes.values() {
            for (stack, s) in proc.sites.iter() {
                let name = site_name(&mut self.symbols, &self.files, stack).to_string();
                let e = by_name.entry(name).or_default();
                e.0 += s.alloc_space;
                e.1 += s.inuse_space;
                e.2 += s.faults;
            }
        }
        let mut list: Vec<(String, u64, u64, u64)> = by_name
            .into_iter()
            .map(|(k, v)| (k, v.0, v.1, v.2))
            .collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(b.3.cmp(&a.3)).then(a.0.cmp(&b.0)));
        list.truncate(n);
        list
    }
}

/// The pids (`pid`, or all when None) whose stacks belong to the process the table has
/// under that pid now, in order.
fn current_pids(
    processes: &HashMap<u32, ProcessStacks>,
    table: &ProcessTable,
    pid: Option<u32>,
) -> Vec<u32> {
    let mut pids: Vec<u32> = processes
        .iter()
        .filter(|(t, p)| {
            pid.is_none_or(|want| want == **t)
                && table.get(**t).is_some_and(|e| e.generation == p.generation)
        })
        .map(|(t, _)| *t)
        .collect();
    pids.sort_unstable();
    pids
}

/// The stacks of `tgid`, started afresh when the table's entry for it is another process
/// than the one they were collected for (pid reuse).
fn stacks_of<'a>(
    processes: &'a mut HashMap<u32, ProcessStacks>,
    table: &ProcessTable,
    tgid: u32,
) -> &'a mut ProcessStacks {
    let generation = table.get(tgid).map_or(0, |p| p.generation);
    let p = processes.entry(tgid).or_default();
    if p.generation != generation {
        *p = ProcessStacks {
            generation,
            ..Default::default()
        };
    }
    p
}

/// The name of a stack's site: its first frame outside the C library and the allocators (the
/// leaf when every frame is theirs), `[no stack]` for the empty stack.
fn site_name(
    symbols: &mut symbols::Symbols,
    files: &FileTable,
    stack: &[Frame],
) -> std::sync::Arc<str> {
    let frame = stack
        .iter()
        .find(|f| {
            !files
                .get(f.file)
                .is_some_and(|file| is_allocator(&file.name))
        })
        .or(stack.first());
    match frame {
        Some(&f) => symbols.name(files, f),
        None => "[no stack]".into(),
    }
}

/// Files whose frames are the allocator's, not the caller's: the C library, the dynamic
/// loader and the common allocators (a site is named by the first frame outside them).
pub fn is_allocator(path: &str) -> bool {
    let name = symbols::short(path);
    [
        "libc.so",
        "libc-",
        "ld-linux",
        "ld-musl",
        "libjemalloc",
        "libtcmalloc",
        "libmimalloc",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// At the end of `run` and `attach`: the top sites, on stderr.
pub fn print_top_sites(c: &mut Collector) {
    let counters = c.counters;
    eprintln!(
        "tracer: call sites ({} syscall samples, {} fault samples, {} growing calls without a \
         stack):",
        counters.samples, counters.fault_samples, counters.unjoined
    );
    eprintln!("  {:>12} {:>12} {:>10}  site", "mapped", "in use", "faults");
    for (name, alloc, inuse, faults) in c.top_sites(10) {
        eprintln!(
            "  {:>12} {:>12} {:>10}  {}",
            alloc,
            inuse,
            faults,
            name.escape_debug()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::process::Lifecycle;

    #[test]
    fn a_reused_pid_does_not_inherit_the_stacks_of_the_process_that_had_it() {
        let mut table = ProcessTable::new(4096);
        let mut processes: HashMap<u32, ProcessStacks> = HashMap::new();
        table.add(42, "old".into());
        let frame = Frame {
            file: 7,
            offset: 0x10,
        };
        let p = stacks_of(&mut processes, &table, 42);
        let site = p.sites.site(&[frame]);
        p.sites.map(0x1000, 0x3000, site);
        assert_eq!(current_pids(&processes, &table, Some(42)), [42]);
        // It exits, and a new process (another user's, maybe) gets pid 42.
        table.get_mut(42).unwrap().lifecycle = Lifecycle::Exited { ts_ns: 1 };
        table.add(42, "new".into());
        assert!(
            current_pids(&processes, &table, Some(42)).is_empty(),
            "the old stacks are served under the new process"
        );
        let p = stacks_of(&mut processes, &table, 42);
        assert_eq!(
            p.sites.iter().count(),
            0,
            "the new process starts with no sites"
        );
        assert_eq!(current_pids(&processes, &table, None), [42]);
    }
}
