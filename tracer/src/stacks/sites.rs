//! Attribution of address ranges to call sites, per process: which stack mapped each range
//! still in use, and per stack how much it mapped (`alloc_*`), how much of that is still
//! mapped (`inuse_*`) and how many page faults were sampled in it. Pure data, no I/O.

use std::collections::{BTreeMap, HashMap};

/// One frame: an offset in a file of the file table (`Frame::file`), or a bare address
/// (`UNKNOWN_FILE`) when no mapping was known for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    pub file: u32,
    pub offset: u64,
}

/// `Frame::file` of an address outside every known file mapping.
pub const UNKNOWN_FILE: u32 = u32::MAX;

/// A call stack, leaf first. The empty stack stands for changes whose sample was lost or
/// never taken (shown as `[no stack]`), so totals stay whole.
pub type Stack = Box<[Frame]>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Bytes mapped (or added to the heap) by this site so far, and how many times.
    pub alloc_space: u64,
    pub alloc_objects: u64,
    /// Of those, bytes still mapped, and ranges of which some part is still mapped.
    pub inuse_space: u64,
    pub inuse_objects: u64,
    /// Page faults, estimated from the samples (each weighs the sampling period).
    pub faults: u64,
}

/// A range still mapped and the site that mapped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owned {
    end: u64,
    site: u32,
    /// Identifies the original allocation, so that splitting a range by a partial munmap
    /// does not count one object twice.
    object: u64,
}

/// Call sites of one process.
#[derive(Debug, Default)]
pub struct ProcessSites {
    index: HashMap<Stack, u32>,
    stacks: Vec<Stack>,
    stats: Vec<SiteStats>,
    ranges: BTreeMap<u64, Owned>,
    /// Pieces still mapped per object id: the object leaves `inuse_objects` with its last one.
    pieces: HashMap<u64, u32>,
    next_object: u64,
}

/// Most distinct stacks kept per process; beyond it new stacks count under the empty stack.
pub const MAX_SITES: usize = 65536;

impl ProcessSites {
    /// The id of `stack`, created on first use.
    pub fn site(&mut self, stack: &[Frame]) -> u32 {
        if let Some(&id) = self.index.get(stack) {
            return id;
        }
        if self.stacks.len() >= MAX_SITES && !stack.is_empty() {
            return self.site(&[]);
        }
        let id = self.stacks.len() as u32;
        let stack: Stack = stack.into();
        self.index.insert(stack.clone(), id);
        self.stacks.push(stack);
        self.stats.push(SiteStats::default());
        id
    }

    /// `[start, end)` was mapped (or the heap grew over it) by `site`: anything the range
    /// replaces is unmapped first (MAP_FIXED, a moved break).
    pub fn map(&mut self, start: u64, end: u64, site: u32) {
        if start >= end {
            return;
        }
        self.unmap(start, end);
        let object = self.next_object;
        self.next_object += 1;
        self.ranges.insert(start, Owned { end, site, object });
        self.pieces.insert(object, 1);
        let len = end - start;
        let s = &mut self.stats[site as usize];
        s.alloc_space += len;
        s.alloc_objects += 1;
        s.inuse_space += len;
        s.inuse_objects += 1;
    }

