//! Attribution of page faults to regions. The kernel counts faults per (process, 64 KiB
//! granule); each time the daemon looks, the faults a granule gained since the last look are
//! added to the region the model has there now. Per-region counts thus only grow (they are
//! Prometheus counters), and their sum is exactly what the granules counted.

use std::collections::HashMap;

use tracer_common::counters::{FAULT_GRANULE_SHIFT, GranuleFaults};

use crate::model::{AddressSpace, region::Region};

/// The regions of the metric contract (`tracer_page_faults_total{region}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricRegion {
    Heap,
    Stack,
    Anon,
    File,
    Other,
}

impl MetricRegion {
    pub const ALL: [MetricRegion; 5] = [
        MetricRegion::Heap,
        MetricRegion::Stack,
        MetricRegion::Anon,
        MetricRegion::File,
        MetricRegion::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetricRegion::Heap => "heap",
            MetricRegion::Stack => "stack",
            MetricRegion::Anon => "anon",
            MetricRegion::File => "file",
            MetricRegion::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<Region> for MetricRegion {
    fn from(region: Region) -> MetricRegion {
        match region {
            Region::Heap => MetricRegion::Heap,
            Region::Stack => MetricRegion::Stack,
            Region::Bss | Region::Anon => MetricRegion::Anon,
            Region::Text | Region::Data | Region::File => MetricRegion::File,
            Region::Other => MetricRegion::Other,
        }
    }
}

/// Cumulative faults of one process by region, and what each granule had counted when last
/// seen.
#[derive(Clone, Debug, Default)]
pub struct FaultRegions {
    pub minor: [u64; 5],
    pub major: [u64; 5],
    seen: HashMap<u32, GranuleFaults>,
}

impl FaultRegions {
    /// Takes in a granule's current counts (`all` from the fault tracepoints, `major` from the
    /// major-fault event).
    pub fn observe(&mut self, space: &AddressSpace, granule: u32, now: GranuleFaults) {
        let last = self.seen.entry(granule).or_default();
        let all = now.all.saturating_sub(last.all);
        let major = now.major.saturating_sub(last.major);
        *last = now;
        if all == 0 && major == 0 {
            return;
        }
        let start = u64::from(granule) << FAULT_GRANULE_SHIFT;
        let region = region_at(space, start, start + (1 << FAULT_GRANULE_SHIFT));
        self.minor[region.index()] += all.saturating_sub(major);
        self.major[region.index()] += major;
    }

    /// Faults counted in the granules whose start address lies in `[start, end)`: a VMA's
    /// share as far as 64 KiB granules tell (a granule belongs to the VMA holding its start, so
    /// a VMA smaller than a granule may show none of its faults).
    #[cfg(test)]
    pub fn faults_in(&self, start: u64, end: u64) -> u64 {
        self.faults_per_range([(start, end)])[0]
    }

    /// `faults_in` for many ranges at once: the granules are sorted once and each range sums
    /// a slice of them by binary search, O((ranges + granules) log granules) instead of a scan
    /// of every granule per range (a process with 65k VMAs and 65k granules).
    pub fn faults_per_range(&self, ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<u64> {
        let mut granules: Vec<(u64, u64)> = self
            .seen
            .iter()
            .map(|(g, counts)| (u64::from(*g) << FAULT_GRANULE_SHIFT, counts.all))
            .collect();
        granules.sort_unstable_by_key(|&(start, _)| start);
        // prefix[k]: faults of the first k granules.
        let mut prefix = Vec::with_capacity(granules.len() + 1);
        prefix.push(0u64);
        for &(_, all) in &granules {
            prefix.push(prefix.last().copied().unwrap_or(0) + all);
        }
        ranges
            .into_iter()
            .map(|(start, end)| {
                let lo = granules.partition_point(|&(g, _)| g < start);
                let hi = granules.partition_point(|&(g, _)| g < end).max(lo);
                prefix[hi] - prefix[lo]
            })
            .collect()
    }

    /// Granules seen so far (to free them in the kernel when the process is gone).
    pub fn granules(&self) -> impl Iterator<Item = u32> + '_ {
        self.seen.keys().copied()
    }

    #[cfg(test)]
    pub fn attributed(&self) -> (u64, u64) {
        (self.minor.iter().sum(), self.major.iter().sum())
    }
}

/// The region of the VMA holding the granule's start, else of the first VMA inside it.
fn region_at(space: &AddressSpace, start: u64, end: u64) -> MetricRegion {
    match space.first_overlapping(start, end) {
        Some((vma, prev)) => crate::model::region::classify(space, vma, prev).into(),
        None => MetricRegion::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::maps;

    fn space() -> AddressSpace {
        let text = "\
555500100000-555500121000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
7f0000100000-7f0000110000 r-xp 00000000 fe:00 9                          /lib/x.so
";
        let mut s = AddressSpace::new(4096);
        s.replace_vmas(maps::parse(text).unwrap());
        s.start_brk = Some(0x555500100000);
        s.brk = Some(0x555500121000);
        s
    }

    fn granule(addr: u64) -> u32 {
        (addr >> FAULT_GRANULE_SHIFT) as u32
    }

    #[test]
    fn new_faults_go_to_the_region_there_now_and_never_decrease() {
        let s = space();
        let mut f = FaultRegions::default();
        f.observe(
            &s,
            granule(0x555500100000),
            GranuleFaults { all: 10, major: 1 },
        );
        f.observe(
            &s,
            granule(0x7f0000000000),
            GranuleFaults { all: 5, major: 0 },
        );
        f.observe(
            &s,
            granule(0x7f0000100000),
            GranuleFaults { all: 3, major: 2 },
        );
        f.observe(
            &s,
            granule(0x600000000000),
            GranuleFaults { all: 1, major: 0 },
        );
        assert_eq!(f.minor, [9, 0, 5, 1, 1]);
        assert_eq!(f.major, [1, 0, 0, 2, 0]);
        // Seen again: only the increase counts.
        f.observe(
            &s,
            granule(0x555500100000),
            GranuleFaults { all: 12, major: 1 },
        );
        assert_eq!(f.minor[0], 11);
        assert_eq!(f.attributed(), (18, 3));
        assert_eq!(
            f.faults_in(0x555500100000, 0x555500121000),
            12,
            "the heap's granules"
        );
        assert_eq!(f.faults_in(0x7f0000000000, 0x7f0000100000), 5);
        assert_eq!(f.granules().count(), 4);
    }

    #[test]
    fn faults_per_range_sums_the_granules_starting_in_each_range() {
        let s = space();
        let mut f = FaultRegions::default();
        let granules = [
            0x5555_0010_0000u64,
            0x5555_0011_0000,
            0x7f00_0000_0000,
            0x7f00_0011_0000,
        ];
        for (i, &g) in granules.iter().enumerate() {
            let counts = GranuleFaults {
                all: 1 << i,
                major: 0,
            };
            f.observe(&s, granule(g), counts);
        }
        let ranges = [
            (0x5555_0010_0000, 0x5555_0012_1000),
            (0x7f00_0000_0000, 0x7f00_0010_0000),
            (0x7f00_0010_0000, 0x7f00_0011_0000),
            (0x7f00_0011_0000, 0x7f00_0011_0001),
            (0x1000, 0x2000),
        ];
        let naive: Vec<u64> = ranges
            .iter()
            .map(|&(start, end)| {
                granules
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| (start..end).contains(*g))
                    .map(|(i, _)| 1u64 << i)
                    .sum()
            })
            .collect();
        assert_eq!(f.faults_per_range(ranges), naive);
        assert_eq!(naive, [3, 4, 0, 8, 0]);
    }
}
