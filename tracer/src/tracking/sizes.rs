//! What sizes a process maps and unmaps: a power-of-two histogram of successful mmaps, the
//! largest one, and an exact tally per length of allocator-like memory (so a report can tell
//! whether each large mapping was unmapped with the same length, as an allocator's mmapped
//! chunk is). Pure.

use std::collections::BTreeMap;

/// glibc's default `M_MMAP_THRESHOLD`: requests from this size up are served by their own
/// mmap. The report's "large" mappings start here.
pub const LARGE_MAPPING: u64 = 128 * 1024;

/// Most distinct lengths tallied per process; lengths beyond are counted in `lengths_dropped`
/// (a program mapping ever-new sizes must not grow the daemon without bound).
pub const LENGTH_TALLY_LIMIT: usize = 4096;

/// Successful mmaps whose page-rounded length lies in `[2^k, 2^(k+1))`, by backing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub anonymous: u64,
    pub file: u64,
}

/// How often one exact length of allocator-like memory (private, anonymous, read-write, not a
/// thread stack) was mapped and unmapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LengthTally {
    pub anonymous_mmaps: u64,
    pub munmaps: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmapSizes {
    /// Index k: lengths in `[2^k, 2^(k+1))`.
    pub histogram: [Bucket; 64],
    pub largest: u64,
    pub largest_anonymous: u64,
    /// Per page-rounded length: allocator-like mmaps and munmaps of exactly that length.
    pub lengths: BTreeMap<u64, LengthTally>,
    pub lengths_dropped: u64,
}

impl Default for MmapSizes {
    fn default() -> MmapSizes {
        MmapSizes {
            histogram: [Bucket::default(); 64],
            largest: 0,
            largest_anonymous: 0,
            lengths: BTreeMap::new(),
            lengths_dropped: 0,
        }
    }
}

impl MmapSizes {
    /// A successful mmap of `len` bytes (page-rounded); `allocator_like`: private anonymous
    /// read-write memory that is not a thread stack.
    pub fn mapped(&mut self, len: u64, anonymous: bool, allocator_like: bool) {
        if len == 0 {
            return;
        }
        let bucket = &mut self.histogram[len.ilog2() as usize];
        self.largest = self.largest.max(len);
        if anonymous {
            bucket.anonymous += 1;
            self.largest_anonymous = self.largest_anonymous.max(len);
            if allocator_like && let Some(tally) = self.tally(len) {
                tally.anonymous_mmaps += 1;
            }
        } else {
            bucket.file += 1;
        }
    }

    /// A successful munmap of `len` bytes (page-rounded) of allocator-like memory.
    pub fn unmapped(&mut self, len: u64) {
        if let Some(tally) = self.tally(len) {
            tally.munmaps += 1;
        }
    }

    fn tally(&mut self, len: u64) -> Option<&mut LengthTally> {
        if self.lengths.len() >= LENGTH_TALLY_LIMIT && !self.lengths.contains_key(&len) {
            self.lengths_dropped += 1;
            return None;
        }
        Some(self.lengths.entry(len).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let mut s = MmapSizes::default();
        s.mapped(4096, true, true);
        s.mapped(8191 & !4095, false, false);
        s.mapped(208_896, true, true);
        assert_eq!(
            s.histogram[12],
            Bucket {
                anonymous: 1,
                file: 1
            }
        );
        // 204 KiB lies in [128 KiB, 256 KiB).
        assert_eq!(s.histogram[17].anonymous, 1);
        assert_eq!((s.largest, s.largest_anonymous), (208_896, 208_896));
    }

    #[test]
    fn lengths_are_tallied_for_anonymous_mmaps_and_all_munmaps() {
        let mut s = MmapSizes::default();
        s.mapped(208_896, true, true);
        s.mapped(2 << 20, false, false); // a library: file-backed, not an allocation
        s.mapped(8 << 20, true, false); // a thread stack
        s.unmapped(208_896);
        assert_eq!(
            s.lengths[&208_896],
            LengthTally {
                anonymous_mmaps: 1,
                munmaps: 1
            }
        );
        assert!(!s.lengths.contains_key(&(2 << 20)));
        assert!(!s.lengths.contains_key(&(8 << 20)));
        assert_eq!(s.largest_anonymous, 8 << 20);
    }

    #[test]
    fn the_tally_is_bounded() {
        let mut s = MmapSizes::default();
        for i in 0..(LENGTH_TALLY_LIMIT as u64 + 10) {
            s.mapped((i + 1) * 4096, true, true);
        }
        assert_eq!(s.lengths.len(), LENGTH_TALLY_LIMIT);
        assert_eq!(s.lengths_dropped, 10);
        // A length already tallied still counts.
        s.unmapped(4096);
        assert_eq!(s.lengths[&4096].munmaps, 1);
    }
}
