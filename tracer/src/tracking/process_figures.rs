//! One definition per figure of a process: the summary, the API, `/metrics`, the report,
//! phases and checks all read these (each used to compute its own, and they disagreed: the
//! heap after an attach was 0 everywhere but in the report, state names differed).

use tracer_common::counters::{
    RSS_ANON, RSS_FILE, RSS_KINDS, RSS_RESIDENT_MASK, RSS_SHMEM, RSS_SWAP, RssCounters,
};

use crate::{
    kernel::syscalls::SyscallKind,
    model::{maps::name_of, region::Region, vma::Vma},
    tracking::counters::CounterTotals,
    tracking::fault_regions::MetricRegion,
    tracking::process::{Lifecycle, ProcessState},
};

/// RSS kinds by name, in the order every view lists them.
pub const RSS_TYPES: [(&str, usize); RSS_KINDS] = [
    ("file", RSS_FILE),
    ("anon", RSS_ANON),
    ("swap", RSS_SWAP),
    ("shmem", RSS_SHMEM),
];

/// One row of the address space as the API and the report list it.
#[derive(Clone, Debug)]
pub struct VmaRow<'a> {
    pub vma: &'a Vma,
    pub region: Region,
    /// As /proc/PID/maps names it (empty for an anonymous mapping without a name).
    pub name: String,
    /// Faults counted in the granules that start inside the VMA.
    pub faults: u64,
}

impl ProcessState {
    /// `running`, `exited`, or `untraced` (it exec'd an excluded command and is no longer
    /// followed; it did not exit).
    pub fn state_name(&self) -> &'static str {
        match self.lifecycle {
            Lifecycle::Running => "running",
            Lifecycle::Exited { .. } if self.untraced => "untraced",
            Lifecycle::Exited { .. } => "exited",
        }
    }

    /// Size of the brk heap: the break minus `start_brk` once a brk call told the break;
    /// before that (after an attach) the extent of the `[heap]` VMA, page-rounded as /proc
    /// shows it. None if the process has no known heap start.
    pub fn heap_size(&self) -> Option<u64> {
        self.heap.size().or_else(|| {
            Some(
                self.space
                    .heap_page_end()?
                    .saturating_sub(self.space.start_brk?),
            )
        })
    }

    /// The largest heap seen: the highest break, or the heap as it is now when no brk call
    /// raised it above that.
    pub fn heap_peak(&self) -> Option<u64> {
        match (self.heap.peak_size(), self.heap_size()) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
        }
    }

    /// Resident memory by `RSS_*` kind now; a process that exited has given all of it back
    /// (what the last rss_stat events said depends on how far its teardown had gone).
    pub fn rss_now(&self) -> [u64; RSS_KINDS] {
        if self.is_running() {
            self.rss.bytes
        } else {
            [0; RSS_KINDS]
        }
    }

    /// Resident memory now: file, anonymous and shared pages (VmRSS).
    pub fn resident(&self) -> u64 {
        let rss = self.rss_now();
        rss[RSS_FILE] + rss[RSS_ANON] + rss[RSS_SHMEM]
    }

    /// The highest resident memory seen.
    pub fn rss_peak(&self) -> u64 {
        self.rss.peak_resident
    }

    /// Takes in resident memory as the probe keeps it. A kind no `kmem:rss_stat` event
    /// reported since the process became traced has not changed since: its value is the
    /// seed read from /proc then (the probe holds 0 for it). Exact at every quiescent point,
    /// whether or not the process faults again after the attach.
    pub fn observe_rss(&mut self, probe: RssCounters) {
        let mut merged = probe;
        let mut seeded_resident = 0;
        if let Some(seed) = self.rss_seed {
            for (kind, (value, seeded)) in merged.bytes.iter_mut().zip(seed).enumerate() {
                if !probe.was_reported(kind) {
                    *value = seeded;
                    if RSS_RESIDENT_MASK & (1 << kind) != 0 {
                        seeded_resident += seeded;
                    }
                }
            }
        }
        // The probe's peak counts only the kinds it saw; those not seen yet held their seed
        // then too (a lower bound of the true peak when kinds were reported since).
        merged.peak_resident = self
            .rss
            .peak_resident
            .max(probe.peak_resident + seeded_resident)
            .max(merged.resident());
        self.rss = merged;
    }

    /// Takes in the peak the exit probe read (`signal->maxrss`, pages), when RSS is read from
    /// /proc and the process's mm is gone before any last read. The value also covers the
    /// images before the current one (exec raises it with the mm it leaves), so it counts
    /// only when it rose since the current image began (`maxrss_base`); after an attach that
    /// is unknown and the last read stands. `hiwater` (the mm's own high-water mark as of its
    /// last unmap, where the exit probe still sees the mm) is this image's alone: a lower
    /// bound in every case.
    pub fn observe_exit_maxrss(&mut self, maxrss: u32, hiwater: u32) {
        let mut pages = hiwater;
        if self.maxrss_base.is_some_and(|base| maxrss > base) {
            pages = pages.max(maxrss);
        }
        let bytes = u64::from(pages) * self.space.page_size;
        self.rss.peak_resident = self.rss.peak_resident.max(bytes);
    }

    /// The address space as rows, with region, name and faults per VMA. One sweep over the
    /// VMAs and the fault granules (both sorted): linear, however big the process.
    pub fn vma_rows(&self) -> Vec<VmaRow<'_>> {
        let classified = crate::model::region::classified(&self.space);
        let faults = self
            .fault_regions
            .faults_per_range(classified.iter().map(|(v, _)| (v.start, v.end)));
        classified
            .into_iter()
            .zip(faults)
            .map(|((vma, region), faults)| VmaRow {
                vma,
                region,
                name: name_of(&self.space, vma),
                faults,
            })
            .collect()
    }
}