    /// `[start, end)` is no longer mapped.
    pub fn unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Ranges that start before `end` and end after `start`.
        let overlapping: Vec<(u64, Owned)> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, o)| o.end > start)
            .map(|(&s, &o)| (s, o))
            .collect();
        // take_while stops at the first range ending before `start`, but ranges are disjoint
        // and sorted, so every earlier one ends before it too.
        for (s, owned) in overlapping {
            self.ranges.remove(&s);
            let cut_start = s.max(start);
            let cut_end = owned.end.min(end);
            self.stats[owned.site as usize].inuse_space -= cut_end - cut_start;
            let pieces = self.pieces.entry(owned.object).or_insert(1);
            *pieces -= 1;
            if s < cut_start {
                self.ranges.insert(
                    s,
                    Owned {
                        end: cut_start,
                        ..owned
                    },
                );
                *pieces += 1;
            }
            if cut_end < owned.end {
                self.ranges.insert(cut_end, owned);
                *pieces += 1;
            }
            if *pieces == 0 {
                self.pieces.remove(&owned.object);
                self.stats[owned.site as usize].inuse_objects -= 1;
            }
        }
    }

    /// Moves what is mapped in `[old, old + len)` to `new` (mremap moving a mapping): the
    /// bytes stay with the sites that mapped them.
    pub fn moved(&mut self, old: u64, len: u64, new: u64) {
        let pieces: Vec<(u64, Owned)> = self
            .ranges
            .range(..old.saturating_add(len))
            .rev()
            .take_while(|(_, o)| o.end > old)
            .map(|(&s, &o)| (s, o))
            .collect();
        self.unmap(old, old.saturating_add(len));
        for (s, owned) in pieces {
            let from = s.max(old);
            let to = owned.end.min(old + len);
            let start = new + (from - old);
            let end = new + (to - old);
            self.unmap(start, end);
            self.ranges.insert(start, Owned { end, ..owned });
            *self.pieces.entry(owned.object).or_insert(0) += 1;
            let st = &mut self.stats[owned.site as usize];
            st.inuse_space += to - from;
            if self.pieces[&owned.object] == 1 {
                st.inuse_objects += 1;
            }
        }
    }

    pub fn add_faults(&mut self, site: u32, weight: u64) {
        self.stats[site as usize].faults += weight;
    }

    /// Every site with its stack and figures.
    pub fn iter(&self) -> impl Iterator<Item = (&[Frame], &SiteStats)> {
        self.stacks.iter().map(|s| &**s).zip(self.stats.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(p: &ProcessSites, site: u32) -> SiteStats {
        p.stats[site as usize]
    }

    #[test]
    fn unmapping_part_of_a_range_drops_inuse_but_not_alloc() {
        let mut p = ProcessSites::default();
        let a = p.site(&[Frame { file: 0, offset: 1 }]);
        let b = p.site(&[Frame { file: 0, offset: 2 }]);
        p.map(0x1000, 0x5000, a);
        p.map(0x5000, 0x6000, b);
        p.unmap(0x2000, 0x3000);
        let s = stats(&p, a);
        assert_eq!((s.alloc_space, s.inuse_space), (0x4000, 0x3000));
        assert_eq!((s.alloc_objects, s.inuse_objects), (1, 1));
        p.unmap(0x0, 0x5800);
        assert_eq!(stats(&p, a).inuse_space, 0);
        assert_eq!(stats(&p, a).inuse_objects, 0);
        assert_eq!(stats(&p, b).inuse_space, 0x800);
        assert_eq!(stats(&p, b).inuse_objects, 1);
    }

    #[test]
    fn a_fixed_mapping_replaces_the_old_owner() {
        let mut p = ProcessSites::default();
        let a = p.site(&[Frame { file: 0, offset: 1 }]);
        let b = p.site(&[Frame { file: 0, offset: 2 }]);
        p.map(0x1000, 0x3000, a);
        p.map(0x2000, 0x3000, b);
        assert_eq!(stats(&p, a).inuse_space, 0x1000);
        assert_eq!(stats(&p, b).inuse_space, 0x1000);
        assert_eq!(stats(&p, a).alloc_space, 0x2000);
    }

    #[test]
    fn a_move_keeps_the_bytes_with_their_site() {
        let mut p = ProcessSites::default();
        let a = p.site(&[Frame { file: 0, offset: 1 }]);
        p.map(0x1000, 0x3000, a);
        p.moved(0x1000, 0x2000, 0x10000);
        assert_eq!(stats(&p, a).inuse_space, 0x2000);
        assert_eq!(stats(&p, a).inuse_objects, 1);
        p.unmap(0x10000, 0x12000);
        assert_eq!(stats(&p, a).inuse_space, 0);
        assert_eq!(stats(&p, a).inuse_objects, 0);
    }
}
