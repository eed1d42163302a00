//! A process's address space: non-overlapping VMAs keyed by start address, with the program
//! break and the stack position that name `[heap]` and `[stack]`. Every operation is
//! O(log n + k) in the number of VMAs n and the VMAs it touches k.

use std::collections::BTreeMap;

use super::{
    heap_rule::HeapRule,
    vma::{Backing, Perms, Vma},
};

#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    vmas: BTreeMap<u64, Vma>,
    /// What `virtual_size` answers, kept up to date by every insert and removal: it is read
    /// after every syscall (peak VSZ), where summing 30k VMAs each time made the daemon slow.
    mapped: u64,
    /// `mm->start_brk`: where the heap starts.
    pub start_brk: Option<u64>,
    /// `mm->brk`: the current break, once a brk call (or the exec seed) told it.
    pub brk: Option<u64>,
    /// `mm->start_stack`: an address inside the main stack.
    pub start_stack: Option<u64>,
    pub page_size: u64,
    /// How this kernel tells `[heap]` (learned from /proc at seeds and resyncs).
    pub heap_rule: HeapRule,
}

impl AddressSpace {
    pub fn new(page_size: u64) -> AddressSpace {
        AddressSpace {
            page_size,
            ..Default::default()
        }
    }

    pub fn page_align_up(&self, addr: u64) -> u64 {
        addr.div_ceil(self.page_size).saturating_mul(self.page_size)
    }

    pub fn vmas(&self) -> impl DoubleEndedIterator<Item = &Vma> {
        self.vmas.values()
    }