/// The counters `/metrics` adds up, one definition for every series and the report.
impl ProcessState {
    /// A process's counters; faults the kernel could not count in a granule (its map was
    /// full, counted apart) are region "other". Both parts only grow.
    pub fn counter_totals(&self) -> CounterTotals {
        let mut t = CounterTotals {
            faults_minor: self.fault_regions.minor,
            faults_major: self.fault_regions.major,
            ..Default::default()
        };
        let other = MetricRegion::Other as usize;
        t.faults_minor[other] += self
            .faults
            .unattributed
            .saturating_sub(self.faults.unattributed_major);
        t.faults_major[other] += self.faults.unattributed_major;
        for kind in SyscallKind::ALL {
            t.syscalls[kind.index()] = self.stats(kind).calls;
            t.syscall_errors[kind.index()] = self.stats(kind).failed;
        }
        t
    }

    /// What a process counted under its current comm (see `counted_under_earlier_comms`).
    pub fn counters_under_current_comm(&self) -> CounterTotals {
        let mut t = self.counter_totals();
        t.subtract(&self.counted_under_earlier_comms);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::maps;

    fn attached() -> ProcessState {
        let mut p = ProcessState::new(7, "w".into(), 4096);
        let text = "555500100000-555500121000 rw-p 00000000 00:00 0 [heap]\n";
        p.space.replace_vmas(maps::parse(text).unwrap());
        p.space.start_brk = Some(0x5555_0010_0000);
        p.heap.start = p.space.start_brk;
        p
    }

    #[test]
    fn the_heap_after_an_attach_is_the_heap_vma_until_brk_tells_the_break() {
        let mut p = attached();
        assert_eq!(p.heap_size(), Some(0x21000));
        assert_eq!(p.heap_peak(), Some(0x21000));
        p.heap.end = Some(0x5555_0012_2000);
        p.heap.peak = p.heap.end;
        assert_eq!(p.heap_size(), Some(0x22000));
        assert_eq!(ProcessState::new(8, "x".into(), 4096).heap_size(), None);
    }

    #[test]
    fn the_exit_peak_counts_maxrss_only_when_it_rose_since_the_image_began() {
        let mut p = ProcessState::new(9, "w".into(), 4096);
        p.rss.peak_resident = 8 * 4096;
        // Attached: the base is unknown, only the mm's own high-water mark counts.
        p.observe_exit_maxrss(1000, 4);
        assert_eq!(p.rss_peak(), 8 * 4096);
        p.observe_exit_maxrss(1000, 20);
        assert_eq!(p.rss_peak(), 20 * 4096);
        // After an exec whose old image peaked at 500 pages: 500 says nothing about this one.
        p.maxrss_base = Some(500);
        p.observe_exit_maxrss(500, 0);
        assert_eq!(p.rss_peak(), 20 * 4096);
        p.observe_exit_maxrss(600, 0);
        assert_eq!(p.rss_peak(), 600 * 4096);
    }

    #[test]
    fn rss_kinds_no_event_reported_keep_their_seed() {
        let mut p = attached();
        // /proc at attach: file 6 MiB, anon 1 MiB, swap 0, shmem 4 KiB.
        p.rss_seed = Some([6 << 20, 1 << 20, 0, 4096]);
        p.observe_rss(RssCounters::default());
        assert_eq!(p.rss_now(), [6 << 20, 1 << 20, 0, 4096]);
        assert_eq!(p.resident(), (7 << 20) + 4096);
        // The process then faults anonymous memory: the event carries the kind's full value.
        let mut probe = RssCounters::default();
        probe.bytes[RSS_ANON] = 2 << 20;
        probe.reported = 1 << RSS_ANON;
        probe.peak_resident = 2 << 20;
        p.observe_rss(probe);
        assert_eq!(p.rss_now(), [6 << 20, 2 << 20, 0, 4096]);
        assert_eq!(p.rss_peak(), (8 << 20) + 4096);
        // It unmapped a file: 0 reported is 0, not the seed.
        probe.reported |= 1 << RSS_FILE;
        p.observe_rss(probe);
        assert_eq!(p.rss_now()[RSS_FILE], 0);
        assert_eq!(p.rss_peak(), (8 << 20) + 4096, "the peak stays");
        p.lifecycle = Lifecycle::Exited { ts_ns: 1 };
        assert_eq!(p.resident(), 0, "an exited process gave its memory back");
    }

    #[test]
    fn state_names() {
        let mut p = attached();
        assert_eq!(p.state_name(), "running");
        p.lifecycle = Lifecycle::Exited { ts_ns: 1 };
        assert_eq!(p.state_name(), "exited");
        p.untraced = true;
        assert_eq!(p.state_name(), "untraced");
    }
}

#[cfg(test)]
mod big_view {
    use std::time::{Duration, Instant};