    pub fn vma_count(&self) -> usize {
        self.vmas.len()
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end > addr)
    }

    /// The first VMA overlapping `[start, end)`, with the VMA just below it.
    pub fn first_overlapping(&self, start: u64, end: u64) -> Option<(&Vma, Option<&Vma>)> {
        let key = *self.overlapping(start, end).first()?;
        let vma = &self.vmas[&key];
        let prev = self.vmas.range(..key).next_back().map(|(_, v)| v);
        Some((vma, prev))
    }

    /// Start addresses of the VMAs overlapping `[start, end)`.
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        if let Some((&k, v)) = self.vmas.range(..start).next_back()
            && v.end > start
        {
            keys.push(k);
        }
        keys.extend(self.vmas.range(start..end).map(|(&k, _)| k));
        keys
    }

    /// Removes `[start, end)`, splitting VMAs that straddle its edges. Returns the removed
    /// pieces in address order.
    pub fn unmap(&mut self, start: u64, end: u64) -> Vec<Vma> {
        let mut removed = Vec::new();
        if start >= end {
            return removed;
        }
        for key in self.overlapping(start, end) {
            let vma = self.remove(key).expect("key from overlapping()");
            if vma.start < start {
                self.insert(vma.slice(vma.start, start));
            }
            if vma.end > end {
                self.insert(vma.slice(end, vma.end));
            }
            removed.push(vma.slice(start, end));
        }
        removed
    }

    /// Maps `vma`, replacing whatever it overlaps (MAP_FIXED semantics).
    pub fn map(&mut self, vma: Vma) {
        self.unmap(vma.start, vma.end);
        self.insert(vma);
    }

    fn insert(&mut self, vma: Vma) {
        debug_assert!(vma.start < vma.end);
        debug_assert!(
            self.overlapping(vma.start, vma.end).is_empty(),
            "inserting {:x}-{:x} over an existing VMA",
            vma.start,
            vma.end
        );
        self.mapped += counted_len(&vma);
        if let Some(old) = self.vmas.insert(vma.start, vma) {
            self.mapped -= counted_len(&old);
        }
    }

    fn remove(&mut self, start: u64) -> Option<Vma> {
        let vma = self.vmas.remove(&start)?;
        self.mapped -= counted_len(&vma);
        Some(vma)
    }

    /// Applies `change` to the mapped parts of `[start, end)`, splitting at the edges.
    fn modify(&mut self, start: u64, end: u64, change: impl Fn(&mut Vma)) {
        let pieces = self.unmap(start, end);
        for mut piece in pieces {
            change(&mut piece);
            self.insert(piece);
        }
    }

    /// mprotect: new permissions on the mapped parts of the range (sharing is kept).
    pub fn protect(&mut self, start: u64, end: u64, perms: Perms) {
        self.modify(start, end, |v| {
            v.perms = Perms {
                shared: v.perms.shared,
                ..perms
            }
        });
    }

    /// The end of the mapped run that starts exactly at `start` and has no hole before `end`
    /// (where a failing mprotect stops after changing what came before the hole).
    pub fn contiguous_end(&self, start: u64, end: u64) -> u64 {
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some(v) => at = v.end,
                None => break,
            }
        }
        at.min(end).max(start)
    }

    /// Where the first VMA in `[start, end)` that matches `pred` begins (clipped to `start`).
    pub fn first_where(&self, start: u64, end: u64, pred: impl Fn(&Vma) -> bool) -> Option<u64> {
        self.overlapping(start, end)
            .into_iter()
            .map(|k| &self.vmas[&k])
            .find(|v| pred(v))
            .map(|v| v.start.max(start))
    }

    pub fn set_dont_fork(&mut self, start: u64, end: u64, dont_fork: bool) {
        self.modify(start, end, |v| v.dont_fork = dont_fork);
    }

    /// mremap, given its arguments and the address it returned.
    pub fn remap(&mut self, old: u64, old_len: u64, new_len: u64, keep_source: bool, new: u64) {
        if new == old && old_len != 0 {
            if new_len < old_len {
                self.unmap(old + new_len, old + old_len);
            } else if new_len > old_len {
                // Grown in place: the kernel extends the last VMA of the range.
                if let Some(last) = self.find(old + old_len - 1).cloned() {
                    self.unmap(old + old_len, old + new_len);
                    self.remove(last.start);
                    self.insert(Vma {
                        end: old + new_len,
                        ..last
                    });
                }
            }
            return;
        }
        // Moved (or, with old_len 0, a second mapping of the same shared pages).
        let kept = if old_len == 0 {
            new_len
        } else {
            old_len.min(new_len)
        };
        let pieces: Vec<Vma> = if old_len == 0 || keep_source {
            self.overlapping(old, old + kept)
                .into_iter()
                .map(|k| self.vmas[&k].slice(old, old + kept))
                .collect()
        } else {
            let pieces = self.unmap(old, old + kept);
            // A shrinking move also drops the rest of the old range.
            self.unmap(old + kept, old + old_len);
            pieces
        };
        // Each moved VMA replaces what faces it at the destination; since Linux 6.17 a move
        // may span several VMAs and holes, and what faces a hole is left as it was.
        for piece in &pieces {
            self.unmap(piece.start - old + new, piece.end - old + new);
        }
        if new_len > kept {
            self.unmap(new + kept, new + new_len);
        }
        let count = pieces.len();
        for (i, mut piece) in pieces.into_iter().enumerate() {
            piece.start = piece.start - old + new;
            piece.end = piece.end - old + new;
            // Growing while moving (one VMA only) extends the moved VMA over the new tail.
            if i + 1 == count && new_len > kept && piece.end == new + kept {
                piece.end = new + new_len;
            }
            self.insert(piece);
        }
    }

    /// The page-aligned end of the heap: `PAGE_ALIGN(brk)` when the break is known, else the
    /// end of the VMA that holds the last heap byte, else the start of the heap.
    pub fn heap_page_end(&self) -> Option<u64> {
        if let Some(brk) = self.brk {
            return Some(self.page_align_up(brk));
        }
        let start = self.start_brk?;
        Some(
            self.vmas()
                .filter(|v| self.is_heap(v))
                .map(|v| v.end)
                .max()
                .unwrap_or(start),
        )
    }

    /// brk moved the break from its current position to `new_brk` (a successful call).
    pub fn set_break(&mut self, new_brk: u64) {
        let new_end = self.page_align_up(new_brk);
        if let Some(old_end) = self.heap_page_end() {
            if new_end < old_end {
                self.unmap(new_end, old_end);
            } else if new_end > old_end {
                self.map(Vma {
                    start: old_end,
                    end: new_end,
                    perms: Perms {
                        read: true,
                        write: true,
                        exec: false,
                        shared: false,
                    },
                    offset: 0,
                    backing: Backing::Anonymous,
                    dont_fork: false,
                });
            }
        }
        self.brk = Some(new_brk);
    }

    /// `[heap]` by the kernel's own rule (`vma_is_initial_heap`, see `HeapRule`): an
    /// anonymous VMA that overlaps `[start_brk, brk]`.
    /// While the break is unknown (attached mid-life, no brk call yet, no `[heap]` line at the
    /// seed to tell it), only the VMA around `start_brk` qualifies.
    pub fn is_heap(&self, vma: &Vma) -> bool {
        let Some(start) = self.start_brk else {
            return false;
        };
        if !vma.backing.is_anonymous() {
            return false;
        }
        match self.brk {
            Some(brk) => self.heap_rule.names(vma.start, vma.end, start, brk),
            None => vma.start <= start && (vma.end > start || self.heap_rule == HeapRule::Touch),
        }
    }

    /// `[stack]` by the kernel's rule (`vma_is_initial_stack`): the VMA holding start_stack.
    pub fn is_stack(&self, vma: &Vma) -> bool {
        self.start_stack
            .is_some_and(|s| vma.start <= s && vma.end >= s)
    }

    /// Extends the main stack down to `low` (the lowest address a fault touched below it),
    /// as the kernel does on a fault under a VM_GROWSDOWN VMA. Returns whether it grew.
    pub fn grow_stack_to(&mut self, low: u64) -> bool {
        let low = low / self.page_size * self.page_size;
        let Some(stack) = self.start_stack.and_then(|s| self.find(s)).cloned() else {
            return false;
        };
        if low >= stack.start || !self.overlapping(low, stack.start).is_empty() {
            return false;
        }
        let mut grown = stack;
        self.remove(grown.start);
        grown.start = low;
        self.insert(grown);
        true
    }

    /// Total mapped bytes as VmSize counts them (`[vsyscall]` is not part of the mm).
    pub fn virtual_size(&self) -> u64 {
        self.mapped
    }

    /// A copy for a forked child: everything but MADV_DONTFORK areas.
    pub fn fork_copy(&self) -> AddressSpace {
        let mut child = self.clone();
        child.vmas.retain(|_, v| !v.dont_fork);
        child.mapped = child.vmas.values().map(counted_len).sum();
        child
    }

    /// Replaces every VMA (seeding from /proc).
    pub fn replace_vmas(&mut self, vmas: impl IntoIterator<Item = Vma>) {
        self.vmas = vmas.into_iter().map(|v| (v.start, v)).collect();
        self.mapped = self.vmas.values().map(counted_len).sum();
    }

    /// For filling in what a VMA is backed by; its range must not change (`virtual_size`
    /// is kept from the ranges).
    pub fn vmas_mut(&mut self) -> impl Iterator<Item = &mut Vma> {
        self.vmas.values_mut()
    }
}