    use tracer_common::counters::GranuleFaults;

    use crate::model::vma::{Backing, Perms, Vma};

    use super::*;

    /// 65,536 VMAs (alternating permissions, so none coalesce) with faults in one 64 KiB
    /// granule each.
    fn big_process() -> ProcessState {
        process_of(65_536)
    }

    /// `n` VMAs with faults in one granule each.
    fn process_of(n: u64) -> ProcessState {
        let mut p = ProcessState::new(1, "big".into(), 4096);
        let vmas = (0..n).map(|i| Vma {
            start: 0x7000_0000_0000 + i * 0x10000,
            end: 0x7000_0000_0000 + (i + 1) * 0x10000,
            perms: Perms {
                read: true,
                write: i % 2 == 0,
                exec: false,
                shared: false,
            },
            offset: 0,
            backing: Backing::Anonymous,
            dont_fork: false,
        });
        p.space.replace_vmas(vmas);
        for i in 0..n {
            let granule = ((0x7000_0000_0000 + i * 0x10000) >> 16) as u32;
            p.fault_regions
                .observe(&p.space, granule, GranuleFaults { all: 3, major: 1 });
        }
        p
    }

    /// Four times the VMAs and granules cost about four times as much (a scan of every granule
    /// per VMA cost sixteen times as much).
    #[test]
    fn per_vma_faults_and_the_drift_diff_grow_linearly() {
        let cost = |n: u64| {
            let p = process_of(n);
            let model = crate::model::maps::model_lines(&p.space);
            let best = (0..3)
                .map(|_| {
                    let start = thread_cpu();
                    let rows = p.vma_rows();
                    let diff = crate::model::maps::diff(&model, &model);
                    assert_eq!((rows.len() as u64, diff.0.len()), (n, 0));
                    thread_cpu() - start
                })
                .min()
                .unwrap();
            best.as_secs_f64()
        };
        let (small, big) = (cost(4096), cost(16_384));
        assert!(
            big < 10.0 * small,
            "4x the VMAs cost {:.1}x ({small:.4} s, {big:.4} s)",
            big / small
        );
    }

    /// CPU time of this thread: on a shared machine the wall clock also counts the time spent
    /// waiting for a core, which says nothing of what the view costs.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill in.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The result of `f`, with the CPU time and the wall time it took.
    fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let out = f();
        let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
        println!(
            "  {:.1} ms CPU ({:.1} ms wall)",
            cpu.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3
        );
        (out, cpu)
    }

    /// The detail view and a drift comparison of a process with 65k VMAs and 65k touched
    /// granules come out right (each used to scan every granule per VMA, or every line per
    /// line: the linear growth is checked above). The CPU times it prints are what
    /// BENCHMARKS.md quotes: `cargo test -p tracer --release -- --nocapture big_view`.
    #[test]
    fn detail_view_of_65k_vmas_and_65k_granules() {
        let p = big_process();
        // What the loop does for `GET /api/v1/processes/PID`: build and serialise the view.
        let (text, view) = timed(|| serde_json::to_string(&crate::views::api::process_detail(&p)));
        let detail: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
        let rows = detail["vma_list"].as_array().unwrap();
        assert_eq!(rows.len(), 65_536);
        assert!(rows.iter().all(|r| r["faults"] == 3));
        let model = crate::model::maps::model_lines(&p.space);
        let mut kernel = model.clone();
        kernel[40_000].name = "[heap]".into();
        let ((only_model, only_kernel), compare) =
            timed(|| crate::model::maps::diff(&model, &kernel));
        assert_eq!((only_model.len(), only_kernel.len()), (1, 1));
        println!(
            "detail view of 65536 VMAs x 65536 granules: {:.1} ms CPU; maps diff of 65536 \
             lines: {:.1} ms CPU",
            view.as_secs_f64() * 1e3,
            compare.as_secs_f64() * 1e3
        );
    }
}