/// The `[heap]` naming of the model against /proc's (see `heap_rule`).
impl AddressSpace {
    /// Whether the model names `[heap]` exactly the VMAs in `named` (right after its VMAs were
    /// replaced by /proc's, whose lines are those VMAs).
    fn heap_names_match(&self, named: &[(u64, u64)]) -> bool {
        let mut modelled = self
            .vmas()
            .filter(|v| self.is_heap(v))
            .map(|v| (v.start, v.end));
        modelled.by_ref().eq(named.iter().copied())
    }

    /// After the VMAs were replaced from a /proc maps text whose `[heap]` lines are `named`:
    /// makes the model name the same VMAs `[heap]`. Keeps what it knows when that already
    /// does; else takes the break /proc shows (the end of its last `[heap]` line; none: an
    /// empty heap at `start_brk`, or the first line's start when `start_brk` is unknown) and
    /// the kernel's rule that give /proc's naming. Returns whether the naming now agrees.
    pub fn agree_on_heap(&mut self, named: &[(u64, u64)]) -> bool {
        if self.heap_names_match(named) {
            return true;
        }
        let (start_brk, brk, rule) = (self.start_brk, self.brk, self.heap_rule);
        let start_candidates = [start_brk, named.first().map(|r| r.0)];
        let brk_shown = named.last().map(|r| r.1);
        for start in start_candidates.into_iter().flatten() {
            for brk in [brk, brk_shown.or(Some(start))].into_iter().flatten() {
                for rule in [HeapRule::Overlap, HeapRule::Touch] {
                    self.start_brk = Some(start);
                    self.brk = Some(brk);
                    self.heap_rule = rule;
                    if self.heap_names_match(named) {
                        return true;
                    }
                }
            }
        }
        (self.start_brk, self.brk, self.heap_rule) = (start_brk, brk, rule);
        false
    }
}

/// A VMA's share of VmSize: `[vsyscall]` is not part of the mm.
fn counted_len(vma: &Vma) -> u64 {
    match &vma.backing {
        Backing::Special(name) if &**name == "[vsyscall]" => 0,
        _ => vma.len(),
    }
}
